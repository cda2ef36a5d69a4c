// src/pricing/rate_card.h
// The rate card: prices each kind of operation from its usage, in integer millicredits,
// and names the pool it draws from. cost_mc = ceil((base_mc * 1000 + input_mc_per_1k *
// input_tokens + output_mc_per_1k * output_tokens + ...) * multiplier_milli / 10^6),
// computed in 128-bit integers and rounded once.
// Owns: RateCard, its TOML loading and validation, pricing. Does not: charge (ledger/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "money/money.h"
#include "pricing/plan.h"
#include "pricing/usage.h"

namespace credit::pricing {

struct Price {
  Millicredits cost;
  std::string_view pool;  // points into the rate card
};

class RateCard {
 public:
  // Parses TOML text; errors name `source`, the line and the field (kInvalidRequest).
  static Result<RateCard> parse(std::string_view toml_text, std::string_view source);
  static Result<RateCard> load_file(const std::string& path);

  std::int64_t version() const;
  // The pool the kind draws from.
  std::string_view pool(Kind kind) const;
  // Prices a usage. Errors: kInvalidUsage with detail "param" naming the dimension
  // ("usage.model", "usage.size", "usage.input_tokens", ...) for an unknown model or
  // size, a dimension the kind does not take, a negative or too large value.
  // Missing dimensions count as 0, a missing model is "default", a missing size is
  // "1024x1024", a missing count is 1.
  Result<Price> price(Kind kind, const Usage& usage) const;
  // The model a usage of `kind` is priced as: its own, "default" when it names none and
  // the kind takes a model, nullopt for kinds without one (DESIGN.md, rate card).
  static std::optional<std::string_view> priced_model(Kind kind, const Usage& usage);
  // Checks a usage without pricing it (same errors as price()).
  Status validate(Kind kind, const Usage& usage) const;

  // The TOML text this card was parsed from (logged with a config load, so a replay
  // rebuilds the same card without reading a file).
  const std::string& source_text() const;

  // Defined in rate_card.cc; holds the per-kind constants, models and sizes.
  struct Impl;
  RateCard();
  ~RateCard();
  RateCard(const RateCard&);
  RateCard& operator=(const RateCard&);
  RateCard(RateCard&&) noexcept;
  RateCard& operator=(RateCard&&) noexcept;

 private:
  Impl* impl_;
};

// creditd refuses to start when a rate card names a pool that a plan lacks. The error
// names the kind, the pool and the plan.
Status check_rate_card_pools(const Catalog& catalog, const RateCard& card);

}  // namespace credit::pricing
