// tests/pricing/rate_card_test.cc
// The default rate card prices DESIGN.md's reference usages inside the published ranges,
// pricing rounds up once in 128-bit integers, usage is validated per kind, and bad cards
// are refused with errors that name the file, the line and the field.
#include "pricing/rate_card.h"

#include <gtest/gtest.h>

#include <string>

namespace credit::pricing {
namespace {

const std::string kSourceDir = CREDITD_SOURCE_DIR;

RateCard load(const std::string& relative) {
  Result<RateCard> card = RateCard::load_file(kSourceDir + "/" + relative);
  EXPECT_TRUE(card.ok()) << (card.ok() ? "" : card.error().message);
  return card.ok() ? *card : RateCard();
}

std::int64_t cost_mc(const RateCard& card, Kind kind, const Usage& usage) {
  Result<Price> price = card.price(kind, usage);
  EXPECT_TRUE(price.ok()) << (price.ok() ? "" : price.error().message);
  return price.ok() ? price->cost.mc() : -1;
}

// A card whose every rate is 0 but the ones a test sets; `extra` is appended to the
// agent_prompt table.
std::string card_text(std::string_view agent_rates, std::string_view models = "") {
  return std::string("version = 7\n[kinds.\"agent_prompt\"]\npool = \"credits\"\n") +
         std::string(agent_rates) +
         "\n[kinds.\"discuss_turn\"]\npool = \"credits\"\n"
         "[kinds.\"integration.invoke_llm\"]\npool = \"credits\"\n"
         "[kinds.\"integration.generate_image\"]\npool = \"credits\"\n"
         "[kinds.\"integration.generate_image\".sizes.\"1024x1024\"]\nper_image_mc = 0\n"
         "[kinds.\"integration.send_email\"]\npool = \"credits\"\n"
         "[kinds.\"backend_function\"]\npool = \"credits\"\n"
         "[models.\"default\"]\nmultiplier_milli = 1000\n" +
         std::string(models);
}

RateCard parse_ok(const std::string& text) {
  Result<RateCard> card = RateCard::parse(text, "inline.toml");
  EXPECT_TRUE(card.ok()) << (card.ok() ? "" : card.error().message);
  return card.ok() ? *card : RateCard();
}

std::string parse_error(const std::string& text) {
  Result<RateCard> card = RateCard::parse(text, "card.toml");
  EXPECT_FALSE(card.ok());
  if (card.ok()) return "";
  EXPECT_EQ(card.error().code, ErrorCode::kInvalidRequest);
  return card.error().message;
}

Usage llm(std::string model, std::int64_t in, std::int64_t out) {
  Usage u;
  u.model = std::move(model);
  u.input_tokens = in;
  u.output_tokens = out;
  return u;
}

Usage prompt(std::int64_t in, std::int64_t out, std::int64_t files, std::int64_t emitted,
             std::int64_t changed) {
  Usage u = llm("default", in, out);
  u.files_read = files;
  u.lines_emitted = emitted;
  u.lines_changed = changed;
  return u;
}

Usage counted(std::int64_t count) {
  Usage u;
  u.count = count;
  return u;
}

TEST(DefaultRateCard, PricesEveryReferenceUsageInsideItsPublishedRange) {
  RateCard card = load("config/rate_card.toml");
  EXPECT_EQ(card.version(), 1);
  struct Case {
    const char* name;
    Kind kind;
    Usage usage;
    std::int64_t expected_mc;
    std::int64_t min_mc;
    std::int64_t max_mc;
  };
  const Case cases[] = {
      {"unscoped prompt", Kind::kAgentPrompt, prompt(10000, 2200, 5, 200, 6), 9920, 5000, 15000},
      {"scoped prompt", Kind::kAgentPrompt, prompt(2200, 120, 1, 8, 6), 1740, 1000, 3000},
      {"discuss turn", Kind::kDiscussTurn, llm("default", 3000, 300), 1650, 1000, 3000},
      {"invokeLLM mini", Kind::kInvokeLlm, llm("gpt-4o-mini", 500, 200), 1290, 1000, 3000},
      {"invokeLLM gpt-4o", Kind::kInvokeLlm, llm("gpt-4o", 6000, 1500), 15000, 5000, 20000},
      {"generateImage", Kind::kGenerateImage, counted(1), 8000, 5000, 15000},
      {"sendEmail", Kind::kSendEmail, counted(1), 1000, 500, 2000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::int64_t mc = cost_mc(card, c.kind, c.usage);
    EXPECT_EQ(mc, c.expected_mc);
    EXPECT_GE(mc, c.min_mc);
    EXPECT_LE(mc, c.max_mc);
    EXPECT_EQ(card.price(c.kind, c.usage)->pool, "credits");
  }
}

TEST(DefaultRateCard, DefaultsForMissingDimensions) {
  RateCard card = load("config/rate_card.toml");
  // No model is "default"; no size is 1024x1024; no count is 1.
  Usage no_model;
  no_model.input_tokens = 3000;
  no_model.output_tokens = 300;
  EXPECT_EQ(cost_mc(card, Kind::kDiscussTurn, no_model), 1650);
  EXPECT_EQ(cost_mc(card, Kind::kGenerateImage, Usage{}), 8000);
  Usage small = counted(2);
  small.size = "512x512";
  EXPECT_EQ(cost_mc(card, Kind::kGenerateImage, small), 10000);
  EXPECT_EQ(cost_mc(card, Kind::kSendEmail, Usage{}), 1000);
  EXPECT_EQ(cost_mc(card, Kind::kSendEmail, counted(0)), 0);
}

TEST(DefaultRateCard, BackendFunctionsPayBeyondTheFreeMillisecondsRoundedOnce) {
  RateCard card = load("config/rate_card.toml");
  Usage short_run;
  short_run.duration_ms = 10000;
  EXPECT_EQ(cost_mc(card, Kind::kBackendFunction, short_run), 0);
  Usage run;
  run.duration_ms = 10001;  // 1 billable ms at 100 mc/s: 0.1 mc, rounded up to 1
  EXPECT_EQ(cost_mc(card, Kind::kBackendFunction, run), 1);
  run.duration_ms = 25000;  // 15 s
  run.records = 3000;       // 3 x 500 mc
  EXPECT_EQ(cost_mc(card, Kind::kBackendFunction, run), 1500 + 1500);
  run.duration_ms = 10015;  // 15 ms: 1.5 mc; plus 1 record: 0.5 mc; rounded once: 2, not 3
  run.records = 1;
  EXPECT_EQ(cost_mc(card, Kind::kBackendFunction, run), 2);
}

TEST(Pricing, RoundsUpOnceOverTheWholeSum) {
  RateCard card = parse_ok(card_text("input_mc_per_1k = 1\noutput_mc_per_1k = 1\n"));
  EXPECT_EQ(card.version(), 7);
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("default", 1, 0)), 1);
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("default", 0, 0)), 0);
  // 0.5 + 0.5 mc is 1 mc, not 1 + 1 rounded separately.
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("default", 500, 500)), 1);
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("default", 1000, 1)), 2);
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("default", 1000, 0)), 1);
}

TEST(Pricing, TheMultiplierAppliesBeforeRounding) {
  RateCard card = parse_ok(card_text("base_mc = 3\ninput_mc_per_1k = 1\n",
                                     "[models.\"half\"]\nmultiplier_milli = 500\n"));
  // (3000 + 1) * 500 / 10^6 = 1.5005 -> 2
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("half", 1, 0)), 2);
  // 3000 * 500 / 10^6 = 1.5 -> 2
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("half", 0, 0)), 2);
  // 2000 tokens: (3000 + 2000) * 0.5 = 2.5 -> 3
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, llm("half", 2000, 0)), 3);
}

TEST(Pricing, HugeUsageDoesNotOverflow) {
  RateCard fine = parse_ok(card_text("input_mc_per_1k = 1\n"));
  // 10^12 tokens at 1 mc per 1k: 10^9 mc, exactly.
  EXPECT_EQ(cost_mc(fine, Kind::kAgentPrompt, llm("default", kUsageDimensionMax, 0)),
            1'000'000'000);

  RateCard dear =
      parse_ok(card_text("input_mc_per_1k = 1000000000\noutput_mc_per_1k = 1000000000\n"
                         "per_line_emitted_mc = 1000000000\n",
                         "[models.\"huge\"]\nmultiplier_milli = 1000000\n"));
  Usage usage = llm("huge", kUsageDimensionMax, kUsageDimensionMax);
  usage.lines_emitted = kUsageDimensionMax;
  Result<Price> price = dear.price(Kind::kAgentPrompt, usage);
  ASSERT_FALSE(price.ok());
  EXPECT_EQ(price.error().code, ErrorCode::kInvalidUsage);
  EXPECT_EQ(price.error().detail("param"), "\"usage\"");

  // Just at the limit of 10^12 credits (10^15 mc) is allowed.
  Usage at_limit;
  at_limit.lines_emitted = 1'000'000;
  Result<Price> limit = dear.price(Kind::kAgentPrompt, at_limit);
  ASSERT_TRUE(limit.ok()) << limit.error().message;
  EXPECT_EQ(limit->cost.mc(), 1'000'000'000'000'000LL);
  at_limit.lines_emitted = 1'000'001;
  EXPECT_FALSE(dear.price(Kind::kAgentPrompt, at_limit).ok());
}

TEST(UsageValidation, DimensionsAKindDoesNotTakeNameTheirParam) {
  RateCard card = load("config/rate_card.toml");
  struct Case {
    Kind kind;
    Usage usage;
    const char* param;
  };
  Usage files;
  files.files_read = 1;
  Usage sized;
  sized.size = "512x512";
  Usage modelled;
  modelled.model = "default";
  Usage timed;
  timed.duration_ms = 5;
  Usage tokens;
  tokens.input_tokens = 5;
  const Case cases[] = {
      {Kind::kDiscussTurn, files, "\"usage.files_read\""},
      {Kind::kInvokeLlm, files, "\"usage.files_read\""},
      {Kind::kSendEmail, sized, "\"usage.size\""},
      {Kind::kGenerateImage, modelled, "\"usage.model\""},
      {Kind::kBackendFunction, tokens, "\"usage.input_tokens\""},
      {Kind::kAgentPrompt, timed, "\"usage.duration_ms\""},
      {Kind::kAgentPrompt, counted(1), "\"usage.count\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.param);
    Status status = card.validate(c.kind, c.usage);
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.error().code, ErrorCode::kInvalidUsage);
    EXPECT_EQ(status.error().detail("param"), c.param);
    EXPECT_FALSE(card.price(c.kind, c.usage).ok());
  }
}

TEST(UsageValidation, UnknownModelOrSizeAndOutOfRangeValues) {
  RateCard card = load("config/rate_card.toml");
  Status model = card.validate(Kind::kInvokeLlm, llm("gpt-5", 1, 1));
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.error().code, ErrorCode::kInvalidUsage);
  EXPECT_EQ(model.error().detail("param"), "\"usage.model\"");
  EXPECT_NE(model.error().message.find("gpt-5"), std::string::npos);

  Usage size;
  size.size = "4096x4096";
  Status bad_size = card.validate(Kind::kGenerateImage, size);
  ASSERT_FALSE(bad_size.ok());
  EXPECT_EQ(bad_size.error().detail("param"), "\"usage.size\"");

  Status negative = card.validate(Kind::kInvokeLlm, llm("default", -1, 0));
  ASSERT_FALSE(negative.ok());
  EXPECT_EQ(negative.error().detail("param"), "\"usage.input_tokens\"");

  Status too_large = card.validate(Kind::kInvokeLlm, llm("default", 0, kUsageDimensionMax + 1));
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.error().detail("param"), "\"usage.output_tokens\"");

  EXPECT_TRUE(card.validate(Kind::kInvokeLlm, llm("default", 0, kUsageDimensionMax)).ok());
  EXPECT_FALSE(card.validate(Kind::kSendEmail, counted(-1)).ok());
}

TEST(TwoPoolsRateCard, OneMessageCreditPerPromptAndIntegrationsOnTheirPool) {
  RateCard card = load("config/examples/two-pools-rate-card.toml");
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, prompt(10000, 2200, 5, 200, 6)), 1000);
  EXPECT_EQ(cost_mc(card, Kind::kAgentPrompt, prompt(2200, 120, 1, 8, 6)), 1000);
  EXPECT_EQ(cost_mc(card, Kind::kDiscussTurn, llm("default", 3000, 300)), 1000);
  EXPECT_EQ(card.pool(Kind::kAgentPrompt), "message");
  EXPECT_EQ(card.pool(Kind::kDiscussTurn), "message");
  EXPECT_EQ(card.pool(Kind::kInvokeLlm), "integration");
  EXPECT_EQ(card.pool(Kind::kGenerateImage), "integration");
  EXPECT_EQ(card.pool(Kind::kSendEmail), "integration");
  EXPECT_EQ(card.pool(Kind::kBackendFunction), "integration");
  EXPECT_EQ(cost_mc(card, Kind::kInvokeLlm, llm("gpt-4o", 6000, 1500)), 1000);
  EXPECT_EQ(cost_mc(card, Kind::kSendEmail, counted(3)), 3000);
}

TEST(RateCardPools, ShippedCardsFitTheirCatalogs) {
  Result<Catalog> plans = load_catalog_file(kSourceDir + "/config/plans.toml");
  ASSERT_TRUE(plans.ok());
  Result<Catalog> two_pools = load_catalog_file(kSourceDir + "/config/examples/two-pools.toml");
  ASSERT_TRUE(two_pools.ok());
  RateCard card = load("config/rate_card.toml");
  RateCard two_pools_card = load("config/examples/two-pools-rate-card.toml");
  EXPECT_TRUE(check_rate_card_pools(*plans, card).ok());
  EXPECT_TRUE(check_rate_card_pools(*two_pools, two_pools_card).ok());

  Status mismatch = check_rate_card_pools(*plans, two_pools_card);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error().message,
            "rate card kind agent_prompt draws from pool \"message\", which plan \"free\" lacks");
  EXPECT_EQ(mismatch.error().detail("plan"), "\"free\"");
  EXPECT_EQ(mismatch.error().detail("pool"), "\"message\"");
  EXPECT_EQ(mismatch.error().detail("kind"), "\"agent_prompt\"");
  EXPECT_FALSE(check_rate_card_pools(*two_pools, card).ok());
}

TEST(RateCardErrors, NameFileLineAndField) {
  std::string no_version = parse_error(card_text("").substr(std::string("version = 7\n").size()));
  EXPECT_EQ(no_version, "card.toml:1: version: missing (required)");

  std::string zero_version = parse_error("version = 0\n");
  EXPECT_EQ(zero_version.rfind("card.toml:1: version: must be an integer >= 1", 0), 0u)
      << zero_version;

  std::string negative = parse_error(card_text("base_mc = -3\n"));
  EXPECT_EQ(negative.rfind("card.toml:4: kinds.agent_prompt.base_mc: must be an integer >= 0", 0),
            0u)
      << negative;

  std::string not_taken = parse_error(card_text("per_email_mc = 3\n"));
  EXPECT_EQ(not_taken.rfind("card.toml:4: kinds.agent_prompt.per_email_mc: unknown key", 0), 0u)
      << not_taken;

  std::string unknown_kind =
      parse_error(card_text("", "[kinds.\"integration.fax\"]\npool = \"credits\"\n"));
  EXPECT_NE(unknown_kind.find("kinds.\"integration.fax\": unknown kind"), std::string::npos)
      << unknown_kind;

  std::string no_multiplier = parse_error(card_text("", "[models.\"gpt-4o\"]\n"));
  EXPECT_NE(no_multiplier.find("card.toml:19: models.gpt-4o.multiplier_milli: missing"),
            std::string::npos)
      << no_multiplier;

  std::string zero_multiplier =
      parse_error(card_text("", "[models.\"gpt-4o\"]\nmultiplier_milli = 0\n"));
  EXPECT_NE(
      zero_multiplier.find("card.toml:20: models.gpt-4o.multiplier_milli: must be an integer >= 1"),
      std::string::npos)
      << zero_multiplier;

  std::string no_pool = parse_error("version = 1\n[kinds.\"discuss_turn\"]\nbase_mc = 1\n");
  EXPECT_EQ(no_pool, "card.toml:2: kinds.discuss_turn.pool: missing (required)");

  std::string missing_kind = parse_error(
      "version = 1\n[kinds.\"discuss_turn\"]\npool = \"credits\"\n[models.default]\n"
      "multiplier_milli = 1000\n");
  EXPECT_NE(missing_kind.find("kinds: missing kind \"agent_prompt\""), std::string::npos)
      << missing_kind;

  std::string unknown_top = parse_error("currency = \"USD\"\n" + card_text(""));
  EXPECT_EQ(unknown_top.rfind("card.toml:1: currency: unknown key", 0), 0u) << unknown_top;
}

TEST(RateCardErrors, DefaultModelAndDefaultSizeAreRequired) {
  std::string text = card_text("");
  std::string no_default_model = text;
  no_default_model.replace(no_default_model.find("default"), 7, "other");
  EXPECT_NE(parse_error(no_default_model).find("models: missing the model \"default\""),
            std::string::npos);

  std::string no_default_size = text;
  no_default_size.replace(no_default_size.find("1024x1024"), 9, "512x512");
  EXPECT_NE(parse_error(no_default_size)
                .find("kinds.\"integration.generate_image\".sizes: missing the default size"),
            std::string::npos);
}

TEST(RateCard, CopiesAndMovesKeepTheirOwnPrices) {
  RateCard card = load("config/rate_card.toml");
  RateCard copy = card;
  RateCard moved = std::move(card);
  EXPECT_EQ(cost_mc(copy, Kind::kSendEmail, counted(1)), 1000);
  EXPECT_EQ(cost_mc(moved, Kind::kSendEmail, counted(1)), 1000);
  EXPECT_EQ(copy.source_text(), moved.source_text());
  EXPECT_NE(copy.source_text().find("version = 1"), std::string::npos);
  RateCard assigned;
  assigned = copy;
  EXPECT_EQ(assigned.version(), 1);
  card = copy;  // a moved-from card takes a new value
  EXPECT_EQ(cost_mc(card, Kind::kSendEmail, counted(2)), 2000);
}

}  // namespace
}  // namespace credit::pricing
