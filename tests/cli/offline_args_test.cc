// tests/cli/offline_args_test.cc
// The offline commands' refusals of their arguments (exit 2, before any file is read):
// --hit-rate values replay cannot tell apart, and a plans/rate-card pair creditd refuses.
#include <gtest/gtest.h>

#include <string>

#include "cli/offline.h"

namespace credit::cli {
namespace {

const std::string kSource = CREDITD_SOURCE_DIR;
const std::string kTwoPoolsPlans = kSource + "/config/examples/two-pools.toml";
const std::string kTwoPoolsCard = kSource + "/config/examples/two-pools-rate-card.toml";
const std::string kMissingFile = "/nonexistent/events.ndjson";

ReplayArgs replay_args(std::vector<std::string> hit_rates) {
  ReplayArgs a;
  a.file = kMissingFile;
  a.policies = {"cache"};
  a.rate_card = kSource + "/config/rate_card.toml";
  a.plans = kSource + "/config/plans.toml";
  a.hit_rates = std::move(hit_rates);
  return a;
}

TEST(OfflineArgs, HitRateWithoutACallSiteNameIsAUsageError) {
  EXPECT_EQ(run_replay(replay_args({"=0.5"})), kExitUsage);
}

TEST(OfflineArgs, HitRateGivenTwiceForTheSameSitesIsAUsageError) {
  EXPECT_EQ(run_replay(replay_args({"0.5", "0.6"})), kExitUsage);
  EXPECT_EQ(run_replay(replay_args({"Home=0.5", "Home=0.6"})), kExitUsage);
  // One for every site and one for a site: accepted (the missing file is exit 3, read after
  // the arguments are checked).
  EXPECT_EQ(run_replay(replay_args({"0.5", "Home=0.6"})), kExitBadInput);
}

TEST(OfflineArgs, APlanCatalogThatLacksAPoolOfTheRateCardIsRefusedAsCreditdRefusesIt) {
  // The default card draws from "credits", which no two-pools plan has.
  ReplayArgs replay = replay_args({});
  replay.policies = {"plan:elite"};
  replay.plans = kTwoPoolsPlans;
  EXPECT_EQ(run_replay(replay), kExitUsage);
  AuditArgs audit;
  audit.file = kMissingFile;
  audit.rate_card = replay.rate_card;
  audit.plans = kTwoPoolsPlans;
  audit.plan = "elite";
  EXPECT_EQ(run_audit(audit), kExitUsage);
  SimulateArgs simulate;
  simulate.rate_card = replay.rate_card;
  simulate.plans = kTwoPoolsPlans;
  simulate.plan = "elite";
  simulate.out = "/dev/null";
  EXPECT_EQ(run_simulate(simulate), kExitUsage);
  // With its own card the pair is accepted.
  replay.rate_card = kTwoPoolsCard;
  EXPECT_EQ(run_replay(replay), kExitBadInput);
}

}  // namespace
}  // namespace credit::cli
