// Analyzer: detects an input's modality and extracts the feature vector
// defined in features.hpp. Pure C++, no Python types; thread-safe (no shared
// state); the single-input paths never allocate except to build an error
// message. NaN and Inf are values like any other: counted (nan_share,
// inf_share) and left out of mean/std/min/max. Errors (errors.hpp):
// InvalidInput for empty arrays and shapes a hint cannot fit,
// UnsupportedInput for dtypes it cannot read, CorruptFile for broken file
// headers. An empty str or bytes is a text of length 0.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "features.hpp"

namespace fastroute {

inline constexpr int kMaxDims = 64;  // numpy's NPY_MAXDIMS

// A non-owning numpy-style view: any rank, byte strides of any sign, any
// alignment (0 for broadcast axes, which cost nothing), native or swapped
// byte order. The caller guarantees that every element the shape and strides
// address lies in readable memory.
struct ArrayView {
  const std::byte* data = nullptr;
  DtypeKind kind = DtypeKind::kFloat;
  int itemsize = 0;
  bool byteswapped = false;
  int ndim = 0;
  std::array<std::int64_t, kMaxDims> shape;    // first ndim entries used
  std::array<std::int64_t, kMaxDims> strides;  // in bytes
};

// How to read an array whose shape is ambiguous; kAuto applies the documented
// heuristics (python/fastroute/analyzer.py).
enum class Hint : std::uint8_t { kAuto, kTabular, kImage, kAudio };

// Parses "tabular" / "image" / "audio"; throws InvalidInput naming the hint.
Hint parse_hint(std::string_view hint);

struct Analysis {
  Modality modality = Modality::kBinary;
  std::string_view mime;  // static string; empty when not from bytes
  FeatureVector features{};
};

struct TextInput {
  std::string_view utf8;  // known-valid UTF-8 (a Python str)
};
struct BytesInput {
  std::span<const std::byte> bytes;  // file contents
};
using Input = std::variant<ArrayView, TextInput, BytesInput>;

Analysis analyze_array(const ArrayView& array, Hint hint);
Analysis analyze_text(std::string_view utf8);
Analysis analyze_bytes(std::span<const std::byte> bytes);
Analysis analyze(const Input& input, Hint hint);

// Rebuilds an Analysis from a feature row (as analyze_batch writes them).
// Throws InvalidInput if the modality code is not one.
Analysis analysis_from_features(const FeatureVector& features);

// Batch results: `features` is n x kNumFeatures row-major, `codes` n modality
// codes. Both must hold n entries. Runs on several threads when the work is
// large. On error throws the first failing item's error (lowest index), its
// message prefixed with the item's index.
struct BatchOutput {
  float* features;
  std::uint8_t* codes;
};

// Each row of a 2-D `matrix` is analysed as a 1-D array.
void analyze_rows(const ArrayView& matrix, BatchOutput out);
void analyze_items(std::span<const Input> items, BatchOutput out);

// A short one-line summary ("image/png 30x20x3") and a multi-line listing of
// every present feature.
std::string summarize(const Analysis& analysis);
std::string explain(const Analysis& analysis);

}  // namespace fastroute
