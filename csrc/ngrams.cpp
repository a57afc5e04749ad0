#include "ngrams.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <string>
#include <thread>

#include "errors.hpp"
#include "text.hpp"
#include "unicode_tables.hpp"

namespace fastroute {
namespace {

// Bytes of text each extra thread must get: a std::thread start + join costs
// ~35 us, hashing ~3 ns per byte, so 2^16 bytes (~200 us) keep it near 15%.
constexpr std::size_t kBytesPerThread = std::size_t{1} << 16;

std::uint8_t flags_of(char32_t cp) {
  namespace u = unicode;
  const std::uint16_t block = u::kBlockIndex[cp >> u::kBlockShift];
  return u::kBlockFlags[(std::size_t{block} << u::kBlockShift) | (cp & ((1u << u::kBlockShift) - 1))];
}

bool has(char32_t cp, std::uint8_t flag) { return (flags_of(cp) & flag) != 0; }

char32_t lower_one(char32_t cp) {
  const auto& table = unicode::kLower;
  const auto* it = std::lower_bound(table.begin(), table.end(), cp,
                                    [](const unicode::LowerPair& pair, char32_t value) { return pair.from < value; });
  return (it != table.end() && it->from == cp) ? it->to : cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Python's Final_Sigma rule for the capital sigma at bytes [begin, end) of
// `text` (valid UTF-8 before `begin`): lowers to final sigma when a cased
// character precedes it and none follows, case-ignorable ones skipped.
bool is_final_sigma(std::string_view text, std::size_t begin, std::size_t end) {
  char32_t cp = 0;
  bool cased_before = false;
  for (std::size_t j = begin; j > 0;) {
    std::size_t start = j - 1;
    while (start > 0 && (static_cast<std::uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    decode_utf8(text, start, cp);
    if (!has(cp, unicode::kCaseIgnorable)) {
      cased_before = has(cp, unicode::kCased);
      break;
    }
    j = start;
  }
  if (!cased_before) return false;
  for (std::size_t j = end; j < text.size();) {
    const std::size_t length = decode_utf8(text, j, cp);
    if (length == 0) return true;  // the caller rejects the text at this byte
    if (!has(cp, unicode::kCaseIgnorable)) return !has(cp, unicode::kCased);
    j += length;
  }
  return true;
}

// MurmurHash3_x86_32 (Austin Appleby's public-domain reference), seed 0.
inline std::int32_t murmurhash3_x86_32(std::string_view bytes) {
  constexpr std::uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t blocks = bytes.size() / 4;
  std::uint32_t h = 0;  // seed 0, as sklearn's hasher
  for (std::size_t b = 0; b < blocks; ++b) {
    std::uint32_t k;
    std::memcpy(&k, data + 4 * b, 4);  // native order, as the reference implementation
    k *= c1;
    k = std::rotl(k, 15);
    k *= c2;
    h ^= k;
    h = std::rotl(h, 13);
    h = h * 5 + 0xe6546b64;
  }
  const unsigned char* tail = data + 4 * blocks;
  std::uint32_t k = 0;
  switch (bytes.size() & 3) {
    case 3:
      k ^= std::uint32_t{tail[2]} << 16;
      [[fallthrough]];
    case 2:
      k ^= std::uint32_t{tail[1]} << 8;
      [[fallthrough]];
    case 1:
      k ^= tail[0];
      k *= c1;
      k = std::rotl(k, 15);
      k *= c2;
      h ^= k;
  }
  h ^= static_cast<std::uint32_t>(bytes.size());
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return static_cast<std::int32_t>(h);
}

// The flags of the 128 ASCII code points: the tables' first block.
static_assert(unicode::kBlockShift == 7);
std::uint8_t ascii_flags(unsigned char byte) {
  return unicode::kBlockFlags[std::size_t{unicode::kBlockIndex[0]} * 128 + byte];
}

bool is_ascii(std::string_view text) {
  std::uint64_t high = 0;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    high |= word;
  }
  for (; i < text.size(); ++i) high |= static_cast<unsigned char>(text[i]);
  return (high & 0x8080808080808080ull) == 0;
}

// One text after lower-casing: its UTF-8 and, for non-ASCII text, each code
// point's byte offset (plus the end) and flags. ASCII text needs neither: a
// byte is a code point.
struct Lowered {
  std::string utf8;
  bool ascii = true;
  std::vector<std::uint32_t> offsets;
  std::vector<std::uint8_t> flags;

  void push(char32_t cp) {
    offsets.push_back(static_cast<std::uint32_t>(utf8.size()));
    flags.push_back(flags_of(cp));
    append_utf8(utf8, cp);
  }
};

[[noreturn]] void throw_invalid_utf8(std::size_t offset) {
  throw InvalidInput("invalid UTF-8 at byte " + std::to_string(offset) +
                     ": decode the text (or pass a str) before hashing");
}

void lower_ascii(std::string_view text, bool lowercase, Lowered& out) {
  out.utf8.assign(text);
  if (!lowercase) return;
  for (char& c : out.utf8) c = static_cast<char>(c | ((c >= 'A' && c <= 'Z') ? 0x20 : 0));
}

void lower_unicode(std::string_view text, bool lowercase, Lowered& out) {
  out.utf8.clear();
  out.offsets.clear();
  out.flags.clear();
  out.utf8.reserve(text.size() + 8);
  out.offsets.reserve(text.size() + 1);
  out.flags.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp = static_cast<std::uint8_t>(text[i]);
    if (cp < 0x80) {
      if (lowercase && cp >= 'A' && cp <= 'Z') cp |= 0x20;
      out.offsets.push_back(static_cast<std::uint32_t>(out.utf8.size()));
      out.flags.push_back(ascii_flags(static_cast<unsigned char>(cp)));
      out.utf8.push_back(static_cast<char>(cp));
      ++i;
      continue;
    }
    const std::size_t length = decode_utf8(text, i, cp);
    if (length == 0) throw_invalid_utf8(i);
    if (lowercase && has(cp, unicode::kLowers)) {
      if (cp == unicode::kCapitalIWithDot) {
        out.push(U'i');
        cp = 0x0307;  // combining dot above
      } else if (cp == unicode::kCapitalSigma) {
        cp = is_final_sigma(text, i, i + length) ? 0x03C2 : 0x03C3;
      } else {
        cp = lower_one(cp);
      }
    }
    out.push(cp);
    i += length;
  }
  out.offsets.push_back(static_cast<std::uint32_t>(out.utf8.size()));
}

void lower_into(std::string_view text, bool lowercase, Lowered& out) {
  if (text.size() >= std::numeric_limits<std::uint32_t>::max()) {
    throw InvalidInput("text of " + std::to_string(text.size()) + " bytes: at most 4 GiB can be hashed");
  }
  out.ascii = is_ascii(text);
  if (out.ascii) {
    lower_ascii(text, lowercase, out);
  } else {
    lower_unicode(text, lowercase, out);
  }
}

// Calls run(i, end) for each maximal run [i, end) of the indices below
// `size` where in_run holds.
template <typename InRun, typename Run>
void for_each_index_run(std::size_t size, InRun in_run, Run&& run) {
  for (std::size_t i = 0; i < size;) {
    if (!in_run(i)) {
      ++i;
      continue;
    }
    std::size_t end = i + 1;
    while (end < size && in_run(end)) ++end;
    run(i, end);
    i = end;
  }
}

// Calls run(first, last, length) for each maximal run of code points whose
// flags have `flag` set (want = true) or clear (want = false): its bytes
// [first, last) in the lowered UTF-8 and its length in code points.
template <typename Run>
void for_each_run(const Lowered& text, std::uint8_t flag, bool want, Run&& run) {
  if (text.ascii) {  // a byte is a code point
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.utf8.data());
    for_each_index_run(
        text.utf8.size(), [&](std::size_t i) { return ((ascii_flags(bytes[i]) & flag) != 0) == want; },
        [&](std::size_t i, std::size_t end) { run(i, end, end - i); });
    return;
  }
  for_each_index_run(
      text.flags.size(), [&](std::size_t i) { return ((text.flags[i] & flag) != 0) == want; },
      [&](std::size_t i, std::size_t end) { run(text.offsets[i], text.offsets[end], end - i); });
}

// Per-thread buffers, reused from text to text.
struct Scratch {
  Lowered lowered;
  std::vector<std::uint32_t> token_starts, token_ends;  // byte ranges in lowered.utf8
  std::string joined;                                   // a word n-gram or a padded word
  std::vector<std::uint32_t> padded_offsets;
  std::vector<std::uint32_t> keys;                      // column << 1 | negative
  std::vector<std::uint32_t> spare_keys;                // the radix sort's other buffer
};

Scratch& thread_scratch() {
  static thread_local Scratch scratch;
  return scratch;
}

class Collector {
 public:
  Collector(const NgramOptions& options, std::vector<std::uint32_t>& keys)
          : column_mask_(static_cast<std::uint32_t>(options.n_features - 1)), alternate_sign_(options.alternate_sign), keys_(keys) {
    keys_.clear();
  }

  // The column and sign sklearn's FeatureHasher gives this n-gram.
  void add(std::string_view gram) {
    const std::int32_t h = murmurhash3_x86_32(gram);
    // |h| % n_features as sklearn computes it; as unsigned, |INT32_MIN| = 2^31 is defined too.
    const std::uint32_t magnitude = h < 0 ? 0u - static_cast<std::uint32_t>(h) : static_cast<std::uint32_t>(h);
    const std::uint32_t column = magnitude & column_mask_;
    keys_.push_back(column << 1 | static_cast<std::uint32_t>(alternate_sign_ && h < 0));
  }

 private:
  std::uint32_t column_mask_;  // n_features is a power of two
  bool alternate_sign_;
  std::vector<std::uint32_t>& keys_;
};

void add_word_ngrams(const NgramOptions& options, Scratch& s, Collector& collect) {
  const std::string_view utf8(s.lowered.utf8);
  s.token_starts.clear();
  s.token_ends.clear();
  for_each_run(s.lowered, unicode::kWord, true, [&](std::size_t first, std::size_t last, std::size_t length) {
    if (length < 2) return;  // (?u)\b\w\w+\b
    s.token_starts.push_back(static_cast<std::uint32_t>(first));
    s.token_ends.push_back(static_cast<std::uint32_t>(last));
  });
  const auto token = [&](std::size_t t) { return utf8.substr(s.token_starts[t], s.token_ends[t] - s.token_starts[t]); };
  const std::size_t tokens = s.token_starts.size();
  for (std::size_t first = 0; first < tokens; ++first) {
    if (options.min_n == 1) collect.add(token(first));
    if (options.max_n == 1) continue;
    s.joined.assign(token(first));
    const std::size_t last = std::min(tokens, first + static_cast<std::size_t>(options.max_n));
    for (std::size_t next = first + 1; next < last; ++next) {
      s.joined.push_back(' ');
      s.joined.append(token(next));
      if (static_cast<int>(next - first + 1) >= options.min_n) collect.add(s.joined);
    }
  }
}

// One word (bytes [first, last) of the lowered text, `length` code points)
// padded with a space on each side, as sklearn's _char_wb_ngrams.
void add_padded_word_ngrams(const NgramOptions& options, Scratch& s, std::size_t first, std::size_t last,
                            std::size_t length, Collector& collect) {
  s.joined.assign(1, ' ');
  s.joined.append(s.lowered.utf8, first, last - first);
  s.joined.push_back(' ');
  const std::string_view padded(s.joined);
  const bool ascii = padded.size() == length + 2;
  if (!ascii) {  // the byte offset of each code point of the padded word, and its end
    s.padded_offsets.clear();
    for (std::size_t i = 0; i < padded.size(); ++i) {
      if ((static_cast<unsigned char>(padded[i]) & 0xC0) != 0x80) s.padded_offsets.push_back(static_cast<std::uint32_t>(i));
    }
    s.padded_offsets.push_back(static_cast<std::uint32_t>(padded.size()));
  }
  const auto offset_of = [&](std::size_t cp) { return ascii ? cp : std::size_t{s.padded_offsets[cp]}; };
  length += 2;
  for (std::size_t n = static_cast<std::size_t>(options.min_n); n <= static_cast<std::size_t>(options.max_n); ++n) {
    if (length <= n) {  // a short word counts once, whole, and ends the n loop
      collect.add(padded);
      return;
    }
    for (std::size_t offset = 0; offset + n <= length; ++offset) {
      const std::size_t begin = offset_of(offset);
      collect.add(padded.substr(begin, offset_of(offset + n) - begin));
    }
  }
}

void add_char_wb_ngrams(const NgramOptions& options, Scratch& s, Collector& collect) {
  for_each_run(s.lowered, unicode::kSpace, false, [&](std::size_t first, std::size_t last, std::size_t length) {
    add_padded_word_ngrams(options, s, first, last, length, collect);
  });
}

double sublinear(double value) {
  if (value == 0) return 0;
  const double magnitude = 1.0 + std::log(std::fabs(value));
  return value < 0 ? -magnitude : magnitude;
}

// Sorts n-gram keys (below 2^23): std::sort for the few of a short text,
// three 8-bit LSD radix passes (linear) for the many of a long one.
void sort_keys(std::vector<std::uint32_t>& keys, std::vector<std::uint32_t>& spare) {
  constexpr std::size_t kRadixFrom = 128;
  if (keys.size() < kRadixFrom) {
    std::sort(keys.begin(), keys.end());
    return;
  }
  spare.resize(keys.size());
  for (int shift = 0; shift < 24; shift += 8) {
    std::array<std::uint32_t, 257> starts{};
    for (std::uint32_t key : keys) ++starts[((key >> shift) & 0xFF) + 1];
    for (std::size_t b = 1; b < starts.size(); ++b) starts[b] += starts[b - 1];
    for (std::uint32_t key : keys) spare[starts[(key >> shift) & 0xFF]++] = key;
    keys.swap(spare);
  }
}

// Sums the n-grams of each column and appends the row, transformed and normalised.
void append_row(const NgramOptions& options, std::vector<std::uint32_t>& keys, std::vector<std::uint32_t>& spare,
                SparseRows& out) {
  sort_keys(keys, spare);
  const std::size_t row_start = out.values.size();
  for (std::size_t i = 0; i < keys.size();) {
    const std::uint32_t column = keys[i] >> 1;
    double sum = 0;
    for (; i < keys.size() && (keys[i] >> 1) == column; ++i) sum += (keys[i] & 1) ? -1.0 : 1.0;
    if (options.binary) sum = 1;
    if (options.sublinear_tf) sum = sublinear(sum);
    out.indices.push_back(static_cast<std::int32_t>(column));
    out.values.push_back(sum);
  }
  const std::span<double> row(out.values.data() + row_start, out.values.size() - row_start);
  if (options.norm != NgramNorm::kNone) {
    double norm = 0;  // summed and divided as sklearn.preprocessing.normalize does
    for (double v : row) norm += options.norm == NgramNorm::kL2 ? v * v : std::fabs(v);
    if (options.norm == NgramNorm::kL2) norm = std::sqrt(norm);
    if (norm != 0) {
      for (double& v : row) v /= norm;
    }
  }
  out.indptr.push_back(static_cast<std::int64_t>(out.values.size()));
}

void append_rows(SparseRows& into, SparseRows&& part) {
  if (into.indices.empty() && into.rows() == 0) {
    into = std::move(part);
    return;
  }
  const std::int64_t shift = into.indptr.back();
  into.indices.insert(into.indices.end(), part.indices.begin(), part.indices.end());
  into.values.insert(into.values.end(), part.values.begin(), part.values.end());
  for (std::size_t r = 1; r < part.indptr.size(); ++r) into.indptr.push_back(part.indptr[r] + shift);
}

}  // namespace

std::int32_t NgramHasher::murmurhash3(std::string_view bytes) { return murmurhash3_x86_32(bytes); }

NgramHasher::NgramHasher(const NgramOptions& options) : options_(options) {
  if (options.min_n < 1 || options.max_n < options.min_n || options.max_n > kMaxNgramLength) {
    throw InvalidInput("ngram_range must satisfy 1 <= min_n <= max_n <= " + std::to_string(kMaxNgramLength) +
                       ", got (" + std::to_string(options.min_n) + ", " + std::to_string(options.max_n) + ")");
  }
  if (options.n_features < kMinHashFeatures || options.n_features > kMaxHashFeatures ||
      !std::has_single_bit(static_cast<std::uint64_t>(options.n_features))) {
    throw InvalidInput("n_features must be a power of two from 2^10 to 2^22, got " + std::to_string(options.n_features));
  }
}

void NgramHasher::hash_into(std::string_view utf8, SparseRows& out) const {
  Scratch& scratch = thread_scratch();
  lower_into(utf8, options_.lowercase, scratch.lowered);
  Collector collect(options_, scratch.keys);
  if (options_.unit == NgramUnit::kWord) {
    add_word_ngrams(options_, scratch, collect);
  } else {
    add_char_wb_ngrams(options_, scratch, collect);
  }
  append_row(options_, scratch.keys, scratch.spare_keys, out);
}

SparseRows NgramHasher::hash_batch(std::span<const std::string_view> texts, unsigned threads) const {
  std::size_t bytes = 0;
  for (std::string_view text : texts) bytes += text.size();
  const std::size_t cores = std::max(1u, threads == 0 ? std::thread::hardware_concurrency() : threads);
  const std::size_t workers = std::clamp<std::size_t>(bytes / kBytesPerThread, 1, std::min(cores, std::max<std::size_t>(texts.size(), 1)));
  std::vector<SparseRows> parts(workers);
  std::vector<std::exception_ptr> errors(workers);
  std::vector<std::size_t> failed(workers, 0);
  auto run = [&](std::size_t worker) {
    const std::size_t begin = texts.size() * worker / workers, end = texts.size() * (worker + 1) / workers;
    std::size_t i = begin;
    try {
      for (; i < end; ++i) hash_into(texts[i], parts[worker]);
    } catch (...) {
      errors[worker] = std::current_exception();
      failed[worker] = i;
    }
  };
  {
    std::vector<std::jthread> pool;
    pool.reserve(workers - 1);
    for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(run, w);
    run(0);
  }  // joined
  for (std::size_t w = 0; w < workers; ++w) {
    if (errors[w]) rethrow_with_context(errors[w], "item " + std::to_string(failed[w]) + ": ");
  }
  SparseRows rows;
  for (SparseRows& part : parts) append_rows(rows, std::move(part));
  return rows;
}

}  // namespace fastroute
