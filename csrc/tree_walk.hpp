// Tree walk: the leaf each row reaches in a complete ("dense") decision tree,
// read straight from the caller's float32 rows (no copy, no per-row
// preparation), with the kernel chosen at run time by CPU detection: a
// portable scalar walk (the baseline x86-64 build, and every other CPU),
// AVX2 and AVX-512 walks that move 8 or 16 rows per instruction.
//
// Every kernel computes the same thing, bit for bit: a row goes to the right
// child exactly when its value is greater than the split's threshold, or is
// missing (NaN) and the split sends missing values right.
//
// Thread-safety: the functions keep no state except the detected CPU
// features (computed once, thread-safe); any number of threads may walk the
// same tree at once. Nothing here allocates, blocks or throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fastroute {

// Set in DenseTree::column when the split sends missing values right; the
// low bits are the feature index.
inline constexpr std::uint32_t kMissingRight = 1u << 31;

// A complete tree of `depth` levels of splits in level order: split s has
// children 2s+1 and 2s+2, and the 2^depth slots below the last level are the
// leaves, numbered 0 .. 2^depth - 1 from the left. Both arrays hold
// 2^depth - 1 entries. Features must lie inside every row walked.
struct DenseTree {
  const float* threshold;
  const std::uint32_t* column;  // feature | kMissingRight
  std::uint32_t depth;
};

enum class TreeWalk : std::uint8_t { kScalar, kAvx2, kAvx512 };
// Each kernel's name, in enum order (Python reads them as _core.TREE_WALKS).
inline constexpr std::array<std::string_view, 3> kTreeWalkNames = {"scalar", "avx2", "avx512"};

// Whether this CPU (and this build's compiler) can run `walk`.
bool tree_walk_supported(TreeWalk walk);
// The fastest kernel this CPU supports, detected once.
TreeWalk best_tree_walk();

// The leaf slot each of n rows (row i at rows + i * stride) reaches, into
// leaf[0..n). `walk` must be supported (the caller checks); fewer rows than
// one of its blocks (16 for AVX2, 32 for AVX-512) are walked by the scalar
// kernel. stride >= every feature the tree reads + 1.
void walk_dense(TreeWalk walk, const DenseTree& tree, const float* rows, std::size_t n, std::size_t stride,
                std::uint32_t* leaf);

}  // namespace fastroute
