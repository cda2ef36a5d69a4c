// tests/base/decimal_option_test.cc
// creditd's and creditctl's integer options are read in decimal and exactly: no wrap of "-1" into
// an unsigned option, no clamp of a value past the type, no octal or hex.
#include "base/decimal_option.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace credit {
namespace {

TEST(ParseDecimal, ReadsTheWholeUnsignedRangeInDecimal) {
  EXPECT_EQ(parse_decimal<std::uint64_t>("0"), 0u);
  EXPECT_EQ(parse_decimal<std::uint64_t>("18446744073709551615"), 18446744073709551615u);
  EXPECT_EQ(parse_decimal<std::uint64_t>("010"), 10u);  // decimal, not octal 8
}

TEST(ParseDecimal, RefusesANegativeUnsignedAndAValuePastTheType) {
  EXPECT_EQ(parse_decimal<std::uint64_t>("-1"), std::nullopt);                    // not 2^64-1
  EXPECT_EQ(parse_decimal<std::uint64_t>("18446744073709551616"), std::nullopt);  // not clamped
  EXPECT_EQ(parse_decimal<std::int64_t>("9223372036854775808"), std::nullopt);
  EXPECT_EQ(parse_decimal<std::int64_t>("-9223372036854775809"), std::nullopt);
}

TEST(ParseDecimal, ReadsNegativesIntoASignedType) {
  EXPECT_EQ(parse_decimal<std::int64_t>("-1"), -1);
  EXPECT_EQ(parse_decimal<std::int64_t>("-9223372036854775808"), INT64_MIN);
  EXPECT_EQ(parse_decimal<std::int64_t>("9223372036854775807"), INT64_MAX);
}

TEST(ParseDecimal, RefusesWhatIsNotDecimalDigits) {
  for (const char* text : {"", " 1", "1 ", "+1", "0x10", "1e3", "1.0", "12a", "-", "--1"}) {
    EXPECT_EQ(parse_decimal<std::int64_t>(text), std::nullopt) << "'" << text << "'";
    EXPECT_EQ(parse_decimal<std::uint64_t>(text), std::nullopt) << "'" << text << "'";
  }
}

// Parses `args` (after the program name) into an app with one option --n of type T.
template <typename T>
T parse_option(std::vector<std::string> args, CLI::Validator validator) {
  CLI::App app;
  T value{};
  app.add_option("--n", value)->transform(validator);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them reversed
  app.parse(reversed);
  return value;
}

TEST(DecimalOption, GivesCli11TheNumberWritten) {
  EXPECT_EQ(parse_option<std::uint64_t>({"--n", "18446744073709551615"}, decimal<std::uint64_t>()),
            18446744073709551615u);
  EXPECT_EQ(parse_option<std::int64_t>({"--n", "010"}, decimal<std::int64_t>(1, 31)), 10);
  EXPECT_EQ(parse_option<std::int64_t>({"--n", "-1"}, decimal<std::int64_t>()), -1);
  EXPECT_EQ(parse_option<std::int64_t>({"--n", "0"}, decimal<std::int64_t>()), 0);
}

TEST(DecimalOption, RefusesAWrapAClampAnotherBaseAndAValueOutOfRange) {
  using U = std::uint64_t;
  using I = std::int64_t;
  EXPECT_THROW(parse_option<U>({"--n", "-1"}, decimal<U>()), CLI::ValidationError);
  EXPECT_THROW(parse_option<U>({"--n", "18446744073709551616"}, decimal<U>()),
               CLI::ValidationError);
  EXPECT_THROW(parse_option<I>({"--n", "99999999999999999999"}, decimal<I>()),
               CLI::ValidationError);
  EXPECT_THROW(parse_option<I>({"--n", "0x10"}, decimal<I>()), CLI::ValidationError);
  EXPECT_THROW(parse_option<I>({"--n", "0"}, decimal<I>(1, 31)), CLI::ValidationError);
  EXPECT_THROW(parse_option<I>({"--n", "32"}, decimal<I>(1, 31)), CLI::ValidationError);
}

TEST(DecimalOption, TheMessageNamesTheOptionTheRangeAndTheText) {
  try {
    parse_option<std::uint64_t>({"--n", "-1"}, decimal<std::uint64_t>());
    FAIL() << "no error";
  } catch (const CLI::ValidationError& e) {
    EXPECT_STREQ(
        e.what(),
        "--n: expected a whole number from 0 to 18446744073709551615 in decimal, got '-1'");
  }
}

}  // namespace
}  // namespace credit
