// src/pricing/rate_card.cc
// Loads and validates a rate card (config/rate_card.toml; the format is documented at the
// top of that file) and prices usage with it in 128-bit integers, rounding up once.
#include "pricing/rate_card.h"

#include <array>
#include <utility>
#include <vector>

#include "pricing/internal/toml_reader.h"

namespace credit::pricing {
namespace {

using internal::ConfigFailure;
using internal::TableReader;

// One rate is at most a million credits per unit: with dimensions up to 10^12, six terms
// and a 1000x multiplier the numerator stays below 10^31, far inside __int128 (1.7e38).
constexpr std::int64_t kRateMcMax = 1'000'000'000LL;
constexpr std::int64_t kMultiplierMilliMax = 1'000'000;
// The scale of the pricing numerator: rates are per 1k units or per unit (times 1000) and
// the multiplier is in thousandths, so the numerator is in millicredits x 10^6.
constexpr __int128 kNumeratorPerMc = 1'000'000;
constexpr std::int64_t kNoMultiplierMilli = 1000;
constexpr std::string_view kDefaultModel = "default";
constexpr std::string_view kDefaultSize = "1024x1024";
constexpr std::int64_t kDefaultCount = 1;

// The usage dimensions. A usage is checked in a fixed order, so the same bad usage always
// names the same param: model, then the integer dimensions in kIntDims order, then size.
enum Dim : unsigned {
  kModel = 1u << 0,
  kInputTokens = 1u << 1,
  kOutputTokens = 1u << 2,
  kFilesRead = 1u << 3,
  kLinesEmitted = 1u << 4,
  kLinesChanged = 1u << 5,
  kSize = 1u << 6,
  kCount = 1u << 7,
  kDurationMs = 1u << 8,
  kRecords = 1u << 9,
};

constexpr unsigned kLlmDims = kModel | kInputTokens | kOutputTokens;

// The dimensions each kind takes (DESIGN.md, "Operations and the rate card").
constexpr std::array<unsigned, kKindCount> kKindDims = {
    kLlmDims | kFilesRead | kLinesEmitted | kLinesChanged,  // agent_prompt
    kLlmDims,                                               // discuss_turn
    kLlmDims,                                               // integration.invoke_llm
    kSize | kCount,                                         // integration.generate_image
    kCount,                                                 // integration.send_email
    kDurationMs | kRecords,                                 // backend_function
};

struct IntDim {
  Dim dim;
  std::string_view param;
  const std::optional<std::int64_t> Usage::*field;
};

constexpr std::array<IntDim, 8> kIntDims = {{
    {kInputTokens, "usage.input_tokens", &Usage::input_tokens},
    {kOutputTokens, "usage.output_tokens", &Usage::output_tokens},
    {kFilesRead, "usage.files_read", &Usage::files_read},
    {kLinesEmitted, "usage.lines_emitted", &Usage::lines_emitted},
    {kLinesChanged, "usage.lines_changed", &Usage::lines_changed},
    {kCount, "usage.count", &Usage::count},
    {kDurationMs, "usage.duration_ms", &Usage::duration_ms},
    {kRecords, "usage.records", &Usage::records},
}};

Error usage_error(std::string_view param, std::string message) {
  Error error(ErrorCode::kInvalidUsage, std::string(param) + ": " + message);
  error.with_string("param", param);
  return error;
}

}  // namespace

struct RateCard::Impl {
  struct KindRates {
    std::string pool;
    std::int64_t base_mc = 0;
    std::int64_t input_mc_per_1k = 0;
    std::int64_t output_mc_per_1k = 0;
    std::int64_t per_file_read_mc = 0;
    std::int64_t per_line_emitted_mc = 0;
    std::int64_t per_line_changed_mc = 0;
    std::int64_t per_email_mc = 0;
    std::int64_t free_ms = 0;
    std::int64_t per_second_mc = 0;
    std::int64_t per_1k_records_mc = 0;
    std::vector<std::pair<std::string, std::int64_t>> per_image_mc;  // by size, file order
  };

  std::int64_t version = 0;
  std::array<KindRates, kKindCount> kinds;
  std::vector<std::pair<std::string, std::int64_t>> multiplier_milli;  // by model
  std::string source_text;

  const std::int64_t* multiplier(std::string_view model) const {
    for (const auto& [name, m] : multiplier_milli) {
      if (name == model) return &m;
    }
    return nullptr;
  }
  const std::int64_t* image_rate(const KindRates& rates, std::string_view size) const {
    for (const auto& [name, r] : rates.per_image_mc) {
      if (name == size) return &r;
    }
    return nullptr;
  }
  // What a checked usage resolves to before the arithmetic.
  struct Resolved {
    std::int64_t multiplier_milli = kNoMultiplierMilli;
    std::int64_t per_image_mc = 0;
  };
  Result<Resolved> check(Kind kind, const Usage& usage) const;
};

namespace {

RateCard::Impl::KindRates read_kind(Kind kind, const TableReader& t) {
  RateCard::Impl::KindRates rates;
  switch (kind) {
    case Kind::kAgentPrompt:
      t.only_keys({"pool", "base_mc", "input_mc_per_1k", "output_mc_per_1k", "per_file_read_mc",
                   "per_line_emitted_mc", "per_line_changed_mc"});
      break;
    case Kind::kDiscussTurn:
    case Kind::kInvokeLlm:
      t.only_keys({"pool", "base_mc", "input_mc_per_1k", "output_mc_per_1k"});
      break;
    case Kind::kGenerateImage:
      t.only_keys({"pool", "base_mc", "sizes"});
      break;
    case Kind::kSendEmail:
      t.only_keys({"pool", "base_mc", "per_email_mc"});
      break;
    case Kind::kBackendFunction:
      t.only_keys({"pool", "base_mc", "free_ms", "per_second_mc", "per_1k_records_mc"});
      break;
  }
  rates.pool = t.required_string("pool");
  if (!internal::is_plain_id(rates.pool, false)) {
    internal::fail(t.table().get("pool"), t.field("pool"),
                   "a pool name is 1-64 characters of a-z, 0-9, '_' and '-'");
  }
  auto rate = [&t](std::string_view key) { return t.optional_int(key, 0, kRateMcMax).value_or(0); };
  rates.base_mc = rate("base_mc");
  rates.input_mc_per_1k = rate("input_mc_per_1k");
  rates.output_mc_per_1k = rate("output_mc_per_1k");
  rates.per_file_read_mc = rate("per_file_read_mc");
  rates.per_line_emitted_mc = rate("per_line_emitted_mc");
  rates.per_line_changed_mc = rate("per_line_changed_mc");
  rates.per_email_mc = rate("per_email_mc");
  rates.free_ms = t.optional_int("free_ms", 0, kUsageDimensionMax).value_or(0);
  rates.per_second_mc = rate("per_second_mc");
  rates.per_1k_records_mc = rate("per_1k_records_mc");
  if (kind == Kind::kGenerateImage) {
    TableReader sizes = t.required_table("sizes");
    for (auto& [size, size_table] : sizes.tables_in_file_order()) {
      if (!internal::is_plain_id(size, false)) {
        size_table.fail_here("a size name is 1-64 characters of a-z, 0-9, '_' and '-'");
      }
      size_table.only_keys({"per_image_mc"});
      rates.per_image_mc.emplace_back(size, size_table.required_int("per_image_mc", 0, kRateMcMax));
    }
    // A usage without a size is priced as the default size, so the card must have it.
    bool has_default = false;
    for (const auto& entry : rates.per_image_mc) has_default |= entry.first == kDefaultSize;
    if (!has_default) sizes.fail_here("missing the default size \"1024x1024\"");
  }
  return rates;
}

RateCard::Impl read_card(std::string_view text, std::string_view source) {
  toml::table doc = internal::parse_toml(text, source);
  TableReader root(doc, "");
  root.only_keys({"version", "kinds", "models"});
  RateCard::Impl impl;
  impl.version = root.required_int("version", 1, INT64_MAX);

  TableReader kinds = root.required_table("kinds");
  std::array<bool, kKindCount> seen{};
  for (auto& [name, kind_table] : kinds.tables_in_file_order()) {
    std::optional<Kind> kind = parse_kind(name);
    if (!kind) {
      kind_table.fail_here(
          "unknown kind (known: agent_prompt, discuss_turn, integration.invoke_llm, "
          "integration.generate_image, integration.send_email, backend_function)");
    }
    seen[static_cast<std::size_t>(*kind)] = true;
    impl.kinds[static_cast<std::size_t>(*kind)] = read_kind(*kind, kind_table);
  }
  // Every kind has a price and a pool, so pool() and price() never meet a hole.
  for (int i = 0; i < kKindCount; ++i) {
    if (!seen[i]) {
      kinds.fail_here("missing kind \"" + std::string(kind_name(static_cast<Kind>(i))) +
                      "\" (a card prices every kind)");
    }
  }

  TableReader models = root.required_table("models");
  for (auto& [model, model_table] : models.tables_in_file_order()) {
    if (!internal::is_plain_id(model, true)) {
      model_table.fail_here("a model name is 1-64 characters of a-z, 0-9, '.', '_' and '-'");
    }
    model_table.only_keys({"multiplier_milli"});
    impl.multiplier_milli.emplace_back(
        model, model_table.required_int("multiplier_milli", 1, kMultiplierMilliMax));
  }
  if (!impl.multiplier(kDefaultModel)) {
    models.fail_here("missing the model \"default\" (used when a usage names no model)");
  }
  impl.source_text = std::string(text);
  return impl;
}

}  // namespace

Result<RateCard::Impl::Resolved> RateCard::Impl::check(Kind kind, const Usage& usage) const {
  const unsigned takes = kKindDims[static_cast<std::size_t>(kind)];
  const KindRates& rates = kinds[static_cast<std::size_t>(kind)];
  auto not_taken = [kind](std::string_view param) {
    return usage_error(param, std::string(kind_name(kind)) + " does not take this dimension");
  };
  Resolved resolved;
  if (usage.model) {
    if (!(takes & kModel)) return not_taken("usage.model");
  }
  if (const std::optional<std::string_view> model = RateCard::priced_model(kind, usage)) {
    const std::int64_t* m = multiplier(*model);
    if (!m) return usage_error("usage.model", "unknown model \"" + std::string(*model) + "\"");
    resolved.multiplier_milli = *m;
  }
  for (const IntDim& d : kIntDims) {
    const std::optional<std::int64_t>& value = usage.*d.field;
    if (!value) continue;
    if (!(takes & d.dim)) return not_taken(d.param);
    if (*value < 0 || *value > kUsageDimensionMax) {
      return usage_error(d.param,
                         "must be an integer from 0 to " + std::to_string(kUsageDimensionMax));
    }
  }
  if (usage.size && !(takes & kSize)) return not_taken("usage.size");
  if (takes & kSize) {
    const std::int64_t* r = image_rate(rates, usage.size ? *usage.size : kDefaultSize);
    if (!r) return usage_error("usage.size", "unknown size \"" + *usage.size + "\"");
    resolved.per_image_mc = *r;
  }
  return resolved;
}

RateCard::RateCard() : impl_(new Impl()) {}
RateCard::~RateCard() {
  delete impl_;
}
RateCard::RateCard(const RateCard& o) : impl_(new Impl(*o.impl_)) {}
RateCard& RateCard::operator=(const RateCard& o) {
  if (this == &o) return *this;
  if (!impl_) impl_ = new Impl();  // assigning to a moved-from card
  *impl_ = *o.impl_;
  return *this;
}
// A moved-from card may only be destroyed or assigned to.
RateCard::RateCard(RateCard&& o) noexcept : impl_(std::exchange(o.impl_, nullptr)) {}
RateCard& RateCard::operator=(RateCard&& o) noexcept {
  std::swap(impl_, o.impl_);
  return *this;
}

Result<RateCard> RateCard::parse(std::string_view toml_text, std::string_view source) {
  try {
    RateCard card;
    *card.impl_ = read_card(toml_text, source);
    return card;
  } catch (const ConfigFailure& failure) {
    return internal::config_error(source, failure);
  }
}

Result<RateCard> RateCard::load_file(const std::string& path) {
  Result<std::string> text = internal::read_config_file(path, "rate card");
  if (!text.ok()) return text.error();
  return parse(*text, path);
}

std::int64_t RateCard::version() const {
  return impl_->version;
}

std::string_view RateCard::pool(Kind kind) const {
  return impl_->kinds[static_cast<std::size_t>(kind)].pool;
}

const std::string& RateCard::source_text() const {
  return impl_->source_text;
}

Status RateCard::validate(Kind kind, const Usage& usage) const {
  Result<Impl::Resolved> resolved = impl_->check(kind, usage);
  if (!resolved.ok()) return resolved.error();
  return ok_status();
}

std::optional<std::string_view> RateCard::priced_model(Kind kind, const Usage& usage) {
  if ((kKindDims[static_cast<std::size_t>(kind)] & kModel) == 0) return std::nullopt;
  if (usage.model) return std::string_view(*usage.model);
  return kDefaultModel;
}

Result<Price> RateCard::price(Kind kind, const Usage& usage) const {
  Result<Impl::Resolved> resolved = impl_->check(kind, usage);
  if (!resolved.ok()) return resolved.error();
  const Impl::KindRates& r = impl_->kinds[static_cast<std::size_t>(kind)];
  using I = __int128;
  auto dim = [](const std::optional<std::int64_t>& v) { return static_cast<I>(v.value_or(0)); };

  // Every term is in millicredits x 1000; the multiplier (thousandths) makes it x 10^6.
  I numerator = static_cast<I>(r.base_mc) * 1000;
  switch (kind) {
    case Kind::kAgentPrompt:
      numerator += static_cast<I>(r.per_file_read_mc) * 1000 * dim(usage.files_read) +
                   static_cast<I>(r.per_line_emitted_mc) * 1000 * dim(usage.lines_emitted) +
                   static_cast<I>(r.per_line_changed_mc) * 1000 * dim(usage.lines_changed);
      [[fallthrough]];
    case Kind::kDiscussTurn:
    case Kind::kInvokeLlm:
      numerator += static_cast<I>(r.input_mc_per_1k) * dim(usage.input_tokens) +
                   static_cast<I>(r.output_mc_per_1k) * dim(usage.output_tokens);
      break;
    case Kind::kGenerateImage:
      numerator +=
          static_cast<I>(resolved->per_image_mc) * 1000 * usage.count.value_or(kDefaultCount);
      break;
    case Kind::kSendEmail:
      numerator += static_cast<I>(r.per_email_mc) * 1000 * usage.count.value_or(kDefaultCount);
      break;
    case Kind::kBackendFunction: {
      // Round once over the billable milliseconds, not per started second.
      I billable_ms = dim(usage.duration_ms) - r.free_ms;
      if (billable_ms < 0) billable_ms = 0;
      numerator += static_cast<I>(r.per_second_mc) * billable_ms +
                   static_cast<I>(r.per_1k_records_mc) * dim(usage.records);
      break;
    }
  }
  const I scaled = numerator * resolved->multiplier_milli;
  const I cost_mc = (scaled + kNumeratorPerMc - 1) / kNumeratorPerMc;
  if (cost_mc > Millicredits::kApiLimitMc) {
    return usage_error("usage", "prices above the limit of 10^12 credits");
  }
  return Price{Millicredits::from_mc(static_cast<std::int64_t>(cost_mc)), r.pool};
}

Status check_rate_card_pools(const Catalog& catalog, const RateCard& card) {
  for (int i = 0; i < kKindCount; ++i) {
    const Kind kind = static_cast<Kind>(i);
    for (const Plan& plan : catalog.plans) {
      if (plan.pool(card.pool(kind))) continue;
      Error error(ErrorCode::kInvalidRequest,
                  "rate card kind " + std::string(kind_name(kind)) + " draws from pool \"" +
                      std::string(card.pool(kind)) + "\", which plan \"" + plan.id + "\" lacks");
      error.with_string("kind", kind_name(kind));
      error.with_string("pool", card.pool(kind));
      error.with_string("plan", plan.id);
      return error;
    }
  }
  return ok_status();
}

}  // namespace credit::pricing
