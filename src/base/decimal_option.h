// src/base/decimal_option.h
// The integer options of creditd and creditctl (--seed, --days, --limit, --snapshot-wal-bytes,
// --accounts-max, ...): whole numbers written in decimal, read exactly. CLI11 reads integers with
// strtoull / strtoll in base 0, so by itself "-1" wraps to 2^64-1 in an unsigned option, a value
// past the type's range is clamped to its end, "010" is octal 8 and "0x10" hex 16: each would run
// the command on a number the user did not write. Here "-1" in an unsigned option and a value past
// the type or the option's range are usage errors (exit 2) that name the option and its range;
// leading zeros are decimal ("010" is 10).
// Owns: the parsing and the range check of an integer option's text.
// Does not: register options (cli/offline.cc, cli/online.cc, server/main.cc do) or judge a
// value the server judges (creditctl sends a hold's ttl_ms and a page's limit as given).
#pragma once

#include <CLI/CLI.hpp>
#include <charconv>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace credit {

// `text` as a T when it is a whole number in decimal digits (a '-' first for a signed T),
// within T's range; nullopt otherwise (no sign '+', no space, no other base).
template <typename T>
std::optional<T> parse_decimal(std::string_view text) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  T value{};
  const char* end = text.data() + text.size();
  // from_chars in base 10 takes no '+', no space and no "0x"; it refuses a '-' for an
  // unsigned T, and a value out of T's range, instead of wrapping or clamping.
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, 10);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

// A CLI11 transform for an integer option of type T that accepts what parse_decimal reads
// within [min, max], and hands CLI11 the number in canonical decimal (so its base-0
// conversion reads the same number: "010" as 10). Anything else is a ValidationError,
// which creditd and creditctl exit with code 2 for.
template <typename T>
CLI::Validator decimal(T min = std::numeric_limits<T>::min(),
                       T max = std::numeric_limits<T>::max()) {
  const bool whole_type =
      min == std::numeric_limits<T>::min() && max == std::numeric_limits<T>::max();
  const std::string range = std::to_string(min) + " to " + std::to_string(max);
  CLI::Validator v(
      [min, max, range](std::string& text) {
        const std::optional<T> value = parse_decimal<T>(text);
        if (!value || *value < min || *value > max) {
          return "expected a whole number from " + range + " in decimal, got '" + text + "'";
        }
        text = std::to_string(*value);
        return std::string();
      },
      whole_type ? std::string() : "in [" + range + "]");
  return v;
}

}  // namespace credit
