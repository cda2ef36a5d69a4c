// src/base/bytes.h
// Compact binary encoding used by the logs and snapshots: LEB128 varints (signed ones
// zigzag), strings as a varint length and bytes, bools as one byte; fixed-width fields.
// Owns: ByteWriter and ByteReader. Does not: frame or checksum (store/).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace credit {

// A fixed-width value in host byte order (the formats are little-endian and so is every
// host creditd builds for) at `offset` of a frame or header, through memcpy.
static_assert(std::endian::native == std::endian::little, "the on-disk formats are little-endian");
template <typename T>
void put_fixed(unsigned char* out, std::size_t offset, T value) {
  std::memcpy(out + offset, &value, sizeof(T));
}
template <typename T>
T get_fixed(const unsigned char* in, std::size_t offset) {
  T value;
  std::memcpy(&value, in + offset, sizeof(T));
  return value;
}

// Writes v as a LEB128 varint (7 bits a byte, low first) at out, which has room for
// ByteWriter::kVarintBytesMax bytes, and returns the end of what it wrote.
inline char* write_varint(char* out, std::uint64_t v) {
  while (v >= 0x80) {
    *out++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<char>(v);
  return out;
}

class ByteWriter {
 public:
  static constexpr std::size_t kVarintBytesMax = 10;  // a 64-bit value, 7 bits a byte
  explicit ByteWriter(std::string& s) : s_(s) {}
  void u8(std::uint8_t v) { s_ += static_cast<char>(v); }
  void uv(std::uint64_t v) {
    if (v < 0x80) {  // most of them: lengths, small counts
      s_ += static_cast<char>(v);
      return;
    }
    // Sized first and written in place: one capacity check, not one per byte, and no
    // copy from a buffer on the stack. A copy reads 4 or 8 bytes at a time, and a load of
    // bytes just stored one at a time waits for those stores to finish: in a replay's
    // packing of each charge's answer that wait was most of the cost.
    const std::size_t n = (static_cast<std::size_t>(std::bit_width(v)) + 6) / 7;
    const std::size_t at = s_.size();
    s_.resize(at + n);
    write_varint(s_.data() + at, v);
  }
  void sv(std::int64_t v) {
    uv((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void str(std::string_view v) {
    uv(v.size());
    s_.append(v);
  }
  void b(bool v) { u8(v ? 1 : 0); }
  void raw(const void* p, std::size_t n) { s_.append(static_cast<const char*>(p), n); }

 private:
  std::string& s_;
};

// Reads what ByteWriter wrote. A read past the end or a bad varint makes ok() false and
// every later read return zero values; callers check ok() once at the end.
class ByteReader {
 public:
  explicit ByteReader(std::string_view s) : s_(s) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == s_.size(); }
  std::size_t pos() const { return pos_; }
  std::uint8_t u8() {
    if (pos_ >= s_.size()) {
      ok_ = false;
      return 0;
    }
    return static_cast<std::uint8_t>(s_[pos_++]);
  }
  std::uint64_t uv() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      std::uint8_t byte = u8();
      if (!ok_) return 0;
      v |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return v;
    }
    ok_ = false;
    return 0;
  }
  std::int64_t sv() {
    std::uint64_t z = uv();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  std::string str() {
    std::uint64_t n = uv();
    if (!ok_ || n > s_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string v(s_.substr(pos_, n));
    pos_ += n;
    return v;
  }
  // The same as str() without a copy: a view into the reader's bytes.
  std::string_view str_view() {
    std::uint64_t n = uv();
    if (!ok_ || n > s_.size() - pos_) {
      ok_ = false;
      return {};
    }
    std::string_view v = s_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  bool b() { return u8() != 0; }
  void fail() { ok_ = false; }
  bool raw(void* p, std::size_t n) {
    if (s_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    std::memcpy(p, s_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace credit
