// src/time/clock.h
// The injected clock. Nothing reads the system clock but SystemClock.
// Owns: Clock, SystemClock, ManualClock. Does not: decide the ledger's now (the ledger
// takes max(clock, last logged instant) itself).
#pragma once

#include <atomic>
#include <cstdint>

namespace credit {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::int64_t now_ms() const = 0;
};

class SystemClock final : public Clock {
 public:
  std::int64_t now_ms() const override;
};

// A clock moved by hand (tests, simulations, `creditd --clock manual`). Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_ms = 0) : now_ms_(start_ms) {}
  std::int64_t now_ms() const override { return now_ms_.load(std::memory_order_acquire); }
  // Moves the clock; refuses (returns false) to go backwards.
  bool set_ms(std::int64_t at_ms);
  void advance_ms(std::int64_t delta_ms) { set_ms(now_ms() + delta_ms); }

 private:
  std::atomic<std::int64_t> now_ms_;
};

}  // namespace credit
