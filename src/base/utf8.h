// src/base/utf8.h
// Counting characters (code points) of UTF-8 text that a parser already validated: the
// API's limits are in characters ("256 chars each"), the bytes are up to 4 per character.
// Owns: that count. Does not: validate UTF-8 (the JSON parser did).
#pragma once

#include <cstddef>
#include <string_view>

namespace credit {

// Whether `s` (valid UTF-8) holds at most `max` code points.
inline bool utf8_chars_at_most(std::string_view s, std::size_t max) {
  if (s.size() <= max) return true;  // a code point takes at least one byte
  if (s.size() > 4 * max) return false;
  std::size_t chars = 0;
  for (char c : s) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return chars <= max;
}

}  // namespace credit
