#include "text.hpp"

#include <array>
#include <cmath>
#include <cstdint>

namespace fastroute {
namespace {

struct Range {
  char32_t lo, hi;
  Script script;
};

// Unicode blocks whose letters name a script (code points >= 0x80).
constexpr std::array kScriptRanges = {
    Range{0x00C0, 0x024F, Script::kLatin},      Range{0x0370, 0x03FF, Script::kGreek},
    Range{0x0400, 0x052F, Script::kCyrillic},   Range{0x0590, 0x05FF, Script::kHebrew},
    Range{0x0600, 0x06FF, Script::kArabic},     Range{0x0750, 0x077F, Script::kArabic},
    Range{0x08A0, 0x08FF, Script::kArabic},     Range{0x0900, 0x097F, Script::kDevanagari},
    Range{0x0E00, 0x0E7F, Script::kThai},       Range{0x1100, 0x11FF, Script::kHangul},
    Range{0x1E00, 0x1EFF, Script::kLatin},      Range{0x1F00, 0x1FFF, Script::kGreek},
    Range{0x2000, 0x2BFF, Script::kNone},       // punctuation, symbols, arrows, maths
    Range{0x3000, 0x303F, Script::kNone},       // CJK punctuation
    Range{0x3040, 0x30FF, Script::kCJK},        // kana
    Range{0x3130, 0x318F, Script::kHangul},     Range{0x3400, 0x4DBF, Script::kCJK},
    Range{0x4E00, 0x9FFF, Script::kCJK},        Range{0xAC00, 0xD7AF, Script::kHangul},
    Range{0xF900, 0xFAFF, Script::kCJK},        Range{0xFB50, 0xFDFF, Script::kArabic},
    Range{0xFE70, 0xFEFF, Script::kArabic},     Range{0xFF00, 0xFFEF, Script::kNone},  // fullwidth forms
    Range{0x1F000, 0x1FFFF, Script::kNone},     // emoji and pictographs
    Range{0x20000, 0x2FFFF, Script::kCJK},
};

Script script_of(char32_t cp) {
  if (cp < 0x80) return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') ? Script::kLatin : Script::kNone;
  if (cp == 0xD7 || cp == 0xF7) return Script::kNone;  // multiplication and division signs
  for (const Range& r : kScriptRanges) {
    if (cp >= r.lo && cp <= r.hi) return r.script;
  }
  return cp < 0xC0 ? Script::kNone : Script::kOther;
}

// Python's str.isspace() set, so `words` equals len(s.split()).
constexpr bool is_space(char32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

constexpr bool is_digit(char32_t cp) {
  return (cp >= '0' && cp <= '9') || (cp >= 0x0660 && cp <= 0x0669) || (cp >= 0x0966 && cp <= 0x096F) ||
         (cp >= 0xFF10 && cp <= 0xFF19);
}

constexpr bool is_upper(char32_t cp) {
  return (cp >= 'A' && cp <= 'Z') || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) ||
         (cp >= 0x0386 && cp <= 0x03AB && cp != 0x0387 && cp != 0x038B && cp != 0x038D && cp != 0x03A2) || (cp >= 0x0400 && cp <= 0x042F);
}

// ASCII punctuation as in Python's string.punctuation, plus the Latin-1,
// general, CJK and fullwidth punctuation blocks.
constexpr bool is_punct(char32_t cp) {
  if (cp < 0x80) return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
                        (cp >= 0x7B && cp <= 0x7E);
  return (cp >= 0xA1 && cp <= 0xBF) || (cp >= 0x2010 && cp <= 0x2027) || (cp >= 0x2030 && cp <= 0x205E) ||
         (cp >= 0x3001 && cp <= 0x303F) || (cp >= 0xFF01 && cp <= 0xFF0F) || (cp >= 0xFF1A && cp <= 0xFF20) ||
         (cp >= 0xFF3B && cp <= 0xFF40) || (cp >= 0xFF5B && cp <= 0xFF65);
}

// libmagic's notion of text: printable plus BEL..CR and ESC.
bool is_binary_control(char32_t cp) {
  return cp < 0x20 ? !((cp >= 0x07 && cp <= 0x0D) || cp == 0x1B) : cp == 0x7F;
}

// ASCII character classes, tabulated from the predicates above.
enum AsciiClass : std::uint8_t { kSpace = 1, kDigit = 2, kPunct = 4, kUpper = 8, kLetter = 16 };
constexpr std::array<std::uint8_t, 128> kAsciiClasses = [] {
  std::array<std::uint8_t, 128> table{};
  for (char32_t c = 0; c < 128; ++c) {
    const bool letter = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    table[c] = static_cast<std::uint8_t>((is_space(c) ? kSpace : 0) | (is_digit(c) ? kDigit : 0) |
                                         (is_punct(c) ? kPunct : 0) | (is_upper(c) ? kUpper : 0) | (letter ? kLetter : 0));
  }
  return table;
}();

struct Counts {
  std::size_t chars = 0, ascii = 0, digits = 0, upper = 0, punct = 0, spaces = 0;
  std::size_t words = 0, word_chars = 0, newlines = 0;
  std::array<std::size_t, kScriptNames.size()> scripts{};
  bool in_word = false;

  // White space ends a word (false); any other character counts towards one (true).
  bool count_word_char(bool space) {
    if (space) {
      ++spaces;
      in_word = false;
      return false;
    }
    words += !in_word;
    in_word = true;
    ++word_chars;
    return true;
  }

  void add_ascii(char32_t cp) {
    const std::uint8_t cls = kAsciiClasses[cp];
    ++chars, ++ascii;
    newlines += cp == '\n';
    if (!count_word_char((cls & kSpace) != 0)) return;
    digits += (cls & kDigit) != 0;
    punct += (cls & kPunct) != 0;
    upper += (cls & kUpper) != 0;
    scripts[static_cast<std::size_t>(Script::kLatin)] += (cls & kLetter) != 0;
    scripts[static_cast<std::size_t>(Script::kNone)] += (cls & (kLetter | kDigit | kPunct)) == 0;
  }

  void add(char32_t cp) {
    if (cp < 0x80) return add_ascii(cp);
    ++chars;
    if (!count_word_char(is_space(cp))) return;
    if (is_digit(cp)) {
      ++digits;
    } else if (is_punct(cp)) {
      ++punct;
    } else {
      upper += is_upper(cp);
      ++scripts[static_cast<std::size_t>(script_of(cp))];
    }
  }

  Script majority_script() const {
    std::size_t best = static_cast<std::size_t>(Script::kNone);
    for (std::size_t s = best + 1; s < scripts.size(); ++s) {
      if (scripts[s] > scripts[best] || (best == 0 && scripts[s] > 0)) best = s;
    }
    return static_cast<Script>(best);
  }
};

}  // namespace

std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t& cp) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  const std::uint8_t lead = byte(0);
  std::size_t length = 0;
  char32_t min = 0;
  if (lead < 0x80) {
    cp = lead;
    return 1;
  } else if ((lead >> 5) == 0x6) {
    length = 2, cp = lead & 0x1F, min = 0x80;
  } else if ((lead >> 4) == 0xE) {
    length = 3, cp = lead & 0x0F, min = 0x800;
  } else if ((lead >> 3) == 0x1E) {
    length = 4, cp = lead & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() - i < length) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    if ((byte(k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(k) & 0x3F);
  }
  const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
  return (cp < min || cp > 0x10FFFF || surrogate) ? 0 : length;
}

namespace {

// Byte counts from four interleaved histograms, which break the
// store-to-load dependency on runs of equal bytes (e.g. zero padding).
// `Count` is uint16 for short inputs: half the memory to clear.
template <class Count>
std::array<std::uint32_t, 256> byte_counts(const std::uint8_t* data, std::size_t n) {
  std::array<std::array<Count, 256>, 4> counts{};
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++counts[0][data[i]], ++counts[1][data[i + 1]], ++counts[2][data[i + 2]], ++counts[3][data[i + 3]];
  }
  for (; i < n; ++i) ++counts[0][data[i]];
  std::array<std::uint32_t, 256> total;
  for (std::size_t b = 0; b < 256; ++b) total[b] = std::uint32_t{counts[0][b]} + counts[1][b] + counts[2][b] + counts[3][b];
  return total;
}

}  // namespace

float byte_entropy(std::span<const std::byte> bytes) {
  const std::size_t n = bytes.size();
  if (n == 0) return 0.0f;
  const auto* data = reinterpret_cast<const std::uint8_t*>(bytes.data());
  const std::array<std::uint32_t, 256> counts =
      n < 4 * 65000 ? byte_counts<std::uint16_t>(data, n) : byte_counts<std::uint32_t>(data, n);
  // H = log2(n) - sum(c log2 c) / n, with c log2 c tabulated for the counts of
  // short inputs; four partial sums keep the additions independent.
  static const auto kCLogC = [] {
    std::array<double, 4097> table{};
    for (std::size_t c = 2; c < table.size(); ++c) table[c] = static_cast<double>(c) * std::log2(static_cast<double>(c));
    return table;
  }();
  const auto c_log_c = [&](std::uint32_t c) {
    if (n < kCLogC.size()) return kCLogC[c];
    return c > 1 ? c * std::log2(static_cast<double>(c)) : 0.0;
  };
  std::array<double, 4> partial{};
  for (std::size_t b = 0; b < 256; b += 4) {
    for (std::size_t k = 0; k < 4; ++k) partial[k] += c_log_c(counts[b + k]);
  }
  const double sum_c_log_c = (partial[0] + partial[1]) + (partial[2] + partial[3]);
  return static_cast<float>(std::log2(static_cast<double>(n)) - sum_c_log_c / static_cast<double>(n));
}

bool measure_text(std::string_view utf8, TextCheck check, FeatureVector& f) {
  Counts c;
  for (std::size_t i = 0; i < utf8.size();) {
    char32_t cp = 0;
    const std::size_t length = decode_utf8(utf8, i, cp);
    if (check == TextCheck::kSniff && (length == 0 || is_binary_control(cp))) return false;
    c.add(cp);
    i += length ? length : 1;
  }
  const auto share = [&](std::size_t k) { return c.chars ? static_cast<float>(k) / c.chars : NAN; };
  f[kSizeBytes] = static_cast<float>(utf8.size());
  f[kLength] = static_cast<float>(c.chars);
  f[kWords] = static_cast<float>(c.words);
  f[kLines] = static_cast<float>(c.newlines + (!utf8.empty() && utf8.back() != '\n'));
  f[kMeanWordLength] = c.words ? static_cast<float>(c.word_chars) / c.words : NAN;
  f[kAsciiShare] = share(c.ascii);
  f[kNonAsciiShare] = share(c.chars - c.ascii);
  f[kDigitShare] = share(c.digits);
  f[kUpperShare] = share(c.upper);
  f[kPunctShare] = share(c.punct);
  f[kSpaceShare] = share(c.spaces);
  f[kScript] = static_cast<float>(c.majority_script());
  f[kByteEntropy] = byte_entropy(std::as_bytes(std::span(utf8.data(), utf8.size())));
  return true;
}

// The characters JSON allows outside strings besides brackets and quotes.
constexpr std::array<bool, 256> kJsonBareChars = [] {
  std::array<bool, 256> table{};
  for (char c : std::string_view("0123456789+-.eEtrufalsn,: \t\r\n")) table[static_cast<unsigned char>(c)] = true;
  return table;
}();

bool looks_like_json(std::string_view s) {
  constexpr std::size_t kMaxDepth = 64;
  std::array<char, kMaxDepth> open{};
  std::size_t depth = 0;
  bool in_string = false, escaped = false, started = false;
  for (char ch : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
      continue;
    }
    if (started && depth == 0 && !is_space(static_cast<unsigned char>(ch))) return false;  // trailing data
    switch (ch) {
      case '{': case '[':
        if (depth == kMaxDepth) return false;
        open[depth++] = ch == '{' ? '}' : ']';
        started = true;
        break;
      case '}': case ']':
        if (depth == 0 || open[--depth] != ch) return false;
        break;
      case '"':
        in_string = true;
        break;
      default:
        // Outside strings JSON holds only numbers, true/false/null, separators and space.
        if (!started && !is_space(static_cast<unsigned char>(ch))) return false;
        if (!kJsonBareChars[static_cast<unsigned char>(ch)]) return false;
    }
  }
  return started && depth == 0 && !in_string;
}

}  // namespace fastroute
