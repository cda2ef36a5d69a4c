// tests/money/money_test.cc
// Tests src/money/money.cc: exact parsing of JSON-number credits, the shortest decimal
// output, overflow-checked arithmetic, and a format/parse round-trip property.
#include "money/money.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace credit {
namespace {

constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kInt64Min = std::numeric_limits<std::int64_t>::min();

std::int64_t parsed_mc(std::string_view text) {
  const Result<Millicredits> r = parse_credits(text);
  EXPECT_TRUE(r.ok()) << "'" << text << "' was rejected: " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r->mc() : -1;
}

void expect_invalid(std::string_view text) {
  const Result<Millicredits> r = parse_credits(text);
  ASSERT_FALSE(r.ok()) << "'" << text << "' was accepted as " << r->mc() << " mc";
  EXPECT_EQ(r.error().code, ErrorCode::kInvalidAmount) << text;
  EXPECT_FALSE(r.error().message.empty()) << text;
}

TEST(ParseCredits, TrailingZerosAndExponentsNameTheSameAmount) {
  EXPECT_EQ(parsed_mc("1.5"), 1500);
  EXPECT_EQ(parsed_mc("1.500"), 1500);
  EXPECT_EQ(parsed_mc("1.5000"), 1500);
  EXPECT_EQ(parsed_mc("15e-1"), 1500);
  EXPECT_EQ(parsed_mc("0.15E1"), 1500);
  EXPECT_EQ(parsed_mc("150e-2"), 1500);
  EXPECT_EQ(parsed_mc("0.0015e+3"), 1500);
}

TEST(ParseCredits, WholeAndFractionalForms) {
  EXPECT_EQ(parsed_mc("2"), 2000);
  EXPECT_EQ(parsed_mc("0"), 0);
  EXPECT_EQ(parsed_mc("0.125"), 125);
  EXPECT_EQ(parsed_mc("0.001"), 1);
  EXPECT_EQ(parsed_mc("0.0010"), 1);
  EXPECT_EQ(parsed_mc("1e3"), 1'000'000);
  EXPECT_EQ(parsed_mc("1E3"), 1'000'000);
  EXPECT_EQ(parsed_mc("1e+3"), 1'000'000);
  EXPECT_EQ(parsed_mc("1e-3"), 1);
  EXPECT_EQ(parsed_mc("123456.789"), 123'456'789);
}

TEST(ParseCredits, NegativeAmountsParseAndMinusZeroIsZero) {
  EXPECT_EQ(parsed_mc("-0.25"), -250);
  EXPECT_EQ(parsed_mc("-7"), -7000);
  EXPECT_EQ(parsed_mc("-15e-1"), -1500);
  EXPECT_EQ(parsed_mc("-0"), 0);
  EXPECT_EQ(parsed_mc("-0.000"), 0);
}

TEST(ParseCredits, ZeroWithAnyExponentIsZero) {
  EXPECT_EQ(parsed_mc("0e999999"), 0);
  EXPECT_EQ(parsed_mc("0.000e-999999999999999999999"), 0);
  EXPECT_EQ(parsed_mc("0E+99999999999999999999"), 0);
}

TEST(ParseCredits, FinerThanOneMillicreditIsRejected) {
  expect_invalid("1.0001");
  expect_invalid("0.0001");
  expect_invalid("1e-4");
  expect_invalid("0.0005");
  expect_invalid("-1.2345");
  expect_invalid("12345e-7");
}

TEST(ParseCredits, LimitIsTenToTheTwelveCreditsInclusive) {
  EXPECT_EQ(parsed_mc("1000000000000"), 1'000'000'000'000'000);
  EXPECT_EQ(parsed_mc("-1000000000000"), -1'000'000'000'000'000);
  EXPECT_EQ(parsed_mc("1e12"), 1'000'000'000'000'000);
  EXPECT_EQ(parsed_mc("1000000000000.000"), 1'000'000'000'000'000);
  EXPECT_EQ(parsed_mc("999999999999.999"), 999'999'999'999'999);
  expect_invalid("1000000000000.001");
  expect_invalid("-1000000000000.001");
  expect_invalid("1000000000001");
  expect_invalid("1e13");
  expect_invalid("1.0000000000001e12");
  expect_invalid("9223372036854775807");
  expect_invalid("99999999999999999999999999999");
}

TEST(ParseCredits, HugeExponentsAreRejectedWithoutOverflow) {
  expect_invalid("1e999999999");
  expect_invalid("1e99999999999999999999999999");
  expect_invalid("1e-999999999");
  expect_invalid("1e-99999999999999999999999999");
}

TEST(ParseCredits, TextThatIsNotAJsonNumberIsRejected) {
  for (const char* text :
       {"",         "-",         "+1",   "01",  "-01",    "00",    "1.",   ".5",
        "-.5",      "1e",        "1e+",  "1e-", "e3",     "1.5.0", "NaN",  "nan",
        "Infinity", "-Infinity", "0x10", " 1",  "1 ",     "1\n",   "1,5",  "1_000",
        "abc",      "1..5",      "1ee3", "--1", "1.5e3x", "\"1\"", "true", "null"}) {
    expect_invalid(text);
  }
}

TEST(FormatCredits, PrintsTheShortestExactDecimal) {
  EXPECT_EQ(format_credits(Millicredits::from_mc(1500)), "1.5");
  EXPECT_EQ(format_credits(Millicredits::from_mc(2000)), "2");
  EXPECT_EQ(format_credits(Millicredits::from_mc(125)), "0.125");
  EXPECT_EQ(format_credits(Millicredits::from_mc(-250)), "-0.25");
  EXPECT_EQ(format_credits(Millicredits::from_mc(0)), "0");
  EXPECT_EQ(format_credits(Millicredits::from_mc(1)), "0.001");
  EXPECT_EQ(format_credits(Millicredits::from_mc(10)), "0.01");
  EXPECT_EQ(format_credits(Millicredits::from_mc(-1)), "-0.001");
  EXPECT_EQ(format_credits(Millicredits::from_mc(1'000'000'000'000'000)), "1000000000000");
}

TEST(FormatCredits, ExtremeInt64ValuesPrintWithoutOverflow) {
  EXPECT_EQ(format_credits(Millicredits::from_mc(kInt64Max)), "9223372036854775.807");
  EXPECT_EQ(format_credits(Millicredits::from_mc(kInt64Min)), "-9223372036854775.808");
  // The longest text fills kCreditsTextBytesMax exactly.
  EXPECT_EQ(format_credits(Millicredits::from_mc(kInt64Min)).size(), kCreditsTextBytesMax);
  char room[kCreditsTextBytesMax];
  EXPECT_EQ(write_credits(room, Millicredits::from_mc(kInt64Min)), room + kCreditsTextBytesMax);
}

TEST(FormatCredits, AppendAddsToTheBuffer) {
  std::string out = "amount=";
  append_credits(out, Millicredits::from_mc(3050));
  EXPECT_EQ(out, "amount=3.05");
}

TEST(Millicredits, FromCreditsScalesByAThousandAndRefusesOverflow) {
  EXPECT_EQ(Millicredits::from_credits(7)->mc(), 7000);
  EXPECT_EQ(Millicredits::from_credits(-3)->mc(), -3000);
  EXPECT_TRUE(Millicredits::from_credits(9'223'372'036'854'775).has_value());
  EXPECT_FALSE(Millicredits::from_credits(9'223'372'036'854'776).has_value());
  EXPECT_FALSE(Millicredits::from_credits(kInt64Min).has_value());
}

TEST(Millicredits, CheckedArithmeticReportsOverflow) {
  const Millicredits top = Millicredits::from_mc(kInt64Max);
  const Millicredits bottom = Millicredits::from_mc(kInt64Min);
  const Millicredits one = Millicredits::from_mc(1);

  EXPECT_EQ(Millicredits::from_mc(1500).checked_add(Millicredits::from_mc(250))->mc(), 1750);
  EXPECT_FALSE(top.checked_add(one).has_value());
  EXPECT_FALSE(bottom.checked_add(Millicredits::from_mc(-1)).has_value());

  EXPECT_EQ(Millicredits::from_mc(100).checked_sub(Millicredits::from_mc(250))->mc(), -150);
  EXPECT_FALSE(bottom.checked_sub(one).has_value());
  EXPECT_FALSE(top.checked_sub(Millicredits::from_mc(-1)).has_value());

  EXPECT_EQ(Millicredits::from_mc(1500).checked_mul(3)->mc(), 4500);
  EXPECT_EQ(Millicredits::from_mc(1500).checked_mul(-2)->mc(), -3000);
  EXPECT_FALSE(top.checked_mul(2).has_value());
  EXPECT_FALSE(bottom.checked_mul(-1).has_value());
  EXPECT_FALSE(Millicredits::from_mc(4'611'686'018'427'387'904).checked_mul(2).has_value());
}

TEST(Millicredits, OperatorsComputeAndCompare) {
  Millicredits a = Millicredits::from_mc(1500);
  a += Millicredits::from_mc(500);
  EXPECT_EQ(a.mc(), 2000);
  a -= Millicredits::from_mc(2500);
  EXPECT_EQ(a.mc(), -500);
  EXPECT_TRUE(a.is_negative());
  EXPECT_EQ((-a).mc(), 500);
  EXPECT_EQ((Millicredits::from_mc(3) - Millicredits::from_mc(5)).mc(), -2);
  EXPECT_LT(Millicredits::from_mc(1), Millicredits::from_mc(2));
  EXPECT_EQ(min(Millicredits::from_mc(1), Millicredits::from_mc(2)).mc(), 1);
  EXPECT_EQ(max(Millicredits::from_mc(1), Millicredits::from_mc(2)).mc(), 2);
  EXPECT_TRUE(Millicredits::zero().is_zero());
}

using MillicreditsDeathTest = ::testing::Test;

TEST(MillicreditsDeathTest, OperatorOverflowAbortsInsteadOfWrapping) {
  const Millicredits top = Millicredits::from_mc(kInt64Max);
  const Millicredits bottom = Millicredits::from_mc(kInt64Min);
  const Millicredits one = Millicredits::from_mc(1);
  EXPECT_DEATH((void)(top + one), "invariant broken");
  EXPECT_DEATH((void)(bottom - one), "invariant broken");
  EXPECT_DEATH((void)(-bottom), "invariant broken");
}

// The model: an amount in range printed then parsed is the same amount.
RC_GTEST_PROP(MoneyProperty, FormatThenParseRoundTripsEveryAmountInRange, ()) {
  const std::int64_t mc =
      *rc::gen::inRange<std::int64_t>(-Millicredits::kApiLimitMc, Millicredits::kApiLimitMc + 1);
  const std::string text = format_credits(Millicredits::from_mc(mc));
  const Result<Millicredits> back = parse_credits(text);
  RC_ASSERT(back.ok());
  RC_ASSERT(back->mc() == mc);
}

// Small amounts have their own generator so the fraction digits are well exercised.
RC_GTEST_PROP(MoneyProperty, FormatThenParseRoundTripsSmallAmounts, ()) {
  const std::int64_t mc = *rc::gen::inRange<std::int64_t>(-100'000, 100'001);
  const Result<Millicredits> back = parse_credits(format_credits(Millicredits::from_mc(mc)));
  RC_ASSERT(back.ok());
  RC_ASSERT(back->mc() == mc);
}

TEST(Millicredits, SaturatingArithmeticClampsAtTheInt64Bounds) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const Millicredits limit = Millicredits::from_mc(Millicredits::kApiLimitMc);
  Millicredits sum;
  // 10,000 amounts at the API's limit sum past the int64 range: the sum stops at the bound.
  for (int i = 0; i < 10'000; ++i) sum = sum.saturating_add(limit);
  EXPECT_EQ(sum.mc(), kMax);
  EXPECT_EQ(sum.saturating_sub(limit).mc(), kMax - Millicredits::kApiLimitMc);
  EXPECT_EQ(Millicredits::from_mc(kMin).saturating_sub(limit).mc(), kMin);
  EXPECT_EQ(Millicredits::from_mc(kMin + 5).saturating_add(Millicredits::from_mc(-9)).mc(), kMin);
  EXPECT_EQ(Millicredits::from_mc(2).saturating_add(Millicredits::from_mc(3)).mc(), 5);
  EXPECT_EQ(saturating_add_mc(kMax, 1), kMax);
  EXPECT_EQ(saturating_sub_mc(kMax, -1), kMax);
  EXPECT_EQ(saturating_sub_mc(kMin, 1), kMin);
  EXPECT_EQ(saturating_mc(static_cast<__int128>(kMax) * 3), kMax);
  EXPECT_EQ(saturating_mc(static_cast<__int128>(kMin) * 3), kMin);
  EXPECT_EQ(saturating_mc(-42), -42);
}

}  // namespace
}  // namespace credit
