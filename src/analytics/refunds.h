// src/analytics/refunds.h
// Which charge a refund is subtracted under (DESIGN.md section 2: "Refunds are
// subtracted"). A refund event carries no metadata of its own (the ledger writes its
// charge_id, kind, user and pool), so it is attributed to the charge it refunds: the
// charge event with its charge_id among the earlier charges of the same account and the
// same origin (live, or imported), at most kRefundMemoryMs before it. It is then booked
// under that charge's file, feature, model and call site, and it lowers that agent turn's
// credits in regression-loop detection (loops.h). A refund whose charge is not found is
// booked under its own metadata (a live refund's is empty: no file, no feature).
// Two users, one rule: the live rollups (rollup.h) remember the charges of the last
// kRefundMemoryMs as they stream by; the audit (audit.h), whose stream is one range of
// events read in full, gathers the refunds first (RefundBook) and books each charge net
// of those attributed to it, which subtracts the same credits under the same keys without
// remembering every charge.
// Owns: the attribution rule, the charge id form, the RefundBook. Does not: aggregate.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ledger/event.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {

// A charge can be refunded only while its cycle is current: at most a month, 31 days.
// A refund later than this after its charge is subtracted under no file or feature.
constexpr std::int64_t kRefundMemoryMs = 32 * kMsPerDay;

// "c_<seq>" -> seq (the ledger's charge ids); nullopt for any other form.
std::optional<std::uint64_t> charge_seq(std::string_view id);

// Whether a refund at refund_at_ms may be attributed to a charge at charge_at_ms.
inline bool refund_reaches(std::int64_t charge_at_ms, std::int64_t refund_at_ms) {
  return refund_at_ms >= charge_at_ms && refund_at_ms - charge_at_ms <= kRefundMemoryMs;
}

// The refunds of a stream, by the charge they refund (account, origin, charge_id).
class RefundBook {
 public:
  // Notes a refund event (other events and refunds without a charge_id are ignored).
  void add(const ledger::Event& refund);
  bool empty() const { return by_charge_.empty(); }
  // The credits of the noted refunds that the rule attributes to this charge event.
  Millicredits refunded(const ledger::Event& charge) const;
  // The charge an event is about, as a key: its account, origin and charge id.
  static std::string key_of(const ledger::Event& e);

 private:
  std::unordered_map<std::string, std::vector<std::pair<std::int64_t, Millicredits>>> by_charge_;
};

// The charges a stream booked net of their refunds (RefundBook::refunded), so that those
// refunds are not subtracted again when they come (the audit's tables, the replay).
class NettedCharges {
 public:
  // `charge` was booked net of the refunds the book attributes to it.
  void note(const ledger::Event& charge) {
    at_by_charge_[RefundBook::key_of(charge)] = charge.at_ms;
  }
  // Whether `refund` is one of those: its charge was noted and the rule reaches it.
  bool took(const ledger::Event& refund) const {
    if (at_by_charge_.empty()) return false;
    auto it = at_by_charge_.find(RefundBook::key_of(refund));
    return it != at_by_charge_.end() && refund_reaches(it->second, refund.at_ms);
  }

 private:
  std::unordered_map<std::string, std::int64_t> at_by_charge_;
};

}  // namespace credit::analytics
