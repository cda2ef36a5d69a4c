// src/base/id_index.h
// Short string ids (account ids) to the numbers their owner gave them, for lookups made
// once per event: one open-addressing array of (hash of the id, number), linear probing,
// at most half full. A lookup reads one 16-byte slot; the owner confirms a hash match
// against the id it keeps beside the numbered record it is about to use anyway, so a hit
// costs one cache miss before that record instead of a node-based map's bucket and node.
// Nothing is removed. Owns: the slots. Does not: keep the ids (the owner does).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

#include "base/assert.h"

namespace credit {

// Equality of two ids, inline for the usual short ones (a call to memcmp costs more than
// comparing a few words): the per-event lookups confirm a hash match with it.
inline bool ids_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  const std::size_t n = a.size();
  if (n > 16) return std::memcmp(a.data(), b.data(), n) == 0;
  if (n >= 8) {
    std::uint64_t x0, y0, x1, y1;
    std::memcpy(&x0, a.data(), 8);
    std::memcpy(&y0, b.data(), 8);
    std::memcpy(&x1, a.data() + n - 8, 8);
    std::memcpy(&y1, b.data() + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

class IdIndex {
 public:
  static constexpr std::uint32_t kNone = UINT32_MAX;

  static std::uint64_t hash_of(std::string_view id) {
    // FNV-1a over 8-byte words, then a final mix: ids are short, so this is a few cycles.
    std::uint64_t h = 0xcbf29ce484222325ULL ^ id.size();
    std::size_t i = 0;
    for (; i + 8 <= id.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, id.data() + i, 8);
      h = (h ^ w) * 0x100000001b3ULL;
    }
    std::uint64_t tail = 0;
    if (i < id.size()) std::memcpy(&tail, id.data() + i, id.size() - i);
    h = (h ^ tail) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
  }

  // The number of the id whose hash is h and for which is_id(number) is true; kNone when
  // there is none.
  template <typename IsId>
  std::uint32_t find(std::uint64_t h, IsId is_id) const {
    if (slots_.empty()) return kNone;
    for (std::size_t s = h & mask_;; s = (s + 1) & mask_) {
      const Slot& slot = slots_[s];
      if (slot.number == kNone) return kNone;
      if (slot.hash == h && is_id(slot.number)) return slot.number;
    }
  }
  // Adds an id (by its hash) that find() does not know, under `number`.
  void insert(std::uint64_t h, std::uint32_t number) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    place(h, number);
    ++size_;
  }
  // find(); when there is none, inserts the id under `next` (the owner's next number,
  // which it then adds). Second: whether it was inserted.
  template <typename IsId>
  std::pair<std::uint32_t, bool> find_or_insert(std::uint64_t h, IsId is_id, std::size_t next) {
    const std::uint32_t found = find(h, is_id);
    if (found != kNone) return {found, false};
    CREDIT_ASSERT(next < kNone);
    insert(h, static_cast<std::uint32_t>(next));
    return {static_cast<std::uint32_t>(next), true};
  }
  std::size_t size() const { return size_; }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t number = kNone;  // kNone: empty
  };
  static constexpr std::size_t kSlotsMin = 64;

  void place(std::uint64_t h, std::uint32_t number) {
    std::size_t s = h & mask_;
    while (slots_[s].number != kNone) s = (s + 1) & mask_;
    slots_[s] = Slot{h, number};
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? kSlotsMin : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.number != kNone) place(slot.hash, slot.number);
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace credit
