// src/server/event_index.h
// The retained events' index for the events and audit routes: per account a flat list of
// (seq, place) in sequence order, keyed by an interned account number, where a place is
// the event's record in the event log (store/event_log.h). The events themselves stay in
// the log's files and are read back through it (a read-only map of each segment, so the
// page cache holds them, not the heap): 16 bytes per event here, no copy of its bytes.
// Owns: the order of each account's events and the index's memory bound. Does not: read
// or write the event log's files (store/event_log.h), filter or render events (the routes
// decode what they return and filter it).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/id_index.h"
#include "ledger/event.h"
#include "ledger/event_codec.h"
#include "store/event_log.h"

namespace credit::server {

// The per-account lists together; past it no more events are indexed (they stay in the
// event log). About 500 M events.
constexpr std::uint64_t kEventIndexBytesMax = 8ULL << 30;

class EventIndex {
 public:
  struct Entry {
    std::uint64_t seq = 0;
    store::EventPlace place = 0;
  };

  EventIndex() = default;
  EventIndex(const EventIndex&) = delete;
  EventIndex& operator=(const EventIndex&) = delete;

  // The log the places point into; reads before it is set find nothing.
  void attach(const store::EventLog* log) { log_ = log; }

  // Indexes the event numbered `seq` at `place` in the log. false: the memory bound is
  // reached and the event is not indexed. An account's events come in increasing seq
  // order, except while the event log is read at start (day by day: an imported event lies
  // in the segment of its day, numbered after later days' events); sort() restores the
  // order then.
  bool append(std::string_view account_id, std::uint64_t seq, store::EventPlace place);

  // Puts the lists that received an event out of seq order back in order (the start
  // calls it once, after reading the event log, before any route reads).
  void sort();

  // A start indexes the whole event log at once: between begin_load() and finish_load()
  // append() gathers entries in one flat array, in log order, and finish_load() deals
  // them out to the per-account lists (a counting sort), each list allocated once at its
  // size, then sort()s. Ten thousand lists growing by doubling cost a cache miss and now
  // and then a reallocation per append: ~170 ns an event at 10 M events, against a
  // sequential write here. No route reads between the two.
  void begin_load();
  // `load_order`, when given, gets the entries appended since begin_load() in the order
  // they came (the engine's sink catch-up reads the log in that order).
  void finish_load(std::vector<Entry>* load_order = nullptr);

  // The account's events in increasing seq order; empty when it has none.
  std::span<const Entry> events_of(std::string_view account_id) const;
  // The encoding of one entry's event (ledger/event_codec.h), valid until the next read;
  // nothing when the log no longer holds it (its day was deleted by retention).
  std::optional<std::string_view> bytes_of(const Entry& entry) const;
  // Decodes one entry's event into `out`, reusing its strings' storage; false when the
  // log no longer holds it or the bytes read are not a valid event.
  bool decode(const Entry& entry, ledger::Event& out) const;
  // Only the head of its encoding (what readers filter on); the views point into the log's
  // map and are valid until the next read.
  bool decode_head(const Entry& entry, ledger::EventHead& out) const;

  // Drops every entry numbered `seq` or above (the start cuts events that the recovered
  // state does not have). Returns how many it dropped.
  std::uint64_t drop_from(std::uint64_t seq);
  // Drops every entry whose place lies in one of these segments (numbers, sorted): the
  // event log deleted them (retention), so that the index holds, and counts against its
  // memory bound, only what the log still has, as after a restart. A pass over every
  // entry (~1 ns each), once per deletion (at most about once per UTC day). Lists left
  // under half full give their memory back. Returns how many it dropped.
  std::uint64_t drop_segments(const std::vector<std::uint32_t>& numbers);

  std::uint64_t size() const { return size_; }
  // Bytes held: list capacity.
  std::uint64_t memory_bytes() const { return memory_bytes_; }

 private:
  // An account's events, by account number (numbers_ finds it by id).
  struct AccountEvents {
    std::vector<Entry> list;
    std::string account_id;
  };
  // Whether account number n is account_id (numbers_'s check of a hash match).
  auto is_id(std::string_view account_id) const {
    return [this, account_id](std::uint32_t n) {
      return ids_equal(by_account_[n].account_id, account_id);
    };
  }
  // Appends to account `number`'s list, noting it for sort() when out of seq order;
  // returns the bytes its capacity grew by.
  std::size_t push_to_list(std::uint32_t number, const Entry& entry);

  const store::EventLog* log_ = nullptr;
  IdIndex numbers_;
  std::vector<AccountEvents> by_account_;
  std::vector<std::uint32_t> unsorted_;  // account numbers for sort()
  // Between begin_load() and finish_load(): the entries appended, with account numbers.
  struct Loaded {
    std::uint32_t number;
    Entry entry;
  };
  bool loading_ = false;
  // In chunks that never move: one flat array's doublings copied each entry again and
  // faulted in twice its memory (3 % of a 10 M start's CPU).
  static constexpr std::size_t kLoadChunkEntries = 1 << 18;  // 6 MiB
  std::vector<std::unique_ptr<Loaded[]>> loaded_;
  std::size_t loaded_count_ = 0;
  template <class Fn>
  void for_each_loaded(Fn fn) const {
    for (std::size_t i = 0; i < loaded_count_; ++i) {
      fn(loaded_[i / kLoadChunkEntries][i % kLoadChunkEntries]);
    }
  }
  std::uint64_t size_ = 0;
  std::uint64_t memory_bytes_ = 0;
};

}  // namespace credit::server
