// src/ledger/internal/ring.h
// A FIFO queue in one power-of-two array that doubles when full and never shrinks, so a
// queue that is pushed at the back and popped at the front at the same rate (the
// idempotency expiry queue, the stored replies) stops allocating once it has grown.
// Owns: the array and its head. Does not: bound its size (the callers' limits do).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "base/assert.h"

namespace credit::ledger {

template <typename T>
class Ring {
 public:
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // The i-th item from the front.
  T& operator[](std::size_t i) { return slots_[(head_ + i) & mask_]; }
  const T& operator[](std::size_t i) const { return slots_[(head_ + i) & mask_]; }
  T& front() { return (*this)[0]; }
  const T& front() const { return (*this)[0]; }
  T& back() { return (*this)[size_ - 1]; }
  const T& back() const { return (*this)[size_ - 1]; }

  void push_back(T item) {
    if (size_ == slots_.size()) grow();
    slots_[(head_ + size_) & mask_] = std::move(item);
    ++size_;
  }
  void pop_front() {
    CREDIT_ASSERT(size_ > 0);
    slots_[head_] = T{};  // releases what the item owns now, not when the slot is reused
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  void clear() {
    while (!empty()) pop_front();
  }

 private:
  static constexpr std::size_t kSlotsMin = 16;
  void grow() {
    std::vector<T> bigger(slots_.empty() ? kSlotsMin : slots_.size() * 2);
    for (std::size_t i = 0; i < size_; ++i) bigger[i] = std::move((*this)[i]);
    slots_ = std::move(bigger);
    head_ = 0;
    mask_ = slots_.size() - 1;
  }

  std::vector<T> slots_;
  std::size_t head_ = 0;
  std::size_t size_ = 0;
  std::size_t mask_ = 0;
};

}  // namespace credit::ledger
