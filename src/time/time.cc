// src/time/time.cc
// Civil-date arithmetic (H. Hinnant's algorithms), RFC 3339 in and out, UTC days and
// ISO weeks. Owns: the conversions between instants and calendar fields.
// Does not: read the system clock (clock.cc) or know billing cycles (cycle.cc).
#include "time/time.h"

#include <algorithm>
#include <limits>

namespace credit {
namespace {

// The years RFC 3339 text may carry: instants before the epoch are not ledger instants,
// and four digits is what the format has room for.
constexpr int kRfc3339YearMin = 1970;
constexpr int kRfc3339YearMax = 9999;
// Days from 0000-03-01 to 1970-01-01 in Hinnant's era arithmetic.
constexpr std::int64_t kDaysFromEra0ToEpoch = 719468;
constexpr std::int64_t kDaysPerEra = 146097;  // 400 Gregorian years
// 1970-01-01 was a Thursday: ISO weekday 4.
constexpr std::int64_t kEpochIsoWeekday = 4;

// a mod b in [0, b) for b > 0, without forming floor_div(a, b) * b (which overflows for
// instants within a day of the int64 limits).
std::int64_t floor_mod(std::int64_t a, std::int64_t b) {
  const std::int64_t r = a % b;
  return r < 0 ? r + b : r;
}

// The start of the `unit_ms` period containing at_ms; the int64 minimum when that start
// is not representable.
std::int64_t period_start(std::int64_t at_ms, std::int64_t unit_ms) {
  std::int64_t start = 0;
  if (__builtin_sub_overflow(at_ms, floor_mod(at_ms, unit_ms), &start)) {
    return std::numeric_limits<std::int64_t>::min();
  }
  return start;
}

struct CivilDate {
  std::int64_t year;
  int month;
  int day;
};

std::int64_t days_from_civil_wide(std::int64_t y, int m, int d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = floor_div(y, 400);
  const std::int64_t yoe = y - era * 400;                                    // [0, 399]
  const std::int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;  // [0, 365]
  const std::int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;            // [0, 146096]
  return era * kDaysPerEra + doe - kDaysFromEra0ToEpoch;
}

CivilDate civil_from_days(std::int64_t z) {
  z += kDaysFromEra0ToEpoch;
  const std::int64_t era = floor_div(z, kDaysPerEra);
  const std::int64_t doe = z - era * kDaysPerEra;                                  // [0, 146096]
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
  const std::int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11]
  const int d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  const int m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {yoe + era * 400 + (m <= 2 ? 1 : 0), m, d};
}

// Reads exactly `count` digits at `pos`; false if any is not a digit.
bool read_digits(std::string_view s, std::size_t pos, std::size_t count, int& out) {
  if (pos + count > s.size()) return false;
  int v = 0;
  for (std::size_t i = pos; i < pos + count; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  out = v;
  return true;
}

void append_padded(std::string& out, std::int64_t value, int width) {
  char buf[24];
  int len = 0;
  std::uint64_t v = value < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(value)
                              : static_cast<std::uint64_t>(value);
  do {
    buf[len++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  if (value < 0) out.push_back('-');
  for (int i = len; i < width; ++i) out.push_back('0');
  while (len > 0) out.push_back(buf[--len]);
}

void append_date(std::string& out, const CivilDate& d) {
  append_padded(out, d.year, 4);
  out.push_back('-');
  append_padded(out, d.month, 2);
  out.push_back('-');
  append_padded(out, d.day, 2);
}

}  // namespace

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

bool is_leap_year(int year) {
  return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
}

int days_in_month(int year, int month) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && is_leap_year(year)) return 29;
  return kDays[month - 1];
}

std::int64_t days_from_civil(int year, int month, int day) {
  return days_from_civil_wide(year, month, day);
}

CivilTime civil_from_ms(std::int64_t at_ms) {
  const std::int64_t days = floor_div(at_ms, kMsPerDay);
  const std::int64_t ms_of_day = floor_mod(at_ms, kMsPerDay);
  const CivilDate d = civil_from_days(days);
  CivilTime t;
  t.year = static_cast<int>(d.year);
  t.month = d.month;
  t.day = d.day;
  t.hour = static_cast<int>(ms_of_day / kMsPerHour);
  t.minute = static_cast<int>(ms_of_day % kMsPerHour / kMsPerMinute);
  t.second = static_cast<int>(ms_of_day % kMsPerMinute / kMsPerSecond);
  t.millisecond = static_cast<int>(ms_of_day % kMsPerSecond);
  return t;
}

// Saturates at the int64 limits for dates beyond about +-292 million years, so callers
// that shift dates far (cycle arithmetic) never hit signed overflow.
std::int64_t ms_from_civil(const CivilTime& t) {
  const std::int64_t days = days_from_civil(t.year, t.month, t.day);
  const std::int64_t in_day =
      t.hour * kMsPerHour + t.minute * kMsPerMinute + t.second * kMsPerSecond + t.millisecond;
  std::int64_t ms = 0;
  if (__builtin_mul_overflow(days, kMsPerDay, &ms) || __builtin_add_overflow(ms, in_day, &ms)) {
    return days < 0 ? std::numeric_limits<std::int64_t>::min()
                    : std::numeric_limits<std::int64_t>::max();
  }
  return ms;
}

// Layout: YYYY-MM-DD(T|t)HH:MM:SS[.fraction](Z|z|(+|-)HH:MM)
std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  CivilTime t;
  if (!read_digits(s, 0, 4, t.year) || s.size() < 19 || s[4] != '-' ||
      !read_digits(s, 5, 2, t.month) || s[7] != '-' || !read_digits(s, 8, 2, t.day) ||
      (s[10] != 'T' && s[10] != 't') || !read_digits(s, 11, 2, t.hour) || s[13] != ':' ||
      !read_digits(s, 14, 2, t.minute) || s[16] != ':' || !read_digits(s, 17, 2, t.second)) {
    return std::nullopt;
  }
  if (t.year < kRfc3339YearMin || t.year > kRfc3339YearMax || t.month < 1 || t.month > 12 ||
      t.day < 1 || t.day > days_in_month(t.year, t.month) || t.hour > 23 || t.minute > 59 ||
      t.second > 59) {
    return std::nullopt;
  }

  std::size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const std::size_t begin = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      const std::size_t place = i - begin;  // 0: tenths, 1: hundredths, 2: thousandths
      const int digit = s[i] - '0';
      // Instants are stored in milliseconds: digits past the third are read and dropped
      // (truncated, never rounded up into the next millisecond), so microsecond and
      // nanosecond timestamps from other systems are accepted (RFC 3339 allows any).
      if (place < 3) t.millisecond = t.millisecond * 10 + digit;
      ++i;
    }
    if (i == begin) return std::nullopt;
    for (std::size_t place = i - begin; place < 3; ++place) t.millisecond *= 10;
  }

  std::int64_t offset_ms = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    const bool west = s[i] == '-';
    int oh = 0;
    int om = 0;
    if (!read_digits(s, i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !read_digits(s, i + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_ms = oh * kMsPerHour + om * kMsPerMinute;
    if (west) offset_ms = -offset_ms;
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;

  // Local time minus its offset is UTC; the UTC instant must also lie in the years range.
  const std::int64_t at_ms = ms_from_civil(t) - offset_ms;
  const int utc_year = civil_from_ms(at_ms).year;
  if (utc_year < kRfc3339YearMin || utc_year > kRfc3339YearMax) return std::nullopt;
  return at_ms;
}

std::optional<std::int64_t> parse_rfc3339_bound(std::string_view text) {
  std::string s(text);
  // "...:SS[.fraction] HH:MM": the offset's '+' decoded to a space.
  const std::size_t space = s.find(' ');
  if (space != std::string::npos && space >= 19 && s.size() == space + 6) s[space] = '+';
  std::optional<std::int64_t> at = parse_rfc3339(s);
  if (!at || s.size() < 21 || s[19] != '.') return at;
  // A non-zero digit past the millisecond: the instant lies inside this millisecond, so
  // the first whole one at or after it is the next.
  for (std::size_t i = 20; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    // (Not past the last millisecond of 9999, which no instant written here passes.)
    if (i >= 23 && s[i] != '0') return std::min(*at + 1, kLastMsOf9999);
  }
  return at;
}

void append_rfc3339(std::string& out, std::int64_t at_ms) {
  const CivilTime t = civil_from_ms(at_ms);
  append_date(out, {t.year, t.month, t.day});
  out.push_back('T');
  append_padded(out, t.hour, 2);
  out.push_back(':');
  append_padded(out, t.minute, 2);
  out.push_back(':');
  append_padded(out, t.second, 2);
  if (t.millisecond != 0) {
    out.push_back('.');
    append_padded(out, t.millisecond, 3);
  }
  out.push_back('Z');
}

std::string format_rfc3339(std::int64_t at_ms) {
  std::string out;
  append_rfc3339(out, at_ms);
  return out;
}

std::string format_date(std::int64_t at_ms) {
  std::string out;
  append_date(out, civil_from_days(floor_div(at_ms, kMsPerDay)));
  return out;
}

std::int64_t day_start_ms(std::int64_t at_ms) {
  return period_start(at_ms, kMsPerDay);
}

std::int64_t hour_start_ms(std::int64_t at_ms) {
  return period_start(at_ms, kMsPerHour);
}

// The ISO week-year is the year of the week's Thursday; week 1 holds the first Thursday.
std::string iso_week(std::int64_t at_ms) {
  const std::int64_t days = floor_div(at_ms, kMsPerDay);
  const std::int64_t weekday = (((days % 7) + 7) % 7 + kEpochIsoWeekday - 1) % 7 + 1;  // Mon=1
  const std::int64_t thursday = days - weekday + 4;
  const std::int64_t year = civil_from_days(thursday).year;
  const std::int64_t week = (thursday - days_from_civil_wide(year, 1, 1)) / 7 + 1;
  std::string out;
  append_padded(out, year, 4);
  out += "-W";
  append_padded(out, week, 2);
  return out;
}

}  // namespace credit
