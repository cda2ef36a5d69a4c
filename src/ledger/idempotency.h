// src/ledger/idempotency.h
// The idempotency table: fixed-size entries in one open-addressing array (a 16-byte hash
// of scope and key, a 16-byte hash of the request, the number of the stored reply, the
// expiry). The array doubles with the live keys up to its size for `keys_max` (load
// factor <= 0.8 there, 48 bytes a slot: 50 million keys take 3 GiB). Entries expire exactly 24
// hours after they were written, in the order they were written; none is dropped before. When
// `keys_max` entries are alive, inserts are refused (503 idempotency_capacity). Owns: the table and
// the expiry queue. Does not: render or store replies (ledger.cc).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "ledger/command.h"
#include "ledger/internal/ring.h"

namespace credit::ledger {

class IdempotencyTable {
 public:
  struct Entry {
    Hash128 key_hash;
    Hash128 request_hash;
    std::uint64_t reply_no;
    std::int64_t expires_at_ms;  // 0: the slot is empty
  };
  static_assert(sizeof(Entry) == 48);

  explicit IdempotencyTable(std::size_t keys_max);
  ~IdempotencyTable();
  IdempotencyTable(const IdempotencyTable&) = delete;
  IdempotencyTable& operator=(const IdempotencyTable&) = delete;

  // Starts loading the slot of a key that find() will be asked for soon: with millions
  // of keys the array is far larger than the caches, so every lookup is a miss, and a
  // batch hides them by prefetching a few commands ahead.
  void prefetch(const Hash128& key_hash) const { __builtin_prefetch(&slots_[slot_of(key_hash)]); }
  // The live entry of a key at now_ms, or nullptr.
  const Entry* find(const Hash128& key_hash, std::int64_t now_ms) const;
  bool full() const { return size_ == keys_max_; }
  // Inserts a new key (the caller checked find() and full()).
  void insert(const Hash128& key_hash, const Hash128& request_hash, std::uint64_t reply_no,
              std::int64_t expires_at_ms);
  // Drops the entries whose expiry is <= now_ms; returns the highest reply number
  // dropped + 1 (or 0 when nothing was dropped) so replies can be released too.
  std::uint64_t expire(std::int64_t now_ms);

  std::size_t size() const { return size_; }
  std::size_t keys_max() const { return keys_max_; }

  // Every live entry, in expiry order (snapshots).
  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < queue_.size(); ++i) {
      const Queued& q = queue_[i];
      const Entry* e = find(q.key_hash, q.expires_at_ms - 1);
      if (e != nullptr) f(*e);
    }
  }

 private:
  struct Queued {
    Hash128 key_hash;
    std::int64_t expires_at_ms;
  };
  static constexpr std::size_t kSlotsMin = 16;
  static constexpr std::size_t kSlotsInitial = 1 << 16;
  std::size_t slot_of(const Hash128& h) const {
    std::uint64_t v;
    std::memcpy(&v, h.data(), sizeof v);
    return v & mask_;
  }
  void erase_slot(std::size_t slot);
  void allocate(std::size_t slots);
  static void release(Entry* slots, std::size_t count);
  void grow();

  std::size_t keys_max_;
  std::size_t slots_max_ = 0;
  std::size_t mask_ = 0;
  Entry* slots_;
  std::size_t size_ = 0;
  Ring<Queued> queue_;  // in expiry order (which is write order)
};

}  // namespace credit::ledger
