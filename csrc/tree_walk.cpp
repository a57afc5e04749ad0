#include "tree_walk.hpp"

#include <algorithm>

#include "features.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// GCC 12's AVX-512 intrinsics warn that `__Y` "may be used" / "is used"
// uninitialized (GCC bug 105593, fixed in GCC 13): the headers build their
// "don't care" merge operand (_mm512_undefined_ps and friends) by
// self-initialisation, and every call with an all-ones mask ignores it. The
// warnings are silenced for the intrinsics headers' own lines only; one in
// our code still shows.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define FASTROUTE_X86_KERNELS 1
#else
#define FASTROUTE_X86_KERNELS 0
#endif

namespace fastroute {

namespace {

// Rows walked together by the scalar kernel: independent walks the CPU overlaps.
constexpr std::size_t kScalarBlock = 16;

// One step of one row: the child slot of `slot`.
inline std::uint32_t step(const DenseTree& tree, const float* row, std::uint32_t slot) {
  const std::uint32_t column = tree.column[slot];
  const float value = row[column & ~kMissingRight];
  const bool missing_right = (column & kMissingRight) != 0;
  const bool right = (value > tree.threshold[slot]) | ((value != value) & missing_right);
  return 2 * slot + 1 + static_cast<std::uint32_t>(right);
}

// Rows rows at once; Stride: the row width as a compile-time constant, or 0.
template <std::size_t Rows, std::size_t Stride>
void scalar_block(const DenseTree& tree, const float* rows, std::size_t stride, std::uint32_t* leaf) {
  if constexpr (Stride != 0) stride = Stride;
  std::uint32_t slot[Rows] = {};
  for (std::uint32_t level = 0; level < tree.depth; ++level) {
    for (std::size_t r = 0; r < Rows; ++r) slot[r] = step(tree, rows + r * stride, slot[r]);
  }
  const std::uint32_t first_leaf = (1u << tree.depth) - 1;
  for (std::size_t r = 0; r < Rows; ++r) leaf[r] = slot[r] - first_leaf;
}

template <std::size_t Stride>
void walk_scalar(const DenseTree& tree, const float* rows, std::size_t n, std::size_t stride, std::uint32_t* leaf) {
  std::size_t r = 0;
  for (; r + kScalarBlock <= n; r += kScalarBlock) {
    scalar_block<kScalarBlock, Stride>(tree, rows + r * stride, stride, leaf + r);
  }
  for (; r < n; ++r) scalar_block<1, Stride>(tree, rows + r * stride, stride, leaf + r);
}

void walk_scalar_any(const DenseTree& tree, const float* rows, std::size_t n, std::size_t stride,
                     std::uint32_t* leaf) {
  // The schema's width as a constant turns each row's offset into an
  // immediate: fewer instructions and registers per step.
  if (stride == kNumFeatures) {
    walk_scalar<kNumFeatures>(tree, rows, n, stride, leaf);
  } else {
    walk_scalar<0>(tree, rows, n, stride, leaf);
  }
}

#if FASTROUTE_X86_KERNELS

// The vector kernels track each row's position inside its level: at level L
// (2^L splits, from split 2^L - 1 on) position p has children 2p and 2p + 1,
// and after the last level the position is the leaf. The splits of a level
// of up to one vector (AVX-512: two) are picked from registers by a
// permute; deeper levels gather them. Only the row values are always
// gathered, and the rows of the blocks ahead are prefetched meanwhile.

// Rows ahead of the current block whose cache lines are prefetched.
constexpr std::size_t kPrefetchRows = 64;

// Prefetches the cache lines of rows [from, to) (clipped to n).
inline void prefetch_rows(const float* rows, std::size_t from, std::size_t to, std::size_t n, std::size_t stride) {
  to = std::min(to, n);
  if (from >= to) return;
  const char* begin = reinterpret_cast<const char*>(rows + from * stride);
  const char* end = reinterpret_cast<const char*>(rows + to * stride);
  for (const char* line = begin; line < end; line += 64) __builtin_prefetch(line);
}

// One level of splits as the vector kernels read it.
struct TreeLevel {
  const float* threshold;      // the level's first split
  const std::uint32_t* column;
  std::uint32_t width;         // splits in the level
};

inline TreeLevel tree_level(const DenseTree& tree, std::uint32_t depth) {
  const std::uint32_t first = (1u << depth) - 1;
  return {tree.threshold + first, tree.column + first, 1u << depth};
}

// Rows a vector kernel walks together: two vectors, independent walks the CPU overlaps.
template <class Vector>
constexpr std::size_t kBlockRows = 2 * Vector::kLanes;

// The block loop every vector kernel shares. Vector is an instruction set's
// traits: kLanes rows per vector, Positions (one vector of row positions,
// zero when value-initialised), a constructor taking the row stride,
// advance(level, base, positions) (one level down for the rows at base,
// base + stride, ...) and store(leaf, positions). Returns the rows walked, a
// whole number of blocks; the caller walks the rest.
//
// No target attribute here (GCC cannot give a template one per instance):
// the traits' members carry theirs, and the kernel entry points below are
// `flatten`, so all of it is compiled inline for their instruction set. The
// vectors move by reference, so even a copy that is not inlined passes none
// by value in a function compiled without AVX.
template <class Vector>
std::size_t walk_blocks(const DenseTree& tree, const float* rows, std::size_t n, std::size_t stride,
                        std::uint32_t* leaf) {
  constexpr std::size_t kLanes = Vector::kLanes, kBlock = kBlockRows<Vector>;
  const Vector vector(stride);
  std::size_t r = 0;
  for (; r + kBlock <= n; r += kBlock) {
    prefetch_rows(rows, r + kPrefetchRows, r + kPrefetchRows + kBlock, n, stride);
    const float* base0 = rows + r * stride;
    const float* base1 = base0 + kLanes * stride;
    typename Vector::Positions position0{}, position1{};
    for (std::uint32_t depth = 0; depth < tree.depth; ++depth) {
      const TreeLevel level = tree_level(tree, depth);
      vector.advance(level, base0, position0);
      vector.advance(level, base1, position1);
    }
    Vector::store(leaf + r, position0);
    Vector::store(leaf + r + kLanes, position1);
  }
  return r;
}

// AVX2, 8 rows per vector. right = !(v <= t) & (missing_right | v is a
// number): NLE_UQ is true for NaN, which then goes right only where the split
// says so.
class Avx2Vector {
 public:
  static constexpr std::size_t kLanes = 8;
  using Positions = __m256i;

  __attribute__((target("avx2"))) explicit Avx2Vector(std::size_t stride) {
    const auto s = static_cast<int>(stride);
    lane_offset_ = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
  }

  __attribute__((target("avx2"))) void advance(const TreeLevel& level, const float* base, Positions& position) const {
    __m256 threshold;
    __m256i column;
    if (level.width <= 8) {
      // A masked load reads only the level's own splits.
      const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(level.width)),
                                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      threshold = _mm256_permutevar8x32_ps(_mm256_maskload_ps(level.threshold, lanes), position);
      column = _mm256_permutevar8x32_epi32(
          _mm256_maskload_epi32(reinterpret_cast<const int*>(level.column), lanes), position);
    } else {
      threshold = _mm256_i32gather_ps(level.threshold, position, 4);
      column = _mm256_i32gather_epi32(reinterpret_cast<const int*>(level.column), position, 4);
    }
    const __m256i feature = _mm256_and_si256(column, _mm256_set1_epi32(static_cast<int>(~kMissingRight)));
    const __m256 value = _mm256_i32gather_ps(base, _mm256_add_epi32(lane_offset_, feature), 4);
    const __m256i greater = _mm256_castps_si256(_mm256_cmp_ps(value, threshold, _CMP_NLE_UQ));
    const __m256i number = _mm256_castps_si256(_mm256_cmp_ps(value, value, _CMP_ORD_Q));
    const __m256i right = _mm256_and_si256(greater, _mm256_or_si256(_mm256_srai_epi32(column, 31), number));
    position = _mm256_sub_epi32(_mm256_add_epi32(position, position), right);  // 2p + right (right = -1: true)
  }

  __attribute__((target("avx2"))) static void store(std::uint32_t* leaf, const Positions& position) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(leaf), position);
  }

 private:
  __m256i lane_offset_;  // each lane's row offset from base, in floats
};

// AVX-512, 16 rows per vector: the comparison in mask registers; levels of up
// to 32 splits permuted.
class Avx512Vector {
 public:
  static constexpr std::size_t kLanes = 16;
  using Positions = __m512i;

  __attribute__((target("avx512f"))) explicit Avx512Vector(std::size_t stride)
      : lane_offset_(_mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32(static_cast<int>(stride)))) {}

  __attribute__((target("avx512f"))) void advance(const TreeLevel& level, const float* base,
                                                  Positions& position) const {
    __m512 threshold;
    __m512i column;
    if (level.width <= 16) {
      const auto lanes = static_cast<__mmask16>((1u << level.width) - 1);
      threshold = _mm512_permutexvar_ps(position, _mm512_maskz_loadu_ps(lanes, level.threshold));
      column = _mm512_permutexvar_epi32(position, _mm512_maskz_loadu_epi32(lanes, level.column));
    } else if (level.width == 32) {
      threshold = _mm512_permutex2var_ps(_mm512_loadu_ps(level.threshold), position,
                                         _mm512_loadu_ps(level.threshold + 16));
      column = _mm512_permutex2var_epi32(_mm512_loadu_si512(level.column), position,
                                         _mm512_loadu_si512(level.column + 16));
    } else {
      threshold = _mm512_i32gather_ps(position, level.threshold, 4);
      column = _mm512_i32gather_epi32(position, level.column, 4);
    }
    const __m512i feature = _mm512_and_si512(column, _mm512_set1_epi32(static_cast<int>(~kMissingRight)));
    const __m512 value = _mm512_i32gather_ps(_mm512_add_epi32(lane_offset_, feature), base, 4);
    const __mmask16 greater = _mm512_cmp_ps_mask(value, threshold, _CMP_NLE_UQ);
    const __mmask16 number = _mm512_cmp_ps_mask(value, value, _CMP_ORD_Q);
    const __mmask16 missing_right =
        _mm512_test_epi32_mask(column, _mm512_set1_epi32(static_cast<int>(kMissingRight)));
    const __mmask16 right = _kand_mask16(greater, _kor_mask16(missing_right, number));
    const __m512i twice = _mm512_add_epi32(position, position);
    position = _mm512_mask_add_epi32(twice, right, twice, _mm512_set1_epi32(1));
  }

  __attribute__((target("avx512f"))) static void store(std::uint32_t* leaf, const Positions& position) {
    _mm512_storeu_si512(leaf, position);
  }

 private:
  __m512i lane_offset_;  // each lane's row offset from base, in floats
};

__attribute__((target("avx2"), flatten)) std::size_t walk_avx2(const DenseTree& tree, const float* rows,
                                                                std::size_t n, std::size_t stride,
                                                                std::uint32_t* leaf) {
  return walk_blocks<Avx2Vector>(tree, rows, n, stride, leaf);
}

__attribute__((target("avx512f"), flatten)) std::size_t walk_avx512(const DenseTree& tree, const float* rows,
                                                                     std::size_t n, std::size_t stride,
                                                                     std::uint32_t* leaf) {
  return walk_blocks<Avx512Vector>(tree, rows, n, stride, leaf);
}

#endif  // FASTROUTE_X86_KERNELS

TreeWalk detect_best() {
  if (tree_walk_supported(TreeWalk::kAvx512)) return TreeWalk::kAvx512;
  if (tree_walk_supported(TreeWalk::kAvx2)) return TreeWalk::kAvx2;
  return TreeWalk::kScalar;
}

}  // namespace

bool tree_walk_supported(TreeWalk walk) {
  switch (walk) {
    case TreeWalk::kScalar: return true;
#if FASTROUTE_X86_KERNELS
    case TreeWalk::kAvx2: return __builtin_cpu_supports("avx2");
    case TreeWalk::kAvx512: return __builtin_cpu_supports("avx512f");
#else
    case TreeWalk::kAvx2:
    case TreeWalk::kAvx512: return false;
#endif
  }
  return false;
}

TreeWalk best_tree_walk() {
  static const TreeWalk best = detect_best();
  return best;
}

void walk_dense(TreeWalk walk, const DenseTree& tree, const float* rows, std::size_t n, std::size_t stride,
                std::uint32_t* leaf) {
#if FASTROUTE_X86_KERNELS
  // Fewer rows than a vector block (a routed request is one row): the vector
  // kernels would only set up their constants and hand the rows to the scalar walk.
  std::size_t done = 0;
  if (walk == TreeWalk::kAvx512 && n >= kBlockRows<Avx512Vector>) done = walk_avx512(tree, rows, n, stride, leaf);
  if (walk == TreeWalk::kAvx2 && n >= kBlockRows<Avx2Vector>) done = walk_avx2(tree, rows, n, stride, leaf);
#else
  constexpr std::size_t done = 0;
#endif
  walk_scalar_any(tree, rows + done * stride, n - done, stride, leaf + done);
}

}  // namespace fastroute
