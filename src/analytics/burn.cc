// src/analytics/burn.cc
// The burn monitor's arithmetic (rules in burn.h).
#include "analytics/burn.h"

#include <algorithm>

#include "base/assert.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {

BurnDays burn_days(std::int64_t now_ms, std::int64_t cycle_start_ms,
                   std::optional<std::int64_t> first_event_ms, const BurnParams& params) {
  BurnDays d;
  d.today_ms = day_start_ms(now_ms);
  d.cycle_first_ms = std::min(day_start_ms(cycle_start_ms), d.today_ms);
  d.window_first_ms = d.today_ms - params.window_days * kMsPerDay;
  if (first_event_ms) {
    d.window_first_ms = std::max(d.window_first_ms, day_start_ms(*first_event_ms));
    d.window_days = std::max<std::int64_t>(0, (d.today_ms - d.window_first_ms) / kMsPerDay);
  } else {
    d.window_first_ms = d.today_ms;
    d.window_days = 0;
  }
  d.series_first_ms = std::min(d.cycle_first_ms, std::min(d.window_first_ms, d.today_ms));
  return d;
}

std::optional<std::int64_t> runs_out_at(std::int64_t now_ms, std::int64_t cycle_end_ms,
                                        std::int64_t available_mc, std::int64_t window_sum_mc,
                                        std::int64_t window_days) {
  if (window_sum_mc <= 0 || window_days <= 0) return std::nullopt;
  // available / (sum / n) days = available * n * day_ms / sum milliseconds.
  __int128 ms = static_cast<__int128>(std::max<std::int64_t>(available_mc, 0)) * window_days *
                kMsPerDay / window_sum_mc;
  __int128 at = static_cast<__int128>(now_ms) + ms;
  if (at >= cycle_end_ms) return std::nullopt;
  return static_cast<std::int64_t>(at);
}

BurnReport burn_summary(const BurnDays& days, std::int64_t today_mc, std::int64_t window_sum_mc,
                        std::int64_t now_ms, std::int64_t cycle_end_ms, std::int64_t available_mc,
                        const BurnParams& params) {
  BurnReport r;
  r.today_mc = today_mc;
  r.window_days = days.window_days;
  r.window_sum_mc = window_sum_mc;
  if (r.window_days > 0) {
    // Rounded half up. A window netted below 0 by refunds burned nothing: its mean is 0,
    // reported as such, so the mean, the ratio and the spike read alike.
    std::int64_t n = r.window_days;
    std::int64_t s = r.window_sum_mc;
    r.trailing_mean_mc =
        s > 0 ? static_cast<std::int64_t>((static_cast<__int128>(2) * s + n) / (2 * n)) : 0;
    if (s > 0)
      r.ratio = static_cast<double>(r.today_mc) * static_cast<double>(n) / static_cast<double>(s);
    // today > factor x sum / n  <=>  today * n * 1000 > factor_milli * sum (exact), the
    // sum taken as 0 when refunds netted it below ("today > 2 x -13.333" would make a day
    // without any burn a spike).
    const std::int64_t s_floor = std::max<std::int64_t>(s, 0);
    r.spike = n >= kSpikeDaysMin && static_cast<__int128>(r.today_mc) * n * 1000 >
                                        static_cast<__int128>(params.factor_milli) * s_floor;
  }
  r.projected_exhaustion_ms =
      runs_out_at(now_ms, cycle_end_ms, available_mc, r.window_sum_mc, r.window_days);
  return r;
}

BurnReport burn_report(const BurnDays& days, const std::vector<std::int64_t>& series,
                       std::int64_t now_ms, std::int64_t cycle_end_ms, std::int64_t available_mc,
                       const BurnParams& params) {
  CREDIT_ASSERT(series.size() ==
                static_cast<std::size_t>((days.today_ms - days.series_first_ms) / kMsPerDay + 1));
  auto at = [&](std::int64_t day_ms) {
    return series[static_cast<std::size_t>((day_ms - days.series_first_ms) / kMsPerDay)];
  };
  std::int64_t window_sum_mc = 0;
  for (std::int64_t i = 0; i < days.window_days; ++i)
    window_sum_mc = saturating_add_mc(window_sum_mc, at(days.window_first_ms + i * kMsPerDay));
  BurnReport r = burn_summary(days, at(days.today_ms), window_sum_mc, now_ms, cycle_end_ms,
                              available_mc, params);
  for (std::int64_t d = days.cycle_first_ms; d <= days.today_ms; d += kMsPerDay)
    r.days.push_back({d, at(d)});
  return r;
}

}  // namespace credit::analytics
