// tests/pricing/plan_test.cc
// The shipped catalogs match DESIGN.md's tables, and bad catalogs are refused with errors
// that name the file, the line and the field.
#include "pricing/plan.h"

#include <gtest/gtest.h>

#include <string>

namespace credit::pricing {
namespace {

const std::string kSourceDir = CREDITD_SOURCE_DIR;

Millicredits credits(std::int64_t whole) {
  return Millicredits::from_mc(whole * 1000);
}

Catalog load(const std::string& relative) {
  Result<Catalog> catalog = load_catalog_file(kSourceDir + "/" + relative);
  EXPECT_TRUE(catalog.ok()) << (catalog.ok() ? "" : catalog.error().message);
  return catalog.ok() ? *catalog : Catalog{};
}

std::string parse_error(std::string_view text) {
  Result<Catalog> catalog = parse_catalog(text, "test.toml");
  EXPECT_FALSE(catalog.ok());
  if (catalog.ok()) return "";
  EXPECT_EQ(catalog.error().code, ErrorCode::kInvalidRequest);
  return catalog.error().message;
}

constexpr std::string_view kMinimal = R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = 100
)";

TEST(DefaultCatalog, MatchesTheDesignTable) {
  Catalog catalog = load("config/plans.toml");
  struct Row {
    const char* id;
    const char* name;
    std::int64_t price_usd_cents;
    std::int64_t credits;
    CycleAnchor anchor;
  };
  const Row rows[] = {
      {"free", "Free", 0, 100, CycleAnchor::kSignup},
      {"starter", "Starter", 2000, 2000, CycleAnchor::kBilling},
      {"builder", "Builder", 5000, 5000, CycleAnchor::kBilling},
      {"pro", "Pro", 10000, 10000, CycleAnchor::kBilling},
      {"elite", "Elite", 20000, 25000, CycleAnchor::kBilling},
      {"enterprise", "Enterprise", 100000, 100000, CycleAnchor::kBilling},
  };
  ASSERT_EQ(catalog.plans.size(), std::size(rows));
  for (std::size_t i = 0; i < std::size(rows); ++i) {
    const Plan& plan = catalog.plans[i];
    SCOPED_TRACE(plan.id);
    EXPECT_EQ(plan.id, rows[i].id);
    EXPECT_EQ(plan.name, rows[i].name);
    EXPECT_EQ(plan.price_usd_cents, rows[i].price_usd_cents);
    EXPECT_EQ(plan.cycle_anchor, rows[i].anchor);
    ASSERT_EQ(plan.pools.size(), 1u);
    EXPECT_EQ(plan.pools[0].pool, "credits");
    EXPECT_EQ(plan.pools[0].allowance, credits(rows[i].credits));
    EXPECT_EQ(plan.rollover_percent, 0);
    EXPECT_EQ(plan.packs_allowed, plan.id == "enterprise");
    EXPECT_EQ(plan.pools[0].daily_cap.has_value(), plan.id == "free");
    ASSERT_TRUE(plan.rate_limits.per_user.has_value());
    ASSERT_TRUE(plan.rate_limits.per_account.has_value());
  }
  EXPECT_EQ(catalog.find("free")->pools[0].daily_cap, credits(25));
  const Plan* enterprise = catalog.find("enterprise");
  EXPECT_EQ(enterprise->pack_expiry_days, 365);
  EXPECT_EQ(enterprise->pack_price_usd_cents, 1000);
  EXPECT_EQ(catalog.find("free")->rate_limits.per_user->per_minute, 20);
  EXPECT_EQ(catalog.find("free")->rate_limits.per_account->per_minute, 60);
  EXPECT_EQ(catalog.find("nope"), nullptr);
  EXPECT_FALSE(catalog.source_text.empty());
}

TEST(DefaultCatalog, RateLimitsGrowWithTheTier) {
  Catalog catalog = load("config/plans.toml");
  for (std::size_t i = 1; i < catalog.plans.size(); ++i) {
    EXPECT_GT(catalog.plans[i].rate_limits.per_user->per_minute,
              catalog.plans[i - 1].rate_limits.per_user->per_minute);
    EXPECT_GT(catalog.plans[i].rate_limits.per_account->per_minute,
              catalog.plans[i - 1].rate_limits.per_account->per_minute);
  }
}

TEST(TwoPoolsCatalog, MatchesBase44sPublishedFigures) {
  Catalog catalog = load("config/examples/two-pools.toml");
  struct Row {
    const char* id;
    std::int64_t price_usd_cents;
    std::int64_t message;
    std::int64_t integration;
  };
  const Row rows[] = {
      {"free", 0, 25, 100},       {"starter", 2000, 100, 2000},  {"builder", 5000, 250, 10000},
      {"pro", 10000, 500, 20000}, {"elite", 20000, 1200, 50000},
  };
  ASSERT_EQ(catalog.plans.size(), std::size(rows));
  for (std::size_t i = 0; i < std::size(rows); ++i) {
    const Plan& plan = catalog.plans[i];
    SCOPED_TRACE(plan.id);
    EXPECT_EQ(plan.id, rows[i].id);
    EXPECT_EQ(plan.price_usd_cents, rows[i].price_usd_cents);
    ASSERT_EQ(plan.pools.size(), 2u);
    // File order, not key order: "message" is the default pool.
    EXPECT_EQ(plan.pools[0].pool, "message");
    EXPECT_EQ(plan.pools[1].pool, "integration");
    EXPECT_EQ(plan.pool("message")->allowance, credits(rows[i].message));
    EXPECT_EQ(plan.pool("integration")->allowance, credits(rows[i].integration));
    EXPECT_FALSE(plan.packs_allowed);
  }
  const Plan* free = catalog.find("free");
  EXPECT_EQ(free->cycle_anchor, CycleAnchor::kSignup);
  EXPECT_EQ(free->pool("message")->daily_cap, credits(5));
  EXPECT_EQ(free->pool("integration")->daily_cap, std::nullopt);
  EXPECT_EQ(free->pool("credits"), nullptr);
}

TEST(Catalog, PlansKeepFileOrderNotKeyOrder) {
  Result<Catalog> catalog = parse_catalog(R"([plans.zeta]
name = "Z"
price_usd_cents = 5
[plans.zeta.pools.b]
allowance = 1
[plans.zeta.pools.a]
allowance = 2
[plans.alpha]
name = "A"
price_usd_cents = 1
[plans.alpha.pools.a]
allowance = 1
)",
                                          "order.toml");
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  ASSERT_EQ(catalog->plans.size(), 2u);
  EXPECT_EQ(catalog->plans[0].id, "zeta");
  EXPECT_EQ(catalog->plans[1].id, "alpha");
  EXPECT_EQ(catalog->plans[0].pools[0].pool, "b");
}

TEST(Catalog, DefaultsApplyToOptionalFields) {
  Result<Catalog> catalog = parse_catalog(kMinimal, "min.toml");
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  const Plan& plan = catalog->plans[0];
  EXPECT_EQ(plan.cycle_anchor, CycleAnchor::kBilling);
  EXPECT_FALSE(plan.packs_allowed);
  EXPECT_EQ(plan.rollover_percent, 0);
  EXPECT_EQ(plan.rollover_cap, std::nullopt);
  EXPECT_EQ(plan.pack_expiry_days, 365);
  EXPECT_EQ(plan.rate_limits.per_user, std::nullopt);
  EXPECT_EQ(plan.pools[0].daily_cap, std::nullopt);
}

TEST(Catalog, FractionalCreditsAreExactDecimalStrings) {
  Result<Catalog> catalog = parse_catalog(R"([plans.p]
name = "P"
price_usd_cents = 0
rollover_cap = "0.125"
[plans.p.pools.credits]
allowance = "12.5"
daily_cap = "0.001"
)",
                                          "frac.toml");
  ASSERT_TRUE(catalog.ok()) << catalog.error().message;
  EXPECT_EQ(catalog->plans[0].pools[0].allowance, Millicredits::from_mc(12'500));
  EXPECT_EQ(catalog->plans[0].pools[0].daily_cap, Millicredits::from_mc(1));
  EXPECT_EQ(catalog->plans[0].rollover_cap, Millicredits::from_mc(125));
}

TEST(Catalog, ErrorsNameFileLineAndField) {
  EXPECT_EQ(parse_error(R"([plans.pro]
name = "Pro"
price_usd_cents = -1
[plans.pro.pools.credits]
allowance = 1
)"),
            "test.toml:3: plans.pro.price_usd_cents: must be an integer >= 0 and <= "
            "100000000000");

  std::string unknown = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
colour = "blue"
[plans.free.pools.credits]
allowance = 1
)");
  EXPECT_NE(unknown.find("test.toml:4: plans.free.colour: unknown key"), std::string::npos)
      << unknown;

  std::string missing = parse_error(R"([plans.free]
name = "Free"
[plans.free.pools.credits]
allowance = 1
)");
  EXPECT_NE(missing.find("test.toml:1: plans.free.price_usd_cents: missing"), std::string::npos)
      << missing;

  std::string rollover = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
rollover_percent = 101
[plans.free.pools.credits]
allowance = 1
)");
  EXPECT_NE(rollover.find("test.toml:4: plans.free.rollover_percent: must be an integer >= 0 "
                          "and <= 100"),
            std::string::npos)
      << rollover;

  std::string negative_allowance = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = -5
)");
  EXPECT_NE(negative_allowance.find("test.toml:5: plans.free.pools.credits.allowance: must be "
                                    "credits from 0"),
            std::string::npos)
      << negative_allowance;

  std::string float_credits = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = 0.5
)");
  EXPECT_NE(float_credits.find("test.toml:5: plans.free.pools.credits.allowance:"),
            std::string::npos)
      << float_credits;

  std::string too_precise = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = "0.0001"
)");
  EXPECT_NE(too_precise.find("test.toml:5: plans.free.pools.credits.allowance:"), std::string::npos)
      << too_precise;

  std::string anchor = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
cycle_anchor = "monday"
[plans.free.pools.credits]
allowance = 1
)");
  EXPECT_NE(anchor.find("test.toml:4: plans.free.cycle_anchor: must be \"signup\" or"),
            std::string::npos)
      << anchor;

  std::string burst = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = 1
[plans.free.rate_limits]
per_user = { per_minute = 10 }
)");
  EXPECT_NE(burst.find("plans.free.rate_limits.per_user.burst: missing"), std::string::npos)
      << burst;
}

TEST(Catalog, RefusesDuplicatePlanIds) {
  std::string duplicate = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
[plans.free.pools.credits]
allowance = 1
[plans.free]
name = "Again"
)");
  EXPECT_NE(duplicate.find("test.toml:6:"), std::string::npos) << duplicate;
}

TEST(Catalog, RefusesAPlanWithoutPools) {
  std::string no_pools = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
)");
  EXPECT_NE(no_pools.find("test.toml:1: plans.free.pools: missing"), std::string::npos) << no_pools;

  std::string empty_pools = parse_error(R"([plans.free]
name = "Free"
price_usd_cents = 0
pools = {}
)");
  EXPECT_NE(empty_pools.find("test.toml:4: plans.free.pools: a plan needs at least one pool"),
            std::string::npos)
      << empty_pools;
}

TEST(Catalog, RefusesAnEmptyCatalogAndUnknownTopLevelKeys) {
  EXPECT_NE(parse_error("").find("test.toml:1: plans: missing"), std::string::npos);
  EXPECT_NE(parse_error("plans = {}\n").find("at least one plan"), std::string::npos);
  std::string top = parse_error("version = 2\n" + std::string(kMinimal));
  EXPECT_NE(top.find("test.toml:1: version: unknown key"), std::string::npos) << top;
  std::string in_pool = parse_error(std::string(kMinimal) + "cap = 2\n");
  EXPECT_NE(in_pool.find("test.toml:6: plans.free.pools.credits.cap: unknown key"),
            std::string::npos)
      << in_pool;
}

TEST(Catalog, PacksNeedAPrice) {
  std::string packs = parse_error(R"([plans.big]
name = "Big"
price_usd_cents = 100
packs_allowed = true
[plans.big.pools.credits]
allowance = 1
)");
  EXPECT_NE(packs.find("test.toml:1: plans.big.pack_price_usd_cents: missing"), std::string::npos)
      << packs;
}

TEST(Catalog, RefusesBadIds) {
  std::string id = parse_error(R"([plans."Free Tier"]
name = "Free"
price_usd_cents = 0
[plans."Free Tier".pools.credits]
allowance = 1
)");
  EXPECT_NE(id.find("plans.\"Free Tier\": a plan id is"), std::string::npos) << id;
}

TEST(Catalog, SyntaxErrorsNameTheLine) {
  std::string syntax = parse_error("[plans.free]\nname = \"Free\nprice_usd_cents = 0\n");
  EXPECT_EQ(syntax.rfind("test.toml:2: ", 0), 0u) << syntax;
}

TEST(Catalog, UnreadableFileNamesThePath) {
  Result<Catalog> catalog = load_catalog_file("/nonexistent/plans.toml");
  ASSERT_FALSE(catalog.ok());
  EXPECT_NE(catalog.error().message.find("/nonexistent/plans.toml"), std::string::npos);
}

}  // namespace
}  // namespace credit::pricing
