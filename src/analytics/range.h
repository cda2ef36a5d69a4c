// src/analytics/range.h
// The time range of an analytics read (DESIGN.md section 2, API.md): half-open
// [from, to), snapped to the hour.
// Owns: the snapping rule, shared by the analytics routes, the audit route and
// `creditctl audit` so that the same query covers the same instants everywhere.
// Does not: parse or validate query parameters (the callers refuse a `to` before `from`).
#pragma once

#include <cstdint>

#include "base/assert.h"
#include "time/time.h"

namespace credit::analytics {

// A half-open range [from_ms, to_ms) of instants.
struct TimeRange {
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;
};

// Snaps [from_ms, to_ms) to the hour, `from` down and `to` up. The callers refuse a `to`
// before `from` as given, before snapping (API.md: 400 invalid_request, param "to"), so
// that from=10:40&to=10:10 is refused rather than snapped to [10:00, 11:00); from == to
// then gives [h, h) on the hour h, and the hour that holds it otherwise.
inline TimeRange snap_to_hours(std::int64_t from_ms, std::int64_t to_ms) {
  CREDIT_ASSERT(from_ms <= to_ms);
  const std::int64_t to_hour_ms = hour_start_ms(to_ms);
  return TimeRange{hour_start_ms(from_ms), to_hour_ms == to_ms ? to_ms : to_hour_ms + kMsPerHour};
}

}  // namespace credit::analytics
