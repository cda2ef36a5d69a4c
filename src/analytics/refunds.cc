// src/analytics/refunds.cc
// The refund attribution rule's helpers and the RefundBook (see refunds.h).
#include "analytics/refunds.h"

#include <charconv>

namespace credit::analytics {

std::optional<std::uint64_t> charge_seq(std::string_view id) {
  if (id.size() < 3 || id[0] != 'c' || id[1] != '_') return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(id.data() + 2, id.data() + id.size(), v);
  if (ec != std::errc() || p != id.data() + id.size() || id[2] == '0') return std::nullopt;
  return v;
}

std::string RefundBook::key_of(const ledger::Event& e) {
  std::string key = e.account_id;
  key += '\x1f';
  key += e.imported ? 'i' : 'l';  // the same origin only: ids of two systems may collide
  key += e.charge_id;
  return key;
}

void RefundBook::add(const ledger::Event& refund) {
  if (refund.type != ledger::EventType::kRefund || refund.charge_id.empty()) return;
  by_charge_[key_of(refund)].emplace_back(refund.at_ms, refund.credits);
}

Millicredits RefundBook::refunded(const ledger::Event& charge) const {
  if (by_charge_.empty() || charge.charge_id.empty()) return Millicredits::zero();
  auto it = by_charge_.find(key_of(charge));
  if (it == by_charge_.end()) return Millicredits::zero();
  Millicredits sum;
  for (const auto& [at_ms, credits] : it->second) {
    if (refund_reaches(charge.at_ms, at_ms)) sum = sum.saturating_add(credits);
  }
  return sum;
}

}  // namespace credit::analytics
