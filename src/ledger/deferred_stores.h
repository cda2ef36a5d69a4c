// src/ledger/deferred_stores.h
// What a replay of the command log hands from the thread that applies commands to the one
// that keeps the idempotency table and the stored replies (Ledger::defer_stores): expiries
// at each batch's now, replies to store under keys, and a reservation of the table. Items
// keep their strings' capacity from one use to the next, so a replay of millions of
// commands allocates for the first few slots only.
// Owns: the items. Does not: apply them (Ledger::apply_deferred_stores) or move them
// between threads (the caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ledger/command.h"

namespace credit::ledger {

struct DeferredStore {
  enum class Kind : std::uint8_t {
    kExpire,       // release the keys expired at `ms` (a batch's now)
    kStoreBody,    // store `bytes` (a body) under key_hash until `ms`
    kStorePacked,  // the same for a charge's answer packed from its parts (reply_pack.h)
    kReserve,      // prepare the table for `keys` more keys (IdempotencyTable::reserve)
  };
  Kind kind = Kind::kExpire;
  int status = 0;
  std::int64_t ms = 0;
  std::uint64_t keys = 0;
  Hash128 key_hash{};
  Hash128 request_hash{};
  std::string bytes;
};

class DeferredStores {
 public:
  // A new item at the end: a used one (its string keeps its capacity) or a fresh one.
  // The items and their strings were last written by the thread that applied them, on the
  // other core: the ones a few pushes ahead are fetched for writing now, the item first
  // and, once it is here, its string's bytes (a charge's packed answer is written into
  // them right after the push, and those stores were most of pack_charge_reply's time).
  DeferredStore& push() {
    if (used_ + 2 * kPrefetchAhead < items_.size()) {
      __builtin_prefetch(&items_[used_ + 2 * kPrefetchAhead], 1);
      __builtin_prefetch(items_[used_ + kPrefetchAhead].bytes.data(), 1);
    }
    if (used_ == items_.size()) items_.emplace_back();
    return items_[used_++];
  }
  void clear() { used_ = 0; }
  std::size_t size() const { return used_; }
  std::span<const DeferredStore> items() const { return {items_.data(), used_}; }

 private:
  static constexpr std::size_t kPrefetchAhead = 8;
  std::vector<DeferredStore> items_;
  std::size_t used_ = 0;
};

}  // namespace credit::ledger
