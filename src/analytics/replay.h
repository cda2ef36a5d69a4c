// src/analytics/replay.h
// What-if replay (DESIGN.md section 2): re-price a recorded event stream under policies
// and report the credits before and after, per policy and for the policies combined.
// Owns: the policies, their parsing ("cache", "scoped", "discuss-off", "rate-limit",
// "plan:<id>", and the audit's "editor", "revert-loops", "outliers"), the streaming
// re-pricing, the per-cycle scaling and the per-user outlier rule the audit shares.
// Does not: read files (cli/), decide findings (audit.h).
//
// Burn: charges and captures add their credits, refunds subtract theirs; other events
// move no credits. A policy only lowers what an event costs, never raises it.
// Each policy alone is replayed against the recorded stream; "combined" chains them in
// the order discuss-off, rate-limit, cache, scoped, editor, revert-loops, outliers, each
// seeing what the earlier ones left, so an event is never saved twice: savings decided
// after their event (revert-loops' loops, outliers' excess) included, outliers judging
// each user without the turns revert-loops saved. A caller may ask
// for further chains of some of the policies (ReplayerOptions::chains: the audit chains
// only the policies of the fixes it lists).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "analytics/loops.h"
#include "analytics/refunds.h"
#include "base/status.h"
#include "ledger/event.h"
#include "money/money.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"

namespace credit::analytics {

// Offline, a cycle is taken as this many days when a period's burn is scaled to a cycle.
constexpr std::int64_t kCycleDaysNominal = 30;
// The integration cache's default TTL (DESIGN.md, "Integration cache").
constexpr std::int64_t kCacheTtlMsDefault = 7 * kMsPerDay;
// Offline rate limit when neither the command nor a plan gives one (requests per minute
// per user; the default catalog's paid tiers allow more).
constexpr std::int64_t kRateLimitPerMinuteDefault = 20;
// Small edits (DESIGN.md, audit): at most this many lines changed at this cost or more.
constexpr std::int64_t kSmallEditLinesMax = 5;
constexpr Millicredits kSmallEditCostMin = Millicredits::from_mc(3'000);
// Outliers: above this multiple of the median user and at least this share of the total.
constexpr std::int64_t kOutlierMedianFactor = 3;
constexpr std::int64_t kOutlierTotalPermilleMin = 100;
// The distinct request keys the cache policy remembers; later new keys are not cached.
constexpr std::size_t kReplayCacheKeysMax = 1'000'000;

// A hash map keyed by strings that is searched with a string_view: a lookup allocates
// nothing, only a new key is copied (replay's and the audit's tables, one per event).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// The value of `key`, inserted (value-initialised) when it is new.
template <typename V>
V& entry(StringMap<V>& map, std::string_view key) {
  auto it = map.find(key);
  if (it == map.end()) it = map.try_emplace(std::string(key)).first;
  return it->second;
}

// A request key of 16 lowercase hex digits (a request hash, the usual cache key) packed
// into 64 bits exactly; nullopt for any other key.
std::optional<std::uint64_t> pack_hex16(std::string_view key);

// A packed request key with its kind and a number for its account (the tables' user's).
struct PackedKey {
  std::uint64_t bits = 0;
  std::uint32_t account = 0;
  std::uint8_t kind = 0;
  bool used = false;  // the table's own mark for a slot in use
  bool same(const PackedKey& o) const {
    return bits == o.bits && account == o.account && kind == o.kind;
  }
};

// An open-addressing table of packed request keys (no removal): 24 bytes a slot at most
// three quarters full, where a StringMap holds ~100 bytes a key in nodes of its own (the
// tables of repeats and of the cache policy hold most of the audit's memory on large files).
template <typename V>
class PackedKeyMap {
 public:
  // The value of `key`, or null when it is absent.
  V* find(const PackedKey& key) {
    if (slots_.empty()) return nullptr;
    for (std::size_t i = slot_of(key);; i = (i + 1) & (slots_.size() - 1)) {
      Slot& s = slots_[i];
      if (!s.key.used) return nullptr;
      if (s.key.same(key)) return &s.value;
    }
  }
  // Adds `key`, which must be absent.
  void insert(PackedKey key, V value) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    key.used = true;
    std::size_t i = slot_of(key);
    while (slots_[i].key.used) i = (i + 1) & (slots_.size() - 1);
    slots_[i] = Slot{key, value};
    ++size_;
  }
  std::size_t size() const { return size_; }

 private:
  static constexpr std::size_t kSlotsMin = 16;
  struct Slot {
    PackedKey key;
    V value{};
  };
  std::size_t slot_of(const PackedKey& k) const {
    std::uint64_t h = (k.bits ^ (std::uint64_t{k.account} << 8) ^ k.kind) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return static_cast<std::size_t>(h) & (slots_.size() - 1);
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? kSlotsMin : old.size() * 2, Slot{});
    size_ = 0;
    for (const Slot& s : old) {
      if (s.key.used) insert(s.key, s.value);
    }
  }
  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

// The signed credits an event adds to the burn: + for charge and capture, - for refund.
Millicredits burn_delta(const ledger::Event& event);
// An agent turn: a charge or capture of kind agent_prompt.
bool is_agent_turn(const ledger::Event& event);
// The keys that identify a repeated integration request (DESIGN.md, audit: "same
// `cache_key` or `request_hash`"): a call of a kind repeats an earlier one of that kind
// when either of its keys is one of the earlier one's (both are the client's hash of the
// request, so they are one space of keys). Each is empty when the event has none.
struct RequestKeys {
  std::string_view cache_key;
  std::string_view request_hash;
  bool empty() const { return cache_key.empty() && request_hash.empty(); }
};
RequestKeys request_keys(const ledger::Event& event);
// The integration calls (invokeLLM, generateImage, sendEmail): what the server's cache
// answers (DESIGN.md, "Integration cache"), so what a cache policy replays.
bool is_cacheable(const ledger::Event& event);
// Scales a period's credits to one cycle of cycle_days days.
Millicredits per_cycle(Millicredits credits, std::int64_t period_days,
                       std::int64_t cycle_days = kCycleDaysNominal);

enum class PolicyKind : std::uint8_t {
  kDiscussOff,
  kRateLimit,
  kCache,
  kScoped,
  kEditor,
  kRevertLoops,
  kOutliers,
  kPlan,
};

struct Policy {
  PolicyKind kind = PolicyKind::kCache;
  std::string name;
  // cache: repeats of a request within the TTL cost 0, or, when a hit rate is given,
  // that fraction (in permille) of every cacheable call's credits is saved.
  std::int64_t cache_ttl_ms = kCacheTtlMsDefault;
  std::optional<std::int64_t> hit_rate_permille;
  std::vector<std::pair<std::string, std::int64_t>> hit_rate_permille_by_call_site;
  // rate-limit: token buckets per user and optionally per account.
  pricing::RateLimit per_user{kRateLimitPerMinuteDefault, kRateLimitPerMinuteDefault};
  std::optional<pricing::RateLimit> per_account;
  // plan:<id>
  std::string plan_id;
};

// "cache", "scoped", "discuss-off", "rate-limit", "plan:<id>", "editor", "revert-loops",
// "outliers". Errors are kInvalidRequest naming the policy.
Result<Policy> parse_policy(std::string_view text);

// Whether the burn left after the other policies fits another plan, pool by pool (each
// pool's burn against that pool's allowance: a rate card names the pool of each kind).
struct PlanFit {
  std::string plan_id;
  std::int64_t price_usd_cents = 0;
  // The pool that fits least (the largest need for its allowance; a pool with burn that
  // the plan lacks, allowance 0, least of all), and its figures.
  std::string pool;
  Millicredits allowance;
  Millicredits need_per_cycle;  // that pool's burn after the other policies, per cycle
  bool fits = false;            // every pool's need within its allowance
  // The plan's pools and allowances, kept to judge merged reports the same way.
  std::vector<std::pair<std::string, Millicredits>> allowances;
};

// What one policy of a chain saved: of what the policies before it left.
struct StageSaving {
  PolicyKind kind = PolicyKind::kCache;
  Millicredits saved;
};

struct PolicyOutcome {
  std::string name;
  Millicredits before;
  Millicredits after;
  Millicredits saved;
  Millicredits saved_per_cycle;
  std::int64_t events_changed = 0;  // re-priced lower
  std::int64_t events_dropped = 0;  // removed (discuss off, rate limited, cache hit)
  std::optional<PlanFit> plan;
  // Each policy's part of `saved`, in the chain's order (they add up to `saved`).
  std::vector<StageSaving> stages;
  // `after` by pool (an event without a pool: its kind's pool in the rate card), kept for a
  // plan policy's fit only: each saving comes off the pool of the events it saved, so the
  // pools add up to `after`.
  std::map<std::string, Millicredits, std::less<>> after_by_pool;
};

struct ReplayReport {
  std::int64_t events = 0;  // of API.md's types (the internal account and close are skipped)
  std::int64_t first_at_ms = 0;
  std::int64_t last_at_ms = 0;
  std::int64_t period_days = 0;  // whole UTC days from the first event's to the last's
  Millicredits before;
  std::vector<PolicyOutcome> policies;
  std::optional<PolicyOutcome> combined;  // when more than one policy was asked for
  std::vector<PolicyOutcome> chains;      // ReplayerOptions::chains, in their order
  std::int64_t reprice_errors = 0;        // usages the rate card could not price (kept)
  // The most request keys any cache stage remembered, and whether a new key found its
  // table full (kReplayCacheKeysMax): what merge_replay_reports needs to know.
  std::size_t cache_keys = 0;
  bool cache_keys_full = false;
};

// Per builder (a user with at least one agent or discuss turn).
struct UserTotals {
  std::string user_id;
  std::int64_t agent_turns = 0;
  Millicredits credits;  // all of the user's burn
};

struct Outlier {
  std::string user_id;
  std::int64_t agent_turns = 0;
  Millicredits credits;
  bool by_turns = false;
  bool by_credits = false;
  // Twice the median (exact for an even number of users).
  std::int64_t median_turns_x2 = 0;
  std::int64_t median_credits_mc_x2 = 0;
  // The part above kOutlierMedianFactor x the median: credits, or the share of the
  // user's credits above the turn threshold.
  Millicredits excess;
};

// Users whose agent turns or credits are above 3 x the median user's and at least 10 %
// of the account's total agent turns or credits.
std::vector<Outlier> find_outliers(const std::vector<UserTotals>& users,
                                   std::int64_t total_agent_turns, Millicredits total_credits);

struct ReplayerOptions {
  // Policies replayed only inside the combined chain, not alone (absent from
  // ReplayReport::policies): the audit derives the alone savings of revert-loops and
  // outliers from its own loops and outliers, which are the same numbers.
  std::vector<PolicyKind> combined_only;
  // The period the stream covers, in days, when the caller knows it (the range its events
  // were chosen from); else the UTC days from the first event's to the last's.
  std::optional<std::int64_t> period_days;
  // The length of the cycle "per cycle" figures are scaled to.
  std::int64_t cycle_days = kCycleDaysNominal;
  // The stream's refunds, gathered beforehand (the audit's and `creditctl replay`'s): each
  // charge is replayed net of its refunds, so a policy saves at most what it cost net, and
  // revert-loops decides loops on net credits, as the audit's loops do. Null: gross
  // credits, refunds subtracted as they come. Must outlive the replayer.
  const RefundBook* refunds = nullptr;
  // Further chains, each of the replayer's policies of the kinds listed (in the chain
  // order), reported in ReplayReport::chains in this order; and whether the chain of
  // every policy ("combined") is replayed too.
  std::vector<std::vector<PolicyKind>> chains;
  bool combined = true;
};

// The report of a stream split by account into parts, each replayed by its own Replayer
// with the same policies (every policy's state is per account, so the parts add up): the
// counts and credits are summed, the period and what derives from it recomputed. Equal
// to the report of one Replayer fed the whole stream, except when the cache's table of
// request keys (kReplayCacheKeysMax, shared by all accounts) could have been filled: which
// keys it then keeps depends on the order across accounts, and the result is nullopt
// (replay the whole stream in one Replayer instead).
std::optional<ReplayReport> merge_replay_reports(std::vector<ReplayReport> parts);

class Replayer {
 public:
  // `card` and `catalog` must outlive the replayer; `catalog` may be null (then a plan
  // policy reports the plan as unknown through its PlanFit being absent).
  Replayer(const pricing::RateCard& card, const pricing::Catalog* catalog,
           std::vector<Policy> policies, const ReplayerOptions& options = {});
  ~Replayer();
  Replayer(const Replayer&) = delete;
  Replayer& operator=(const Replayer&) = delete;

  void add(const ledger::Event& event);
  ReplayReport finish();
  // The most request keys any cache stage remembers so far (ReplayReport::cache_keys).
  std::size_t cache_keys() const;

  struct Scenario;

 private:
  const pricing::RateCard& card_;
  const pricing::Catalog* catalog_;
  std::vector<Policy> policies_;
  std::vector<std::unique_ptr<Scenario>> alone_;
  std::unique_ptr<Scenario> combined_;
  std::vector<std::unique_ptr<Scenario>> chains_;
  ReplayReport report_;
  bool any_event_ = false;
  std::optional<std::int64_t> period_days_;  // ReplayerOptions
  std::int64_t cycle_days_ = kCycleDaysNominal;
  const RefundBook* refunds_ = nullptr;
  // The charges replayed net of their refunds (ReplayerOptions::refunds).
  NettedCharges netted_;
  // The pools of the events, by the index Scenario::after_by_pool uses: kept when some
  // chain has a plan policy (by_pool_).
  bool by_pool_ = false;
  std::vector<std::string> pools_;
  std::uint16_t pool_index(std::string_view pool);
};

}  // namespace credit::analytics
