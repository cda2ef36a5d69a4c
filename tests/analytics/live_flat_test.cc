// tests/analytics/live_flat_test.cc
// The flat rollups (src/analytics/rollup.cc: interned keys, indexed hour cells, the
// refund memory by sequence number, burn_window) and the live wiring
// (src/analytics/live.cc: the sink's FIFO, sync(), the cheap alert check and its memo),
// with answers computed by hand in the comments.
#include <gtest/gtest.h>

#include <filesystem>

#include "analytics/alerts.h"
#include "analytics/burn.h"
#include "analytics/live.h"
#include "analytics/rollup.h"
#include "live_test_support.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

using test_support::at;
using test_support::cr;

Event charge(std::int64_t at_ms, std::int64_t credits_mc, std::string user, std::string file = "",
             std::uint64_t seq = 0) {
  Event e;
  e.seq = seq;
  e.at_ms = at_ms;
  e.account_id = "a";
  e.user_id = std::move(user);
  e.type = EventType::kCharge;
  e.kind = pricing::Kind::kAgentPrompt;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(credits_mc);
  e.metadata.file = std::move(file);
  e.charge_id = "c_" + std::to_string(seq == 0 ? e.at_ms : seq);
  return e;
}

Event refund_of(const Event& c, std::int64_t at_ms, std::int64_t credits_mc) {
  Event r;
  r.at_ms = at_ms;
  r.account_id = c.account_id;
  r.user_id = c.user_id;
  r.type = EventType::kRefund;
  r.kind = c.kind;
  r.pool = c.pool;
  r.credits = Millicredits::from_mc(credits_mc);
  r.charge_id = c.charge_id;
  return r;
}

TEST(FlatRollups, AnHourWithMoreKeysThanTheScanKeepsEveryTally) {
  Rollups r;
  // 100 users in one hour (past kCellScanEntriesMax: the cell is indexed), user i
  // charging i + 1 credits twice: 2 x (1 + ... + 100) = 10,100 credits in 200 charges.
  const std::int64_t t = at("2026-03-02T10:00:00Z");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 100; ++i) r.add(charge(t + i, cr(i + 1), "u" + std::to_string(i)));
  }
  UsageResult u = r.usage("a", "credits", GroupBy::kUser,
                          {at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z")});
  EXPECT_EQ(u.total_mc, cr(10'100));
  EXPECT_EQ(u.count, 200);
  ASSERT_EQ(u.rows.size(), 100u);
  EXPECT_EQ(u.rows[0].key, "u99");  // 200 credits, the most
  EXPECT_EQ(u.rows[0].credits_mc, cr(200));
  EXPECT_EQ(u.rows[0].count, 2);
  EXPECT_EQ(u.rows[99].key, "u0");
  EXPECT_EQ(u.rows[99].credits_mc, cr(2));
  UsageResult k = r.usage("a", "credits", GroupBy::kKind,
                          {at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z")});
  ASSERT_EQ(k.rows.size(), 1u);
  EXPECT_EQ(k.rows[0].key, "agent_prompt");
}

TEST(FlatRollups, AnHourWithThousandsOfKeysInSeveralDimensionsKeepsEveryTally) {
  // An hour cell's index grows several times (it must stay a power of two in size: the
  // demo month once hung probing a 96-slot index). 3,000 distinct files and users in one
  // hour, each charging 1 credit: every file and user counted once.
  Rollups r;
  const std::int64_t t = at("2026-03-02T10:00:00Z");
  for (int i = 0; i < 3000; ++i) {
    Event e = charge(t + i, cr(1), "u" + std::to_string(i), "src/F" + std::to_string(i) + ".jsx");
    e.metadata.feature = "feature-" + std::to_string(i % 700);
    e.metadata.call_site = "site-" + std::to_string(i % 300);
    e.metadata.model = "model-" + std::to_string(i % 40);
    r.add(e);
  }
  const TimeRange day{at("2026-03-02T00:00:00Z"), at("2026-03-03T00:00:00Z")};
  UsageResult f = r.usage("a", "credits", GroupBy::kFile, day);
  EXPECT_EQ(f.total_mc, cr(3000));
  ASSERT_EQ(f.rows.size(), 3000u);
  for (const auto& row : f.rows) EXPECT_EQ(row.count, 1) << row.key;
  UsageResult u = r.usage("a", "credits", GroupBy::kUser, day);
  ASSERT_EQ(u.rows.size(), 3000u);
}

TEST(FlatRollups, RefundsFindTheirChargeBySequenceWithinTheRefundMemory) {
  Rollups r;
  const std::int64_t d1 = at("2026-03-01T10:00:00Z");
  Event a = charge(d1, cr(10), "dana", "src/A.jsx", 5);
  Event b = charge(d1 + 1000, cr(4), "dana", "src/B.jsx", 9);
  r.add(a);
  r.add(b);
  // 19 days later, 3 of a's 10 credits back: under src/A.jsx.
  r.add(refund_of(a, d1 + 19 * kMsPerDay, cr(3)));
  // A charge 33 days after a and b forgets both (32 days of memory): b's refund then
  // counts under no file.
  r.add(charge(d1 + 33 * kMsPerDay, cr(1), "lee", "src/C.jsx", 20));
  r.add(refund_of(b, d1 + 33 * kMsPerDay + 1, cr(4)));
  UsageResult f = r.usage("a", "credits", GroupBy::kFile,
                          {at("2026-03-01T00:00:00Z"), at("2026-05-01T00:00:00Z")});
  ASSERT_EQ(f.rows.size(), 4u);
  EXPECT_EQ(f.total_mc, cr(10 + 4 - 3 + 1 - 4));
  EXPECT_EQ(f.rows[0].key, "src/A.jsx");
  EXPECT_EQ(f.rows[0].credits_mc, cr(7));
  EXPECT_EQ(f.rows[1].key, "src/B.jsx");
  EXPECT_EQ(f.rows[1].credits_mc, cr(4));
  EXPECT_EQ(f.rows[2].key, "src/C.jsx");
  EXPECT_EQ(f.rows[3].key, "");
  EXPECT_EQ(f.rows[3].credits_mc, cr(-4));
}

TEST(FlatRollups, BurnWindowIsTheDailySeriesSummed) {
  Rollups r;
  // 10, 0, 30, 5 credits on March 1-4, today (the 5th) 7.
  const std::int64_t m1 = at("2026-03-01T12:00:00Z");
  r.add(charge(m1, cr(10), "u"));
  r.add(charge(m1 + 2 * kMsPerDay, cr(30), "u"));
  r.add(charge(m1 + 3 * kMsPerDay, cr(5), "u"));
  r.add(charge(m1 + 4 * kMsPerDay, cr(7), "u"));
  const std::int64_t today = at("2026-03-05T00:00:00Z");
  BurnWindow w = r.burn_window("a", "credits", today, at("2026-03-01T00:00:00Z"), 4);
  EXPECT_EQ(w.today_mc, cr(7));
  EXPECT_EQ(w.window_sum_mc, cr(45));
  // The last two full days only: 30 + 5.
  EXPECT_EQ(r.burn_window("a", "credits", today, at("2026-03-03T00:00:00Z"), 2).window_sum_mc,
            cr(35));
  EXPECT_EQ(r.daily_burn("a", "credits", at("2026-03-01T00:00:00Z"), today),
            (std::vector<std::int64_t>{cr(10), 0, cr(30), cr(5), cr(7)}));
  // An unknown pool or account burns nothing.
  EXPECT_EQ(r.burn_window("a", "message", today, today, 0).today_mc, 0);
  EXPECT_EQ(r.burn_window("b", "credits", today, today, 0).today_mc, 0);
}

TEST(AlertKeys, OneKeyPerAlertInTheSameOrder) {
  AlertRules rules;
  rules.thresholds_percent = {80, 50, 100};
  PoolStatus p;
  p.pool = "credits";
  p.cycle_start_ms = at("2026-03-01T00:00:00Z");
  p.cycle_end_ms = at("2026-04-01T00:00:00Z");
  p.allowance_mc = cr(1000);
  p.used_mc = cr(850);
  p.burn.spike = true;
  p.burn.projected_exhaustion_ms = at("2026-03-25T12:00:00.250Z");
  const std::int64_t now = at("2026-03-20T10:00:00Z");
  std::vector<Alert> alerts = evaluate_alerts("a", now, {p}, rules);
  std::vector<AlertKey> keys;
  alert_keys(now, p, params_of(rules), keys);
  ASSERT_EQ(keys.size(), alerts.size());
  ASSERT_EQ(keys.size(), 4u);  // 50 %, 80 %, the spike, the exhaustion
  EXPECT_EQ(keys[0].threshold_percent, 50);
  EXPECT_EQ(keys[1].threshold_percent, 80);
  EXPECT_EQ(keys[0].period_ms, p.cycle_start_ms);
  EXPECT_EQ(alerts[2].rule, "burn_spike");
  EXPECT_EQ(keys[2].rule, AlertKey::Rule::kBurnSpike);
  EXPECT_EQ(keys[3].period_ms, at("2026-03-20T00:00:00Z"));
  // The exhaustion instant is written as RFC 3339 (milliseconds only when not zero), in
  // the message and the details.
  EXPECT_EQ(alerts[3].rule, "projected_exhaustion");
  EXPECT_NE(alerts[3].message.find("run out at 2026-03-25T12:00:00.250Z, before the cycle ends at "
                                   "2026-04-01T00:00:00Z"),
            std::string::npos)
      << alerts[3].message;
  EXPECT_NE(alerts[3].details_json.find("\"projected_at\":\"2026-03-25T12:00:00.250Z\""),
            std::string::npos);
}

class LiveTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::TempDir() + "/live_flat_test";
    std::filesystem::remove_all(dir_);
    auto a = Analytics::open(dir_);
    ASSERT_TRUE(a.ok());
    live_ = std::move(a.value());
  }
  std::string dir_;
  std::unique_ptr<Analytics> live_;
};

TEST_F(LiveTest, TheSinkQueuesAndSyncAppliesEverythingBefore) {
  Event created;
  created.at_ms = at("2026-03-01T00:00:00Z");
  created.account_id = "a";
  created.type = EventType::kAccountCreated;
  // The first event schedules an evaluation; the next ones do not until it is taken.
  EXPECT_TRUE(live_->on_events({created}));
  EXPECT_FALSE(live_->on_events({charge(at("2026-03-02T10:00:00Z"), cr(5), "u", "f.js", 7)}));
  live_->sync();
  {
    std::lock_guard lock(live_->mu());
    // The account's first live event is its first listed one (the burn window starts on
    // its day), not its internal creation record.
    EXPECT_EQ(live_->rollups().first_event_ms("a"), at("2026-03-02T10:00:00Z"));
    EXPECT_EQ(live_->rollups()
                  .usage("a", "credits", GroupBy::kFile,
                         {at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")})
                  .total_mc,
              cr(5));
  }
  auto due = live_->take_due();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].account_id, "a");
  EXPECT_EQ(due[0].at_ms, at("2026-03-02T10:00:00Z"));
  EXPECT_TRUE(live_->on_events({charge(at("2026-03-02T11:00:00Z"), cr(1), "u", "f.js", 8)}));
}

TEST_F(LiveTest, EvaluationRecordsEachAlertOnceAndAThresholdCrossedLater) {
  DueAccount d;
  d.account_id = "a";
  d.now_ms = at("2026-03-02T10:00:00Z");
  d.cycle_start_ms = at("2026-03-01T00:00:00Z");
  d.cycle_end_ms = at("2026-04-01T00:00:00Z");
  d.pools.push_back(DuePool{"credits", cr(600), cr(1000), 0, cr(400), {}});
  live_->queue_evaluation({d});
  live_->queue_evaluation({d});  // the same state again: nothing new
  live_->sync();
  auto alerts = live_->alerts().alerts_of("a");
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].rule, "threshold");
  EXPECT_NE(alerts[0].details_json.find("\"threshold_percent\":50"), std::string::npos);
  // 850 of 1000 an hour later: 80 % fires, 50 % does not again.
  d.now_ms += 3'600'000;
  d.pools[0].used_mc = cr(850);
  d.pools[0].available_mc = cr(150);
  live_->queue_evaluation({d});
  live_->sync();
  alerts = live_->alerts().alerts_of("a");
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_NE(alerts[1].details_json.find("\"threshold_percent\":80"), std::string::npos);
  // A new instance on the same files (a restart) knows they fired.
  live_.reset();
  auto again = Analytics::open(dir_);
  ASSERT_TRUE(again.ok());
  (*again)->queue_evaluation({d});
  (*again)->sync();
  EXPECT_EQ((*again)->alerts().alerts_of("a").size(), 2u);
}

}  // namespace
}  // namespace credit::analytics
