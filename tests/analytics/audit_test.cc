// tests/analytics/audit_test.cc
// The audit's definitions with literal numbers: unscoped prompts, small edits, outliers,
// refunds, repeated calls, and that a fix's savings are the replay's.
#include "analytics/audit.h"

#include <gtest/gtest.h>

#include <set>

#include "analytics/replay.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;
using pricing::Kind;

constexpr std::int64_t kT0 = 1'772'442'000'000;  // 2026-03-02T09:00:00Z

const pricing::RateCard& card() {
  static const pricing::RateCard c = [] {
    auto r =
        pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) + "/config/rate_card.toml");
    EXPECT_TRUE(r.ok());
    return *r;
  }();
  return c;
}

Event agent(std::string user, std::string file, std::int64_t at_ms, std::int64_t credits_mc,
            std::int64_t emitted, std::int64_t changed, std::string snapshot = "snap") {
  Event e;
  e.at_ms = at_ms;
  e.account_id = "acme";
  e.user_id = std::move(user);
  e.type = EventType::kCharge;
  e.kind = Kind::kAgentPrompt;
  e.credits = Millicredits::from_mc(credits_mc);
  pricing::Usage u;
  u.model = "default";
  u.input_tokens = 1000;
  u.output_tokens = 100;
  u.files_read = 1;
  u.lines_emitted = emitted;
  u.lines_changed = changed;
  e.usage = u;
  e.metadata.file = std::move(file);
  e.metadata.feature = "f";
  e.metadata.intent = "feature";
  e.metadata.snapshot_id = std::move(snapshot);
  return e;
}

Event llm(std::int64_t at_ms, std::string key, std::int64_t credits_mc) {
  Event e;
  e.at_ms = at_ms;
  e.account_id = "acme";
  e.user_id = "app";
  e.type = EventType::kCharge;
  e.kind = Kind::kInvokeLlm;
  e.credits = Millicredits::from_mc(credits_mc);
  e.metadata.call_site = "pages/Home.onLoad";
  e.cache_key = std::move(key);
  return e;
}

AuditReport audit(const std::vector<Event>& events, AuditOptions options = {}) {
  AuditBuilder b("acme", card(), std::move(options));
  for (const auto& e : events) b.add(e);
  return b.finish();
}

// The audit as its callers run it: the stream's refunds gathered first (refunds.h).
AuditReport audit_two_pass(const std::vector<Event>& events, AuditOptions options = {}) {
  RefundBook book;
  for (const auto& e : events) book.add(e);
  options.refunds = &book;
  return audit(events, std::move(options));
}

Event fix_turn(std::string file, std::int64_t at_ms, std::int64_t credits_mc, std::uint64_t seq) {
  Event e =
      agent("dana", std::move(file), at_ms, credits_mc, 20, 10, "snap-" + std::to_string(seq));
  e.metadata.intent = "fix";
  e.charge_id = "c_" + std::to_string(seq);
  return e;
}

// A refund as the ledger writes it: the charge's id, kind, user and pool, no metadata.
Event refund_of(const Event& charge, std::int64_t at_ms, std::int64_t credits_mc) {
  Event r;
  r.at_ms = at_ms;
  r.account_id = charge.account_id;
  r.user_id = charge.user_id;
  r.type = EventType::kRefund;
  r.kind = charge.kind;
  r.pool = charge.pool;
  r.credits = Millicredits::from_mc(credits_mc);
  r.charge_id = charge.charge_id;
  return r;
}

bool has_finding(const AuditReport& r, std::string_view code) {
  for (const auto& f : r.findings) {
    if (f.code == code) return true;
  }
  return false;
}

TEST(Audit, UnscopedMeansEmittedAtLeastFiveTimesChanged) {
  auto r = audit({
      agent("dana", "a.jsx", kT0, 10'000, 200, 6),     // unscoped
      agent("dana", "b.jsx", kT0 + 1, 4'000, 30, 6),   // 30 >= 5 x 6: unscoped
      agent("lee", "a.jsx", kT0 + 2, 2'000, 29, 6),    // 29 < 30: scoped
      agent("lee", "a.jsx", kT0 + 3, 7'000, 120, 20),  // 120 >= 100: unscoped
  });
  EXPECT_EQ(r.unscoped_prompts, 3);
  EXPECT_EQ(r.unscoped_credits.mc(), 21'000);
  ASSERT_EQ(r.unscoped_by_user.size(), 2u);
  EXPECT_EQ(r.unscoped_by_user[0].key, "dana");
  EXPECT_EQ(r.unscoped_by_user[0].count, 2);
  EXPECT_EQ(r.unscoped_by_user[0].credits.mc(), 14'000);
  EXPECT_EQ(r.unscoped_by_user[1].key, "lee");
  EXPECT_EQ(r.unscoped_by_user[1].credits.mc(), 7'000);
  ASSERT_EQ(r.unscoped_by_file.size(), 2u);
  EXPECT_EQ(r.unscoped_by_file[0].key, "a.jsx");
  EXPECT_EQ(r.unscoped_by_file[0].count, 2);
  EXPECT_EQ(r.unscoped_by_file[0].credits.mc(), 17'000);
  EXPECT_TRUE(has_finding(r, "unscoped_prompts"));
}

TEST(Audit, SmallEditIsAtMostFiveLinesAtThreeCreditsOrMore) {
  auto r = audit({
      agent("dana", "a.jsx", kT0, 3'000, 7, 5),       // small edit
      agent("dana", "a.jsx", kT0 + 1, 2'999, 7, 5),   // too cheap
      agent("dana", "a.jsx", kT0 + 2, 10'000, 8, 6),  // 6 lines
      agent("dana", "b.jsx", kT0 + 3, 4'500, 4, 1),   // small edit
  });
  EXPECT_EQ(r.small_edits, 2);
  EXPECT_EQ(r.small_edit_credits.mc(), 7'500);
  EXPECT_TRUE(has_finding(r, "small_edits_via_agent"));
}

TEST(Audit, OutlierIsAboveThreeTimesTheMedianAndTenPercentOfTotal) {
  std::vector<Event> events;
  for (int i = 0; i < 2; ++i) events.push_back(agent("ann", "a.jsx", kT0 + i, 5'000, 10, 8));
  for (int i = 0; i < 3; ++i) events.push_back(agent("bob", "a.jsx", kT0 + 10 + i, 4'000, 10, 8));
  for (int i = 0; i < 20; ++i) events.push_back(agent("cat", "b.jsx", kT0 + 20 + i, 5'000, 10, 8));
  // ann 2 turns 10 credits, bob 3 turns 12 credits, cat 20 turns 100 credits.
  // Median: 3 turns, 12 credits. cat: 20 > 9 turns and 100 > 36 credits.
  auto r = audit(events);
  ASSERT_EQ(r.outliers.size(), 1u);
  const Outlier& o = r.outliers[0];
  EXPECT_EQ(o.user_id, "cat");
  EXPECT_TRUE(o.by_turns);
  EXPECT_TRUE(o.by_credits);
  EXPECT_EQ(o.median_turns_x2, 6);
  EXPECT_EQ(o.median_credits_mc_x2, 24'000);
  // Excess: max(100 - 3 x 12 = 64, 100 x (20 - 9) / 20 = 55) credits.
  EXPECT_EQ(o.excess.mc(), 64'000);
  EXPECT_TRUE(has_finding(r, "user_outliers"));
}

TEST(Audit, NoOutlierBelowTenPercentOfTheTotal) {
  std::vector<UserTotals> users = {{"a", 1, Millicredits::from_mc(1'000)},
                                   {"b", 1, Millicredits::from_mc(1'000)},
                                   {"c", 4, Millicredits::from_mc(4'000)}};
  // c is 4x the median but the account's total is 1,000 credits and 100 turns.
  EXPECT_TRUE(find_outliers(users, 100, Millicredits::from_mc(1'000'000)).empty());
  EXPECT_EQ(find_outliers(users, 6, Millicredits::from_mc(6'000)).size(), 1u);
}

TEST(Audit, MedianOfAnEvenCountIsTheMeanOfTheMiddleTwo) {
  std::vector<UserTotals> users = {{"a", 2, Millicredits::from_mc(2'000)},
                                   {"b", 3, Millicredits::from_mc(3'000)},
                                   {"c", 5, Millicredits::from_mc(5'000)},
                                   {"d", 16, Millicredits::from_mc(16'000)}};
  // Median 4 turns: 16 > 12 is an outlier, 5 is not.
  auto out = find_outliers(users, 26, Millicredits::from_mc(26'000));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].user_id, "d");
  EXPECT_EQ(out[0].median_turns_x2, 8);
}

TEST(Audit, RefundsAreSubtracted) {
  Event refund;
  refund.at_ms = kT0 + 5;
  refund.account_id = "acme";
  refund.user_id = "dana";
  refund.type = EventType::kRefund;
  refund.kind = Kind::kAgentPrompt;
  refund.credits = Millicredits::from_mc(4'000);
  auto r = audit({agent("dana", "a.jsx", kT0, 10'000, 20, 10), refund});
  EXPECT_EQ(r.total.mc(), 6'000);
  EXPECT_EQ(r.refunds.mc(), 4'000);
  EXPECT_EQ(r.shares[0].credits.mc(), 6'000);
}

TEST(Audit, ARefundIsSubtractedUnderItsChargesFileAndSource) {
  Event a = fix_turn("a.jsx", kT0, 10'000, 1);
  Event b = fix_turn("b.jsx", kT0 + 1, 8'000, 2);
  Event call = llm(kT0 + 2, "", 5'000);
  call.charge_id = "c_3";
  auto r = audit_two_pass({a, b, call, refund_of(a, kT0 + kMsPerDay, 4'000),
                           refund_of(call, kT0 + kMsPerDay + 1, 5'000)});
  EXPECT_EQ(r.total.mc(), 14'000);
  ASSERT_EQ(r.hot_files.size(), 2u);
  EXPECT_EQ(r.hot_files[0].file, "b.jsx");  // 1 turn each; 8 > 10 - 4 credits
  EXPECT_EQ(r.hot_files[0].credits.mc(), 8'000);
  EXPECT_EQ(r.hot_files[1].file, "a.jsx");
  EXPECT_EQ(r.hot_files[1].credits.mc(), 6'000);
  // Under the charges' keys, not under a null key; the call refunded in full is gone.
  ASSERT_EQ(r.top_sources.size(), 2u);
  EXPECT_EQ(r.top_sources[0].key, "b.jsx");
  EXPECT_EQ(r.top_sources[1].key, "a.jsx");
  EXPECT_EQ(r.top_sources[1].credits.mc(), 6'000);
  EXPECT_EQ(r.top_sources[1].events, 1);
}

TEST(Audit, ARefundWhoseChargeIsNotAuditedGoesUnderItsOwnMetadata) {
  Event a = fix_turn("a.jsx", kT0, 10'000, 1);
  Event refund = refund_of(a, kT0 + kMsPerDay, 4'000);
  auto r = audit_two_pass({fix_turn("b.jsx", kT0, 9'000, 2), refund});  // a's charge is not in it
  EXPECT_EQ(r.total.mc(), 5'000);
  ASSERT_EQ(r.hot_files.size(), 1u);
  EXPECT_EQ(r.hot_files[0].credits.mc(), 9'000);
  ASSERT_EQ(r.top_sources.size(), 1u);  // the null key's -4 is not a top source
  EXPECT_EQ(r.top_sources[0].key, "b.jsx");
}

TEST(Audit, ARefundThatTakesARunUnderThirtyCreditsEndsTheLoop) {
  // 12 + 10 + 8 = 30 credits of fixes on one file within the hour: a loop.
  std::vector<Event> events = {fix_turn("c.jsx", kT0, 12'000, 1),
                               fix_turn("c.jsx", kT0 + kMsPerHour, 10'000, 2),
                               fix_turn("c.jsx", kT0 + 2 * kMsPerHour, 8'000, 3)};
  auto r = audit_two_pass(events);
  ASSERT_EQ(r.loops.size(), 1u);
  EXPECT_EQ(r.loop_waste.mc(), 18'000);
  // One credit of the second turn back five days later: 29 credits, no loop.
  events.push_back(refund_of(events[1], kT0 + 5 * kMsPerDay, 1'000));
  r = audit_two_pass(events);
  EXPECT_TRUE(r.loops.empty());
  EXPECT_FALSE(has_finding(r, "regression_loops"));
  EXPECT_EQ(r.loop_waste.mc(), 0);
}

TEST(Audit, ALoopsCreditsAndWasteAreNetOfRefunds) {
  std::vector<Event> events;
  for (std::uint64_t i = 0; i < 4; ++i)
    events.push_back(fix_turn("d.jsx", kT0 + static_cast<std::int64_t>(i) * 60'000, 10'000, i + 1));
  events.push_back(refund_of(events[2], kT0 + kMsPerDay, 5'000));
  events.push_back(refund_of(events[0], kT0 + kMsPerDay + 1, 2'000));
  auto r = audit_two_pass(events);
  ASSERT_EQ(r.loops.size(), 1u);
  EXPECT_EQ(r.loops[0].turns, 4);
  EXPECT_EQ(r.loops[0].credits.mc(), 33'000);  // 40 - 5 - 2
  EXPECT_EQ(r.loops[0].waste.mc(), 25'000);    // 10 + 5 + 10: the first turn is not waste
  EXPECT_EQ(r.loop_waste.mc(), 25'000);
  // The revert-loops fix saves that waste, and the combined chain saves it once.
  bool found = false;
  for (const auto& f : r.fixes) {
    if (f.id != "revert_loops") continue;
    found = true;
    EXPECT_EQ(f.saved.mc(), 25'000);
  }
  EXPECT_TRUE(found);
}

TEST(Audit, InternalEventTypesAreNotAudited) {
  // "account" and "close" are not in API.md's list (nor in exports): the audit of the
  // route and of an export must count the same events.
  Event created;
  created.at_ms = kT0 - 86'400'000;  // a day before the first charge
  created.account_id = "acme";
  created.type = EventType::kAccountCreated;
  created.plan = "pro";
  Event closed = created;
  closed.at_ms = kT0 + 10;
  closed.type = EventType::kAccountClosed;
  auto with = audit({created, agent("dana", "a.jsx", kT0, 10'000, 200, 6), closed});
  auto without = audit({agent("dana", "a.jsx", kT0, 10'000, 200, 6)});
  EXPECT_EQ(with.events, 1);
  EXPECT_EQ(with.from_ms, without.from_ms);
  EXPECT_EQ(with.to_ms, without.to_ms);
}

TEST(Audit, TurnsWithoutSnapshotAreCounted) {
  auto r = audit({agent("dana", "a.jsx", kT0, 2'000, 20, 10, ""),
                  agent("dana", "a.jsx", kT0 + 1, 2'000, 20, 10, "s")});
  EXPECT_EQ(r.agent_turns, 2);
  EXPECT_EQ(r.turns_without_snapshot, 1);
  EXPECT_TRUE(has_finding(r, "agent_turns_without_snapshot"));
}

TEST(Audit, RepeatedEmailsAreRepeatedIntegrationCallsToo) {
  // DESIGN.md: "repeated identical integration calls paid more than once"; sendEmail is an
  // integration, and the server's cache serves it (a backend function is not one).
  Event email = llm(kT0, "", 1'000);
  email.kind = Kind::kSendEmail;
  email.metadata.call_site = "functions/sendWelcome";
  email.metadata.request_hash = "em1";
  Event again = email;
  again.at_ms = kT0 + 60'000;
  Event backend = email;
  backend.kind = Kind::kBackendFunction;
  backend.at_ms = kT0 + 120'000;
  auto r = audit({email, again, backend});
  EXPECT_EQ(r.repeat_calls_paid, 1);
  EXPECT_EQ(r.repeat_waste.mc(), 1'000);
  ASSERT_EQ(r.repeats.size(), 1u);
  EXPECT_EQ(r.repeats[0].call_site, "functions/sendWelcome");
}

TEST(Audit, RepeatedCallsArePaidRepeatsAndTheCacheFixSavesWhatReplaySaves) {
  std::vector<Event> events = {llm(kT0, "k1", 1'500), llm(kT0 + 60'000, "k1", 1'500),
                               llm(kT0 + 120'000, "k2", 1'500), llm(kT0 + 180'000, "k1", 1'500)};
  auto r = audit(events);
  EXPECT_EQ(r.repeat_calls_paid, 2);
  EXPECT_EQ(r.repeat_waste.mc(), 3'000);
  ASSERT_EQ(r.repeats.size(), 1u);
  EXPECT_EQ(r.repeats[0].call_site, "pages/Home.onLoad");
  EXPECT_EQ(r.repeats[0].calls, 4);

  Replayer replayer(card(), nullptr, {*parse_policy("cache")});
  for (const auto& e : events) replayer.add(e);
  auto replay = replayer.finish();
  ASSERT_EQ(replay.policies.size(), 1u);
  EXPECT_EQ(replay.policies[0].saved.mc(), 3'000);
  const Fix* fix = nullptr;
  for (const auto& f : r.fixes) {
    if (f.id == "cache_integrations") fix = &f;
  }
  ASSERT_NE(fix, nullptr);
  EXPECT_EQ(fix->saved, replay.policies[0].saved);
  // One day observed: a cycle is 30 of them.
  EXPECT_EQ(fix->saved_per_cycle.mc(), 90'000);
  EXPECT_EQ(fix->effort, "hours");
}

TEST(Audit, ARepeatIsFoundByEitherKeyAndTheCacheFixSavesItToo) {
  // DESIGN.md: "paid more than once (same `cache_key` or `request_hash`)". The second
  // call has the first's request_hash but no cache key; the third the first's cache key
  // and a request_hash of its own; the fourth neither key of the others; the fifth the
  // same text as both of its keys (one key, not a repeat of itself).
  Event first = llm(kT0, "ck1", 1'000);
  first.metadata.request_hash = "rh1";
  Event by_hash = llm(kT0 + 60'000, "", 2'000);
  by_hash.metadata.request_hash = "rh1";
  Event by_key = llm(kT0 + 120'000, "ck1", 3'000);
  by_key.metadata.request_hash = "rh3";
  Event other = llm(kT0 + 180'000, "ck4", 4'000);
  other.metadata.request_hash = "rh4";
  Event self = llm(kT0 + 240'000, "same5", 5'000);
  self.metadata.request_hash = "same5";
  std::vector<Event> events = {first, by_hash, by_key, other, self};
  auto r = audit(events);
  EXPECT_EQ(r.repeat_calls_paid, 2);
  EXPECT_EQ(r.repeat_waste.mc(), 5'000);

  Replayer replayer(card(), nullptr, {*parse_policy("cache")});
  for (const auto& e : events) replayer.add(e);
  auto replay = replayer.finish();
  ASSERT_EQ(replay.policies.size(), 1u);
  EXPECT_EQ(replay.policies[0].saved.mc(), 5'000);
}

TEST(Audit, ARepeatRefundedInFullWasNotPaidAgain) {
  // c1 paid; c3, the same key, refunded in full: no paid repeat, no waste.
  Event c1 = llm(kT0, "k", 1'290);
  c1.seq = 1;
  c1.charge_id = "c_1";
  Event c3 = llm(kT0 + 60'000, "k", 1'290);
  c3.seq = 3;
  c3.charge_id = "c_3";
  Event refund = c3;
  refund.seq = 4;
  refund.type = EventType::kRefund;
  refund.at_ms = kT0 + 120'000;
  refund.refund_id = "r_4";
  auto r = audit_two_pass({c1, c3, refund});
  EXPECT_EQ(r.repeat_calls_paid, 0);
  EXPECT_EQ(r.repeat_waste.mc(), 0);
}

TEST(Audit, AMarkdownCellKeepsItsRowWhateverTheText) {
  Event e = agent("dana", "src/line1\nline2.jsx", kT0, 2'000, 20, 10);
  Event f = agent("dana", "src/a\\|b.jsx", kT0 + 1, 2'000, 20, 10);
  const std::string md = audit_markdown({audit({e, f})});
  EXPECT_NE(md.find("src/line1 line2.jsx"), std::string::npos) << md;
  EXPECT_NE(md.find("src/a\\\\\\|b.jsx"), std::string::npos) << md;
}

TEST(Audit, FixesAreOrderedBySavingsPerHour) {
  std::vector<Event> events;
  for (int i = 0; i < 6; ++i) events.push_back(llm(kT0 + i, "same", 2'000));
  events.push_back(agent("dana", "a.jsx", kT0 + 100, 3'000, 7, 5));  // small edit, 3 credits
  auto r = audit(events);
  ASSERT_EQ(r.fixes.size(), 2u);
  // Cache: 10 credits x 30 / 4 h = 75 per hour; editor: 3 x 30 / 1 h = 90 per hour.
  EXPECT_EQ(r.fixes[0].id, "edit_in_editor");
  EXPECT_EQ(r.fixes[0].saved_per_hour.mc(), 90'000);
  EXPECT_EQ(r.fixes[1].id, "cache_integrations");
  EXPECT_EQ(r.fixes[1].saved_per_hour.mc(), 75'000);
}

// An agent turn that scoping re-prices lower (it reads 5 files: input tokens / 5) but that
// is not unscoped (8 lines emitted for 6 changed) nor a small edit (6 lines changed):
// 0.5 + 0.3 x 10 + 1.5 x 0.1 + 0.2 x 5 + 0.01 x 8 + 0.02 x 6 = 4.85 credits as recorded,
// 2.45 scoped.
Event reads_five_files(std::int64_t at_ms) {
  Event e = agent("dana", "a.jsx", at_ms, 8'000, 8, 6);
  e.usage->input_tokens = 10'000;
  e.usage->files_read = 5;
  return e;
}

Event discuss(std::int64_t at_ms, std::int64_t credits_mc) {
  Event e = llm(at_ms, "", credits_mc);
  e.user_id = "dana";
  e.kind = Kind::kDiscussTurn;
  e.metadata = {};
  e.metadata.feature = "f";
  return e;
}

TEST(Audit, NoFixListedMeansNothingSavedTogether) {
  // Scoping would save 2.4 credits on each turn and discuss-off the discuss turn, but no
  // finding names a fix (discuss is 4 % of the burn, nothing is unscoped): the fixes
  // together are none.
  auto r = audit_two_pass({reads_five_files(kT0), reads_five_files(kT0 + 1),
                           reads_five_files(kT0 + 2), discuss(kT0 + 3, 1'000)});
  EXPECT_TRUE(r.fixes.empty());
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 0);
}

TEST(Audit, AllFixesTogetherChainsOnlyTheListedFixesPolicies) {
  // One small edit (4 credits): the only fix is the editor's, 4 x 30 = 120 credits per
  // cycle. Scoping the other turns and dropping the discuss turn are no fix of this
  // report, so they are not in "all fixes together" either.
  Event small = agent("dana", "b.jsx", kT0 + 4, 4'000, 4, 2);
  auto r = audit_two_pass({reads_five_files(kT0), reads_five_files(kT0 + 1),
                           reads_five_files(kT0 + 2), discuss(kT0 + 3, 1'000), small});
  ASSERT_EQ(r.fixes.size(), 1u);
  EXPECT_EQ(r.fixes[0].id, "edit_in_editor");
  EXPECT_EQ(r.fixes[0].saved_per_cycle.mc(), 120'000);
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 120'000);
}

TEST(Audit, AllFixesTogetherWithLoopsAndDiscussOff) {
  // A loop of three 12-credit fix turns (waste 24) alone: 24 x 30 = 720 per cycle.
  std::vector<Event> loop = {fix_turn("a.jsx", kT0, 12'000, 1),
                             fix_turn("a.jsx", kT0 + 60'000, 12'000, 2),
                             fix_turn("a.jsx", kT0 + 120'000, 12'000, 3)};
  auto r = audit_two_pass(loop);
  ASSERT_EQ(r.fixes.size(), 1u);
  EXPECT_EQ(r.fixes[0].id, "revert_loops");
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 720'000);
  // With 10 credits of discuss turns (22 % of the burn): discuss-off is a fix too, and the
  // two save (10 + 24) x 30 = 1,020 per cycle together.
  loop.push_back(discuss(kT0 + 180'000, 6'000));
  loop.push_back(discuss(kT0 + 240'000, 4'000));
  r = audit_two_pass(loop);
  ASSERT_EQ(r.fixes.size(), 2u);
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 1'020'000);
}

TEST(Audit, AllFixesTogetherSaveNoEventTwiceAndNoMoreThanTheirSum) {
  // Unscoped turns that are also small edits: scoping saves on them, and the editor drops
  // them whole. Chained, the editor drops what scoping left, so together they save each
  // turn's 4 credits once: 3 turns x 4 x 30 = 360 per cycle, below the sum of the two.
  std::vector<Event> events;
  for (int i = 0; i < 3; ++i) {
    Event e = agent("dana", "c.jsx", kT0 + i, 4'000, 20, 2);
    e.usage->input_tokens = 10'000;
    e.usage->files_read = 5;
    events.push_back(e);
  }
  auto r = audit_two_pass(events);
  Millicredits sum;
  std::set<std::string> ids;
  for (const auto& f : r.fixes) {
    sum += f.saved_per_cycle;
    ids.insert(f.id);
  }
  EXPECT_EQ(ids, (std::set<std::string>{"edit_in_editor", "scope_prompts"}));
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 360'000);
  EXPECT_LT(r.saved_per_cycle_all, sum);
}

TEST(Audit, AllFixesTogetherSaveALoopsTurnsOnceWithTheOutliers) {
  // u1..u3 one 10-credit turn each; u4 a loop of three 100-credit fixes (waste 200) and an
  // outlier (alone: 300 - 3 x 10 = 270). Chained, outliers judges what revert-loops left:
  // u4's 100 credits, 70 above 3 x the median: 200 + 70 = 270 a day, 8,100 per cycle (the
  // two fixes' sum, 14,100, is more than the whole burn, 330 x 30 = 9,900).
  std::vector<Event> events;
  for (const char* u : {"u1", "u2", "u3"}) {
    events.push_back(agent(u, std::string(u) + ".jsx", kT0, 10'000, 20, 10));
  }
  for (int i = 0; i < 3; ++i) {
    Event e = agent("u4", "d.jsx", kT0 + (1 + i) * 3'600'000, 100'000, 20, 10);
    e.metadata.intent = "fix";
    events.push_back(e);
  }
  auto r = audit_two_pass(events);
  std::set<std::string> ids;
  for (const auto& f : r.fixes) ids.insert(f.id);
  EXPECT_EQ(ids, (std::set<std::string>{"revert_loops", "review_outliers"}));
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 8'100'000);
  // With 80 credits of u1's discuss turns (20 % of 410): discuss-off is a fix too, and its
  // chain has revert-loops before outliers as well: 80 + 200 + (100 - 3 x 10) = 350 a day.
  Event d = discuss(kT0 + 5 * 3'600'000, 80'000);
  d.user_id = "u1";
  events.push_back(d);
  r = audit_two_pass(events);
  ids.clear();
  for (const auto& f : r.fixes) ids.insert(f.id);
  EXPECT_EQ(ids,
            (std::set<std::string>{"discuss_for_planning", "revert_loops", "review_outliers"}));
  EXPECT_EQ(r.saved_per_cycle_all.mc(), 10'500'000);
}

TEST(Audit, SharesAgainstTypicalRanges) {
  std::vector<Event> events = {agent("dana", "a.jsx", kT0, 50'000, 20, 10),
                               llm(kT0 + 1, "k", 50'000)};
  auto r = audit(events);
  EXPECT_EQ(r.shares[0].source, "agent");
  EXPECT_DOUBLE_EQ(r.shares[0].share, 0.5);
  EXPECT_FALSE(r.shares[0].in_range);  // below 60 %
  EXPECT_FALSE(r.shares[1].in_range);  // above 30 %
  EXPECT_TRUE(r.shares[3].in_range);   // backend 0 % is inside 0-10 %
  EXPECT_TRUE(has_finding(r, "share_out_of_range"));
}

TEST(Audit, HtmlHasNoScriptAndInlineSvg) {
  auto r = audit({agent("dana", "a<b>.jsx", kT0, 5'000, 20, 10)});
  std::string html = audit_html({r});
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<style"), std::string::npos);
  // Nothing is fetched: no links, sources or references.
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
  EXPECT_EQ(html.find("href="), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("a&lt;b&gt;.jsx"), std::string::npos);
  // The burn by source in figures, not only as bars (as JSON and Markdown give it).
  ASSERT_FALSE(r.shares.empty());
  EXPECT_NE(html.find("<th>credits</th><th>share</th><th>typical</th>"), std::string::npos);
  EXPECT_NE(html.find("<td>" + r.shares.front().source + "</td><td>" +
                      format_credits(r.shares.front().credits) + "</td>"),
            std::string::npos)
      << html;
  EXPECT_NE(audit_markdown({r}).find("# Credit audit: acme"), std::string::npos);
  EXPECT_EQ(audit_json({r}).front(), '{');
}

TEST(Audit, MarkdownAndHtmlCarryTheFiguresTheJsonHas) {
  // The daily series, the credits of turns without a snapshot, and each fix's savings over
  // the period as well as per cycle.
  auto r = audit({agent("dana", "a.jsx", kT0, 5'000, 200, 6, ""),
                  agent("dana", "a.jsx", kT0 + 60'000, 4'000, 200, 6, "")});
  ASSERT_FALSE(r.fixes.empty());
  const std::string md = audit_markdown({r});
  const std::string html = audit_html({r});
  EXPECT_NE(md.find("| " + format_date(kT0) + " | 9 |"), std::string::npos) << md;
  EXPECT_EQ(r.turns_without_snapshot_credits.mc(), 9'000);
  EXPECT_NE(md.find("ran without a snapshot (9 credits)"), std::string::npos) << md;
  EXPECT_NE(html.find("ran without a snapshot (9 credits)"), std::string::npos);
  EXPECT_NE(md.find("| saved in the period | saved per cycle |"), std::string::npos);
  EXPECT_NE(md.find("| " + format_credits(r.fixes.front().saved) + " | " +
                    format_credits(r.fixes.front().saved_per_cycle) + " |"),
            std::string::npos)
      << md;
  EXPECT_NE(html.find("<th>saved in the period</th>"), std::string::npos);
}

TEST(Audit, AdviceAsForecastGivesIt) {
  // /forecast's pick (forecast.h): at an equal price the current plan stays; prices are
  // written with their cents.
  auto plan = [](std::string id, std::int64_t cents, std::int64_t allowance_credits) {
    pricing::Plan p;
    p.id = std::move(id);
    p.price_usd_cents = cents;
    pricing::PoolAllowance pa;
    pa.pool = "credits";
    pa.allowance = Millicredits::from_mc(allowance_credits * 1000);
    p.pools.push_back(pa);
    return p;
  };
  pricing::Catalog catalog;
  catalog.plans = {plan("twin", 5'999, 50), plan("current", 5'999, 100), plan("small", 0, 10),
                   plan("bigtwin", 5'999, 200)};
  AuditOptions options;
  options.catalog = &catalog;
  options.plan_id = "current";
  // 3 credits in a day: 90 a cycle, need 99: only the two plans at 59.99 cover it.
  auto r = audit({agent("dana", "a.jsx", kT0, 3'000, 20, 10)}, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->action, "stay");
  EXPECT_EQ(r.advice->plan, "current");
  EXPECT_EQ(r.advice->price_delta_usd_cents, 0);
  // 0.1 credit: "small" covers it for 59.99 USD less.
  r = audit({agent("dana", "a.jsx", kT0, 100, 20, 10)}, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->action, "downgrade");
  EXPECT_NE(r.advice->reason.find("for 59.99 USD less"), std::string::npos) << r.advice->reason;
  // 4.5 credits: 135 a cycle, need 148.5: "current" does not cover it, "bigtwin" does at the
  // same price: a move for 0 USD, not "stay" (and never "sized correctly"). Not an upgrade
  // either (DESIGN.md: a change at the same price is pending until the next boundary), so
  // it is advised from the next cycle even though the credits run out in this one.
  r = audit({agent("dana", "a.jsx", kT0, 4'500, 20, 10)}, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->action, "upgrade_next_cycle");
  EXPECT_TRUE(r.advice->runs_out);
  EXPECT_EQ(r.advice->plan, "bigtwin");
  EXPECT_EQ(r.advice->price_delta_usd_cents, 0);
  EXPECT_FALSE(r.advice->sized_correctly);
}

TEST(Audit, RefundsOfChargesBeforeTheRangeNeverMakeSharesOrAdviceNegative) {
  // In the range: the refund of an agent charge made before it (50 credits) and a backend
  // charge of 3. Net -47: the shares are of the positive sources (as /usage gives them),
  // and the advice has no burn, not a negative one (as /forecast).
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  Event before = agent("dana", "a.jsx", kT0 - 2 * kMsPerDay, 50'000, 20, 10);
  before.charge_id = "c_1";
  Event backend = llm(kT0 + 60'000, "", 3'000);
  backend.kind = Kind::kBackendFunction;
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "pro";
  auto r = audit({refund_of(before, kT0, 50'000), backend}, options);
  EXPECT_EQ(r.total.mc(), -47'000);
  for (const ShareRow& row : r.shares) {
    EXPECT_GE(row.share, 0.0) << row.source;
    EXPECT_LE(row.share, 1.0) << row.source;
    if (row.source == "backend") {
      EXPECT_DOUBLE_EQ(row.share, 1.0);
    }
    if (row.source == "agent") {
      EXPECT_DOUBLE_EQ(row.share, 0.0);
    }
  }
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->used_per_cycle.mc(), 0);
  EXPECT_EQ(r.advice->need.mc(), 0);
  EXPECT_DOUBLE_EQ(r.advice->utilization, 0.0);
  EXPECT_FALSE(r.advice->runs_out);
}

TEST(Audit, AdviceFollowsTheCatalog) {
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  // 100 credits in one day: 3,000 per cycle, need 3,300: builder (5,000) is right.
  std::vector<Event> events = {agent("dana", "a.jsx", kT0, 100'000, 20, 10)};
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "starter";
  auto r = audit(events, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->used_per_cycle.mc(), 3'000'000);
  EXPECT_EQ(r.advice->need.mc(), 3'300'000);
  EXPECT_TRUE(r.advice->runs_out);
  EXPECT_EQ(r.advice->plan, "builder");
  EXPECT_EQ(r.advice->action, "upgrade_now");
  EXPECT_EQ(r.advice->price_delta_usd_cents, 3'000);
  options.plan_id = "pro";
  r = audit(events, options);
  EXPECT_EQ(r.advice->action, "downgrade");
  // 20,000 credits in one day: 600,000 a cycle; no plan covers it. The largest plan stays,
  // "comes closest", and is not sized correctly (found by an audit: "covers", sized true).
  events = {agent("dana", "a.jsx", kT0, 20'000'000, 20, 10)};
  options.plan_id = "enterprise";
  r = audit(events, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->action, "stay");
  EXPECT_EQ(r.advice->plan, "enterprise");
  EXPECT_FALSE(r.advice->sized_correctly);
  EXPECT_NE(r.advice->reason.find("comes closest to (none covers)"), std::string::npos)
      << r.advice->reason;
}

TEST(Audit, OnePoolIsAuditedItsFiguresItsOwnThePlanAdvisedOneForEveryPool) {
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) +
                                            "/config/examples/two-pools.toml");
  ASSERT_TRUE(catalog.ok());
  Event prompt = agent("dana", "a.jsx", kT0, 6'000, 20, 10);
  prompt.pool = "message";
  Event call = llm(kT0 + 1, "k", 50'000);
  call.pool = "integration";
  Event plan_change;  // no pool, moves no credits: counted in every pool's audit
  plan_change.at_ms = kT0 + 2;
  plan_change.account_id = "acme";
  plan_change.type = EventType::kPlanChange;
  plan_change.plan = "starter";
  Event stray = call;  // no pool: its kind's in the rate card ("credits" here), neither
  stray.pool.clear();
  stray.at_ms = kT0 + 3;
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "starter";  // message 100, integration 2,000
  options.pool = "message";
  auto r = audit({prompt, call, plan_change, stray}, options);
  EXPECT_EQ(r.pool, "message");
  EXPECT_EQ(r.events, 2);
  EXPECT_EQ(r.total.mc(), 6'000);
  // 6 credits in one day: 180 per 30-day cycle, need 198 > 100; builder (250 message
  // credits) is the cheapest plan whose message pool covers it.
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->allowance.mc(), 100'000);
  EXPECT_EQ(r.advice->used_per_cycle.mc(), 180'000);
  EXPECT_EQ(r.advice->plan, "builder");
  options.pool = "integration";
  r = audit({prompt, call, plan_change, stray}, options);
  EXPECT_EQ(r.events, 2);
  EXPECT_EQ(r.total.mc(), 50'000);
  // 50 in one day: 1,500 per cycle, need 1,650, within starter's 2,000; but the plan moves
  // every pool at once, and the message pool needs builder: the same advice as the message
  // pool's (found by an audit: "stay" here and an upgrade there; with other burns a
  // downgrade that starved the other pool).
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->allowance.mc(), 2'000'000);
  EXPECT_EQ(r.advice->used_per_cycle.mc(), 1'500'000);
  EXPECT_EQ(r.advice->need.mc(), 1'650'000);
  EXPECT_FALSE(r.advice->runs_out);
  EXPECT_EQ(r.advice->action, "upgrade_now");
  EXPECT_EQ(r.advice->plan, "builder");
  EXPECT_NE(r.advice->reason.find(
                "builder covers the projected needs of message 198 and integration 1650 credits"),
            std::string::npos)
      << r.advice->reason;
  // The pool that runs out is named, so the integration pool's advice does not read as if
  // its own credits ran out (found by an audit).
  EXPECT_EQ(r.advice->reason.rfind("credits of the message pool run out this cycle; ", 0), 0u)
      << r.advice->reason;
  const Advice integration = *r.advice;
  options.pool = "message";
  r = audit({prompt, call, plan_change, stray}, options);
  EXPECT_EQ(r.advice->action, integration.action);
  EXPECT_EQ(r.advice->plan, integration.plan);
  EXPECT_EQ(r.advice->reason, integration.reason);
  // A downgrade only to a plan that covers every pool: on elite, starter covers the
  // integration pool's need (1,650 of 2,000) but not the message pool's (198 of 100).
  options.plan_id = "elite";
  for (const char* pool : {"message", "integration"}) {
    options.pool = pool;
    r = audit({prompt, call, plan_change, stray}, options);
    ASSERT_TRUE(r.advice.has_value());
    EXPECT_EQ(r.advice->action, "downgrade") << pool;
    EXPECT_EQ(r.advice->plan, "builder") << pool;
  }
  options.plan_id = "starter";
  // Without a pool, every event (the offline audit of a file without --plan).
  options.pool.clear();
  options.catalog = nullptr;
  r = audit({prompt, call, plan_change, stray}, options);
  EXPECT_EQ(r.events, 4);
  EXPECT_EQ(r.total.mc(), 106'000);
}

// A range's period runs to the end of now's day: at exactly midnight that day has not
// begun, so ten days after the range's start are ten days, not eleven; a second later the
// eleventh counts.
TEST(Audit, ARangesPeriodEndsAtNowWhenNowIsAMidnight) {
  constexpr std::int64_t kDay = 86'400'000;
  const std::int64_t from = kT0 - kT0 % kDay;
  std::vector<Event> events = {agent("dana", "a.jsx", from + 3'600'000, 10'000, 20, 10)};
  AuditOptions options;
  options.range_from_ms = from;
  options.range_to_ms = from + 31 * kDay;
  options.now_ms = from + 10 * kDay;
  EXPECT_EQ(audit(events, options).period_days, 10);
  options.now_ms = from + 10 * kDay + 1'000;
  EXPECT_EQ(audit(events, options).period_days, 11);
  options.now_ms = from + 40 * kDay;
  EXPECT_EQ(audit(events, options).period_days, 31);
}

// API.md does not require `pool`: an event written without one is of its kind's pool in
// the rate card, as the server's import and the replay take it (found by an audit: an
// offline audit with --plan of such a file said "No events").
TEST(Audit, AnEventWithoutAPoolIsOfItsKindsPool) {
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  Event prompt = agent("dana", "a.jsx", kT0, 6'000, 20, 10);
  ASSERT_TRUE(prompt.pool.empty());
  Event refund = prompt;
  refund.type = EventType::kRefund;
  refund.at_ms = kT0 + 1;
  refund.credits = Millicredits::from_mc(1'000);
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "pro";
  options.pool = "credits";
  auto r = audit({prompt, refund}, options);
  EXPECT_EQ(r.events, 2);
  EXPECT_EQ(r.total.mc(), 5'000);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->used_per_cycle.mc(), 150'000);
  options.pool = "other";  // a pool the card does not give them
  EXPECT_EQ(audit({prompt, refund}, options).events, 0);
}

// The upgrade's reason says when the plan advised covers no need, in every branch (found
// by an audit: upgrade_now said only "credits run out this cycle; elite costs ...").
TEST(Audit, AnUpgradeThatCoversNothingSaysItComesClosest) {
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  // 20,000 credits in one day: 600,000 a cycle; enterprise (100,000) comes closest.
  const std::vector<Event> events = {agent("dana", "a.jsx", kT0, 20'000'000, 20, 10)};
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "pro";
  // 900 USD more is above 100 USD x 8 h: from the next cycle.
  auto r = audit(events, options);
  ASSERT_TRUE(r.advice.has_value());
  EXPECT_EQ(r.advice->action, "upgrade_next_cycle");
  EXPECT_EQ(r.advice->plan, "enterprise");
  EXPECT_NE(r.advice->reason.find("enterprise comes closest to (none covers)"), std::string::npos)
      << r.advice->reason;
  // Within the break-even at 200 USD an hour: now.
  options.hourly_rate_usd = 200;
  r = audit(events, options);
  EXPECT_EQ(r.advice->action, "upgrade_now");
  EXPECT_NE(r.advice->reason.find("enterprise comes closest to (none covers)"), std::string::npos)
      << r.advice->reason;
  // Numbers in the shortest form (API.md), as /forecast writes them: 900 / 200 = 4.5 hours.
  const std::string json = audit_json({r});
  EXPECT_NE(json.find(R"("price_delta_usd":900,"engineering_hours":4.5,)"), std::string::npos)
      << json;
  options.plan_id = "enterprise";
  options.hourly_rate_usd = 100;
  r = audit({agent("dana", "a.jsx", kT0, 1'000, 20, 10)}, options);
  EXPECT_EQ(r.advice->action, "downgrade");
  EXPECT_EQ(r.advice->plan, "free");
  EXPECT_NE(audit_json({r}).find(R"("price_delta_usd":-1000,"engineering_hours":-10,)"),
            std::string::npos)
      << audit_json({r});
}

// "daily": every day of the period, quiet days at 0, including those before the first
// event and after the last (found by an audit: the series ran from the first event's day
// to the last's).
TEST(Audit, TheDailySeriesHasEveryDayOfThePeriod) {
  constexpr std::int64_t kDay = 86'400'000;
  const std::int64_t midnight = kT0 - kT0 % kDay;
  const std::vector<Event> events = {
      agent("dana", "a.jsx", midnight + 2 * kDay + 1, 4'000, 20, 10),
      agent("dana", "a.jsx", midnight + 4 * kDay + 1, 5'000, 20, 10)};
  AuditOptions options;
  // A cycle anchored at 10:00, seven days long, now in its sixth day.
  options.range_from_ms = midnight + 10 * 3'600'000;
  options.range_to_ms = midnight + 7 * kDay + 10 * 3'600'000;
  options.now_ms = midnight + 5 * kDay + 3'600'000;
  auto r = audit(events, options);
  EXPECT_EQ(r.period_days, 6);
  std::vector<std::pair<std::int64_t, std::int64_t>> days;
  for (const DayRow& d : r.daily) days.emplace_back((d.day_ms - midnight) / kDay, d.credits.mc());
  const std::vector<std::pair<std::int64_t, std::int64_t>> want = {{0, 0}, {1, 0},     {2, 4'000},
                                                                   {3, 0}, {4, 5'000}, {5, 0}};
  EXPECT_EQ(days, want);
  // Past now's day, the range's end: the 7th day and the 8th day's first ten hours.
  options.now_ms = midnight + 30 * kDay;
  r = audit(events, options);
  EXPECT_EQ(r.period_days, 7);
  ASSERT_EQ(r.daily.size(), 8u);
  EXPECT_EQ(r.daily.back().day_ms, midnight + 7 * kDay);
  // Without a range (a file), the days from the first event's to the last's.
  r = audit(events);
  ASSERT_EQ(r.daily.size(), 3u);
  EXPECT_EQ(r.daily.front().day_ms, midnight + 2 * kDay);
  // A range past the server's longest (offline only): the events' days.
  options.range_to_ms = midnight + 1'000 * kDay;
  options.now_ms = 0;
  EXPECT_EQ(audit(events, options).daily.size(), 3u);
}

// `from` == `to` on the hour is an empty range: it touches no UTC day, so its period has no
// day and its daily series no row (found by an audit: it reported one day, at 0), and the
// figures scaled by the period stay 0 without a division by it.
TEST(Audit, AnEmptyRangeHasNoDay) {
  constexpr std::int64_t kDay = 86'400'000;
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  const std::int64_t midnight = kT0 - kT0 % kDay;
  AuditOptions options;
  options.catalog = &*catalog;
  options.plan_id = "pro";
  options.pool = "credits";
  for (const std::int64_t at : {midnight, midnight + 10 * 3'600'000}) {
    options.range_from_ms = at;
    options.range_to_ms = at;
    options.now_ms = midnight + 5 * kDay;
    const AuditReport r = audit({}, options);
    EXPECT_EQ(r.period_days, 0);
    EXPECT_TRUE(r.daily.empty());
    EXPECT_EQ(r.total.mc(), 0);
    ASSERT_TRUE(r.advice.has_value());
    EXPECT_EQ(r.advice->used_per_cycle.mc(), 0);
    EXPECT_FALSE(r.advice->runs_out_after_days.has_value());
    EXPECT_NE(audit_json({r}).find(R"("period_days":0,)"), std::string::npos) << audit_json({r});
    EXPECT_NE(audit_json({r}).find(R"("daily":[])"), std::string::npos) << audit_json({r});
    EXPECT_NE(audit_markdown({r}).find("(0 days)"), std::string::npos) << audit_markdown({r});
    EXPECT_FALSE(audit_html({r}).empty());
  }
  // A range of one hour touches its day.
  options.range_to_ms = *options.range_from_ms + 3'600'000;
  const AuditReport r = audit({}, options);
  EXPECT_EQ(r.period_days, 1);
  ASSERT_EQ(r.daily.size(), 1u);
  EXPECT_EQ(r.daily.front().day_ms, midnight);
  // A range wholly after today is cut at the end of today: empty too (it had one day).
  options.now_ms = midnight + 5 * kDay + 12 * 3'600'000;
  options.range_from_ms = midnight + 10 * kDay;
  options.range_to_ms = midnight + 12 * kDay;
  const AuditReport later = audit({}, options);
  EXPECT_EQ(later.period_days, 0);
  EXPECT_TRUE(later.daily.empty());
  // One that starts today and ends later has today only.
  options.range_from_ms = midnight + 5 * kDay;
  const AuditReport today = audit({}, options);
  EXPECT_EQ(today.period_days, 1);
  ASSERT_EQ(today.daily.size(), 1u);
  EXPECT_EQ(today.daily.front().day_ms, midnight + 5 * kDay);
}

}  // namespace
}  // namespace credit::analytics
