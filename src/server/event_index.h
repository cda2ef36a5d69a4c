// src/server/event_index.h
// The retained events the server keeps in memory for the events and audit routes, in a
// compact form: each event as its encoded bytes (ledger/event_codec.h, about 45-100
// bytes) in large append-only blocks, and per account a flat list of (seq, place) in
// sequence order, keyed by an interned account number. No heap object and no string per
// event: about 16 bytes of index and the encoding, instead of a ~1 KB ledger::Event.
// A block holds records of
//   length   varint  bytes of the encoding
//   event    length bytes: encode_event's output
// A record never spans blocks; one larger than a block gets a block of its own size.
// Owns: the in-memory copy of the events, their order per account, its memory bound.
// Does not: read or write the event log (store/event_log.h), filter or render events
// (the routes decode what they return and filter it).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/id_index.h"
#include "ledger/event.h"
#include "ledger/event_codec.h"

namespace credit::server {

// Blocks and per-account lists together; past it no more events are kept in memory (they
// stay in the event log). About 60 M events of the usual size.
constexpr std::uint64_t kEventIndexBytesMax = 8ULL << 30;
// A block is allocated whole but its pages are touched only as records land in it.
constexpr std::size_t kEventBlockBytes = 4 << 20;

class EventIndex {
 public:
  // Where one event's record is: blocks_[block], at byte offset.
  struct Entry {
    std::uint64_t seq = 0;
    std::uint32_t block = 0;
    std::uint32_t offset = 0;
  };

  EventIndex() = default;
  EventIndex(const EventIndex&) = delete;
  EventIndex& operator=(const EventIndex&) = delete;

  // Keeps `event` (encoded into a reused buffer). false: the memory bound is reached and
  // the event is not kept. An account's events come in increasing seq order, except while
  // the event log is read at start (day by day: an imported event lies in the segment of
  // its day, numbered after later days' events); sort() restores the order then.
  bool append(const ledger::Event& event);
  // The same for an event already encoded (`encoded` is encode_event's output for it).
  bool append_encoded(std::string_view account_id, std::uint64_t seq, std::string_view encoded);

  // Puts the lists that received an event out of seq order back in order (the start
  // calls it once, after reading the event log, before any route reads).
  void sort();

  // The account's events in increasing seq order; empty when it has none.
  std::span<const Entry> events_of(std::string_view account_id) const;
  // The encoding of one entry's event.
  std::string_view bytes_of(const Entry& entry) const;
  // Decodes one entry's event into `out`, reusing its strings' storage.
  void decode(const Entry& entry, ledger::Event& out) const;
  // Only the head of its encoding (what readers filter on); the views point into the index.
  void decode_head(const Entry& entry, ledger::EventHead& out) const;

  std::uint64_t size() const { return size_; }
  // Bytes held: blocks allocated and list capacity.
  std::uint64_t memory_bytes() const { return memory_bytes_; }

 private:
  // A place for a record of `record_bytes`; opens a block when the last one is full.
  Entry reserve(std::size_t record_bytes);

  std::vector<std::unique_ptr<char[]>> blocks_;
  std::size_t last_block_used_ = 0;   // bytes used in blocks_.back()
  std::size_t last_block_bytes_ = 0;  // its size
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
  IdIndex numbers_;
  std::vector<AccountEvents> by_account_;
  std::vector<std::uint32_t> unsorted_;  // account numbers for sort()
  std::uint64_t size_ = 0;
  std::uint64_t memory_bytes_ = 0;
  std::string encode_buffer_;  // reused by append()
};

}  // namespace credit::server
