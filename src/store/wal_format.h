// src/store/wal_format.h
// The bytes of the write-ahead log, stated before any code reads them.
// Owns: segment file names, the segment header, the record header, their encoding and the
// named limits of the format. Does not: decide what a damaged byte means (wal.cc) or what a
// payload means (the store treats every batch as opaque bytes).
//
// A log is a directory of segment files `wal-<segment number, 16 lower-case hex>.log`,
// numbered without gaps. Every segment is preallocated to a fixed size and zero-filled;
// bytes past the end of a shorter file read as zeros, and bytes a longer file holds past
// that size after its records are not part of the segment (wal.h). All integers are
// little-endian.
//
// A segment starts with a header of kSegmentHeaderBytes:
//   magic           u64  kSegmentMagic
//   version         u32  kFormatVersion; any other version is refused, never repaired
//   flags           u32  zero
//   segment_number  u64  the number in the file name
//   first_lsn       u64  LSN of the first batch record of this segment
//   checksum        u64  XXH3-64 of the 32 bytes above
// An all-zero segment (header included) is preallocated and unused.
//
// Then records, back to back, until a zero record header:
//   checksum  u64  XXH3-64 of everything after it in the record (length, type, payload)
//   length    u32  bytes of payload
//   type      u8   RecordType
//   payload   length bytes, opaque to the store
// A record never spans segments: a writer that cannot fit the next record leaves the rest
// of the segment zero and starts the next segment. Batch records take consecutive LSNs
// (record index from the start of the log), and so do voided batch records; shutdown and
// open records take none.
//
// Recovery reads these bytes by the rules of wal.h (torn tail versus damage).
//
// What a batch payload holds is the writer's business, but the version of the segment
// header covers it too, so that a build never misreads a log written by another:
//   version 1  creditd's engine record (server/engine.cc) around a ledger command batch
//              of ledger/codec.h version 1: every id and key spelled out in every command
//              (about 80-100 bytes per minimal charge).
//   version 2  the same engine record around ledger/codec.h version 2: a per-record string
//              dictionary (the first use of an account, user, pool or plan id, or of a
//              metadata string, in a record defines it; later uses in the record are a
//              varint index), front-coded or UUID-packed idempotency keys, flag bytes
//              instead of a byte per bool and optional. Each record stays self-contained,
//              so recovery and torn-tail cuts work record by record as before; the
//              dictionary is per record, not per segment, so a group of many commands
//              interns well and a record of one command barely does.
//              In a group of 4096, a minimal charge (16-byte key hash, 16-byte request
//              hash, a UUID key packed to 16 bytes, interned ids, amount) takes about
//              60 bytes of log, 45 with sequential keys; a typical one (usage and
//              metadata) about 100 (tests/store/command_log_test.cc).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace credit::store {

static_assert(std::endian::native == std::endian::little,
              "the WAL encoding copies integers as they lie in memory");

constexpr std::uint64_t kSegmentMagic = 0x31474f4c54444352ULL;  // "RCDTLOG1" read as LE
// Version 2: interned command batches (see above). Segments of any other version are
// refused, not read and not repaired.
constexpr std::uint32_t kFormatVersion = 2;
constexpr std::size_t kSegmentHeaderBytes = 40;
constexpr std::size_t kRecordHeaderBytes = 13;
// A segment must hold its header and at least one small record; tests use tiny segments to
// exercise rotation.
constexpr std::uint64_t kSegmentBytesMin = 4096;
// Segment sizes beyond this are a configuration mistake (the recovery reads a whole
// segment into memory).
constexpr std::uint64_t kSegmentBytesMax = 1ULL << 32;

enum class RecordType : std::uint8_t {
  kNone = 0,      // a zero header: the end of a segment's records
  kBatch = 1,     // a batch of commands; takes the next LSN
  kShutdown = 2,  // written by a clean close: nothing after it is a torn tail
  kOpen = 3,      // written when a log that ended with kShutdown is opened for writing
  // A batch record that a repair found damaged where a snapshot covered it (wal.h): it
  // keeps its LSN and its bytes (resealed with this type), and nothing may read them.
  // Builds before this type read it as damage.
  kVoidedBatch = 4,
};

inline bool is_known_record_type(std::uint8_t type) {
  return type >= static_cast<std::uint8_t>(RecordType::kBatch) &&
         type <= static_cast<std::uint8_t>(RecordType::kVoidedBatch);
}

struct SegmentHeader {
  std::uint64_t magic = kSegmentMagic;
  std::uint32_t version = kFormatVersion;
  std::uint32_t flags = 0;
  std::uint64_t segment_number = 0;
  std::uint64_t first_lsn = 0;
  std::uint64_t checksum = 0;
};

struct RecordHeader {
  std::uint64_t checksum = 0;
  std::uint32_t length = 0;
  std::uint8_t type = 0;
};

// "wal-000000000000002a.log" for segment 42.
std::string segment_file_name(std::uint64_t segment_number);
// The segment number of a segment file name, or nothing for any other name.
std::optional<std::uint64_t> parse_segment_file_name(std::string_view name);

void encode_segment_header(const SegmentHeader& header, unsigned char* out);
SegmentHeader decode_segment_header(const unsigned char* in);
// XXH3 of the first 32 bytes of an encoded segment header.
std::uint64_t segment_header_checksum(const unsigned char* encoded);

// Writes the record header and returns the checksum it wrote; `out` holds
// kRecordHeaderBytes + payload.size() bytes and the payload is already at
// out + kRecordHeaderBytes.
std::uint64_t seal_record(unsigned char* out, std::uint8_t type, std::uint32_t length);
RecordHeader decode_record_header(const unsigned char* in);
// XXH3 of length, type and payload: `in` points at the record's length field.
std::uint64_t record_checksum(const unsigned char* after_checksum, std::uint32_t length);

}  // namespace credit::store
