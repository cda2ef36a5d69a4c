// src/ledger/idempotency.h
// The idempotency table: fixed-size entries in one open-addressing array (a 16-byte hash
// of scope and key, the number of the stored reply, the expiry; the request's hash is kept
// with the reply, internal/reply_store.h). The array doubles with the live keys up to its size for
// `keys_max` (load factor <= 0.8 there, 32 bytes a slot: 50 million keys take 2 GiB). Entries
// expire exactly 24 hours after they were written, in the order they were written; none is dropped
// before. When `keys_max` entries are alive, inserts are refused (503 idempotency_capacity).
// Doubling never pauses the ledger: the bigger array is mapped early (at 1/2 load) and its
// huge pages are faulted in a few per batch until the doubling (at 3/4), so their zeroing
// is spread out too; then it takes new keys at once and the entries of the old one move
// over a few slots per insert (kMigrateSlotsPerInsert), while lookups try the new array,
// then the old. A start defers the early mapping (defer_next_array) until it is over. The
// next array is left out of forks: a snapshot child never reads it. Owns: the arrays and
// the expiry queue. Does not: render or store
// replies (ledger.cc).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "ledger/command.h"
#include "ledger/internal/huge_pages.h"
#include "ledger/internal/ring.h"

namespace credit::ledger {

class IdempotencyTable {
 public:
  // The request's hash is kept with the reply (ReplyStore): a slot is half a cache line.
  struct Entry {
    Hash128 key_hash;
    std::uint64_t reply_no;
    std::int64_t expires_at_ms;  // 0: the slot is empty
  };
  static_assert(sizeof(Entry) == 32);

  // With `background`, the next array's pages are faulted in there instead of a few per
  // insert on the caller's thread.
  explicit IdempotencyTable(std::size_t keys_max, Background background = nullptr);
  ~IdempotencyTable();
  IdempotencyTable(const IdempotencyTable&) = delete;
  IdempotencyTable& operator=(const IdempotencyTable&) = delete;

  // Starts loading the slot of a key that find() will be asked for soon: with millions
  // of keys the array is far larger than the caches, so every lookup is a miss, and a
  // batch hides them by prefetching a few commands ahead. Always inlined: GCC 12 finds a
  // function that only prefetches free of side effects ("looping pure") and deletes the
  // calls to it that it has not inlined yet; the replay's stores lost theirs that way
  // (docs/benchmarks.md, "Restart", session 10).
  [[gnu::always_inline]] void prefetch(const Hash128& key_hash) const {
    prefetch_entry(&slots_[slot_of(key_hash)]);
    if (old_ != nullptr) prefetch_entry(&old_[hash_bits(key_hash) & old_mask_]);
  }
  // The live entry of a key at now_ms, or nullptr.
  const Entry* find(const Hash128& key_hash, std::int64_t now_ms) const;
  bool full() const { return size_ == keys_max_; }
  // While deferred, no next array is prepared ahead of a doubling (a doubling that comes
  // maps its array then, faulted in as it is used); ending the deferral prepares it if
  // the table is already past half load.
  void defer_next_array(bool deferred);
  // Whether the next array is mapped (prepared for the next doubling).
  bool next_prepared() const { return next_ != nullptr; }
  // Prepares the array that `keys` live keys need (load <= 3/4, at most the size for
  // keys_max) when it is more than one doubling away: a start that knows roughly how many
  // keys its log holds. It is mapped now as the next array (faulted in on the background
  // thread, when there is one) and the table moves to it in one step as soon as it is
  // faulted in (at once without a background thread) and no migration is running, instead
  // of doubling through every size between: no zeroing of the arrays between, and no
  // moving of their entries. Doublings due before then map arrays of their own.
  void reserve(std::size_t keys);
  // The slots of the array that takes inserts (tests).
  std::size_t slot_count() const { return mask_ + 1; }
  // Inserts a new key (the caller checked find() and full()).
  void insert(const Hash128& key_hash, std::uint64_t reply_no, std::int64_t expires_at_ms);
  // Drops the entries whose expiry is <= now_ms; returns the highest reply number
  // dropped + 1 (or 0 when nothing was dropped) so replies can be released too.
  std::uint64_t expire(std::int64_t now_ms);

  std::size_t size() const { return size_; }
  std::size_t keys_max() const { return keys_max_; }
  // True while the entries of the array before the last doubling are still moving.
  bool migrating() const { return old_ != nullptr; }

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
  // Old slots moved per insert while migrating. The new array (twice the old) takes
  // 3/4 * its slots before it doubles again, that is 3/4 * old slots more inserts than
  // the 3/4 * old slots it started with; 8 per insert empties the old one in old/8.
  static constexpr std::size_t kMigrateSlotsPerInsert = 8;
  // A migration loads the new home slots of the old slots this far ahead of the one it
  // moves (about four inserts later): each move is a write to a random place of an
  // array far larger than the caches.
  static constexpr std::size_t kMigratePrefetchSlotsAhead = 32;
  // An erased entry of the old array: probes go past it, migration drops it.
  static constexpr std::int64_t kErased = -1;
  static std::uint64_t hash_bits(const Hash128& h) {
    std::uint64_t v;
    std::memcpy(&v, h.data(), sizeof v);
    return v;
  }
  std::size_t slot_of(const Hash128& h) const { return hash_bits(h) & mask_; }
  // An Entry is 32 bytes and the arrays are aligned to 64 bytes or more: it lies in one
  // cache line.
  static void prefetch_entry(const Entry* e) { __builtin_prefetch(e); }
  // Has the key's home slot in the old array been moved (runs move whole, so then the
  // key is not in the old array)?
  bool moved(const Hash128& h) const;
  Entry* find_old(const Hash128& key_hash) const;
  void erase_slot(std::size_t slot);
  static Entry* allocate(std::size_t slots);
  // Frees an array of allocate()'s; a mapped one on `later`'s thread when given
  // (unmap_huge_later), so that the caller does not wait for the unmap.
  static void release(Entry* slots, std::size_t count, const Background& later = nullptr);
  void grow();
  void migrate(std::size_t slots);
  void put_new(const Entry& e);
  void prepare_next();
  // Maps the next array with `slots` slots, left out of forks; starts its fault-in on the
  // background thread when there is one.
  void map_next(std::size_t slots);
  // The next array is bigger than one doubling (reserve) and faulted in: the table moves
  // to it now rather than at 3/4 load.
  bool reserved_next_ready() const;
  // Past half load with room to double: the next array is due (unless deferred).
  bool next_due() const {
    return old_ == nullptr && size_ * 2 > mask_ + 1 && mask_ + 1 < slots_max_;
  }

  bool next_deferred_ = false;
  std::size_t keys_max_;
  std::size_t slots_max_ = 0;
  std::size_t mask_ = 0;
  Entry* slots_;
  std::size_t size_ = 0;  // live entries in both arrays
  // The array before the last doubling while its entries move: slots are moved in order
  // from old_start_ (just after an empty slot), old_moved_ of them so far, whole runs at a
  // time.
  Entry* old_ = nullptr;
  std::size_t old_mask_ = 0;
  std::size_t old_start_ = 0;
  std::size_t old_moved_ = 0;
  // The farthest any entry was placed from its home slot, in the array that takes inserts
  // and in the old one (backward-shift deletion only moves entries closer).
  std::size_t probe_max_ = 0;
  std::size_t old_probe_max_ = 0;
  // The array of the next doubling, mapped ahead, with next_touched_ of its huge pages
  // faulted in since next_from_size_ live keys.
  Entry* next_ = nullptr;
  std::size_t next_slots_ = 0;  // twice the slots of slots_, or more after reserve()
  std::size_t next_touched_ = 0;
  std::size_t next_from_size_ = 0;
  // The fault-in of each array on the background thread, if it was the next array once:
  // an array is released only once its fault-in stopped.
  Background background_;
  BackgroundFaultIn next_fault_in_, slots_fault_in_, old_fault_in_;
  Ring<Queued> queue_;  // in expiry order (which is write order)
};

}  // namespace credit::ledger
