// tests/ledger/ledger_test.cc
// Tests src/ledger: one test per rule of DESIGN.md section 1 (accounts, spending order,
// refusals, daily caps, holds, resets, plan changes, refunds, idempotency, events), the
// batch codec, and deterministic replay. Each test states its numbers.
#include "ledger/ledger.h"

#include <gtest/gtest.h>

#include "ledger/codec.h"
#include "ledger_harness.h"

namespace credit::ledger {
namespace {

using testing::at;
using testing::capture;
using testing::charge;
using testing::cr;
using testing::create;
using testing::Driver;
using testing::field;
using testing::grant;
using testing::hold;
using testing::mc;
using testing::refund;

// A catalog where every grant kind can tie with the allowance: packs expire after 28 days
// and half of the unused allowance rolls over, at most 10 credits.
constexpr std::string_view kTieCatalog = R"(
[plans.ent]
name = "Ent"
price_usd_cents = 1000
cycle_anchor = "billing"
packs_allowed = true
pack_price_usd_cents = 1000
pack_expiry_days = 28
rollover_percent = 50
rollover_cap = 10
[plans.ent.pools.credits]
allowance = 100
)";

// A pricier plan with a smaller allowance, to show the paid upgrade's floor.
constexpr std::string_view kShrinkCatalog = R"(
[plans.a]
name = "A"
price_usd_cents = 100
[plans.a.pools.credits]
allowance = 1000
[plans.b]
name = "B"
price_usd_cents = 200
[plans.b.pools.credits]
allowance = 500
)";

class LedgerTest : public ::testing::Test {
 protected:
  LedgerTest() : d(testing::default_catalog()) { d.set_now(at("2026-03-10T12:00:00Z")); }
  // Creates account "a" on `plan` at the driver's instant.
  void open(std::string_view plan) { ASSERT_EQ(d.run(create("a", std::string(plan))).status, 201); }
  std::string add_grant(GrantSource s, Millicredits credits,
                        std::optional<std::int64_t> expires = std::nullopt) {
    Reply r = d.run(grant("a", s, credits, expires));
    EXPECT_EQ(r.status, 201) << r.body;
    return field(r.body, "grant_id");
  }
  Driver d;
};

// ---------------------------------------------------------------------------------
// Accounts.

TEST_F(LedgerTest, CreatePaidAccountIsAnchoredAtCreationNotSignup) {
  Reply r = d.run(create("a", "starter", at("2026-01-05T08:00:00Z")));
  ASSERT_EQ(r.status, 201) << r.body;
  AccountView v = d.account("a");
  EXPECT_EQ(v.cycle_start_ms, at("2026-03-10T12:00:00Z"));
  EXPECT_EQ(v.cycle_end_ms, at("2026-04-10T12:00:00Z"));
  EXPECT_EQ(v.pools[0].allowance, cr(2000));
  EXPECT_EQ(v.pools[0].available, cr(2000));
  EXPECT_EQ(v.pools[0].daily_cap, std::nullopt);
}

TEST_F(LedgerTest, CreateFreeAccountIsAnchoredAtSignup) {
  Reply r = d.run(create("a", "free", at("2026-01-31T10:00:00Z")));
  ASSERT_EQ(r.status, 201) << r.body;
  AccountView v = d.account("a");
  EXPECT_EQ(v.cycle_start_ms, at("2026-02-28T10:00:00Z"));
  EXPECT_EQ(v.cycle_end_ms, at("2026-03-31T10:00:00Z"));
  EXPECT_EQ(v.pools[0].allowance, cr(100));
  EXPECT_EQ(v.pools[0].daily_cap, cr(25));
  EXPECT_EQ(field(r.body, "start"), "2026-02-28T10:00:00Z");
}

TEST_F(LedgerTest, CreateWithSignupInTheFutureIsRefusedAndNotLogged) {
  Reply r = d.run(create("a", "free", at("2026-03-10T12:00:00.001Z")));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(field(r.body, "param"), "signup_at");
  EXPECT_FALSE(r.logged);
  EXPECT_EQ(d.ledger.find("a"), nullptr);
}

TEST_F(LedgerTest, CreateTwiceIs409AccountExists) {
  open("free");
  Reply r = d.run(create("a", "pro"));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.code, ErrorCode::kAccountExists);
}

// ---------------------------------------------------------------------------------
// Spending order and drawn_from.

TEST_F(LedgerTest, ChargeDrawsAllowanceBeforeAGrantThatExpiresLater) {
  open("starter");
  add_grant(GrantSource::kAdjustment, cr(50));  // never expires
  Reply r = d.run(charge("a", cr(10)));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(field(r.body, "drawn_from"), R"([{"source":"allowance","credits":10}])");
  EXPECT_EQ(field(r.body, "available_after"), "2040");
}

TEST_F(LedgerTest, ChargeDrawsTheEarliestExpiringGrantFirstThenTheAllowance) {
  open("starter");
  std::string g = add_grant(GrantSource::kAdjustment, cr(30), at("2026-03-20T00:00:00Z"));
  Reply r = d.run(charge("a", cr(50)));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(
      field(r.body, "drawn_from"),
      R"([{"source":"grant:)" + g + R"(","credits":30},{"source":"allowance","credits":20}])");
  EXPECT_EQ(field(r.body, "cost"), "50");
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(2000));
  EXPECT_EQ(v.extra, cr(30));
  EXPECT_EQ(v.used, cr(50));
  EXPECT_EQ(v.available, cr(1980));
}

TEST(SpendingOrder, TiesAtOneExpiryGoAllowanceRolloverPackAdjustment) {
  Driver d(testing::catalog_from(kTieCatalog));
  d.set_now(at("2026-01-01T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "ent")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(80))).status, 201);
  // Cycle 1 is [Feb 1, Mar 1): the rollover, a 28-day pack bought at its start and an
  // adjustment to Mar 1 all expire with the allowance. The adjustment is made first.
  d.set_now(at("2026-02-01T00:00:00Z"));
  Reply adj = d.run(grant("a", GrantSource::kAdjustment, cr(7), at("2026-03-01T00:00:00Z")));
  ASSERT_EQ(adj.status, 201) << adj.body;
  Reply pack = d.run(grant("a", GrantSource::kPack, cr(5)));
  ASSERT_EQ(pack.status, 201) << pack.body;
  EXPECT_EQ(field(pack.body, "expires_at"), "2026-03-01T00:00:00Z");
  Reply r = d.run(charge("a", cr(118)));
  ASSERT_EQ(r.status, 201) << r.body;
  std::string pack_id = field(pack.body, "grant_id");
  std::string rollover_id;
  for (const Event& e : d.events) {
    if (e.type == EventType::kGrant && e.object == "rollover") rollover_id = e.grant_id;
  }
  std::string adj_id = field(adj.body, "grant_id");
  EXPECT_EQ(field(r.body, "drawn_from"),
            R"([{"source":"allowance","credits":100},{"source":"grant:)" + rollover_id +
                R"(","credits":10},{"source":"grant:)" + pack_id +
                R"(","credits":5},{"source":"grant:)" + adj_id + R"(","credits":3}])");
  EXPECT_EQ(d.pool("a").available, cr(4));
}

TEST(Rollover, HalfOfTheUnusedAllowanceCappedAt10BecomesAGrantToTheNewCycleEnd) {
  Driver d(testing::catalog_from(kTieCatalog));
  d.set_now(at("2026-01-01T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "ent")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(95))).status, 201);  // 5 unused: 2.5 rolls over
  d.set_now(at("2026-02-01T00:00:00Z"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(100));
  EXPECT_EQ(v.extra, mc(2500));
  EXPECT_EQ(v.available, mc(102'500));
  ASSERT_EQ(d.run(hold("a", cr(1))).status, 201);  // a mutation applies the reset
  bool rolled = false;
  for (const Event& e : d.events) {
    if (e.type == EventType::kGrant && e.object == "rollover") {
      rolled = true;
      EXPECT_EQ(e.credits, mc(2500));
      EXPECT_EQ(e.at_ms, at("2026-02-01T00:00:00Z"));
    }
  }
  EXPECT_TRUE(rolled);
  // In cycle 1 the allowance is unused and the 2.5 rollover too: the allowance gives
  // 50, capped at 10; the rollover grant itself never rolls over.
  d.set_now(at("2026-03-01T00:00:00Z"));
  EXPECT_EQ(d.pool("a").extra, cr(10));
  EXPECT_EQ(d.pool("a").available, cr(110));
}

TEST(Rollover, IsCappedAtRolloverCap) {
  Driver d(testing::catalog_from(kTieCatalog));
  d.set_now(at("2026-01-01T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "ent")).status, 201);
  d.set_now(at("2026-02-01T00:00:00Z"));  // 100 unused: 50, capped at 10
  EXPECT_EQ(d.pool("a").extra, cr(10));
  EXPECT_EQ(d.pool("a").available, cr(110));
}

// ---------------------------------------------------------------------------------
// Refusals (402).

TEST_F(LedgerTest, PoolRefusalNamesCycleEndAndCheapestPlanCoveringUsedHeldAndRequired) {
  open("starter");
  ASSERT_EQ(d.run(charge("a", cr(1900))).status, 201);
  ASSERT_EQ(d.run(hold("a", cr(50))).status, 201);
  std::size_t events_before = d.events.size();
  Reply r = d.run(charge("a", cr(100)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(r.code, ErrorCode::kInsufficientCredits);
  EXPECT_EQ(field(r.body, "refused_by"), "pool");
  EXPECT_EQ(field(r.body, "required"), "100");
  EXPECT_EQ(field(r.body, "available"), "50");
  EXPECT_EQ(field(r.body, "cycle_end"), "2026-04-10T12:00:00Z");
  EXPECT_EQ(field(r.body, "upgrade_to"), "builder");  // 1900 + 50 + 100 = 2050 <= 5000
  EXPECT_TRUE(r.logged);
  ASSERT_EQ(d.events.size(), events_before + 1);
  EXPECT_EQ(d.events.back().type, EventType::kRejected);
  EXPECT_EQ(d.events.back().refused_by, "pool");
  EXPECT_EQ(d.pool("a").available, cr(50));
  EXPECT_EQ(d.pool("a").used, cr(1900));
}

TEST_F(LedgerTest, PoolRefusalSkipsPricierPlansTooSmallForTheNeed) {
  open("pro");
  add_grant(GrantSource::kAdjustment, cr(20000));
  ASSERT_EQ(d.run(charge("a", cr(29000))).status, 201);
  Reply r = d.run(charge("a", cr(2000)));  // 29000 + 2000 > elite's 25000
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "upgrade_to"), "enterprise");
}

TEST_F(LedgerTest, PoolRefusalOnThePriciestPlanHasNoUpgrade) {
  open("enterprise");
  Reply r = d.run(charge("a", cr(100001)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "upgrade_to"), "null");
}

TEST_F(LedgerTest, FreePlanDailyCapOf25RefusesUntilMidnightUtc) {
  open("free");
  ASSERT_EQ(d.run(charge("a", cr(20))).status, 201);
  Reply r = d.run(charge("a", cr(6)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "refused_by"), "daily_cap");
  EXPECT_EQ(field(r.body, "resets_at"), "2026-03-11T00:00:00Z");
  EXPECT_EQ(field(r.body, "available"), "5");
  PoolView v = d.pool("a");
  EXPECT_EQ(v.used_today, cr(20));
  EXPECT_EQ(v.available, cr(80));
  EXPECT_EQ(v.available_now, cr(5));
  ASSERT_EQ(d.run(charge("a", cr(5))).status, 201);
  EXPECT_EQ(d.pool("a").available_now, cr(0));
  d.set_now(at("2026-03-11T00:00:00Z"));
  EXPECT_EQ(d.pool("a").available_now, cr(25));
  EXPECT_EQ(d.run(charge("a", cr(6))).status, 201);
  EXPECT_EQ(d.pool("a").used_today, cr(6));
}

TEST_F(LedgerTest, DailyCapCountsHoldsPlacedToday) {
  open("free");
  ASSERT_EQ(d.run(hold("a", cr(20))).status, 201);
  EXPECT_EQ(d.pool("a").available_now, cr(5));
  Reply r = d.run(charge("a", cr(6)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "refused_by"), "daily_cap");
}

TEST_F(LedgerTest, CaptureIsNeverRefusedByTheDailyCap) {
  open("free");
  ASSERT_EQ(d.run(charge("a", cr(5))).status, 201);
  Reply h = d.run(hold("a", cr(20)));
  ASSERT_EQ(h.status, 201);
  Reply c = d.run(capture("a", field(h.body, "hold_id"), cr(24), true));
  ASSERT_EQ(c.status, 201) << c.body;
  PoolView v = d.pool("a");
  EXPECT_EQ(v.used_today, cr(29));
  EXPECT_EQ(v.available, cr(71));
  EXPECT_EQ(v.available_now, cr(0));
}

// DESIGN "Daily caps": allowed when spent today + held today + its cost <= cap. A capture's
// overage (never refused by the cap) can leave today's spend above the cap; a charge or
// hold of 0 is then refused too (29 + 0 > 25), as one of 0.001 is.
TEST_F(LedgerTest, ZeroCostChargeAndHoldAreRefusedWhenTodayIsAlreadyOverTheCap) {
  open("free");
  ASSERT_EQ(d.run(charge("a", cr(5))).status, 201);
  Reply h = d.run(hold("a", cr(20)));
  ASSERT_EQ(h.status, 201);
  ASSERT_EQ(d.run(capture("a", field(h.body, "hold_id"), cr(24), true)).status, 201);
  ASSERT_EQ(d.pool("a").used_today, cr(29));
  std::size_t events_before = d.events.size();
  Reply r = d.run(charge("a", cr(0)));
  EXPECT_EQ(r.status, 402) << r.body;
  EXPECT_EQ(r.code, ErrorCode::kInsufficientCredits);
  EXPECT_EQ(field(r.body, "refused_by"), "daily_cap");
  EXPECT_EQ(field(r.body, "required"), "0");
  EXPECT_EQ(field(r.body, "available"), "0");
  EXPECT_EQ(field(r.body, "resets_at"), "2026-03-11T00:00:00Z");
  ASSERT_EQ(d.events.size(), events_before + 1);
  EXPECT_EQ(d.events.back().type, EventType::kRejected);
  EXPECT_EQ(d.events.back().refused_by, "daily_cap");
  Reply hr = d.run(hold("a", cr(0)));
  EXPECT_EQ(hr.status, 402) << hr.body;
  EXPECT_EQ(field(hr.body, "refused_by"), "daily_cap");
  EXPECT_EQ(field(hr.body, "available"), "0");
  EXPECT_EQ(d.pool("a").used_today, cr(29));
  EXPECT_EQ(d.pool("a").held, cr(0));
  // The next UTC day the cap has room again, for 0 as for more.
  d.set_now(at("2026-03-11T00:00:00Z"));
  EXPECT_EQ(d.run(charge("a", cr(0))).status, 201);
  EXPECT_EQ(d.run(hold("a", cr(0))).status, 201);
}

// The report's case: a pending downgrade lowers the cap at the cycle boundary, the same
// UTC day, below what was spent today.
TEST_F(LedgerTest, ZeroCostChargeIsRefusedWhenADowngradeLowersTheCapBelowTodaysSpend) {
  open("starter");
  ASSERT_EQ(d.run(ChangePlan{"a", "free"}).status, 200);
  d.set_now(at("2026-04-10T11:00:00Z"));
  ASSERT_EQ(d.run(charge("a", cr(30))).status, 201);
  d.set_now(at("2026-04-10T12:30:00Z"));
  PoolView v = d.pool("a");
  ASSERT_EQ(d.account("a").plan, "free");
  EXPECT_EQ(v.daily_cap, cr(25));
  EXPECT_EQ(v.used_today, cr(30));
  EXPECT_EQ(v.available_now, cr(0));
  Reply r = d.run(charge("a", cr(0)));
  EXPECT_EQ(r.status, 402) << r.body;
  EXPECT_EQ(field(r.body, "refused_by"), "daily_cap");
  EXPECT_EQ(field(r.body, "available"), "0");
  EXPECT_EQ(d.run(hold("a", cr(0))).status, 402);
  EXPECT_EQ(d.run(charge("a", Millicredits::from_mc(1))).status, 402);
}

// Exactly at the cap, a cost of 0 still fits: 25 + 0 <= 25.
TEST_F(LedgerTest, ZeroCostChargeAndHoldFitWhenTodayIsExactlyAtTheCap) {
  open("free");
  ASSERT_EQ(d.run(charge("a", cr(25))).status, 201);
  EXPECT_EQ(d.pool("a").available_now, cr(0));
  EXPECT_EQ(d.run(charge("a", cr(0))).status, 201);
  EXPECT_EQ(d.run(hold("a", cr(0))).status, 201);
  Reply r = d.run(charge("a", Millicredits::from_mc(1)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "refused_by"), "daily_cap");
}

TEST_F(LedgerTest, CaptureCountsOnItsHoldsDay) {
  open("free");
  d.set_now(at("2026-03-10T23:58:00Z"));
  Reply h = d.run(hold("a", cr(20), 600'000));
  ASSERT_EQ(h.status, 201);
  d.set_now(at("2026-03-11T00:01:00Z"));
  ASSERT_EQ(d.run(capture("a", field(h.body, "hold_id"))).status, 201);
  PoolView v = d.pool("a");
  EXPECT_EQ(v.used, cr(20));
  EXPECT_EQ(v.used_today, cr(0));
  EXPECT_EQ(v.available_now, cr(25));
  EXPECT_EQ(d.run(charge("a", cr(25))).status, 201);
}

// ---------------------------------------------------------------------------------
// Holds.

TEST_F(LedgerTest, HoldReservesAndCaptureSpendsPartReleasingTheRest) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  ASSERT_EQ(h.status, 201);
  EXPECT_EQ(field(h.body, "expires_at"), "2026-03-10T12:05:00Z");
  EXPECT_EQ(d.pool("a").held, cr(100));
  EXPECT_EQ(d.pool("a").available, cr(1900));
  Reply c = d.run(capture("a", field(h.body, "hold_id"), cr(60)));
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(field(c.body, "cost"), "60");
  EXPECT_EQ(field(c.body, "hold_id"), field(h.body, "hold_id"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.held, cr(0));
  EXPECT_EQ(v.used, cr(60));
  EXPECT_EQ(v.available, cr(1940));
}

TEST_F(LedgerTest, CaptureWithoutAmountTakesTheWholeHold) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  Reply c = d.run(capture("a", field(h.body, "hold_id")));
  ASSERT_EQ(c.status, 201);
  EXPECT_EQ(field(c.body, "cost"), "100");
  EXPECT_EQ(d.pool("a").available, cr(1900));
}

TEST_F(LedgerTest, VoidReleasesTheWholeHold) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  Reply v = d.run(Void{"a", field(h.body, "hold_id")});
  ASSERT_EQ(v.status, 200);
  EXPECT_EQ(field(v.body, "released"), "100");
  EXPECT_EQ(d.pool("a").available, cr(2000));
  EXPECT_EQ(d.pool("a").held, cr(0));
}

TEST_F(LedgerTest, CaptureAboveTheHoldIs400AndLeavesTheHoldAsItWas) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  std::string id = field(h.body, "hold_id");
  Reply c = d.run(capture("a", id, cr(150)));
  EXPECT_EQ(c.status, 400);
  EXPECT_EQ(c.code, ErrorCode::kCaptureExceedsHold);
  EXPECT_EQ(field(c.body, "hold_amount"), "100");
  EXPECT_EQ(field(c.body, "required"), "150");
  EXPECT_EQ(d.pool("a").held, cr(100));
  EXPECT_EQ(d.pool("a").available, cr(1900));
  EXPECT_EQ(d.run(capture("a", id, cr(100))).status, 201);
}

TEST_F(LedgerTest, CaptureExceedsHold400IsNotStoredUnderItsKey) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  std::string id = field(h.body, "hold_id");
  Reply c = d.run_keyed(capture("a", id, cr(150)), "a", "k1", "capture 150");
  EXPECT_EQ(c.status, 400);
  // The key stays free: the corrected request under the same key is a new request.
  Reply ok = d.run_keyed(capture("a", id, cr(100)), "a", "k1", "capture 100");
  EXPECT_EQ(ok.status, 201) << ok.body;
  EXPECT_FALSE(ok.replayed);
}

TEST_F(LedgerTest, CaptureWithOverageChargeDrawsTheExcessLikeACharge) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  Reply c = d.run(capture("a", field(h.body, "hold_id"), cr(150), true));
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(field(c.body, "cost"), "150");
  EXPECT_EQ(d.pool("a").available, cr(1850));
  EXPECT_EQ(d.pool("a").used, cr(150));
}

TEST_F(LedgerTest, CaptureOverageThatDoesNotFitIs402AndTheHoldStaysOpen) {
  open("starter");
  ASSERT_EQ(d.run(charge("a", cr(1850))).status, 201);
  Reply h = d.run(hold("a", cr(100)));  // available 50
  std::string id = field(h.body, "hold_id");
  Reply c = d.run(capture("a", id, cr(200), true));  // overage 100 > 50
  EXPECT_EQ(c.status, 402);
  EXPECT_EQ(field(c.body, "refused_by"), "pool");
  EXPECT_EQ(d.pool("a").held, cr(100));
  EXPECT_EQ(d.run(capture("a", id, cr(150), true)).status, 201);
  EXPECT_EQ(d.pool("a").available, cr(0));
}

TEST_F(LedgerTest, CaptureOfAVoidedHoldIs409HoldNotOpenWithItsState) {
  open("starter");
  Reply h = d.run(hold("a", cr(100)));
  std::string id = field(h.body, "hold_id");
  ASSERT_EQ(d.run(Void{"a", id}).status, 200);
  Reply c = d.run(capture("a", id));
  EXPECT_EQ(c.status, 409);
  EXPECT_EQ(c.code, ErrorCode::kHoldNotOpen);
  EXPECT_EQ(field(c.body, "state"), "voided");
  Reply v = d.run(Void{"a", id});
  EXPECT_EQ(v.status, 409);
  EXPECT_EQ(d.pool("a").available, cr(2000));
}

TEST_F(LedgerTest, UnknownHoldIs404) {
  open("starter");
  EXPECT_EQ(d.run(capture("a", "h_999")).code, ErrorCode::kHoldNotFound);
  EXPECT_EQ(d.run(Void{"a", "h_999"}).status, 404);
}

TEST_F(LedgerTest, AClosedHoldTwoCyclesOldIs404WhetherOrNotASweepRanFirst) {
  open("starter");
  Reply h = d.run(hold("a", cr(100), 60'000));
  Reply h2 = d.run(hold("a", cr(100), 60'000));
  d.set_now(at("2026-05-10T12:00:00Z"));  // the account was not touched since March
  Reply c = d.run(capture("a", field(h.body, "hold_id")));
  EXPECT_EQ(c.code, ErrorCode::kHoldNotFound);
  EXPECT_TRUE(c.logged);  // it applied two resets
  EXPECT_EQ(d.run(Void{"a", field(h2.body, "hold_id")}).code, ErrorCode::kHoldNotFound);
}

TEST_F(LedgerTest, HoldExpiresExactlyAtExpiresAt) {
  open("starter");
  Reply h = d.run(hold("a", cr(100), 60'000));
  std::string id = field(h.body, "hold_id");
  d.set_now(at("2026-03-10T12:00:59.999Z"));
  EXPECT_EQ(d.pool("a").held, cr(100));
  d.set_now(at("2026-03-10T12:01:00Z"));
  EXPECT_EQ(d.pool("a").held, cr(0));
  EXPECT_EQ(d.pool("a").available, cr(2000));
  Reply c = d.run(capture("a", id));
  EXPECT_EQ(c.status, 409);
  EXPECT_EQ(field(c.body, "state"), "expired");
  bool expired = false;
  for (const Event& e : d.events) {
    if (e.type == EventType::kExpire && e.object == "hold") {
      expired = true;
      EXPECT_EQ(e.at_ms, at("2026-03-10T12:01:00Z"));
      EXPECT_EQ(e.credits, cr(100));
    }
  }
  EXPECT_TRUE(expired);
}

// ---------------------------------------------------------------------------------
// Cycles and resets.

TEST(Reset, AnchorOnJan31ResetsOnFeb28ThenMar31) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-01-31T10:00:00Z"));
  ASSERT_EQ(d.run(create("a", "starter")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(500))).status, 201);
  d.set_now(at("2026-02-28T09:59:59.999Z"));
  EXPECT_EQ(d.pool("a").used, cr(500));
  d.set_now(at("2026-02-28T10:00:00Z"));
  AccountView v = d.account("a");
  EXPECT_EQ(v.cycle_start_ms, at("2026-02-28T10:00:00Z"));
  EXPECT_EQ(v.cycle_end_ms, at("2026-03-31T10:00:00Z"));
  EXPECT_EQ(v.pools[0].used, cr(0));
  EXPECT_EQ(v.pools[0].allowance, cr(2000));
  EXPECT_EQ(v.pools[0].available, cr(2000));
  ASSERT_EQ(d.run(charge("a", cr(1))).status, 201);
  d.set_now(at("2026-03-31T10:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2026-03-31T10:00:00Z"));
  EXPECT_EQ(d.pool("a").used, cr(0));
  ASSERT_EQ(d.run(charge("a", cr(1))).status, 201);
  const Event* reset = nullptr;
  for (const Event& e : d.events) {
    if (e.type == EventType::kReset) reset = &e;
  }
  ASSERT_NE(reset, nullptr);
  EXPECT_EQ(reset->at_ms, at("2026-03-31T10:00:00Z"));
  EXPECT_EQ(reset->credits, cr(1999));  // the unused allowance that vanished
}

TEST(Reset, AnchorOnJan31ResetsOnFeb29InALeapYear) {
  Driver d(testing::default_catalog());
  d.set_now(at("2028-01-31T10:00:00Z"));
  ASSERT_EQ(d.run(create("a", "pro")).status, 201);
  d.set_now(at("2028-02-29T10:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2028-02-29T10:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_end_ms, at("2028-03-31T10:00:00Z"));
}

TEST(Reset, AnchorOnFeb29ResetsOnThe29thAndOnFeb28InCommonYears) {
  Driver d(testing::default_catalog());
  d.set_now(at("2028-02-29T12:00:00Z"));
  ASSERT_EQ(d.run(create("a", "pro")).status, 201);
  d.set_now(at("2028-03-29T12:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2028-03-29T12:00:00Z"));
  d.set_now(at("2029-02-28T11:59:59Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2029-01-29T12:00:00Z"));
  d.set_now(at("2029-02-28T12:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2029-02-28T12:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_end_ms, at("2029-03-29T12:00:00Z"));
  EXPECT_EQ(d.pool("a").allowance, cr(10000));
}

TEST_F(LedgerTest, ResetCrossingAnOpenHoldKeepsItsCreditsUntilCaptureThenTheRestVanishes) {
  open("starter");  // cycle ends 2026-04-10T12:00Z
  ASSERT_EQ(d.run(charge("a", cr(1500))).status, 201);
  d.set_now(at("2026-04-10T11:59:00Z"));
  Reply h = d.run(hold("a", cr(400), 3'600'000));
  ASSERT_EQ(h.status, 201);
  EXPECT_EQ(d.pool("a").available, cr(100));
  d.set_now(at("2026-04-10T12:00:00Z"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(2000));
  EXPECT_EQ(v.extra, cr(400));
  EXPECT_EQ(v.used, cr(0));
  EXPECT_EQ(v.held, cr(400));
  EXPECT_EQ(v.available, cr(2000));
  d.set_now(at("2026-04-10T12:30:00Z"));
  Reply c = d.run(capture("a", field(h.body, "hold_id"), cr(150)));
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(field(c.body, "drawn_from"), R"([{"source":"allowance","credits":150}])");
  v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(2000));
  EXPECT_EQ(v.extra, cr(150));
  EXPECT_EQ(v.used, cr(150));
  EXPECT_EQ(v.held, cr(0));
  EXPECT_EQ(v.available, cr(2000));  // the 250 released from the old allowance vanished
}

TEST_F(LedgerTest, ResetCrossingAnOpenHoldThatExpiresLosesItAll) {
  open("starter");
  d.set_now(at("2026-04-10T11:59:00Z"));
  Reply h = d.run(hold("a", cr(400), 3'600'000));
  d.set_now(at("2026-04-10T12:59:00Z"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.held, cr(0));
  EXPECT_EQ(v.extra, cr(0));
  EXPECT_EQ(v.available, cr(2000));
  EXPECT_EQ(d.run(capture("a", field(h.body, "hold_id"))).status, 409);
}

TEST_F(LedgerTest, LazyResetEqualsSweep) {
  Driver lazy(testing::default_catalog());
  for (Driver* x : {&d, &lazy}) {
    x->set_now(at("2026-01-31T10:00:00Z"));
    ASSERT_EQ(x->run(create("a", "starter")).status, 201);
    ASSERT_EQ(x->run(create("f", "free", at("2026-01-15T00:00:00Z"))).status, 201);
    ASSERT_EQ(x->run(charge("a", cr(300))).status, 201);
    ASSERT_EQ(x->run(hold("a", cr(200), 3'600'000)).status, 201);
    ASSERT_EQ(
        x->run(grant("a", GrantSource::kAdjustment, cr(40), at("2026-03-05T00:00:00Z"))).status,
        201);
    ASSERT_EQ(x->run(ChangePlan{"a", "free"}).status, 200);
  }
  for (const char* t : {"2026-02-15T00:00:00Z", "2026-02-28T10:00:00Z", "2026-03-05T00:00:00Z",
                        "2026-04-20T00:00:00Z"}) {
    d.set_now(at(t));
    d.run(Sweep{});
  }
  lazy.set_now(at("2026-04-20T00:00:00Z"));
  for (const char* id : {"a", "f"}) {
    AccountView x = d.account(id);
    AccountView y = lazy.account(id);
    EXPECT_EQ(x.plan, y.plan);
    EXPECT_EQ(x.plan, id == std::string("a") ? "free" : "free");
    EXPECT_EQ(x.cycle_start_ms, y.cycle_start_ms);
    EXPECT_EQ(x.cycle_end_ms, y.cycle_end_ms);
    EXPECT_EQ(x.pending_plan, y.pending_plan);
    ASSERT_EQ(x.pools.size(), y.pools.size());
    for (std::size_t i = 0; i < x.pools.size(); ++i) {
      EXPECT_EQ(x.pools[i].allowance, y.pools[i].allowance);
      EXPECT_EQ(x.pools[i].extra, y.pools[i].extra);
      EXPECT_EQ(x.pools[i].used, y.pools[i].used);
      EXPECT_EQ(x.pools[i].held, y.pools[i].held);
      EXPECT_EQ(x.pools[i].available, y.pools[i].available);
      EXPECT_EQ(x.pools[i].used_today, y.pools[i].used_today);
      EXPECT_EQ(x.pools[i].available_now, y.pools[i].available_now);
    }
  }
  // The lazy ledger applies the same resets at the first mutation, with the same `at`.
  ASSERT_EQ(lazy.run(charge("a", cr(1))).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(1))).status, 201);
  std::vector<std::int64_t> resets_lazy, resets_sweep;
  for (const Event& e : lazy.events) {
    if (e.type == EventType::kReset && e.account_id == "a") resets_lazy.push_back(e.at_ms);
  }
  for (const Event& e : d.events) {
    if (e.type == EventType::kReset && e.account_id == "a") resets_sweep.push_back(e.at_ms);
  }
  EXPECT_EQ(resets_lazy, resets_sweep);
  EXPECT_EQ(resets_lazy.size(), 2u);  // Feb 28 and Mar 31 10:00Z
}

// The sweep queue answers the earliest due instant of any account: a hold's expiry before
// the cycle end, then the cycle end once the hold expired.
TEST_F(LedgerTest, NextDueIsTheEarliestHoldExpiryThenTheCycleEnd) {
  open("starter");
  EXPECT_EQ(d.ledger.next_due_ms(), at("2026-04-10T12:00:00Z"));
  ASSERT_EQ(d.run(hold("a", cr(5), 1000)).status, 201);
  EXPECT_EQ(d.ledger.next_due_ms(), at("2026-03-10T12:00:01Z"));
  d.set_now(at("2026-03-10T12:00:05Z"));
  Reply r = d.run(Sweep{});
  EXPECT_TRUE(r.logged);
  ASSERT_EQ(d.last_events().size(), 1u);
  EXPECT_EQ(d.last_events()[0].type, EventType::kExpire);
  EXPECT_EQ(d.last_events()[0].object, "hold");
  EXPECT_EQ(d.last_events()[0].at_ms, at("2026-03-10T12:00:01Z"));
  EXPECT_EQ(d.ledger.next_due_ms(), at("2026-04-10T12:00:00Z"));
  // Nothing due: the sweep changes nothing and is not logged.
  Reply again = d.run(Sweep{});
  EXPECT_FALSE(again.logged);
  EXPECT_TRUE(d.last_events().empty());
}

// A closed account is not renewed: no reset, rollover or grant expiry after the close,
// by the sweep or by a read (audit finding: a closed account kept gaining rollovers).
TEST_F(LedgerTest, AClosedAccountIsNeitherSweptNorResetAfterItsClose) {
  open("starter");
  ASSERT_EQ(d.run(charge("a", cr(100))).status, 201);
  ASSERT_EQ(d.run(CloseAccount{"a"}).status, 200);
  const PoolView closed = d.pool("a");
  EXPECT_EQ(d.ledger.next_due_ms(), INT64_MAX);
  d.set_now(at("2026-07-10T12:00:00Z"));  // three cycle ends later
  Reply r = d.run(Sweep{});
  EXPECT_FALSE(r.logged);
  EXPECT_TRUE(d.last_events().empty());
  const PoolView later = d.pool("a");
  EXPECT_EQ(later.used, closed.used);
  EXPECT_EQ(later.available, closed.available);
  EXPECT_EQ(later.allowance, closed.allowance);
}

// A hold captured before its expiry leaves a stale entry: the queue moves on to the
// account's true next instant without a sweep.
TEST_F(LedgerTest, NextDueSkipsAHoldClosedBeforeItsExpiry) {
  open("starter");
  Reply h = d.run(hold("a", cr(5), 1000));
  ASSERT_EQ(h.status, 201);
  ASSERT_EQ(d.run(capture("a", field(h.body, "hold_id"))).status, 201);
  EXPECT_EQ(d.ledger.next_due_ms(), at("2026-04-10T12:00:00Z"));
}

// A sweep advances at most kSweepAccountsPerCommandMax accounts, earliest first; the next
// sweep takes the rest.
TEST_F(LedgerTest, SweepAdvancesAtMostItsLimitOfAccountsPerCommand) {
  const std::size_t n = kSweepAccountsPerCommandMax + 6;
  for (std::size_t i = 0; i < n; ++i) {
    const std::string id = "acct-" + std::to_string(10'000 + i);
    ASSERT_EQ(d.run(create(id, "starter")).status, 201);
    ASSERT_EQ(d.run(hold(id, cr(1), 1000)).status, 201);
  }
  d.set_now(at("2026-03-10T13:00:00Z"));
  auto expiries = [&] {
    std::size_t k = 0;
    for (const Event& e : d.last_events()) k += e.type == EventType::kExpire ? 1 : 0;
    return k;
  };
  ASSERT_TRUE(d.run(Sweep{}).logged);
  EXPECT_EQ(expiries(), kSweepAccountsPerCommandMax);
  EXPECT_EQ(d.last_events().front().account_id, "acct-10000");
  ASSERT_TRUE(d.run(Sweep{}).logged);
  EXPECT_EQ(expiries(), 6u);
  EXPECT_EQ(d.last_events().back().account_id, "acct-" + std::to_string(10'000 + n - 1));
  EXPECT_FALSE(d.run(Sweep{}).logged);
}

// A clock moved by centuries leaves a reset per month: one sweep applies at most
// kSweepInstantsPerCommandMax of them, the next ones the rest, in time order.
TEST_F(LedgerTest, SweepAppliesAtMostItsLimitOfInstantsPerCommand) {
  open("starter");                        // anchored 2026-03-10T12:00:00Z
  d.set_now(at("2526-03-10T12:00:00Z"));  // 500 years: 6000 boundaries
  auto resets = [&] {
    std::vector<std::int64_t> at_ms;
    for (const Event& e : d.last_events()) {
      if (e.type == EventType::kReset) at_ms.push_back(e.at_ms);
    }
    return at_ms;
  };
  // Sweeps of at most kSweepInstantsPerCommandMax resets each, in order, until none is due.
  std::vector<std::int64_t> all;
  std::size_t sweeps = 0;
  while (d.run(Sweep{}).logged) {
    std::vector<std::int64_t> these = resets();
    ASSERT_LE(these.size(), kSweepInstantsPerCommandMax);
    ASSERT_FALSE(these.empty());
    if (!all.empty()) {
      EXPECT_GT(these.front(), all.back());
    }
    all.insert(all.end(), these.begin(), these.end());
    ASSERT_LT(++sweeps, 6000u);
  }
  ASSERT_EQ(all.size(), 6000u);
  EXPECT_EQ(sweeps, (6000 + kSweepInstantsPerCommandMax - 1) / kSweepInstantsPerCommandMax);
  EXPECT_EQ(all.front(), at("2026-04-10T12:00:00Z"));
  EXPECT_EQ(all.back(), at("2526-03-10T12:00:00Z"));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2526-03-10T12:00:00Z"));
}

// DESIGN.md, Events: every change says what is available after it, the rollover grant too.
TEST(Rollover, TheRolloverGrantEventSaysWhatIsAvailableAfterIt) {
  Driver d(testing::catalog_from(kTieCatalog));
  d.set_now(at("2026-01-01T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "ent")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(95))).status, 201);  // 5 unused: 2.5 rolls over
  d.set_now(at("2026-02-01T00:00:00Z"));
  ASSERT_TRUE(d.run(Sweep{}).logged);
  bool rolled = false;
  for (const Event& e : d.last_events()) {
    if (e.type != EventType::kGrant) continue;
    rolled = true;
    EXPECT_EQ(e.available_after, mc(102'500));  // the new allowance and the rollover
  }
  EXPECT_TRUE(rolled);
}

TEST_F(LedgerTest, PlanChangeEventsSayWhatIsAvailableAfterThem) {
  open("starter");
  ASSERT_EQ(d.run(charge("a", cr(300))).status, 201);
  ASSERT_EQ(d.run(ChangePlan{"a", "pro"}).status, 200);      // paid upgrade: 10000 - 300
  ASSERT_EQ(d.run(ChangePlan{"a", "builder"}).status, 200);  // pending downgrade
  std::vector<std::optional<Millicredits>> after;
  for (const Event& e : d.events) {
    if (e.type == EventType::kPlanChange) after.push_back(e.available_after);
  }
  ASSERT_EQ(after.size(), 2u);
  EXPECT_EQ(after[0], cr(9700));
  EXPECT_EQ(after[1], cr(9700));
  Driver f(testing::default_catalog());
  f.set_now(at("2026-03-10T12:00:00Z"));
  ASSERT_EQ(f.run(create("b", "free")).status, 201);
  ASSERT_EQ(f.run(charge("b", cr(10))).status, 201);
  ASSERT_EQ(f.run(ChangePlan{"b", "starter"}).status, 200);  // free to paid: a new cycle
  ASSERT_EQ(f.last_events().back().type, EventType::kPlanChange);
  EXPECT_EQ(f.last_events().back().available_after, cr(2000));
}

// ---------------------------------------------------------------------------------
// Grants.

TEST_F(LedgerTest, PackOnAPlanWithoutPacksIs403WithUpgradeToEnterprise) {
  open("starter");
  Reply r = d.run(grant("a", GrantSource::kPack, cr(1000)));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.code, ErrorCode::kPurchaseNotAllowed);
  EXPECT_EQ(field(r.body, "upgrade_to"), "enterprise");
  EXPECT_EQ(d.pool("a").available, cr(2000));
}

TEST(Grant, EnterprisePackRecordsItsPriceAndExpiresMidCycleLosingOnlyItsFreePart) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-01-15T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "enterprise")).status, 201);
  d.set_now(at("2026-01-20T06:00:00Z"));
  Reply p = d.run(grant("a", GrantSource::kPack, cr(1000)));
  ASSERT_EQ(p.status, 201) << p.body;
  EXPECT_EQ(field(p.body, "source"), "pack");
  EXPECT_EQ(field(p.body, "expires_at"), "2027-01-20T06:00:00Z");  // 365 days
  EXPECT_EQ(d.events.back().proration_usd_cents, 1000);            // 10 USD per 1,000 credits
  // In cycle [2027-01-15, 2027-02-15) the pack expires first, so it is spent first.
  d.set_now(at("2027-01-16T00:00:00Z"));
  Reply c = d.run(charge("a", cr(300)));
  ASSERT_EQ(c.status, 201) << c.body;
  EXPECT_EQ(field(c.body, "drawn_from"),
            R"([{"source":"grant:)" + field(p.body, "grant_id") + R"(","credits":300}])");
  d.set_now(at("2027-01-20T06:00:00Z"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(100000));
  EXPECT_EQ(v.extra, cr(300));  // 1000 at cycle start, 700 expired unspent
  EXPECT_EQ(v.used, cr(300));
  EXPECT_EQ(v.available, cr(100000));
  ASSERT_EQ(d.run(charge("a", cr(0))).status, 201);
  bool expired = false;
  for (const Event& e : d.events) {
    if (e.type == EventType::kExpire && e.object == "grant") {
      expired = true;
      EXPECT_EQ(e.credits, cr(700));
      EXPECT_EQ(e.at_ms, at("2027-01-20T06:00:00Z"));
    }
  }
  EXPECT_TRUE(expired);
}

// A grant that never expires but is spent in full holds nothing: at the next reset it is
// no longer live (nothing can come back to it: a refund is of this cycle's charges), so
// it stops counting against live_grants_per_pool_max. Within its cycle it still counts.
TEST(Grant, AGrantSpentInFullEndsAtTheResetAndFreesItsPlaceUnderTheLimit) {
  LedgerOptions options;
  options.live_grants_per_pool_max = 1;
  Driver d(testing::default_catalog(), options);
  d.set_now(at("2026-03-10T12:00:00Z"));
  ASSERT_EQ(d.run(create("a", "pro")).status, 201);
  ASSERT_EQ(d.run(grant("a", GrantSource::kAdjustment, cr(5))).status, 201);
  const Millicredits allowance = d.pool("a").allowance;
  Reply all = d.run(charge("a", allowance + cr(5)));
  ASSERT_EQ(all.status, 201) << all.body;
  EXPECT_EQ(d.pool("a").available, cr(0));
  Reply refused = d.run(grant("a", GrantSource::kAdjustment, cr(7)));
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(field(refused.body, "limit"), "live_grants_per_pool_max");
  // The next cycle (pro is anchored at its creation): the spent grant is gone, the
  // invariant holds, and a new adjustment fits.
  d.set_now(at("2026-04-10T12:00:00Z"));
  PoolView v = d.pool("a");
  EXPECT_EQ(v.extra, cr(0));
  EXPECT_EQ(v.available, allowance);
  Reply ok = d.run(grant("a", GrantSource::kAdjustment, cr(7)));
  EXPECT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(d.pool("a").available, allowance + cr(7));
}

TEST_F(LedgerTest, NegativeAdjustmentBiggerThanWhatIsFreeIs402) {
  open("starter");
  ASSERT_EQ(d.run(charge("a", cr(1900))).status, 201);
  ASSERT_EQ(d.run(hold("a", cr(50))).status, 201);
  Reply r = d.run(grant("a", GrantSource::kAdjustment, cr(-60)));
  EXPECT_EQ(r.status, 402);
  EXPECT_EQ(field(r.body, "required"), "60");
  EXPECT_EQ(d.pool("a").available, cr(50));
  Reply ok = d.run(grant("a", GrantSource::kAdjustment, cr(-50)));
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(field(ok.body, "credits"), "-50");
  PoolView v = d.pool("a");
  EXPECT_EQ(v.available, cr(0));
  EXPECT_EQ(v.held, cr(50));
  EXPECT_EQ(v.extra, cr(-50));
}

// ---------------------------------------------------------------------------------
// Plan changes.

TEST(PlanChange, FreeToPaidStartsAFullCycleAnchoredAtThatInstantAtFullPrice) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-03-10T12:00:00Z"));
  ASSERT_EQ(d.run(create("a", "free", at("2026-03-01T00:00:00Z"))).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(20))).status, 201);
  d.set_now(at("2026-03-10T15:30:00Z"));
  Reply r = d.run(ChangePlan{"a", "pro"});
  ASSERT_EQ(r.status, 200) << r.body;
  AccountView v = d.account("a");
  EXPECT_EQ(v.plan, "pro");
  EXPECT_EQ(v.cycle_start_ms, at("2026-03-10T15:30:00Z"));
  EXPECT_EQ(v.cycle_end_ms, at("2026-04-10T15:30:00Z"));
  EXPECT_EQ(v.pools[0].allowance, cr(10000));
  EXPECT_EQ(v.pools[0].used, cr(0));
  EXPECT_EQ(v.pools[0].available, cr(10000));
  EXPECT_EQ(v.pools[0].daily_cap, std::nullopt);
  EXPECT_EQ(d.events.back().type, EventType::kPlanChange);
  EXPECT_EQ(d.events.back().proration_usd_cents, 10000);
  EXPECT_EQ(d.events.back().previous_plan, "free");
}

TEST(PlanChange, PaidUpgradeKeepsWhatWasSpentAndProratesTheDifferenceRoundedUp) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-04-01T00:00:00Z"));  // a 30-day cycle
  ASSERT_EQ(d.run(create("a", "starter")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(1500))).status, 201);
  d.set_now(at("2026-04-11T08:00:00Z"));  // 472 h of 720 h left
  ASSERT_EQ(d.run(ChangePlan{"a", "builder"}).status, 200);
  // ceil(3000 * 472 / 720) = ceil(1966.67)
  EXPECT_EQ(d.events.back().proration_usd_cents, 1967);
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(5000));
  EXPECT_EQ(v.used, cr(1500));
  EXPECT_EQ(v.available, cr(3500));
  EXPECT_EQ(d.account("a").cycle_start_ms, at("2026-04-01T00:00:00Z"));
}

TEST(PlanChange, PaidUpgradeAllowanceIsAtLeastSpentPlusHeld) {
  Driver d(testing::catalog_from(kShrinkCatalog));
  d.set_now(at("2026-04-01T00:00:00Z"));
  ASSERT_EQ(d.run(create("a", "a")).status, 201);
  ASSERT_EQ(d.run(charge("a", cr(700))).status, 201);
  ASSERT_EQ(d.run(hold("a", cr(100))).status, 201);
  ASSERT_EQ(d.run(ChangePlan{"a", "b"}).status, 200);
  PoolView v = d.pool("a");
  EXPECT_EQ(v.allowance, cr(800));  // max(500, 700 + 100)
  EXPECT_EQ(v.used, cr(700));
  EXPECT_EQ(v.held, cr(100));
  EXPECT_EQ(v.available, cr(0));
}

TEST_F(LedgerTest, DowngradeIsPendingAndAppliesAtTheNextBoundary) {
  open("pro");
  ASSERT_EQ(d.run(charge("a", cr(10))).status, 201);
  Reply r = d.run(ChangePlan{"a", "starter"});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(field(r.body, "pending_plan"), "starter");
  AccountView v = d.account("a");
  EXPECT_EQ(v.plan, "pro");
  EXPECT_EQ(v.pools[0].allowance, cr(10000));
  d.set_now(at("2026-04-10T12:00:00Z"));
  v = d.account("a");
  EXPECT_EQ(v.plan, "starter");
  EXPECT_EQ(v.pending_plan, std::nullopt);
  EXPECT_EQ(v.cycle_start_ms, at("2026-04-10T12:00:00Z"));
  EXPECT_EQ(v.pools[0].allowance, cr(2000));
  EXPECT_EQ(v.pools[0].available, cr(2000));
}

TEST_F(LedgerTest, AskingForTheCurrentPlanClearsThePendingOne) {
  open("pro");
  ASSERT_EQ(d.run(ChangePlan{"a", "builder"}).status, 200);
  std::size_t events_before = d.events.size();
  ASSERT_EQ(d.run(ChangePlan{"a", "pro"}).status, 200);
  EXPECT_EQ(d.account("a").pending_plan, std::nullopt);
  // The clearing is a change, so an event: the plan kept, the pending one dropped.
  ASSERT_EQ(d.events.size(), events_before + 1);
  EXPECT_EQ(d.events.back().type, EventType::kPlanChange);
  EXPECT_EQ(d.events.back().object, "pending_cleared");
  EXPECT_EQ(d.events.back().plan, "pro");
  EXPECT_EQ(d.events.back().previous_plan, "builder");
  // With nothing pending, asking for the current plan changes nothing: no event.
  events_before = d.events.size();
  ASSERT_EQ(d.run(ChangePlan{"a", "pro"}).status, 200);
  EXPECT_EQ(d.events.size(), events_before);
  d.set_now(at("2026-04-10T12:00:00Z"));
  EXPECT_EQ(d.account("a").plan, "pro");
}

// ---------------------------------------------------------------------------------
// Refunds.

class RefundTest : public LedgerTest {
 protected:
  void SetUp() override {
    open("starter");
    g = add_grant(GrantSource::kAdjustment, cr(30), at("2026-03-20T00:00:00Z"));
    Reply c = d.run(charge("a", cr(50)));  // grant 30, then allowance 20
    ASSERT_EQ(c.status, 201);
    id = field(c.body, "charge_id");
  }
  std::string g, id;
};

TEST_F(RefundTest, FullRefundReturnsCreditsToTheDrawnBucketsInReverseOrder) {
  Reply r = d.run(refund("a", id));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(field(r.body, "credits"), "50");
  EXPECT_EQ(
      field(r.body, "restored_to"),
      R"([{"source":"allowance","credits":20},{"source":"grant:)" + g + R"(","credits":30}])");
  EXPECT_EQ(field(r.body, "forfeited"), "0");
  PoolView v = d.pool("a");
  EXPECT_EQ(v.used, cr(0));
  EXPECT_EQ(v.available, cr(2030));
  EXPECT_EQ(d.events.back().type, EventType::kRefund);
}

TEST_F(RefundTest, AnswerHasExactlyTheFieldsOfApiMd) {
  // API.md: 201 {"refund_id", "credits", "restored_to", "forfeited"} (the charge id is in
  // the path, not in the answer).
  Reply r = d.run(refund("a", id, cr(5)));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.body, R"({"refund_id":")" + field(r.body, "refund_id") +
                        R"(","credits":5,"restored_to":[{"source":"allowance","credits":5}],)"
                        R"("forfeited":0})");
}

TEST_F(RefundTest, PartialRefundsNeverExceedWhatIsUnrefunded) {
  Reply r1 = d.run(refund("a", id, cr(25)));
  ASSERT_EQ(r1.status, 201);
  EXPECT_EQ(field(r1.body, "restored_to"),
            R"([{"source":"allowance","credits":20},{"source":"grant:)" + g + R"(","credits":5}])");
  Reply big = d.run(refund("a", id, cr(26)));
  EXPECT_EQ(big.status, 409);
  EXPECT_EQ(big.code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(field(big.body, "unrefunded"), "25");
  Reply r2 = d.run(refund("a", id, cr(25)));
  ASSERT_EQ(r2.status, 201);
  EXPECT_EQ(field(r2.body, "restored_to"), R"([{"source":"grant:)" + g + R"(","credits":25}])");
  Reply r3 = d.run(refund("a", id));
  EXPECT_EQ(r3.status, 409);
  EXPECT_EQ(r3.code, ErrorCode::kChargeNotRefundable);
  // Fully refunded: any amount is the same 409 (not a 400 for asking more than nothing).
  Reply r4 = d.run(refund("a", id, cr(1)));
  EXPECT_EQ(r4.status, 409);
  EXPECT_EQ(r4.code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(field(r4.body, "unrefunded"), "0");
  EXPECT_EQ(d.pool("a").used, cr(0));
}

TEST_F(RefundTest, RefundAboveWhatIsUnrefundedIs409StoredUnderItsKeyWithItsEvent) {
  const std::size_t events_before = d.events.size();
  Reply big = d.run_keyed(refund("a", id, cr(51)), "a", "r1", "refund 51");
  EXPECT_EQ(big.status, 409);
  EXPECT_EQ(big.code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(field(big.body, "unrefunded"), "50");
  ASSERT_EQ(d.events.size(), events_before + 1);
  EXPECT_EQ(d.events.back().type, EventType::kRejected);
  EXPECT_EQ(d.events.back().refused_by, "charge_not_refundable");
  // The key keeps its answer: the same request is a replay, another one 422.
  Reply again = d.run_keyed(refund("a", id, cr(51)), "a", "r1", "refund 51");
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.body, big.body);
  Reply other = d.run_keyed(refund("a", id, cr(50)), "a", "r1", "refund 50");
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(d.pool("a").used, cr(50));
}

TEST_F(RefundTest, RefundAfterTheBucketEndedIsForfeited) {
  d.set_now(at("2026-03-21T00:00:00Z"));
  Reply r = d.run(refund("a", id));
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(field(r.body, "restored_to"), R"([{"source":"allowance","credits":20}])");
  EXPECT_EQ(field(r.body, "forfeited"), "30");
  PoolView v = d.pool("a");
  EXPECT_EQ(v.used, cr(0));
  EXPECT_EQ(v.available, cr(2000));
  EXPECT_EQ(v.extra, cr(0));
  // The event names every bucket the credits went back to, the ended grant too: its
  // drawn_from adds up to its credits, so the forfeit is explained line by line.
  const Event& e = d.events.back();
  ASSERT_EQ(e.type, EventType::kRefund);
  EXPECT_EQ(e.credits, cr(50));
  ASSERT_EQ(e.drawn_from.size(), 2u);
  EXPECT_EQ(e.drawn_from[0], (DrawnFrom{"allowance", cr(20)}));
  EXPECT_EQ(e.drawn_from[1], (DrawnFrom{"grant:" + g, cr(30)}));
}

TEST_F(RefundTest, RefundAfterTheChargesCycleIs409) {
  d.set_now(at("2026-04-10T12:00:00Z"));
  Reply r = d.run(refund("a", id));
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(d.pool("a").available, cr(2000));
}

TEST_F(RefundTest, RefundTwoCyclesLaterIs409WhetherOrNotASweepRanFirst) {
  // DESIGN.md: refunds only while the charge's cycle is current, later 409
  // charge_not_refundable, also once the charge's record is forgotten (two cycles on).
  Driver swept(testing::default_catalog());
  for (std::size_t i = 0; i < d.commands.size(); ++i) {
    swept.set_now(d.batch_now[i]);
    swept.run(d.commands[i]);
  }
  swept.set_now(at("2026-05-10T12:00:00Z"));
  swept.run(Sweep{});
  EXPECT_EQ(swept.run(refund("a", id)).code, ErrorCode::kChargeNotRefundable);
  d.set_now(at("2026-05-10T12:00:00Z"));
  Reply r = d.run(refund("a", id));  // the account was not touched since March
  EXPECT_EQ(r.code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(r.status, 409);
  EXPECT_TRUE(r.logged);  // it applied two resets
  // Both forgot the record the same way (lazy reset and sweep give identical states).
  EXPECT_EQ(d.ledger.find("a")->forgotten_charges, swept.ledger.find("a")->forgotten_charges);
  EXPECT_EQ(d.ledger.find("a")->forgotten_charges.size(), 1u);
  // A charge id the account never had is still 404.
  EXPECT_EQ(d.run(refund("a", "c_999")).code, ErrorCode::kChargeNotFound);
}

TEST_F(RefundTest, AReadOfAChargeAgreesWithTheWriteThatForgetsIt) {
  const Account& a = *d.ledger.find("a");
  // One cycle on (April 10): the record is kept (refunds of it are 409).
  EXPECT_NE(d.ledger.charge_at(a, id, at("2026-04-10T12:00:00Z")), nullptr);
  // Two cycles on, before any write: the read projects the resets and forgets it, as
  // the first write will.
  EXPECT_EQ(d.ledger.charge_at(a, id, at("2026-05-10T12:00:00Z")), nullptr);
  EXPECT_NE(a.charges.find_record(id), nullptr);  // still there: nothing was written
  d.set_now(at("2026-05-10T12:00:00Z"));
  EXPECT_EQ(d.run(refund("a", id)).code, ErrorCode::kChargeNotRefundable);
  EXPECT_EQ(d.ledger.charge_at(*d.ledger.find("a"), id, at("2026-05-10T12:00:00Z")), nullptr);
}

TEST_F(RefundTest, AForgottenChargesRefundIsStoredUnderItsKey) {
  d.set_now(at("2026-05-10T12:00:00Z"));
  Reply first = d.run_keyed(refund("a", id), "a", "r1", "refund all");
  EXPECT_EQ(first.status, 409);
  Reply again = d.run_keyed(refund("a", id), "a", "r1", "refund all");
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.body, first.body);
}

TEST(ForgottenCharges, KeepsAscendingNumbersAndDropsTheOldestPastItsCap) {
  ForgottenCharges f(4);
  f.add({3, 200, 70'000});
  EXPECT_EQ(f.size(), 3u);
  EXPECT_TRUE(f.contains(3));
  EXPECT_TRUE(f.contains(200));
  EXPECT_TRUE(f.contains(70'000));
  EXPECT_FALSE(f.contains(4));
  EXPECT_FALSE(f.contains(199));
  EXPECT_FALSE(f.contains(70'001));
  f.add({70'005, 1'000'000'000'000});
  EXPECT_EQ(f.size(), 4u);
  EXPECT_FALSE(f.contains(3));  // the oldest went: its id reads as unknown
  EXPECT_EQ(f.first(), 200u);
  EXPECT_TRUE(f.contains(1'000'000'000'000));
  EXPECT_TRUE(f.contains(70'005));
  // What a snapshot keeps restores to the same numbers.
  ForgottenCharges copy(4);
  ASSERT_TRUE(copy.restore(f.size(), f.first(), f.gaps()));
  EXPECT_EQ(copy, f);
  EXPECT_TRUE(copy.contains(70'000));
  // Damaged encodings are refused: a zero gap, a count the gaps do not match, over the cap.
  ForgottenCharges bad(4);
  EXPECT_FALSE(bad.restore(2, 5, std::string(1, '\0')));
  EXPECT_FALSE(bad.restore(3, 5, std::string(1, '\1')));
  EXPECT_FALSE(bad.restore(5, 5, std::string(4, '\1')));
  EXPECT_TRUE(bad.empty());
}

// ---------------------------------------------------------------------------------
// Idempotency.

TEST_F(LedgerTest, ReplayReturnsTheIdenticalBodyMarkedReplayedAndChargesOnce) {
  open("starter");
  Reply first = d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10");
  ASSERT_EQ(first.status, 201);
  Reply again = d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10");
  EXPECT_EQ(again.status, 201);
  EXPECT_TRUE(again.replayed);
  EXPECT_FALSE(again.logged);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(d.pool("a").available, cr(1990));
}

TEST_F(LedgerTest, StoredRefusalReplaysWith402) {
  open("free");
  Reply first = d.run_keyed(charge("a", cr(30)), "a", "k1", "charge 30");
  ASSERT_EQ(first.status, 402);
  Reply again = d.run_keyed(charge("a", cr(30)), "a", "k1", "charge 30");
  EXPECT_EQ(again.status, 402);
  EXPECT_TRUE(again.replayed);
  EXPECT_EQ(again.body, first.body);
}

TEST_F(LedgerTest, SameKeyWithAnotherBodyIs422) {
  open("starter");
  ASSERT_EQ(d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10").status, 201);
  Reply r = d.run_keyed(charge("a", cr(11)), "a", "k1", "charge 11");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.code, ErrorCode::kIdempotencyKeyReused);
  EXPECT_EQ(d.pool("a").available, cr(1990));
}

TEST_F(LedgerTest, KeyLivesExactly24Hours) {
  open("starter");
  Reply first = d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10");
  d.set_now(at("2026-03-11T11:59:59.999Z"));
  EXPECT_TRUE(d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10").replayed);
  d.set_now(at("2026-03-11T12:00:00Z"));
  Reply fresh = d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10");
  EXPECT_EQ(fresh.status, 201);
  EXPECT_FALSE(fresh.replayed);
  EXPECT_NE(field(fresh.body, "charge_id"), field(first.body, "charge_id"));
  EXPECT_EQ(d.pool("a").available, cr(1980));
}

TEST_F(LedgerTest, RateLimitedIs429NeverStoredAndMakesNoEvent) {
  open("starter");
  const std::size_t events_before = d.events.size();
  Command c;
  c.idem.has_key = true;
  c.idem.scope_key_hash = testing::hash_of("a\nk1");
  c.idem.request_hash = testing::hash_of("charge 10");
  c.precheck_error = ErrorCode::kRateLimited;
  c.retry_after_ms = 1500;
  c.body = charge("a", cr(10));
  Reply r = d.run(c);
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(r.retry_after_ms, 1500);
  EXPECT_EQ(field(r.body, "retry_after_ms"), "1500");
  // DESIGN.md: "Not stored, no event, and the key stays free: ... 429". The decision is
  // still logged with the command.
  EXPECT_EQ(d.events.size(), events_before);
  EXPECT_TRUE(r.logged);
  EXPECT_EQ(d.pool("a").available, cr(2000));
  Reply ok = d.run_keyed(charge("a", cr(10)), "a", "k1", "charge 10");
  EXPECT_EQ(ok.status, 201);
  EXPECT_FALSE(ok.replayed);
}

TEST(Idempotency, FullTableIs503UntilKeysExpire) {
  Driver d(testing::default_catalog(), LedgerOptions{.idempotency_keys_max = 2});
  d.set_now(at("2026-03-10T12:00:00Z"));
  ASSERT_EQ(d.run(create("a", "starter")).status, 201);
  ASSERT_EQ(d.run_keyed(charge("a", cr(1)), "a", "k1", "1").status, 201);
  ASSERT_EQ(d.run_keyed(charge("a", cr(1)), "a", "k2", "1").status, 201);
  Reply full = d.run_keyed(charge("a", cr(1)), "a", "k3", "1");
  EXPECT_EQ(full.status, 503);
  EXPECT_EQ(full.code, ErrorCode::kIdempotencyCapacity);
  EXPECT_FALSE(full.logged);
  EXPECT_TRUE(d.run_keyed(charge("a", cr(1)), "a", "k1", "1").replayed);
  EXPECT_EQ(d.pool("a").available, cr(1998));
  d.set_now(at("2026-03-11T12:00:00Z"));
  EXPECT_EQ(d.run_keyed(charge("a", cr(1)), "a", "k3", "1").status, 201);
}

// ---------------------------------------------------------------------------------
// Closing.

TEST_F(LedgerTest, CloseVoidsOpenHoldsThenEveryMutationIs409AccountClosed) {
  open("starter");
  ASSERT_EQ(d.run(hold("a", cr(100))).status, 201);
  Reply r = d.run(CloseAccount{"a"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(field(r.body, "status"), "closed");
  std::vector<Event> ev = d.last_events();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].type, EventType::kVoid);
  EXPECT_EQ(ev[1].type, EventType::kAccountClosed);
  EXPECT_EQ(d.pool("a").held, cr(0));
  EXPECT_EQ(d.pool("a").available, cr(2000));
  Reply c = d.run(charge("a", cr(1)));
  EXPECT_EQ(c.status, 409);
  EXPECT_EQ(c.code, ErrorCode::kAccountClosed);
  EXPECT_EQ(d.run(CloseAccount{"a"}).code, ErrorCode::kAccountClosed);
}

// ---------------------------------------------------------------------------------
// Events.

TEST(Events, CarryGlobalSequenceNumbersInOrderAndTheRightTypes) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-03-10T12:00:00Z"));
  d.run(create("a", "starter"));
  d.run(charge("a", cr(10)));
  Reply h = d.run(hold("a", cr(20)));
  d.run(capture("a", field(h.body, "hold_id"), cr(5)));
  Reply h2 = d.run(hold("a", cr(20)));
  d.run(Void{"a", field(h2.body, "hold_id")});
  d.set_now(at("2026-04-10T12:00:00Z"));
  d.run(charge("a", cr(1)));
  d.run(charge("a", cr(5000)));
  std::vector<EventType> want = {
      EventType::kAccountCreated, EventType::kCharge, EventType::kHold,
      EventType::kCapture,        EventType::kHold,   EventType::kVoid,
      EventType::kReset,          EventType::kCharge, EventType::kRejected};
  ASSERT_EQ(d.events.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(d.events[i].type, want[i]) << i;
    EXPECT_EQ(d.events[i].seq, i + 1) << i;
  }
  EXPECT_EQ(d.events[6].at_ms, at("2026-04-10T12:00:00Z"));
  EXPECT_EQ(d.events[1].charge_id, "c_2");
  EXPECT_EQ(d.events[7].available_after, cr(1999));
  EXPECT_EQ(d.ledger.next_seq(), 10u);
}

TEST(Events, ResetsOfAnUntouchedAccountAreNumberedWhenAppliedInTimeOrder) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-01-10T00:00:00Z"));
  d.run(create("a", "starter"));
  d.set_now(at("2026-04-15T00:00:00Z"));
  d.run(charge("a", cr(1)));
  std::vector<Event> ev = d.last_events();
  ASSERT_EQ(ev.size(), 4u);
  EXPECT_EQ(ev[0].at_ms, at("2026-02-10T00:00:00Z"));
  EXPECT_EQ(ev[1].at_ms, at("2026-03-10T00:00:00Z"));
  EXPECT_EQ(ev[2].at_ms, at("2026-04-10T00:00:00Z"));
  EXPECT_EQ(ev[3].type, EventType::kCharge);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(ev[i].seq, 2 + i);
}

// A command that applied passed resets made events, so it must be logged even when its
// own answer is a validation error.
TEST(Events, AValidationErrorThatAppliedResetsIsLogged) {
  Driver d(testing::default_catalog());
  d.set_now(at("2026-01-10T00:00:00Z"));
  d.run(create("a", "starter"));
  d.set_now(at("2026-02-15T00:00:00Z"));
  Charge c = charge("a", cr(1));
  c.pool = "nope";
  Reply r = d.run(c);
  EXPECT_EQ(r.status, 400);
  ASSERT_EQ(d.last_events().size(), 1u);
  EXPECT_EQ(d.last_events()[0].type, EventType::kReset);
  EXPECT_TRUE(r.logged);
}

// ---------------------------------------------------------------------------------
// Codec and determinism.

pricing::Usage llm_usage() {
  pricing::Usage u;
  u.model = "gpt-4o";
  u.input_tokens = 500;
  u.output_tokens = 200;
  return u;
}

pricing::Usage image_usage() {
  pricing::Usage u;
  u.size = "512x512";
  u.count = 2;
  return u;
}

std::vector<Command> one_of_each_command() {
  std::vector<Command> out;
  auto add = [&](CommandBody b, bool keyed) {
    Command c;
    c.body = std::move(b);
    if (keyed) {
      c.idem.has_key = true;
      c.idem.key = "key-" + std::to_string(out.size());
      c.idem.scope_key_hash = testing::hash_of(c.idem.key);
      c.idem.request_hash = testing::hash_of("req" + c.idem.key);
    }
    out.push_back(std::move(c));
  };
  add(create("a", "free", at("2026-01-01T00:00:00Z")), true);
  add(CloseAccount{"a"}, true);
  add(ChangePlan{"a", "pro"}, true);
  add(grant("a", GrantSource::kAdjustment, cr(-5), at("2026-09-01T00:00:00Z"), "sorry"), true);
  Charge ch = charge("a", mc(1500), "user-9");
  ch.kind = pricing::Kind::kInvokeLlm;
  ch.priced_by_usage = true;
  ch.rate_card_version = 7;
  ch.usage = llm_usage();
  ch.metadata.file = "src/app.ts";
  ch.metadata.call_site = "/checkout";
  ch.metadata.extra = {{"team", "blue"}};
  ch.cache_key = "ck";
  ch.cache_hit = true;
  ch.saved = mc(1500);
  ch.cache_generation = 300;  // more than a byte as a varint
  add(ch, true);
  Hold h = hold("a", cr(9), 60'000);
  h.kind = pricing::Kind::kGenerateImage;
  h.usage = image_usage();
  add(h, false);
  add(capture("a", "h_3", mc(250), true), true);
  add(Void{"a", "h_4"}, true);
  add(refund("a", "c_5", cr(1)), true);
  add(Sweep{}, false);
  add(LoadCatalog{"[plans.x]\nname = \"X\"\n"}, false);
  add(LoadRateCard{3, "version = 3\n"}, false);
  Command limited;
  limited.body = charge("a", cr(1));
  limited.precheck_error = ErrorCode::kRateLimited;
  limited.retry_after_ms = 2500;
  out.push_back(std::move(limited));
  return out;
}

TEST(Codec, EncodeThenDecodeRoundTripsEveryCommandType) {
  std::vector<Command> cmds = one_of_each_command();
  ASSERT_EQ(std::variant_size_v<CommandBody>, 12u);
  std::vector<const Command*> ptrs;
  for (const auto& c : cmds) ptrs.push_back(&c);
  std::string bytes;
  encode_batch(at("2026-03-10T12:00:00Z"), ptrs, bytes);
  Result<DecodedBatch> got = decode_batch(bytes);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->now_ms, at("2026-03-10T12:00:00Z"));
  ASSERT_EQ(got->commands.size(), cmds.size());
  for (std::size_t i = 0; i < cmds.size(); ++i) {
    const Command& x = cmds[i];
    const Command& y = got->commands[i];
    EXPECT_EQ(y.body.index(), x.body.index()) << i;
    EXPECT_EQ(y.idem.has_key, x.idem.has_key);
    EXPECT_EQ(y.idem.key, x.idem.key);
    EXPECT_EQ(y.idem.scope_key_hash, x.idem.scope_key_hash);
    EXPECT_EQ(y.idem.request_hash, x.idem.request_hash);
    EXPECT_EQ(y.precheck_error, x.precheck_error);
    EXPECT_EQ(y.retry_after_ms, x.retry_after_ms);
  }
  const auto& c = std::get<Charge>(got->commands[4].body);
  EXPECT_EQ(c.user_id, "user-9");
  EXPECT_EQ(c.kind, pricing::Kind::kInvokeLlm);
  EXPECT_EQ(c.amount, mc(1500));
  EXPECT_TRUE(c.priced_by_usage);
  EXPECT_EQ(c.rate_card_version, 7);
  EXPECT_EQ(c.usage, llm_usage());
  EXPECT_EQ(c.metadata, std::get<Charge>(cmds[4].body).metadata);
  EXPECT_EQ(c.cache_key, "ck");
  EXPECT_TRUE(c.cache_hit);
  EXPECT_EQ(c.saved, mc(1500));
  EXPECT_EQ(c.cache_generation, 300u);
  EXPECT_EQ(std::get<Hold>(got->commands[5].body).cache_generation, 0u);
  const auto& cr0 = std::get<CreateAccount>(got->commands[0].body);
  EXPECT_EQ(cr0.signup_at_ms, at("2026-01-01T00:00:00Z"));
  const auto& g = std::get<AddGrant>(got->commands[3].body);
  EXPECT_EQ(g.credits, cr(-5));
  EXPECT_EQ(g.expires_at_ms, at("2026-09-01T00:00:00Z"));
  EXPECT_EQ(g.reason, "sorry");
  const auto& h = std::get<Hold>(got->commands[5].body);
  EXPECT_EQ(h.ttl_ms, 60'000);
  EXPECT_EQ(h.usage, image_usage());
  const auto& cap = std::get<Capture>(got->commands[6].body);
  EXPECT_EQ(cap.amount, mc(250));
  EXPECT_TRUE(cap.overage_charge);
  EXPECT_EQ(std::get<Refund>(got->commands[8].body).credits, cr(1));
  EXPECT_EQ(std::get<LoadCatalog>(got->commands[10].body).toml_text, "[plans.x]\nname = \"X\"\n");
  EXPECT_EQ(std::get<LoadRateCard>(got->commands[11].body).version, 3);
  EXPECT_EQ(std::get<LoadRateCard>(got->commands[11].body).toml_text, "version = 3\n");
  // Encoding the decoded batch gives the same bytes.
  std::vector<const Command*> again;
  for (const auto& x : got->commands) again.push_back(&x);
  std::string bytes2;
  encode_batch(got->now_ms, again, bytes2);
  EXPECT_EQ(bytes2, bytes);
}

TEST(Codec, AnUnknownVersionOrATruncatedBatchIsRefused) {
  std::vector<Command> cmds = one_of_each_command();
  std::vector<const Command*> ptrs;
  for (const auto& c : cmds) ptrs.push_back(&c);
  std::string bytes;
  encode_batch(5, ptrs, bytes);
  std::string v2 = bytes;
  v2[0] = static_cast<char>(kCodecVersion + 1);
  Result<DecodedBatch> r = decode_batch(v2);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kStorageFailed);
  EXPECT_FALSE(decode_batch(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(decode_batch(bytes + "x").ok());
  EXPECT_FALSE(decode_batch("").ok());
}

TEST(Determinism, ReplayingTheDecodedLogGivesIdenticalRepliesEventsAndViews) {
  Driver d(testing::default_catalog());
  struct Logged {
    std::string bytes;
    Reply reply;
  };
  std::vector<Logged> log;
  auto step = [&](std::int64_t t, Command c) {
    d.set_now(t);
    Command copy = c;
    Reply r = d.run(c);
    std::string bytes;
    encode_batch(d.ledger.now_ms(), {&copy}, bytes);
    log.push_back({bytes, r});
  };
  auto cmd = [](CommandBody b, std::string key = "") {
    Command c;
    c.body = std::move(b);
    if (!key.empty()) {
      c.idem.has_key = true;
      c.idem.key = key;
      c.idem.scope_key_hash = testing::hash_of(key);
      c.idem.request_hash = testing::hash_of("r" + key);
    }
    return c;
  };
  std::int64_t t0 = at("2026-01-31T10:00:00Z");
  std::int64_t h = 3'600'000;
  step(t0, cmd(create("a", "starter"), "k0"));
  step(t0, cmd(create("f", "free", t0 - 20 * 24 * h), "k1"));
  step(t0 + h, cmd(charge("a", cr(150)), "k2"));
  step(t0 + h, cmd(charge("a", cr(150)), "k2"));  // replay
  step(t0 + 2 * h, cmd(hold("a", cr(80), 3'600'000), "k3"));
  step(t0 + 2 * h, cmd(charge("f", cr(30)), "k4"));  // over the daily cap
  step(t0 + 3 * h, cmd(capture("a", "h_4", cr(60)), "k5"));
  step(t0 + 3 * h, cmd(grant("a", GrantSource::kAdjustment, cr(12), t0 + 400 * h), "k6"));
  step(t0 + 4 * h, cmd(refund("a", "c_3", cr(50)), "k7"));
  step(t0 + 5 * h, cmd(ChangePlan{"a", "builder"}, "k8"));
  step(t0 + 6 * h, cmd(ChangePlan{"f", "pro"}, "k9"));
  step(t0 + 700 * h, cmd(Sweep{}));
  step(t0 + 800 * h, cmd(hold("a", cr(5), 60'000), "k10"));
  step(t0 + 900 * h, cmd(CloseAccount{"a"}, "k11"));
  Driver fresh(testing::default_catalog());
  for (const Logged& l : log) {
    if (!l.reply.logged) continue;
    Result<DecodedBatch> b = decode_batch(l.bytes);
    ASSERT_TRUE(b.ok());
    fresh.ledger.begin_batch(b->now_ms);
    for (Command& c : b->commands) {
      Reply r = fresh.ledger.apply(c, fresh.events);
      EXPECT_EQ(r.status, l.reply.status);
      EXPECT_EQ(r.body, l.reply.body);
    }
  }
  ASSERT_EQ(fresh.events.size(), d.events.size());
  for (std::size_t i = 0; i < d.events.size(); ++i) EXPECT_EQ(fresh.events[i], d.events[i]) << i;
  fresh.set_now(d.now);
  for (const char* id : {"a", "f"}) {
    std::string x, y;
    d.ledger.render_account(d.account(id), x);
    fresh.ledger.render_account(fresh.account(id), y);
    EXPECT_EQ(x, y);
  }
}

}  // namespace
}  // namespace credit::ledger
