// src/analytics/range.h
// The time range of an analytics read (DESIGN.md section 2, API.md): half-open
// [from, to), the ends given snapped to the hour, the current cycle (exact) by default.
// Owns: the snapping rule, shared by the analytics routes, the audit route and
// `creditctl audit` so that the same query covers the same instants everywhere.
// Does not: parse or validate query parameters (the callers refuse a `to` before `from`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

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
// then gives [h, h) on the hour h, and the hour that holds it otherwise. A `to` in the last
// hour of 9999 snaps to kLastMsOf9999, not to year 10000: every instant an answer writes
// reads back.
inline TimeRange snap_to_hours(std::int64_t from_ms, std::int64_t to_ms) {
  CREDIT_ASSERT(from_ms <= to_ms);
  const std::int64_t to_hour_ms = hour_start_ms(to_ms);
  const std::int64_t up_ms =
      to_hour_ms == to_ms ? to_ms
                          : std::min(to_hour_ms + kMsPerHour, std::max(to_ms, kLastMsOf9999));
  return TimeRange{hour_start_ms(from_ms), up_ms};
}

// The range of a read: the ends the caller gave snap as above; an end left out is the
// default's, exact (DESIGN.md: "a range left out means the current cycle", and a cycle
// begins where its anchor puts it, often inside an hour; the rollups split their hour at
// every cycle start, rollup.h). The callers refuse a `to` before `from` first.
inline TimeRange query_range(std::optional<std::int64_t> from_ms, std::optional<std::int64_t> to_ms,
                             TimeRange left_out) {
  TimeRange r = left_out;
  if (from_ms) r.from_ms = *from_ms;
  if (to_ms) r.to_ms = *to_ms;
  CREDIT_ASSERT(r.from_ms <= r.to_ms);
  const TimeRange snapped = snap_to_hours(r.from_ms, r.to_ms);
  if (from_ms) r.from_ms = snapped.from_ms;
  if (to_ms) r.to_ms = snapped.to_ms;
  return r;
}

}  // namespace credit::analytics
