// Text statistics over UTF-8: the character-level features of the schema.
// Thread-safe (pure functions), never allocates.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "features.hpp"

namespace fastroute {

enum class TextCheck : bool {
  kTrusted,  // known valid UTF-8 (a Python str): any character is text
  kSniff,    // file bytes: reject invalid UTF-8 and binary control characters
};

// Fills size_bytes, length, words, lines, mean_word_length, the character
// shares, script and byte_entropy of `utf8`. Returns false, leaving the other
// entries alone, when `check` is kSniff and the bytes are not text.
bool measure_text(std::string_view utf8, TextCheck check, FeatureVector& features);

// A structural JSON check: an object or array whose brackets and strings
// balance, with only JSON's literal characters between them.
bool looks_like_json(std::string_view utf8);

// Decodes the code point starting at utf8[i] (i < utf8.size()) into `cp`;
// returns its length in bytes, or 0 when the bytes there are not strict UTF-8
// (overlong, surrogate, above U+10FFFF, truncated).
std::size_t decode_utf8(std::string_view utf8, std::size_t i, char32_t& cp);

// Shannon entropy of the byte histogram, in bits per byte (0 for empty).
float byte_entropy(std::span<const std::byte> bytes);

}  // namespace fastroute
