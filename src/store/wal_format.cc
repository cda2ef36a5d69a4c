// src/store/wal_format.cc
// Encoding and decoding of the WAL bytes stated in wal_format.h.
// Owns: byte layout only. Does not: read or write files.
#include "store/wal_format.h"

#include <xxhash.h>

#include <cstdio>

#include "base/bytes.h"

namespace credit::store {
namespace {

constexpr std::string_view kSegmentPrefix = "wal-";
constexpr std::string_view kSegmentSuffix = ".log";
constexpr std::size_t kSegmentNumberHexDigits = 16;

}  // namespace

std::string segment_file_name(std::uint64_t segment_number) {
  char name[32];
  std::snprintf(name, sizeof(name), "wal-%016llx.log",
                static_cast<unsigned long long>(segment_number));
  return name;
}

std::optional<std::uint64_t> parse_segment_file_name(std::string_view name) {
  if (name.size() != kSegmentPrefix.size() + kSegmentNumberHexDigits + kSegmentSuffix.size() ||
      !name.starts_with(kSegmentPrefix) || !name.ends_with(kSegmentSuffix)) {
    return std::nullopt;
  }
  std::uint64_t number = 0;
  for (char c : name.substr(kSegmentPrefix.size(), kSegmentNumberHexDigits)) {
    std::uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    number = (number << 4) | digit;
  }
  return number;
}

std::uint64_t segment_header_checksum(const unsigned char* encoded) {
  return XXH3_64bits(encoded, kSegmentHeaderBytes - sizeof(std::uint64_t));
}

void encode_segment_header(const SegmentHeader& header, unsigned char* out) {
  put_fixed(out, 0, header.magic);
  put_fixed(out, 8, header.version);
  put_fixed(out, 12, header.flags);
  put_fixed(out, 16, header.segment_number);
  put_fixed(out, 24, header.first_lsn);
  put_fixed(out, 32, segment_header_checksum(out));
}

SegmentHeader decode_segment_header(const unsigned char* in) {
  SegmentHeader header;
  header.magic = get_fixed<std::uint64_t>(in, 0);
  header.version = get_fixed<std::uint32_t>(in, 8);
  header.flags = get_fixed<std::uint32_t>(in, 12);
  header.segment_number = get_fixed<std::uint64_t>(in, 16);
  header.first_lsn = get_fixed<std::uint64_t>(in, 24);
  header.checksum = get_fixed<std::uint64_t>(in, 32);
  return header;
}

std::uint64_t record_checksum(const unsigned char* after_checksum, std::uint32_t length) {
  return XXH3_64bits(after_checksum, sizeof(std::uint32_t) + sizeof(std::uint8_t) + length);
}

std::uint64_t seal_record(unsigned char* out, std::uint8_t type, std::uint32_t length) {
  put_fixed(out, 8, length);
  put_fixed(out, 12, type);
  const std::uint64_t checksum = record_checksum(out + 8, length);
  put_fixed(out, 0, checksum);
  return checksum;
}

RecordHeader decode_record_header(const unsigned char* in) {
  RecordHeader header;
  header.checksum = get_fixed<std::uint64_t>(in, 0);
  header.length = get_fixed<std::uint32_t>(in, 8);
  header.type = get_fixed<std::uint8_t>(in, 12);
  return header;
}

}  // namespace credit::store
