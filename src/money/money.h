// src/money/money.h
// Millicredits: the one type for money. 1 credit = 1000 mc, stored in a signed 64-bit
// integer; every addition and multiplication is overflow-checked. No floating point.
// Owns: the type, checked arithmetic, exact decimal parsing and printing of credits.
// Does not: know about pools, buckets or prices (ledger/, pricing/).
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "base/assert.h"
#include "base/status.h"

namespace credit {

class Millicredits {
 public:
  // The largest amount the API accepts: 10^12 credits.
  static constexpr std::int64_t kApiLimitMc = 1'000'000'000'000'000LL;

  constexpr Millicredits() = default;
  static constexpr Millicredits from_mc(std::int64_t mc) { return Millicredits(mc); }
  static constexpr Millicredits zero() { return Millicredits(0); }
  // Whole credits; nullopt on overflow.
  static std::optional<Millicredits> from_credits(std::int64_t credits);

  constexpr std::int64_t mc() const { return mc_; }
  constexpr bool is_zero() const { return mc_ == 0; }
  constexpr bool is_negative() const { return mc_ < 0; }

  // Checked arithmetic: nullopt on overflow.
  std::optional<Millicredits> checked_add(Millicredits o) const;
  std::optional<Millicredits> checked_sub(Millicredits o) const;
  std::optional<Millicredits> checked_mul(std::int64_t factor) const;

  // Arithmetic that must not overflow by construction (values bounded by the API limit);
  // an overflow here is a programming error and aborts (CREDIT_ASSERT). Inline: the charge
  // path does a few dozen of these per charge.
  Millicredits operator+(Millicredits o) const {
    std::int64_t mc = 0;
    const bool overflow = __builtin_add_overflow(mc_, o.mc_, &mc);
    CREDIT_ASSERT(!overflow);
    return Millicredits(mc);
  }
  Millicredits operator-(Millicredits o) const {
    std::int64_t mc = 0;
    const bool overflow = __builtin_sub_overflow(mc_, o.mc_, &mc);
    CREDIT_ASSERT(!overflow);
    return Millicredits(mc);
  }
  Millicredits operator-() const {
    std::int64_t mc = 0;
    const bool overflow = __builtin_sub_overflow(std::int64_t{0}, mc_, &mc);
    CREDIT_ASSERT(!overflow);
    return Millicredits(mc);
  }
  Millicredits& operator+=(Millicredits o) { return *this = *this + o; }
  Millicredits& operator-=(Millicredits o) { return *this = *this - o; }

  // Arithmetic clamped to the int64 range instead of overflowing, for figures that add up
  // any number of amounts (the analytics' sums over an account's events: each event is
  // within the API limit, their count is not). Such a figure reports the bound
  // (about 9.2 x 10^15 credits) rather than wrap or abort.
  Millicredits saturating_add(Millicredits o) const;
  Millicredits saturating_sub(Millicredits o) const;

  constexpr auto operator<=>(const Millicredits&) const = default;

 private:
  constexpr explicit Millicredits(std::int64_t mc) : mc_(mc) {}
  std::int64_t mc_ = 0;
};

// The same clamping on a count of millicredits (analytics/rollup.h keeps its sums as int64).
constexpr std::int64_t saturating_add_mc(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  if (!__builtin_add_overflow(a, b, &sum)) return sum;
  return b > 0 ? std::numeric_limits<std::int64_t>::max()
               : std::numeric_limits<std::int64_t>::min();
}
constexpr std::int64_t saturating_sub_mc(std::int64_t a, std::int64_t b) {
  std::int64_t difference = 0;
  if (!__builtin_sub_overflow(a, b, &difference)) return difference;
  return b < 0 ? std::numeric_limits<std::int64_t>::max()
               : std::numeric_limits<std::int64_t>::min();
}

// A 128-bit intermediate (a sum or a product of amounts) clamped to the int64 range.
constexpr std::int64_t saturating_mc(__int128 mc) {
  if (mc > std::numeric_limits<std::int64_t>::max())
    return std::numeric_limits<std::int64_t>::max();
  if (mc < std::numeric_limits<std::int64_t>::min())
    return std::numeric_limits<std::int64_t>::min();
  return static_cast<std::int64_t>(mc);
}

inline Millicredits Millicredits::saturating_add(Millicredits o) const {
  return Millicredits(saturating_add_mc(mc_, o.mc_));
}
inline Millicredits Millicredits::saturating_sub(Millicredits o) const {
  return Millicredits(saturating_sub_mc(mc_, o.mc_));
}

constexpr Millicredits min(Millicredits a, Millicredits b) {
  return a < b ? a : b;
}
constexpr Millicredits max(Millicredits a, Millicredits b) {
  return a < b ? b : a;
}

// Parses the text of a JSON number as credits, exactly: "1.5", "1.500", "15e-1", "2",
// "-0.25", "1E3". Errors (code kInvalidAmount): not a JSON number, not a multiple of
// 0.001, magnitude above 10^12 credits. Never rounds.
Result<Millicredits> parse_credits(std::string_view text);

// Prints credits as the shortest exact decimal without exponent: 1500 -> "1.5",
// 2000 -> "2", 125 -> "0.125", -250 -> "-0.25", 0 -> "0".
std::string format_credits(Millicredits amount);
void append_credits(std::string& out, Millicredits amount);
// The most bytes format_credits writes: a sign, 16 whole digits, a point, 3 decimals.
inline constexpr std::size_t kCreditsTextBytesMax = 21;
// The same text written at `out`, which has room for kCreditsTextBytesMax bytes; returns
// the end of what it wrote.
char* write_credits(char* out, Millicredits amount);

}  // namespace credit
