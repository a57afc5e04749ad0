// The feature schema: one fixed, named float32 vector for every modality, so
// a single policy can route mixed traffic. A feature that does not apply to
// an input is NaN (missing), never zero. Python: fastroute.FEATURE_NAMES.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace fastroute {

// X-macro: (enum name, python name). Order is the vector layout.
#define FASTROUTE_FEATURES(X)                                                  \
  X(kModality, "modality")             /* Modality code                    */ \
  X(kSource, "source")                 /* Source code: array/str/bytes     */ \
  X(kMime, "mime")                     /* Mime code (bytes only)           */ \
  X(kSizeBytes, "size_bytes")          /* payload size in bytes            */ \
  X(kNdim, "ndim")                     /* array rank                       */ \
  X(kLength, "length")                 /* elements / characters / samples  */ \
  X(kHeight, "height")                 /* image rows                       */ \
  X(kWidth, "width")                   /* image columns                    */ \
  X(kChannels, "channels")             /* image or audio channels          */ \
  X(kAspectRatio, "aspect_ratio")      /* width / height                   */ \
  X(kSampleRate, "sample_rate")        /* audio Hz (files)                 */ \
  X(kDuration, "duration_s")           /* audio seconds (files)            */ \
  X(kDtypeKind, "dtype_kind")          /* DtypeKind code                   */ \
  X(kItemsize, "itemsize")             /* bytes per element                */ \
  X(kMean, "mean")                     /* finite values only               */ \
  X(kStd, "std")                       /* population std, finite values    */ \
  X(kMin, "min")                                                               \
  X(kMax, "max")                                                               \
  X(kZeroShare, "zero_share")          /* shares are of all values         */ \
  X(kNanShare, "nan_share")            /* missing values (NaN)             */ \
  X(kInfShare, "inf_share")            /* +Inf and -Inf                    */ \
  X(kWords, "words")                   /* whitespace-separated words       */ \
  X(kLines, "lines")                   /* line count                       */ \
  X(kMeanWordLength, "mean_word_length")                                       \
  X(kAsciiShare, "ascii_share")        /* shares are of characters         */ \
  X(kNonAsciiShare, "non_ascii_share")                                         \
  X(kDigitShare, "digit_share")                                                \
  X(kUpperShare, "upper_share")                                                \
  X(kPunctShare, "punct_share")                                                \
  X(kSpaceShare, "space_share")                                                \
  X(kScript, "script")                 /* Script code                      */ \
  X(kByteEntropy, "byte_entropy")      /* bits per byte, str and bytes     */

enum Feature : std::uint8_t {
#define FASTROUTE_ENUM(id, name) id,
  FASTROUTE_FEATURES(FASTROUTE_ENUM)
#undef FASTROUTE_ENUM
  kNumFeatures
};

inline constexpr std::array<std::string_view, kNumFeatures> kFeatureNames = {
#define FASTROUTE_NAME(id, name) name,
    FASTROUTE_FEATURES(FASTROUTE_NAME)
#undef FASTROUTE_NAME
};

using FeatureVector = std::array<float, kNumFeatures>;

// The column of the feature called `name`, if there is one. Thread-safe, never fails.
constexpr std::optional<std::size_t> feature_index(std::string_view name) {
  for (std::size_t k = 0; k < kNumFeatures; ++k) {
    if (kFeatureNames[k] == name) return k;
  }
  return std::nullopt;
}

enum class Modality : std::uint8_t { kTabular, kImage, kAudio, kText, kDocument, kArchive, kBinary };
inline constexpr std::array<std::string_view, 7> kModalityNames = {
    "tabular", "image", "audio", "text", "document", "archive", "binary"};

enum class Source : std::uint8_t { kArray, kStr, kBytes };
inline constexpr std::array<std::string_view, 3> kSourceNames = {"array", "str", "bytes"};

enum class DtypeKind : std::uint8_t { kBool, kInt, kUInt, kFloat };
inline constexpr std::array<std::string_view, 4> kDtypeKindNames = {"bool", "int", "uint", "float"};

enum class Script : std::uint8_t {
  kNone, kLatin, kGreek, kCyrillic, kArabic, kHebrew, kDevanagari, kThai, kHangul, kCJK, kOther
};
inline constexpr std::array<std::string_view, 11> kScriptNames = {
    "none", "latin", "greek", "cyrillic", "arabic", "hebrew",
    "devanagari", "thai", "hangul", "cjk", "other"};

}  // namespace fastroute
