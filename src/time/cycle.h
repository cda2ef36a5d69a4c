// src/time/cycle.h
// Billing cycles: one calendar month long, anchored on an instant. Cycle k starts at the
// anchor's day-of-month and time-of-day, k months after the anchor, the day clamped to
// the month's length, always computed from the original anchor (no drift):
// anchor Jan 31 10:00 -> Feb 28 (29) 10:00 -> Mar 31 10:00. Cycles are half-open.
// Owns: cycle arithmetic. Does not: know plans or accounts.
#pragma once

#include <cstdint>

namespace credit {

struct CycleBounds {
  std::int64_t index = 0;  // k: 0 is the cycle that starts at the anchor
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;  // exclusive
};

// The start of cycle k (k may be negative) of an anchor.
std::int64_t cycle_start_ms(std::int64_t anchor_ms, std::int64_t k);
// The cycle [start, end) that contains at_ms (at_ms may precede the anchor: k < 0).
CycleBounds cycle_at(std::int64_t anchor_ms, std::int64_t at_ms);
// Cycle k of an anchor.
CycleBounds cycle_by_index(std::int64_t anchor_ms, std::int64_t k);

}  // namespace credit
