// src/analytics/replay.cc
// The replay's stages (one per policy), the scenarios that chain them, and the shared
// helpers for burn, request keys, per-cycle scaling and outliers.
#include "analytics/replay.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <map>
#include <unordered_map>

#include "base/assert.h"

namespace credit::analytics {

using ledger::Event;
using ledger::EventType;
using pricing::Kind;

Millicredits burn_delta(const Event& e) {
  switch (e.type) {
    case EventType::kCharge:
    case EventType::kCapture:
      return e.credits;
    case EventType::kRefund:
      return -e.credits;
    default:
      return Millicredits::zero();
  }
}

bool is_agent_turn(const Event& e) {
  return (e.type == EventType::kCharge || e.type == EventType::kCapture) &&
         e.kind == Kind::kAgentPrompt;
}

RequestKeys request_keys(const Event& e) {
  // One key given twice is one key (else the call would repeat itself).
  if (e.metadata.request_hash == e.cache_key) return RequestKeys{e.cache_key, {}};
  return RequestKeys{e.cache_key, e.metadata.request_hash};
}

std::optional<std::uint64_t> pack_hex16(std::string_view key) {
  if (key.size() != 16) return std::nullopt;
  std::uint64_t bits = 0;
  for (char c : key) {
    std::uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    bits = bits << 4 | digit;
  }
  return bits;
}

bool is_cacheable(const Event& e) {
  return e.kind && pricing::kind_is_integration_call(*e.kind);
}

Millicredits per_cycle(Millicredits credits, std::int64_t period_days, std::int64_t cycle_days) {
  if (period_days <= 0) return credits;
  CREDIT_ASSERT(cycle_days > 0);
  return Millicredits::from_mc(
      saturating_mc(static_cast<__int128>(credits.mc()) * cycle_days / period_days));
}

namespace {

// Whether a pool needing `need` of `allowance` fits less than one needing `than_need` of
// `than_allowance`: the larger need / allowance, a need above zero without an allowance
// the least of all (the larger need first among those).
bool fits_less(Millicredits need, Millicredits allowance, Millicredits than_need,
               Millicredits than_allowance) {
  const bool none = need.mc() > 0 && allowance.mc() <= 0;
  const bool than_none = than_need.mc() > 0 && than_allowance.mc() <= 0;
  if (none != than_none) return none;
  if (none) return need > than_need;
  // need / allowance > than_need / than_allowance, without dividing.
  return static_cast<__int128>(need.mc()) * std::max<std::int64_t>(than_allowance.mc(), 1) >
         static_cast<__int128>(than_need.mc()) * std::max<std::int64_t>(allowance.mc(), 1);
}

// Judges `fit` (its plan's allowances set) on the burn by pool, scaled to a cycle. A burn
// on a pool the plan lacks fits nowhere in it: that pool, with no allowance, fits least.
void judge_plan_fit(PlanFit& fit,
                    const std::map<std::string, Millicredits, std::less<>>& after_by_pool,
                    std::int64_t period_days, std::int64_t cycle_days) {
  fit.fits = true;
  bool first = true;
  const auto judge = [&](const std::string& pool, Millicredits allowance, Millicredits need) {
    fit.fits = fit.fits && need <= allowance;
    if (first || fits_less(need, allowance, fit.need_per_cycle, fit.allowance)) {
      fit.pool = pool;
      fit.allowance = allowance;
      fit.need_per_cycle = need;
      first = false;
    }
  };
  for (const auto& [pool, allowance] : fit.allowances) {
    auto it = after_by_pool.find(pool);
    judge(pool, allowance,
          per_cycle(it == after_by_pool.end() ? Millicredits::zero() : it->second, period_days,
                    cycle_days));
  }
  for (const auto& [pool, after] : after_by_pool) {
    const bool in_plan = std::any_of(fit.allowances.begin(), fit.allowances.end(),
                                     [&](const auto& a) { return a.first == pool; });
    if (!in_plan && after.mc() > 0) {
      judge(pool, Millicredits::zero(), per_cycle(after, period_days, cycle_days));
    }
  }
}

std::int64_t median_x2(std::vector<std::int64_t> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  if (n % 2 == 1) return saturating_add_mc(v[n / 2], v[n / 2]);
  return saturating_add_mc(v[n / 2 - 1], v[n / 2]);
}

}  // namespace

std::vector<Outlier> find_outliers(const std::vector<UserTotals>& users,
                                   std::int64_t total_agent_turns, Millicredits total_credits) {
  std::vector<std::int64_t> turns, credits;
  for (const auto& u : users) {
    turns.push_back(u.agent_turns);
    credits.push_back(u.credits.mc());
  }
  const std::int64_t med_turns_x2 = median_x2(turns);
  const std::int64_t med_credits_x2 = median_x2(credits);
  std::vector<Outlier> out;
  for (const auto& u : users) {
    // x > 3 * median  <=>  2x > 3 * (2 * median), exact for an even count of users.
    bool by_turns = 2 * u.agent_turns > kOutlierMedianFactor * med_turns_x2 &&
                    u.agent_turns * 1000 >= total_agent_turns * kOutlierTotalPermilleMin &&
                    u.agent_turns > 0;
    bool by_credits = static_cast<__int128>(2) * u.credits.mc() >
                          static_cast<__int128>(kOutlierMedianFactor) * med_credits_x2 &&
                      static_cast<__int128>(u.credits.mc()) * 1000 >=
                          static_cast<__int128>(total_credits.mc()) * kOutlierTotalPermilleMin &&
                      u.credits.mc() > 0;
    if (!by_turns && !by_credits) continue;
    Outlier o;
    o.user_id = u.user_id;
    o.agent_turns = u.agent_turns;
    o.credits = u.credits;
    o.by_turns = by_turns;
    o.by_credits = by_credits;
    o.median_turns_x2 = med_turns_x2;
    o.median_credits_mc_x2 = med_credits_x2;
    std::int64_t excess_credits = 0;
    if (by_credits) {
      excess_credits =
          saturating_mc(static_cast<__int128>(u.credits.mc()) -
                        static_cast<__int128>(kOutlierMedianFactor) * med_credits_x2 / 2);
    }
    std::int64_t excess_turns = 0;
    if (by_turns && u.agent_turns > 0) {
      // The user's credits times the share of turns above the threshold.
      auto over_x2 = 2 * u.agent_turns - kOutlierMedianFactor * med_turns_x2;
      excess_turns = static_cast<std::int64_t>(static_cast<__int128>(u.credits.mc()) * over_x2 /
                                               (2 * u.agent_turns));
    }
    o.excess =
        Millicredits::from_mc(std::max<std::int64_t>(0, std::max(excess_credits, excess_turns)));
    out.push_back(std::move(o));
  }
  std::sort(out.begin(), out.end(),
            [](const Outlier& a, const Outlier& b) { return a.credits > b.credits; });
  return out;
}

Result<Policy> parse_policy(std::string_view text) {
  Policy p;
  p.name = std::string(text);
  if (text == "cache") {
    p.kind = PolicyKind::kCache;
  } else if (text == "scoped") {
    p.kind = PolicyKind::kScoped;
  } else if (text == "discuss-off") {
    p.kind = PolicyKind::kDiscussOff;
  } else if (text == "rate-limit") {
    p.kind = PolicyKind::kRateLimit;
  } else if (text == "editor") {
    p.kind = PolicyKind::kEditor;
  } else if (text == "revert-loops") {
    p.kind = PolicyKind::kRevertLoops;
  } else if (text == "outliers") {
    p.kind = PolicyKind::kOutliers;
  } else if (text.starts_with("plan:") && text.size() > 5) {
    p.kind = PolicyKind::kPlan;
    p.plan_id = std::string(text.substr(5));
  } else {
    Error e(ErrorCode::kInvalidRequest,
            "unknown policy '" + std::string(text) +
                "' (cache, scoped, discuss-off, rate-limit, plan:<id>, editor, revert-loops, "
                "outliers)");
    e.with_string("param", "policy");
    return e;
  }
  return p;
}

// --- stages ----------------------------------------------------------------------------

namespace {

struct Item {
  Millicredits original;
  Millicredits cost;
  // The refunds the event is replayed net of (ReplayerOptions::refunds): what a stage saves
  // of it is net of these.
  Millicredits back;
  std::uint16_t pool = 0;  // the event's pool, an index in Replayer::pools_ (plan policies)
  bool dropped = false;
  Millicredits net_cost() const { return cost - min(back, cost); }
};

// v[index] += credits, growing v as needed.
void add_at(std::vector<Millicredits>& v, std::size_t index, Millicredits credits) {
  if (index >= v.size()) v.resize(index + 1);
  v[index] = v[index].saturating_add(credits);
}

class Stage {
 public:
  virtual ~Stage() = default;
  virtual void apply(const Event& e, Item& item) = 0;
  // Decides the savings still open at the end of the stream (loops still open, outliers).
  virtual void finish() {}
  // The savings decided after their event (loops, outliers), in all and by the pool of the
  // events they saved: they come off `after` in Replayer::finish.
  Millicredits late_saved() const { return late_saved_; }
  const std::vector<Millicredits>& late_by_pool() const { return late_by_pool_; }

 protected:
  void save_late(std::uint16_t pool, Millicredits credits) {
    late_saved_ = late_saved_.saturating_add(credits);
    add_at(late_by_pool_, pool, credits);
  }

 private:
  Millicredits late_saved_;
  std::vector<Millicredits> late_by_pool_;
};

void drop(Item& item) {
  item.cost = Millicredits::zero();
  item.dropped = true;
}

class DiscussOff final : public Stage {
 public:
  void apply(const Event& e, Item& item) override {
    if (e.kind == Kind::kDiscussTurn) drop(item);
  }
};

class RateLimitStage final : public Stage {
 public:
  explicit RateLimitStage(const Policy& p) : per_user_(p.per_user), per_account_(p.per_account) {}
  void apply(const Event& e, Item& item) override {
    if (!e.kind) return;
    Kind k = *e.kind;
    bool limited = k == Kind::kAgentPrompt || k == Kind::kDiscussTurn || k == Kind::kInvokeLlm ||
                   k == Kind::kGenerateImage;
    if (!limited) return;
    scratch_.assign(e.account_id);
    scratch_ += '\x1f';
    scratch_ += e.user_id;
    Bucket& user = entry(users_, scratch_);
    refill(user, per_user_, e.at_ms);
    Bucket* account = nullptr;
    if (per_account_) {
      account = &entry(accounts_, e.account_id);
      refill(*account, *per_account_, e.at_ms);
    }
    bool allowed =
        user.units >= kUnitsPerToken && (account == nullptr || account->units >= kUnitsPerToken);
    if (!allowed) {
      drop(item);
      return;
    }
    user.units -= kUnitsPerToken;
    if (account != nullptr) account->units -= kUnitsPerToken;
  }

 private:
  // A token is 60,000 units, so a millisecond adds exactly per_minute units and no
  // fraction is lost between requests (as the server's buckets, policy/rate_limiter.h).
  static constexpr std::int64_t kUnitsPerToken = 60'000;
  struct Bucket {
    std::int64_t units = -1;  // -1: not seen yet (starts full)
    std::int64_t last_ms = 0;
  };
  static void refill(Bucket& b, const pricing::RateLimit& limit, std::int64_t now_ms) {
    const std::int64_t cap = std::max<std::int64_t>(1, limit.burst) * kUnitsPerToken;
    if (b.units < 0) {
      b.units = cap;
      b.last_ms = now_ms;
      return;
    }
    const std::int64_t elapsed_ms = std::max<std::int64_t>(0, now_ms - b.last_ms);
    const auto add = static_cast<__int128>(elapsed_ms) * limit.per_minute;
    b.units =
        static_cast<std::int64_t>(std::min<__int128>(cap, static_cast<__int128>(b.units) + add));
    b.last_ms = std::max(b.last_ms, now_ms);
  }
  pricing::RateLimit per_user_;
  std::optional<pricing::RateLimit> per_account_;
  StringMap<Bucket> users_;  // account + '\x1f' + user
  StringMap<Bucket> accounts_;
  std::string scratch_;
};

class CacheStage final : public Stage {
 public:
  explicit CacheStage(const Policy& p) : policy_(p) {}
  // Key mode (no hit rate given): the cache's decisions depend on the events alone.
  bool by_key() const {
    return !policy_.hit_rate_permille && policy_.hit_rate_permille_by_call_site.empty();
  }
  // Whether the last call, for `e`, dropped it (CacheMirror).
  bool dropped(const Event& e) const {
    CREDIT_ASSERT(last_event_ == &e);
    return last_dropped_;
  }
  void apply(const Event& e, Item& item) override {
    last_event_ = &e;
    last_dropped_ = false;
    if (!is_cacheable(e)) return;
    if (!by_key()) {
      std::int64_t rate = policy_.hit_rate_permille.value_or(0);
      for (const auto& [site, r] : policy_.hit_rate_permille_by_call_site) {
        if (site == e.metadata.call_site) rate = r;
      }
      auto saved = saturating_mc(static_cast<__int128>(item.cost.mc()) * rate / 1000);
      item.cost -= Millicredits::from_mc(saved);
      return;
    }
    const RequestKeys request = request_keys(e);
    if (request.empty()) return;
    const auto kind = static_cast<std::uint8_t>(*e.kind);
    const std::uint32_t account = account_number(e.account_id);
    // A hit when either key was filled within the TTL (DESIGN.md: the same cache_key or
    // request_hash); a miss pays and fills both.
    std::int64_t* filled_cache = slot(account, kind, request.cache_key, e.account_id);
    std::int64_t* filled_hash = slot(account, kind, request.request_hash, e.account_id);
    const auto live = [&](const std::int64_t* filled) {
      return filled != nullptr && e.at_ms - *filled < policy_.cache_ttl_ms && e.at_ms >= *filled;
    };
    if (live(filled_cache) || live(filled_hash)) {
      drop(item);
      last_dropped_ = true;
      return;
    }
    fill(account, kind, request.cache_key, e.account_id, e.at_ms);
    fill(account, kind, request.request_hash, e.account_id, e.at_ms);
  }
  std::size_t keys() const { return entries_.size() + packed_.size(); }
  bool full() const { return full_; }

 private:
  const Policy& policy_;
  // A number for each account (the previous event's is remembered).
  std::uint32_t account_number(const std::string& account_id) {
    if (last_account_ == nullptr || *last_account_ != account_id) {
      auto it = accounts_.find(std::string_view(account_id));
      if (it == accounts_.end()) {
        it = accounts_.try_emplace(account_id, static_cast<std::uint32_t>(accounts_.size())).first;
      }
      last_account_ = &it->first;
      last_number_ = it->second;
    }
    return last_number_;
  }

  // The filled-at instant of a key of this account and kind, or nullptr (an empty key has
  // none).
  std::int64_t* slot(std::uint32_t account, std::uint8_t kind, std::string_view key,
                     const std::string& account_id) {
    if (key.empty()) return nullptr;
    if (auto bits = pack_hex16(key)) return packed_.find(PackedKey{*bits, account, kind});
    key_text(account_id, kind, key);
    auto it = entries_.find(std::string_view(scratch_));
    return it == entries_.end() ? nullptr : &it->second;
  }
  // Records that a call paid for `key` at at_ms. Looks the key up again: the other key's
  // insert may have moved the table's slots.
  void fill(std::uint32_t account, std::uint8_t kind, std::string_view key,
            const std::string& account_id, std::int64_t at_ms) {
    if (key.empty()) return;
    if (std::int64_t* filled = slot(account, kind, key, account_id)) {
      *filled = at_ms;
    } else if (keys() >= kReplayCacheKeysMax) {
      full_ = true;
    } else if (auto bits = pack_hex16(key)) {
      packed_.insert(PackedKey{*bits, account, kind}, at_ms);
    } else {
      key_text(account_id, kind, key);
      entries_.emplace(scratch_, at_ms);
    }
  }
  void key_text(const std::string& account_id, std::uint8_t kind, std::string_view key) {
    scratch_.assign(account_id);
    scratch_ += '\x1f';
    scratch_ += static_cast<char>(kind);  // one byte: shorter keys, less memory
    scratch_ += key;
  }

  StringMap<std::int64_t> entries_;    // account, kind, request key -> filled at
  PackedKeyMap<std::int64_t> packed_;  // the same for keys of 16 hex digits
  StringMap<std::uint32_t> accounts_;
  const std::string* last_account_ = nullptr;
  std::uint32_t last_number_ = 0;
  std::string scratch_;
  const Event* last_event_ = nullptr;
  bool last_dropped_ = false;
  bool full_ = false;  // a new key was not remembered
};

// The combined chain's cache when only discuss-off may run before it and the cache is
// also replayed alone by key: it is then given exactly the calls the alone cache is given
// (discuss-off drops no cacheable call), in the same order and just after it, so it takes
// that cache's decisions instead of keeping a second table of every request key.
class CacheMirror final : public Stage {
 public:
  explicit CacheMirror(const CacheStage& alone) : alone_(alone) {}
  void apply(const Event& e, Item& item) override {
    if (alone_.dropped(e)) drop(item);
  }

 private:
  const CacheStage& alone_;
};

// The scoped-prompt usage, exactly as DESIGN.md's what-if replay defines it: output
// tokens x min(1, (lines changed + 10) / lines emitted), input tokens / files read, both
// rounded up. Only those two dimensions are rewritten: files read, lines emitted and
// lines changed stay as recorded (the definition says nothing of them).
pricing::Usage scoped_usage(const pricing::Usage& u) {
  pricing::Usage s = u;
  const std::int64_t emitted = u.lines_emitted.value_or(0);
  const std::int64_t changed = u.lines_changed.value_or(0);
  if (emitted > 0 && changed + 10 < emitted && u.output_tokens) {
    auto scaled = static_cast<__int128>(*u.output_tokens) * (changed + 10);
    s.output_tokens = static_cast<std::int64_t>((scaled + emitted - 1) / emitted);
  }
  const std::int64_t files = u.files_read.value_or(1);
  if (files > 1 && u.input_tokens) s.input_tokens = (*u.input_tokens + files - 1) / files;
  return s;
}

class ScopedStage final : public Stage {
 public:
  ScopedStage(const pricing::RateCard& card, std::int64_t& errors) : card_(card), errors_(errors) {}
  // What the last call, for `e`, found that scoping saves (zero when nothing: not an agent
  // turn, a usage the card cannot price, a prompt already scoped): ScopedMirror.
  Millicredits saved(const Event& e) const {
    CREDIT_ASSERT(last_event_ == &e);
    return last_saved_;
  }
  void apply(const Event& e, Item& item) override {
    last_event_ = &e;
    last_saved_ = Millicredits::zero();
    if (!is_agent_turn(e) || !e.usage) return;
    auto before = card_.price(Kind::kAgentPrompt, *e.usage);
    auto after = card_.price(Kind::kAgentPrompt, scoped_usage(*e.usage));
    if (!before.ok() || !after.ok()) {
      ++errors_;
      return;
    }
    Millicredits saved = before->cost - after->cost;
    if (saved.is_negative()) return;
    last_saved_ = saved;
    item.cost -= min(saved, item.cost);
  }

 private:
  const pricing::RateCard& card_;
  std::int64_t& errors_;
  const Event* last_event_ = nullptr;
  Millicredits last_saved_;
};

// A chain's scoped stage when scoped is also replayed alone: what scoping saves depends on
// the event's usage only (never on what earlier stages left), so the chain takes the
// alone stage's figure, which has seen the event just before, instead of pricing the
// usage twice again (and counting a usage the card cannot price once, not per chain).
class ScopedMirror final : public Stage {
 public:
  explicit ScopedMirror(const ScopedStage& alone) : alone_(alone) {}
  void apply(const Event& e, Item& item) override { item.cost -= min(alone_.saved(e), item.cost); }

 private:
  const ScopedStage& alone_;
};

class EditorStage final : public Stage {
 public:
  void apply(const Event& e, Item& item) override {
    if (!is_agent_turn(e) || !e.usage || !e.usage->lines_changed) return;
    if (*e.usage->lines_changed <= kSmallEditLinesMax && e.credits >= kSmallEditCostMin) {
      drop(item);
    }
  }
};

// Outliers judges each user on what the earlier policies left of their events: the
// credits and the turns that reached it, net of their refunds, less the turns a loop
// reverted (revert_turn); its saving, a user's excess, comes off that user's pools in
// proportion to what each holds of the user's credits.
class OutliersStage final : public Stage {
 public:
  struct User {
    std::int64_t agent_turns = 0;
    std::int64_t builder_turns = 0;  // agent and discuss turns: a builder has one
    Millicredits credits;
    std::vector<Millicredits> by_pool;  // kept for a plan policy's fit only
  };
  struct Totals {
    StringMap<User> users;
    std::int64_t agent_turns = 0;
    Millicredits credits;
  };

  explicit OutliersStage(bool by_pool) : by_pool_(by_pool) {}

  void apply(const Event& e, Item& item) override {
    Totals& t = totals(e.account_id);
    User& u = user(t, e.user_id);
    add(t, u, item.pool, item.net_cost());
    if (e.kind == Kind::kAgentPrompt || e.kind == Kind::kDiscussTurn) ++u.builder_turns;
    if (e.kind == Kind::kAgentPrompt) {
      ++u.agent_turns;
      ++t.agent_turns;
    }
  }
  // A refund the chain subtracts as it comes (not netted into its charge).
  void refund(const Event& e, std::uint16_t pool) {
    Totals& t = totals(e.account_id);
    add(t, user(t, e.user_id), pool, -e.credits);
  }
  // An agent turn of `u` that a loop reverted (revert-loops, earlier in the chain): the
  // turn and the `credits` apply() counted for it are gone.
  void revert_turn(Totals& t, User& u, std::uint16_t pool, Millicredits credits) {
    --u.agent_turns;
    --u.builder_turns;
    --t.agent_turns;
    add(t, u, pool, -credits);
  }
  // The previous event's account is looked up once (the audit replays one account).
  Totals& totals(const std::string& account_id) {
    if (last_ == nullptr || *last_id_ != account_id) {
      auto it = totals_.find(std::string_view(account_id));
      if (it == totals_.end()) it = totals_.try_emplace(account_id).first;
      last_id_ = &it->first;
      last_ = &it->second;
    }
    return *last_;
  }
  static User& user(Totals& t, std::string_view user_id) { return entry(t.users, user_id); }

  void finish() override {
    for (const auto& [account, t] : totals_) {
      std::vector<UserTotals> users;
      for (const auto& [id, u] : t.users) {
        if (u.builder_turns > 0) users.push_back({id, u.agent_turns, u.credits});
      }
      for (const auto& o : find_outliers(users, t.agent_turns, t.credits)) {
        if (!by_pool_) {
          save_late(0, o.excess);
          continue;
        }
        auto it = t.users.find(std::string_view(o.user_id));
        CREDIT_ASSERT(it != t.users.end());
        save_by_pool(it->second.by_pool, o.excess);
      }
    }
  }

 private:
  void add(Totals& t, User& u, std::uint16_t pool, Millicredits credits) {
    t.credits = t.credits.saturating_add(credits);
    u.credits = u.credits.saturating_add(credits);
    if (by_pool_) add_at(u.by_pool, pool, credits);
  }
  // Saves `excess` of a user's pools, each in proportion to its credits above zero (so no
  // pool gives more than it holds: their sum is at least the user's credits, at least the
  // excess); the rounding remainder, less than a millicredit a pool, from the first ones
  // with room.
  void save_by_pool(const std::vector<Millicredits>& by_pool, Millicredits excess) {
    __int128 weight = 0;
    for (Millicredits c : by_pool) weight += std::max<std::int64_t>(c.mc(), 0);
    CREDIT_ASSERT(weight >= excess.mc());
    if (excess.mc() <= 0) return;
    std::vector<std::int64_t> share(by_pool.size(), 0);
    std::int64_t left = excess.mc();
    for (std::size_t p = 0; p < by_pool.size(); ++p) {
      const std::int64_t w = std::max<std::int64_t>(by_pool[p].mc(), 0);
      share[p] = static_cast<std::int64_t>(static_cast<__int128>(excess.mc()) * w / weight);
      left -= share[p];
    }
    for (std::size_t p = 0; p < by_pool.size() && left > 0; ++p) {
      const std::int64_t more =
          std::min(left, std::max<std::int64_t>(by_pool[p].mc(), 0) - share[p]);
      share[p] += more;
      left -= more;
    }
    CREDIT_ASSERT(left == 0);
    for (std::size_t p = 0; p < by_pool.size(); ++p) {
      if (share[p] > 0) {
        save_late(static_cast<std::uint16_t>(p), Millicredits::from_mc(share[p]));
      }
    }
  }

  bool by_pool_ = false;
  StringMap<Totals> totals_;  // the savings are summed: order does not matter
  const std::string* last_id_ = nullptr;
  Totals* last_ = nullptr;
};

// Revert-loops saves a loop's turns but the first, each as much as the earlier policies
// left of it, and each off its own pool; when outliers follows in the chain, the turns it
// reverts are taken off their users there too (OutliersStage::revert_turn), so outliers
// judges what revert-loops left and no credit is saved twice.
//
// A Loop reports its first turn (by its snapshot, here the turn's number in its group) and
// its length, not its turns: the stage keeps, per group of the detector (a file, else a
// feature), the turns the detector has not decided yet, in the same order, and drops them
// as the detector does (loops.cc: a run is decided when a turn comes a window or more after
// its first turn, or all runs at once when the group holds kLoopWindowTurnsMax turns).
class RevertLoopsStage final : public Stage {
 public:
  void set_outliers(OutliersStage* outliers) { outliers_ = outliers; }

  void apply(const Event& e, Item& item) override {
    if (!is_agent_turn(e)) return;
    const std::string& file = e.metadata.file;
    const std::string& feature = e.metadata.feature;
    if (file.empty() && feature.empty()) return;  // in no group: LoopDetector::add ignores it
    Account& a = account(e.account_id);
    key_.assign(file.empty() ? "t:" : "f:");
    key_ += file.empty() ? feature : file;
    Group& g = entry(a.groups, key_);
    // Net of the turn's refunds (ReplayerOptions::refunds): what the loop rules and the
    // audit's loops see, and what reverting the turn saves (the refund came back anyway).
    LoopTurn t;
    t.at_ms = e.at_ms;
    t.credits = e.credits - min(item.back, e.credits);
    t.fix = e.metadata.intent == "fix";
    t.feature = feature;
    t.replay_credits = item.net_cost();
    t.snapshot_id = std::to_string(g.next_seq());
    // The detector decides everything when its group is full and nothing is old enough.
    const bool cut =
        g.open() >= kLoopWindowTurnsMax && e.at_ms - g.front().at_ms < LoopRules{}.window_ms;
    current_ = &a;
    a.detector.add(file, t, sink_);
    if (cut) {
      g.pop(g.open());
    } else {
      while (g.open() > 0 && e.at_ms - g.front().at_ms >= LoopRules{}.window_ms) g.pop(1);
    }
    Pending p;
    p.at_ms = e.at_ms;
    p.credits = t.replay_credits;
    p.pool = item.pool;
    if (outliers_ != nullptr) {
      if (a.totals == nullptr) a.totals = &outliers_->totals(e.account_id);
      p.user = &OutliersStage::user(*a.totals, e.user_id);
    }
    g.push(p);
  }
  void finish() override {
    for (auto& [account, a] : accounts_) {
      current_ = &a;
      a.detector.finish(sink_);
    }
  }

 private:
  struct Pending {
    std::int64_t at_ms = 0;
    Millicredits credits;  // what reverting the turn saves
    OutliersStage::User* user = nullptr;
    std::uint16_t pool = 0;
  };
  // A group's undecided turns; the first is number first_seq of the group.
  struct Group {
    std::vector<Pending> turns;
    std::size_t head = 0;
    std::uint64_t first_seq = 0;
    std::size_t open() const { return turns.size() - head; }
    std::uint64_t next_seq() const { return first_seq + open(); }
    const Pending& front() const { return turns[head]; }
    void push(const Pending& p) { turns.push_back(p); }
    void pop(std::size_t n) {
      CREDIT_ASSERT(n <= open());
      head += n;
      first_seq += n;
      if (open() == 0) {
        std::vector<Pending>().swap(turns);
        head = 0;
      } else if (head * 2 >= turns.size()) {
        turns.erase(turns.begin(), turns.begin() + static_cast<std::ptrdiff_t>(head));
        head = 0;
      }
    }
  };
  struct Account {
    LoopDetector detector;
    StringMap<Group> groups;  // "f:" file or "t:" feature, as the detector groups turns
    OutliersStage::Totals* totals = nullptr;
  };
  Account& account(const std::string& account_id) { return entry(accounts_, account_id); }

  void on_loop(const Loop& loop) {
    Account& a = *current_;
    loop_key_.assign(loop.file.empty() ? "t:" : "f:");
    loop_key_ += loop.file.empty() ? loop.feature : loop.file;
    auto it = a.groups.find(std::string_view(loop_key_));
    CREDIT_ASSERT(it != a.groups.end());
    Group& g = it->second;
    std::uint64_t first = 0;
    const std::string& id = loop.revert_to_snapshot;
    const auto parsed = std::from_chars(id.data(), id.data() + id.size(), first);
    CREDIT_ASSERT(parsed.ec == std::errc() && parsed.ptr == id.data() + id.size());
    const auto turns = static_cast<std::uint64_t>(loop.turns);
    // The turns before the loop's first were decided without a loop.
    CREDIT_ASSERT(first >= g.first_seq && first + turns <= g.next_seq());
    g.pop(static_cast<std::size_t>(first - g.first_seq));
    Millicredits waste;
    for (std::uint64_t i = 0; i < turns; ++i) {
      const Pending p = g.front();
      g.pop(1);
      if (i == 0) continue;  // the loop's first turn is kept: it is reverted to
      waste = waste.saturating_add(p.credits);
      save_late(p.pool, p.credits);
      if (p.user != nullptr) outliers_->revert_turn(*a.totals, *p.user, p.pool, p.credits);
    }
    CREDIT_ASSERT(waste == loop.replay_waste);
  }

  OutliersStage* outliers_ = nullptr;
  LoopDetector::Sink sink_ = [this](const Loop& loop) { on_loop(loop); };
  StringMap<Account> accounts_;  // the savings are summed: order does not matter
  Account* current_ = nullptr;   // the account whose detector runs
  std::string key_;
  std::string loop_key_;
};

class PlanStage final : public Stage {
 public:
  void apply(const Event&, Item&) override {}
};

}  // namespace

struct Replayer::Scenario {
  std::vector<std::unique_ptr<Stage>> stages;
  std::vector<PolicyKind> kinds;          // each stage's policy
  std::vector<Millicredits> stage_saved;  // what each stage saved so far
  OutliersStage* outliers = nullptr;
  RevertLoopsStage* revert_loops = nullptr;
  const CacheStage* cache = nullptr;  // its table of request keys, when it has one
  const Policy* plan = nullptr;
  // `after` by pool (an index in Replayer::pools_), kept for a plan policy only.
  std::vector<Millicredits> after_by_pool;
  PolicyOutcome outcome;
};

namespace {

std::unique_ptr<Stage> make_stage(const Policy& p, const pricing::RateCard& card,
                                  std::int64_t& errors, bool by_pool) {
  switch (p.kind) {
    case PolicyKind::kDiscussOff:
      return std::make_unique<DiscussOff>();
    case PolicyKind::kRateLimit:
      return std::make_unique<RateLimitStage>(p);
    case PolicyKind::kCache:
      return std::make_unique<CacheStage>(p);
    case PolicyKind::kScoped:
      return std::make_unique<ScopedStage>(card, errors);
    case PolicyKind::kEditor:
      return std::make_unique<EditorStage>();
    case PolicyKind::kRevertLoops:
      return std::make_unique<RevertLoopsStage>();
    case PolicyKind::kOutliers:
      return std::make_unique<OutliersStage>(by_pool);
    case PolicyKind::kPlan:
      return std::make_unique<PlanStage>();
  }
  return std::make_unique<PlanStage>();
}

}  // namespace

Replayer::Replayer(const pricing::RateCard& card, const pricing::Catalog* catalog,
                   std::vector<Policy> policies, const ReplayerOptions& options)
    : card_(card),
      catalog_(catalog),
      policies_(std::move(policies)),
      period_days_(options.period_days),
      cycle_days_(options.cycle_days),
      refunds_(options.refunds) {
  // The alone stages a chain may mirror (see CacheMirror and ScopedMirror).
  const CacheStage* alone_cache = nullptr;
  const ScopedStage* alone_scoped = nullptr;
  std::size_t caches = 0;
  bool rate_limit = false;
  for (const auto& p : policies_) {
    caches += p.kind == PolicyKind::kCache ? 1 : 0;
    rate_limit = rate_limit || p.kind == PolicyKind::kRateLimit;
  }
  auto build = [&](std::vector<const Policy*> chain, std::string name, bool alone) {
    auto s = std::make_unique<Scenario>();
    s->outcome.name = std::move(name);
    std::stable_sort(chain.begin(), chain.end(), [](const Policy* a, const Policy* b) {
      return static_cast<int>(a->kind) < static_cast<int>(b->kind);
    });
    const bool by_pool = std::any_of(chain.begin(), chain.end(),
                                     [](const Policy* p) { return p->kind == PolicyKind::kPlan; });
    for (const Policy* p : chain) {
      s->kinds.push_back(p->kind);
      if (!alone && p->kind == PolicyKind::kCache && alone_cache != nullptr) {
        s->stages.push_back(std::make_unique<CacheMirror>(*alone_cache));
        continue;
      }
      if (!alone && p->kind == PolicyKind::kScoped && alone_scoped != nullptr) {
        s->stages.push_back(std::make_unique<ScopedMirror>(*alone_scoped));
        continue;
      }
      s->stages.push_back(make_stage(*p, card_, report_.reprice_errors, by_pool));
      if (p->kind == PolicyKind::kCache) {
        s->cache = static_cast<const CacheStage*>(s->stages.back().get());
      }
      if (alone && p->kind == PolicyKind::kCache && caches == 1 && !rate_limit) {
        auto* cache = static_cast<const CacheStage*>(s->stages.back().get());
        if (cache->by_key()) alone_cache = cache;
      }
      if (alone && p->kind == PolicyKind::kScoped && alone_scoped == nullptr) {
        alone_scoped = static_cast<const ScopedStage*>(s->stages.back().get());
      }
      if (p->kind == PolicyKind::kOutliers && s->outliers == nullptr) {
        s->outliers = static_cast<OutliersStage*>(s->stages.back().get());
      }
      if (p->kind == PolicyKind::kRevertLoops && s->revert_loops == nullptr) {
        s->revert_loops = static_cast<RevertLoopsStage*>(s->stages.back().get());
      }
      if (p->kind == PolicyKind::kPlan) s->plan = p;
    }
    // Outliers (after revert-loops in the chain order) judges what revert-loops left.
    if (s->revert_loops != nullptr) s->revert_loops->set_outliers(s->outliers);
    by_pool_ = by_pool_ || by_pool;
    s->stage_saved.assign(s->stages.size(), Millicredits::zero());
    return s;
  };
  std::vector<const Policy*> all;
  for (const auto& p : policies_) {
    const auto& skip = options.combined_only;
    if (std::find(skip.begin(), skip.end(), p.kind) == skip.end()) {
      alone_.push_back(build({&p}, p.name, true));
    }
    all.push_back(&p);
  }
  if (options.combined && policies_.size() > 1) combined_ = build(all, "combined", false);
  for (const auto& kinds : options.chains) {
    std::vector<const Policy*> chain;
    std::string name;
    for (const auto& p : policies_) {
      if (std::find(kinds.begin(), kinds.end(), p.kind) == kinds.end()) continue;
      chain.push_back(&p);
      name += name.empty() ? p.name : "+" + p.name;
    }
    chains_.push_back(build(std::move(chain), std::move(name), false));
  }
}

Replayer::~Replayer() = default;

void Replayer::add(const Event& e) {
  // The replay reads the events API.md lists, as the audit does: the internal types
  // (account, close: simulate --plan writes an account line) move no credits and are no
  // events to count.
  if (!ledger::event_type_listed(e.type)) return;
  ++report_.events;
  if (!any_event_ || e.at_ms < report_.first_at_ms) report_.first_at_ms = e.at_ms;
  if (!any_event_ || e.at_ms > report_.last_at_ms) report_.last_at_ms = e.at_ms;
  any_event_ = true;
  Millicredits delta = burn_delta(e);
  if (delta.is_zero()) return;
  report_.before = report_.before.saturating_add(delta);
  // With the stream's refunds (ReplayerOptions::refunds) a charge is replayed net of those
  // attributed to it, and those refunds are then not subtracted again: a policy that drops
  // or re-prices a charge saves at most what the charge cost net (a charge refunded in
  // full saves nothing). A refund of a charge outside the stream passes through.
  Millicredits back;
  bool netted_refund = false;
  if (refunds_ != nullptr) {
    if (!delta.is_negative()) {
      back = refunds_->refunded(e);
      if (!back.is_zero()) netted_.note(e);
    } else {
      netted_refund = netted_.took(e);
    }
  }
  const auto net = [&back](Millicredits cost) { return cost - min(back, cost); };
  // The event's pool (one written without: its kind's in the rate card), for a plan
  // policy's fit, pool by pool.
  std::uint16_t pool = 0;
  if (by_pool_) {
    pool = pool_index(!e.pool.empty() || !e.kind ? std::string_view(e.pool) : card_.pool(*e.kind));
  }
  const auto add_to_pool = [pool](Scenario& s, Millicredits credits) {
    if (s.plan != nullptr) add_at(s.after_by_pool, pool, credits);
  };
  auto run = [&](Scenario& s) {
    s.outcome.before = s.outcome.before.saturating_add(delta);
    if (delta.is_negative()) {
      if (!netted_refund) {
        s.outcome.after = s.outcome.after.saturating_add(delta);
        add_to_pool(s, delta);
        if (s.outliers != nullptr) s.outliers->refund(e, pool);
      }
      return;
    }
    Item item{delta, delta, back, pool, false};
    for (std::size_t i = 0; i < s.stages.size() && !item.dropped; ++i) {
      const Millicredits cost = item.cost;
      s.stages[i]->apply(e, item);
      s.stage_saved[i] = s.stage_saved[i].saturating_add(net(cost) - item.net_cost());
    }
    s.outcome.after = s.outcome.after.saturating_add(item.net_cost());
    add_to_pool(s, item.net_cost());
    if (item.dropped) {
      ++s.outcome.events_dropped;
    } else if (item.cost < item.original) {
      ++s.outcome.events_changed;
    }
  };
  for (auto& s : alone_) run(*s);
  if (combined_) run(*combined_);
  for (auto& s : chains_) run(*s);
}

std::uint16_t Replayer::pool_index(std::string_view pool) {
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    if (pools_[i] == pool) return static_cast<std::uint16_t>(i);
  }
  CREDIT_ASSERT(pools_.size() < std::numeric_limits<std::uint16_t>::max());
  pools_.emplace_back(pool);
  return static_cast<std::uint16_t>(pools_.size() - 1);
}

std::size_t Replayer::cache_keys() const {
  std::size_t keys = 0;
  for (const auto& s : alone_) {
    if (s->cache != nullptr) keys = std::max(keys, s->cache->keys());
  }
  if (combined_ && combined_->cache != nullptr) keys = std::max(keys, combined_->cache->keys());
  for (const auto& s : chains_) {
    if (s->cache != nullptr) keys = std::max(keys, s->cache->keys());
  }
  return keys;
}

ReplayReport Replayer::finish() {
  report_.period_days =
      period_days_ ? *period_days_
      : any_event_
          ? (day_start_ms(report_.last_at_ms) - day_start_ms(report_.first_at_ms)) / kMsPerDay + 1
          : 0;
  auto close = [&](Scenario& s) {
    if (s.cache != nullptr) {
      report_.cache_keys = std::max(report_.cache_keys, s.cache->keys());
      report_.cache_keys_full = report_.cache_keys_full || s.cache->full();
    }
    for (std::size_t i = 0; i < s.stages.size(); ++i) {
      // finish() first: it decides the loops still open and the outliers. In the chain's
      // order, so that outliers judges what revert-loops left.
      s.stages[i]->finish();
      const Millicredits late = s.stages[i]->late_saved();
      s.outcome.after = s.outcome.after.saturating_sub(late);
      // Each late saving comes off the pool of the events it saved.
      const std::vector<Millicredits>& late_by_pool = s.stages[i]->late_by_pool();
      for (std::size_t p = 0; p < late_by_pool.size() && s.plan != nullptr; ++p) {
        add_at(s.after_by_pool, p, -late_by_pool[p]);
      }
      s.stage_saved[i] = s.stage_saved[i].saturating_add(late);
      s.outcome.stages.push_back({s.kinds[i], s.stage_saved[i]});
    }
    for (std::size_t p = 0; p < s.after_by_pool.size(); ++p) {
      s.outcome.after_by_pool[pools_[p]] = s.after_by_pool[p];
    }
    s.outcome.saved = s.outcome.before.saturating_sub(s.outcome.after);
    s.outcome.saved_per_cycle = per_cycle(s.outcome.saved, report_.period_days, cycle_days_);
    if (s.plan != nullptr && catalog_ != nullptr) {
      const pricing::Plan* plan = catalog_->find(s.plan->plan_id);
      if (plan != nullptr && !plan->pools.empty()) {
        PlanFit fit;
        fit.plan_id = plan->id;
        fit.price_usd_cents = plan->price_usd_cents;
        for (const auto& pa : plan->pools) fit.allowances.emplace_back(pa.pool, pa.allowance);
        judge_plan_fit(fit, s.outcome.after_by_pool, report_.period_days, cycle_days_);
        s.outcome.plan = fit;
      }
    }
    return s.outcome;
  };
  for (auto& s : alone_) report_.policies.push_back(close(*s));
  if (combined_) report_.combined = close(*combined_);
  for (auto& s : chains_) report_.chains.push_back(close(*s));
  return report_;
}

std::optional<ReplayReport> merge_replay_reports(std::vector<ReplayReport> parts) {
  if (parts.empty()) return ReplayReport{};
  // Keys of different parts never collide (they start with the account): one table would
  // have held the sum, and refused none if the sum fits.
  std::size_t keys = 0;
  for (const auto& p : parts) {
    if (p.cache_keys_full) return std::nullopt;
    keys += p.cache_keys;
  }
  if (keys > kReplayCacheKeysMax) return std::nullopt;
  ReplayReport r = std::move(parts.front());
  bool any = r.events > 0;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const ReplayReport& p = parts[i];
    if (p.events > 0) {
      r.first_at_ms = any ? std::min(r.first_at_ms, p.first_at_ms) : p.first_at_ms;
      r.last_at_ms = any ? std::max(r.last_at_ms, p.last_at_ms) : p.last_at_ms;
      any = true;
    }
    r.events += p.events;
    r.before = r.before.saturating_add(p.before);
    r.reprice_errors += p.reprice_errors;
    auto add = [](PolicyOutcome& to, const PolicyOutcome& from) {
      to.before = to.before.saturating_add(from.before);
      to.after = to.after.saturating_add(from.after);
      for (const auto& [pool, after] : from.after_by_pool) {
        Millicredits& by_pool = to.after_by_pool[pool];
        by_pool = by_pool.saturating_add(after);
      }
      to.events_changed += from.events_changed;
      to.events_dropped += from.events_dropped;
      CREDIT_ASSERT(to.stages.size() == from.stages.size());
      for (std::size_t k = 0; k < to.stages.size(); ++k) {
        to.stages[k].saved = to.stages[k].saved.saturating_add(from.stages[k].saved);
      }
    };
    CREDIT_ASSERT(p.policies.size() == r.policies.size());
    for (std::size_t j = 0; j < r.policies.size(); ++j) add(r.policies[j], p.policies[j]);
    if (r.combined && p.combined) add(*r.combined, *p.combined);
    CREDIT_ASSERT(p.chains.size() == r.chains.size());
    for (std::size_t j = 0; j < r.chains.size(); ++j) add(r.chains[j], p.chains[j]);
  }
  r.period_days =
      any ? (day_start_ms(r.last_at_ms) - day_start_ms(r.first_at_ms)) / kMsPerDay + 1 : 0;
  // As Replayer::finish derives them.
  auto derive = [&](PolicyOutcome& o) {
    o.saved = o.before.saturating_sub(o.after);
    o.saved_per_cycle = per_cycle(o.saved, r.period_days);
    if (o.plan) judge_plan_fit(*o.plan, o.after_by_pool, r.period_days, kCycleDaysNominal);
  };
  for (auto& o : r.policies) derive(o);
  if (r.combined) derive(*r.combined);
  for (auto& o : r.chains) derive(o);
  return r;
}

}  // namespace credit::analytics
