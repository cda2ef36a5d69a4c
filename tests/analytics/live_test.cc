// tests/analytics/live_test.cc
// Rollups, burn monitor, forecast and alerts (src/analytics/{rollup,burn,forecast,alerts}),
// with answers computed by hand in the comments.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "analytics/alerts.h"
#include "analytics/burn.h"
#include "analytics/forecast.h"
#include "analytics/rollup.h"
#include "live_test_support.h"
#include "pricing/plan.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

using test_support::at;
using test_support::cr;

Event charge(const char* when, std::int64_t credits_mc, pricing::Kind kind, std::string user,
             std::string file = "", std::string call_site = "") {
  Event e;
  e.at_ms = at(when);
  e.account_id = "a";
  e.user_id = std::move(user);
  e.type = EventType::kCharge;
  e.kind = kind;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(credits_mc);
  e.metadata.file = std::move(file);
  e.metadata.call_site = std::move(call_site);
  e.charge_id = "c_" + std::to_string(e.at_ms);
  return e;
}

// A series of `days` days ending today, with the given burns (credits) oldest first.
struct Series {
  BurnDays days;
  std::vector<std::int64_t> mc;
};
Series series(std::int64_t now_ms, std::int64_t first_event_ms,
              const std::vector<std::int64_t>& credits_oldest_first, BurnParams p = {}) {
  Series s;
  s.days = burn_days(now_ms, now_ms, first_event_ms, p);
  std::size_t n =
      static_cast<std::size_t>((s.days.today_ms - s.days.series_first_ms) / kMsPerDay + 1);
  s.mc.assign(n, 0);
  // credits_oldest_first ends with today.
  const std::size_t k = credits_oldest_first.size();
  for (std::size_t j = 0; j < k && j < n; ++j)
    s.mc[n - 1 - j] = cr(credits_oldest_first[k - 1 - j]);
  return s;
}

TEST(Burn, TodayAtExactlyTwiceTheMeanIsNoSpikeJustAboveIs) {
  const std::int64_t now = at("2026-03-20T12:00:00Z");
  // 14 full days of 10 credits, today 20: 20 > 2 x 10 is false.
  std::vector<std::int64_t> burn(14, 10);
  burn.push_back(20);
  Series s = series(now, at("2026-01-01T00:00:00Z"), burn);
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), {});
  EXPECT_EQ(r.window_days, 14);
  EXPECT_EQ(*r.trailing_mean_mc, cr(10));
  EXPECT_DOUBLE_EQ(*r.ratio, 2.0);
  EXPECT_FALSE(r.spike);
  // One millicredit more is a spike.
  s.mc.back() += 1;
  EXPECT_TRUE(burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), {}).spike);
}

TEST(Burn, NoSpikeWithFewerThanThreeDaysSinceTheFirstEvent) {
  const std::int64_t now = at("2026-03-20T12:00:00Z");
  // First event on the 18th: the window holds the 18th and the 19th only.
  Series s = series(now, at("2026-03-18T23:00:00Z"), {1, 1, 100});
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), {});
  EXPECT_EQ(r.window_days, 2);
  EXPECT_EQ(*r.trailing_mean_mc, cr(1));
  EXPECT_FALSE(r.spike);
  // A day later there are three such days: 100 > 2 x (1 + 1 + 100) / 3 = 68 is a spike.
  const std::int64_t later = now + kMsPerDay;
  Series t = series(later, at("2026-03-18T23:00:00Z"), {1, 1, 100, 150});
  BurnReport r2 = burn_report(t.days, t.mc, later, at("2026-04-01T00:00:00Z"), cr(1000), {});
  EXPECT_EQ(r2.window_days, 3);
  EXPECT_EQ(r2.window_sum_mc, cr(102));
  EXPECT_EQ(*r2.trailing_mean_mc, cr(34));
  EXPECT_TRUE(r2.spike);  // 150 > 68
}

TEST(Burn, AWindowNettedBelowZeroByRefundsCountsAsAMeanOfZero) {
  // Audit finding: a refund of 40 on a day without charges made the window's sum -40, and
  // a day without burn was a spike ("0 > 2 x -13.333"). The mean counts as 0 there, as
  // for a window without burn: no burn today is no spike, any burn today is one.
  const std::int64_t now = at("2026-05-06T10:00:00Z");
  Series s = series(now, at("2026-05-01T10:00:00Z"), {0, 0, 0, 0, 0, 0});
  s.mc[s.mc.size() - 2] = -cr(40);  // yesterday: a refund only
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-06-01T00:00:00Z"), cr(1000), {});
  EXPECT_LT(r.window_sum_mc, 0);
  EXPECT_EQ(*r.trailing_mean_mc, 0);  // as the ratio and the spike read it
  EXPECT_FALSE(r.ratio.has_value());
  EXPECT_FALSE(r.spike);
  s.mc.back() = 1;  // one millicredit today
  EXPECT_TRUE(burn_report(s.days, s.mc, now, at("2026-06-01T00:00:00Z"), cr(1000), {}).spike);
}

TEST(Burn, DaysWithoutBurnCountAsZeroAndTheRatioIsAbsentWhenTheMeanIsZero) {
  const std::int64_t now = at("2026-03-20T12:00:00Z");
  Series s = series(now, at("2026-03-01T00:00:00Z"), {0, 0, 0, 0, 5});
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), {});
  EXPECT_EQ(r.window_sum_mc, 0);
  EXPECT_EQ(*r.trailing_mean_mc, 0);
  EXPECT_FALSE(r.ratio.has_value());
  EXPECT_FALSE(r.projected_exhaustion_ms.has_value());
  // 14 days of 7 credits, with zeros: mean = (7 x 7) / 14 = 3.5.
  Series t = series(now, at("2026-01-01T00:00:00Z"), {7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 7, 0, 0});
  EXPECT_EQ(
      *burn_report(t.days, t.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), {}).trailing_mean_mc,
      3500);
}

TEST(Burn, ProjectedExhaustionOnlyBeforeTheCycleEnd) {
  const std::int64_t now = at("2026-03-20T00:00:00Z");
  Series s = series(now, at("2026-01-01T00:00:00Z"), std::vector<std::int64_t>(15, 100));
  // 550 available at 100 a day: 5.5 days -> 2026-03-25T12:00:00Z.
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(550), {});
  EXPECT_EQ(*r.projected_exhaustion_ms, at("2026-03-25T12:00:00Z"));
  // 1,200 available lasts 12 days, past the cycle end.
  EXPECT_FALSE(burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1200), {})
                   .projected_exhaustion_ms);
}

TEST(Burn, ConfigurableFactorAndWindow) {
  const std::int64_t now = at("2026-03-20T12:00:00Z");
  BurnParams p{1500, 3};  // 1.5x over 3 days
  // The days before the window (100 a day) do not count.
  Series s = series(now, at("2026-01-01T00:00:00Z"), {100, 100, 10, 10, 10, 16}, p);
  BurnReport r = burn_report(s.days, s.mc, now, at("2026-04-01T00:00:00Z"), cr(1000), p);
  EXPECT_EQ(r.window_days, 3);
  EXPECT_EQ(*r.trailing_mean_mc, cr(10));
  EXPECT_TRUE(r.spike);  // 16 > 15
}

TEST(Alerts, ThresholdsCrossedByOneChargeFireEachOncePerCycle) {
  AlertRules rules;
  PoolStatus p;
  p.pool = "credits";
  p.cycle_start_ms = at("2026-03-01T00:00:00Z");
  p.cycle_end_ms = at("2026-04-01T00:00:00Z");
  p.allowance_mc = cr(1000);
  p.used_mc = cr(400);
  EXPECT_TRUE(evaluate_alerts("a", at("2026-03-02T00:00:00Z"), {p}, rules).empty());
  // One charge of 450 takes used from 40 % to 85 %: 50 and 80 fire, 100 does not.
  p.used_mc = cr(850);
  auto fired = evaluate_alerts("a", at("2026-03-02T00:00:00Z"), {p}, rules);
  ASSERT_EQ(fired.size(), 2u);
  EXPECT_EQ(fired[0].rule, "threshold");
  EXPECT_NE(fired[0].details_json.find("\"threshold_percent\":50"), std::string::npos);
  EXPECT_NE(fired[1].details_json.find("\"threshold_percent\":80"), std::string::npos);
  // The same thresholds the next day are the same alerts (once per cycle)...
  auto again = evaluate_alerts("a", at("2026-03-03T00:00:00Z"), {p}, rules);
  EXPECT_EQ(again[0].alert_id, fired[0].alert_id);
  // ...and new ones in the next cycle.
  p.cycle_start_ms = at("2026-04-01T00:00:00Z");
  EXPECT_NE(evaluate_alerts("a", at("2026-04-02T00:00:00Z"), {p}, rules)[0].alert_id,
            fired[0].alert_id);
  // Extra credits count in the base: 850 of 1000 + 1000 is 42.5 %.
  p.extra_mc = cr(1000);
  EXPECT_TRUE(evaluate_alerts("a", at("2026-04-02T00:00:00Z"), {p}, rules).empty());
}

// A threshold fires at the step that crossed it, with the used credits then, not at the
// end of the batch (found by an audit: two charges in one batch, the 50 % alert said 80 %
// at the batch's last instant).
TEST(Alerts, AThresholdFiresAtTheStepThatCrossedIt) {
  AlertRules rules;  // 50, 80, 100
  PoolStatus p;
  p.pool = "credits";
  p.allowance_mc = cr(2000);
  p.used_mc = cr(1600);
  const std::int64_t t1 = at("2026-04-17T01:00:00Z"), t5 = at("2026-04-17T05:00:00Z");
  const std::int64_t now = at("2026-04-17T06:00:00Z");
  p.steps = {{t1, cr(1000)}, {t5, cr(600)}};
  auto alerts = evaluate_alerts("a", now, {p}, rules);
  ASSERT_EQ(alerts.size(), 2u);
  EXPECT_EQ(alerts[0].at_ms, t1);
  EXPECT_NE(alerts[0].details_json.find("\"threshold_percent\":50,\"used\":1000,"),
            std::string::npos)
      << alerts[0].details_json;
  EXPECT_NE(alerts[0].details_json.find("\"utilization\":0.5,"), std::string::npos);
  EXPECT_EQ(alerts[1].at_ms, t5);
  EXPECT_NE(alerts[1].details_json.find("\"threshold_percent\":80,\"used\":1600,"),
            std::string::npos)
      << alerts[1].details_json;
  // A refund between them: the crossing is the last step that went from below to at or above.
  p.used_mc = cr(1100);
  p.steps = {{t1, cr(1000)}, {t1 + 1, -cr(500)}, {t5, cr(600)}};
  alerts = evaluate_alerts("a", now, {p}, rules);
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].at_ms, t5);
  EXPECT_NE(alerts[0].details_json.find("\"used\":1100,"), std::string::npos);
  // Crossed before the steps (a rule added later, steps dropped): the evaluation instant.
  p.used_mc = cr(1200);
  p.steps = {{t5, cr(100)}};
  alerts = evaluate_alerts("a", now, {p}, rules);
  ASSERT_EQ(alerts.size(), 1u);
  EXPECT_EQ(alerts[0].at_ms, now);
  EXPECT_NE(alerts[0].details_json.find("\"used\":1200,"), std::string::npos);
}

// An empty directory of this name under the test's temporary directory.
std::string fresh_dir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

TEST(Alerts, BookRecordsEachAlertOnceAndDeliversWithBackoffAcrossRestarts) {
  const std::string dir = fresh_dir("alerts_book_test");
  AlertRules rules;
  rules.webhook_url = "http://127.0.0.1:1/h";
  rules.webhook_secret = "s";
  PoolStatus p;
  p.pool = "credits";
  p.allowance_mc = cr(100);
  p.used_mc = cr(60);
  auto alerts = evaluate_alerts("a", at("2026-03-02T00:00:00Z"), {p}, rules);
  ASSERT_EQ(alerts.size(), 1u);
  const std::int64_t t0 = at("2026-03-02T00:00:00Z");
  {
    auto book = AlertBook::open(dir);
    ASSERT_TRUE(book.ok());
    ASSERT_TRUE((*book)->set_rules("a", rules).ok());
    EXPECT_EQ((*book)->record(alerts, t0), 1u);
    EXPECT_EQ((*book)->record(alerts, t0), 0u);  // already fired
    int calls = 0;
    auto failing = [&](const WebhookRequest&) { return ++calls, false; };
    EXPECT_EQ((*book)->deliver_due(t0, failing), 0u);
    EXPECT_EQ((*book)->deliver_due(t0 + 999, failing), 0u);  // backoff 1 s: not due yet
    EXPECT_EQ(calls, 1);
    (*book)->deliver_due(t0 + 1000, failing);  // second attempt; next after 2 s
    (*book)->deliver_due(t0 + 2999, failing);
    EXPECT_EQ(calls, 2);
    EXPECT_EQ((*book)->queued(), 1u);
  }
  // A restart keeps the rules, the alert, and the delivery still owed.
  auto book = AlertBook::open(dir);
  ASSERT_TRUE(book.ok());
  EXPECT_EQ((*book)->rules("a").webhook_secret, "s");
  EXPECT_EQ((*book)->alerts_of("a").size(), 1u);
  EXPECT_EQ((*book)->record(alerts, t0), 0u);
  std::string body;
  EXPECT_EQ(
      (*book)->deliver_due(t0 + 5000, [&](const WebhookRequest& r) { return body = r.body, true; }),
      1u);
  EXPECT_NE(body.find("\"alert_id\":\"" + alerts[0].alert_id + "\""), std::string::npos);
  EXPECT_EQ((*book)->queued(), 0u);
  auto reopened = AlertBook::open(dir);
  EXPECT_EQ((*reopened)->queued(), 0u);  // delivered is durable too
}

// Deliveries go in the order the alerts fired, live and after a restart (found by an
// audit: the queue, kept by alert id (a hash), sent "100 %" before "80 %").
TEST(Alerts, DeliveriesGoInTheOrderTheAlertsFired) {
  const std::string dir = fresh_dir("alerts_order_test");
  AlertRules rules;
  rules.webhook_url = "http://127.0.0.1:1/h";
  rules.webhook_secret = "s";
  rules.thresholds_percent = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
  PoolStatus p;
  p.pool = "credits";
  p.allowance_mc = cr(100);
  const std::int64_t t0 = at("2026-03-02T00:00:00Z");
  std::vector<std::string> fired;
  {
    auto book = AlertBook::open(dir);
    ASSERT_TRUE(book.ok());
    ASSERT_TRUE((*book)->set_rules("a", rules).ok());
    // One threshold at a time, each its own evaluation.
    for (int used = 10; used <= 100; used += 10) {
      p.used_mc = cr(used);
      for (const Alert& a : evaluate_alerts("a", t0, {p}, rules)) {
        if ((*book)->record({a}, t0) == 1) fired.push_back(a.alert_id);
      }
    }
    ASSERT_EQ(fired.size(), 10u);
    ASSERT_FALSE(std::is_sorted(fired.begin(), fired.end()));  // the ids alone would reorder
    std::vector<std::string> sent;
    (*book)->deliver_due(
        t0, [&](const WebhookRequest& r) { return sent.push_back(r.alert_id), false; });
    EXPECT_EQ(sent, std::vector<std::string>{fired.front()});  // a failing receiver: once a pass
  }
  auto book = AlertBook::open(dir);
  ASSERT_TRUE(book.ok());
  std::vector<std::string> sent;
  (*book)->deliver_due(t0 + 60'000,
                       [&](const WebhookRequest& r) { return sent.push_back(r.alert_id), true; });
  EXPECT_EQ(sent, fired);
}

// A receiver that fails is tried once a pass: the alerts behind it wait, and another
// account's receiver is not held back by one timeout per alert (found by an audit).
TEST(Alerts, AFailingReceiverIsTriedOnceAPass) {
  const std::string dir = fresh_dir("alerts_failing_receiver_test");
  AlertRules down, up;
  down.webhook_url = "http://127.0.0.1:1/down";
  down.webhook_secret = "s";
  up.webhook_url = "http://127.0.0.1:1/up";
  up.webhook_secret = "s";
  PoolStatus p;
  p.pool = "credits";
  p.allowance_mc = cr(100);
  p.used_mc = cr(100);  // 50, 80 and 100 at once
  const std::int64_t t0 = at("2026-03-02T00:00:00Z");
  auto book = AlertBook::open(dir);
  ASSERT_TRUE(book.ok());
  ASSERT_TRUE((*book)->set_rules("a", down).ok());
  ASSERT_TRUE((*book)->set_rules("b", up).ok());
  EXPECT_EQ((*book)->record(evaluate_alerts("a", t0, {p}, down), t0), 3u);
  EXPECT_EQ((*book)->record(evaluate_alerts("b", t0, {p}, up), t0), 3u);
  std::map<std::string, int> calls;
  const auto send = [&](const WebhookRequest& r) {
    ++calls[r.url];
    return r.url == up.webhook_url;
  };
  EXPECT_EQ((*book)->deliver_due(t0, send), 3u);
  EXPECT_EQ(calls[down.webhook_url], 1);
  EXPECT_EQ(calls[up.webhook_url], 3);
  EXPECT_EQ((*book)->queued(), 3u);  // a's three wait
  // ... for the failed one's backoff (1 s), not one attempt each in the next passes.
  EXPECT_EQ((*book)->deliver_due(t0 + 100, send), 0u);
  EXPECT_EQ((*book)->deliver_due(t0 + 999, send), 0u);
  EXPECT_EQ(calls[down.webhook_url], 1);
  (*book)->deliver_due(t0 + 1000, send);
  EXPECT_EQ(calls[down.webhook_url], 2);
}

// An alert that fires while an older one to the same receiver waits for its backoff
// waits too, and goes after it (found by an audit: the backoff lasted one pass, so the
// new alert went out at once, before the older one).
TEST(Alerts, AnAlertFiredDuringAReceiversBackoffWaitsAndGoesAfterTheOlderOnes) {
  const std::string dir = fresh_dir("alerts_backoff_order_test");
  AlertRules rules;
  rules.webhook_url = "http://127.0.0.1:1/h";
  rules.webhook_secret = "s";
  rules.thresholds_percent = {10, 20, 30, 40};
  PoolStatus p;
  p.pool = "credits";
  p.allowance_mc = cr(100);
  const std::int64_t t0 = at("2026-03-02T00:00:00Z");
  auto book = AlertBook::open(dir);
  ASSERT_TRUE(book.ok());
  ASSERT_TRUE((*book)->set_rules("a", rules).ok());
  // The alert of threshold `percent` (the only new one once the lower ones fired).
  const auto fire = [&](std::int64_t percent, std::int64_t now_ms) {
    p.used_mc = cr(percent);
    std::vector<Alert> alerts = evaluate_alerts("a", now_ms, {p}, rules);
    EXPECT_EQ((*book)->record(alerts, now_ms), 1u);
    return alerts.back().alert_id;
  };
  std::vector<std::string> sent;
  bool up = false;
  const auto send = [&](const WebhookRequest& r) { return sent.push_back(r.alert_id), up; };

  const std::string a10 = fire(10, t0);
  EXPECT_EQ((*book)->deliver_due(t0, send), 0u);  // fails: next try after 1 s
  // 20 % fires during that backoff (the clock not moved, then moved within it).
  const std::string a20 = fire(20, t0);
  EXPECT_EQ((*book)->deliver_due(t0, send), 0u);
  EXPECT_EQ((*book)->deliver_due(t0 + 500, send), 0u);
  EXPECT_EQ(sent, std::vector<std::string>{a10});
  up = true;
  EXPECT_EQ((*book)->deliver_due(t0 + 1000, send), 2u);
  EXPECT_EQ(sent, (std::vector<std::string>{a10, a10, a20}));
  EXPECT_EQ((*book)->queued(), 0u);

  // A receiver that keeps failing: the alerts that fire during its backoff are not tried
  // (each one a timeout with a hanging receiver) before that backoff ends.
  sent.clear();
  up = false;
  const std::string a30 = fire(30, t0 + 2000);
  EXPECT_EQ((*book)->deliver_due(t0 + 2000, send), 0u);  // next after 1 s
  const std::string a40 = fire(40, t0 + 2500);
  EXPECT_EQ((*book)->deliver_due(t0 + 2500, send), 0u);
  EXPECT_EQ((*book)->deliver_due(t0 + 2999, send), 0u);
  EXPECT_EQ(sent, std::vector<std::string>{a30});
  EXPECT_EQ((*book)->deliver_due(t0 + 3000, send), 0u);  // a30 again (next after 2 s), alone
  EXPECT_EQ((*book)->deliver_due(t0 + 4999, send), 0u);
  EXPECT_EQ(sent, (std::vector<std::string>{a30, a30}));
  up = true;
  EXPECT_EQ((*book)->deliver_due(t0 + 5000, send), 2u);
  EXPECT_EQ(sent, (std::vector<std::string>{a30, a30, a30, a40}));
}

std::string file_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// DESIGN.md section 3: every file the state depends on is verified by checksum, and damage
// stops the start naming the file and the offset (found by an audit: the rules and outbox
// files had none, an edited threshold was taken as it was, and --repair could not help).
TEST(Alerts, BookLinesCarryChecksumsDamageNamesFileAndOffsetAndRepairDropsTheLine) {
  const std::string dir = fresh_dir("alerts_book_damage_test");
  AlertRules a, b;
  a.thresholds_percent = {10, 50};
  b.thresholds_percent = {80};
  {
    auto book = AlertBook::open(dir);
    ASSERT_TRUE(book.ok());
    ASSERT_TRUE((*book)->set_rules("a", a).ok());
    ASSERT_TRUE((*book)->set_rules("b", b).ok());
  }
  const std::string path = dir + "/alert_rules.log";
  const std::string intact = file_text(path);
  const std::size_t second = intact.find('\n') + 1;
  // An edit that leaves valid JSON: the checksum tells.
  std::string edited = intact;
  const std::size_t at = edited.find("[10,50]");
  ASSERT_NE(at, std::string::npos);
  edited[at + 2] = '9';
  write_text(path, edited);
  auto refused = AlertBook::open(dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kStorageFailed);
  EXPECT_EQ(refused.error().detail("offset"), "0");
  EXPECT_NE(refused.error().detail("file").find("alert_rules.log"), std::string::npos);
  // A flipped byte in the second line names its offset.
  std::string flipped = intact;
  flipped[second + 30] = static_cast<char>(flipped[second + 30] ^ 0x20);
  write_text(path, flipped);
  refused = AlertBook::open(dir);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().detail("offset"), std::to_string(second));
  // --repair drops the damaged line, keeps the others, and leaves a file that opens.
  {
    auto repaired = AlertBook::open(dir, true);
    ASSERT_TRUE(repaired.ok()) << repaired.error().message;
    EXPECT_EQ((*repaired)->rules("a").thresholds_percent, (std::vector<std::int64_t>{10, 50}));
    EXPECT_EQ((*repaired)->rules("b").thresholds_percent, AlertRules{}.thresholds_percent);
  }
  auto plain = AlertBook::open(dir);
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ((*plain)->rules("a").thresholds_percent, (std::vector<std::int64_t>{10, 50}));
  plain->reset();
  // A torn last line (no newline) is an append cut short: dropped, not damage.
  write_text(path, intact + intact.substr(0, 20));
  auto torn = AlertBook::open(dir);
  ASSERT_TRUE(torn.ok()) << torn.error().message;
  EXPECT_EQ((*torn)->rules("b").thresholds_percent, (std::vector<std::int64_t>{80}));
  torn->reset();
  EXPECT_EQ(file_text(path), intact);
  // Lines written before checksums (the JSON alone) are still read.
  write_text(path, intact.substr(17, second - 17));
  auto old = AlertBook::open(dir);
  ASSERT_TRUE(old.ok()) << old.error().message;
  EXPECT_EQ((*old)->rules("a").thresholds_percent, (std::vector<std::int64_t>{10, 50}));
}

// Found by an audit: an alert's details were written as a nested object and read back
// re-serialized, so "ratio":2.0070 came back as 2.007 after a restart.
TEST(Alerts, AnAlertsDetailsReadBackByteForByte) {
  const std::string dir = fresh_dir("alerts_details_test");
  Alert a;
  a.alert_id = "al_1";
  a.account_id = "a";
  a.rule = "burn_spike";
  a.pool = "credits";
  a.at_ms = at("2026-03-04T10:00:00Z");
  a.message = "burn";
  a.details_json = R"({"today":20.07,"trailing_mean":10,"ratio":2.0070,"factor":2.0})";
  {
    auto book = AlertBook::open(dir);
    ASSERT_TRUE(book.ok());
    EXPECT_EQ((*book)->record({a}, a.at_ms), 1u);
  }
  auto book = AlertBook::open(dir);
  ASSERT_TRUE(book.ok()) << book.error().message;
  ASSERT_EQ((*book)->alerts_of("a").size(), 1u);
  EXPECT_EQ((*book)->alerts_of("a")[0].details_json, a.details_json);
}

pricing::Catalog catalog() {
  pricing::Catalog c;
  auto plan = [&](const char* id, std::int64_t cents, std::int64_t credits) {
    pricing::Plan p;
    p.id = id;
    p.price_usd_cents = cents;
    p.pools.push_back({"credits", Millicredits::from_mc(cr(credits)), std::nullopt});
    c.plans.push_back(p);
  };
  plan("free", 0, 100);
  plan("starter", 2000, 2000);
  plan("builder", 5000, 5000);
  plan("pro", 10000, 10000);
  plan("enterprise", 100000, 100000);
  return c;
}

// A 31-day cycle (March) and 14 days of history summing to `sum` credits.
ForecastInputs inputs(const char* plan, std::int64_t sum, std::int64_t used,
                      std::int64_t allowance) {
  ForecastInputs in;
  in.now_ms = at("2026-03-20T00:00:00Z");
  in.cycle_start_ms = at("2026-03-01T00:00:00Z");
  in.cycle_end_ms = at("2026-04-01T00:00:00Z");
  in.used_mc = cr(used);
  in.allowance_mc = cr(allowance);
  in.available_mc = cr(allowance - used);
  in.window_days = 14;
  in.window_sum_mc = cr(sum);
  in.plan_id = plan;
  in.pool = "credits";
  return in;
}

TEST(Forecast, NeedIsOnePointOneTimesTheMeanTimesTheCycleDays) {
  // mean 100 a day: need = 1.1 x 100 x 31 = 3410 -> builder.
  Forecast f = forecast(inputs("starter", 1400, 1900, 2000), catalog());
  EXPECT_EQ(*f.need_mc, cr(3410));
  EXPECT_DOUBLE_EQ(*f.utilization, 0.95);
  // 100 available at 100 a day: runs out on the 21st, before the cycle end.
  EXPECT_EQ(*f.runs_out_at_ms, at("2026-03-21T00:00:00Z"));
  EXPECT_EQ(f.action, AdviceAction::kUpgradeNow);  // 30 USD <= 100 x 8
  EXPECT_EQ(f.plan, "builder");
  EXPECT_EQ(f.price_delta_usd_cents, 3000);
  EXPECT_DOUBLE_EQ(f.engineering_hours, 0.3);
}

TEST(Forecast, AcrossACycleBoundaryTheNewCycleLengthCounts) {
  // February 2026 has 28 days: need = 1.1 x 100 x 28 = 3080; the cycle just began, so
  // nothing runs out before its end on March 1.
  ForecastInputs in = inputs("starter", 1400, 10, 2000);
  in.now_ms = at("2026-02-01T01:00:00Z");
  in.cycle_start_ms = at("2026-02-01T00:00:00Z");
  in.cycle_end_ms = at("2026-03-01T00:00:00Z");
  Forecast f = forecast(in, catalog());
  EXPECT_EQ(*f.need_mc, cr(3080));
  // 1,990 available at 100 a day: 19.9 days = 19 d 21 h 36 min -> Feb 20 22:36, before March 1.
  EXPECT_EQ(*f.runs_out_at_ms, at("2026-02-20T22:36:00Z"));
}

TEST(Forecast, AdviceForEachAction) {
  auto c = catalog();
  // Upgrade, but 30 USD is above 2 USD x 10 h: next cycle.
  ForecastInputs in = inputs("starter", 1400, 1900, 2000);
  in.hourly_rate_usd_milli = 2'000;
  in.break_even_hours_milli = 10'000;
  EXPECT_EQ(forecast(in, c).action, AdviceAction::kUpgradeNextCycle);
  // Upgrade when this cycle's credits last: next cycle too.
  Forecast later = forecast(inputs("starter", 1400, 100, 2000), c);
  EXPECT_FALSE(later.runs_out_at_ms);
  EXPECT_EQ(later.action, AdviceAction::kUpgradeNextCycle);
  // mean 10 a day: need 341 -> starter from pro is a downgrade of 80 USD.
  Forecast down = forecast(inputs("pro", 140, 200, 10000), c);
  EXPECT_EQ(down.action, AdviceAction::kDowngrade);
  EXPECT_EQ(down.plan, "starter");
  EXPECT_EQ(down.price_delta_usd_cents, -8000);
  // mean 50 a day: need 1705 -> starter is right; at 1900 of 2000 it is sized correctly.
  Forecast stay = forecast(inputs("starter", 700, 1900, 2000), c);
  EXPECT_EQ(stay.action, AdviceAction::kStay);
  EXPECT_EQ(stay.plan, "starter");
  EXPECT_TRUE(stay.sized_correctly);
  EXPECT_FALSE(forecast(inputs("starter", 700, 1700, 2000), c).sized_correctly);  // 85 %
  // A plan at the same price that covers the need (here a "twin" of starter with builder's
  // allowance) is no upgrade (DESIGN.md): the change waits for the next boundary, so it is
  // advised from the next cycle although the credits run out in this one (found by an audit).
  pricing::Catalog with_twin = c;
  with_twin.plans.push_back(with_twin.plans[1]);
  with_twin.plans.back().id = "twin";
  with_twin.plans.back().pools.front().allowance = Millicredits::from_mc(cr(5000));
  ASSERT_EQ(with_twin.plans[1].id, "starter");
  Forecast twin = forecast(inputs("starter", 1400, 1900, 2000), with_twin);
  EXPECT_TRUE(twin.runs_out_at_ms);
  EXPECT_EQ(twin.action, AdviceAction::kUpgradeNextCycle);
  EXPECT_EQ(twin.plan, "twin");
  EXPECT_EQ(twin.price_delta_usd_cents, 0);
  // Without a full day of history: stay, no need.
  ForecastInputs fresh = inputs("starter", 0, 0, 2000);
  fresh.window_days = 0;
  Forecast f0 = forecast(fresh, c);
  EXPECT_EQ(f0.action, AdviceAction::kStay);
  EXPECT_FALSE(f0.need_mc);
}

TEST(Forecast, RunsOutAtTheCycleEndIsAnsweredButIsNotRunningOutThisCycle) {
  // mean 100 a day, 1,200 available on March 20: exactly 12 days, the cycle end. "null when
  // ... it falls after the cycle end": the end itself is answered; the end instant is the
  // next cycle's, so the credits do not run out this cycle: not upgrade_now.
  Forecast f = forecast(inputs("starter", 1400, 800, 2000), catalog());
  ASSERT_TRUE(f.runs_out_at_ms.has_value());
  EXPECT_EQ(*f.runs_out_at_ms, at("2026-04-01T00:00:00Z"));
  EXPECT_EQ(f.action, AdviceAction::kUpgradeNextCycle);
  // One millicredit less available runs out before the end: upgrade_now.
  ForecastInputs in = inputs("starter", 1400, 800, 2000);
  in.available_mc -= 1;
  Forecast g = forecast(in, catalog());
  ASSERT_TRUE(g.runs_out_at_ms.has_value());
  EXPECT_LT(*g.runs_out_at_ms, at("2026-04-01T00:00:00Z"));
  EXPECT_EQ(g.action, AdviceAction::kUpgradeNow);
  // One millicredit more lasts past the end: null.
  in.available_mc += 2;
  EXPECT_FALSE(forecast(in, catalog()).runs_out_at_ms);
}

// The two-pools example's shape: message and integration allowances per plan.
pricing::Catalog two_pool_catalog() {
  pricing::Catalog c;
  auto plan = [&](const char* id, std::int64_t cents, std::int64_t message,
                  std::int64_t integration) {
    pricing::Plan p;
    p.id = id;
    p.price_usd_cents = cents;
    p.pools.push_back({"message", Millicredits::from_mc(cr(message)), std::nullopt});
    p.pools.push_back({"integration", Millicredits::from_mc(cr(integration)), std::nullopt});
    c.plans.push_back(p);
  };
  plan("free", 0, 25, 100);
  plan("starter", 2000, 100, 2000);
  plan("builder", 5000, 250, 10000);
  plan("pro", 10000, 500, 20000);
  plan("elite", 20000, 1200, 50000);
  return c;
}

// A plan change moves every pool: the advice is one for the account, whichever pool is
// asked (found by an audit: pool=message advised an upgrade to pro while pool=integration
// advised a downgrade to starter, which starved the message pool).
TEST(Forecast, TheAdviceCoversEveryPoolWhicheverIsAsked) {
  const pricing::Catalog c = two_pool_catalog();
  // On builder (250 message, 10,000 integration): 8 message credits a day (need 272.8 over
  // 31 days) and 5 integration credits a day (need 170.5).
  ForecastInputs message = inputs("builder", 8 * 14, 160, 250);
  message.pool = "message";
  message.other_pools = {{"integration", cr(5 * 14), cr(10000 - 100)}};
  ForecastInputs integration = inputs("builder", 5 * 14, 100, 10000);
  integration.pool = "integration";
  integration.other_pools = {{"message", cr(8 * 14), cr(250 - 160)}};
  Forecast m = forecast(message, c);
  Forecast i = forecast(integration, c);
  EXPECT_EQ(*m.need_mc, cr(272) + 800);
  EXPECT_EQ(*i.need_mc, cr(170) + 500);
  // 90 message credits left at 8 a day run out on March 31, before the cycle ends: pro
  // (500 message) is the cheapest plan covering both, now (50 USD <= 100 x 8).
  for (const Forecast* f : {&m, &i}) {
    EXPECT_EQ(f->action, AdviceAction::kUpgradeNow) << f->reason;
    EXPECT_EQ(f->plan, "pro");
    EXPECT_EQ(f->price_delta_usd_cents, 5000);
    EXPECT_NE(f->reason.find("pro covers the projected needs of message 272.8 and integration "
                             "170.5 credits"),
              std::string::npos)
        << f->reason;
    EXPECT_NE(f->reason.find("credits of the message pool run out"), std::string::npos)
        << f->reason;
  }
  EXPECT_EQ(m.reason, i.reason);
  // The integration pool alone runs out on nothing: no "runs_out_at" of its own.
  EXPECT_FALSE(i.runs_out_at_ms);
  // Little burn everywhere: starter covers both; free covers the integration pool (100)
  // but not the message pool's 34.1: never advised.
  integration.window_sum_mc = cr(1);
  integration.other_pools[0].window_sum_mc = cr(14);
  integration.other_pools[0].available_mc = cr(240);
  Forecast down = forecast(integration, c);
  EXPECT_EQ(down.action, AdviceAction::kDowngrade);
  EXPECT_EQ(down.plan, "starter");
  // A plan without one of the account's pools is never advised.
  pricing::Catalog one_pool = c;
  one_pool.plans[0].pools.pop_back();  // "free" without integration, and it would cover
  integration.window_sum_mc = cr(1);
  integration.other_pools[0].window_sum_mc = cr(1);
  EXPECT_EQ(forecast(integration, c).plan, "free");
  EXPECT_EQ(forecast(integration, one_pool).plan, "starter");
}

// "comes closest to (none covers)" in every branch where the plan advised covers no need,
// the one above the break-even included (found by an audit: that branch left it out).
TEST(Forecast, AnAdviceThatCoversNothingSaysSoInEveryBranch) {
  auto c = catalog();
  // mean 10,000 a day: need 341,000, above enterprise's 100,000.
  ForecastInputs in = inputs("starter", 140'000, 1900, 2000);
  Forecast f = forecast(in, c);
  EXPECT_EQ(f.plan, "enterprise");
  EXPECT_EQ(f.action, AdviceAction::kUpgradeNextCycle);  // 980 USD: above the break-even
  EXPECT_NE(f.reason.find("above the break-even; move to enterprise from the next cycle: it "
                          "comes closest to (none covers) the projected need of 341000 credits"),
            std::string::npos)
      << f.reason;
  in.hourly_rate_usd_milli = 1'000'000;
  f = forecast(in, c);
  EXPECT_EQ(f.action, AdviceAction::kUpgradeNow);
  EXPECT_NE(f.reason.find("enterprise comes closest to (none covers)"), std::string::npos)
      << f.reason;
  in.available_mc = cr(200'000);  // lasts the cycle
  f = forecast(in, c);
  EXPECT_EQ(f.action, AdviceAction::kUpgradeNextCycle);
  EXPECT_NE(f.reason.find("enterprise comes closest to (none covers)"), std::string::npos)
      << f.reason;
}

// engineering_hours is a JSON number in the shortest form, like every other (API.md).
TEST(Forecast, HoursAreWrittenInTheShortestForm) {
  EXPECT_EQ(hours_text(0), "0");
  EXPECT_EQ(hours_text(-0.2), "-0.2");
  EXPECT_EQ(hours_text(0.3), "0.3");
  EXPECT_EQ(hours_text(-10), "-10");
  EXPECT_EQ(hours_text(10.0 / 30.0), "0.333333");
}

TEST(Rollups, UsageGroupingSubtractsRefundsUnderTheChargesFile) {
  Rollups r;
  Event a =
      charge("2026-03-02T10:15:00Z", cr(10), pricing::Kind::kAgentPrompt, "dana", "src/A.jsx");
  Event b = charge("2026-03-02T10:45:00Z", cr(6), pricing::Kind::kAgentPrompt, "lee", "src/B.jsx");
  Event c =
      charge("2026-03-02T11:05:00Z", cr(4), pricing::Kind::kInvokeLlm, "dana", "", "page:home");
  r.add(a);
  r.add(b);
  r.add(c);
  Event refund;
  refund.at_ms = at("2026-03-02T12:00:00Z");
  refund.account_id = "a";
  refund.user_id = "dana";
  refund.type = EventType::kRefund;
  refund.kind = pricing::Kind::kAgentPrompt;
  refund.pool = "credits";
  refund.credits = Millicredits::from_mc(cr(3));
  refund.charge_id = a.charge_id;
  r.add(refund);
  TimeRange all{at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")};
  UsageResult by_file = r.usage("a", "credits", GroupBy::kFile, all);
  EXPECT_EQ(by_file.total_mc, cr(17));  // 10 + 6 + 4 - 3
  EXPECT_EQ(by_file.count, 3);
  ASSERT_EQ(by_file.rows.size(), 3u);
  EXPECT_EQ(by_file.rows[0].key, "src/A.jsx");  // 7, ties broken by key
  EXPECT_EQ(by_file.rows[0].credits_mc, cr(7));
  EXPECT_EQ(by_file.rows[1].key, "src/B.jsx");
  EXPECT_EQ(by_file.rows[2].key, "");  // the call without a file
  UsageResult by_kind = r.usage("a", "credits", GroupBy::kKind, all);
  EXPECT_EQ(by_kind.rows[0].key, "agent_prompt");
  EXPECT_EQ(by_kind.rows[0].credits_mc, cr(13));
  EXPECT_EQ(by_kind.rows[0].count, 2);
  // The hour range [10:00, 11:00) holds the two agent turns only.
  UsageResult hour = r.usage("a", "credits", GroupBy::kUser,
                             {at("2026-03-02T10:00:00Z"), at("2026-03-02T11:00:00Z")});
  EXPECT_EQ(hour.total_mc, cr(16));
  auto hot = r.hot_files("a", "credits", all, true, 5);
  ASSERT_EQ(hot.size(), 2u);
  EXPECT_EQ(hot[0].file, "src/A.jsx");  // 7 > 6 after the refund
  EXPECT_EQ(hot[0].credits_mc, cr(7));
  auto burn = r.daily_burn("a", "credits", at("2026-03-01T00:00:00Z"), at("2026-03-03T00:00:00Z"));
  EXPECT_EQ(burn, (std::vector<std::int64_t>{0, cr(17), 0}));
}

TEST(Rollups, ACycleStartingInsideAnHourSplitsItSoTheCycleTakesNoneOfThePreviousOnes) {
  // A cycle from 10:30 (a reset at 10:30 for each pool): the charge at 10:15 belongs to the
  // previous cycle, the one at 10:45 to this one (DESIGN.md: "a range left out means the
  // current cycle"; the account's `used` counts 3).
  Rollups r;
  r.add(charge("2026-03-01T10:15:00Z", cr(7), pricing::Kind::kAgentPrompt, "dana", "x.js"));
  for (const char* pool : {"credits", "integration"}) {
    Event reset;
    reset.at_ms = at("2026-03-01T10:30:00Z");
    reset.account_id = "a";
    reset.type = EventType::kReset;
    reset.pool = pool;
    EXPECT_TRUE(fact_matters(reset));
    r.add(reset);
  }
  r.add(charge("2026-03-01T10:45:00Z", cr(3), pricing::Kind::kAgentPrompt, "dana", "x.js"));
  r.add(charge("2026-03-01T11:05:00Z", cr(2), pricing::Kind::kAgentPrompt, "lee", "y.js"));
  const TimeRange cycle{at("2026-03-01T10:30:00Z"), at("2026-04-01T10:30:00Z")};
  UsageResult u = r.usage("a", "credits", GroupBy::kUser, cycle);
  EXPECT_EQ(u.total_mc, cr(5));
  EXPECT_EQ(u.count, 2);
  auto hot = r.hot_files("a", "credits", cycle, false, 5);
  ASSERT_EQ(hot.size(), 2u);
  EXPECT_EQ(hot[0].file, "x.js");
  EXPECT_EQ(hot[0].turns, 1);
  EXPECT_EQ(hot[0].credits_mc, cr(3));
  // The previous cycle, up to 10:30 exactly, and a range given on the hour (snapped: both).
  EXPECT_EQ(r.usage("a", "credits", GroupBy::kKind,
                    {at("2026-02-01T10:30:00Z"), at("2026-03-01T10:30:00Z")})
                .total_mc,
            cr(7));
  UsageResult hour = r.usage("a", "credits", GroupBy::kDay,
                             {at("2026-03-01T10:00:00Z"), at("2026-03-01T11:00:00Z")});
  EXPECT_EQ(hour.total_mc, cr(10));
  ASSERT_EQ(hour.rows.size(), 1u);  // one day, from both cells of the hour
  EXPECT_EQ(hour.rows[0].key, "2026-03-01");
  EXPECT_EQ(hour.rows[0].count, 2);
  // The first cycle starts at (or before) the account's creation: a charge in the hour of a
  // creation at 09:20 is in a cycle from 09:20 (or from 09:05, with a signup in the past).
  Rollups first;
  Event created;
  created.at_ms = at("2026-03-05T09:20:00Z");
  created.account_id = "a";
  created.type = EventType::kAccountCreated;
  EXPECT_TRUE(fact_matters(created));
  first.add(created);
  first.add(charge("2026-03-05T09:25:00Z", cr(4), pricing::Kind::kAgentPrompt, "dana"));
  for (const char* from : {"2026-03-05T09:20:00Z", "2026-03-05T09:05:00Z"}) {
    EXPECT_EQ(first.usage("a", "credits", GroupBy::kKind, {at(from), at("2026-04-05T09:20:00Z")})
                  .total_mc,
              cr(4))
        << from;
  }
  // The creation is not a listed event: the burn window starts at the charge.
  EXPECT_EQ(first.first_event_ms("a"), at("2026-03-05T09:25:00Z"));
  // A reset on the hour splits nothing; a reset on the hour is no fact.
  Event on_hour;
  on_hour.at_ms = at("2026-04-01T10:00:00Z");
  on_hour.type = EventType::kReset;
  EXPECT_FALSE(fact_matters(on_hour));
}

TEST(AnalyticsRange, GivenEndsSnapToTheHourAndLeftOutEndsAreTheCyclesExactly) {
  const TimeRange cycle{at("2026-03-01T10:30:00Z"), at("2026-04-01T10:30:00Z")};
  TimeRange r = query_range(std::nullopt, std::nullopt, cycle);
  EXPECT_EQ(r.from_ms, cycle.from_ms);
  EXPECT_EQ(r.to_ms, cycle.to_ms);
  r = query_range(at("2026-03-02T10:40:00Z"), std::nullopt, cycle);
  EXPECT_EQ(r.from_ms, at("2026-03-02T10:00:00Z"));
  EXPECT_EQ(r.to_ms, cycle.to_ms);
  r = query_range(std::nullopt, at("2026-03-02T10:40:00Z"), cycle);
  EXPECT_EQ(r.from_ms, cycle.from_ms);
  EXPECT_EQ(r.to_ms, at("2026-03-02T11:00:00Z"));
  r = query_range(at("2026-03-01T10:30:00Z"), at("2026-03-01T10:30:00Z"), cycle);
  EXPECT_EQ(r.from_ms, at("2026-03-01T10:00:00Z"));  // the hour that holds it
  EXPECT_EQ(r.to_ms, at("2026-03-01T11:00:00Z"));
}

Event fix_turn(const char* when, std::int64_t credits_mc, std::string file) {
  Event e = charge(when, credits_mc, pricing::Kind::kAgentPrompt, "dana", std::move(file));
  e.metadata.intent = "fix";
  e.metadata.snapshot_id = std::string("snap-") + when;
  return e;
}

Event refund_of(const Event& c, const char* when, std::int64_t credits_mc) {
  Event refund;
  refund.at_ms = at(when);
  refund.account_id = c.account_id;
  refund.user_id = c.user_id;
  refund.type = EventType::kRefund;
  refund.kind = c.kind;
  refund.pool = c.pool;
  refund.credits = Millicredits::from_mc(credits_mc);
  refund.charge_id = c.charge_id;
  refund.imported = c.imported;
  return refund;
}

TEST(Rollups, ARefundIsNetInTheHotFilesOfItsCharge) {
  // Regression loops are computed from the range's events (the audit's code, on the
  // audit workers); the rollups keep the hot files, net of refunds like the loops.
  Rollups r;
  std::vector<Event> turns;
  for (const char* when : {"2026-03-02T10:00:00Z", "2026-03-02T10:30:00Z", "2026-03-02T11:00:00Z",
                           "2026-03-02T11:30:00Z"}) {
    turns.push_back(fix_turn(when, cr(10), "src/D.jsx"));
    r.add(turns.back());
  }
  TimeRange march{at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")};
  r.add(refund_of(turns[2], "2026-03-03T09:00:00Z", cr(4)));
  r.add(refund_of(turns[2], "2026-03-20T09:00:00Z", cr(1)));
  r.add(refund_of(turns[0], "2026-03-20T10:00:00Z", cr(2)));
  auto hot = r.hot_files("a", "credits", march, false, 5);
  ASSERT_EQ(hot.size(), 1u);
  EXPECT_EQ(hot[0].turns, 4);
  EXPECT_EQ(hot[0].credits_mc, cr(33));  // 40 - 4 - 1 - 2
}

TEST(Rollups, AnImportedRefundIsSubtractedUnderItsImportedCharge) {
  // An export of another system: the refund line carries no metadata, its charge_id
  // names an imported charge.
  Rollups r;
  Event c = fix_turn("2026-02-10T10:00:00Z", cr(9), "src/E.jsx");
  c.imported = true;
  c.idempotency_key = "h1";
  r.add(c);
  Event refund = refund_of(c, "2026-02-11T10:00:00Z", cr(4));
  refund.idempotency_key = "h2";
  r.add(refund);
  TimeRange feb{at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")};
  UsageResult by_file = r.usage("a", "credits", GroupBy::kFile, feb);
  ASSERT_EQ(by_file.rows.size(), 1u);
  EXPECT_EQ(by_file.rows[0].key, "src/E.jsx");
  EXPECT_EQ(by_file.rows[0].credits_mc, cr(5));
  // A live refund never reaches an imported charge of the same id (another origin).
  Event live = refund_of(c, "2026-02-12T10:00:00Z", cr(1));
  live.imported = false;
  r.add(live);
  by_file = r.usage("a", "credits", GroupBy::kFile, feb);
  ASSERT_EQ(by_file.rows.size(), 2u);
  EXPECT_EQ(by_file.rows[0].key, "src/E.jsx");
  EXPECT_EQ(by_file.rows[0].credits_mc, cr(5));
  EXPECT_EQ(by_file.rows[1].key, "");
  EXPECT_EQ(by_file.rows[1].credits_mc, -cr(1));
}

TEST(Rollups, IsoWeeksAcrossAYearEnd) {
  Rollups r;
  // 2026-12-31 (Thursday) is in 2026-W53; 2027-01-03 (Sunday) too; 2027-01-04 is W01.
  r.add(charge("2026-12-31T10:00:00Z", cr(1), pricing::Kind::kDiscussTurn, "u"));
  r.add(charge("2027-01-03T10:00:00Z", cr(2), pricing::Kind::kDiscussTurn, "u"));
  r.add(charge("2027-01-04T10:00:00Z", cr(4), pricing::Kind::kDiscussTurn, "u"));
  // 2025-12-29 (Monday) is 2026-W01.
  r.add(charge("2025-12-29T10:00:00Z", cr(8), pricing::Kind::kDiscussTurn, "u"));
  UsageResult w = r.usage("a", "credits", GroupBy::kWeek,
                          {at("2025-01-01T00:00:00Z"), at("2028-01-01T00:00:00Z")});
  ASSERT_EQ(w.rows.size(), 3u);
  EXPECT_EQ(w.rows[0].key, "2026-W01");
  EXPECT_EQ(w.rows[0].credits_mc, cr(8));
  EXPECT_EQ(w.rows[1].key, "2026-W53");
  EXPECT_EQ(w.rows[1].credits_mc, cr(3));
  EXPECT_EQ(w.rows[2].key, "2027-W01");
}

TEST(Rollups, ImportedEventsCountInRangesButNotInTheBurnOrFirstEvent) {
  Rollups r;
  Event e = charge("2026-02-10T10:00:00Z", cr(5), pricing::Kind::kAgentPrompt, "u", "f.js");
  e.imported = true;
  e.idempotency_key = "k1";
  r.add(e);
  EXPECT_TRUE(r.imported_key_seen("a", "k1"));
  EXPECT_FALSE(r.first_event_ms("a").has_value());
  EXPECT_EQ(r.usage("a", "credits", GroupBy::kFile,
                    {at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")})
                .total_mc,
            cr(5));
  EXPECT_EQ(r.daily_burn("a", "credits", at("2026-02-10T00:00:00Z"), at("2026-02-10T00:00:00Z")),
            (std::vector<std::int64_t>{0}));
}

TEST(Rollups, CacheHitsAndMissesPerCallSite) {
  Rollups r;
  Event miss =
      charge("2026-03-02T10:00:00Z", cr(2), pricing::Kind::kInvokeLlm, "u", "", "page:home");
  miss.cache_key = "ck";
  r.add(miss);
  Event hit = miss;
  hit.type = EventType::kCacheHit;
  r.add(hit);
  r.add(hit);
  CacheStats s =
      r.cache_stats("a", "credits", {at("2026-03-01T00:00:00Z"), at("2026-04-01T00:00:00Z")});
  EXPECT_EQ(s.total.hits, 2);
  EXPECT_EQ(s.total.misses, 1);
  EXPECT_EQ(s.total.saved_mc, cr(4));
  ASSERT_EQ(s.by_call_site.size(), 1u);
  EXPECT_EQ(s.by_call_site[0].call_site, "page:home");
}

}  // namespace
}  // namespace credit::analytics
