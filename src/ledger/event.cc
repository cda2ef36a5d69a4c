#include "ledger/event.h"

#include <array>

namespace credit::ledger {
namespace {
constexpr std::array<std::string_view, 13> kNames = {
    "charge",      "hold",   "capture",   "void",     "expire",  "grant", "reset",
    "plan_change", "refund", "cache_hit", "rejected", "account", "close"};
}

std::string_view event_type_name(EventType type) {
  return kNames[static_cast<std::size_t>(type)];
}

std::optional<EventType> parse_event_type(std::string_view name) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<EventType>(i);
  }
  return std::nullopt;
}

bool event_type_listed(EventType type) {
  return type != EventType::kAccountCreated && type != EventType::kAccountClosed;
}

void reset_keeping_capacity(Event& e) {
  static_assert(sizeof(Event) == 1040 || sizeof(void*) != 8,
                "Event changed: reset the new field in reset_keeping_capacity()");
  e.seq = 0;
  e.at_ms = 0;
  e.account_id.clear();
  e.user_id.clear();
  e.type = EventType::kCharge;
  e.kind.reset();
  e.pool.clear();
  e.credits = Millicredits::zero();
  e.available_after.reset();
  e.drawn_from.clear();
  e.refused_by.clear();
  e.priced_by.clear();
  e.usage.reset();
  e.metadata.file.clear();
  e.metadata.feature.clear();
  e.metadata.model.clear();
  e.metadata.snapshot_id.clear();
  e.metadata.call_site.clear();
  e.metadata.intent.clear();
  e.metadata.request_hash.clear();
  e.metadata.extra.clear();
  e.cache_key.clear();
  e.idempotency_key.clear();
  e.rate_card_version = 0;
  e.imported = false;
  e.hold_id.clear();
  e.charge_id.clear();
  e.grant_id.clear();
  e.refund_id.clear();
  e.object.clear();
  e.plan.clear();
  e.previous_plan.clear();
  e.proration_usd_cents = 0;
  e.reason.clear();
}

}  // namespace credit::ledger
