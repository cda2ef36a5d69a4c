// tests/analytics/replay_test.cc
// What-if replay with literal numbers: scoped prompts re-priced through the default
// card, discuss off, the cache TTL, rate limits, a plan, and the combined chain.
#include "analytics/replay.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

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

// --- the chain of every combination of policies -----------------------------------------

// One account's day where the policies overlap: a loop whose last turn is a small edit
// (revert-loops and editor) of the outlier user (outliers), who also has an unscoped prompt
// (scoped) and a discuss turn (discuss-off); a burst of integration calls, some repeats
// (rate-limit and cache); other users with discuss turns, a small edit and a refund.
std::vector<Event> overlapping_history() {
  std::vector<Event> out;
  auto turn = [&](std::string user, std::int64_t at_ms, std::int64_t mc, std::string file,
                  bool fix) {
    Event e = charge(Kind::kAgentPrompt, at_ms, mc, std::move(user));
    e.metadata.file = std::move(file);
    e.metadata.intent = fix ? "fix" : "build";
    out.push_back(e);
    return &out.back();
  };
  pricing::Usage unscoped;  // DESIGN.md's unscoped prompt: 9.92 credits, 4.484 scoped
  unscoped.model = "default";
  unscoped.input_tokens = 10'000;
  unscoped.output_tokens = 2'200;
  unscoped.files_read = 5;
  unscoped.lines_emitted = 200;
  unscoped.lines_changed = 6;
  pricing::Usage small;  // a small edit (editor): nothing for scoped to rewrite
  small.lines_changed = 2;
  const std::int64_t h = 3'600'000;
  turn("u1", kT0, 10'000, "a.js", false);
  turn("u1", kT0 + h, 4'000, "a2.js", false)->usage = small;
  out.push_back(charge(Kind::kDiscussTurn, kT0 + 2 * h, 2'000, "u1"));
  turn("u2", kT0, 9'920, "b.js", false)->usage = unscoped;
  turn("u3", kT0, 12'000, "c.js", false);
  out.push_back(charge(Kind::kDiscussTurn, kT0 + h, 2'000, "u3"));
  Event refund = charge(Kind::kAgentPrompt, kT0 + 3 * h, 2'000, "u3");
  refund.type = EventType::kRefund;
  out.push_back(refund);
  // u4: a loop of four fixes on d.js, the last a small edit; an unscoped prompt; a discuss.
  for (int i = 0; i < 4; ++i) turn("u4", kT0 + (10 + i) * h, 100'000, "d.js", true);
  out.back().usage = small;
  turn("u4", kT0 + 15 * h, 9'920, "e.js", false)->usage = unscoped;
  out.push_back(charge(Kind::kDiscussTurn, kT0 + 16 * h, 5'000, "u4"));
  // The app: 25 calls at once (rate-limit keeps 20), keys k0..k11 again and again (cache).
  for (int i = 0; i < 25; ++i) {
    Event e = charge(Kind::kInvokeLlm, kT0 + 5 * h, 1'500, "app");
    e.cache_key = "k" + std::to_string(i % 12);
    out.push_back(e);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Event& a, const Event& b) { return a.at_ms < b.at_ms; });
  return out;
}

// What one policy leaves of the history, applied to it as a whole (the events it drops are
// gone, the ones it re-prices cost what is left), by the policies' rules as they apply to
// overlapping_history(): its files hold one run each, its users' requests are within a
// minute, its repeats within the cache's TTL.
std::vector<Event> leave(const std::vector<Event>& events, PolicyKind kind) {
  std::vector<Event> out;
  std::map<std::string, std::int64_t> limited;
  std::set<std::string> keys;
  for (const Event& e : events) {
    switch (kind) {
      case PolicyKind::kDiscussOff:
        if (e.kind == Kind::kDiscussTurn) continue;
        break;
      case PolicyKind::kRateLimit:
        if (e.type == EventType::kCharge &&
            (e.kind == Kind::kAgentPrompt || e.kind == Kind::kDiscussTurn ||
             e.kind == Kind::kInvokeLlm) &&
            ++limited[e.user_id] > kRateLimitPerMinuteDefault) {
          continue;
        }
        break;
      case PolicyKind::kCache:
        if (e.kind == Kind::kInvokeLlm && !keys.insert(e.cache_key).second) continue;
        break;
      case PolicyKind::kScoped:
        if (e.type == EventType::kCharge && e.usage && e.usage->output_tokens) {
          Event scoped = e;
          scoped.credits = replay({e}, {*parse_policy("scoped")}).policies[0].after;
          out.push_back(scoped);
          continue;
        }
        break;
      case PolicyKind::kEditor:
        if (is_agent_turn(e) && e.usage && e.usage->lines_changed &&
            *e.usage->lines_changed <= kSmallEditLinesMax && e.credits >= kSmallEditCostMin) {
          continue;
        }
        break;
      default:
        break;
    }
    out.push_back(e);
  }
  if (kind != PolicyKind::kRevertLoops) return out;
  // A file's turns are a loop when 3 or more, more than half fixes, 30 credits or more:
  // all but the first are reverted.
  std::map<std::string, std::vector<std::size_t>> by_file;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (is_agent_turn(out[i])) by_file[out[i].metadata.file].push_back(i);
  }
  std::set<std::size_t> reverted;
  for (const auto& [file, turns] : by_file) {
    std::int64_t fixes = 0;
    Millicredits credits;
    for (std::size_t i : turns) {
      fixes += out[i].metadata.intent == "fix" ? 1 : 0;
      credits += out[i].credits;
    }
    if (turns.size() < 3 || fixes * 2 <= static_cast<std::int64_t>(turns.size()) ||
        credits < Millicredits::from_mc(30'000)) {
      continue;
    }
    reverted.insert(turns.begin() + 1, turns.end());
  }
  std::vector<Event> left;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (reverted.count(i) == 0) left.push_back(out[i]);
  }
  return left;
}

TEST(Replay, EveryCombinationChainsExactlyAndSavesNoCreditTwice) {
  const std::vector<Event> history = overlapping_history();
  const std::vector<std::string> names = {"discuss-off", "rate-limit",   "cache",   "scoped",
                                          "editor",      "revert-loops", "outliers"};
  for (unsigned mask = 1; mask < (1u << names.size()); ++mask) {
    std::vector<Policy> policies;
    std::string label;
    for (std::size_t i = 0; i < names.size(); ++i) {
      if ((mask & (1u << i)) == 0) continue;
      policies.push_back(*parse_policy(names[i]));
      label += "+" + names[i];
    }
    SCOPED_TRACE(label);
    const ReplayReport r = replay(history, policies);
    const PolicyOutcome& o = policies.size() == 1 ? r.policies[0] : *r.combined;
    EXPECT_LE(o.saved.mc(), o.before.mc());
    EXPECT_GE(o.after.mc(), 0);
    Millicredits stages;
    for (const auto& s : o.stages) stages += s.saved;
    EXPECT_EQ(stages.mc(), o.saved.mc());
    // Sequentially: the last policy alone on what the others (in the chain order) left.
    std::vector<Event> left = history;
    for (std::size_t i = 0; i + 1 < policies.size(); ++i) left = leave(left, policies[i].kind);
    const ReplayReport last = replay(left, {policies.back()});
    EXPECT_EQ(o.after.mc(), last.policies[0].after.mc());
  }
}

TEST(Replay, RevertLoopsAndOutliersTogetherSaveTheLoopOnce) {
  // The audit's reproduction: u1..u3 one 10-credit turn each; u4 a loop of three 100-credit
  // fixes (waste 200) and an outlier (excess 300 - 3 x 10 = 270 alone).
  std::vector<Event> events;
  for (const char* u : {"u1", "u2", "u3"}) {
    Event e = charge(Kind::kAgentPrompt, kT0, 10'000, u);
    e.metadata.file = std::string(u) + ".js";
    events.push_back(e);
  }
  for (int i = 0; i < 3; ++i) {
    Event e = charge(Kind::kAgentPrompt, kT0 + (1 + i) * 3'600'000, 100'000, "u4");
    e.metadata.file = "d.js";
    e.metadata.intent = "fix";
    events.push_back(e);
  }
  auto r = replay(events, {*parse_policy("revert-loops"), *parse_policy("outliers")});
  EXPECT_EQ(r.policies[0].saved.mc(), 200'000);
  EXPECT_EQ(r.policies[1].saved.mc(), 270'000);
  ASSERT_TRUE(r.combined.has_value());
  // After the loop is reverted, u4 has 100 credits in one turn: the median is 10 and
  // u4's excess 100 - 30 = 70.
  EXPECT_EQ(r.combined->saved.mc(), 270'000);
  EXPECT_EQ(r.combined->after.mc(), 60'000);
  ASSERT_EQ(r.combined->stages.size(), 2u);
  EXPECT_EQ(r.combined->stages[0].saved.mc(), 200'000);
  EXPECT_EQ(r.combined->stages[1].saved.mc(), 70'000);
}

// --- plans and pools --------------------------------------------------------------------

const pricing::RateCard& two_pools_card() {
  static const pricing::RateCard c = [] {
    auto r = pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) +
                                          "/config/examples/two-pools-rate-card.toml");
    EXPECT_TRUE(r.ok());
    return *r;
  }();
  return c;
}

const pricing::Catalog& two_pools_plans() {
  static const pricing::Catalog c = [] {
    auto r = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) +
                                        "/config/examples/two-pools.toml");
    EXPECT_TRUE(r.ok());
    return *r;
  }();
  return c;
}

TEST(Replay, PlanPolicyTakesEachSavingOffThePoolOfTheEventsItSaved) {
  // regress20's reproduction: four users with a 1-credit prompt each, u4 also ten 100-credit
  // invokeLLM calls: u4's outlier excess is nearly all integration credits.
  std::vector<Event> events;
  for (const char* u : {"u1", "u2", "u3", "u4"}) {
    events.push_back(charge(Kind::kAgentPrompt, kT0, 1'000, u));
  }
  for (int i = 0; i < 10; ++i) events.push_back(charge(Kind::kInvokeLlm, kT0 + i, 100'000, "u4"));
  for (const char* plan : {"plan:starter", "plan:elite"}) {
    SCOPED_TRACE(plan);
    Replayer replayer(two_pools_card(), &two_pools_plans(),
                      {*parse_policy("outliers"), *parse_policy(plan)});
    for (const auto& e : events) replayer.add(e);
    const ReplayReport r = replayer.finish();
    ASSERT_TRUE(r.combined.has_value());
    const PolicyOutcome& o = *r.combined;
    EXPECT_EQ(o.before.mc(), 1'004'000);
    Millicredits by_pool;
    for (const auto& [pool, after] : o.after_by_pool) {
      EXPECT_GE(after.mc(), 0) << pool;
      by_pool += after;
    }
    EXPECT_EQ(by_pool.mc(), o.after.mc());
    // u4's 1,001 credits lose 998 (1001 - 3 x 1) in proportion, 1 of message to 1,000 of
    // integration: 997.002 of integration, 0.997 of message and the millicredit left over.
    EXPECT_EQ(o.after.mc(), 6'000);
    EXPECT_EQ(o.after_by_pool.at("integration").mc(), 2'998);
    EXPECT_EQ(o.after_by_pool.at("message").mc(), 3'002);
    ASSERT_TRUE(o.plan.has_value());
    // 2.998 integration credits a day: 89.94 a cycle, within every plan's allowance.
    EXPECT_TRUE(o.plan->fits);
  }
}

TEST(Replay, PlanFitNamesAPoolThePlanLacks) {
  // The default card's pool, "credits", is in none of the two-pools plans.
  auto r = replay({charge(Kind::kAgentPrompt, kT0, 10'000)}, {*parse_policy("plan:elite")},
                  &two_pools_plans());
  ASSERT_TRUE(r.policies[0].plan.has_value());
  const PlanFit& fit = *r.policies[0].plan;
  EXPECT_FALSE(fit.fits);
  EXPECT_EQ(fit.pool, "credits");
  EXPECT_EQ(fit.allowance.mc(), 0);
  EXPECT_EQ(fit.need_per_cycle.mc(), 300'000);
}

TEST(Replay, UnknownPolicyIsAnError) {
  auto p = parse_policy("free-lunch");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().detail("param"), "\"policy\"");
}

}  // namespace
}  // namespace credit::analytics
