// src/ledger/deferred_stores.h
// What a replay of the command log hands from the thread that applies commands to the one
// that keeps the idempotency table and the stored replies (Ledger::defer_stores): expiries
// at each batch's now, replies to store under keys, and a reservation of the table. A list
// keeps its capacity from one use to the next, so a replay of millions of commands
// allocates for the first few lists only.
// Owns: the items. Does not: apply them (Ledger::apply_deferred_stores) or move them
// between threads (the caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/command.h"

namespace credit::ledger {

struct DeferredStore {
  enum class Kind : std::uint8_t {
    kExpire,       // release the keys expired at `ms` (a batch's now)
    kStoreBody,    // store its bytes (a body) under key_hash until `ms`
    kStorePacked,  // the same for a charge's answer packed from its parts (reply_pack.h)
    kReserve,      // prepare the table for `keys` more keys (IdempotencyTable::reserve)
  };
  Kind kind = Kind::kExpire;
  int status = 0;
  std::int64_t ms = 0;
  std::uint64_t keys = 0;
  Hash128 key_hash{};
  Hash128 request_hash{};
  // Where its bytes begin in the list's buffer; they end where the next item's begin.
  std::size_t bytes_at = 0;
};

// The items of one batch, and their bytes one after the other in one buffer: the thread
// that fills the list writes them as a stream, not into a string of each item's own. The
// list goes back and forth between two threads on two cores, and each of those scattered
// strings was last read on the other core (docs/benchmarks.md, "Restart", session 11:
// the larger part of what packing a charge's answer cost was ByteWriter::uv's copy).
class DeferredStores {
 public:
  // A new item at the end, whose bytes are what is appended to bytes() until the next push.
  DeferredStore& push() {
    if (used_ == items_.size()) items_.emplace_back();
    DeferredStore& d = items_[used_++];
    d.bytes_at = bytes_.size();
    return d;
  }
  std::string& bytes() { return bytes_; }
  // Empties the list, keeping its capacity.
  void clear() {
    used_ = 0;
    bytes_.clear();
  }
  std::size_t size() const { return used_; }
  std::span<const DeferredStore> items() const { return {items_.data(), used_}; }
  std::string_view bytes_of(std::size_t i) const {
    const std::size_t end = i + 1 < used_ ? items_[i + 1].bytes_at : bytes_.size();
    return std::string_view(bytes_).substr(items_[i].bytes_at, end - items_[i].bytes_at);
  }

 private:
  std::vector<DeferredStore> items_;
  std::string bytes_;
  std::size_t used_ = 0;
};

}  // namespace credit::ledger
