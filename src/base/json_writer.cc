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

}  // namespace

void append_string(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  // Plain bytes are copied in runs, skipped 8 at a time; only quotes, backslashes and
  // controls are escaped.
  std::size_t run = 0;
  std::size_t i = 0;
  for (;;) {
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof w);
      if (needs_escape(w)) break;
      i += 8;
    }
    // Byte by byte through the word that needs escaping (or the tail under 8 bytes).
    const std::size_t stop = std::min(s.size(), i + 8);
    for (; i < stop; ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (is_plain(c)) continue;
      out.append(s.data() + run, i - run);
      run = i + 1;
      char escape[kEscapeBytesMax];
      out.append(escape, static_cast<std::size_t>(write_escape(escape, c) - escape));
    }
    if (i >= s.size()) break;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

char* write_string(char* out, std::string_view s) {
  *out++ = '"';
  std::size_t i = 0;
  for (;;) {
    // 8 plain bytes at a time while they are plain, then byte by byte through the word
    // that needs escaping (or the tail under 8 bytes).
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof w);
      if (needs_escape(w)) break;
      std::memcpy(out, &w, sizeof w);
      out += 8;
      i += 8;
    }
    const std::size_t stop = std::min(s.size(), i + 8);
    for (; i < stop; ++i) {
      auto c = static_cast<unsigned char>(s[i]);
      if (is_plain(c)) {
        *out++ = static_cast<char>(c);
      } else {
        out = write_escape(out, c);
      }
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
