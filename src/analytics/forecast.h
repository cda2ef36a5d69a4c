// src/analytics/forecast.h
// Forecast and plan advice (DESIGN.md section 2), as a pure computation:
//   runs_out_at = now + available / trailing mean (absent when the mean is 0 or it falls
//     after the cycle end; exactly at the end it is answered, but the credits do not run
//     out this cycle);
//   utilization = used / (allowance + extra);
//   need = 1.1 x trailing mean x the cycle's length in days, rounded up to a millicredit.
// The cheapest plan whose allowance of the pool covers `need` decides (when none does,
// the plan with the largest allowance): cheaper than the current plan -> downgrade; the
// current plan -> stay; pricier (or another plan at the same price, which covers what the
// current one does not: a move for 0 USD) -> upgrade_now when the
// credits run out this cycle and the price difference is at most hourly_rate x
// break_even_hours, otherwise upgrade_next_cycle. Staying at 90 % utilisation or more
// is reported as sized correctly. Without a full day of history the advice is to stay.
// Owns: those rules. Does not: compute the trailing mean (burn.h) or read the ledger.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pricing/plan.h"

namespace credit::analytics {

constexpr std::int64_t kHourlyRateUsdMilliDefault = 100'000;  // 100 USD per hour
constexpr std::int64_t kBreakEvenHoursMilliDefault = 8'000;   // 8 hours
// Utilisation from which staying on the plan is "sized correctly": 90 %.
constexpr std::int64_t kSizedCorrectlyPermille = 900;

struct ForecastInputs {
  std::int64_t now_ms = 0;
  std::int64_t cycle_start_ms = 0;
  std::int64_t cycle_end_ms = 0;
  std::int64_t used_mc = 0;
  std::int64_t allowance_mc = 0;
  std::int64_t extra_mc = 0;
  std::int64_t available_mc = 0;
  std::int64_t window_days = 0;    // full days of the trailing mean (burn.h)
  std::int64_t window_sum_mc = 0;  // their burn
  std::string plan_id;             // the current plan
  std::string pool;
  std::int64_t hourly_rate_usd_milli = kHourlyRateUsdMilliDefault;
  std::int64_t break_even_hours_milli = kBreakEvenHoursMilliDefault;
};

enum class AdviceAction : std::uint8_t { kStay = 0, kUpgradeNow, kUpgradeNextCycle, kDowngrade };
std::string_view advice_action_name(AdviceAction a);

struct Forecast {
  std::optional<std::int64_t> need_mc;  // absent without a full day of history
  std::optional<double> utilization;    // absent when allowance + extra is 0
  std::optional<std::int64_t> runs_out_at_ms;
  AdviceAction action = AdviceAction::kStay;
  std::string plan;  // the plan advised (the current one to stay)
  std::int64_t price_delta_usd_cents = 0;
  double engineering_hours = 0;  // the price difference / hourly_rate
  bool sized_correctly = false;
  std::string reason;
};

Forecast forecast(const ForecastInputs& in, const pricing::Catalog& catalog);

// The plan the advice names, shared with the audit's (audit.h): the cheapest plan whose
// allowance of `pool` covers need_mc, the current plan winning at an equal price; when
// none covers, the one with the largest allowance (the cheaper at an equal allowance).
// `plan` is nullptr when no plan has the pool.
struct PlanPick {
  const pricing::Plan* plan = nullptr;
  bool covers = false;
};
PlanPick pick_plan(const pricing::Catalog& catalog, std::string_view pool, std::int64_t need_mc,
                   std::string_view current_plan_id);
// Cents as USD for a sentence: "50", "29.99", "-5".
std::string usd_text(std::int64_t cents);

}  // namespace credit::analytics
