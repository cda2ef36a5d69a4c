// src/cli/time_order.h
// The order in which the offline audit and replay read an account's events: the order of
// the server's audit (server/audit_route.h), time order with ties in sequence order
// (`seq`, when the lines carry it; a line without one counts as 0), then in file order.
// Their results then do not depend on the order of the file's lines.
// A file whose accounts' events are already in that order (simulate and the events
// export write them so) is streamed as it lies: an OrderCheck on the stream notices the
// first event that is not, and the caller then reads the file again through a
// TimeOrderedReader, which indexes the events and reads them back sorted.
// Memory: an OrderCheck keeps one (at, seq) per account; a TimeOrderedReader keeps
// kTimeOrderEntryBytes per event (none of the event's text: its line is read again from
// the file when its turn comes) and refuses a file of more than kTimeOrderEventsMax.
// Owns: the order, its check and the sorted reading. Does not: aggregate (the callers
// do), or make standard input readable twice (offline.cc copies it to a file first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "analytics/event_json.h"
#include "analytics/replay.h"
#include "ledger/event.h"

namespace credit::cli {

class Progress;

// The events a TimeOrderedReader sorts at most: about 460 MiB of index.
constexpr std::uint64_t kTimeOrderEventsMax = 20'000'000;

// The place of an event in the order: time, then sequence number (file order breaks the
// remaining ties).
struct OrderKey {
  std::int64_t at_ms = 0;
  std::uint64_t seq = 0;
  static OrderKey of(const ledger::Event& e) { return {e.at_ms, e.seq}; }
  friend auto operator<=>(const OrderKey&, const OrderKey&) = default;
};

// Whether each account's events come in the order, as they are streamed (one per
// thread: it is not shared; a cache line of its own, as the readers' threads keep theirs
// side by side and read them on every event).
class alignas(64) OrderCheck {
 public:
  // False when `e` comes before the previous event of its account.
  bool in_order(const ledger::Event& e);

 private:
  analytics::StringMap<OrderKey> last_;
  // The previous event's account (runs of one account skip the lookup).
  const std::string* last_id_ = nullptr;
  OrderKey* last_key_ = nullptr;
};

// A regular file's events read in the order, all accounts together (so each account's in
// its order, and the accounts interleaved by time as well).
class TimeOrderedReader {
 public:
  // One entry per event: time, sequence number, and where its line lies in the file (43
  // bits of offset and 21 of size: a line has at most kEventLineBytesMax bytes).
  static constexpr std::size_t kTimeOrderEntryBytes = 24;

  // `events_max`: the most events it sorts (a test's smaller limit).
  explicit TimeOrderedReader(std::string path, std::uint64_t events_max = kTimeOrderEventsMax)
      : path_(std::move(path)), events_max_(events_max) {}

  // Indexes the events that `keep` accepts, sorts them and calls `add` for each in the
  // order, on this thread. False when the file could not be read, changed while it was,
  // or holds more than events_max events that `keep` accepts (problem() says which;
  // nothing was added then in the last case). Bad lines are skipped and kept as
  // NdjsonReader keeps them.
  bool run(const std::function<bool(const ledger::Event&)>& keep,
           const std::function<void(const ledger::Event&)>& add, Progress* progress);

  std::uint64_t error_count() const { return error_count_; }
  const std::vector<analytics::LineError>& errors() const { return errors_; }
  const std::string& problem() const { return problem_; }

 private:
  struct Entry {
    std::int64_t at_ms;
    std::uint64_t seq;
    std::uint64_t place;  // offset << kSizeBits | size
  };
  static_assert(sizeof(Entry) == kTimeOrderEntryBytes);
  static constexpr unsigned kSizeBits = 21;
  static_assert(analytics::kEventLineBytesMax < (std::uint64_t{1} << kSizeBits));

  std::string path_;
  std::uint64_t events_max_;
  std::uint64_t error_count_ = 0;
  std::vector<analytics::LineError> errors_;
  std::string problem_;
};

}  // namespace credit::cli
