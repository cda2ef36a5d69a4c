// src/pricing/plan.h
// Plans (tiers) and the catalog that holds them, loaded from TOML (config/plans.toml).
// Owns: Plan, Catalog, their validation. Does not: apply a plan to an account (ledger/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "money/money.h"

namespace credit::pricing {

enum class CycleAnchor : std::uint8_t { kSignup = 0, kBilling = 1 };

struct PoolAllowance {
  std::string pool;
  Millicredits allowance;
  std::optional<Millicredits> daily_cap;  // nullopt: no cap
};

// Rate limits above a million requests a minute are not limits: the bound of a plans
// file, of PUT .../rate-limits and of creditctl replay alike.
constexpr std::int64_t kRateLimitMax = 1'000'000;

struct RateLimit {
  std::int64_t per_minute = 0;
  std::int64_t burst = 0;
};

struct PlanRateLimits {
  std::optional<RateLimit> per_user;
  std::optional<RateLimit> per_account;
};
// An account's overrides over its plan's limits: each limit the override names replaces
// the plan's, the other stays the plan's (PUT /v1/accounts/{id}/rate-limits).
inline PlanRateLimits in_force(const PlanRateLimits& overrides, const PlanRateLimits& plan) {
  return PlanRateLimits{overrides.per_user ? overrides.per_user : plan.per_user,
                        overrides.per_account ? overrides.per_account : plan.per_account};
}

struct Plan {
  std::string id;
  std::string name;
  std::int64_t price_usd_cents = 0;
  std::vector<PoolAllowance> pools;  // in file order; the first is the default pool
  CycleAnchor cycle_anchor = CycleAnchor::kBilling;
  bool packs_allowed = false;
  std::int64_t rollover_percent = 0;         // 0..100
  std::optional<Millicredits> rollover_cap;  // nullopt: the new allowance
  std::int64_t pack_expiry_days = 365;
  std::int64_t pack_price_usd_cents = 0;  // per 1,000 credits
  PlanRateLimits rate_limits;

  const PoolAllowance* pool(std::string_view name) const;
};

struct Catalog {
  std::vector<Plan> plans;  // in file order
  // The TOML text the catalog was parsed from (logged with a config load).
  std::string source_text;
  const Plan* find(std::string_view id) const;
};

// Parses a catalog from TOML text; errors name `source` (a file name), the line and the
// field: "config/plans.toml:12: plans.pro.price_usd_cents: must be >= 0".
// Error code: kInvalidRequest.
Result<Catalog> parse_catalog(std::string_view toml_text, std::string_view source);
Result<Catalog> load_catalog_file(const std::string& path);

}  // namespace credit::pricing
