// src/analytics/rollup.h
// Rollups: what the analytics routes read instead of raw events (DESIGN.md section 2).
// Per account, per pool, per UTC hour: credits and counts in total and by kind, user,
// file, feature, model and call site; agent turns and credits per file (hot files); cache
// hits, misses and credits saved per call site. Beside them, per account and pool, the
// daily burn of live events (the burn monitor). Regression loops are not kept here: the
// route computes them from the range's events with the audit's code (server/audit_route.h),
// so only the range's turns count and the route and the audit agree.
// Owns: the rules of what an event adds. A charge or a capture adds its credits and one
// to the count; a refund subtracts its credits (in the hour of the refund, under the
// file, feature, model and call site of the charge it refunds: refunds.h's rule, the
// charges of each origin remembered for kRefundMemoryMs) and leaves the count; a cache_hit adds a
// hit and its credits saved; a charge or hold that carries a cache_key adds a miss; other types add
// nothing. Imported events (imported: true) go into a layer of their own that only the time-ranged
// reads (usage, hot files, cache stats) include; the burn series and the first-event instant are
// live only, so imports never move balances, thresholds or webhooks. Layout (flat, so that add()
// touches a few cache lines whatever the history): every dimension value is interned once (a 32-bit
// id); an hour cell is a small array of (dimension, id) -> tally entries, scanned linearly while
// small and indexed by an open-addressing table past kCellScanEntriesMax; a pool's cells are a
// vector sorted by start (live events arrive in time order, so add() appends or finds the last
// one); a cell starts on the hour, or at a cycle start inside it (a live `reset` event's instant,
// or the account's creation: the hour is split there, so that the current cycle's range, exact and
// often starting mid-hour, takes all of its events and none of the previous cycle's; range.h);
// the daily burn is a vector sorted by day; the refund memory is a deque of charges in sequence
// order, searched by the sequence number in the charge id. Cost: add() is O(1) (amortised) per
// event; a read costs O(hours in the range x distinct keys per hour), never a scan of raw events;
// burn_window() is O(log days + window days).
// Retention (drop_days): when the event log deletes UTC days, every trace of their events
// goes: their cells and burn days, their cycle splits, their charges in the refund memory,
// their imported keys, and the days' first-event instants (the account's first event is then
// the first of the days left). A refund kept whose charge's day is deleted moves from the
// charge's file, feature, model and call site to its own (refunds.h's rule when the charge is
// unknown): such refunds (charge and refund on different days, attributed to the charge) are
// remembered until either day is deleted. The rollups then hold exactly what a start rebuilds
// from the days left (DESIGN.md section 3: a restart never changes an answer). Cost: per pool,
// a binary search per deleted day and the cells after the first deleted one moved (a deleted
// prefix: every cell once, about once a day).
// Does not: lock (the owner, live.h, does), read the ledger (the routes pass views).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "analytics/range.h"
#include "analytics/refunds.h"
#include "base/id_index.h"
#include "ledger/event.h"
#include "time/time.h"

namespace credit::analytics {

// Entries an hour cell scans linearly before it keeps a hash index (a typical hour of
// one account has a few dozen keys; a busy one thousands).
constexpr std::size_t kCellScanEntriesMax = 24;

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

// The burn a burn report needs, without the daily series (burn.h).
struct BurnWindow {
  std::int64_t today_mc = 0;
  std::int64_t window_sum_mc = 0;
};

// What add() reads of an event: a copy small enough to queue off the ledger thread
// (the ids and names of a live charge fit in the strings' inline buffers).
struct Fact {
  std::int64_t at_ms = 0;
  ledger::EventType type = ledger::EventType::kCharge;
  std::optional<pricing::Kind> kind;
  bool imported = false;
  bool has_cache_key = false;
  std::int64_t credits_mc = 0;
  std::string account_id;
  std::string user_id;
  std::string pool;
  std::string file;
  std::string feature;
  std::string model;  // metadata.model, else usage.model
  std::string call_site;
  std::string charge_id;
  std::string idempotency_key;  // imported events only
};
// The instants at which an account's hour is split: live cycle starts (and the account's
// creation) off the hour, at most
// this many kept (the oldest dropped; a cycle lasts a month, or begins at an upgrade from a
// free plan, so 400 days of events hold a few dozen).
constexpr std::size_t kCycleSplitsPerAccountMax = 256;

// Does add() do anything with this event? (Other events need not be queued.)
bool fact_matters(const ledger::Event& e);
Fact fact_of(const ledger::Event& e);

// Strings to dense 32-bit ids ("" is 0), and back.
class Interner {
 public:
  Interner();
  std::uint32_t intern(std::string_view s);
  std::optional<std::uint32_t> find(std::string_view s) const;
  const std::string& name(std::uint32_t id) const { return names_[id]; }

 private:
  std::deque<std::string> names_;  // stable addresses: the map's keys view them
  std::unordered_map<std::string_view, std::uint32_t> ids_;
};

class Rollups {
 public:
  Rollups() = default;

  // Adds one event. Live events must arrive in sequence order (the engine's sink does);
  // imported ones in time order per account (the import sorts them).
  void add(const ledger::Event& event);
  void add(const Fact& fact);

  // Forgets every event whose instant lies in one of these UTC days (day starts, sorted):
  // the event log deleted them (see the header).
  void drop_days(const std::vector<std::int64_t>& day_starts_ms);

  // The instant of the account's first live event (of the days the log still holds).
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
  // The live burn of today_ms's day and the sum over the window_days days from
  // window_first_ms (day starts): daily_burn() summed, without the series.
  BurnWindow burn_window(std::string_view account_id, std::string_view pool, std::int64_t today_ms,
                         std::int64_t window_first_ms, std::int64_t window_days) const;

 private:
  // An entry's key: the dimension (Dim, or kAgentFileTag) in the top bits, the id below.
  struct Entry {
    std::uint32_t key = 0;
    std::int64_t credits_mc = 0;
    std::int64_t count = 0;
  };
  struct CacheEntry {
    std::uint32_t site = 0;
    CacheTally tally;
  };
  struct Cell {
    Tally total;
    std::vector<Entry> entries;
    std::vector<std::uint32_t> index;  // entry + 1 per slot (0: free); empty while small
    std::vector<CacheEntry> cache;
    Entry& entry(std::uint32_t key);
  };
  // Cells sorted by start: an hour's start, or a cycle start inside the hour.
  struct Layer {
    std::vector<std::int64_t> starts;
    std::vector<Cell> cells;
    Cell& at(std::int64_t start);
  };
  struct PoolRollup {
    std::uint32_t pool = 0;  // interned name
    Layer live;
    Layer imported;
    std::vector<std::int64_t> burn_days;  // live daily burn: day starts, sorted
    std::vector<std::int64_t> burn_mc;    // beside them
  };
  struct ChargeDims {
    std::uint32_t file = 0, feature = 0, model = 0, call_site = 0;
  };
  struct ChargeMemo {
    std::int64_t at_ms = 0;
    std::uint64_t seq = 0;  // from the charge id "c_<seq>"
    ChargeDims dims;
  };
  // The charges of one origin (live or imported) within kRefundMemoryMs, in sequence
  // order; charge ids not of the ledger's form "c_<seq>" (live: none today), or out of
  // order, go to the map beside it.
  struct ChargeMemory {
    std::deque<ChargeMemo> charges;
    std::unordered_map<std::string, std::pair<std::int64_t, ChargeDims>> other_charges;
    std::deque<std::pair<std::int64_t, std::string>> other_order;  // (at, charge id)
  };
  // A refund attributed to a charge of an earlier day (refunded_charge): when the charge's
  // day is deleted, the refund moves to its own dimensions (drop_days).
  struct CrossDayRefund {
    std::int64_t charge_day_ms = 0;
    std::int64_t cell_start_ms = 0;  // the refund's cell
    std::int64_t credits_mc = 0;
    std::uint32_t pool = 0;  // interned name
    bool imported = false;
    bool agent_prompt = false;
    ChargeDims charged;
    ChargeDims own;
  };
  struct AccountRollup {
    std::string account_id;
    std::vector<PoolRollup> pools;  // one or two, searched linearly
    // The first listed live event's instant of each UTC day that had one, sorted: the
    // account's first live event is the front.
    std::vector<std::int64_t> listed_days;
    ChargeMemory live_charges;
    ChargeMemory imported_charges;
    std::unordered_map<std::string, std::int64_t> imported_keys;  // key -> the event's at
    std::vector<CrossDayRefund> cross_day_refunds;                // in the order they were added
    std::vector<std::int64_t> cycle_splits;  // sorted; see kCycleSplitsPerAccountMax
    // The start of the cell an event at at_ms goes to.
    std::int64_t cell_start_ms(std::int64_t at_ms) const;
  };

  const AccountRollup* account(std::string_view account_id) const;
  // The account's rollup, made empty when it has none yet.
  AccountRollup& account_for_write(std::string_view account_id);
  // Whether rollup number n is account_id's (by_id_'s check of a hash match).
  auto is_id(std::string_view account_id) const {
    return [this, account_id](std::uint32_t n) {
      return ids_equal(accounts_[n]->account_id, account_id);
    };
  }
  const PoolRollup* pool_of(std::string_view account_id, std::string_view pool) const;
  static void remember_charge(ChargeMemory& m, const Fact& f, const ChargeDims& dims);
  // The remembered charge a refund is attributed to (refunds.h), if any: its instant and
  // dimensions.
  static std::optional<std::pair<std::int64_t, ChargeDims>> refunded_charge(const ChargeMemory& m,
                                                                            const Fact& refund);
  static void note_listed(AccountRollup& a, std::int64_t at_ms);
  // Moves a refund from its charge's dimensions to its own (its charge's day is deleted).
  void reattribute(AccountRollup& a, const CrossDayRefund& r);
  // The dimensions of the charge a refund is attributed to (refunds.h), if remembered.
  template <typename Fn>
  void each_cell(std::string_view account_id, std::string_view pool, TimeRange range, Fn fn) const;

  Interner names_;
  // The accounts' rollups by number, found by id through by_id_ (an event each).
  std::vector<std::unique_ptr<AccountRollup>> accounts_;
  IdIndex by_id_;
};

}  // namespace credit::analytics
