// tests/sim/simulate_test.cc
// The simulator: deterministic from a seed, realistic shares, and waste that the audit
// finds exactly as planted (and none at all on `clean`).
#include "sim/simulate.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "analytics/audit.h"
#include "analytics/event_json.h"
#include "time/time.h"

namespace credit::sim {
namespace {

using analytics::AuditReport;

const pricing::RateCard& card() {
  static const pricing::RateCard c = [] {
    auto r =
        pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) + "/config/rate_card.toml");
    EXPECT_TRUE(r.ok());
    return *r;
  }();
  return c;
}

// The two-pools example (config/examples): one message credit per agent or discuss turn.
const pricing::RateCard& two_pools_card() {
  static const pricing::RateCard c = [] {
    auto r = pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) +
                                          "/config/examples/two-pools-rate-card.toml");
    EXPECT_TRUE(r.ok());
    return *r;
  }();
  return c;
}

const pricing::Catalog& catalog(bool two_pools) {
  static const auto load = [](const char* file) {
    auto r = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + file);
    EXPECT_TRUE(r.ok());
    return *r;
  };
  static const pricing::Catalog def = load("/config/plans.toml");
  static const pricing::Catalog two = load("/config/examples/two-pools.toml");
  return two_pools ? two : def;
}

constexpr std::int64_t kStartMs = 1'772'409'600'000;  // 2026-03-02T00:00:00Z, a Monday

struct SimRun {
  Truth truth;
  std::vector<AuditReport> reports;
  std::vector<ledger::Event> events;
};

SimRun run(std::string profile, std::uint64_t seed, std::int64_t accounts = 1,
           std::int64_t days = 28, std::int64_t start_ms = kStartMs,
           const pricing::RateCard& rate_card = card()) {
  SimOptions o;
  o.profile = std::move(profile);
  o.seed = seed;
  o.accounts = accounts;
  o.days = days;
  o.start_ms = start_ms;
  SimRun r;
  analytics::Auditor auditor(rate_card, {});
  auto truth = simulate(o, rate_card, [&](const ledger::Event& e) {
    auditor.add(e);
    r.events.push_back(e);
  });
  EXPECT_TRUE(truth.ok());
  r.truth = *truth;
  r.reports = auditor.finish();
  return r;
}

bool has_finding(const AuditReport& r, std::string_view code) {
  for (const auto& f : r.findings) {
    if (f.code == code) return true;
  }
  return false;
}

// Every planted item of the truth is in the audit, with the same numbers.
void expect_planted_found(const AccountTruth& t, const AuditReport& r) {
  SCOPED_TRACE(t.account_id);
  ASSERT_EQ(t.account_id, r.account_id);
  for (const auto& planted : t.loops) {
    bool found = false;
    for (const auto& l : r.loops) {
      if (l.file == planted.file && l.first_at_ms == planted.first_at_ms) {
        found = true;
        EXPECT_EQ(l.turns, planted.turns) << planted.file;
        EXPECT_EQ(l.revert_to_snapshot, planted.snapshot_id);
      }
    }
    EXPECT_TRUE(found) << "loop on " << planted.file << " at "
                       << format_rfc3339(planted.first_at_ms);
  }
  EXPECT_EQ(r.loops.size(), t.loops.size());
  for (const auto& planted : t.repeats) {
    bool found = false;
    for (const auto& row : r.repeats) {
      if (row.call_site != planted.call_site) continue;
      found = true;
      EXPECT_EQ(row.calls, planted.calls);
      EXPECT_EQ(row.paid_repeats, planted.paid_repeats);
    }
    EXPECT_EQ(found, planted.paid_repeats > 0) << planted.call_site;
  }
  std::int64_t planted_repeats = 0;
  for (const auto& planted : t.repeats) planted_repeats += planted.paid_repeats;
  EXPECT_EQ(r.repeat_calls_paid, planted_repeats);
  EXPECT_EQ(r.unscoped_prompts, t.unscoped_prompts);
  std::map<std::string, std::int64_t> by_user, by_file;
  for (const auto& row : r.unscoped_by_user) by_user[row.key] = row.count;
  for (const auto& row : r.unscoped_by_file) by_file[row.key] = row.count;
  for (const auto& c : t.unscoped_by_user) EXPECT_EQ(by_user[c.key], c.count) << c.key;
  for (const auto& c : t.unscoped_by_file) EXPECT_EQ(by_file[c.key], c.count) << c.key;
  EXPECT_EQ(r.small_edits, t.small_edits);
  EXPECT_EQ(r.turns_without_snapshot, t.turns_without_snapshot);
  // The outliers both ways: the planted one when the audit's rule makes it one, and a
  // natural one (a short period) too.
  std::set<std::string> outliers;
  for (const auto& o : r.outliers) outliers.insert(o.user_id);
  EXPECT_EQ(std::set<std::string>(t.outlier_users.begin(), t.outlier_users.end()), outliers);
  EXPECT_EQ(has_finding(r, "discuss_share_high"), t.discuss_heavy);
}

// Short periods too: a day or two of a profile can make a builder an outlier that was not
// planted, or leave the planted one under 3 x the median; the truth says what the audit
// will find, whatever the period.
TEST(Simulate, TheTruthEqualsTheAuditForShortPeriodsOfEveryProfile) {
  for (const auto& profile : profiles()) {
    for (std::int64_t days : {1, 2, 3, 14}) {
      for (std::uint64_t seed : {1, 2, 3, 4, 5, 6}) {
        SCOPED_TRACE(std::string(profile.name) + " seed " + std::to_string(seed) + ", " +
                     std::to_string(days) + " days");
        auto r = run(std::string(profile.name), seed, 4, days);
        ASSERT_EQ(r.reports.size(), r.truth.accounts.size());
        for (std::size_t i = 0; i < r.reports.size(); ++i) {
          expect_planted_found(r.truth.accounts[i], r.reports[i]);
        }
      }
    }
  }
}

TEST(Simulate, SameSeedSameEventsOtherSeedOtherEvents) {
  auto a = run("typical", 11, 2, 5);
  auto b = run("typical", 11, 2, 5);
  auto c = run("typical", 12, 2, 5);
  ASSERT_EQ(a.events.size(), b.events.size());
  for (std::size_t i = 0; i < a.events.size(); ++i) EXPECT_EQ(a.events[i], b.events[i]);
  EXPECT_NE(analytics::event_to_json(a.events[5]), analytics::event_to_json(c.events[5]));
}

// An import refuses a key the account already has (DESIGN.md, "Events"): two simulated
// periods, or two profiles, of one account must not share one.
TEST(Simulate, IdempotencyKeysAreUniquePerProfileSeedAndStart) {
  auto keys = [](const SimRun& r) {
    std::set<std::string> out;
    for (const auto& e : r.events) out.insert(e.idempotency_key);
    return out;
  };
  auto base = run("typical", 11, 2, 3);
  const std::set<std::string> mine = keys(base);
  EXPECT_EQ(mine.size(), base.events.size());  // unique within the file too
  EXPECT_TRUE(base.events.front().idempotency_key.starts_with("sim-typical-11-20260302-acct-00"))
      << base.events.front().idempotency_key;
  EXPECT_TRUE(mine.contains("sim-typical-11-20260302-acct-001-1"));
  EXPECT_TRUE(mine.contains("sim-typical-11-20260302-acct-002-1"));
  for (const SimRun& other :
       {run("typical", 12, 2, 3), run("typical", 11, 2, 3, kStartMs + kMsPerDay),
        run("regression-heavy", 11, 2, 3)}) {
    for (const auto& e : other.events) {
      EXPECT_FALSE(mine.contains(e.idempotency_key)) << e.idempotency_key;
    }
  }
  EXPECT_EQ(keys(run("typical", 11, 2, 3)), mine);  // the same flags, the same keys
}

TEST(Simulate, TheAccountEventsKeyIsUniqueToo) {
  SimOptions o;
  o.profile = "clean";
  o.seed = 3;
  o.days = 1;
  o.start_ms = kStartMs;
  o.plan = "pro";
  std::vector<ledger::Event> events;
  ASSERT_TRUE(simulate(o, card(), [&](const ledger::Event& e) { events.push_back(e); }).ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.front().type, ledger::EventType::kAccountCreated);
  EXPECT_EQ(events.front().idempotency_key, "sim-clean-3-20260302-acct-001-account");
}

TEST(Simulate, TheTruthCountsTheEventsNotTheAccountLines) {
  SimOptions o;
  o.profile = "clean";
  o.seed = 3;
  o.accounts = 2;
  o.days = 1;
  o.start_ms = kStartMs;
  o.plan = "pro";
  std::int64_t lines = 0, account_lines = 0;
  auto truth = simulate(o, card(), [&](const ledger::Event& e) {
    ++lines;
    if (e.type == ledger::EventType::kAccountCreated) ++account_lines;
  });
  ASSERT_TRUE(truth.ok());
  EXPECT_EQ(account_lines, 2);
  EXPECT_EQ(truth->events, lines - 2);  // as audit and replay count them
}

// The simulator generates whole UTC days: a start inside a day is refused rather than
// moved to its midnight (which put events before the start given).
TEST(Simulate, StartMustBeAUtcMidnight) {
  SimOptions o;
  o.profile = "typical";
  o.days = 2;
  o.start_ms = kStartMs + 10 * 3'600'000 + 30 * 60'000;  // 2026-03-02T10:30:00Z
  std::int64_t events = 0;
  auto refused = simulate(o, card(), [&](const ledger::Event&) { ++events; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().detail("param"), "\"start\"");
  EXPECT_NE(refused.error().message.find("2026-03-02T00:00:00Z"), std::string::npos)
      << refused.error().message;
  EXPECT_EQ(events, 0);
  o.start_ms = kStartMs;
  std::int64_t first_ms = -1;
  auto truth = simulate(o, card(), [&](const ledger::Event& e) {
    if (first_ms < 0) first_ms = e.at_ms;
  });
  ASSERT_TRUE(truth.ok());
  EXPECT_EQ(truth->start_ms, kStartMs);
  EXPECT_GE(first_ms, kStartMs);
}

TEST(Simulate, FormattedOnTwoThreadsGivesTheSameBytesAndTruthAsTheEventSink) {
  // 130 accounts: more than two of simulate_formatted's 64-account generation blocks, and
  // enough events a day for several 1,024-event formatting chunks.
  for (const char* profile : {"typical", "regression-heavy"}) {
    SimOptions o;
    o.profile = profile;
    o.seed = 5;
    o.accounts = 130;
    o.days = 3;
    o.start_ms = kStartMs;
    std::string one;
    auto t1 = simulate(o, card(), [&](const ledger::Event& e) {
      analytics::append_event_json(one, e);
      one += '\n';
    });
    ASSERT_TRUE(t1.ok());
    std::string two;
    std::size_t blocks = 0;
    auto t2 = simulate_formatted(
        o, card(),
        [](const ledger::Event& e, std::string& out) {
          analytics::append_event_json(out, e);
          out += '\n';
        },
        [&](std::string_view block) {
          two.append(block);
          ++blocks;
        });
    ASSERT_TRUE(t2.ok());
    EXPECT_GT(blocks, 3u) << profile;
    EXPECT_EQ(one.size(), two.size()) << profile;
    EXPECT_TRUE(one == two) << profile;
    EXPECT_EQ(truth_json(*t1), truth_json(*t2)) << profile;
  }
}

TEST(Simulate, EventsAreInTimeOrderWithSequenceNumbersAndRoundTrip) {
  auto r = run("llm-on-page-load", 3, 3, 3);
  ASSERT_FALSE(r.events.empty());
  for (std::size_t i = 0; i < r.events.size(); ++i) {
    EXPECT_EQ(r.events[i].seq, i + 1);
    if (i > 0) {
      EXPECT_GE(r.events[i].at_ms, r.events[i - 1].at_ms);
    }
    auto parsed = analytics::parse_event_json(analytics::event_to_json(r.events[i]));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, r.events[i]);
  }
}

TEST(Simulate, WorkHoursAndWeekdaysCarryTheBurn) {
  auto r = run("typical", 5, 1, 14);
  Millicredits weekday, weekend;
  for (const auto& e : r.events) {
    CivilTime t = civil_from_ms(e.at_ms);
    EXPECT_GE(t.hour, 8);
    EXPECT_LT(t.hour, 20);
    const std::int64_t weekday_index = (e.at_ms / kMsPerDay + 3) % 7;
    (weekday_index >= 5 ? weekend : weekday) += e.credits;
  }
  // 10 weekdays at full rate against 4 weekend days at a quarter.
  EXPECT_GT(weekday.mc(), 5 * weekend.mc());
}

TEST(Simulate, TypicalSharesAreInsideTheTypicalRanges) {
  for (std::uint64_t seed : {1, 2, 3, 4}) {
    auto r = run("typical", seed, 2);
    for (const auto& report : r.reports) {
      for (const auto& s : report.shares) {
        EXPECT_TRUE(s.in_range) << "seed " << seed << " " << s.source << " " << s.share;
      }
    }
  }
}

TEST(Simulate, CleanGivesAnAuditWithNoFindings) {
  for (std::uint64_t seed : {1, 2, 3, 4, 5}) {
    auto r = run("clean", seed, 3);
    for (const auto& report : r.reports) {
      EXPECT_TRUE(report.findings.empty()) << "seed " << seed << ": " << report.findings[0].code;
      EXPECT_TRUE(report.fixes.empty());
      EXPECT_EQ(report.saved_per_cycle_all.mc(), 0);
    }
  }
}

// A single quiet day used to break the typical shares (one dear integration call on a
// weekend's small budget) or show an outlier builder (one of three users with three
// times the median's few turns); `clean` must be clean from one day up, whatever the
// start day.
TEST(Simulate, CleanGivesNoFindingsForEveryPeriodFromOneDay) {
  for (std::int64_t days : {1, 2, 3, 7, 30}) {
    for (std::uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
      for (std::int64_t offset_days : {0, 3, 5, 6}) {  // Monday, Thursday, Saturday, Sunday
        SimOptions o;
        o.profile = "clean";
        o.seed = seed;
        o.accounts = 3;
        o.days = days;
        o.start_ms = kStartMs + offset_days * kMsPerDay;
        analytics::Auditor auditor(card(), {});
        ASSERT_TRUE(simulate(o, card(), [&](const ledger::Event& e) { auditor.add(e); }).ok());
        for (const auto& report : auditor.finish()) {
          EXPECT_TRUE(report.findings.empty())
              << days << " days, seed " << seed << ", offset " << offset_days << ", "
              << report.account_id << ": " << report.findings[0].code;
          EXPECT_TRUE(report.fixes.empty());
        }
      }
    }
  }
}

TEST(Simulate, AuditFindsEveryPlantedItemOfEveryProfile) {
  for (const auto& profile : profiles()) {
    for (std::uint64_t seed : {1, 2}) {
      SCOPED_TRACE(std::string(profile.name) + " seed " + std::to_string(seed));
      auto r = run(std::string(profile.name), seed, 2);
      ASSERT_EQ(r.reports.size(), r.truth.accounts.size());
      for (std::size_t i = 0; i < r.reports.size(); ++i) {
        expect_planted_found(r.truth.accounts[i], r.reports[i]);
      }
    }
  }
}

TEST(Simulate, EachProfilePlantsItsWaste) {
  auto loops = run("regression-heavy", 1).truth.accounts[0];
  EXPECT_GE(loops.loops.size(), 8u);
  auto page = run("llm-on-page-load", 1);
  EXPECT_GT(page.truth.accounts[0].repeats[0].paid_repeats, 500);
  EXPECT_GT(page.reports[0].shares[1].share, 0.30);
  auto unscoped = run("unscoped", 1).truth.accounts[0];
  EXPECT_GT(unscoped.unscoped_prompts, 100);
  auto discuss = run("discuss-heavy", 1);
  EXPECT_GT(discuss.reports[0].discuss_share, 0.15);
  auto outlier = run("outlier-user", 1);
  ASSERT_EQ(outlier.truth.accounts[0].outlier_users.size(), 1u);
  EXPECT_TRUE(has_finding(outlier.reports[0], "user_outliers"));
}

TEST(Simulate, FixSavingsAgreeWithReplay) {
  auto r = run("llm-on-page-load", 9);
  std::vector<analytics::Policy> policies = analytics::audit_policies();
  analytics::Replayer replayer(card(), nullptr, policies);
  for (const auto& e : r.events) replayer.add(e);
  auto replay = replayer.finish();
  const AuditReport& report = r.reports[0];
  ASSERT_FALSE(report.fixes.empty());
  for (const auto& fix : report.fixes) {
    if (fix.policy.empty()) continue;
    bool found = false;
    for (const auto& p : replay.policies) {
      if (p.name != fix.policy) continue;
      found = true;
      EXPECT_EQ(fix.saved, p.saved) << fix.id;
      EXPECT_EQ(fix.saved_per_cycle, p.saved_per_cycle) << fix.id;
    }
    EXPECT_TRUE(found) << fix.policy;
  }
}

// "All fixes together" is the replay of the listed fixes' policies chained, and never more
// than the sum of the fixes' savings: none at all on `clean`, which lists no fix.
TEST(Simulate, AllFixesTogetherChainOnlyTheListedFixes) {
  for (const auto& profile : profiles()) {
    for (std::uint64_t seed : {7, 9}) {
      SCOPED_TRACE(std::string(profile.name) + " seed " + std::to_string(seed));
      auto r = run(std::string(profile.name), seed);
      const AuditReport& report = r.reports[0];
      std::vector<analytics::Policy> listed;
      Millicredits sum;
      for (const auto& fix : report.fixes) {
        sum += fix.saved_per_cycle;
        if (!fix.policy.empty()) listed.push_back(*analytics::parse_policy(fix.policy));
      }
      if (listed.empty()) {
        EXPECT_EQ(report.saved_per_cycle_all.mc(), 0);
        continue;
      }
      analytics::Replayer replayer(card(), nullptr, listed);
      for (const auto& e : r.events) replayer.add(e);
      auto replay = replayer.finish();
      const Millicredits chained = listed.size() == 1 ? replay.policies[0].saved_per_cycle
                                                      : replay.combined->saved_per_cycle;
      EXPECT_EQ(report.saved_per_cycle_all, min(chained, sum));
      EXPECT_LE(report.saved_per_cycle_all, sum);
    }
  }
}

// The work prices are the default card's: with it, every event's credits are its work, and
// the output is the one the default card gives.
TEST(Simulate, TheWorkPricesAreTheDefaultCards) {
  for (const auto& profile : profiles()) {
    SimOptions o;
    o.profile = std::string(profile.name);
    o.seed = 3;
    o.accounts = 2;
    o.days = 9;
    o.start_ms = kStartMs;
    std::vector<ledger::Event> with_default, with_work;
    ASSERT_TRUE(
        simulate(o, card(), [&](const ledger::Event& e) { with_default.push_back(e); }).ok());
    ASSERT_TRUE(
        simulate(o, work_prices(), [&](const ledger::Event& e) { with_work.push_back(e); }).ok());
    ASSERT_EQ(with_default.size(), with_work.size()) << profile.name;
    for (std::size_t i = 0; i < with_default.size(); ++i) {
      ledger::Event e = with_work[i];
      e.pool = with_default[i].pool;  // the work prices' one pool is named "work"
      ASSERT_EQ(with_default[i], e) << profile.name << " event " << i;
    }
  }
}

// Volume is activity, not credits: under a card where a message costs one credit, a
// profile makes the same operations with the same usage as under the default card (a
// balanced day may add agent turns for its windows: clean is left out), and only the
// credits differ.
TEST(Simulate, TheRateCardPricesTheOperationsButDoesNotChooseThem) {
  for (const auto& profile : profiles()) {
    if (profile.balanced) continue;
    SCOPED_TRACE(std::string(profile.name));
    auto def = run(std::string(profile.name), 4, 2, 14);
    auto two = run(std::string(profile.name), 4, 2, 14, kStartMs, two_pools_card());
    ASSERT_EQ(def.events.size(), two.events.size());
    for (std::size_t i = 0; i < def.events.size(); ++i) {
      const ledger::Event& d = def.events[i];
      ledger::Event t = two.events[i];
      EXPECT_EQ(t.credits.mc(), 1000) << i;  // every kind costs 1 credit on that card
      EXPECT_EQ(t.pool,
                d.kind == pricing::Kind::kAgentPrompt || d.kind == pricing::Kind::kDiscussTurn
                    ? "message"
                    : "integration");
      t.credits = d.credits;
      t.pool = d.pool;
      ASSERT_EQ(d, t) << i;
    }
  }
}

// With the two-pools files (one credit a message), the truth lists only what the audit's
// definitions make of the planted turns there: no loop (3-6 turns of 1 credit never cost
// 30), no small edit (1 credit, not 3), the discuss share of that card's burn; and it
// equals the audit for every profile, both ways.
TEST(Simulate, TwoPoolsTruthEqualsTheAuditForEveryProfile) {
  for (const auto& profile : profiles()) {
    for (std::uint64_t seed : {1, 2, 7}) {
      SCOPED_TRACE(std::string(profile.name) + " seed " + std::to_string(seed));
      auto r = run(std::string(profile.name), seed, 2, 30, kStartMs, two_pools_card());
      ASSERT_EQ(r.reports.size(), r.truth.accounts.size());
      for (std::size_t i = 0; i < r.reports.size(); ++i) {
        const AccountTruth& t = r.truth.accounts[i];
        EXPECT_TRUE(t.loops.empty());
        EXPECT_EQ(t.small_edits, 0);
        expect_planted_found(t, r.reports[i]);
      }
    }
  }
  // The default card's truth of the same profile does list them.
  EXPECT_FALSE(run("regression-heavy", 1).truth.accounts[0].loops.empty());
  EXPECT_GT(run("typical", 1).truth.accounts[0].small_edits, 0);
}

// `clean` has no findings with the two-pools card either: audited over every pool, and
// pool by pool (as `creditctl audit --plan` audits the plan's first pool), for every
// period from one day up.
TEST(Simulate, CleanGivesNoFindingsWithTheTwoPoolsCard) {
  for (std::int64_t days : {1, 2, 3, 7, 30}) {
    for (std::uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
      for (std::int64_t offset_days : {0, 3, 5, 6}) {
        SimOptions o;
        o.profile = "clean";
        o.seed = seed;
        o.accounts = 3;
        o.days = days;
        o.start_ms = kStartMs + offset_days * kMsPerDay;
        std::vector<analytics::Auditor> auditors;
        for (const char* pool : {"", "message", "integration"}) {
          analytics::AuditOptions options;
          options.pool = pool;
          auditors.emplace_back(two_pools_card(), std::move(options));
        }
        ASSERT_TRUE(simulate(o, two_pools_card(), [&](const ledger::Event& e) {
                      for (auto& a : auditors) a.add(e);
                    }).ok());
        for (auto& a : auditors) {
          for (const auto& report : a.finish()) {
            EXPECT_TRUE(report.findings.empty())
                << days << " days, seed " << seed << ", offset " << offset_days << ", "
                << report.account_id << " pool '" << report.pool
                << "': " << report.findings[0].message;
            EXPECT_TRUE(report.fixes.empty());
          }
        }
      }
    }
  }
}

// A month of any profile fits a plan of the catalog its card goes with: the default
// catalog's, and the two-pools one (where a month of credits-budgeted prompts used to
// overrun Elite's 1,200 messages within 20 days).
TEST(Simulate, AMonthOfEveryProfileFitsAPlanOfTheCatalog) {
  for (bool two_pools : {false, true}) {
    const pricing::RateCard& rate_card = two_pools ? two_pools_card() : card();
    const pricing::Catalog& plans = catalog(two_pools);
    for (const auto& profile : profiles()) {
      SCOPED_TRACE(std::string(profile.name) + (two_pools ? " two-pools" : " default"));
      auto r = run(std::string(profile.name), 5, 3, 30, kStartMs, rate_card);
      for (const auto& a : r.truth.accounts) {
        bool fits_one = false;
        for (const auto& plan : plans.plans) {
          bool fits = true;
          for (const auto& used : a.pools) {
            const pricing::PoolAllowance* pool = plan.pool(used.pool);
            fits = fits && pool != nullptr && pool->allowance >= used.period &&
                   (!pool->daily_cap || *pool->daily_cap >= used.day_max);
          }
          fits_one = fits_one || fits;
        }
        EXPECT_TRUE(fits_one) << a.account_id;
      }
    }
  }
}

TEST(Simulate, RejectsUnknownProfileAndBadRanges) {
  SimOptions o;
  o.profile = "chaos";
  auto sink = [](const ledger::Event&) {};
  EXPECT_FALSE(simulate(o, card(), sink).ok());
  o.profile = "clean";
  o.days = 0;
  EXPECT_FALSE(simulate(o, card(), sink).ok());
}

}  // namespace
}  // namespace credit::sim
