#include "ledger/event.h"

#include <array>

namespace credit::ledger {
namespace {
constexpr std::array<std::string_view, 13> kNames = {
    "charge", "hold",   "capture", "void",     "expire",  "grant", "reset",
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

}  // namespace credit::ledger
