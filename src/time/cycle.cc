// src/time/cycle.cc
// Monthly billing cycles computed from the original anchor, so the day never drifts.
// Owns: cycle_start_ms, cycle_at, cycle_by_index. Does not: know plans or accounts.
#include "time/cycle.h"

#include <algorithm>
#include <limits>

#include "base/assert.h"
#include "time/time.h"

namespace credit {
namespace {

constexpr std::int64_t kMonthsPerYear = 12;
constexpr std::int64_t kMsMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMsMin = std::numeric_limits<std::int64_t>::min();

// Months since year 0 of a civil time: year * 12 + (month - 1).
std::int64_t month_serial(const CivilTime& t) {
  return static_cast<std::int64_t>(t.year) * kMonthsPerYear + (t.month - 1);
}

// The start of a cycle, or where it lies when it is beyond the int64 range (only for
// instants some 292 million years away): `beyond` is -1 before it, +1 after it.
struct Start {
  std::int64_t ms = 0;
  int beyond = 0;
  bool after(std::int64_t at_ms) const { return beyond > 0 || (beyond == 0 && ms > at_ms); }
  std::int64_t clamped() const { return beyond > 0 ? kMsMax : beyond < 0 ? kMsMin : ms; }
};

// The anchor's day and time of day placed in the month `serial`, the day clamped to the
// month's length.
Start start_in_month(const CivilTime& anchor, std::int64_t serial) {
  const std::int64_t year = floor_div(serial, kMonthsPerYear);
  if (year > std::numeric_limits<int>::max()) return {0, 1};
  if (year < std::numeric_limits<int>::min()) return {0, -1};
  CivilTime t = anchor;
  t.year = static_cast<int>(year);
  t.month = static_cast<int>(serial - year * kMonthsPerYear) + 1;
  t.day = std::min(anchor.day, days_in_month(t.year, t.month));
  const std::int64_t days = days_from_civil(t.year, t.month, t.day);
  const std::int64_t in_day =
      t.hour * kMsPerHour + t.minute * kMsPerMinute + t.second * kMsPerSecond + t.millisecond;
  std::int64_t ms = 0;
  if (__builtin_mul_overflow(days, kMsPerDay, &ms) || __builtin_add_overflow(ms, in_day, &ms)) {
    return {0, days < 0 ? -1 : 1};
  }
  return {ms, 0};
}

Start start_of(const CivilTime& anchor, std::int64_t k) {
  std::int64_t serial = 0;
  if (__builtin_add_overflow(month_serial(anchor), k, &serial)) return {0, k < 0 ? -1 : 1};
  return start_in_month(anchor, serial);
}

}  // namespace

// Beyond the int64 range the start saturates at the nearer limit.
std::int64_t cycle_start_ms(std::int64_t anchor_ms, std::int64_t k) {
  return start_of(civil_from_ms(anchor_ms), k).clamped();
}

CycleBounds cycle_by_index(std::int64_t anchor_ms, std::int64_t k) {
  const CivilTime anchor = civil_from_ms(anchor_ms);
  return {k, start_of(anchor, k).clamped(), start_of(anchor, k + 1).clamped()};
}

// Cycle k starts in the month k after the anchor's, so the estimate from the month
// difference is the cycle that starts in at_ms's own month; if at_ms falls before that
// start (earlier day or time in the month), at_ms is in the cycle before it. One step at
// most either way.
CycleBounds cycle_at(std::int64_t anchor_ms, std::int64_t at_ms) {
  const CivilTime anchor = civil_from_ms(anchor_ms);
  const CivilTime at = civil_from_ms(at_ms);
  std::int64_t k = month_serial(at) - month_serial(anchor);
  if (start_of(anchor, k).after(at_ms)) --k;
  const Start start = start_of(anchor, k);
  const Start end = start_of(anchor, k + 1);
  CREDIT_ASSERT(!start.after(at_ms));
  CREDIT_ASSERT(end.after(at_ms));
  // An end beyond the int64 range reads as the int64 maximum (no instant reaches it).
  return {k, start.clamped(), end.clamped()};
}

}  // namespace credit
