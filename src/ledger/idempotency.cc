// src/ledger/idempotency.cc
// Linear probing with backward-shift deletion, so no tombstones accumulate in the array
// that takes inserts; the old array of a doubling marks erased entries (kErased) instead,
// as it only empties until it is released.
#include "ledger/idempotency.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "base/assert.h"
#include "ledger/internal/huge_pages.h"

namespace credit::ledger {

IdempotencyTable::IdempotencyTable(std::size_t keys_max, Background background)
    : keys_max_(keys_max), background_(std::move(background)) {
  CREDIT_ASSERT(keys_max > 0);
  // At full capacity the load factor is at most 0.8: slots_max >= keys_max * 1.25.
  slots_max_ = kSlotsMin;
  while (slots_max_ < keys_max + keys_max / 4) slots_max_ <<= 1;
  // The array starts small and doubles with the live keys, so a fresh server does not
  // fault in a page of a 2 GiB array for every new key.
  const std::size_t slots = std::min(slots_max_, kSlotsInitial);
  slots_ = allocate(slots);
  mask_ = slots - 1;
}

namespace {
// Arrays of at least a huge page get a mapping of their own in transparent huge pages
// (internal/huge_pages.h): with 4 KiB pages a lookup in a table of millions of keys
// misses the TLB as well as the cache, and a prefetch then waits for the page walk.
// Smaller arrays come from aligned_alloc (cache-line aligned) and are zeroed by allocate().
IdempotencyTable::Entry* map_zeroed(std::size_t bytes) {
  return static_cast<IdempotencyTable::Entry*>(map_huge(bytes));
}
}  // namespace

IdempotencyTable::Entry* IdempotencyTable::allocate(std::size_t slots) {
  const std::size_t bytes = slots * sizeof(Entry);
  Entry* out;
  if (bytes >= kHugePageBytes) {
    out = map_zeroed(bytes);
  } else {
    // Aligned to a cache line so that no slot straddles two (prefetch_entry).
    out = static_cast<Entry*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    if (out == nullptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(out), 0, bytes);
  }
  return out;
}

void IdempotencyTable::release(Entry* slots, std::size_t count, const Background& later) {
  const std::size_t bytes = count * sizeof(Entry);
  if (bytes >= kHugePageBytes) {
    unmap_huge_later(later, slots, bytes);
  } else {
    std::free(slots);
  }
}

void IdempotencyTable::grow() {
  CREDIT_ASSERT(old_ == nullptr);
  const std::size_t old_slots = mask_ + 1;
  // The load factor is at most 3/4, so an empty slot exists; moving starts just after
  // it, so no chain of the old array crosses from the unmoved slots into the moved ones.
  std::size_t empty = 0;
  while (slots_[empty].expires_at_ms != 0) ++empty;
  CREDIT_ASSERT(empty < old_slots);
  old_ = slots_;
  old_mask_ = mask_;
  old_start_ = (empty + 1) & old_mask_;
  old_moved_ = 0;
  old_probe_max_ = probe_max_;
  probe_max_ = 0;
  // A reserved array still being faulted in is kept for later: this doubling maps its
  // own rather than fault the big one in on this thread.
  std::size_t slots = old_slots * 2;
  old_fault_in_ = std::move(slots_fault_in_);
  if (next_ != nullptr && (next_slots_ == slots || reserved_next_ready())) {
    slots = next_slots_;
    slots_ = next_;
    next_ = nullptr;
    slots_fault_in_ = std::move(next_fault_in_);
    // The array the table uses from here on: a snapshot child forked later reads it.
    set_inherited_by_fork(slots_, slots * sizeof(Entry), true);
  } else {
    slots_ = allocate(slots);
  }
  mask_ = slots - 1;
}

void IdempotencyTable::map_next(std::size_t slots) {
  CREDIT_ASSERT(next_ == nullptr);
  const std::size_t bytes = slots * sizeof(Entry);
  next_ = allocate(slots);
  next_slots_ = slots;
  // No snapshot child reads the next array (find and for_each read slots_ and old_): left
  // out of a fork, it is not shared, and a doubling while a child runs copies none of it
  // (measured: one batch held 1.3-2.1 s copying it, docs/benchmarks.md, session 8).
  set_inherited_by_fork(next_, bytes, false);
  next_touched_ = 0;
  next_from_size_ = size_;
  if (background_) next_fault_in_.start(background_, reinterpret_cast<char*>(next_), bytes);
}

void IdempotencyTable::prepare_next() {
  const std::size_t slots = mask_ + 1;
  if (2 * slots * sizeof(Entry) < kHugePageBytes) return;  // small: nothing to spread
  if (next_ == nullptr) map_next(2 * slots);
  if (background_) return;
  // Fault in the pages in proportion to the keys added since 1/2 load, all of them by
  // 3/4 load (slots/4 keys later): about one page per batch of 4096 instead of all at
  // once when the first inserts after the doubling land on every page.
  const std::size_t pages = next_slots_ * sizeof(Entry) / kHugePageBytes;
  const std::size_t added = size_ > next_from_size_ ? size_ - next_from_size_ : 0;
  const std::size_t due = std::min(pages, (added + 1) * pages / (slots / 4) + 1);
  if (due > next_touched_) {
    populate_for_write(reinterpret_cast<char*>(next_) + next_touched_ * kHugePageBytes,
                       (due - next_touched_) * kHugePageBytes);
    next_touched_ = due;
  }
}

void IdempotencyTable::reserve(std::size_t keys) {
  std::size_t slots = kSlotsMin;
  while (slots < slots_max_ && slots * 3 < keys * 4) slots <<= 1;
  const std::size_t doubled = 2 * (mask_ + 1);
  if (slots <= doubled || slots * sizeof(Entry) < kHugePageBytes) return;
  if (next_ != nullptr) {
    if (next_slots_ >= slots) return;
    next_fault_in_.stop();
    release(next_, next_slots_);
    next_ = nullptr;
  }
  map_next(slots);
}

bool IdempotencyTable::reserved_next_ready() const {
  if (next_ == nullptr || next_slots_ <= 2 * (mask_ + 1)) return false;
  return next_fault_in_.finished();
}

void IdempotencyTable::defer_next_array(bool deferred) {
  next_deferred_ = deferred;
  if (!deferred && next_due()) prepare_next();
}

void IdempotencyTable::put_new(const Entry& e) {
  const std::size_t home = slot_of(e.key_hash);
  std::size_t s = home;
  while (slots_[s].expires_at_ms != 0) s = (s + 1) & mask_;
  slots_[s] = e;
  probe_max_ = std::max(probe_max_, (s - home) & mask_);
}

void IdempotencyTable::migrate(std::size_t slots) {
  // Whole runs of occupied slots move together: the next slot to move is always empty or
  // the start of a run, so no entry left behind has its home among the moved slots (and a
  // lookup there needs no probe of the old array at all). With hashed keys runs are a few
  // slots long; keys that crowd one run (not hashes) move it at once, as a full rehash did.
  const std::size_t old_slots = old_mask_ + 1;
  for (; old_moved_ < old_slots; ++old_moved_) {
    if (old_moved_ + kMigratePrefetchSlotsAhead < old_slots) {
      const Entry& ahead = old_[(old_start_ + old_moved_ + kMigratePrefetchSlotsAhead) & old_mask_];
      if (ahead.expires_at_ms > 0) prefetch_entry(&slots_[slot_of(ahead.key_hash)]);
    }
    Entry& e = old_[(old_start_ + old_moved_) & old_mask_];
    if (slots == 0 && e.expires_at_ms == 0) break;
    if (slots > 0) --slots;
    // The moved slot is left as it is, not cleared: no lookup reads it (find_old stops at
    // moved homes, and a probe from an unmoved one ends at the empty slot before
    // old_start_), and after a snapshot fork a write to the old array copies its pages.
    if (e.expires_at_ms > 0) put_new(e);
  }
  if (old_moved_ == old_slots) {
    old_fault_in_.stop();  // it may still be on this array
    // Off this thread: split into 4 KiB pages by a snapshot child's copy-on-write, a
    // 512 MiB array took ~50 ms to unmap (huge_pages.h).
    release(old_, old_slots, background_);
    old_ = nullptr;
  }
}

bool IdempotencyTable::moved(const Hash128& h) const {
  const std::size_t home = hash_bits(h) & old_mask_;
  return ((home - old_start_) & old_mask_) < old_moved_;
}

IdempotencyTable::Entry* IdempotencyTable::find_old(const Hash128& key_hash) const {
  if (moved(key_hash)) return nullptr;
  // No entry lies further than old_probe_max_ from its home: a key that is not there
  // costs that many slots at most, not the rest of a long run of other keys.
  const std::size_t home = hash_bits(key_hash) & old_mask_;
  for (std::size_t d = 0; d <= old_probe_max_; ++d) {
    Entry& e = old_[(home + d) & old_mask_];
    if (e.expires_at_ms == 0) return nullptr;
    if (e.expires_at_ms != kErased && e.key_hash == key_hash) return &e;
  }
  return nullptr;
}

IdempotencyTable::~IdempotencyTable() {
  next_fault_in_.stop();
  slots_fault_in_.stop();
  old_fault_in_.stop();
  release(slots_, mask_ + 1);
  if (old_ != nullptr) release(old_, old_mask_ + 1);
  if (next_ != nullptr) release(next_, next_slots_);
}

const IdempotencyTable::Entry* IdempotencyTable::find(const Hash128& key_hash,
                                                      std::int64_t now_ms) const {
  for (std::size_t s = slot_of(key_hash);; s = (s + 1) & mask_) {
    const Entry& e = slots_[s];
    if (e.expires_at_ms == 0) break;
    if (e.key_hash == key_hash) return e.expires_at_ms > now_ms ? &e : nullptr;
  }
  if (old_ == nullptr) return nullptr;
  const Entry* e = find_old(key_hash);
  return e != nullptr && e->expires_at_ms > now_ms ? e : nullptr;
}

void IdempotencyTable::insert(const Hash128& key_hash, std::uint64_t reply_no,
                              std::int64_t expires_at_ms) {
  CREDIT_ASSERT(expires_at_ms > 0);
  for (std::size_t s = slot_of(key_hash);; s = (s + 1) & mask_) {
    Entry& e = slots_[s];
    if (e.expires_at_ms != 0 && e.key_hash == key_hash) {
      // An expired entry not yet swept: reuse its slot; its queue item is stale.
      e.reply_no = reply_no;
      e.expires_at_ms = expires_at_ms;
      queue_.push_back({key_hash, expires_at_ms});
      return;
    }
    if (e.expires_at_ms == 0) break;
  }
  if (old_ != nullptr) {
    // An expired entry not yet swept may still sit in the old array: a key lives in one
    // array only, so it leaves the old one (its queue item is stale from now on).
    if (Entry* stale = find_old(key_hash); stale != nullptr) {
      stale->expires_at_ms = kErased;
      --size_;
    }
  }
  CREDIT_ASSERT(size_ < keys_max_);
  put_new(Entry{key_hash, reply_no, expires_at_ms});
  ++size_;
  queue_.push_back({key_hash, expires_at_ms});
  if (old_ != nullptr) migrate(kMigrateSlotsPerInsert);
  if (old_ == nullptr && reserved_next_ready()) {
    grow();
    return;
  }
  if (!next_deferred_ && next_due()) prepare_next();
  if (size_ * 4 > (mask_ + 1) * 3 && mask_ + 1 < slots_max_) {
    if (old_ != nullptr) migrate(old_mask_ + 1);  // not expected: see kMigrateSlotsPerInsert
    grow();
  }
}

void IdempotencyTable::erase_slot(std::size_t slot) {
  std::size_t hole = slot;
  for (std::size_t s = (slot + 1) & mask_;; s = (s + 1) & mask_) {
    Entry& e = slots_[s];
    if (e.expires_at_ms == 0) break;
    std::size_t home = slot_of(e.key_hash);
    // Move e into the hole when the hole lies cyclically in [home, s).
    bool movable = ((s - home) & mask_) >= ((s - hole) & mask_);
    if (movable) {
      slots_[hole] = e;
      hole = s;
    }
  }
  slots_[hole] = Entry{};
  --size_;
}

std::uint64_t IdempotencyTable::expire(std::int64_t now_ms) {
  std::uint64_t released = 0;
  while (!queue_.empty() && queue_.front().expires_at_ms <= now_ms) {
    Queued q = queue_.front();
    queue_.pop_front();
    bool in_new = false;
    for (std::size_t s = slot_of(q.key_hash);; s = (s + 1) & mask_) {
      Entry& e = slots_[s];
      if (e.expires_at_ms == 0) break;
      if (e.key_hash == q.key_hash) {
        in_new = true;
        // A stale queue item (the key was rewritten later) leaves the entry alone.
        if (e.expires_at_ms == q.expires_at_ms) {
          if (e.reply_no + 1 > released) released = e.reply_no + 1;
          erase_slot(s);
        }
        break;
      }
    }
    if (in_new || old_ == nullptr) continue;
    if (Entry* e = find_old(q.key_hash); e != nullptr && e->expires_at_ms == q.expires_at_ms) {
      if (e->reply_no + 1 > released) released = e->reply_no + 1;
      e->expires_at_ms = kErased;
      --size_;
    }
  }
  return released;
}

}  // namespace credit::ledger
