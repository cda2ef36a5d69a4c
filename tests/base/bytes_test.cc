// tests/base/bytes_test.cc
// Tests of src/base/bytes.h: varints are LEB128 (7 bits a byte, low first, the high bit
// set on every byte but the last), as long as they need to be, and read back exactly at
// every length boundary, signed ones zigzagged; a truncated varint fails the reader.
// Owns: these tests. Does not: test the record formats built on them (store, ledger).
#include "base/bytes.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace credit {
namespace {

// Every length boundary of a 64-bit varint: 2^(7k) - 1 and 2^(7k), and the extremes.
std::vector<std::uint64_t> boundary_values() {
  std::vector<std::uint64_t> v = {0, 1, UINT64_MAX, UINT64_MAX - 1, 1ULL << 63};
  for (int k = 1; k <= 9; ++k) {
    v.push_back((1ULL << (7 * k)) - 1);
    v.push_back(1ULL << (7 * k));
  }
  return v;
}

std::size_t expected_length(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

TEST(Bytes, UnsignedVarintsAreLeb128OfTheShortestLengthAndReadBack) {
  for (std::uint64_t v : boundary_values()) {
    std::string out = "x";  // appended after what is there
    ByteWriter(out).uv(v);
    ASSERT_EQ(out.size(), 1 + expected_length(v)) << v;
    // LEB128 by hand: low 7 bits first, continuation bit on all but the last byte.
    std::uint64_t rest = v;
    for (std::size_t i = 1; i < out.size(); ++i) {
      const auto byte = static_cast<std::uint8_t>(out[i]);
      EXPECT_EQ(byte & 0x7f, rest & 0x7f) << v << " byte " << i;
      EXPECT_EQ((byte & 0x80) != 0, i + 1 < out.size()) << v << " byte " << i;
      rest >>= 7;
    }
    ByteReader r(std::string_view(out).substr(1));
    EXPECT_EQ(r.uv(), v);
    EXPECT_TRUE(r.ok() && r.done()) << v;
  }
}

TEST(Bytes, ManyVarintsInARowReadBackInOrder) {
  std::string out;
  ByteWriter w(out);
  const std::vector<std::uint64_t> values = boundary_values();
  for (std::uint64_t v : values) w.uv(v);
  for (std::uint64_t v : values) w.sv(static_cast<std::int64_t>(v));
  ByteReader r(out);
  for (std::uint64_t v : values) EXPECT_EQ(r.uv(), v);
  for (std::uint64_t v : values) EXPECT_EQ(r.sv(), static_cast<std::int64_t>(v));
  EXPECT_TRUE(r.ok() && r.done());
}

TEST(Bytes, ATruncatedVarintFailsTheReader) {
  std::string out;
  ByteWriter(out).uv(1ULL << 20);
  ASSERT_EQ(out.size(), 3u);
  ByteReader r(std::string_view(out).substr(0, 2));
  EXPECT_EQ(r.uv(), 0u);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace credit
