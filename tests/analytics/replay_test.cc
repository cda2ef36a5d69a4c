// tests/analytics/replay_test.cc
// What-if replay with literal numbers: scoped prompts re-priced through the default
// card, discuss off, the cache TTL, rate limits, a plan, and the combined chain.
#include "analytics/replay.h"

#include <gtest/gtest.h>

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

Event charge(Kind kind, std::int64_t at_ms, std::int64_t credits_mc, std::string user = "dana") {
  Event e;
  e.at_ms = at_ms;
  e.account_id = "acme";
  e.user_id = std::move(user);
  e.type = EventType::kCharge;
  e.kind = kind;
  e.credits = Millicredits::from_mc(credits_mc);
  return e;
}

ReplayReport replay(const std::vector<Event>& events, std::vector<Policy> policies,
                    const pricing::Catalog* catalog = nullptr) {
  Replayer r(card(), catalog, std::move(policies));
  for (const auto& e : events) r.add(e);
  return r.finish();
}

TEST(Replay, ScopedPromptRewritesOnlyOutputAndInputTokens) {
  // The reference unscoped prompt of DESIGN.md.
  pricing::Usage u;
  u.model = "default";
  u.input_tokens = 10'000;
  u.output_tokens = 2'200;
  u.files_read = 5;
  u.lines_emitted = 200;
  u.lines_changed = 6;
  Event e = charge(Kind::kAgentPrompt, kT0, 9'920);
  e.usage = u;
  auto r = replay({e}, {*parse_policy("scoped")});
  // DESIGN.md: output 2,200 x min(1, (6 + 10) / 200) = 176, input 10,000 / 5 = 2,000; files
  // read (5), lines emitted (200) and lines changed (6) stay. The default card:
  //   500 base + 0.3 x 2,000 + 1.5 x 176 + 0.2 x 5 files + 0.01 x 200 lines emitted
  //   + 0.02 x 6 lines changed = 0.5 + 0.6 + 0.264 + 1 + 2 + 0.12 = 4.484 credits
  // against 9.92 recorded (0.5 + 3 + 3.3 + 1 + 2 + 0.12).
  EXPECT_EQ(r.policies[0].before.mc(), 9'920);
  EXPECT_EQ(r.policies[0].after.mc(), 4'484);
  EXPECT_EQ(r.policies[0].saved.mc(), 5'436);
  EXPECT_EQ(r.policies[0].events_changed, 1);
}

TEST(Replay, ScopedPromptLeavesATightPromptAlone) {
  // min(1, (6 + 10) / 16) = 1 and one file read: nothing to rewrite.
  pricing::Usage u;
  u.model = "default";
  u.input_tokens = 2'200;
  u.output_tokens = 120;
  u.files_read = 1;
  u.lines_emitted = 16;
  u.lines_changed = 6;
  Event e = charge(Kind::kAgentPrompt, kT0, 1'820);  // its price on the default card
  e.usage = u;
  auto r = replay({e}, {*parse_policy("scoped")});
  EXPECT_EQ(r.policies[0].saved.mc(), 0);
  EXPECT_EQ(r.policies[0].events_changed, 0);
}

TEST(Replay, DiscussOffRemovesDiscussTurns) {
  auto r = replay({charge(Kind::kDiscussTurn, kT0, 2'000), charge(Kind::kAgentPrompt, kT0, 5'000)},
                  {*parse_policy("discuss-off")});
  EXPECT_EQ(r.before.mc(), 7'000);
  EXPECT_EQ(r.policies[0].after.mc(), 5'000);
  EXPECT_EQ(r.policies[0].saved.mc(), 2'000);
  EXPECT_EQ(r.policies[0].events_dropped, 1);
}

TEST(Replay, CacheAnswersRepeatsWithinTheTtlOnly) {
  auto call = [](std::int64_t at_ms) {
    Event e = charge(Kind::kInvokeLlm, at_ms, 1'500, "app");
    e.cache_key = "k";
    return e;
  };
  // Filled at T0; T0 + 1 day is a hit; T0 + 7 days is expired (pays and refills);
  // T0 + 8 days is a hit again.
  auto r = replay(
      {call(kT0), call(kT0 + kMsPerDay), call(kT0 + 7 * kMsPerDay), call(kT0 + 8 * kMsPerDay)},
      {*parse_policy("cache")});
  EXPECT_EQ(r.policies[0].saved.mc(), 3'000);
  EXPECT_EQ(r.policies[0].events_dropped, 2);
}

TEST(Replay, CacheWithAGivenHitRate) {
  Policy p = *parse_policy("cache");
  p.hit_rate_permille = 250;
  Event a = charge(Kind::kInvokeLlm, kT0, 4'000, "app");
  // Every integration call is cacheable, as the server's cache serves them all.
  Event b = charge(Kind::kSendEmail, kT0, 1'000, "app");
  Event c = charge(Kind::kBackendFunction, kT0, 8'000, "app");  // not an integration call
  auto r = replay({a, b, c}, {p});
  EXPECT_EQ(r.policies[0].saved.mc(), 1'250);  // 25 % of 4 + 1
}

TEST(Replay, RateLimitDropsRequestsOverTheLimit) {
  Policy p = *parse_policy("rate-limit");
  p.per_user = {2, 2};  // 2 per minute, burst 2
  std::vector<Event> events = {charge(Kind::kAgentPrompt, kT0, 1'000),
                               charge(Kind::kAgentPrompt, kT0, 1'000),
                               charge(Kind::kAgentPrompt, kT0, 1'000),           // dropped
                               charge(Kind::kAgentPrompt, kT0 + 30'000, 1'000),  // 1 token back
                               charge(Kind::kAgentPrompt, kT0 + 30'000, 1'000),  // dropped
                               charge(Kind::kAgentPrompt, kT0, 1'000, "lee"),
                               charge(Kind::kSendEmail, kT0, 1'000)};  // not limited
  auto r = replay(events, {p});
  EXPECT_EQ(r.policies[0].events_dropped, 2);
  EXPECT_EQ(r.policies[0].saved.mc(), 2'000);
}

TEST(Replay, RateLimitRefillKeepsTheFractionOfATokenBetweenRequests) {
  // 59 per minute, burst 1: a token each 1,016.95 ms. Requests every 10 ms: the old
  // refill rounded each step's 9.83 milli-tokens down to 9, so a token came back only
  // after 1,120 ms and the second one after the last request.
  Policy p = *parse_policy("rate-limit");
  p.per_user = {59, 1};
  std::vector<Event> events;
  for (std::int64_t t = 0; t <= 2'100; t += 10) {
    events.push_back(charge(Kind::kAgentPrompt, kT0 + t, 1'000));
  }
  auto r = replay(events, {p});
  // Allowed at 0, then once 60,000 units are back: at 1,020 ms and at 2,040 ms.
  EXPECT_EQ(r.policies[0].events_dropped, static_cast<std::int64_t>(events.size()) - 3);
}

TEST(Replay, CombinedNeverSavesAnEventTwice) {
  Event a = charge(Kind::kDiscussTurn, kT0, 2'000);
  a.metadata.call_site = "x";
  auto r = replay({a, a}, {*parse_policy("discuss-off"), *parse_policy("outliers")});
  ASSERT_TRUE(r.combined.has_value());
  EXPECT_EQ(r.combined->saved.mc(), 4'000);
  EXPECT_EQ(r.combined->after.mc(), 0);
}

TEST(Replay, AChainOfSomePoliciesSavesWhatTheyAloneSaveInTheChainOrder) {
  // A discuss turn (2 credits) and an invokeLLM call paid twice (1.5 credits each).
  Event d = charge(Kind::kDiscussTurn, kT0, 2'000);
  Event llm = charge(Kind::kInvokeLlm, kT0 + 1, 1'500, "app");
  llm.cache_key = "k";
  Event again = llm;
  again.at_ms = kT0 + 2;
  ReplayerOptions options;
  options.chains = {{PolicyKind::kCache, PolicyKind::kEditor}};
  options.combined = false;
  Replayer r(card(), nullptr,
             {*parse_policy("cache"), *parse_policy("discuss-off"), *parse_policy("editor")},
             options);
  for (const auto& e : {d, llm, again}) r.add(e);
  auto report = r.finish();
  EXPECT_FALSE(report.combined.has_value());
  ASSERT_EQ(report.chains.size(), 1u);
  const PolicyOutcome& chain = report.chains[0];
  EXPECT_EQ(chain.name, "cache+editor");
  // The discuss turn is not the chain's to save: only the repeat's 1.5 credits.
  EXPECT_EQ(chain.saved.mc(), 1'500);
  ASSERT_EQ(chain.stages.size(), 2u);
  EXPECT_EQ(chain.stages[0].kind, PolicyKind::kCache);
  EXPECT_EQ(chain.stages[0].saved.mc(), 1'500);
  EXPECT_EQ(chain.stages[1].kind, PolicyKind::kEditor);
  EXPECT_EQ(chain.stages[1].saved.mc(), 0);
}

TEST(Replay, RefundsPassThrough) {
  Event refund = charge(Kind::kDiscussTurn, kT0 + 1, 500);
  refund.type = EventType::kRefund;
  auto r = replay({charge(Kind::kDiscussTurn, kT0, 2'000), refund}, {*parse_policy("cache")});
  EXPECT_EQ(r.before.mc(), 1'500);
  EXPECT_EQ(r.policies[0].after.mc(), 1'500);
}

TEST(Replay, CountsTheEventsOfApiTypesNotTheAccountAndCloseLines) {
  // simulate --plan writes an account line before the events: the replay skips it, and a
  // close line, as the audit does.
  Event opened = charge(Kind::kAgentPrompt, kT0 - 86'400'000, 0);
  opened.type = EventType::kAccountCreated;
  opened.kind.reset();
  Event closed = opened;
  closed.type = EventType::kAccountClosed;
  closed.at_ms = kT0 + 86'400'000;
  auto r =
      replay({opened, charge(Kind::kAgentPrompt, kT0, 2'000), closed}, {*parse_policy("cache")});
  EXPECT_EQ(r.events, 1);
  EXPECT_EQ(r.period_days, 1);  // the charge's day only
  EXPECT_EQ(r.before.mc(), 2'000);
}

TEST(Replay, PlanPolicyReportsWhetherTheBurnFits) {
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  ASSERT_TRUE(catalog.ok());
  // 100 credits over 1 day: 3,000 per 30-day cycle.
  auto r = replay({charge(Kind::kAgentPrompt, kT0, 100'000)},
                  {*parse_policy("plan:starter"), *parse_policy("plan:builder")}, &*catalog);
  ASSERT_TRUE(r.policies[0].plan.has_value());
  EXPECT_EQ(r.policies[0].plan->need_per_cycle.mc(), 3'000'000);
  EXPECT_FALSE(r.policies[0].plan->fits);
  EXPECT_TRUE(r.policies[1].plan->fits);
  EXPECT_EQ(r.policies[1].plan->price_usd_cents, 5'000);
}

TEST(Replay, UnknownPolicyIsAnError) {
  auto p = parse_policy("free-lunch");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().detail("param"), "\"policy\"");
}

}  // namespace
}  // namespace credit::analytics
