// src/analytics/replay.cc
// The replay's stages (one per policy), the scenarios that chain them, and the shared
// helpers for burn, request keys, per-cycle scaling and outliers.
#include "analytics/replay.h"

#include <algorithm>
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

std::string_view request_key(const Event& e) {
  if (!e.cache_key.empty()) return e.cache_key;
  return e.metadata.request_hash;
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

// Judges `fit` (its plan's allowances set) on the burn by pool, scaled to a cycle.
void judge_plan_fit(PlanFit& fit,
                    const std::map<std::string, Millicredits, std::less<>>& after_by_pool,
                    std::int64_t period_days, std::int64_t cycle_days) {
  fit.fits = true;
  bool first = true;
  for (const auto& [pool, allowance] : fit.allowances) {
    auto it = after_by_pool.find(pool);
    const Millicredits need = per_cycle(
        it == after_by_pool.end() ? Millicredits::zero() : it->second, period_days, cycle_days);
    fit.fits = fit.fits && need <= allowance;
    // need / allowance > fit.need / fit.allowance, without dividing.
    const bool tighter =
        static_cast<__int128>(need.mc()) * std::max<std::int64_t>(fit.allowance.mc(), 1) >
        static_cast<__int128>(fit.need_per_cycle.mc()) * std::max<std::int64_t>(allowance.mc(), 1);
    if (first || tighter) {
      fit.pool = pool;
      fit.allowance = allowance;
      fit.need_per_cycle = need;
      first = false;
    }
  }
  // A burn on a pool the plan lacks fits nowhere in it.
  for (const auto& [pool, after] : after_by_pool) {
    const bool in_plan = std::any_of(fit.allowances.begin(), fit.allowances.end(),
                                     [&](const auto& a) { return a.first == pool; });
    if (!in_plan && after.mc() > 0) fit.fits = false;
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
  bool dropped = false;
};

class Stage {
 public:
  virtual ~Stage() = default;
  virtual void apply(const Event& e, Item& item) = 0;
  // Savings decided only at the end of the stream (loops still open, outliers).
  virtual Millicredits finish() { return Millicredits::zero(); }
  // Savings decided after their event (loops), already final.
  Millicredits late_saved() const { return late_saved_; }

 protected:
  Millicredits late_saved_;
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
    std::string_view key = request_key(e);
    if (key.empty()) return;
    if (auto bits = pack_hex16(key)) {
      const PackedKey packed{*bits, account_number(e.account_id),
                             static_cast<std::uint8_t>(*e.kind)};
      std::int64_t* filled = packed_.find(packed);
      if (filled != nullptr && e.at_ms - *filled < policy_.cache_ttl_ms && e.at_ms >= *filled) {
        drop(item);
        last_dropped_ = true;
        return;
      }
      if (filled != nullptr) {
        *filled = e.at_ms;
      } else if (keys() < kReplayCacheKeysMax) {
        packed_.insert(packed, e.at_ms);
      } else {
        full_ = true;
      }
      return;
    }
    scratch_.assign(e.account_id);
    scratch_ += '\x1f';
    scratch_ += static_cast<char>(*e.kind);  // one byte: shorter keys, less memory
    scratch_ += key;
    auto it = entries_.find(std::string_view(scratch_));
    if (it != entries_.end() && e.at_ms - it->second < policy_.cache_ttl_ms &&
        e.at_ms >= it->second) {
      drop(item);
      last_dropped_ = true;
      return;
    }
    // A miss (or an expired entry): this call pays and fills the cache.
    if (it != entries_.end()) {
      it->second = e.at_ms;
    } else if (keys() < kReplayCacheKeysMax) {
      entries_.emplace(scratch_, e.at_ms);
    } else {
      full_ = true;
    }
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

class RevertLoopsStage final : public Stage {
 public:
  explicit RevertLoopsStage(const RefundBook* refunds) : refunds_(refunds) {}
  void apply(const Event& e, Item& item) override {
    if (!is_agent_turn(e)) return;
    // Net of the turn's refunds (ReplayerOptions::refunds): what the loop rules and the
    // audit's loops see, and what reverting the turn saves (the refund came back anyway).
    const Millicredits back = refunds_ != nullptr ? refunds_->refunded(e) : Millicredits::zero();
    LoopTurn t;
    t.at_ms = e.at_ms;
    t.credits = e.credits - min(back, e.credits);
    t.fix = e.metadata.intent == "fix";
    t.feature = e.metadata.feature;
    t.replay_credits = item.cost - min(back, item.cost);
    entry(detectors_, e.account_id).add(e.metadata.file, t, sink_);
  }
  Millicredits finish() override {
    for (auto& [account, d] : detectors_) d.finish(sink_);
    return Millicredits::zero();
  }

 private:
  const RefundBook* refunds_;
  LoopDetector::Sink sink_ = [this](const Loop& loop) {
    late_saved_ = late_saved_.saturating_add(loop.replay_waste);
  };
  StringMap<LoopDetector> detectors_;  // the savings are summed: order does not matter
};

class OutliersStage final : public Stage {
 public:
  void apply(const Event& e, Item& item) override {
    Totals& t = totals(e.account_id);
    t.credits = t.credits.saturating_add(item.cost);
    auto& u = entry(t.users, e.user_id);
    u.credits = u.credits.saturating_add(item.cost);
    if (e.kind == Kind::kAgentPrompt || e.kind == Kind::kDiscussTurn) u.builder = true;
    if (e.kind == Kind::kAgentPrompt) {
      ++u.agent_turns;
      ++t.agent_turns;
    }
  }
  void refund(const Event& e) {
    Totals& t = totals(e.account_id);
    t.credits = t.credits.saturating_sub(e.credits);
    User& u = entry(t.users, e.user_id);
    u.credits = u.credits.saturating_sub(e.credits);
  }
  Millicredits finish() override {
    Millicredits saved;
    for (const auto& [account, t] : totals_) {
      std::vector<UserTotals> users;
      for (const auto& [id, u] : t.users) {
        if (u.builder) users.push_back({id, u.agent_turns, u.credits});
      }
      for (const auto& o : find_outliers(users, t.agent_turns, t.credits)) {
        saved = saved.saturating_add(o.excess);
      }
    }
    return saved;
  }

 private:
  struct User {
    std::int64_t agent_turns = 0;
    Millicredits credits;
    bool builder = false;
  };
  struct Totals {
    StringMap<User> users;
    std::int64_t agent_turns = 0;
    Millicredits credits;
  };
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
  StringMap<Totals> totals_;  // the savings are summed: order does not matter
  const std::string* last_id_ = nullptr;
  Totals* last_ = nullptr;
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
  const CacheStage* cache = nullptr;  // its table of request keys, when it has one
  const Policy* plan = nullptr;
  PolicyOutcome outcome;
};

namespace {

std::unique_ptr<Stage> make_stage(const Policy& p, const pricing::RateCard& card,
                                  std::int64_t& errors, const RefundBook* refunds) {
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
      return std::make_unique<RevertLoopsStage>(refunds);
    case PolicyKind::kOutliers:
      return std::make_unique<OutliersStage>();
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
      s->stages.push_back(make_stage(*p, card_, report_.reprice_errors, refunds_));
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
      if (p->kind == PolicyKind::kOutliers) {
        s->outliers = static_cast<OutliersStage*>(s->stages.back().get());
      }
      if (p->kind == PolicyKind::kPlan) s->plan = p;
    }
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
  const std::string_view pool =
      !e.pool.empty() || !e.kind ? std::string_view(e.pool) : card_.pool(*e.kind);
  const auto add_to_pool = [pool](Scenario& s, Millicredits credits) {
    if (s.plan == nullptr) return;
    auto it = s.outcome.after_by_pool.find(pool);
    if (it == s.outcome.after_by_pool.end()) {
      it = s.outcome.after_by_pool.emplace(std::string(pool), Millicredits::zero()).first;
    }
    it->second = it->second.saturating_add(credits);
  };
  auto run = [&](Scenario& s) {
    s.outcome.before = s.outcome.before.saturating_add(delta);
    if (delta.is_negative()) {
      if (!netted_refund) {
        s.outcome.after = s.outcome.after.saturating_add(delta);
        add_to_pool(s, delta);
      }
      if (s.outliers != nullptr) s.outliers->refund(e);
      return;
    }
    Item item{delta, delta, false};
    for (std::size_t i = 0; i < s.stages.size() && !item.dropped; ++i) {
      const Millicredits cost = item.cost;
      s.stages[i]->apply(e, item);
      s.stage_saved[i] = s.stage_saved[i].saturating_add(net(cost) - net(item.cost));
    }
    s.outcome.after = s.outcome.after.saturating_add(net(item.cost));
    add_to_pool(s, net(item.cost));
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
      // finish() first: it decides the loops still open, whose savings late_saved() adds.
      const Millicredits late = s.stages[i]->finish().saturating_add(s.stages[i]->late_saved());
      s.outcome.after = s.outcome.after.saturating_sub(late);
      // Late savings are agent turns' (loops, outliers): their pool's.
      if (!late.is_zero() && s.plan != nullptr) {
        Millicredits& by_pool =
            s.outcome.after_by_pool[std::string(card_.pool(Kind::kAgentPrompt))];
        by_pool = by_pool.saturating_sub(late);
      }
      s.stage_saved[i] = s.stage_saved[i].saturating_add(late);
      s.outcome.stages.push_back({s.kinds[i], s.stage_saved[i]});
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
