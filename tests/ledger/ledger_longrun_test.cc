// tests/ledger/ledger_longrun_test.cc
// 10,000 accounts on every plan and every anchor day (1..31) through 24 simulated months
// of charges, holds, packs and plan changes, run through two ledgers with the same
// commands: one never sweeps (every reset is lazy), the other sweeps every other day.
// At every boundary an account passes the reset is exact (the cycle starts on the anchor
// day clamped to the month, at the anchor's time; used is 0; the allowance is the plan's),
// and both ledgers show identical views of every account every quarter and at the end.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "ledger/ledger.h"
#include "ledger_harness.h"
#include "time/time.h"

namespace credit::ledger {
namespace {

using testing::at;
using testing::capture;
using testing::charge;
using testing::cr;
using testing::create;
using testing::field;
using testing::grant;
using testing::hold;
using testing::mc;

constexpr int kAccounts = 10'000;
constexpr int kDays = 730;  // 2026-02-01 .. 2028-01-31: 24 months
constexpr std::int64_t kDay = 86'400'000;

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct Expect {
  std::string id;
  std::string plan;
  std::optional<std::string> pending;
  int anchor_day = 1;
  std::int64_t anchor_time_ms = 0;  // ms since midnight
  std::int64_t seen_cycle_start = 0;
  std::string hold_id;
};

class Twin {
 public:
  explicit Twin(const pricing::Catalog& c)
      : lazy(c, LedgerOptions{.idempotency_keys_max = 16}),
        swept(c, LedgerOptions{.idempotency_keys_max = 16}) {}
  void begin(std::int64_t now) {
    lazy.begin_batch(now);
    swept.begin_batch(now);
  }
  // Runs a command through both ledgers; ids differ (sweeps number events too), so the
  // answers compare by status, cost and available_after. Returns both answers.
  std::pair<Reply, Reply> run2(CommandBody for_lazy, CommandBody for_swept) {
    Command a;
    a.body = std::move(for_lazy);
    Command b;
    b.body = std::move(for_swept);
    Reply x = lazy.apply(a, events);
    Reply y = swept.apply(b, events);
    events.clear();
    if (x.status != y.status || field(x.body, "cost") != field(y.body, "cost") ||
        field(x.body, "available_after") != field(y.body, "available_after")) {
      ADD_FAILURE() << "lazy " << x.body << "\nswept " << y.body;
      ++mismatches;
    }
    return {std::move(x), std::move(y)};
  }
  Reply run(CommandBody body) { return run2(body, body).first; }
  // As the engine does: a Sweep advances a bounded number of accounts, so another
  // follows while something is due.
  void sweep() {
    while (swept.next_due_ms() <= swept.now_ms()) {
      Command c;
      c.body = Sweep{};
      swept.apply(c, events);
      events.clear();
    }
  }
  Ledger lazy;
  Ledger swept;
  std::vector<Event> events;
  int mismatches = 0;
};

bool same_view(const AccountView& x, const AccountView& y) {
  if (x.plan != y.plan || x.cycle_start_ms != y.cycle_start_ms ||
      x.cycle_end_ms != y.cycle_end_ms || x.pending_plan != y.pending_plan ||
      x.closed != y.closed || x.pools.size() != y.pools.size()) {
    return false;
  }
  for (std::size_t i = 0; i < x.pools.size(); ++i) {
    const PoolView& a = x.pools[i];
    const PoolView& b = y.pools[i];
    if (a.allowance != b.allowance || a.extra != b.extra || a.used != b.used || a.held != b.held ||
        a.available != b.available || a.used_today != b.used_today ||
        a.available_now != b.available_now || a.daily_cap != b.daily_cap) {
      return false;
    }
  }
  return true;
}

TEST(LongRun, TenThousandAccountsTwentyFourMonthsResetExactlyAndLazyEqualsSweep) {
  const auto started = std::chrono::steady_clock::now();
  const pricing::Catalog cat = testing::default_catalog();
  ASSERT_EQ(cat.plans.size(), 6u);
  Twin t(cat);
  std::vector<Expect> acc(kAccounts);

  // January 2026: account i opens on day 1 + (i / 6) % 31 at hour (i / 186) % 24, on
  // plan i % 6 (free ones sign up at that instant). Created in time order.
  std::vector<std::vector<int>> by_slot(31 * 24);
  for (int i = 0; i < kAccounts; ++i) {
    int day = 1 + (i / 6) % 31;
    int hour = (i / 186) % 24;
    by_slot[(day - 1) * 24 + hour].push_back(i);
    acc[i].id = "acct-" + std::to_string(i);
    acc[i].plan = cat.plans[i % 6].id;
    acc[i].anchor_day = day;
    acc[i].anchor_time_ms = hour * 3'600'000LL;
  }
  const std::int64_t jan1 = at("2026-01-01T00:00:00Z");
  for (std::size_t slot = 0; slot < by_slot.size(); ++slot) {
    std::int64_t now = jan1 + static_cast<std::int64_t>(slot / 24) * kDay +
                       static_cast<std::int64_t>(slot % 24) * 3'600'000;
    t.begin(now);
    for (int i : by_slot[slot]) {
      ASSERT_EQ(t.run(create(acc[i].id, acc[i].plan, now)).status, 201);
      acc[i].seen_cycle_start = now;
    }
  }

  std::int64_t boundaries_checked = 0, commands = 0;
  const std::int64_t feb1 = at("2026-02-01T00:00:00Z");
  for (int day = 0; day < kDays; ++day) {
    const std::int64_t now = feb1 + day * kDay + 12 * 3'600'000LL;
    t.begin(now);
    if (day % 2 == 0) t.sweep();
    for (int i = 0; i < kAccounts; ++i) {
      if ((i + day) % 7 != 0) continue;  // each account acts once a week
      // One account in ten is left alone for three months at a time.
      if (i % 10 == 3 && (day / 90) % 2 == 0) continue;
      Expect& e = acc[i];
      const std::uint64_t r = mix(static_cast<std::uint64_t>(i) * 100'003 + day);

      // The first look after a boundary: the reset was exact.
      auto v = t.lazy.view(e.id, now);
      ASSERT_TRUE(v.ok());
      if (v->cycle_start_ms != e.seen_cycle_start) {
        ++boundaries_checked;
        if (e.pending) e.plan = *e.pending;
        e.pending.reset();
        CivilTime s = civil_from_ms(v->cycle_start_ms);
        int want_day = std::min(e.anchor_day, days_in_month(s.year, s.month));
        ASSERT_EQ(s.day, want_day) << e.id << " " << format_rfc3339(v->cycle_start_ms);
        ASSERT_EQ(v->cycle_start_ms - day_start_ms(v->cycle_start_ms), e.anchor_time_ms) << e.id;
        ASSERT_LE(v->cycle_start_ms, now);
        ASSERT_GT(v->cycle_end_ms, now);
        ASSERT_EQ(v->plan, e.plan) << e.id;
        ASSERT_EQ(v->pools[0].used, cr(0)) << e.id;
        ASSERT_EQ(v->pools[0].held, cr(0)) << e.id;
        ASSERT_EQ(v->pools[0].allowance, cat.find(e.plan)->pools[0].allowance) << e.id;
        e.seen_cycle_start = v->cycle_start_ms;
      }

      // Charges; a hold captured or voided; a pack on enterprise; now and then a plan change.
      const bool free = e.plan == "free";
      Millicredits amount = free ? mc(static_cast<std::int64_t>(r % 5'000))
                                 : mc(static_cast<std::int64_t>(r % 400'000));
      t.run(charge(e.id, amount));
      ++commands;
      ASSERT_LT(t.mismatches, 5);
      if (r % 7 == 0) {
        auto [hx, hy] =
            t.run2(hold(e.id, mc(static_cast<std::int64_t>((r >> 8) % 3'000)), 3'600'000),
                   hold(e.id, mc(static_cast<std::int64_t>((r >> 8) % 3'000)), 3'600'000));
        ++commands;
        if (hx.status == 201) {
          std::string x = field(hx.body, "hold_id");
          std::string y = field(hy.body, "hold_id");
          if ((r >> 16) % 2 == 0) {
            Millicredits c = mc(static_cast<std::int64_t>((r >> 20) % 4'000));
            t.run2(capture(e.id, x, c, true), capture(e.id, y, c, true));
          } else {
            t.run2(Void{e.id, x}, Void{e.id, y});
          }
          ++commands;
        }
      }
      if (e.plan == "enterprise" && r % 11 == 0) {
        EXPECT_EQ(t.run(grant(e.id, GrantSource::kPack, cr(100))).status, 201);
        ++commands;
      }
      if (r % 53 == 0) {
        const pricing::Plan* cur = cat.find(e.plan);
        const pricing::Plan* next = &cat.plans[(r >> 24) % 6];
        ASSERT_EQ(t.run(ChangePlan{e.id, next->id}).status, 200);
        ++commands;
        if (next->id == cur->id) {
          e.pending.reset();
        } else if (next->price_usd_cents > cur->price_usd_cents) {
          if (cur->price_usd_cents == 0) {  // a new cycle anchored now
            CivilTime c = civil_from_ms(now);
            e.anchor_day = c.day;
            e.anchor_time_ms = now - day_start_ms(now);
            e.seen_cycle_start = now;
          }
          e.plan = next->id;
          e.pending.reset();
        } else {
          e.pending = next->id;
        }
      }
    }
    // Every quarter and at the end: every account looks the same through both ledgers.
    if (day % 91 == 90 || day == kDays - 1) {
      for (const Expect& e : acc) {
        auto x = t.lazy.view(e.id, now);
        auto y = t.swept.view(e.id, now);
        ASSERT_TRUE(x.ok() && y.ok());
        if (!same_view(*x, *y)) {
          std::string a, b;
          t.lazy.render_account(*x, a);
          t.swept.render_account(*y, b);
          std::fprintf(stderr, "%s on day %d\nlazy  %s\nswept %s\n", e.id.c_str(), day, a.c_str(),
                       b.c_str());
          FAIL();
        }
      }
    }
  }
  t.lazy.check_invariants();
  t.swept.check_invariants();
  // Every account passed 23 or 24 boundaries; those left alone for months are counted once
  // per look.
  EXPECT_GT(boundaries_checked, 150'000);
  EXPECT_GT(commands, 1'000'000);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  RecordProperty("boundaries_checked", std::to_string(boundaries_checked));
  RecordProperty("commands", std::to_string(commands));
  std::printf("long run: %lld commands, %lld boundaries checked, %.1f s\n",
              static_cast<long long>(commands), static_cast<long long>(boundaries_checked),
              seconds);
}

}  // namespace
}  // namespace credit::ledger
