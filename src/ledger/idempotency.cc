// src/ledger/idempotency.cc
// Linear probing with backward-shift deletion, so no tombstones accumulate.
#include "ledger/idempotency.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "base/assert.h"
#include "ledger/internal/huge_pages.h"

namespace credit::ledger {

IdempotencyTable::IdempotencyTable(std::size_t keys_max) : keys_max_(keys_max) {
  CREDIT_ASSERT(keys_max > 0);
  // At full capacity the load factor is at most 0.8: slots_max >= keys_max * 1.25.
  slots_max_ = kSlotsMin;
  while (slots_max_ < keys_max + keys_max / 4) slots_max_ <<= 1;
  // The array starts small and doubles with the live keys, so a fresh server does not
  // fault in a page of a 3 GiB array for every new key.
  allocate(std::min(slots_max_, kSlotsInitial));
}

namespace {
// Arrays of at least a huge page get a mapping of their own in transparent huge pages
// (internal/huge_pages.h): with 4 KiB pages a lookup in a table of millions of keys
// misses the TLB as well as the cache, and a prefetch then waits for the page walk.
// Smaller arrays come from calloc.
IdempotencyTable::Entry* map_zeroed(std::size_t bytes) {
  return static_cast<IdempotencyTable::Entry*>(map_huge(bytes));
}
}  // namespace

void IdempotencyTable::allocate(std::size_t slots) {
  const std::size_t bytes = slots * sizeof(Entry);
  if (bytes >= kHugePageBytes) {
    slots_ = map_zeroed(bytes);
  } else {
    slots_ = static_cast<Entry*>(std::calloc(slots, sizeof(Entry)));
    if (slots_ == nullptr) throw std::bad_alloc();
  }
  mask_ = slots - 1;
}

void IdempotencyTable::release(Entry* slots, std::size_t count) {
  const std::size_t bytes = count * sizeof(Entry);
  if (bytes >= kHugePageBytes) {
    unmap_huge(slots, bytes);
  } else {
    std::free(slots);
  }
}

void IdempotencyTable::grow() {
  Entry* old = slots_;
  std::size_t old_slots = mask_ + 1;
  allocate(old_slots * 2);
  for (std::size_t i = 0; i < old_slots; ++i) {
    const Entry& e = old[i];
    if (e.expires_at_ms == 0) continue;
    std::size_t s = slot_of(e.key_hash);
    while (slots_[s].expires_at_ms != 0) s = (s + 1) & mask_;
    slots_[s] = e;
  }
  release(old, old_slots);
}

IdempotencyTable::~IdempotencyTable() {
  release(slots_, mask_ + 1);
}

const IdempotencyTable::Entry* IdempotencyTable::find(const Hash128& key_hash,
                                                      std::int64_t now_ms) const {
  for (std::size_t s = slot_of(key_hash);; s = (s + 1) & mask_) {
    const Entry& e = slots_[s];
    if (e.expires_at_ms == 0) return nullptr;
    if (e.key_hash == key_hash) return e.expires_at_ms > now_ms ? &e : nullptr;
  }
}

void IdempotencyTable::insert(const Hash128& key_hash, const Hash128& request_hash,
                              std::uint64_t reply_no, std::int64_t expires_at_ms) {
  CREDIT_ASSERT(expires_at_ms > 0);
  for (std::size_t s = slot_of(key_hash);; s = (s + 1) & mask_) {
    Entry& e = slots_[s];
    if (e.expires_at_ms != 0 && e.key_hash == key_hash) {
      // An expired entry not yet swept: reuse its slot; its queue item is stale.
      e.request_hash = request_hash;
      e.reply_no = reply_no;
      e.expires_at_ms = expires_at_ms;
      queue_.push_back({key_hash, expires_at_ms});
      return;
    }
    if (e.expires_at_ms == 0) {
      CREDIT_ASSERT(size_ < keys_max_);
      e = Entry{key_hash, request_hash, reply_no, expires_at_ms};
      ++size_;
      queue_.push_back({key_hash, expires_at_ms});
      if (size_ * 4 > (mask_ + 1) * 3 && mask_ + 1 < slots_max_) grow();
      return;
    }
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
    for (std::size_t s = slot_of(q.key_hash);; s = (s + 1) & mask_) {
      Entry& e = slots_[s];
      if (e.expires_at_ms == 0) break;
      if (e.key_hash == q.key_hash) {
        // A stale queue item (the key was rewritten later) leaves the entry alone.
        if (e.expires_at_ms == q.expires_at_ms) {
          if (e.reply_no + 1 > released) released = e.reply_no + 1;
          erase_slot(s);
        }
        break;
      }
    }
  }
  return released;
}

}  // namespace credit::ledger
