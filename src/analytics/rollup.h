// src/analytics/rollup.h
// Rollups: what the analytics routes read instead of raw events (DESIGN.md section 2).
// Per account, per pool, per UTC hour: credits and counts in total and by kind, user,
// file, feature, model and call site; agent turns and credits per file (hot files); cache
// hits, misses and credits saved per call site. Beside them, per account and pool, the
// daily burn of live events (the burn monitor), and per account the regression loops
// found by a streaming LoopDetector (loops.h).
// Owns: the rules of what an event adds. A charge or a capture adds its credits and one
// to the count; a refund subtracts its credits (in the hour of the refund, under the
// file, feature, model and call site of the charge it refunds, remembered for
// kRefundMemoryMs) and leaves the count; a cache_hit adds a hit and its credits saved;
// a charge or hold that carries a cache_key adds a miss; other types add nothing.
// Imported events (imported: true) go into a layer of their own that only the
// time-ranged reads (usage, hot files, cache stats, loops) include; the burn series
// and the first-event instant are live only, so imports never move balances, thresholds
// or webhooks.
// Cost: add() is a fixed number of hash-map updates (O(1) per event); a read costs
// O(hours in the range x distinct keys per hour), never a scan of raw events.
// Does not: lock (the owner, live.h, does), read the ledger (the routes pass views).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "analytics/loops.h"
#include "ledger/event.h"
#include "time/time.h"

namespace credit::analytics {

// A charge can be refunded only while its cycle is current: at most a month, 31 days.
// A refund later than this after its charge is subtracted under no file or feature.
constexpr std::int64_t kRefundMemoryMs = 32 * kMsPerDay;

// The dimensions a usage read can group by (besides day and ISO week).
enum class Dim : std::uint8_t { kKind = 0, kUser, kFile, kFeature, kModel, kCallSite };
constexpr std::size_t kDimCount = 6;

enum class GroupBy : std::uint8_t {
  kKind = 0,
  kUser,
  kFile,
  kFeature,
  kModel,
  kCallSite,
  kDay,
  kWeek
};
// "kind", "user", "file", "feature", "model", "call_site", "day", "week".
std::optional<GroupBy> parse_group_by(std::string_view name);

struct Tally {
  std::int64_t credits_mc = 0;
  std::int64_t count = 0;
};

struct CacheTally {
  std::int64_t hits = 0;
  std::int64_t misses = 0;
  std::int64_t saved_mc = 0;
};

// One UTC hour of one pool. Keys are "" for events without that dimension.
struct HourCell {
  Tally total;
  std::array<std::unordered_map<std::string, Tally>, kDimCount> by;
  std::unordered_map<std::string, Tally> agent_files;  // agent turns (count) per file
  std::unordered_map<std::string, CacheTally> cache;   // by call site
};

// A half-open range [from_ms, to_ms) of instants.
struct TimeRange {
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;
};

struct UsageRow {
  std::string key;  // "" for events without the dimension (written as null)
  std::int64_t credits_mc = 0;
  std::int64_t count = 0;
};

struct UsageResult {
  std::int64_t total_mc = 0;
  std::int64_t count = 0;
  // Day and week rows in key order; the others by credits (most first), then key.
  std::vector<UsageRow> rows;
};

struct HotFileRow {
  std::string file;
  std::int64_t turns = 0;
  std::int64_t credits_mc = 0;
};

struct CacheSiteRow {
  std::string call_site;  // "" when the event named none
  CacheTally tally;
};

struct CacheStats {
  CacheTally total;
  std::vector<CacheSiteRow> by_call_site;  // by hits + misses (most first), then name
};

class Rollups {
 public:
  explicit Rollups(LoopRules loop_rules = {}) : loop_rules_(loop_rules) {}

  // Adds one event. Live events must arrive in sequence order (the engine's sink does);
  // imported ones in time order per account (the import sorts them).
  void add(const ledger::Event& event);

  bool has_events(std::string_view account_id) const;
  // The instant of the account's first live event.
  std::optional<std::int64_t> first_event_ms(std::string_view account_id) const;
  // Has an imported event of this account carried this idempotency key?
  bool imported_key_seen(std::string_view account_id, std::string_view key) const;

  UsageResult usage(std::string_view account_id, std::string_view pool, GroupBy group,
                    TimeRange range) const;
  // The top `limit` files by agent turns (ties: credits, then name) or by credits.
  std::vector<HotFileRow> hot_files(std::string_view account_id, std::string_view pool,
                                    TimeRange range, bool by_credits, std::size_t limit) const;
  CacheStats cache_stats(std::string_view account_id, std::string_view pool, TimeRange range) const;
  // Live burn (charges + captures - refunds) of each UTC day from first_day_ms to
  // last_day_ms inclusive (both day starts), in millicredits; days without burn are 0.
  std::vector<std::int64_t> daily_burn(std::string_view account_id, std::string_view pool,
                                       std::int64_t first_day_ms, std::int64_t last_day_ms) const;
  // Loops (live and imported) whose first turn is in the range, in first-turn order.
  // Windows still open are decided as if the stream ended now.
  std::vector<Loop> loops(std::string_view account_id, TimeRange range) const;

 private:
  struct ChargeDims {
    std::string file, feature, model, call_site;
  };
  struct PoolRollup {
    std::map<std::int64_t, HourCell> live;               // by hour start
    std::map<std::int64_t, HourCell> imported;           // by hour start
    std::map<std::int64_t, std::int64_t> live_daily_mc;  // by day start
  };
  struct LoopState {
    LoopDetector detector;
    std::vector<Loop> found;
  };
  struct AccountRollup {
    std::unordered_map<std::string, PoolRollup> pools;
    std::optional<std::int64_t> first_live_ms;
    std::unordered_map<std::string, ChargeDims> charge_dims;        // by charge id
    std::deque<std::pair<std::int64_t, std::string>> charge_order;  // (at, charge id)
    std::unordered_set<std::string> imported_keys;
    std::optional<LoopState> live_loops;
    std::optional<LoopState> imported_loops;
  };

  void remember_charge(AccountRollup& a, const ledger::Event& e);
  template <typename Fn>
  void each_cell(std::string_view account_id, std::string_view pool, TimeRange range, Fn fn) const;

  LoopRules loop_rules_;
  std::unordered_map<std::string, AccountRollup> accounts_;
};

}  // namespace credit::analytics
