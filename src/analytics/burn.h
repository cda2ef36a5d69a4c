// src/analytics/burn.h
// The burn monitor of DESIGN.md section 2, as a pure computation over a daily series.
// The trailing mean is taken over the `window` full UTC days before today that are on or
// after the day of the account's first event, days without burn counting as 0. Today's
// burn is a spike when it is above factor x that mean, and never with fewer than
// kSpikeDaysMin such days. The ratio is today / mean (absent when the mean is 0).
// projected_exhaustion is now + available / mean when that falls before the cycle end.
// All comparisons are exact integer arithmetic on millicredits (no rounding of the mean
// before a comparison); only the reported mean is rounded (half up) to a millicredit.
// Owns: those rules. Does not: read rollups (the caller passes the series) or alert.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace credit::analytics {

constexpr std::int64_t kSpikeFactorMilliDefault = 2000;  // 2x
// The factors an account's rule may set: a spike is above the mean (1x), and 1000x is
// already no alert.
constexpr std::int64_t kSpikeFactorMilliMin = 1'000;
constexpr std::int64_t kSpikeFactorMilliMax = 1'000'000;
constexpr std::int64_t kBurnWindowDaysDefault = 14;
constexpr std::int64_t kBurnWindowDaysMax = 366;
// "no spike with fewer than 3 such days"
constexpr std::int64_t kSpikeDaysMin = 3;

struct BurnParams {
  std::int64_t factor_milli = kSpikeFactorMilliDefault;
  std::int64_t window_days = kBurnWindowDaysDefault;
};

// The days a burn report needs: the window before today and the cycle's days to today.
struct BurnDays {
  std::int64_t today_ms = 0;         // start of the UTC day of now
  std::int64_t series_first_ms = 0;  // start of the first day the caller must supply
  std::int64_t window_first_ms = 0;  // first day of the trailing window (may be > today - 1)
  std::int64_t window_days = 0;      // days in the window (0 when none)
  std::int64_t cycle_first_ms = 0;   // the day of the cycle start
};
BurnDays burn_days(std::int64_t now_ms, std::int64_t cycle_start_ms,
                   std::optional<std::int64_t> first_event_ms, const BurnParams& params);

struct BurnDay {
  std::int64_t day_ms = 0;
  std::int64_t credits_mc = 0;
};

struct BurnReport {
  std::vector<BurnDay> days;  // the current cycle's days up to today, in order
  std::int64_t today_mc = 0;
  std::int64_t window_days = 0;  // full days the mean is taken over
  std::int64_t window_sum_mc = 0;
  std::optional<std::int64_t> trailing_mean_mc;  // absent when window_days == 0
  std::optional<double> ratio;                   // absent when the mean is 0
  bool spike = false;
  std::optional<std::int64_t> projected_exhaustion_ms;
};

// `series` holds the burn of each day from days.series_first_ms to days.today_ms.
BurnReport burn_report(const BurnDays& days, const std::vector<std::int64_t>& series,
                       std::int64_t now_ms, std::int64_t cycle_end_ms, std::int64_t available_mc,
                       const BurnParams& params);

// The same report without `days`, from today's burn and the window's sum (what alert
// evaluation needs; the rollups keep both without building the series).
BurnReport burn_summary(const BurnDays& days, std::int64_t today_mc, std::int64_t window_sum_mc,
                        std::int64_t now_ms, std::int64_t cycle_end_ms, std::int64_t available_mc,
                        const BurnParams& params);

// now + available / (sum / n), floored to the millisecond; nullopt when sum <= 0 or
// n <= 0, or when it is not before cycle_end_ms.
std::optional<std::int64_t> runs_out_at(std::int64_t now_ms, std::int64_t cycle_end_ms,
                                        std::int64_t available_mc, std::int64_t window_sum_mc,
                                        std::int64_t window_days);

}  // namespace credit::analytics
