// src/base/json_writer.h
// Writes JSON text straight into a reused std::string, without a DOM.
// Owns: escaping and the comma bookkeeping of objects and arrays.
// Does not: parse JSON (simdjson does, in server/), format money or time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace credit::json {

// Appends `s` as a quoted JSON string, escaping what JSON requires.
void append_string(std::string& out, std::string_view s);
// The longest escape of one byte ("\u001f").
inline constexpr std::size_t kEscapeBytesMax = 6;
// The most bytes write_string writes for a string of `bytes` bytes.
constexpr std::size_t quoted_bytes_max(std::size_t bytes) {
  return kEscapeBytesMax * bytes + 2;
}
// The same text as append_string written at `out`, which has room for
// quoted_bytes_max(s.size()) bytes; returns the end of what it wrote.
char* write_string(char* out, std::string_view s);

// A ratio or fraction as every answer writes it (API.md: ratios are 0..1): at most 6
// decimals, trailing zeros dropped ("0.55", "1", "0"); null when not finite.
std::string fraction_text(double v);

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  Writer& begin_object() {
    sep();
    out_ += '{';
    first_ = true;
    return *this;
  }
  Writer& end_object() {
    out_ += '}';
    first_ = false;
    return *this;
  }
  Writer& begin_array() {
    sep();
    out_ += '[';
    first_ = true;
    return *this;
  }
  Writer& end_array() {
    out_ += ']';
    first_ = false;
    return *this;
  }
  // The key of the next value in an object.
  Writer& key(std::string_view k) {
    sep();
    append_string(out_, k);
    out_ += ':';
    first_ = true;  // the value that follows needs no comma
    return *this;
  }
  Writer& string(std::string_view v) {
    sep();
    append_string(out_, v);
    return *this;
  }
  Writer& integer(std::int64_t v) {
    sep();
    out_ += std::to_string(v);
    return *this;
  }
  Writer& boolean(bool v) {
    sep();
    out_ += v ? "true" : "false";
    return *this;
  }
  Writer& null() {
    sep();
    out_ += "null";
    return *this;
  }
  // A value already encoded as JSON (a formatted amount, a nested document).
  Writer& raw(std::string_view v) {
    sep();
    out_ += v;
    return *this;
  }
  Writer& fraction(double v) { return raw(fraction_text(v)); }

  std::string& out() { return out_; }

 private:
  void sep() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string& out_;
  bool first_ = true;
};

}  // namespace credit::json
