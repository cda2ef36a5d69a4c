// tests/time/time_test.cc
// Tests src/time/time.cc and src/time/clock.cc: civil dates, RFC 3339 in and out, UTC
// days and hours, ISO weeks across year ends, and the forward-only manual clock.
#include "time/time.h"

#include <gtest/gtest.h>

#include <limits>

#include "time/clock.h"

namespace credit {
namespace {

// Instants used below, checked against `date -u -d <text> +%s`.
constexpr std::int64_t k2026Jan31At10 = 1'769'853'600'000;      // 2026-01-31T10:00:00Z
constexpr std::int64_t k2026Jan15At123456 = 1'768'480'496'000;  // 2026-01-15T12:34:56Z
constexpr std::int64_t k2026Jan15Midnight = 1'768'435'200'000;  // 2026-01-15T00:00:00Z
constexpr std::int64_t k2026Jan15At12 = 1'768'478'400'000;      // 2026-01-15T12:00:00Z
constexpr std::int64_t k9999Dec31Last = 253'402'300'799'000;    // 9999-12-31T23:59:59Z

TEST(CivilDate, EpochIsDayZeroAndKnownDatesCountDays) {
  EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
  EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
  EXPECT_EQ(days_from_civil(2000, 3, 1), 11'017);
  EXPECT_EQ(days_from_civil(2026, 1, 31), 20'484);
}

TEST(CivilDate, LeapYearsFollowTheGregorianRule) {
  EXPECT_TRUE(is_leap_year(2024));
  EXPECT_TRUE(is_leap_year(2000));
  EXPECT_FALSE(is_leap_year(1900));
  EXPECT_FALSE(is_leap_year(2026));
  EXPECT_EQ(days_in_month(2028, 2), 29);
  EXPECT_EQ(days_in_month(2026, 2), 28);
  EXPECT_EQ(days_in_month(2100, 2), 28);
  EXPECT_EQ(days_in_month(2026, 4), 30);
  EXPECT_EQ(days_in_month(2026, 12), 31);
}

TEST(CivilDate, CivilFromMsSplitsEveryField) {
  const CivilTime t = civil_from_ms(k2026Jan15At123456 + 789);
  EXPECT_EQ(t.year, 2026);
  EXPECT_EQ(t.month, 1);
  EXPECT_EQ(t.day, 15);
  EXPECT_EQ(t.hour, 12);
  EXPECT_EQ(t.minute, 34);
  EXPECT_EQ(t.second, 56);
  EXPECT_EQ(t.millisecond, 789);
  EXPECT_EQ(ms_from_civil(t), 1'768'480'496'789);
}

TEST(CivilDate, InstantsBeforeTheEpochRoundTowardsThePast) {
  const CivilTime t = civil_from_ms(-1);
  EXPECT_EQ(t.year, 1969);
  EXPECT_EQ(t.month, 12);
  EXPECT_EQ(t.day, 31);
  EXPECT_EQ(t.hour, 23);
  EXPECT_EQ(t.minute, 59);
  EXPECT_EQ(t.second, 59);
  EXPECT_EQ(t.millisecond, 999);
}

TEST(Rfc3339, ParsesUtcAndFractions) {
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00Z"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31t10:00:00z"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.250Z"), k2026Jan31At10 + 250);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.5Z"), k2026Jan31At10 + 500);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.25Z"), k2026Jan31At10 + 250);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.001000000Z"), k2026Jan31At10 + 1);
  EXPECT_EQ(parse_rfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_rfc3339("9999-12-31T23:59:59Z"), k9999Dec31Last);
}

TEST(Rfc3339, OffsetsAreSubtractedToGetUtc) {
  EXPECT_EQ(parse_rfc3339("2026-01-31T12:00:00+02:00"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T04:30:00-05:30"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00+00:00"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00-00:00"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T12:00:00.250+02:00"), k2026Jan31At10 + 250);
  // The offset may carry the instant into another day.
  EXPECT_EQ(parse_rfc3339("2026-01-30T23:00:00-11:00"), k2026Jan31At10);
}

TEST(Rfc3339, FractionsFinerThanAMillisecondAreTruncated) {
  // RFC 3339 allows any number of fractional digits; instants are kept in milliseconds,
  // so the digits past the third are dropped, never rounded into the next millisecond.
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.0001Z"), k2026Jan31At10);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.1234Z"), k2026Jan31At10 + 123);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.123456Z"), k2026Jan31At10 + 123);
  EXPECT_EQ(parse_rfc3339("2026-01-31T10:00:00.999999999Z"), k2026Jan31At10 + 999);
  EXPECT_EQ(parse_rfc3339("2026-01-31T12:00:00.250000+02:00"), k2026Jan31At10 + 250);
}

TEST(Rfc3339, MalformedOrOutOfRangeTextIsRejected) {
  for (const char* text : {
           "",
           "2026-01-31",
           "2026-01-31T10:00:00",        // no zone
           "2026-01-31 10:00:00Z",       // space instead of T
           "2026-1-31T10:00:00Z",        // one-digit month
           "2026-01-31T10:00Z",          // no seconds
           "2026-00-10T10:00:00Z",       // month 0
           "2026-13-10T10:00:00Z",       // month 13
           "2026-02-29T10:00:00Z",       // not a leap year
           "2026-04-31T10:00:00Z",       // April has 30 days
           "2026-01-00T10:00:00Z",       // day 0
           "2026-01-31T24:00:00Z",       // hour 24
           "2026-01-31T10:60:00Z",       // minute 60
           "2026-01-31T10:00:60Z",       // leap second
           "2026-01-31T10:00:00.Z",      // empty fraction
           "2026-01-31T10:00:00.12x4Z",  // a fraction with a non-digit
           "2026-01-31T10:00:00+2:00",   // one-digit offset hour
           "2026-01-31T10:00:00+0200",   // offset without colon
           "2026-01-31T10:00:00+24:00",  // offset hour 24
           "2026-01-31T10:00:00+02:60",  // offset minute 60
           "2026-01-31T10:00:00Zjunk",   // trailing text
           " 2026-01-31T10:00:00Z",      // leading space
           "1969-12-31T23:59:59Z",       // before 1970
           "1970-01-01T00:30:00+01:00",  // before 1970 in UTC
           "10000-01-01T00:00:00Z",      // five-digit year
           "9999-12-31T23:00:00-02:00",  // after 9999 in UTC
           "20x6-01-31T10:00:00Z",
       }) {
    EXPECT_FALSE(parse_rfc3339(text).has_value()) << text;
  }
}

TEST(Rfc3339, FormatsUtcWithMillisecondsOnlyWhenNonZero) {
  EXPECT_EQ(format_rfc3339(k2026Jan31At10), "2026-01-31T10:00:00Z");
  EXPECT_EQ(format_rfc3339(k2026Jan31At10 + 250), "2026-01-31T10:00:00.250Z");
  EXPECT_EQ(format_rfc3339(k2026Jan31At10 + 7), "2026-01-31T10:00:00.007Z");
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_rfc3339(k9999Dec31Last), "9999-12-31T23:59:59Z");
  std::string out = "at=";
  append_rfc3339(out, k2026Jan15At123456);
  EXPECT_EQ(out, "at=2026-01-15T12:34:56Z");
}

TEST(Rfc3339, FormatThenParseRoundTrips) {
  for (const std::int64_t at_ms :
       {std::int64_t{0}, std::int64_t{1}, k2026Jan31At10, k2026Jan31At10 + 999,
        k2026Jan15At123456 + 10, std::int64_t{951'782'400'000} /* 2000-02-29 */,
        k9999Dec31Last + 999}) {
    EXPECT_EQ(parse_rfc3339(format_rfc3339(at_ms)), at_ms) << at_ms;
  }
}

TEST(UtcDay, DayAndHourStartsFloorTheInstant) {
  EXPECT_EQ(day_start_ms(k2026Jan15At123456), k2026Jan15Midnight);
  EXPECT_EQ(day_start_ms(k2026Jan15Midnight), k2026Jan15Midnight);
  EXPECT_EQ(day_start_ms(k2026Jan15Midnight - 1), k2026Jan15Midnight - 86'400'000);
  EXPECT_EQ(day_start_ms(-1), -86'400'000);
  EXPECT_EQ(hour_start_ms(k2026Jan15At123456), k2026Jan15At12);
  EXPECT_EQ(hour_start_ms(k2026Jan15At12), k2026Jan15At12);
  EXPECT_EQ(format_date(k2026Jan15At123456), "2026-01-15");
  EXPECT_EQ(format_date(k2026Jan15Midnight - 1), "2026-01-14");
}

TEST(UtcDay, StartsNearTheInt64LimitsDoNotOverflow) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  EXPECT_EQ(day_start_ms(kMax), 9'223'372'036'828'800'000);
  EXPECT_EQ(hour_start_ms(kMax), 9'223'372'036'854'000'000);
  EXPECT_EQ(day_start_ms(kMin), kMin);  // the real start is not representable
  EXPECT_EQ(civil_from_ms(kMin).millisecond, 192);
}

TEST(IsoWeek, WeekYearFollowsTheThursdayAcrossYearEnds) {
  EXPECT_EQ(iso_week(1'609'372'800'000), "2020-W53");  // 2020-12-31 Thu
  EXPECT_EQ(iso_week(1'609'718'399'000), "2020-W53");  // 2021-01-03T23:59:59 Sun
  EXPECT_EQ(iso_week(1'609'718'400'000), "2021-W01");  // 2021-01-04 Mon
  EXPECT_EQ(iso_week(1'735'516'800'000), "2025-W01");  // 2024-12-30 Mon
  EXPECT_EQ(iso_week(1'798'675'200'000), "2026-W53");  // 2026-12-31 Thu
  EXPECT_EQ(iso_week(1'798'761'600'000), "2026-W53");  // 2027-01-01 Fri
  EXPECT_EQ(iso_week(1'799'020'800'000), "2027-W01");  // 2027-01-04 Mon
  EXPECT_EQ(iso_week(1'766'966'400'000), "2026-W01");  // 2025-12-29 Mon
  EXPECT_EQ(iso_week(946'684'800'000), "1999-W52");    // 2000-01-01 Sat
  EXPECT_EQ(iso_week(k2026Jan31At10), "2026-W05");
  EXPECT_EQ(iso_week(0), "1970-W01");  // 1970-01-01 Thu
}

TEST(ManualClock, MovesForwardAndRefusesGoingBackwards) {
  ManualClock clock(1'000);
  EXPECT_EQ(clock.now_ms(), 1'000);
  EXPECT_TRUE(clock.set_ms(5'000));
  EXPECT_EQ(clock.now_ms(), 5'000);
  EXPECT_TRUE(clock.set_ms(5'000));  // standing still is not going back
  EXPECT_FALSE(clock.set_ms(4'999));
  EXPECT_EQ(clock.now_ms(), 5'000);
  clock.advance_ms(250);
  EXPECT_EQ(clock.now_ms(), 5'250);
  clock.advance_ms(-1);
  EXPECT_EQ(clock.now_ms(), 5'250);
}

TEST(ManualClock, StartsAtTheEpochByDefault) {
  ManualClock clock;
  EXPECT_EQ(clock.now_ms(), 0);
}

TEST(SystemClock, ReadsAnInstantAfter2020) {
  SystemClock clock;
  EXPECT_GT(clock.now_ms(), 1'577'836'800'000);  // 2020-01-01T00:00:00Z
}

TEST(Rfc3339, ARangeBoundRoundsAFractionPastTheMillisecondUpAndReadsASpaceAsPlus) {
  const std::int64_t at = *parse_rfc3339("2026-03-01T01:30:00.500Z");
  // t < 00.5009 holds t = 00.500, and t >= 00.5009 does not: the bound is 00.501.
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T01:30:00.5009Z"), at + 1);
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T01:30:00.500000001Z"), at + 1);
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T01:30:00.5000Z"), at);
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T01:30:00.5Z"), at);
  // A short fraction before an offset: the offset's digits are no fraction.
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T02:30:00.5+01:00"), at);
  EXPECT_EQ(parse_rfc3339("2026-03-01T01:30:00.5009Z"), at);  // instants still truncate
  // "+01:00" whose '+' a query string decoded to a space.
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T02:30:00.5 01:00"), at);
  EXPECT_EQ(parse_rfc3339_bound("2026-03-01T02:30:00 01:00"), at - 500);
  EXPECT_FALSE(parse_rfc3339_bound("2026-03-01T02:30:00 1:00"));
  EXPECT_FALSE(parse_rfc3339_bound("2026-03-01 02:30:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-03-01T02:30:00 01:00"));
}

}  // namespace
}  // namespace credit
