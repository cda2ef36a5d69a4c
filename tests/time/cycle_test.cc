// tests/time/cycle_test.cc
// Tests src/time/cycle.cc: month-long cycles from the original anchor, the day clamped
// to short months without drift, half-open bounds, and instants before the anchor.
#include "time/cycle.h"

#include <gtest/gtest.h>

#include <limits>

namespace credit {
namespace {

// Instants used below, checked against `date -u -d <text> +%s`.
constexpr std::int64_t k2025Nov30At10 = 1'764'496'800'000;
constexpr std::int64_t k2025Dec31At10 = 1'767'175'200'000;
constexpr std::int64_t k2026Jan30At10 = 1'769'767'200'000;
constexpr std::int64_t k2026Jan31At10 = 1'769'853'600'000;
constexpr std::int64_t k2026Feb28At10 = 1'772'272'800'000;
constexpr std::int64_t k2026Mar31At10 = 1'774'951'200'000;
constexpr std::int64_t k2026Apr30At10 = 1'777'543'200'000;
constexpr std::int64_t k2028Jan31At10 = 1'832'925'600'000;
constexpr std::int64_t k2028Feb29At10 = 1'835'431'200'000;
constexpr std::int64_t k2028Mar31At10 = 1'838'109'600'000;
constexpr std::int64_t k2024Feb29At12 = 1'709'208'000'000;
constexpr std::int64_t k2025Feb28At12 = 1'740'744'000'000;
constexpr std::int64_t k2026Feb28At12 = 1'772'280'000'000;
constexpr std::int64_t k2028Feb29At12 = 1'835'438'400'000;

TEST(Cycle, AnchorOn31stClampsToFebruaryWithoutDrift) {
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 0), k2026Jan31At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 1), k2026Feb28At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 2), k2026Mar31At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 3), k2026Apr30At10);
}

TEST(Cycle, AnchorOn31stClampsToFebruary29InALeapYear) {
  EXPECT_EQ(cycle_start_ms(k2028Jan31At10, 1), k2028Feb29At10);
  EXPECT_EQ(cycle_start_ms(k2028Jan31At10, 2), k2028Mar31At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 25), k2028Feb29At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, 26), k2028Mar31At10);
}

TEST(Cycle, AnchorOnFebruary29FallsOnFebruary28InCommonYears) {
  EXPECT_EQ(cycle_start_ms(k2024Feb29At12, 12), k2025Feb28At12);
  EXPECT_EQ(cycle_start_ms(k2024Feb29At12, 24), k2026Feb28At12);
  EXPECT_EQ(cycle_start_ms(k2024Feb29At12, 48), k2028Feb29At12);
}

TEST(Cycle, MillisecondsOfTheAnchorAreKept) {
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10 + 250, 1), k2026Feb28At10 + 250);
}

TEST(Cycle, ByIndexGivesHalfOpenBounds) {
  const CycleBounds c = cycle_by_index(k2026Jan31At10, 1);
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.start_ms, k2026Feb28At10);
  EXPECT_EQ(c.end_ms, k2026Mar31At10);
}

TEST(Cycle, InstantExactlyAtABoundaryBelongsToTheNewCycle) {
  const CycleBounds c = cycle_at(k2026Jan31At10, k2026Feb28At10);
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.start_ms, k2026Feb28At10);
  EXPECT_EQ(c.end_ms, k2026Mar31At10);

  const CycleBounds before = cycle_at(k2026Jan31At10, k2026Feb28At10 - 1);
  EXPECT_EQ(before.index, 0);
  EXPECT_EQ(before.start_ms, k2026Jan31At10);
  EXPECT_EQ(before.end_ms, k2026Feb28At10);
}

TEST(Cycle, TheAnchorItselfStartsCycleZero) {
  const CycleBounds c = cycle_at(k2026Jan31At10, k2026Jan31At10);
  EXPECT_EQ(c.index, 0);
  EXPECT_EQ(c.start_ms, k2026Jan31At10);
  EXPECT_EQ(c.end_ms, k2026Feb28At10);
}

TEST(Cycle, EarlierDayInTheSameMonthBelongsToThePreviousCycle) {
  // March 5 is before the March 31 start: still the cycle that began on February 28.
  const std::int64_t mar5 = k2026Feb28At10 + 5 * 86'400'000;  // 2026-03-05T10:00:00Z
  const CycleBounds c = cycle_at(k2026Jan31At10, mar5);
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.start_ms, k2026Feb28At10);
  EXPECT_EQ(c.end_ms, k2026Mar31At10);
}

TEST(Cycle, SameDayEarlierTimeBelongsToThePreviousCycle) {
  const CycleBounds c = cycle_at(k2026Jan31At10, k2026Mar31At10 - 1);
  EXPECT_EQ(c.index, 1);
  EXPECT_EQ(c.start_ms, k2026Feb28At10);
}

TEST(Cycle, InstantsBeforeTheAnchorHaveNegativeIndexes) {
  const CycleBounds a = cycle_at(k2026Jan31At10, k2026Jan31At10 - 1);
  EXPECT_EQ(a.index, -1);
  EXPECT_EQ(a.start_ms, k2025Dec31At10);
  EXPECT_EQ(a.end_ms, k2026Jan31At10);

  const CycleBounds b = cycle_at(k2026Jan31At10, k2026Jan30At10);
  EXPECT_EQ(b.index, -1);

  const CycleBounds c = cycle_at(k2026Jan31At10, k2025Dec31At10 - 1);
  EXPECT_EQ(c.index, -2);
  EXPECT_EQ(c.start_ms, k2025Nov30At10);
  EXPECT_EQ(c.end_ms, k2025Dec31At10);

  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, -1), k2025Dec31At10);
  EXPECT_EQ(cycle_start_ms(k2026Jan31At10, -2), k2025Nov30At10);
}

TEST(Cycle, FarInstantsLandInTheRightCycle) {
  // 2028-03-31T10:00Z is 26 months after 2026-01-31T10:00Z.
  const CycleBounds c = cycle_at(k2026Jan31At10, k2028Mar31At10 + 1);
  EXPECT_EQ(c.index, 26);
  EXPECT_EQ(c.start_ms, k2028Mar31At10);
}

TEST(Cycle, EveryDayOfTwoYearsLiesInsideItsCycle) {
  // A walk over 2026-2027 at an hour that is not the anchor's: each instant's cycle
  // contains it and consecutive instants never skip a cycle.
  std::int64_t previous_index = -1;
  for (std::int64_t day = 0; day < 731; ++day) {
    const std::int64_t at = k2026Jan31At10 - 3 * 3'600'000 + day * 86'400'000;
    const CycleBounds c = cycle_at(k2026Jan31At10, at);
    ASSERT_LE(c.start_ms, at);
    ASSERT_LT(at, c.end_ms);
    ASSERT_TRUE(c.index == previous_index || c.index == previous_index + 1) << day;
    previous_index = c.index;
  }
  EXPECT_EQ(previous_index, 23);
}

TEST(Cycle, InstantsAtTheInt64LimitsStayInsideTheirCycle) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const CycleBounds high = cycle_at(k2026Jan31At10, kMax);
  EXPECT_LE(high.start_ms, kMax);
  EXPECT_LT(high.start_ms, kMax);  // the real start, not a saturated one
  EXPECT_EQ(high.end_ms, kMax);    // the end lies beyond int64 and reads as its maximum
  const CycleBounds low = cycle_at(k2026Jan31At10, kMin);
  EXPECT_EQ(low.start_ms, kMin);  // the start lies before int64 and reads as its minimum
  EXPECT_GT(low.end_ms, kMin);
  EXPECT_EQ(low.index + 1, cycle_at(k2026Jan31At10, low.end_ms).index);
}

}  // namespace
}  // namespace credit
