// src/analytics/forecast.h
// Forecast and plan advice (DESIGN.md section 2), as a pure computation:
//   runs_out_at = now + available / trailing mean (absent when the mean is 0 or it falls
//     after the cycle end; exactly at the end it is answered, but the credits do not run
//     out this cycle);
//   utilization = used / (allowance + extra);
//   need = 1.1 x trailing mean x the cycle's length in days, rounded up to a millicredit.
// A plan change moves every pool at once, so the advice is one for the account: a plan
// may be advised only if it has every pool the account uses (its current plan's pools: on
// a server, every pool of the rate card) and covers each pool's need (the same formula,
// on that pool's burn). The cheapest plan that covers them all decides (when none does, the one
// with the smallest shortfall: the sum of need - allowance over the pools it does not cover):
// cheaper than the current plan -> downgrade; the current plan -> stay; pricier (or
// another plan at the same price, which covers what the current one does not: a move for
// 0 USD) -> upgrade_now when the credits of some pool run out this cycle and the price
// difference is at most hourly_rate x break_even_hours, otherwise upgrade_next_cycle.
// Whichever pool is asked, the action, plan and price are the same; need, utilization,
// runs_out_at and sized_correctly are the asked pool's. Staying at 90 % utilisation (of
// the asked pool) or more is reported as sized correctly. Without a full day of history
// the advice is to stay.
// Owns: those rules. Does not: compute the trailing mean (burn.h) or read the ledger.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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
  std::string pool;                // the pool asked about
  // The account's other pools (its plan's, but `pool`), whose needs the advice must cover
  // too: their burn over the same window_days, and what is available in them now.
  struct OtherPool {
    std::string pool;
    std::int64_t window_sum_mc = 0;
    std::int64_t available_mc = 0;
  };
  std::vector<OtherPool> other_pools;
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

// One pool's projected need per cycle.
struct PoolNeed {
  std::string pool;
  std::int64_t need_mc = 0;
};

// The plan the advice names, shared with the audit's (audit.h): among the plans that have
// every pool of `needs`, the cheapest whose allowances cover every need, the current plan
// winning at an equal price; when none covers them all, the one with the smallest
// shortfall (the cheaper at an equal shortfall, the current one at an equal price too).
// `plan` is nullptr when no plan has every pool.
struct PlanPick {
  const pricing::Plan* plan = nullptr;
  bool covers = false;
};
PlanPick pick_plan(const pricing::Catalog& catalog, std::span<const PoolNeed> needs,
                   std::string_view current_plan_id);
// `needs` in the order of `plan`'s pools, then the others by name: the order the advice
// names them in, the same whichever pool is asked.
void order_needs(const pricing::Plan& plan, std::vector<PoolNeed>& needs);
// The needs for a sentence: "the projected need of 12.5 credits" for one pool, "the
// projected needs of message 12.5 and integration 3 credits" for several.
std::string needs_text(std::span<const PoolNeed> needs);
// "credits run out" for a one-pool account; naming the pools that run out for one of
// several: "credits of the message pool run out", "credits of the a and b pools run out".
std::string runs_out_text(std::span<const std::string> running_out, std::size_t pools);
// Engineering hours as a JSON number: the shortest form, at most 6 decimals ("0.3", "-1").
std::string hours_text(double hours);
// Cents as USD for a sentence: "50", "29.99", "-5".
std::string usd_text(std::int64_t cents);

}  // namespace credit::analytics
