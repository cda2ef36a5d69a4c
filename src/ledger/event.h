// src/ledger/event.h
// An event: one change the ledger made (or one refusal it recorded), with a global
// sequence number. Events feed the event log, the analytics and idempotent replays.
// Owns: the Event value and its type names. Does not: store or encode events
// (store/ keeps them; analytics/event_json.h writes and reads their JSON form).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "money/money.h"
#include "pricing/usage.h"

namespace credit::ledger {

enum class EventType : std::uint8_t {
  kCharge = 0,
  kHold = 1,
  kCapture = 2,
  kVoid = 3,
  kExpire = 4,
  kGrant = 5,
  kReset = 6,
  kPlanChange = 7,
  kRefund = 8,
  kCacheHit = 9,
  kRejected = 10,
  // Internal types, outside API.md's list: kept in the event log (the analytics and the
  // import with mode=apply read them; `creditctl simulate` writes "account" lines) but
  // never listed by GET .../events or its exports (event_type_listed).
  kAccountCreated = 11,  // written as type "account"
  kAccountClosed = 12,   // written as type "close"
};
std::string_view event_type_name(EventType type);
std::optional<EventType> parse_event_type(std::string_view name);
// True for the types of API.md's list (every type but the internal ones above).
bool event_type_listed(EventType type);

// One bucket a charge, hold or refund touched: "allowance" or "grant:<id>".
struct DrawnFrom {
  std::string source;
  Millicredits credits;
  bool operator==(const DrawnFrom&) const = default;
};

// The known metadata keys and up to 16 of the client's own (string values).
struct Metadata {
  std::string file;
  std::string feature;
  std::string model;
  std::string snapshot_id;
  std::string call_site;
  std::string intent;  // "feature" | "fix" | "question" | ""
  std::string request_hash;
  std::vector<std::pair<std::string, std::string>> extra;
  bool empty() const {
    return file.empty() && feature.empty() && model.empty() && snapshot_id.empty() &&
           call_site.empty() && intent.empty() && request_hash.empty() && extra.empty();
  }
  bool operator==(const Metadata&) const = default;
};

struct Event {
  // Provided, not defaulted: value-initialisation (events.emplace_back()) would otherwise
  // zero the whole kilobyte before running the member initialisers below.
  Event() noexcept {}  // NOLINT(modernize-use-equals-default)

  std::uint64_t seq = 0;
  std::int64_t at_ms = 0;
  std::string account_id;
  std::string user_id;
  EventType type = EventType::kCharge;
  std::optional<pricing::Kind> kind;
  std::string pool;
  Millicredits credits;  // the amount the event moved, >= 0 (cache_hit: credits saved)
  std::optional<Millicredits> available_after;
  std::vector<DrawnFrom> drawn_from;
  std::string refused_by;  // "pool" | "daily_cap" | ""
  std::string priced_by;   // "usage" | "amount" | ""
  std::optional<pricing::Usage> usage;
  Metadata metadata;
  std::string cache_key;
  std::string idempotency_key;
  std::int64_t rate_card_version = 0;
  bool imported = false;
  // Type-specific references: the hold, charge, grant or refund the event is about;
  // `object` is "hold" | "grant" for expire events, "rollover" | "pack" | "adjustment"
  // for grants, "pending" | "pending_cleared" | "pending_applied" (or "") for plan changes.
  std::string hold_id;
  std::string charge_id;
  std::string grant_id;
  std::string refund_id;
  std::string object;
  std::string plan;
  std::string previous_plan;
  std::int64_t proration_usd_cents = 0;
  std::string reason;

  bool operator==(const Event&) const = default;
};

// Back to a default Event, keeping the capacity of its strings and vectors: readers and
// the simulator refill one Event per line or event. A field added to Event must be reset
// there too (a size check in event.cc is the reminder).
void reset_keeping_capacity(Event& e);

}  // namespace credit::ledger
