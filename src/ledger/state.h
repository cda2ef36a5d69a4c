// src/ledger/state.h
// The ledger's state: accounts, their pools as sets of buckets, holds, charges.
// A bucket's free part is granted - spent - held - vanished - taken, never negative;
// per cycle, base = cycle_spent + held + free + cycle_vanished + cycle_taken.
// Owns: the data and its small derived values. Does not: decide anything (ledger.cc).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ledger/charge_table.h"
#include "ledger/command.h"
#include "ledger/limits.h"
#include "money/money.h"
#include "pricing/plan.h"

namespace credit::ledger {

enum class BucketKind : std::uint8_t { kAllowance = 0, kRollover = 1, kPack = 2, kAdjustment = 3 };

struct Bucket {
  std::uint32_t bucket_id = 0;  // unique in the account
  BucketKind kind = BucketKind::kAllowance;
  std::string grant_id;  // empty for allowance buckets
  Millicredits granted;
  Millicredits spent;
  Millicredits held;
  Millicredits vanished;                  // free credits lost when the bucket ended
  Millicredits taken;                     // free credits removed by negative adjustments
  std::int64_t expires_at_ms = kNeverMs;  // allowance: its cycle end
  std::int64_t created_at_ms = 0;
  bool ended = false;
  // Tallies at the start of the current cycle (or 0 when created in it).
  Millicredits base_spent;
  Millicredits base_vanished;
  Millicredits base_taken;
  std::string reason;
  Millicredits credits_signed;  // as granted (a negative adjustment keeps its sign)

  Millicredits free() const { return granted - spent - held - vanished - taken; }
  Millicredits cycle_base() const { return granted - base_spent - base_vanished - base_taken; }
  Millicredits cycle_spent() const { return spent - base_spent; }
  Millicredits cycle_vanished() const { return vanished - base_vanished; }
  Millicredits cycle_taken() const { return taken - base_taken; }
};

struct PoolState {
  std::string name;
  std::vector<Bucket> buckets;  // alive ones and ended ones still carrying holds
  // The daily cap's day: [day_start_ms, +24h).
  std::int64_t day_start_ms = 0;
  Millicredits spent_today;
  Millicredits held_today;  // held by holds placed today that are still open
  Millicredits refunded_this_cycle;
};

enum class HoldState : std::uint8_t { kOpen = 0, kCaptured = 1, kVoided = 2, kExpired = 3 };
std::string_view hold_state_name(HoldState s);

struct HoldRecord {
  std::string hold_id;
  std::string user_id;
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  std::size_t pool_index = 0;
  Millicredits amount;
  std::vector<Reservation> reserved;
  std::int64_t placed_at_ms = 0;
  std::int64_t expires_at_ms = 0;
  std::int64_t day_start_ms = 0;  // the UTC day it was placed on (daily cap)
  std::int64_t rate_card_version = 0;
  HoldState state = HoldState::kOpen;
  std::string cache_key;
  Metadata metadata;
};

struct Account {
  std::string account_id;
  bool closed = false;
  pricing::Plan plan;  // the plan in force this cycle
  std::optional<std::string> pending_plan;
  std::int64_t signup_at_ms = 0;
  std::int64_t anchor_ms = 0;
  std::int64_t cycle_index = 0;   // k of the anchor
  std::int64_t cycle_serial = 0;  // counts every cycle the account began (charges keep it)
  std::int64_t cycle_start_ms = 0;
  std::int64_t cycle_end_ms = 0;
  std::uint32_t next_bucket_id = 1;
  std::vector<PoolState> pools;             // in the plan's pool order
  std::map<std::string, HoldRecord> holds;  // by hold id
  std::size_t open_holds = 0;
  ChargeTable charges;  // this cycle and the last, by charge id
  // Charges of earlier cycles, forgotten at resets: refunds of them are 409, not 404.
  ForgottenCharges forgotten_charges;
  std::int64_t created_at_ms = 0;
  // Not state: the due instant of the account's live entry in the ledger's sweep queue
  // (Ledger::next_due_ms), never after its true next due instant; kept by the ledger,
  // rebuilt when a snapshot is loaded, not encoded.
  std::int64_t due_queued_ms = INT64_MAX;

  PoolState* pool(std::string_view name);
  const PoolState* pool(std::string_view name) const;
};

// The per-pool view that API.md's account object shows.
struct PoolView {
  std::string name;
  Millicredits allowance, extra, used, held, available;
  std::optional<Millicredits> daily_cap;
  Millicredits used_today;
  Millicredits available_now;
};

struct AccountView {
  std::string account_id;
  std::string plan;
  bool closed = false;
  std::int64_t cycle_start_ms = 0;
  std::int64_t cycle_end_ms = 0;
  std::vector<PoolView> pools;
  std::optional<std::string> pending_plan;
};

}  // namespace credit::ledger
