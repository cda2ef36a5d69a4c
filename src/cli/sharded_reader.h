// src/cli/sharded_reader.h
// Reads an NDJSON event file on two threads for aggregations keyed by account (the audit,
// the replay): lines are read in file order in batches, each batch is parsed by whichever
// thread is free, and every event goes to the shard of its account, each shard on its own
// thread, its events in file order (the events of different accounts may be interleaved
// differently). An aggregation whose state is per account (one per shard, merged at the
// end) therefore sees each account's events in exactly the order of a serial read, and its
// results do not depend on the threads' timing.
// Owns: the threads, the batches and the line errors (the same lines, reasons and order
// as analytics::NdjsonReader). Does not: aggregate or merge (the caller's callbacks do).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analytics/event_json.h"
#include "ledger/event.h"

namespace credit::cli {

class Progress;

class ShardedReader {
 public:
  // Threads, and shards (one per thread). The results never depend on it.
  static constexpr std::size_t kShards = 2;
  // A batch is cut after this many bytes of lines; this many batches are in flight (read,
  // parsed, waiting for a shard). Each shard takes a batch's events grouped by account
  // (each account's in file order), so larger batches keep an account's state in the
  // cache for more events, at the price of memory (~3 KiB per line of the batches).
  struct Options {
    std::size_t batch_bytes = std::size_t{1} << 20;
    std::size_t batches_in_flight = 4;
    // When set (by a callback), no more lines are read: the input ends there.
    const std::atomic<bool>* stop = nullptr;
  };

  // Opens `path` ("-" reads standard input). ok() is false when it cannot be opened.
  ShardedReader(const std::string& path, const Options& options)
      : reader_(path), options_(options) {}
  bool ok() const { return reader_.ok(); }

  // Called on shard `shard`'s thread for each of its events, in file order.
  using Add = std::function<void(std::size_t shard, const ledger::Event& event)>;
  // Called on shard `shard`'s thread after its last event.
  using Done = std::function<void(std::size_t shard)>;
  // Reads the whole input; `progress` (may be null) is updated with the bytes read.
  void run(const Add& add, const Done& done, Progress* progress);

  // Bad lines: their count, and the first NdjsonReader::kErrorsKept by line number.
  std::uint64_t error_count() const { return error_count_; }
  const std::vector<analytics::LineError>& errors() const { return errors_; }
  // Why the input could not be opened or was cut short (analytics::NdjsonReader).
  const std::string& problem() const { return reader_.problem(); }

 private:
  analytics::NdjsonReader reader_;
  Options options_;
  std::uint64_t error_count_ = 0;
  std::vector<analytics::LineError> errors_;
};

}  // namespace credit::cli
