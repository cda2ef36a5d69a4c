// src/money/money.cc
// Millicredits arithmetic and the exact text forms of credits.
// Owns: overflow checks, JSON-number parsing into millicredits, shortest decimal output.
// Does not: decide which amounts a request may carry beyond the API limit (callers do).
#include "money/money.h"

#include <charconv>
#include <cstddef>
#include <cstring>
#include <limits>

#include "base/assert.h"

namespace credit {
namespace {

// Millicredits per credit: the scale that turns a credit amount into an integer.
constexpr std::int64_t kMcPerCredit = 1000;
// Decimal digits of the millicredit scale (10^3).
constexpr std::int64_t kMcScaleDigits = 3;
// Decimal digits of kApiLimitMc (10^15 has 16 digits): a value with more significant
// digits (after its trailing zeros are folded into the exponent) is above the limit.
constexpr std::int64_t kApiLimitMcDigits = 16;
// An exponent is accumulated only up to this magnitude; any larger one already makes a
// non-zero value out of range or inexact, so "1e999999999999" is refused without
// overflowing and "0e999999999999" is still 0.
constexpr std::int64_t kExponentAbsMax = 1'000'000'000;

Error invalid_amount(std::string message) {
  return Error(ErrorCode::kInvalidAmount, std::move(message));
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

std::optional<Millicredits> Millicredits::from_credits(std::int64_t credits) {
  std::int64_t mc = 0;
  if (__builtin_mul_overflow(credits, kMcPerCredit, &mc)) return std::nullopt;
  return Millicredits(mc);
}

std::optional<Millicredits> Millicredits::checked_add(Millicredits o) const {
  std::int64_t mc = 0;
  if (__builtin_add_overflow(mc_, o.mc_, &mc)) return std::nullopt;
  return Millicredits(mc);
}

std::optional<Millicredits> Millicredits::checked_sub(Millicredits o) const {
  std::int64_t mc = 0;
  if (__builtin_sub_overflow(mc_, o.mc_, &mc)) return std::nullopt;
  return Millicredits(mc);
}

std::optional<Millicredits> Millicredits::checked_mul(std::int64_t factor) const {
  std::int64_t mc = 0;
  if (__builtin_mul_overflow(mc_, factor, &mc)) return std::nullopt;
  return Millicredits(mc);
}

// The grammar is JSON's number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// The value is (integer and fraction digits) x 10^(exponent - fraction length); in
// millicredits the power is 3 higher. Trailing zeros of the digits move into the power,
// so the value is a whole number of millicredits exactly when that power is >= 0.
Result<Millicredits> parse_credits(std::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  const bool negative = i < n && text[i] == '-';
  if (negative) ++i;

  const std::size_t int_begin = i;
  while (i < n && is_digit(text[i])) ++i;
  const std::string_view int_digits = text.substr(int_begin, i - int_begin);
  if (int_digits.empty()) return invalid_amount("amount is not a JSON number");
  if (int_digits.size() > 1 && int_digits[0] == '0') {
    return invalid_amount("amount is not a JSON number (leading zero)");
  }

  std::string_view frac_digits;
  if (i < n && text[i] == '.') {
    ++i;
    const std::size_t frac_begin = i;
    while (i < n && is_digit(text[i])) ++i;
    frac_digits = text.substr(frac_begin, i - frac_begin);
    if (frac_digits.empty()) return invalid_amount("amount is not a JSON number");
  }

  std::int64_t exponent = 0;
  if (i < n && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < n && (text[i] == '+' || text[i] == '-')) {
      exp_negative = text[i] == '-';
      ++i;
    }
    const std::size_t exp_begin = i;
    while (i < n && is_digit(text[i])) {
      if (exponent < kExponentAbsMax) exponent = exponent * 10 + (text[i] - '0');
      ++i;
    }
    if (i == exp_begin) return invalid_amount("amount is not a JSON number");
    if (exp_negative) exponent = -exponent;
  }
  if (i != n) return invalid_amount("amount is not a JSON number");

  // Significant digits: integer then fraction digits, leading zeros skipped.
  const std::size_t total_digits = int_digits.size() + frac_digits.size();
  auto digit_at = [&](std::size_t k) {
    return k < int_digits.size() ? int_digits[k] : frac_digits[k - int_digits.size()];
  };
  std::size_t first = 0;
  while (first < total_digits && digit_at(first) == '0') ++first;
  if (first == total_digits) return Millicredits::zero();  // "0", "-0", "0.000e99"
  std::size_t last = total_digits;                         // one past the last non-zero digit
  while (digit_at(last - 1) == '0') --last;

  // Power of ten of the last significant digit, in millicredits.
  const std::int64_t power = exponent - static_cast<std::int64_t>(frac_digits.size()) +
                             static_cast<std::int64_t>(total_digits - last) + kMcScaleDigits;
  if (power < 0) return invalid_amount("amount is not a multiple of 0.001 credits");
  const std::int64_t significant = static_cast<std::int64_t>(last - first);
  if (significant + power > kApiLimitMcDigits) {
    return invalid_amount("amount is above the limit of 10^12 credits");
  }

  // At most 16 digits: fits in int64 without overflow.
  std::int64_t mc = 0;
  for (std::size_t k = first; k < last; ++k) mc = mc * 10 + (digit_at(k) - '0');
  for (std::int64_t p = 0; p < power; ++p) mc *= 10;
  if (mc > Millicredits::kApiLimitMc) {
    return invalid_amount("amount is above the limit of 10^12 credits");
  }
  return Millicredits::from_mc(negative ? -mc : mc);
}

char* write_credits(char* out, Millicredits amount) {
  const std::int64_t mc = amount.mc();
  // Unsigned magnitude: -INT64_MIN does not fit in int64.
  const std::uint64_t magnitude =
      mc < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(mc) : static_cast<std::uint64_t>(mc);
  const std::uint64_t whole = magnitude / kMcPerCredit;
  std::uint64_t frac = magnitude % kMcPerCredit;

  if (mc < 0) *out++ = '-';
  // |INT64_MIN| / 1000 has 16 digits: the whole part always fits.
  out = std::to_chars(out, out + 16, whole).ptr;
  if (frac == 0) return out;
  *out++ = '.';
  char digits[kMcScaleDigits];
  for (std::int64_t k = kMcScaleDigits - 1; k >= 0; --k) {
    digits[k] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  std::int64_t shown = kMcScaleDigits;
  while (digits[shown - 1] == '0') --shown;
  std::memcpy(out, digits, static_cast<std::size_t>(shown));
  return out + shown;
}

void append_credits(std::string& out, Millicredits amount) {
  char buf[kCreditsTextBytesMax];
  out.append(buf, static_cast<std::size_t>(write_credits(buf, amount) - buf));
}

std::string format_credits(Millicredits amount) {
  std::string out;
  append_credits(out, amount);
  return out;
}

}  // namespace credit
