// tests/ledger/ledger_harness.h
// What the ledger tests share: the shipped catalog, instants written as RFC 3339 text,
// command builders, a driver that runs one command per batch at a chosen instant, and a
// small reader of top-level fields of a reply's JSON body.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger/command.h"
#include "ledger/event.h"
#include "ledger/ledger.h"
#include "money/money.h"
#include "pricing/plan.h"
#include "time/time.h"

namespace credit {
// gtest prints amounts as credits.
inline void PrintTo(const Millicredits& m, std::ostream* os) {
  *os << format_credits(m);
}
}  // namespace credit

namespace credit::ledger::testing {

// An instant from its RFC 3339 text ("2026-01-31T10:00:00Z").
inline std::int64_t at(std::string_view text) {
  std::optional<std::int64_t> t = parse_rfc3339(text);
  EXPECT_TRUE(t.has_value()) << text;
  return t.value_or(0);
}

// Whole credits and millicredits.
inline Millicredits cr(std::int64_t credits) {
  return Millicredits::from_mc(credits * 1000);
}
inline Millicredits mc(std::int64_t millicredits) {
  return Millicredits::from_mc(millicredits);
}

inline pricing::Catalog default_catalog() {
  auto c = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(c.value()) : pricing::Catalog{};
}

inline pricing::Catalog catalog_from(std::string_view toml) {
  auto c = pricing::parse_catalog(toml, "test.toml");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(c.value()) : pricing::Catalog{};
}

// A deterministic 16-byte hash of a text (FNV-1a, two seeds).
inline Hash128 hash_of(std::string_view s) {
  Hash128 h{};
  std::uint64_t a = 0xcbf29ce484222325ULL;
  std::uint64_t b = 0x84222325cbf29ce4ULL;
  for (unsigned char ch : s) {
    a = (a ^ ch) * 0x100000001b3ULL;
    b = (b ^ ch) * 0x100000001b3ULL + 1;
  }
  for (int i = 0; i < 8; ++i) {
    h[i] = static_cast<std::uint8_t>(a >> (8 * i));
    h[8 + i] = static_cast<std::uint8_t>(b >> (8 * i));
  }
  return h;
}

// The raw JSON text of the first `"key":` value in a body (a string keeps its quotes
// off; an object or array is returned whole). Empty when the key is absent.
inline std::string field(const std::string& body, std::string_view key) {
  std::string pattern = "\"" + std::string(key) + "\":";
  std::size_t p = body.find(pattern);
  if (p == std::string::npos) return "";
  p += pattern.size();
  if (p >= body.size()) return "";
  if (body[p] == '"') {
    std::size_t e = body.find('"', p + 1);
    return body.substr(p + 1, e - p - 1);
  }
  if (body[p] == '{' || body[p] == '[') {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = p; i < body.size(); ++i) {
      char c = body[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return body.substr(p, i - p + 1);
      }
    }
    return "";
  }
  std::size_t e = body.find_first_of(",}]", p);
  return body.substr(p, e - p);
}

inline CreateAccount create(std::string id, std::string plan,
                            std::optional<std::int64_t> signup_at = std::nullopt) {
  return CreateAccount{std::move(id), std::move(plan), signup_at};
}

inline Charge charge(std::string account, Millicredits amount, std::string user = "u1") {
  Charge c;
  c.account_id = std::move(account);
  c.user_id = std::move(user);
  c.pool = "credits";
  c.amount = amount;
  return c;
}

inline Hold hold(std::string account, Millicredits amount, std::int64_t ttl_ms = 300'000) {
  Hold h;
  h.account_id = std::move(account);
  h.user_id = "u1";
  h.pool = "credits";
  h.amount = amount;
  h.ttl_ms = ttl_ms;
  return h;
}

inline Capture capture(std::string account, std::string hold_id,
                       std::optional<Millicredits> amount = std::nullopt, bool overage = false) {
  Capture c;
  c.account_id = std::move(account);
  c.hold_id = std::move(hold_id);
  c.amount = amount;
  c.overage_charge = overage;
  return c;
}

inline AddGrant grant(std::string account, GrantSource source, Millicredits credits,
                      std::optional<std::int64_t> expires_at = std::nullopt,
                      std::string reason = "test") {
  AddGrant g;
  g.account_id = std::move(account);
  g.pool = "credits";
  g.source = source;
  g.credits = credits;
  g.expires_at_ms = expires_at;
  g.reason = std::move(reason);
  return g;
}

inline Refund refund(std::string account, std::string charge_id,
                     std::optional<Millicredits> credits = std::nullopt) {
  return Refund{std::move(account), std::move(charge_id), credits, "test"};
}

// Runs commands one per batch at the driver's instant and keeps every event.
class Driver {
 public:
  explicit Driver(pricing::Catalog catalog, LedgerOptions options = {})
      : ledger(std::move(catalog), options) {}

  void set_now(std::int64_t t) { now = t; }

  Reply run(CommandBody body) {
    Command c;
    c.body = std::move(body);
    return run(c);
  }
  // With an idempotency key scoped to `scope`; `request` stands for the route and body.
  Reply run_keyed(CommandBody body, std::string_view scope, std::string_view key,
                  std::string_view request) {
    Command c;
    c.idem.has_key = true;
    c.idem.key = std::string(key);
    c.idem.scope_key_hash = hash_of(std::string(scope) + "\n" + std::string(key));
    c.idem.request_hash = hash_of(request);
    c.body = std::move(body);
    return run(c);
  }
  Reply run(Command& c) {
    ledger.begin_batch(now);
    last_events_from = events.size();
    commands.push_back(c);
    batch_now.push_back(now);
    Reply r = ledger.apply(c, events);
    ledger.check_invariants();
    return r;
  }
  std::vector<Event> last_events() const {
    return {events.begin() + static_cast<std::ptrdiff_t>(last_events_from), events.end()};
  }

  PoolView pool(std::string_view account) const {
    auto v = ledger.view(account, now);
    EXPECT_TRUE(v.ok());
    return v.ok() && !v->pools.empty() ? v->pools[0] : PoolView{};
  }
  AccountView account(std::string_view id) const {
    auto v = ledger.view(id, now);
    EXPECT_TRUE(v.ok());
    return v.ok() ? v.value() : AccountView{};
  }

  Ledger ledger;
  std::int64_t now = 0;
  std::vector<Event> events;
  std::size_t last_events_from = 0;
  std::vector<Command> commands;        // every command run, in order
  std::vector<std::int64_t> batch_now;  // the instant each was run at
};

}  // namespace credit::ledger::testing
