// src/analytics/forecast.cc
// Forecast and plan advice (rules in forecast.h).
#include "analytics/forecast.h"

#include <fmt/format.h>

#include <algorithm>

#include "analytics/burn.h"
#include "base/json_writer.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

std::string credits(std::int64_t mc) {
  return format_credits(Millicredits::from_mc(mc));
}

}  // namespace

std::string_view advice_action_name(AdviceAction a) {
  switch (a) {
    case AdviceAction::kStay:
      return "stay";
    case AdviceAction::kUpgradeNow:
      return "upgrade_now";
    case AdviceAction::kUpgradeNextCycle:
      return "upgrade_next_cycle";
    case AdviceAction::kDowngrade:
      return "downgrade";
  }
  return "stay";
}

std::string usd_text(std::int64_t cents) {
  std::string sign = cents < 0 ? "-" : "";
  std::int64_t a = cents < 0 ? -cents : cents;
  if (a % 100 == 0) return fmt::format("{}{}", sign, a / 100);
  return fmt::format("{}{}.{:02}", sign, a / 100, a % 100);
}

PlanPick pick_plan(const pricing::Catalog& catalog, std::span<const PoolNeed> needs,
                   std::string_view current_plan_id) {
  PlanPick pick;
  __int128 best_short = 0;
  for (const pricing::Plan& p : catalog.plans) {
    // The credits by which p falls short of the needs (0: it covers them all).
    __int128 short_mc = 0;
    bool has_all = true;
    for (const PoolNeed& n : needs) {
      const pricing::PoolAllowance* pa = p.pool(n.pool);
      if (pa == nullptr) {
        has_all = false;
        break;
      }
      if (pa->allowance.mc() < n.need_mc) short_mc += n.need_mc - pa->allowance.mc();
    }
    if (!has_all) continue;
    const pricing::Plan* best = pick.plan;
    const bool better = best == nullptr || short_mc < best_short ||
                        (short_mc == best_short &&
                         (p.price_usd_cents < best->price_usd_cents ||
                          (p.price_usd_cents == best->price_usd_cents && p.id == current_plan_id)));
    if (better) {
      pick.plan = &p;
      best_short = short_mc;
      pick.covers = short_mc == 0;
    }
  }
  return pick;
}

void order_needs(const pricing::Plan& plan, std::vector<PoolNeed>& needs) {
  const auto rank = [&plan](const PoolNeed& n) {
    for (std::size_t i = 0; i < plan.pools.size(); ++i) {
      if (plan.pools[i].pool == n.pool) return i;
    }
    return plan.pools.size();
  };
  std::stable_sort(needs.begin(), needs.end(), [&rank](const PoolNeed& a, const PoolNeed& b) {
    const std::size_t ra = rank(a), rb = rank(b);
    return ra != rb ? ra < rb : a.pool < b.pool;
  });
}

std::string needs_text(std::span<const PoolNeed> needs) {
  if (needs.size() == 1) {
    return fmt::format("the projected need of {} credits", credits(needs.front().need_mc));
  }
  std::string out = "the projected needs of";
  for (std::size_t i = 0; i < needs.size(); ++i) {
    out += i == 0 ? " " : (i + 1 == needs.size() ? " and " : ", ");
    out += fmt::format("{} {}", needs[i].pool, credits(needs[i].need_mc));
  }
  return out + " credits";
}

std::string runs_out_text(std::span<const std::string> running_out, std::size_t pools) {
  if (pools <= 1 || running_out.empty()) return "credits run out";
  std::string out = "credits of the " + running_out.front();
  for (std::size_t i = 1; i < running_out.size(); ++i) out += " and " + running_out[i];
  return out + (running_out.size() > 1 ? " pools run out" : " pool run out");
}

std::string hours_text(double hours) {
  return json::fraction_text(hours);
}

Forecast forecast(const ForecastInputs& in, const pricing::Catalog& catalog) {
  Forecast f;
  const std::int64_t base = in.allowance_mc + in.extra_mc;
  if (base > 0) f.utilization = static_cast<double>(in.used_mc) / static_cast<double>(base);
  // Null only when it falls after the cycle end: the end instant itself is answered (the
  // credits last exactly the cycle), unlike projected_exhaustion, which must fall before it.
  f.runs_out_at_ms = runs_out_at(in.now_ms, in.cycle_end_ms + 1, in.available_mc, in.window_sum_mc,
                                 in.window_days);
  // The end instant belongs to the next cycle: running out then is not running out this one.
  const auto this_cycle = [&in](const std::optional<std::int64_t>& at) {
    return at && *at < in.cycle_end_ms;
  };
  f.plan = in.plan_id;
  const pricing::Plan* current = catalog.find(in.plan_id);
  if (in.window_days <= 0 || current == nullptr) {
    f.reason = current == nullptr ? "the current plan is not in the catalog"
                                  : "not enough history: no full day of burn yet";
    return f;
  }
  // need = 1.1 x (sum / n) x (cycle_ms / day_ms), rounded up.
  const auto need_of = [&in](std::int64_t window_sum_mc) {
    const __int128 num =
        static_cast<__int128>(11) * window_sum_mc * (in.cycle_end_ms - in.cycle_start_ms);
    const __int128 den = static_cast<__int128>(10) * in.window_days * kMsPerDay;
    return saturating_mc(num <= 0 ? 0 : (num + den - 1) / den);
  };
  f.need_mc = need_of(in.window_sum_mc);
  // Every pool's need; the pools whose credits run out before the cycle ends.
  std::vector<PoolNeed> needs{{in.pool, *f.need_mc}};
  std::vector<std::string> running_out;
  if (this_cycle(f.runs_out_at_ms)) running_out.push_back(in.pool);
  for (const ForecastInputs::OtherPool& o : in.other_pools) {
    needs.push_back({o.pool, need_of(o.window_sum_mc)});
    if (this_cycle(runs_out_at(in.now_ms, in.cycle_end_ms + 1, o.available_mc, o.window_sum_mc,
                               in.window_days))) {
      running_out.push_back(o.pool);
    }
  }
  order_needs(*current, needs);
  const bool runs_out_this_cycle = !running_out.empty();
  const std::string runs_out_s = runs_out_text(running_out, needs.size());

  const auto [pick, covers] = pick_plan(catalog, needs, in.plan_id);
  if (pick == nullptr) {
    f.reason = needs.size() > 1 ? "no plan has every pool the account uses"
                                : "no plan has the pool " + in.pool;
    return f;
  }
  const std::int64_t delta = pick->price_usd_cents - current->price_usd_cents;
  f.price_delta_usd_cents = delta;
  // USD / (USD per hour): delta_cents / 100 / (rate_milli / 1000).
  f.engineering_hours =
      in.hourly_rate_usd_milli > 0
          ? static_cast<double>(delta) * 10.0 / static_cast<double>(in.hourly_rate_usd_milli)
          : 0.0;
  const std::string need_s = needs_text(needs);
  const std::string cover_s = covers ? "covers" : "comes closest to (none covers)";
  // (pick_plan names the current plan at an equal price when it covers the need: another
  // plan at the same price covers what the current one does not, a move for 0 USD.)
  if (pick->id == in.plan_id) {
    f.action = AdviceAction::kStay;
    f.plan = in.plan_id;
    f.price_delta_usd_cents = 0;
    f.engineering_hours = 0;
    f.sized_correctly = covers && base > 0 &&
                        static_cast<__int128>(in.used_mc) * 1000 >=
                            static_cast<__int128>(base) * kSizedCorrectlyPermille;
    f.reason = fmt::format("{} {} {} a cycle", in.plan_id, cover_s, need_s);
    if (f.sized_correctly)
      f.reason = "sized correctly: " + f.reason + " and the plan is used at 90 % or more";
    return f;
  }
  f.plan = pick->id;
  if (delta < 0) {
    f.action = AdviceAction::kDowngrade;
    f.reason = fmt::format("{} {} {} a cycle for {} USD less", pick->id, cover_s, need_s,
                           usd_text(-delta));
    return f;
  }
  // delta cents <= rate (milli-USD per hour) x hours (milli-hours) / 10^4 cents, exactly.
  const bool cheap = static_cast<__int128>(delta) * 10'000 <=
                     static_cast<__int128>(in.hourly_rate_usd_milli) * in.break_even_hours_milli;
  const std::string hours = hours_text(f.engineering_hours);
  if (delta == 0) {
    // Not an upgrade (DESIGN.md: "an upgrade when the new plan's price is higher"): a change
    // at the same price waits for the next boundary as pending_plan.
    f.action = AdviceAction::kUpgradeNextCycle;
    f.reason = fmt::format(
        "{} {} {} at the same price; a change at the same price takes effect at the next cycle",
        pick->id, cover_s, need_s);
  } else if (runs_out_this_cycle && cheap) {
    f.action = AdviceAction::kUpgradeNow;
    f.reason = fmt::format(
        "{} before the cycle ends; {} {} {} for {} USD more, {} engineering hours, within the "
        "break-even",
        runs_out_s, pick->id, cover_s, need_s, usd_text(delta), hours);
  } else {
    f.action = AdviceAction::kUpgradeNextCycle;
    f.reason =
        runs_out_this_cycle
            ? fmt::format(
                  "{} before the cycle ends, but {} USD more ({} engineering hours) is above the "
                  "break-even; move to {} from the next cycle: it {} {}",
                  runs_out_s, usd_text(delta), hours, pick->id, cover_s, need_s)
            : fmt::format(
                  "this cycle's credits last; {} {} {} from the next cycle for {} USD more ({} "
                  "engineering hours)",
                  pick->id, cover_s, need_s, usd_text(delta), hours);
  }
  return f;
}

}  // namespace credit::analytics
