// src/time/time.h
// Instants are int64 milliseconds since 1970-01-01T00:00:00Z (UTC), named `*_ms`.
// Owns: RFC 3339 parsing and printing, civil-date arithmetic, UTC days.
// Does not: read the system clock (clock.h), know billing rules (cycle.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace credit {

constexpr std::int64_t kMsPerSecond = 1000;
constexpr std::int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr std::int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr std::int64_t kMsPerDay = 24 * kMsPerHour;
// The last instant RFC 3339 text is written and read for here: 9999-12-31T23:59:59.999Z.
// An exclusive end past it (the hour or the day after) is written as it instead.
constexpr std::int64_t kLastMsOf9999 = 253'402'300'799'999;

struct CivilTime {
  int year = 1970;
  int month = 1;  // 1..12
  int day = 1;    // 1..31
  int hour = 0;
  int minute = 0;
  int second = 0;
  int millisecond = 0;
};

// a / b rounded toward negative infinity (b != 0).
std::int64_t floor_div(std::int64_t a, std::int64_t b);

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
std::int64_t days_from_civil(int year, int month, int day);
CivilTime civil_from_ms(std::int64_t at_ms);
std::int64_t ms_from_civil(const CivilTime& t);
int days_in_month(int year, int month);
bool is_leap_year(int year);

// Parses RFC 3339 ("2026-01-31T10:00:00Z", "2026-01-31T10:00:00.250+02:00"); a fraction
// may have any number of digits, truncated to the millisecond. Years 1970..9999. nullopt
// when invalid.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);
// The same for a bound of a half-open range [from, to) given in a query string: the first
// millisecond at or after the instant, so that a fraction past the millisecond keeps
// exactly the instants the range holds (t < 10:00:00.5009 holds t = 10:00:00.500); and a
// space where the offset's sign is read as '+' (a query string decodes an unescaped '+'
// to a space, and RFC 3339 has no space there).
std::optional<std::int64_t> parse_rfc3339_bound(std::string_view text);
// "YYYY-MM-DDTHH:MM:SSZ", with ".sss" only when the milliseconds are not zero.
std::string format_rfc3339(std::int64_t at_ms);
void append_rfc3339(std::string& out, std::int64_t at_ms);
// "YYYY-MM-DD" of the UTC day.
std::string format_date(std::int64_t at_ms);

// The start of the UTC day [00:00Z, 24:00Z) that contains at_ms.
std::int64_t day_start_ms(std::int64_t at_ms);
// The start of the UTC hour that contains at_ms.
std::int64_t hour_start_ms(std::int64_t at_ms);
// ISO 8601 week of the instant, as "YYYY-Www" (e.g. "2026-W01").
std::string iso_week(std::int64_t at_ms);

}  // namespace credit
