// src/time/clock.cc
// The system clock (the one place that reads it) and the manual clock's forward-only move.
// Owns: SystemClock::now_ms, ManualClock::set_ms. Does not: decide the ledger's now.
#include "time/clock.h"

#include <chrono>

namespace credit {

std::int64_t SystemClock::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A compare-and-swap loop, so two threads moving the clock never move it backwards.
bool ManualClock::set_ms(std::int64_t at_ms) {
  std::int64_t current = now_ms_.load(std::memory_order_acquire);
  while (true) {
    if (at_ms < current) return false;
    if (now_ms_.compare_exchange_weak(current, at_ms, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      return true;
    }
  }
}

}  // namespace credit
