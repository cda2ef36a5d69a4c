// tests/fuzz/fuzz_money_time.cc
// Credits and instants as text (money/money.h, time/time.h): every amount and time a
// request or an import line carries. The input is split at its first newline: the first
// part is read as credits, the second as an RFC 3339 instant. Properties: a parsed amount
// prints as text that parses to the same amount; a parsed instant prints as text that
// parses to the same instant; neither crashes on any text.
#include <string>
#include <string_view>

#include "fuzz_target.h"
#include "money/money.h"
#include "time/time.h"

using credit::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::size_t nl = text.find('\n');
  const std::string_view credits = text.substr(0, nl);
  const std::string_view instant = nl == std::string_view::npos ? text : text.substr(nl + 1);

  auto amount = credit::parse_credits(credits);
  if (amount.ok()) {
    const std::string printed = credit::format_credits(*amount);
    auto back = credit::parse_credits(printed);
    check(back.ok() && *back == *amount, "credits survive printing and parsing");
  } else {
    check(!amount.error().message.empty(), "a refused amount has a message");
  }

  std::optional<std::int64_t> at = credit::parse_rfc3339(instant);
  if (at) {
    const std::string printed = credit::format_rfc3339(*at);
    std::optional<std::int64_t> back = credit::parse_rfc3339(printed);
    check(back && *back == *at, "an instant survives printing and parsing");
    check(credit::day_start_ms(*at) <= *at, "a day starts before its instants");
  }
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  return {"7.25\n2026-03-02T09:14:05Z",
          "0.001\n2024-02-29T23:59:59.999Z",
          "-12\n2026-03-02T09:14:05+05:30",
          "1e3\n1970-01-01T00:00:00Z",
          "922337203685477.807\n9999-12-31T23:59:59Z",
          "3.0\n2026-03-02t09:14:05.5-00:00"};
}

std::vector<std::string> dictionary() {
  return {"\n", ".", "-", "+", "e", "E", "0", "9", "Z", "T", ":", "60", "29", "24", "00"};
}

}  // namespace credit::fuzz
