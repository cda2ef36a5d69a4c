#include "base/json_writer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace credit::json {
namespace {

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighs = 0x8080808080808080ULL;

// True when one of the 8 bytes of `w` needs escaping: below 0x20, '"' or '\\'. A byte
// is zero in `w ^ (c * kOnes)` exactly where w holds c; (x - kOnes) & ~x & kHighs is
// non-zero iff some byte of x is zero, and (w - 0x20 * kOnes) & ~w & kHighs iff some
// byte is below 0x20 (a borrow only starts at such a byte).
bool needs_escape(std::uint64_t w) {
  auto zero_byte = [](std::uint64_t x) { return (x - kOnes) & ~x & kHighs; };
  return ((w - 0x20 * kOnes) & ~w & kHighs) | zero_byte(w ^ ('"' * kOnes)) |
         zero_byte(w ^ ('\\' * kOnes));
}

// Writes the escape of a byte that needs one (needs_escape) at out; returns its end.
char* write_escape(char* out, unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  *out++ = '\\';
  switch (c) {
    case '"':
    case '\\':
      *out++ = static_cast<char>(c);
      return out;
    case '\n':
      *out++ = 'n';
      return out;
    case '\r':
      *out++ = 'r';
      return out;
    case '\t':
      *out++ = 't';
      return out;
    default:
      std::memcpy(out, "u00", 3);
      out[3] = kHex[c >> 4];
      out[4] = kHex[c & 15];
      return out + 5;
  }
}

bool is_plain(unsigned char c) {
  return c >= 0x20 && c != '"' && c != '\\';
}

// The end of the run of plain bytes of `s` from `i`: the first byte at or after it that
// needs escaping, or s.size(). Words of 8 plain bytes are skipped at once.
std::size_t plain_run_end(std::string_view s, std::size_t i) {
  while (i + 8 <= s.size()) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, sizeof w);
    if (needs_escape(w)) break;
    i += 8;
  }
  while (i < s.size() && is_plain(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

}  // namespace

void append_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  for (std::size_t i = 0;;) {
    const std::size_t end = plain_run_end(s, i);
    out.append(s.data() + i, end - i);
    if (end == s.size()) break;
    char escape[kEscapeBytesMax];
    out.append(escape, static_cast<std::size_t>(
                           write_escape(escape, static_cast<unsigned char>(s[end])) - escape));
    i = end + 1;
  }
  out += '"';
}

// The hot path's writer (a charge's answer): each plain word is copied as it is checked,
// which plain_run_end's scan and a copy of the run after it cost twice.
char* write_string(char* out, std::string_view s) {
  *out++ = '"';
  std::size_t i = 0;
  for (;;) {
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof w);
      if (needs_escape(w)) break;
      std::memcpy(out, &w, sizeof w);
      out += 8;
      i += 8;
    }
    // Byte by byte through the word that needs escaping (or the tail under 8 bytes).
    for (const std::size_t stop = std::min(s.size(), i + 8); i < stop; ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      out = is_plain(c) ? (*out = static_cast<char>(c), out + 1) : write_escape(out, c);
    }
    if (i >= s.size()) break;
  }
  *out++ = '"';
  return out;
}

std::string fraction_text(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  const int n = std::snprintf(buf, sizeof(buf), "%.6f", v);
  std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s.empty() || s == "-0" ? "0" : s;
}

}  // namespace credit::json
