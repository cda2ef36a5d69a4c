// src/server/replay_estimate.h
// How many idempotency keys a replay of the command log will add, estimated from the first
// records it decodes: their keys per byte times the bytes of the log not yet read. A start
// prepares the idempotency table for them at once (IdempotencyTable::reserve) rather than
// doubling it through every size on the way. The log's bytes are its segment files'
// sizes, and segments are preallocated, so the last one counts as full: the estimate is
// high by up to one segment's keys, and a log of fewer than two segments gets none.
// Owns: the counts. Does not: read the log or size the table (engine.cc).
#pragma once

#include <cstdint>
#include <optional>

namespace credit::server {

class ReplayKeyEstimate {
 public:
  // The bytes read before the estimate is made.
  static constexpr std::uint64_t kSampleBytes = 16ULL << 20;

  ReplayKeyEstimate(std::uint64_t log_bytes, std::uint64_t segment_bytes)
      : log_bytes_(log_bytes), enabled_(log_bytes >= 2 * segment_bytes) {}

  // A record that is not replayed (a snapshot covers it).
  void skip(std::uint64_t bytes) { skipped_bytes_ += bytes; }
  // A record replayed, of `bytes` with `keys` keyed commands. On the record that completes
  // the sample: the keys expected from this record (included) to the end of the log;
  // nullopt on every other record.
  std::optional<std::uint64_t> add(std::uint64_t bytes, std::uint64_t keys) {
    if (!enabled_ || done_) return std::nullopt;
    read_bytes_ += bytes;
    read_keys_ += keys;
    if (read_bytes_ < kSampleBytes) return std::nullopt;
    done_ = true;
    const std::uint64_t left_bytes =
        log_bytes_ > skipped_bytes_ + read_bytes_ ? log_bytes_ - skipped_bytes_ - read_bytes_ : 0;
    // In floating point: keys times bytes may pass 2^64; an estimate needs no exactness.
    const double per_byte = static_cast<double>(read_keys_) / static_cast<double>(read_bytes_);
    return keys + static_cast<std::uint64_t>(per_byte * static_cast<double>(left_bytes));
  }

 private:
  std::uint64_t log_bytes_;
  bool enabled_;
  bool done_ = false;
  std::uint64_t skipped_bytes_ = 0;
  std::uint64_t read_bytes_ = 0;
  std::uint64_t read_keys_ = 0;
};

}  // namespace credit::server
