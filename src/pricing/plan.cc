// src/pricing/plan.cc
// Loads and validates the plan catalog (config/plans.toml); the format is documented at the
// top of that file. Owns: the catalog's rules (ids, pools, ranges). Does not: apply a plan.
#include "pricing/plan.h"

#include <set>

#include "pricing/internal/toml_reader.h"

namespace credit::pricing {
namespace {

using internal::ConfigFailure;
using internal::TableReader;

// A billion dollars per cycle: anything above is a typo, and it keeps proration in int64.
constexpr std::int64_t kPriceUsdCentsMax = 100'000'000'000LL;
// A hundred years: an expiry further out is "never", which packs do not offer.
constexpr std::int64_t kPackExpiryDaysMax = 36'500;
constexpr std::int64_t kPackExpiryDaysDefault = 365;
constexpr std::size_t kNameBytesMax = 128;
constexpr std::size_t kPlansMax = 1'000;
constexpr std::size_t kPoolsMax = 64;

RateLimit read_rate_limit(const TableReader& t) {
  t.only_keys({"per_minute", "burst"});
  RateLimit limit;
  limit.per_minute = t.required_int("per_minute", 1, kRateLimitMax);
  limit.burst = t.required_int("burst", 1, kRateLimitMax);
  return limit;
}

PlanRateLimits read_rate_limits(const TableReader& t) {
  t.only_keys({"per_user", "per_account"});
  PlanRateLimits limits;
  if (auto per_user = t.optional_table("per_user")) limits.per_user = read_rate_limit(*per_user);
  if (auto per_account = t.optional_table("per_account")) {
    limits.per_account = read_rate_limit(*per_account);
  }
  return limits;
}

PoolAllowance read_pool(const std::string& name, const TableReader& t) {
  if (!internal::is_plain_id(name, false)) {
    t.fail_here("a pool name is 1-64 characters of a-z, 0-9, '_' and '-'");
  }
  t.only_keys({"allowance", "daily_cap"});
  PoolAllowance pool;
  pool.pool = name;
  pool.allowance = t.required_credits("allowance");
  pool.daily_cap = t.optional_credits("daily_cap");
  return pool;
}

Plan read_plan(const std::string& id, const TableReader& t) {
  if (!internal::is_plain_id(id, false))
    t.fail_here("a plan id is 1-64 characters of a-z, 0-9, '_' and '-'");
  t.only_keys({"name", "price_usd_cents", "cycle_anchor", "packs_allowed", "rollover_percent",
               "rollover_cap", "pack_expiry_days", "pack_price_usd_cents", "pools", "rate_limits"});
  Plan plan;
  plan.id = id;
  plan.name = t.required_string("name");
  if (plan.name.empty() || plan.name.size() > kNameBytesMax) {
    internal::fail(t.table().get("name"), t.field("name"), "must be 1-128 bytes");
  }
  plan.price_usd_cents = t.required_int("price_usd_cents", 0, kPriceUsdCentsMax);

  std::string anchor = t.optional_string("cycle_anchor").value_or("billing");
  if (anchor == "signup") {
    plan.cycle_anchor = CycleAnchor::kSignup;
  } else if (anchor == "billing") {
    plan.cycle_anchor = CycleAnchor::kBilling;
  } else {
    internal::fail(t.table().get("cycle_anchor"), t.field("cycle_anchor"),
                   "must be \"signup\" or \"billing\"");
  }

  plan.packs_allowed = t.optional_bool("packs_allowed").value_or(false);
  plan.rollover_percent = t.optional_int("rollover_percent", 0, 100).value_or(0);
  plan.rollover_cap = t.optional_credits("rollover_cap");
  plan.pack_expiry_days =
      t.optional_int("pack_expiry_days", 1, kPackExpiryDaysMax).value_or(kPackExpiryDaysDefault);
  // A plan that sells packs must say what they cost; elsewhere the price is never read.
  if (plan.packs_allowed) {
    plan.pack_price_usd_cents = t.required_int("pack_price_usd_cents", 0, kPriceUsdCentsMax);
  } else {
    plan.pack_price_usd_cents =
        t.optional_int("pack_price_usd_cents", 0, kPriceUsdCentsMax).value_or(0);
  }

  TableReader pools = t.required_table("pools");
  for (auto& [name, pool_table] : pools.tables_in_file_order()) {
    plan.pools.push_back(read_pool(name, pool_table));
  }
  if (plan.pools.empty()) pools.fail_here("a plan needs at least one pool");
  if (plan.pools.size() > kPoolsMax) pools.fail_here("at most 64 pools");

  if (auto limits = t.optional_table("rate_limits")) plan.rate_limits = read_rate_limits(*limits);
  return plan;
}

Catalog read_catalog(std::string_view text, std::string_view source) {
  toml::table doc = internal::parse_toml(text, source);
  TableReader root(doc, "");
  root.only_keys({"plans"});
  TableReader plans = root.required_table("plans");
  Catalog catalog;
  // Duplicate ids are already refused by the TOML parser ("cannot redefine existing
  // table"); the set guards the invariant the lookups rely on.
  std::set<std::string> ids;
  for (auto& [id, plan_table] : plans.tables_in_file_order()) {
    if (!ids.insert(id).second) plan_table.fail_here("duplicate plan id");
    catalog.plans.push_back(read_plan(id, plan_table));
  }
  if (catalog.plans.empty()) plans.fail_here("the catalog needs at least one plan");
  if (catalog.plans.size() > kPlansMax) plans.fail_here("at most 1000 plans");
  catalog.source_text = std::string(text);
  return catalog;
}

}  // namespace

const PoolAllowance* Plan::pool(std::string_view name) const {
  for (const PoolAllowance& p : pools) {
    if (p.pool == name) return &p;
  }
  return nullptr;
}

const Plan* Catalog::find(std::string_view id) const {
  for (const Plan& p : plans) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

Result<Catalog> parse_catalog(std::string_view toml_text, std::string_view source) {
  try {
    return read_catalog(toml_text, source);
  } catch (const ConfigFailure& failure) {
    return internal::config_error(source, failure);
  }
}

Result<Catalog> load_catalog_file(const std::string& path) {
  Result<std::string> text = internal::read_config_file(path, "plan catalog");
  if (!text.ok()) return text.error();
  return parse_catalog(*text, path);
}

}  // namespace credit::pricing
