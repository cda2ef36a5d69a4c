// src/ledger/command.h
// Commands: everything the ledger reads to make one change. A command carries the
// amounts in millicredits, the rate card version and the policy decisions (cache hit,
// rate limit), so replaying a logged batch never reads a config file or a clock.
// Owns: the command values. Does not: encode them (codec.h) or apply them (ledger.h).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "base/status.h"
#include "ledger/event.h"
#include "money/money.h"
#include "pricing/usage.h"

namespace credit::ledger {

using Hash128 = std::array<std::uint8_t, 16>;

// The idempotency part of a mutating command: the hash of (scope, key) and the hash of
// the request (route and body). has_key is false for commands without a key (sweep).
struct IdempotencyRef {
  bool has_key = false;
  Hash128 scope_key_hash{};
  Hash128 request_hash{};
  std::string key;  // the client's key, kept in the events
};

enum class GrantSource : std::uint8_t { kRollover = 0, kPack = 1, kAdjustment = 2 };
std::string_view grant_source_name(GrantSource s);

struct CreateAccount {
  std::string account_id;
  std::string plan_id;
  std::optional<std::int64_t> signup_at_ms;
};
struct CloseAccount {
  std::string account_id;
};
struct ChangePlan {
  std::string account_id;
  std::string plan_id;
};
struct AddGrant {  // a pack purchase or an adjustment (may be negative)
  std::string account_id;
  std::string pool;
  GrantSource source = GrantSource::kAdjustment;
  Millicredits credits;
  std::optional<std::int64_t> expires_at_ms;
  std::string reason;
};
struct Charge {
  std::string account_id;
  std::string user_id;
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  std::string pool;
  Millicredits amount;
  bool priced_by_usage = false;
  std::int64_t rate_card_version = 0;
  std::optional<pricing::Usage> usage;
  Metadata metadata;
  std::string cache_key;
  bool cache_hit = false;  // decided by the cache policy before the command was logged
  Millicredits saved;      // on a cache hit: the price the hit saved
  // On a cache hit: the generation of the entry that answered (policy/cache.h), so that a
  // replay answers that entry's response or none; 0 in a log from before generations.
  std::uint64_t cache_generation = 0;
};
struct Hold {
  std::string account_id;
  std::string user_id;
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  std::string pool;
  Millicredits amount;
  bool priced_by_usage = false;
  std::int64_t ttl_ms = 0;
  std::int64_t rate_card_version = 0;
  std::optional<pricing::Usage> usage;
  Metadata metadata;
  std::string cache_key;
  bool cache_hit = false;  // a hit places no hold: the answer is the cached response
  Millicredits saved;
  std::uint64_t cache_generation = 0;  // as Charge's
};
struct Capture {
  std::string account_id;
  std::string hold_id;
  std::optional<Millicredits> amount;  // nullopt: the whole hold
  bool priced_by_usage = false;
  bool overage_charge = false;
  std::optional<pricing::Usage> usage;
  Metadata metadata;
};
struct Void {
  std::string account_id;
  std::string hold_id;
};
struct Refund {
  std::string account_id;
  std::string charge_id;
  std::optional<Millicredits> credits;  // nullopt: all that is unrefunded
  std::string reason;
};
// Applies every boundary, hold expiry and grant expiry passed, for every account.
struct Sweep {};
// A new catalog of plans (its TOML text; the ledger parses it, deterministically).
struct LoadCatalog {
  std::string toml_text;
};
// A rate card (its TOML text and the version it declares). The ledger keeps every version
// it was given, so a capture is priced with its hold's card after the file changed and
// the server restarted (DESIGN.md: rate cards are versioned values in the state).
struct LoadRateCard {
  std::int64_t version = 0;
  std::string toml_text;
};

using CommandBody = std::variant<CreateAccount, CloseAccount, ChangePlan, AddGrant, Charge, Hold,
                                 Capture, Void, Refund, Sweep, LoadCatalog, LoadRateCard>;

struct Command {
  IdempotencyRef idem;
  // A request that failed validation or the rate limit still goes through the ledger so
  // that the idempotency check comes first (API.md's order); it changes nothing.
  // kRateLimited is logged with the command but makes no event and is never stored
  // under its key (DESIGN.md, Idempotency).
  ErrorCode precheck_error = ErrorCode::kOk;
  std::string precheck_message;
  std::string precheck_param;
  std::int64_t retry_after_ms = 0;
  CommandBody body;
  // Set by Ledger::gate when it lets the command through, so that the apply() after the
  // policy layer does not look the key and the account up again; apply() clears it.
  // Not logged: a replay gates every command in apply().
  bool gated = false;
  // A line of POST /v1/admin/import?mode=apply: history another system already metered.
  // The server's policy layer (the cache lookup, the rate limits) is for live requests and
  // skips it; its cache_key is kept with its event. Not logged (the decisions are).
  bool imported = false;
  // The hashes of the account id and (charges) the user id the ledger looks up, made by
  // its first lookup of the command (a prefetch stage or gate) and kept for the others,
  // instead of hashing the ids at each of nine lookups; 0: not made yet. Not logged; a
  // command given other ids must have these reset.
  mutable std::uint64_t account_hash = 0;
  mutable std::uint64_t user_hash = 0;
  // The account a ledger found for the command (Ledger::lookup), with that ledger's
  // instance number, so that gate() and apply() find it once; and the account its
  // prefetch stages peeked (a hint, maybe another account), so that they peek once.
  // Accounts are never removed, so neither pointer dangles while its ledger lives; a
  // command given other ids must have these reset with the hashes.
  mutable void* found_account = nullptr;
  mutable const void* peeked_account = nullptr;
  mutable std::uint64_t pointers_ledger = 0;
};

}  // namespace credit::ledger
