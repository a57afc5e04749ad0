#include "analyzer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "errors.hpp"
#include "magic.hpp"
#include "text.hpp"

namespace fastroute {
namespace {

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();
constexpr std::int64_t kMinImageSide = 8;
constexpr std::int64_t kMinFloatAudioSamples = 8000;  // one second at 8 kHz
constexpr std::int64_t kMinPcmSamples = 1024;         // 23 ms at 44.1 kHz
constexpr std::int64_t kSmoothGrid = 32;
constexpr double kSmoothRatio = 0.6;  // measured: tables >= 0.63, photos and 64x64 tiles <= 0.73 (README)
constexpr std::size_t kEntropyPrefix = 1024;  // bytes of a binary file the entropy looks at
// Work (elements or bytes) each extra thread must get. Measured on the 2-core
// dev machine: a std::thread start + join costs ~34 us, a float32 element
// ~2 ns, so 2^17 elements (~260 us) keep thread overhead near 10%.
constexpr std::int64_t kWorkPerThread = std::int64_t{1} << 17;

std::string shape_text(std::span<const std::int64_t> shape) {
  std::string text = "(";
  for (std::size_t d = 0; d < shape.size(); ++d) text += std::to_string(shape[d]) + (d + 1 < shape.size() ? ", " : "");
  return text + (shape.size() == 1 ? ",)" : ")");
}

FeatureVector missing_features() {
  FeatureVector f;
  f.fill(kMissing);
  return f;
}

// ---- Reading elements of any numeric dtype --------------------------------

struct Half {
  std::uint16_t bits;
};
struct Bool {
  std::uint8_t byte;
};

double to_double(Half h) {
  const int exponent = (h.bits >> 10) & 0x1F;
  const int mantissa = h.bits & 0x3FF;
  const double sign = (h.bits & 0x8000) ? -1.0 : 1.0;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  if (exponent == 31) return mantissa ? std::numeric_limits<double>::quiet_NaN() : sign * HUGE_VAL;
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}
double to_double(Bool b) { return b.byte != 0; }
template <class T>
double to_double(T v) {
  return static_cast<double>(v);
}

template <class T, bool Swapped>
inline double load(const std::byte* p) {
  std::array<std::byte, sizeof(T)> raw;
  std::memcpy(raw.data(), p, sizeof(T));  // any alignment
  if constexpr (Swapped) std::reverse(raw.begin(), raw.end());
  T value;
  std::memcpy(&value, raw.data(), sizeof(T));
  return to_double(value);
}

template <class T>
constexpr bool kCanBeNonFinite = std::is_floating_point_v<T> || std::is_same_v<T, Half>;

// Calls visit.template operator()<T, Swapped>() for the view's element type.
template <class Visitor>
void visit_dtype(DtypeKind kind, int itemsize, bool swapped, Visitor&& visit) {
  auto with_order = [&]<class T>() {
    if (swapped && sizeof(T) > 1) {
      visit.template operator()<T, true>();
    } else {
      visit.template operator()<T, false>();
    }
  };
  switch (kind) {
    case DtypeKind::kBool:
      if (itemsize == 1) return with_order.template operator()<Bool>();
      break;
    case DtypeKind::kInt:
      if (itemsize == 1) return with_order.template operator()<std::int8_t>();
      if (itemsize == 2) return with_order.template operator()<std::int16_t>();
      if (itemsize == 4) return with_order.template operator()<std::int32_t>();
      if (itemsize == 8) return with_order.template operator()<std::int64_t>();
      break;
    case DtypeKind::kUInt:
      if (itemsize == 1) return with_order.template operator()<std::uint8_t>();
      if (itemsize == 2) return with_order.template operator()<std::uint16_t>();
      if (itemsize == 4) return with_order.template operator()<std::uint32_t>();
      if (itemsize == 8) return with_order.template operator()<std::uint64_t>();
      break;
    case DtypeKind::kFloat:
      if (itemsize == 2) return with_order.template operator()<Half>();
      if (itemsize == 4) return with_order.template operator()<float>();
      if (itemsize == 8) return with_order.template operator()<double>();
      if (itemsize == static_cast<int>(sizeof(long double))) return with_order.template operator()<long double>();
      break;
  }
  throw UnsupportedInput("unsupported element type: " + std::string(kDtypeKindNames[static_cast<int>(kind)]) +
                         " of " + std::to_string(itemsize) + " bytes");
}

// ---- Value statistics -------------------------------------------------------

// Running sums relative to a shift (the first value), which keeps the
// one-pass variance accurate when values sit far from zero. The sums, min,
// max and zeros cover the finite values only; NaN and +-Inf are counted.
struct Moments {
  double shift = 0.0, sum = 0.0, sum_sq = 0.0;
  double min = HUGE_VAL, max = -HUGE_VAL;
  std::int64_t zeros = 0, count = 0;  // count: values in the sums
  std::int64_t nans = 0, infs = 0;    // counted by the careful scan only

  // NaN/Inf poison the fast scan's sums: the caller then rescans carefully.
  // Huge finite values can overflow the squares too (a false alarm the
  // rescan settles).
  bool maybe_non_finite() const { return !std::isfinite(sum) || !std::isfinite(sum_sq); }
  std::int64_t total() const { return count + nans + infs; }
};

// Four lanes in two SIMD registers (GCC/Clang vector extensions; SSE2 on
// x86-64) keep the running values in registers and halve the add chains.
// Every value goes into the sums: a NaN or Inf among them makes the sums
// non-finite, and the careful scan (accumulate_finite) takes over.
using Pair = double __attribute__((vector_size(16)));
using PairCount = std::int64_t __attribute__((vector_size(16)));

template <class T, bool Swapped, bool Contiguous>
inline void accumulate_pairs(const std::byte* p, std::int64_t n, std::int64_t stride, Moments& m) {
  if constexpr (Contiguous) stride = sizeof(T);
  const Pair zero = {0.0, 0.0}, shift = {m.shift, m.shift};
  Pair sum[2] = {zero, zero}, sum_sq[2] = {zero, zero};
  Pair lo[2] = {{m.min, m.min}, {m.min, m.min}}, hi[2] = {{m.max, m.max}, {m.max, m.max}};
  PairCount zeros[2] = {};
  const auto add = [&](int k, Pair v) {
    const Pair d = v - shift;
    sum[k] += d;
    sum_sq[k] += d * d;
    lo[k] = v < lo[k] ? v : lo[k];
    hi[k] = v > hi[k] ? v : hi[k];
    zeros[k] -= v == zero;  // a true lane is -1
  };
  std::int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const std::byte* q = p + i * stride;
#if defined(__SSE2__)
    if constexpr (Contiguous && std::is_same_v<T, float> && !Swapped) {  // the common batch: one load, two conversions
      const __m128 four = _mm_loadu_ps(reinterpret_cast<const float*>(q));
      add(0, _mm_cvtps_pd(four));
      add(1, _mm_cvtps_pd(_mm_movehl_ps(four, four)));
      continue;
    }
#endif
    add(0, Pair{load<T, Swapped>(q), load<T, Swapped>(q + stride)});
    add(1, Pair{load<T, Swapped>(q + 2 * stride), load<T, Swapped>(q + 3 * stride)});
  }
  for (int k = 0; k < 2; ++k) {
    m.sum += sum[k][0] + sum[k][1];
    m.sum_sq += sum_sq[k][0] + sum_sq[k][1];
    m.min = std::min({m.min, lo[k][0], lo[k][1]});
    m.max = std::max({m.max, hi[k][0], hi[k][1]});
    m.zeros += zeros[k][0] + zeros[k][1];
  }
  for (; i < n; ++i) {  // the last n % 4 values
    const double v = load<T, Swapped>(p + i * stride), d = v - m.shift;
    m.sum += d, m.sum_sq += d * d, m.zeros += v == 0.0;
    m.min = v < m.min ? v : m.min;
    m.max = v > m.max ? v : m.max;
  }
  m.count += n;
}

// The careful scan: NaN and Inf are counted and left out of the sums.
template <class T, bool Swapped>
void accumulate_finite(const std::byte* p, std::int64_t n, std::int64_t stride, Moments& m) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = load<T, Swapped>(p + i * stride);
    if (std::isnan(v)) {
      ++m.nans;
    } else if (std::isinf(v)) {
      ++m.infs;
    } else {
      const double d = v - m.shift;
      m.sum += d, m.sum_sq += d * d, m.zeros += v == 0.0, ++m.count;
      m.min = std::min(m.min, v);
      m.max = std::max(m.max, v);
    }
  }
}

enum class Scan : bool { kFast, kFinite };

// Any sign of stride: the statistics ignore order.
template <class T, bool Swapped, Scan How>
inline void accumulate(const std::byte* p, std::int64_t n, std::int64_t stride, Moments& m) {
  if constexpr (How == Scan::kFinite) {
    accumulate_finite<T, Swapped>(p, n, stride, m);
  } else if (stride == static_cast<std::int64_t>(sizeof(T))) {
    accumulate_pairs<T, Swapped, true>(p, n, stride, m);
  } else {
    accumulate_pairs<T, Swapped, false>(p, n, stride, m);
  }
}

// The view reordered for the fastest walk: positive strides, unit and
// broadcast (0-stride) axes dropped, the smallest stride innermost,
// contiguous axes merged. A broadcast axis repeats every other value the
// same number of times, so neither it nor the visiting order changes the
// statistics; a broadcast array costs only its distinct elements.
struct Walk {
  const std::byte* base = nullptr;
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> extent, stride;  // first ndim entries used
};

Walk plan_walk(const ArrayView& a) {
  Walk w;
  w.base = a.data;
  for (int d = 0; d < a.ndim; ++d) {
    if (a.shape[d] == 1 || a.strides[d] == 0) continue;
    std::int64_t stride = a.strides[d];
    if (stride < 0) {
      w.base += stride * (a.shape[d] - 1);
      stride = -stride;
    }
    w.extent[w.ndim] = a.shape[d];
    w.stride[w.ndim++] = stride;
  }
  // Insertion sort by decreasing stride (ndim is small).
  for (int i = 1; i < w.ndim; ++i) {
    for (int j = i; j > 0 && w.stride[j - 1] < w.stride[j]; --j) {
      std::swap(w.stride[j - 1], w.stride[j]);
      std::swap(w.extent[j - 1], w.extent[j]);
    }
  }
  int merged = 0;
  for (int d = 0; d < w.ndim; ++d) {
    if (merged > 0 && w.stride[merged - 1] == w.stride[d] * w.extent[d]) {
      w.extent[merged - 1] *= w.extent[d];
      w.stride[merged - 1] = w.stride[d];
    } else {
      w.extent[merged] = w.extent[d];
      w.stride[merged++] = w.stride[d];
    }
  }
  w.ndim = merged;
  if (w.ndim == 0) w.extent[0] = 1, w.stride[0] = 0, w.ndim = 1;  // a single element
  return w;
}

// Elements the walk visits.
std::int64_t distinct_elements(const Walk& w) {
  std::int64_t count = 1;
  for (int d = 0; d < w.ndim; ++d) count *= w.extent[d];
  return count;
}

template <class T, bool Swapped>
Moments start_moments(const std::byte* first) {
  Moments m;
  m.shift = load<T, Swapped>(first);
  if (!std::isfinite(m.shift)) m.shift = 0.0;
  return m;
}

template <class T, bool Swapped, Scan How>
Moments scan(const Walk& w) {
  Moments m = start_moments<T, Swapped>(w.base);
  const int inner = w.ndim - 1;
  if (inner == 0) {
    accumulate<T, Swapped, How>(w.base, w.extent[0], w.stride[0], m);
    return m;
  }
  std::array<std::int64_t, kMaxDims> index;
  std::fill_n(index.begin(), inner, 0);
  const std::byte* p = w.base;
  for (;;) {
    accumulate<T, Swapped, How>(p, w.extent[inner], w.stride[inner], m);
    int d = inner - 1;
    for (; d >= 0; --d) {
      p += w.stride[d];
      if (++index[d] < w.extent[d]) break;
      p -= w.stride[d] * w.extent[d];
      index[d] = 0;
    }
    if (d < 0) return m;
  }
}

// The statistics of the walk's values: one fast pass, and a careful second
// one only when the first hints at a NaN or Inf.
template <class T, bool Swapped>
Moments moments_of(const Walk& w) {
  const Moments fast = scan<T, Swapped, Scan::kFast>(w);
  if (!kCanBeNonFinite<T> || !fast.maybe_non_finite()) return fast;
  return scan<T, Swapped, Scan::kFinite>(w);
}

// mean/std/min/max over the finite values (missing if there are none); the
// zero, NaN and Inf shares over all values.
void write_moments(const Moments& m, float* f) {
  const double inverse_total = 1.0 / static_cast<double>(m.total());
  f[kZeroShare] = static_cast<float>(static_cast<double>(m.zeros) * inverse_total);
  f[kNanShare] = static_cast<float>(static_cast<double>(m.nans) * inverse_total);
  f[kInfShare] = static_cast<float>(static_cast<double>(m.infs) * inverse_total);
  if (m.count == 0) return;
  const double inverse_n = 1.0 / static_cast<double>(m.count);
  const double mean_shifted = m.sum * inverse_n;
  f[kMean] = static_cast<float>(m.shift + mean_shifted);
  f[kStd] = static_cast<float>(std::sqrt(std::max(0.0, m.sum_sq * inverse_n - mean_shifted * mean_shifted)));
  f[kMin] = static_cast<float>(m.min);
  f[kMax] = static_cast<float>(m.max);
}

// ---- Modality of an array shape --------------------------------------------

struct Layout {
  Modality modality = Modality::kTabular;
  std::int64_t height = 0, width = 0, channels = 0, samples = 0;
};

bool is_channel_count(std::int64_t n) { return n == 1 || n == 3 || n == 4; }

Layout image(std::int64_t height, std::int64_t width, std::int64_t channels) {
  return {Modality::kImage, height, width, channels, 0};
}
Layout audio(std::int64_t channels, std::int64_t samples) { return {Modality::kAudio, 0, 0, channels, samples}; }

// What the heuristics know of an array's values: the range of its finite
// values; `known` is false when no finite value was read (NPY headers, or
// only NaN and Inf).
struct ValueRange {
  bool known = false;
  double min = 0.0, max = 0.0;
};

ValueRange range_of(const Moments& m) { return m.count ? ValueRange{true, m.min, m.max} : ValueRange{}; }

// A waveform is centred on zero, so its values take both signs: PCM integers
// (int16, int32) of at least kMinPcmSamples samples, or float samples within
// [-1, 1] (the float audio convention) of at least kMinFloatAudioSamples.
// Floats need more evidence: they are the tabular dtype too (a normalised
// embedding of a few thousand values also lies within [-1, 1]).
bool is_waveform(DtypeKind kind, int itemsize, std::int64_t samples, const ValueRange& v) {
  if (!v.known || !(v.min < 0.0 && v.max > 0.0)) return false;
  if (kind == DtypeKind::kInt && (itemsize == 2 || itemsize == 4)) return samples >= kMinPcmSamples;
  return kind == DtypeKind::kFloat && samples >= kMinFloatAudioSamples && v.min >= -1.0 && v.max <= 1.0;
}

// Whether neighbouring values of a 2-D view are alike, as in a photo or a
// scan, unlike a table whose neighbouring cells are different samples and
// different features. On a grid of up to kSmoothGrid x kSmoothGrid points,
// the mean absolute difference to the right neighbour and to the lower one
// must each be at most kSmoothRatio times the mean absolute difference to the
// grid point half the grid away. Non-finite values are skipped; a constant
// array counts as smooth. Reads at most 4 * kSmoothGrid^2 values.
// Byte offsets of `points` positions spread evenly over [0, extent - 2] along
// an axis: floor(k * (extent - 1) / points), split so it cannot overflow.
std::array<std::int64_t, kSmoothGrid> grid_offsets(std::int64_t points, std::int64_t extent, std::int64_t stride) {
  std::array<std::int64_t, kSmoothGrid> offsets{};
  const std::int64_t span = extent - 1, whole = span / points, part = span % points;
  for (std::int64_t k = 0; k < points; ++k) offsets[k] = (k * whole + k * part / points) * stride;
  return offsets;
}

template <class T, bool Swapped>
bool looks_smooth(const ArrayView& a) {
  const std::int64_t rows = std::min(kSmoothGrid, a.shape[0] - 1), cols = std::min(kSmoothGrid, a.shape[1] - 1);
  const auto row_at = grid_offsets(rows, a.shape[0], a.strides[0]);
  const auto col_at = grid_offsets(cols, a.shape[1], a.strides[1]);
  std::array<std::int64_t, kSmoothGrid> far_col_at{};  // each column's partner half the grid away
  for (std::int64_t l = 0; l < cols; ++l) far_col_at[l] = col_at[(l + cols / 2) % cols];
  double right = 0.0, down = 0.0, far = 0.0;
  for (std::int64_t k = 0; k < rows; ++k) {
    const std::byte* row = a.data + row_at[k];
    const std::byte* far_row = a.data + row_at[(k + rows / 2) % rows];
    for (std::int64_t l = 0; l < cols; ++l) {
      const std::byte* p = row + col_at[l];
      const double v = load<T, Swapped>(p), r = load<T, Swapped>(p + a.strides[1]),
                   d = load<T, Swapped>(p + a.strides[0]), f = load<T, Swapped>(far_row + far_col_at[l]);
      if (!std::isfinite(v) || !std::isfinite(r) || !std::isfinite(d) || !std::isfinite(f)) continue;
      right += std::fabs(v - r), down += std::fabs(v - d), far += std::fabs(v - f);
    }
  }
  return right <= kSmoothRatio * far && down <= kSmoothRatio * far;
}

// `smooth()` answers looks_smooth for a 2-D array (asked only when the shape
// could be an image).
template <class Smooth>
Layout guess_layout(std::span<const std::int64_t> s, DtypeKind kind, int itemsize, const ValueRange& values,
                    Smooth&& smooth) {
  const auto big = [](std::int64_t side) { return side >= kMinImageSide; };
  const auto waveform = [&](std::int64_t samples) { return is_waveform(kind, itemsize, samples, values); };
  switch (s.size()) {
    case 1:
      return waveform(s[0]) ? audio(1, s[0]) : Layout{};
    case 2:
      if (s[0] <= 2 && waveform(s[1])) return audio(s[0], s[1]);  // channels x samples (torchaudio)
      if (s[1] <= 2 && waveform(s[0])) return audio(s[1], s[0]);  // samples x channels (scipy.io.wavfile)
      return big(s[0]) && big(s[1]) && smooth() ? image(s[0], s[1], 1) : Layout{};
    case 3:
      if (is_channel_count(s[2]) && big(s[0]) && big(s[1])) return image(s[0], s[1], s[2]);
      if (is_channel_count(s[0]) && big(s[1]) && big(s[2])) return image(s[1], s[2], s[0]);
      return Layout{};
    default:
      return Layout{};
  }
}

// The layout a hint (not kAuto) asks for.
Layout hinted_layout(std::span<const std::int64_t> s, Hint hint) {
  if (hint == Hint::kTabular) return Layout{};
  if (hint == Hint::kImage) {
    if (s.size() == 2) return image(s[0], s[1], 1);
    if (s.size() == 3 && is_channel_count(s[2])) return image(s[0], s[1], s[2]);
    if (s.size() == 3 && is_channel_count(s[0])) return image(s[1], s[2], s[0]);
  } else if (hint == Hint::kAudio) {
    if (s.size() == 1) return audio(1, s[0]);
    if (s.size() == 2) return s[0] <= s[1] ? audio(s[0], s[1]) : audio(s[1], s[0]);
  }
  throw InvalidInput(std::string("hint '") + (hint == Hint::kImage ? "image" : "audio") +
                     "' does not fit an array of shape " + shape_text(s) +
                     (hint == Hint::kImage ? " (needs H x W, H x W x C or C x H x W with C in 1, 3, 4)"
                                           : " (needs samples or channels x samples)"));
}

// The modality and what its layout says (image sides, audio channels and
// samples per channel as `length`).
void write_layout_features(const Layout& layout, float* f) {
  f[kModality] = static_cast<float>(layout.modality);
  if (layout.modality == Modality::kImage) {
    f[kHeight] = static_cast<float>(layout.height);
    f[kWidth] = static_cast<float>(layout.width);
    f[kAspectRatio] = static_cast<float>(static_cast<double>(layout.width) / static_cast<double>(layout.height));
  }
  if (layout.modality == Modality::kAudio) f[kLength] = static_cast<float>(layout.samples);
  if (layout.modality != Modality::kTabular) f[kChannels] = static_cast<float>(layout.channels);
}

std::int64_t element_count(const ArrayView& a) {
  if (a.ndim < 0 || a.ndim > kMaxDims) throw InvalidInput("array rank " + std::to_string(a.ndim) + " is out of range");
  std::int64_t count = 1;
  const std::span<const std::int64_t> shape(a.shape.data(), static_cast<std::size_t>(a.ndim));
  for (int d = 0; d < a.ndim; ++d) {
    const std::int64_t extent = a.shape[d], stride = a.strides[d];
    if (extent < 0) throw InvalidInput("array shape " + shape_text(shape) + " has a negative dimension");
    std::int64_t span = 0;  // bytes between the axis' first and last element
    if (extent > 1 && (__builtin_mul_overflow(stride, extent - 1, &span) || span == std::numeric_limits<std::int64_t>::min())) {
      throw InvalidInput("array stride " + std::to_string(stride) + " of axis " + std::to_string(d) + " overflows");
    }
    if (__builtin_mul_overflow(count, extent, &count)) throw InvalidInput("array shape " + shape_text(shape) + " overflows");
  }
  if (count == 0) throw InvalidInput("empty array of shape " + shape_text(shape));
  return count;
}

// What the dtype and element count say: shared by single arrays and batch rows.
FeatureVector array_features(const ArrayView& a, std::int64_t count) {
  FeatureVector f = missing_features();
  f[kSource] = static_cast<float>(Source::kArray);
  f[kNdim] = static_cast<float>(a.ndim);
  f[kLength] = static_cast<float>(count);
  f[kSizeBytes] = static_cast<float>(static_cast<double>(count) * a.itemsize);  // a broadcast array's logical size
  f[kDtypeKind] = static_cast<float>(a.kind);
  f[kItemsize] = static_cast<float>(a.itemsize);
  return f;
}

// ---- Files -------------------------------------------------------------------

Modality modality_of(FileKind kind) {
  switch (kind) {
    case FileKind::kPng: case FileKind::kJpeg: case FileKind::kGif:
    case FileKind::kWebp: case FileKind::kBmp: case FileKind::kTiff:
      return Modality::kImage;
    case FileKind::kWav: case FileKind::kFlac: case FileKind::kOgg: case FileKind::kMp3:
      return Modality::kAudio;
    case FileKind::kPdf:
      return Modality::kDocument;
    case FileKind::kZip: case FileKind::kGzip:
      return Modality::kArchive;
    case FileKind::kJson: case FileKind::kText:
      return Modality::kText;
    case FileKind::kNpy: case FileKind::kUnknown:
      break;
  }
  return Modality::kBinary;
}

// The header's shape and dtype, with the array heuristics; the values are not
// read, so the rules that need them (audio, 2-D images) do not apply.
void write_npy_features(const FileFacts& facts, float* f) {
  const std::span<const std::int64_t> shape(facts.shape.data(), static_cast<std::size_t>(facts.ndim));
  std::int64_t count = 1;
  for (std::int64_t dim : shape) count *= dim;  // overflow rejected by detect_file
  constexpr std::string_view kKinds = "biuf";  // DtypeKind order
  const std::size_t kind = kKinds.find(facts.dtype_kind);
  const bool known = facts.dtype_kind != 0 && kind != std::string_view::npos;
  const Layout layout =
      count ? guess_layout(shape, DtypeKind::kBool, facts.itemsize, ValueRange{}, [] { return false; }) : Layout{};
  f[kNdim] = static_cast<float>(shape.size());
  f[kLength] = static_cast<float>(count);
  write_layout_features(layout, f);
  if (known) f[kDtypeKind] = static_cast<float>(kind);
  if (facts.itemsize) f[kItemsize] = static_cast<float>(facts.itemsize);
}

void write_file_facts(const FileFacts& facts, float* f) {
  const auto stated = [](auto v) { return v ? static_cast<float>(v) : kMissing; };
  f[kHeight] = stated(facts.height);
  f[kWidth] = stated(facts.width);
  f[kChannels] = stated(facts.channels);
  f[kSampleRate] = stated(facts.sample_rate);
  f[kDuration] = stated(facts.duration_s);
  if (facts.height) f[kAspectRatio] = static_cast<float>(static_cast<double>(facts.width) / facts.height);
}

// ---- Batches -----------------------------------------------------------------

// Runs analyze_one(i) for i in [0, n) on enough threads for `work`, each on a
// contiguous chunk; a chunk stops at its first failure and the lowest failing
// index is reported.
template <class AnalyzeOne>
void for_each_item(std::int64_t n, std::int64_t work, const char* item_name, AnalyzeOne&& analyze_one) {
  const std::int64_t cores = std::max(1u, std::thread::hardware_concurrency());
  const std::int64_t workers = std::clamp<std::int64_t>(work / kWorkPerThread, 1, std::min(cores, n > 0 ? n : 1));
  struct Failure {
    std::int64_t index = -1;
    std::exception_ptr error;
  };
  std::vector<Failure> failures(static_cast<std::size_t>(workers));
  auto run_chunk = [&](std::int64_t worker) {
    const std::int64_t begin = n * worker / workers, end = n * (worker + 1) / workers;
    std::int64_t i = begin;
    try {
      for (; i < end; ++i) analyze_one(i);
    } catch (...) {
      failures[static_cast<std::size_t>(worker)] = {i, std::current_exception()};
    }
  };
  {
    std::vector<std::jthread> threads;
    threads.reserve(static_cast<std::size_t>(workers - 1));
    for (std::int64_t w = 1; w < workers; ++w) threads.emplace_back(run_chunk, w);
    run_chunk(0);
  }  // joined
  for (const Failure& failure : failures) {
    if (failure.error) rethrow_with_context(failure.error, std::string(item_name) + " " + std::to_string(failure.index) + ": ");
  }
}

void write_row(const Analysis& analysis, std::int64_t i, BatchOutput out) {
  std::memcpy(out.features + i * kNumFeatures, analysis.features.data(), sizeof(FeatureVector));
  out.codes[i] = static_cast<std::uint8_t>(analysis.modality);
}

std::int64_t work_of(const Input& input) {
  if (const auto* a = std::get_if<ArrayView>(&input)) return distinct_elements(plan_walk(*a));
  if (const auto* t = std::get_if<TextInput>(&input)) return static_cast<std::int64_t>(t->utf8.size());
  return static_cast<std::int64_t>(std::get<BytesInput>(input).bytes.size());
}

void append_value(std::string& out, float value) {
  char text[32];
  if (std::nearbyint(value) == value && std::fabs(value) < 1e15f) {
    std::snprintf(text, sizeof text, "%.0f", static_cast<double>(value));
  } else {
    std::snprintf(text, sizeof text, "%.6g", static_cast<double>(value));
  }
  out += text;
}

// A coded feature's name ("image", "float"), or the number itself.
void append_feature(std::string& out, Feature feature, float value) {
  const auto name = [&](auto names) {
    // Range first: converting an out-of-range float to an integer is undefined.
    if (value >= 0.0f && value < static_cast<float>(names.size()) && std::nearbyint(value) == value) {
      out += names[static_cast<std::size_t>(value)];
    } else {
      append_value(out, value);
    }
  };
  switch (feature) {
    case kModality: return name(kModalityNames);
    case kSource: return name(kSourceNames);
    case kMime: return name(kMimeNames);
    case kDtypeKind: return name(kDtypeKindNames);
    case kScript: return name(kScriptNames);
    default: return append_value(out, value);
  }
}

}  // namespace

Hint parse_hint(std::string_view hint) {
  if (hint == "tabular") return Hint::kTabular;
  if (hint == "image") return Hint::kImage;
  if (hint == "audio") return Hint::kAudio;
  throw InvalidInput("hint '" + std::string(hint) + "' is not one of 'tabular', 'image', 'audio'");
}

Analysis analyze_array(const ArrayView& a, Hint hint) {
  const std::int64_t count = element_count(a);
  const std::span<const std::int64_t> shape(a.shape.data(), static_cast<std::size_t>(a.ndim));
  Layout layout = hint == Hint::kAuto ? Layout{} : hinted_layout(shape, hint);  // a hint that does not fit fails first
  FeatureVector f = array_features(a, count);
  visit_dtype(a.kind, a.itemsize, a.byteswapped, [&]<class T, bool Swapped>() {
    const Moments m = moments_of<T, Swapped>(plan_walk(a));
    write_moments(m, f.data());
    if (hint == Hint::kAuto) {
      layout = guess_layout(shape, a.kind, a.itemsize, range_of(m), [&] { return looks_smooth<T, Swapped>(a); });
    }
  });
  write_layout_features(layout, f.data());
  return {layout.modality, {}, f};
}

Analysis analyze_text(std::string_view utf8) {
  Analysis out{Modality::kText, {}, missing_features()};
  out.features[kModality] = static_cast<float>(Modality::kText);
  out.features[kSource] = static_cast<float>(Source::kStr);
  measure_text(utf8, TextCheck::kTrusted, out.features);
  return out;
}

Analysis analyze_bytes(std::span<const std::byte> bytes) {
  FileFacts facts = detect_file(bytes);
  FeatureVector f = missing_features();
  if (facts.kind == FileKind::kUnknown) {
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (measure_text(text, TextCheck::kSniff, f)) facts.kind = looks_like_json(text) ? FileKind::kJson : FileKind::kText;
  }
  const Modality modality = modality_of(facts.kind);
  if (modality != Modality::kText) f[kByteEntropy] = byte_entropy(bytes.first(std::min(bytes.size(), kEntropyPrefix)));
  if (facts.kind == FileKind::kNpy) {
    write_npy_features(facts, f.data());
  } else {
    write_file_facts(facts, f.data());
    f[kModality] = static_cast<float>(modality);
  }
  f[kSource] = static_cast<float>(Source::kBytes);
  f[kMime] = static_cast<float>(facts.kind);
  f[kSizeBytes] = static_cast<float>(bytes.size());
  return {static_cast<Modality>(f[kModality]), kMimeNames[static_cast<std::size_t>(facts.kind)], f};
}

Analysis analyze(const Input& input, Hint hint) {
  if (const auto* a = std::get_if<ArrayView>(&input)) return analyze_array(*a, hint);
  if (const auto* t = std::get_if<TextInput>(&input)) return analyze_text(t->utf8);
  return analyze_bytes(std::get<BytesInput>(input).bytes);
}

Analysis analysis_from_features(const FeatureVector& f) {
  const float modality = f[kModality];
  if (!(modality >= 0 && modality < kModalityNames.size()) || std::nearbyint(modality) != modality) {
    throw InvalidInput("feature row's modality code " + std::to_string(modality) + " is not one of MODALITIES");
  }
  Analysis out{static_cast<Modality>(modality), {}, f};
  const float mime = f[kMime];
  if (mime >= 0 && mime < kMimeNames.size()) out.mime = kMimeNames[static_cast<std::size_t>(mime)];
  return out;
}

void analyze_rows(const ArrayView& matrix, BatchOutput out) {
  if (matrix.ndim != 2) {
    throw InvalidInput("analyze_batch needs a 2-D array (rows are samples), got shape " +
                       shape_text({matrix.shape.data(), static_cast<std::size_t>(matrix.ndim)}));
  }
  const std::int64_t rows = matrix.shape[0];
  ArrayView row = matrix;
  row.ndim = 1;
  row.shape[0] = matrix.shape[1];
  row.strides[0] = matrix.strides[1];
  if (rows == 0) return;
  const std::int64_t length = element_count(row);
  FeatureVector row_features = array_features(row, length);
  write_layout_features(Layout{}, row_features.data());
  // Only rows long enough to be a waveform need their values to decide.
  const bool may_be_audio = is_waveform(row.kind, row.itemsize, length, ValueRange{true, -1.0, 1.0});
  const Walk first_row = plan_walk(row);
  const std::int64_t distinct_rows = matrix.strides[0] == 0 ? 1 : rows;  // broadcast rows are all alike
  visit_dtype(row.kind, row.itemsize, row.byteswapped, [&]<class T, bool Swapped>() {
    for_each_item(distinct_rows, distinct_rows * distinct_elements(first_row), "row", [&](std::int64_t i) {
      float* f = out.features + i * kNumFeatures;
      std::memcpy(f, row_features.data(), sizeof(FeatureVector));
      Walk this_row = first_row;
      this_row.base += i * matrix.strides[0];
      const Moments m = moments_of<T, Swapped>(this_row);
      write_moments(m, f);
      out.codes[i] = static_cast<std::uint8_t>(Modality::kTabular);
      if (may_be_audio && is_waveform(row.kind, row.itemsize, length, range_of(m))) {
        write_layout_features(audio(1, length), f);
        out.codes[i] = static_cast<std::uint8_t>(Modality::kAudio);
      }
    });
  });
  for (std::int64_t i = distinct_rows; i < rows; ++i) {
    std::memcpy(out.features + i * kNumFeatures, out.features, sizeof(FeatureVector));
    out.codes[i] = out.codes[0];
  }
}

void analyze_items(std::span<const Input> items, BatchOutput out) {
  std::int64_t work = 0;
  for (const Input& input : items) work += work_of(input);
  for_each_item(static_cast<std::int64_t>(items.size()), work, "item",
                [&](std::int64_t i) { write_row(analyze(items[i], Hint::kAuto), i, out); });
}

std::string summarize(const Analysis& a) {
  std::string out = "modality='" + std::string(kModalityNames[static_cast<std::size_t>(a.modality)]) + "'";
  if (!a.mime.empty()) out += ", mime='" + std::string(a.mime) + "'";
  for (Feature key : {kHeight, kWidth, kChannels, kSampleRate, kDuration, kLength, kWords, kScript, kDtypeKind}) {
    if (std::isnan(a.features[key])) continue;
    out += ", " + std::string(kFeatureNames[key]) + "=";
    append_feature(out, key, a.features[key]);
  }
  return out;
}

std::string explain(const Analysis& a) {
  std::string out = "Analysis: " + std::string(kModalityNames[static_cast<std::size_t>(a.modality)]) + " input\n";
  for (std::size_t k = 0; k < kNumFeatures; ++k) {
    const float value = a.features[k];
    if (std::isnan(value)) continue;
    out += "  " + std::string(kFeatureNames[k]) + ": ";
    append_feature(out, static_cast<Feature>(k), value);
    out += "\n";
  }
  return out + "  (features not listed are missing: NaN)";
}

}  // namespace fastroute
