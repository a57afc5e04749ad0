// Hashed n-gram text features: the same sparse rows as scikit-learn's
// HashingVectorizer (analyzer "word" or "char_wb", lowercase, the default
// token_pattern (?u)\b\w\w+\b, MurmurHash3 with seed 0, alternate_sign,
// binary, norm), so a model trained on scikit-learn's features serves on these.
//
// Text is lower-cased as Python's str.lower() does (full Unicode mapping,
// U+0130 to two code points, the Final_Sigma rule), words are runs of re's
// \w characters and char_wb splits on str.isspace(): the tables come from
// Python's unicodedata (csrc/unicode_tables.hpp, csrc/gen_unicode_tables.py).
//
// NgramHasher is immutable after construction: any number of threads may hash
// with it at once. Each thread keeps its own scratch buffers (thread_local),
// grown to the largest text it has hashed.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace fastroute {

// What one n-gram is made of.
enum class NgramUnit : std::uint8_t {
  kWord,    // n consecutive tokens joined by one space (sklearn analyzer="word")
  kCharWb,  // n characters inside one space-padded word (sklearn analyzer="char_wb")
};

enum class NgramNorm : std::uint8_t { kNone, kL1, kL2 };

// Bounds on the settings, exported to Python (never retyped there).
inline constexpr std::int64_t kMinHashFeatures = std::int64_t{1} << 10;
inline constexpr std::int64_t kMaxHashFeatures = std::int64_t{1} << 22;
inline constexpr int kMaxNgramLength = 16;

struct NgramOptions {
  NgramUnit unit = NgramUnit::kWord;
  int min_n = 1, max_n = 1;                  // n-gram lengths, 1 <= min_n <= max_n <= kMaxNgramLength
  std::int64_t n_features = std::int64_t{1} << 20;  // a power of two in [kMinHashFeatures, kMaxHashFeatures]
  bool lowercase = true;
  bool alternate_sign = true;  // sign of each n-gram from its hash, as sklearn's default
  bool binary = false;         // every present column becomes 1 (after summing, as sklearn)
  bool sublinear_tf = false;   // v -> sign(v) * (1 + log|v|) before the norm (0 stays 0)
  NgramNorm norm = NgramNorm::kL2;
};

// Rows in compressed sparse row form: row r is indices/values
// [indptr[r], indptr[r + 1]), with indices strictly increasing. A column whose
// n-grams cancel under alternate_sign stays as an explicit 0, as in sklearn.
struct SparseRows {
  std::vector<std::int64_t> indptr{0};
  std::vector<std::int32_t> indices;
  std::vector<double> values;

  std::size_t rows() const { return indptr.size() - 1; }
};

class NgramHasher {
 public:
  // Throws InvalidInput naming the setting out of range.
  explicit NgramHasher(const NgramOptions& options);

  const NgramOptions& options() const { return options_; }

  // Appends the features of one UTF-8 text as a new row of `out` (an empty
  // text, or one without n-grams, gives an empty row).
  // Thread-safe (distinct `out`s); never blocks; allocates as `out` and this
  // thread's scratch grow. Throws InvalidInput naming the byte offset when
  // `utf8` is not valid UTF-8, leaving `out` unchanged.
  void hash_into(std::string_view utf8, SparseRows& out) const;

  // The rows of many texts, split over up to `threads` threads (0 = one per
  // core) when the batch is large enough to repay starting them.
  // Thread-safe; blocks until done; allocates the result. Throws InvalidInput
  // "item i: ..." for the first invalid text (lowest index).
  SparseRows hash_batch(std::span<const std::string_view> texts, unsigned threads) const;

  // MurmurHash3_x86_32 of `bytes` with seed 0, as a signed 32-bit value
  // (sklearn.utils.murmurhash3_32(bytes, positive=False)).
  static std::int32_t murmurhash3(std::string_view bytes);

 private:
  NgramOptions options_;
};

}  // namespace fastroute
