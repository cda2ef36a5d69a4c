// src/ledger/internal/ring.h
// A FIFO queue in fixed blocks of items, reached through a power-of-two ring of block
// pointers. Pushing at the back and popping at the front at the same rate (the idempotency
// expiry queue, the stored replies) reuses one spare block and allocates nothing; growing
// never copies items, so a queue of ten million items grows without a pause (only the
// pointer ring doubles, a few KiB). Owns: the blocks and its head. Does not: bound its
// size (the callers' limits do).
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "base/assert.h"

namespace credit::ledger {

template <typename T>
class Ring {
 public:
  // Items per block: 4096 (a block of 24-byte items is 96 KiB).
  static constexpr std::size_t kBlockItems = 4096;

  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The i-th item from the front.
  T& operator[](std::size_t i) { return at(i); }
  const T& operator[](std::size_t i) const { return const_cast<Ring*>(this)->at(i); }
  T& front() { return at(0); }
  const T& front() const { return (*this)[0]; }
  T& back() { return at(size_ - 1); }
  const T& back() const { return (*this)[size_ - 1]; }

  void push_back(T item) {
    const std::size_t end = head_ + size_;
    if (end == blocks_ * kBlockItems) add_block();
    slot(end) = std::move(item);
    ++size_;
  }
  void pop_front() {
    CREDIT_ASSERT(size_ > 0);
    slot(head_) = T{};  // releases what the item owns now, not when the slot is reused
    ++head_;
    --size_;
    if (head_ == kBlockItems) drop_front_block();
  }
  void clear() {
    while (!empty()) pop_front();
  }

 private:
  using Block = std::unique_ptr<T[]>;

  T& at(std::size_t i) {
    CREDIT_ASSERT(i < size_);
    return slot(head_ + i);
  }
  // Item `pos` counted from the first item of the front block.
  T& slot(std::size_t pos) {
    return map_[(first_ + pos / kBlockItems) & (map_.size() - 1)][pos % kBlockItems];
  }
  void add_block() {
    if (blocks_ == map_.size()) {
      // The pointer ring is full: double it, front block first.
      std::vector<Block> bigger(map_.empty() ? 4 : map_.size() * 2);
      for (std::size_t b = 0; b < blocks_; ++b)
        bigger[b] = std::move(map_[(first_ + b) & (map_.size() - 1)]);
      map_ = std::move(bigger);
      first_ = 0;
    }
    Block& b = map_[(first_ + blocks_) & (map_.size() - 1)];
    b = spare_ ? std::move(spare_) : std::make_unique<T[]>(kBlockItems);
    ++blocks_;
  }
  void drop_front_block() {
    Block& b = map_[first_];
    if (!spare_) spare_ = std::move(b);
    b.reset();
    first_ = (first_ + 1) & (map_.size() - 1);
    --blocks_;
    head_ = 0;
  }

  std::vector<Block> map_;  // a ring of blocks_ blocks from first_; power-of-two size
  std::size_t first_ = 0;   // the map slot of the front block
  std::size_t blocks_ = 0;  // blocks in use
  std::size_t head_ = 0;    // the front item's place in the front block
  std::size_t size_ = 0;
  Block spare_;  // a released block, reused by the next one
};

}  // namespace credit::ledger
