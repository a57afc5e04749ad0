#include "tree_walk.hpp"

#include <algorithm>

#include "features.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
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

// AVX2. right = !(v <= t) & (missing_right | v is a number): NLE_UQ is true
// for NaN, which then goes right only where the split says so.
struct Avx2Level {
  const float* threshold;      // the level's first split
  const std::uint32_t* column;
  std::uint32_t width;         // splits in the level
};

__attribute__((target("avx2"))) inline __m256i advance_avx2(const Avx2Level& level, __m256i lane_offset,
                                                             __m256i position, const float* base) {
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
  const __m256 value = _mm256_i32gather_ps(base, _mm256_add_epi32(lane_offset, feature), 4);
  const __m256i greater = _mm256_castps_si256(_mm256_cmp_ps(value, threshold, _CMP_NLE_UQ));
  const __m256i number = _mm256_castps_si256(_mm256_cmp_ps(value, value, _CMP_ORD_Q));
  const __m256i right = _mm256_and_si256(greater, _mm256_or_si256(_mm256_srai_epi32(column, 31), number));
  return _mm256_sub_epi32(_mm256_add_epi32(position, position), right);  // 2p + right (right = -1: true)
}

// Two vectors of 8 rows per block: independent walks the CPU overlaps.
__attribute__((target("avx2"))) void walk_avx2(const DenseTree& tree, const float* rows, std::size_t n,
                                                std::size_t stride, std::uint32_t* leaf) {
  constexpr std::size_t kLanes = 8, kBlock = 2 * kLanes;
  const auto s = static_cast<int>(stride);
  const __m256i lane_offset = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
  std::size_t r = 0;
  for (; r + kBlock <= n; r += kBlock) {
    prefetch_rows(rows, r + kPrefetchRows, r + kPrefetchRows + kBlock, n, stride);
    const float* base0 = rows + r * stride;
    const float* base1 = base0 + kLanes * stride;
    __m256i position0 = _mm256_setzero_si256(), position1 = _mm256_setzero_si256();
    for (std::uint32_t depth = 0; depth < tree.depth; ++depth) {
      const std::uint32_t first = (1u << depth) - 1;
      const Avx2Level level{tree.threshold + first, tree.column + first, 1u << depth};
      position0 = advance_avx2(level, lane_offset, position0, base0);
      position1 = advance_avx2(level, lane_offset, position1, base1);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(leaf + r), position0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(leaf + r + kLanes), position1);
  }
  walk_scalar_any(tree, rows + r * stride, n - r, stride, leaf + r);
}

// AVX-512: the comparison in mask registers; levels of up to 32 splits permuted.
__attribute__((target("avx512f"))) inline __m512i advance_avx512(const Avx2Level& level, __m512i lane_offset,
                                                                  __m512i position, const float* base) {
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
  const __m512 value = _mm512_i32gather_ps(_mm512_add_epi32(lane_offset, feature), base, 4);
  const __mmask16 greater = _mm512_cmp_ps_mask(value, threshold, _CMP_NLE_UQ);
  const __mmask16 number = _mm512_cmp_ps_mask(value, value, _CMP_ORD_Q);
  const __mmask16 missing_right = _mm512_test_epi32_mask(column, _mm512_set1_epi32(static_cast<int>(kMissingRight)));
  const __mmask16 right = _kand_mask16(greater, _kor_mask16(missing_right, number));
  const __m512i twice = _mm512_add_epi32(position, position);
  return _mm512_mask_add_epi32(twice, right, twice, _mm512_set1_epi32(1));
}

// Two vectors of 16 rows per block.
__attribute__((target("avx512f"))) void walk_avx512(const DenseTree& tree, const float* rows, std::size_t n,
                                                     std::size_t stride, std::uint32_t* leaf) {
  constexpr std::size_t kLanes = 16, kBlock = 2 * kLanes;
  const __m512i lane_offset = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                 _mm512_set1_epi32(static_cast<int>(stride)));
  std::size_t r = 0;
  for (; r + kBlock <= n; r += kBlock) {
    prefetch_rows(rows, r + kPrefetchRows, r + kPrefetchRows + kBlock, n, stride);
    const float* base0 = rows + r * stride;
    const float* base1 = base0 + kLanes * stride;
    __m512i position0 = _mm512_setzero_si512(), position1 = _mm512_setzero_si512();
    for (std::uint32_t depth = 0; depth < tree.depth; ++depth) {
      const std::uint32_t first = (1u << depth) - 1;
      const Avx2Level level{tree.threshold + first, tree.column + first, 1u << depth};
      position0 = advance_avx512(level, lane_offset, position0, base0);
      position1 = advance_avx512(level, lane_offset, position1, base1);
    }
    _mm512_storeu_si512(leaf + r, position0);
    _mm512_storeu_si512(leaf + r + kLanes, position1);
  }
  walk_scalar_any(tree, rows + r * stride, n - r, stride, leaf + r);
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
  if (walk == TreeWalk::kAvx512 && n >= 32) return walk_avx512(tree, rows, n, stride, leaf);
  if (walk == TreeWalk::kAvx2 && n >= 16) return walk_avx2(tree, rows, n, stride, leaf);
#endif
  walk_scalar_any(tree, rows, n, stride, leaf);
}

}  // namespace fastroute
