// src/ledger/internal/view_reader.h
// A reader of varint-coded bytes that hands out views into its input instead of copies:
// the log codec (codec.cc) and the event codec (event_codec.cc) decode millions of records
// on a start, into reused objects. A short read or a bad varint makes ok() false, moves to
// the end, and makes every later read return zero values; callers check ok() once per item.
// Owns: the cursor over one record's bytes. Does not: know any record's layout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "ledger/command.h"
#include "money/money.h"

namespace credit::ledger::internal {

class ViewReader {
 public:
  explicit ViewReader(std::string_view s)
      : begin_(reinterpret_cast<const unsigned char*>(s.data())), p_(begin_), end_(p_ + s.size()) {}
  bool ok() const { return ok_; }
  bool done() const { return p_ == end_; }
  std::size_t pos() const { return static_cast<std::size_t>(p_ - begin_); }
  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }
  void fail() { ok_ = false; }
  std::uint8_t u8() {
    if (p_ == end_) {
      ok_ = false;
      return 0;
    }
    return *p_++;
  }
  bool b() { return u8() != 0; }
  std::uint64_t uv() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) break;
      const std::uint8_t byte = *p_++;
      v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
    ok_ = false;
    return 0;
  }
  std::int64_t sv() {
    const std::uint64_t z = uv();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  Millicredits money() { return Millicredits::from_mc(sv()); }
  // n bytes as a view into the input, or an empty view and ok() false.
  std::string_view bytes(std::uint64_t n) {
    if (n > remaining()) {
      ok_ = false;
      p_ = end_;
      return {};
    }
    std::string_view v(reinterpret_cast<const char*>(p_), static_cast<std::size_t>(n));
    p_ += n;
    return v;
  }
  // A length-prefixed string as a view.
  std::string_view view() { return bytes(uv()); }
  void hash(Hash128& h) {
    std::string_view v = bytes(h.size());
    if (ok_) std::memcpy(h.data(), v.data(), h.size());
  }

 protected:
  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
  bool ok_ = true;
};

}  // namespace credit::ledger::internal
