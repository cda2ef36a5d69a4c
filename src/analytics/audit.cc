// src/analytics/audit.cc
// The audit's streaming aggregation, its findings, fixes and plan advice, and its JSON
// form (rules in audit.h, schema in docs/audit-schema.md).
#include "analytics/audit.h"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "base/assert.h"
#include "base/json_writer.h"
#include "time/time.h"

namespace credit::analytics {

using ledger::Event;
using ledger::EventType;
using pricing::Kind;

namespace {

struct SourceRange {
  std::int64_t min_pct;
  std::int64_t max_pct;
};
constexpr std::array<SourceRange, kSourceCount> kTypical = {{{60, 80}, {15, 30}, {5, 15}, {0, 10}}};

Source source_of(Kind k) {
  switch (k) {
    case Kind::kAgentPrompt:
      return Source::kAgent;
    case Kind::kDiscussTurn:
      return Source::kDiscuss;
    case Kind::kBackendFunction:
      return Source::kBackend;
    default:
      return Source::kIntegrations;
  }
}

double ratio(Millicredits part, Millicredits whole) {
  if (whole.mc() <= 0) return 0;
  return static_cast<double>(part.mc()) / static_cast<double>(whole.mc());
}

struct Tally {
  std::int64_t count = 0;
  Millicredits credits;
};

std::vector<CountRow> top_rows(const StringMap<Tally>& m, std::size_t limit) {
  std::vector<CountRow> rows;
  for (const auto& [k, t] : m) {
    if (t.count > 0) rows.push_back({k, t.count, t.credits});
  }
  std::sort(rows.begin(), rows.end(), [](const CountRow& a, const CountRow& b) {
    if (a.credits != b.credits) return a.credits > b.credits;
    return a.key < b.key;
  });
  if (rows.size() > limit) rows.resize(limit);
  return rows;
}

}  // namespace

std::string_view source_name(Source s) {
  switch (s) {
    case Source::kAgent:
      return "agent";
    case Source::kIntegrations:
      return "integrations";
    case Source::kDiscuss:
      return "discuss";
    case Source::kBackend:
      return "backend";
  }
  return "agent";
}

std::vector<Policy> audit_policies() {
  std::vector<Policy> out;
  for (std::string_view name :
       {"cache", "scoped", "discuss-off", "editor", "revert-loops", "outliers"}) {
    out.push_back(*parse_policy(name));
  }
  return out;
}

// "All fixes together" chains the policies of the fixes listed, and which those are is
// known only at the end. The cache, editor and revert-loops policies save nothing where
// their fix is not listed (their finding and their policy are decided by the same rule:
// a paid repeat, a small edit, a loop), so they stay in every chain; discuss-off and
// scoped save without their finding (any discuss turn, any prompt that reads several
// files), so there is a chain with and without each: chain i has discuss-off when bit
// kChainDiscussOff is set, scoped when bit kChainScoped is. Outliers comes last and
// changes nothing for the others: its part is counted only when its fix is listed. It
// judges the users on what revert-loops left (a loop's reverted turns are gone), so
// revert-loops is in every chain: without it there, the outliers' excess would hold the
// loops' waste that revert-loops' part counts too.
namespace {

constexpr std::size_t kChainDiscussOff = 1;
constexpr std::size_t kChainScoped = 2;
std::vector<std::vector<PolicyKind>> fix_chains() {
  std::vector<std::vector<PolicyKind>> chains;
  for (std::size_t i = 0; i < 4; ++i) {
    std::vector<PolicyKind>& c = chains.emplace_back();
    if ((i & kChainDiscussOff) != 0) c.push_back(PolicyKind::kDiscussOff);
    c.push_back(PolicyKind::kCache);
    if ((i & kChainScoped) != 0) c.push_back(PolicyKind::kScoped);
    c.push_back(PolicyKind::kEditor);
    c.push_back(PolicyKind::kRevertLoops);
    c.push_back(PolicyKind::kOutliers);
  }
  return chains;
}

// The end of the range's period: its `to`, cut at the end of now's day (now's day counts
// whole once it has begun: at exactly midnight it has not). The period is empty when this
// is not after `from` (`from` == `to`, or a range wholly after today).
std::int64_t period_end_ms(const AuditOptions& o) {
  CREDIT_ASSERT(o.range_from_ms && o.range_to_ms);
  CREDIT_ASSERT(*o.range_from_ms <= *o.range_to_ms);  // a `to` before `from` is refused
  std::int64_t end_ms = *o.range_to_ms;
  if (o.now_ms > 0) end_ms = std::min(end_ms, day_start_ms(o.now_ms - 1) + kMsPerDay);
  return end_ms;
}

// The days the range covers up to now (AuditOptions): none for an empty period
// (docs/audit-schema.md: it touches no day), else at least one; nullopt without a range.
std::optional<std::int64_t> range_period_days(const AuditOptions& o) {
  if (!o.range_from_ms || !o.range_to_ms) return std::nullopt;
  const std::int64_t end_ms = period_end_ms(o);
  if (end_ms <= *o.range_from_ms) return 0;  // an empty period touches no day
  return (end_ms - *o.range_from_ms + kMsPerDay - 1) / kMsPerDay;
}

}  // namespace

struct AuditBuilder::State {
  State(std::string id, const pricing::RateCard& card, AuditOptions opts)
      : account_id(std::move(id)),
        card(card),
        options(std::move(opts)),
        replayer(card, options.catalog, audit_policies(),
                 ReplayerOptions{.combined_only = {PolicyKind::kRevertLoops, PolicyKind::kOutliers},
                                 .period_days = range_period_days(options),
                                 .cycle_days = options.cycle_days,
                                 .refunds = options.refunds,
                                 .chains = fix_chains(),
                                 .combined = false}) {
    // The typical shares are of the whole burn (DESIGN.md section 2): a pool that only some
    // kinds draw from (the message pool of the two-pools example) is not held to them.
    for (int k = 0; k < pricing::kKindCount && !options.pool.empty(); ++k) {
      if (card.pool(static_cast<Kind>(k)) != options.pool) shares_comparable = false;
    }
  }

  struct FileStats {
    std::int64_t turns = 0;
    Millicredits credits;
  };
  struct UserStats {
    std::int64_t agent_turns = 0;
    Millicredits credits;
    bool builder = false;
  };
  struct SourceStats {
    std::int64_t events = 0;
    Millicredits credits;
  };
  struct SiteRepeats {
    std::int64_t calls = 0;
    std::int64_t paid_repeats = 0;
    Millicredits wasted;
  };

  std::string account_id;
  const pricing::RateCard& card;
  AuditOptions options;
  // Whether the audited events are every kind's (no pool named, or one pool every kind of
  // the rate card draws from): only then are the sources' shares held to the typical ones.
  bool shares_comparable = true;
  Replayer replayer;
  LoopDetector loops_detector;
  std::vector<Loop> loops;

  bool any = false;
  std::int64_t first_ms = 0, last_ms = 0, events = 0;
  Millicredits total, refunds;
  std::array<SourceStats, kSourceCount> by_source{};
  // Hash maps: the report sorts every table it takes from them (ties by key), so their
  // order never shows.
  StringMap<SourceStats> sources;  // kind (one byte) + file, feature or call site
  std::map<std::int64_t, Millicredits> daily;
  StringMap<FileStats> files;
  StringMap<UserStats> users;
  std::int64_t agent_turns = 0;
  // kind (one byte) + request key (a cache_key or request_hash) -> times paid
  StringMap<std::int64_t> paid_keys;
  PackedKeyMap<std::int64_t> packed_paid_keys;  // the same for keys of 16 hex digits
  std::size_t paid_key_count() const { return paid_keys.size() + packed_paid_keys.size(); }
  // Whether `key` was paid before for this kind; remembers it as paid. False for "".
  bool paid_before(std::uint8_t kind, std::string_view key);
  StringMap<SiteRepeats> sites;
  StringMap<Tally> unscoped_by_user, unscoped_by_file, small_by_file, discuss_intent;
  Tally unscoped, small_edits, discuss, no_snapshot;
  std::string scratch;   // a composite key being looked up
  NettedCharges netted;  // the charges booked net of their refunds

  // Every pool's burn (the advice's needs: a plan change moves every pool), the audited
  // one's included; a few pools, looked up in order.
  std::vector<std::pair<std::string, Millicredits>> pool_burn;

  // The event's pool: one written without takes its kind's in the rate card, as the
  // server's import and the replay give it (API.md does not require `pool`).
  std::string_view pool_of(const Event& e) const {
    return !e.pool.empty() || !e.kind ? std::string_view(e.pool) : card.pool(*e.kind);
  }
  // Whether the event belongs to the audited pool (audit.h, "pool").
  bool in_pool(const Event& e) const {
    if (options.pool.empty()) return true;
    const std::string_view pool = pool_of(e);
    if (pool == options.pool) return true;
    return pool.empty() && burn_delta(e).is_zero();
  }
  Millicredits burn_of_pool(std::string_view pool) const {
    for (const auto& [name, burn] : pool_burn) {
      if (name == pool) return burn;
    }
    return Millicredits::zero();
  }
  void add(const Event& e);
  // `net`: its credits net of the refunds attributed to it.
  void add_agent_turn(const Event& e, Millicredits net);
  // The charge before the stream that a refund refunds (AuditOptions::prior_charges).
  const Event* prior_charge(const Event& refund) const {
    if (options.prior_charges == nullptr || refund.charge_id.empty()) return nullptr;
    for (const Event& c : *options.prior_charges) {
      if (c.charge_id == refund.charge_id && c.imported == refund.imported &&
          c.account_id == refund.account_id && refund_reaches(c.at_ms, refund.at_ms)) {
        return &c;
      }
    }
    return nullptr;
  }
  AuditReport finish();
  void findings_and_fixes(AuditReport& r, const ReplayReport& replay);
  Millicredits all_fixes_per_cycle(const std::vector<Fix>& fixes, const ReplayReport& replay) const;
  std::optional<Advice> advise(const AuditReport& r) const;
};

void AuditBuilder::State::add(const Event& e) {
  // The audit reads the events API.md lists: the internal types (account, close) move no
  // credits and are not exported, so an audit of an export equals the route's.
  if (!ledger::event_type_listed(e.type)) return;
  if (const Millicredits burn = burn_delta(e); !burn.is_zero()) {
    const std::string_view pool = pool_of(e);
    auto it = std::find_if(pool_burn.begin(), pool_burn.end(),
                           [pool](const auto& p) { return p.first == pool; });
    if (it == pool_burn.end()) it = pool_burn.insert(pool_burn.end(), {std::string(pool), {}});
    it->second = it->second.saturating_add(burn);
  }
  if (!in_pool(e)) return;
  ++events;
  if (!any || e.at_ms < first_ms) first_ms = e.at_ms;
  if (!any || e.at_ms > last_ms) last_ms = e.at_ms;
  any = true;
  replayer.add(e);
  const Millicredits delta = burn_delta(e);
  if (delta.is_zero()) return;
  total = total.saturating_add(delta);
  if (e.type == EventType::kRefund) refunds = refunds.saturating_add(e.credits);
  Millicredits& day = daily[day_start_ms(e.at_ms)];
  day = day.saturating_add(delta);
  const std::int64_t count = delta.is_negative() ? 0 : 1;
  UserStats& user = entry(users, e.user_id);
  user.credits = user.credits.saturating_add(delta);
  if (!e.kind) return;  // a refund without its kind counts in the total only
  const Kind kind = *e.kind;
  auto& src = by_source[static_cast<std::size_t>(source_of(kind))];
  src.credits = src.credits.saturating_add(delta);
  src.events += count;
  // The tables keyed by the charge's metadata (sources, hot files, loops, and the
  // findings' rows) take a charge net of the refunds the book attributes to it, and a
  // refund only when none of this stream's charges took it (refunds.h): it then goes
  // under its own metadata.
  Millicredits keyed = delta;
  if (delta.is_negative()) {
    if (netted.took(e)) {  // booked already, under its charge
      if (kind == Kind::kDiscussTurn) discuss.credits = discuss.credits.saturating_add(delta);
      return;
    }
  } else if (options.refunds != nullptr) {
    const Millicredits back = options.refunds->refunded(e);
    if (!back.is_zero()) {
      keyed -= min(back, keyed);
      netted.note(e);
    }
  }
  // A refund of a charge before the range is booked under that charge's metadata.
  const Event* prior = delta.is_negative() ? prior_charge(e) : nullptr;
  const ledger::Metadata& md = prior != nullptr ? prior->metadata : e.metadata;
  std::string_view key = md.call_site;
  if (kind == Kind::kAgentPrompt) key = md.file.empty() ? md.feature : md.file;
  if (kind == Kind::kDiscussTurn) key = md.feature;
  scratch.assign(1, static_cast<char>(kind));
  scratch += key;
  auto& s = entry(sources, scratch);
  s.credits = s.credits.saturating_add(keyed);
  s.events += count;
  if (delta.is_negative()) {
    if (kind == Kind::kAgentPrompt && !md.file.empty()) {
      Millicredits& file = entry(files, md.file).credits;
      file = file.saturating_add(delta);
    }
    if (kind == Kind::kDiscussTurn) discuss.credits = discuss.credits.saturating_add(delta);
    return;
  }
  if (kind == Kind::kAgentPrompt || kind == Kind::kDiscussTurn) user.builder = true;
  if (kind == Kind::kAgentPrompt) {
    ++user.agent_turns;
    add_agent_turn(e, keyed);
  }
  if (kind == Kind::kDiscussTurn) {
    ++discuss.count;
    discuss.credits =
        discuss.credits.saturating_add(delta);  // its refunds are subtracted when they come
    auto& t = entry(discuss_intent,
                    e.metadata.intent.empty() ? std::string_view("(none)") : e.metadata.intent);
    ++t.count;
    t.credits = t.credits.saturating_add(keyed);
  }
  if (is_cacheable(e)) {
    SiteRepeats& site = entry(sites, e.metadata.call_site);
    ++site.calls;
    const RequestKeys request = request_keys(e);
    // A call refunded in full was not paid (keyed is net of the refunds known ahead).
    if (request.empty() || keyed.is_zero() || keyed.is_negative()) return;
    // Paid again when either key was paid before (DESIGN.md: "same `cache_key` or
    // `request_hash`"); both are remembered as paid.
    const auto kind_byte = static_cast<std::uint8_t>(kind);
    const bool by_cache_key = paid_before(kind_byte, request.cache_key);
    const bool by_request_hash = paid_before(kind_byte, request.request_hash);
    if (by_cache_key || by_request_hash) {
      ++site.paid_repeats;
      site.wasted = site.wasted.saturating_add(keyed);
    }
  }
}

bool AuditBuilder::State::paid_before(std::uint8_t kind, std::string_view key) {
  if (key.empty()) return false;
  if (auto bits = pack_hex16(key)) {
    const PackedKey packed{*bits, 0, kind};
    if (std::int64_t* paid = packed_paid_keys.find(packed)) {
      ++*paid;
      return true;
    }
    if (paid_key_count() < kAuditRequestKeysMax) packed_paid_keys.insert(packed, 1);
    return false;
  }
  scratch.assign(1, static_cast<char>(kind));  // one byte: shorter keys, less memory
  scratch += key;
  auto it = paid_keys.find(std::string_view(scratch));
  if (it != paid_keys.end()) {
    ++it->second;
    return true;
  }
  if (paid_key_count() < kAuditRequestKeysMax) paid_keys.emplace(scratch, 1);
  return false;
}

void AuditBuilder::State::add_agent_turn(const Event& e, Millicredits net) {
  ++agent_turns;
  const std::string& file = e.metadata.file;
  if (!file.empty()) {
    auto& f = entry(files, file);
    ++f.turns;
    f.credits = f.credits.saturating_add(net);
  }
  if (e.metadata.snapshot_id.empty()) {
    ++no_snapshot.count;
    no_snapshot.credits = no_snapshot.credits.saturating_add(net);
  }
  if (e.usage) {
    const std::int64_t emitted = e.usage->lines_emitted.value_or(0);
    const std::int64_t changed = e.usage->lines_changed.value_or(0);
    if (emitted > 0 && emitted >= kUnscopedEmittedFactor * changed) {
      ++unscoped.count;
      unscoped.credits = unscoped.credits.saturating_add(net);
      auto& u = entry(unscoped_by_user, e.user_id);
      ++u.count;
      u.credits = u.credits.saturating_add(net);
      auto& f = entry(unscoped_by_file, file.empty() ? std::string_view("(no file)") : file);
      ++f.count;
      f.credits = f.credits.saturating_add(net);
    }
    // Which tables a turn is in follows its charge as priced (the replay's editor policy
    // judges it so); the credits it adds are net.
    if (e.usage->lines_changed && changed <= kSmallEditLinesMax && e.credits >= kSmallEditCostMin) {
      ++small_edits.count;
      small_edits.credits = small_edits.credits.saturating_add(net);
      auto& f = entry(small_by_file, file.empty() ? std::string_view("(no file)") : file);
      ++f.count;
      f.credits = f.credits.saturating_add(net);
    }
  }
  LoopTurn t;
  t.at_ms = e.at_ms;
  t.credits = net;
  t.fix = e.metadata.intent == "fix";
  t.snapshot_id = e.metadata.snapshot_id;
  t.feature = e.metadata.feature;
  t.replay_credits = net;
  loops_detector.add(file, t, [this](const Loop& l) { loops.push_back(l); });
}

std::optional<Advice> AuditBuilder::State::advise(const AuditReport& r) const {
  if (options.catalog == nullptr || options.plan_id.empty()) return std::nullopt;
  const pricing::Plan* current = options.current_plan != nullptr
                                     ? options.current_plan
                                     : options.catalog->find(options.plan_id);
  if (current == nullptr || current->pools.empty()) return std::nullopt;
  // The audited pool's burn against that pool's allowance; the plan advised is one for
  // every pool the account uses (forecast.h): a plan change moves them all at once.
  const std::string& pool = options.pool.empty() ? current->pools.front().pool : options.pool;
  const pricing::PoolAllowance* own = current->pool(pool);
  if (own == nullptr) return std::nullopt;
  const auto need_of = [](Millicredits used_per_cycle) {
    return Millicredits::from_mc(
        saturating_mc(static_cast<__int128>(used_per_cycle.mc()) * kNeedPermille / 1000));
  };
  Advice a;
  a.current_plan = current->id;
  a.allowance = own->allowance;
  // (Without a pool named every event is audited: the plan's first pool's burn is its own.)
  const Millicredits own_burn = options.pool.empty() ? burn_of_pool(pool) : r.total;
  // Refunds of charges before the period can net it below zero: no burn, as /forecast
  // takes a window netted below zero (api-notes.md).
  a.used_per_cycle =
      max(per_cycle(own_burn, r.period_days, options.cycle_days), Millicredits::zero());
  a.need = need_of(a.used_per_cycle);
  // A fraction (DESIGN.md): a need past the allowance is 1, and `runs_out` says so.
  a.utilization = std::clamp(ratio(a.used_per_cycle, a.allowance), 0.0, 1.0);
  a.runs_out = a.used_per_cycle > a.allowance;
  if (a.runs_out && r.period_days > 0 && own_burn.mc() > 0) {
    // allowance / mean daily burn, in whole days into the cycle.
    a.runs_out_after_days =
        saturating_mc(static_cast<__int128>(a.allowance.mc()) * r.period_days / own_burn.mc());
  }
  // Every pool the account holds (its current plan's: on a server every pool of the rate
  // card). The credits of some pool run out this cycle when its burn per cycle passes its
  // allowance.
  std::vector<PoolNeed> needs{{pool, a.need.mc()}};
  std::vector<std::string> running_out;
  if (a.runs_out) running_out.push_back(pool);
  for (const pricing::PoolAllowance& pa : current->pools) {
    if (pa.pool == pool) continue;
    const Millicredits used = per_cycle(burn_of_pool(pa.pool), r.period_days, options.cycle_days);
    needs.push_back({pa.pool, std::max<std::int64_t>(0, need_of(used).mc())});
    if (used > pa.allowance) running_out.push_back(pa.pool);
  }
  const bool some_runs_out = !running_out.empty();
  order_needs(*current, needs);
  // The plan /forecast would name for these needs (forecast.h), said as it says it: a
  // plan that does not cover them "comes closest", and is never "sized correctly".
  const auto [right, covers] = pick_plan(*options.catalog, needs, current->id);
  if (right == nullptr) return std::nullopt;
  const std::string_view cover_s = covers ? "covers" : "comes closest to (none covers)";
  const std::string need_s = needs_text(needs);
  a.plan = right->id;
  a.price_delta_usd_cents = right->price_usd_cents - current->price_usd_cents;
  a.engineering_hours = static_cast<double>(a.price_delta_usd_cents) / 100.0 /
                        static_cast<double>(std::max<std::int64_t>(1, options.hourly_rate_usd));
  const std::int64_t break_even_cents = options.hourly_rate_usd * options.break_even_hours * 100;
  if (right->id == current->id) {
    a.action = "stay";
    a.plan = current->id;
    a.price_delta_usd_cents = 0;
    a.engineering_hours = 0;
    a.sized_correctly = covers && a.utilization * 1000 >= kSizedCorrectlyPermille;
    a.reason = fmt::format("{} {} {} per cycle", current->id, cover_s, need_s);
  } else if (right->price_usd_cents < current->price_usd_cents) {
    a.action = "downgrade";
    a.reason = fmt::format("{} {} {} for {} USD less", right->id, cover_s, need_s,
                           usd_text(-a.price_delta_usd_cents));
  } else if (right->price_usd_cents == current->price_usd_cents) {
    // Not an upgrade (DESIGN.md): a change at the same price waits for the next boundary.
    a.action = "upgrade_next_cycle";
    a.reason = fmt::format(
        "{} {} {} at the same price; a change at the same price takes effect at the next cycle",
        right->id, cover_s, need_s);
  } else if (some_runs_out && a.price_delta_usd_cents <= break_even_cents) {
    a.action = "upgrade_now";
    a.reason = fmt::format("{} this cycle; {} {} {} for {} USD more, {} engineering hours",
                           runs_out_text(running_out, needs.size()), right->id, cover_s, need_s,
                           usd_text(a.price_delta_usd_cents), hours_text(a.engineering_hours));
  } else {
    a.action = "upgrade_next_cycle";
    a.reason = fmt::format("{} does not cover {}; {} {} {} from the next cycle for {} USD more",
                           current->id, need_s, right->id, cover_s,
                           needs.size() > 1 ? "them" : "it", usd_text(a.price_delta_usd_cents));
  }
  return a;
}

void AuditBuilder::State::findings_and_fixes(AuditReport& r, const ReplayReport& replay) {
  auto outcome = [&](std::string_view name) -> const PolicyOutcome* {
    for (const auto& p : replay.policies) {
      if (p.name == name) return &p;
    }
    return nullptr;
  };
  auto add_fix = [&](std::string id, std::string title, std::string policy, bool behavioural,
                     std::int64_t hours, std::string finding) {
    Fix f;
    f.id = std::move(id);
    f.title = std::move(title);
    f.policy = policy;
    if (policy == "revert-loops") {
      // What the revert-loops replay alone saves: the waste of the loops found here.
      f.saved = r.loop_waste;
    } else if (policy == "outliers") {
      // What the outliers replay alone saves: the excess of the outliers found here.
      for (const auto& o : r.outliers) f.saved = f.saved.saturating_add(o.excess);
    } else if (const PolicyOutcome* o = outcome(policy)) {
      f.saved = o->saved;
    }
    f.saved_per_cycle = per_cycle(f.saved, replay.period_days, options.cycle_days);
    f.effort = behavioural ? "behavioural" : "hours";
    f.effort_hours = behavioural ? kBehaviouralEffortHours : hours;
    f.saved_per_hour =
        Millicredits::from_mc(f.saved_per_cycle.mc() / std::max<std::int64_t>(1, f.effort_hours));
    f.finding = std::move(finding);
    r.fixes.push_back(std::move(f));
  };
  auto add_finding = [&](std::string code, std::string message, Millicredits credits) {
    r.findings.push_back({std::move(code), std::move(message), credits});
  };

  for (std::size_t i = 0; i < kSourceCount; ++i) {
    const ShareRow& s = r.shares[i];
    if (s.in_range || r.total.mc() <= 0 || !shares_comparable) continue;
    if (static_cast<Source>(i) == Source::kDiscuss && s.share * 100 > s.typical_max_pct) continue;
    add_finding("share_out_of_range",
                fmt::format("{} is {:.1f} % of the burn; typical is {}-{} %", s.source,
                            s.share * 100, s.typical_min_pct, s.typical_max_pct),
                s.credits);
  }
  if (!r.loops.empty()) {
    add_finding("regression_loops",
                fmt::format("{} regression loop(s) wasted {} credits", r.loops.size(),
                            format_credits(r.loop_waste)),
                r.loop_waste);
    add_fix("revert_loops", "After two failed fixes, revert to the snapshot before the loop",
            "revert-loops", true, 0, "regression_loops");
  }
  if (r.repeat_calls_paid > 0) {
    add_finding("repeated_integration_calls",
                fmt::format("{} identical integration call(s) were paid again ({} credits)",
                            r.repeat_calls_paid, format_credits(r.repeat_waste)),
                r.repeat_waste);
    std::string sites;
    for (const auto& row : r.repeats) {
      if (row.paid_repeats == 0) continue;
      sites += sites.empty() ? row.call_site : ", " + row.call_site;
    }
    add_fix("cache_integrations",
            "Send a cache_key with deterministic integration calls (" + sites + ")", "cache", false,
            kCacheEffortHours, "repeated_integration_calls");
  }
  if (r.unscoped_prompts > 0) {
    add_finding("unscoped_prompts",
                fmt::format("{} agent prompt(s) re-emitted at least 5x the lines they changed "
                            "({} credits)",
                            r.unscoped_prompts, format_credits(r.unscoped_credits)),
                r.unscoped_credits);
    add_fix("scope_prompts", "Scope prompts: name the file and the lines to change", "scoped", true,
            0, "unscoped_prompts");
  }
  if (r.discuss_share * 1000 > kDiscussSharePermilleMax) {
    add_finding("discuss_share_high",
                fmt::format("discuss mode is {:.1f} % of the burn (typical at most 15 %)",
                            r.discuss_share * 100),
                r.discuss_credits);
    add_fix("discuss_for_planning", "Keep discuss mode for planning, not routine questions",
            "discuss-off", true, 0, "discuss_share_high");
  }
  if (r.small_edits > 0) {
    add_finding("small_edits_via_agent",
                fmt::format("{} agent turn(s) changed at most 5 lines for 3 credits or more "
                            "({} credits)",
                            r.small_edits, format_credits(r.small_edit_credits)),
                r.small_edit_credits);
    add_fix("edit_in_editor", "Make small edits in the code editor, not through the agent",
            "editor", true, 0, "small_edits_via_agent");
  }
  if (!r.outliers.empty()) {
    Millicredits c;
    std::string names;
    for (const auto& o : r.outliers) {
      c = c.saturating_add(o.credits);
      names += names.empty() ? o.user_id : ", " + o.user_id;
    }
    add_finding(
        "user_outliers",
        fmt::format("{} spent far above the median user ({} credits)", names, format_credits(c)),
        c);
    add_fix("review_outliers", "Review the outlier users' workflow (" + names + ")", "outliers",
            true, 0, "user_outliers");
  }
  if (r.turns_without_snapshot > 0) {
    add_finding("agent_turns_without_snapshot",
                fmt::format("{} agent turn(s) ran without a snapshot to revert to",
                            r.turns_without_snapshot),
                r.turns_without_snapshot_credits);
    add_fix("snapshot_first", "Take a snapshot before every agent turn (enables reverts)", "", true,
            0, "agent_turns_without_snapshot");
  }
  std::stable_sort(r.fixes.begin(), r.fixes.end(), [](const Fix& a, const Fix& b) {
    if (a.saved_per_hour != b.saved_per_hour) return a.saved_per_hour > b.saved_per_hour;
    return a.id < b.id;
  });
  r.saved_per_cycle_all = all_fixes_per_cycle(r.fixes, replay);
}

Millicredits AuditBuilder::State::all_fixes_per_cycle(const std::vector<Fix>& fixes,
                                                      const ReplayReport& replay) const {
  // The policies of the fixes listed, and what they save on their own.
  std::vector<PolicyKind> listed;
  Millicredits sum;
  for (const Fix& f : fixes) {
    sum = sum.saturating_add(f.saved_per_cycle);
    if (f.policy.empty()) continue;
    if (auto p = parse_policy(f.policy); p.ok()) listed.push_back(p->kind);
  }
  if (listed.empty()) return Millicredits::zero();
  auto is_listed = [&](PolicyKind k) {
    return std::find(listed.begin(), listed.end(), k) != listed.end();
  };
  const std::size_t chain = (is_listed(PolicyKind::kDiscussOff) ? kChainDiscussOff : 0) |
                            (is_listed(PolicyKind::kScoped) ? kChainScoped : 0);
  CREDIT_ASSERT(chain < replay.chains.size());
  Millicredits saved;
  for (const StageSaving& stage : replay.chains[chain].stages) {
    if (is_listed(stage.kind)) saved = saved.saturating_add(stage.saved);
  }
  // Chained, no event is saved twice, so the whole is at most the sum of its parts, but
  // for the outliers' excess, judged again on what the other policies left: the bound.
  return min(per_cycle(saved, replay.period_days, options.cycle_days), sum);
}

AuditReport AuditBuilder::State::finish() {
  loops_detector.finish([this](const Loop& l) { loops.push_back(l); });
  ReplayReport replay = replayer.finish();
  AuditReport r;
  r.account_id = account_id;
  r.pool = options.pool;
  r.events = events;
  r.from_ms = options.range_from_ms.value_or(any ? day_start_ms(first_ms) : 0);
  r.to_ms = options.range_to_ms.value_or(
      any ? std::min(day_start_ms(last_ms) + kMsPerDay, kLastMsOf9999) : 0);
  r.period_days = replay.period_days;
  r.total = total;
  r.refunds = refunds;
  // Shares as /usage gives them (fractions 0..1): a source netted below zero by refunds
  // of charges before the range has share 0, and the others are of the sum of the
  // positive ones, so they add up to 1 however much was refunded.
  Millicredits positive;
  for (std::size_t i = 0; i < kSourceCount; ++i) {
    positive = positive.saturating_add(max(by_source[i].credits, Millicredits::zero()));
  }
  for (std::size_t i = 0; i < kSourceCount; ++i) {
    ShareRow& s = r.shares[i];
    s.source = std::string(source_name(static_cast<Source>(i)));
    s.credits = by_source[i].credits;
    s.events = by_source[i].events;
    const Millicredits counted = max(s.credits, Millicredits::zero());
    s.share = ratio(counted, positive);
    s.typical_min_pct = kTypical[i].min_pct;
    s.typical_max_pct = kTypical[i].max_pct;
    // Exact: credits * 100 against the positive sum * pct (no burn: nothing is out of range).
    auto scaled = static_cast<__int128>(counted.mc()) * 100;
    s.in_range =
        positive.mc() <= 0 || (scaled >= static_cast<__int128>(positive.mc()) * s.typical_min_pct &&
                               scaled <= static_cast<__int128>(positive.mc()) * s.typical_max_pct);
  }
  for (const auto& [k, st] : sources) {
    if (st.credits.mc() <= 0) continue;
    const auto kind = static_cast<Kind>(static_cast<unsigned char>(k.front()));
    r.top_sources.push_back({std::string(pricing::kind_name(kind)), k.substr(1), st.credits,
                             st.events, ratio(st.credits, positive)});
  }
  std::sort(r.top_sources.begin(), r.top_sources.end(), [](const SourceRow& a, const SourceRow& b) {
    if (a.credits != b.credits) return a.credits > b.credits;
    return std::tie(a.kind, a.key) < std::tie(b.kind, b.key);
  });
  if (r.top_sources.size() > kTopSourcesMax) r.top_sources.resize(kTopSourcesMax);
  for (const auto& [file, st] : files) {
    if (st.turns > 0) r.hot_files.push_back({file, st.turns, st.credits});
  }
  std::sort(r.hot_files.begin(), r.hot_files.end(), [](const HotFile& a, const HotFile& b) {
    if (a.turns != b.turns) return a.turns > b.turns;
    if (a.credits != b.credits) return a.credits > b.credits;
    return a.file < b.file;
  });
  if (r.hot_files.size() > kHotFilesMax) r.hot_files.resize(kHotFilesMax);
  // Every UTC day of the period (the range's, up to now's day: range_period_days), quiet
  // days at 0; the days of the events at least (an import may lie past now). An empty
  // range touches no day.
  std::optional<std::int64_t> first_day, last_day;
  if (const std::optional<std::int64_t> days = range_period_days(options); days && *days > 0) {
    first_day = day_start_ms(*options.range_from_ms);
    last_day = day_start_ms(period_end_ms(options) - 1);
    // A period longer than the server's (only offline --from/--to can give one) lists the
    // events' days only.
    if ((*last_day - *first_day) / kMsPerDay >= kDailyRowsMax) first_day = last_day = std::nullopt;
  }
  if (any) {
    first_day = std::min(first_day.value_or(day_start_ms(first_ms)), day_start_ms(first_ms));
    last_day = std::max(last_day.value_or(day_start_ms(last_ms)), day_start_ms(last_ms));
  }
  if (first_day && last_day) {
    for (std::int64_t d = *first_day; d <= *last_day; d += kMsPerDay) {
      auto it = daily.find(d);
      r.daily.push_back({d, it == daily.end() ? Millicredits::zero() : it->second});
    }
  }
  std::sort(loops.begin(), loops.end(),
            [](const Loop& a, const Loop& b) { return a.first_at_ms < b.first_at_ms; });
  r.loops = loops;
  for (const auto& l : loops) r.loop_waste = r.loop_waste.saturating_add(l.waste);
  for (const auto& [site, st] : sites) {
    r.repeat_calls_paid += st.paid_repeats;
    r.repeat_waste = r.repeat_waste.saturating_add(st.wasted);
    if (st.paid_repeats > 0) r.repeats.push_back({site, st.calls, st.paid_repeats, st.wasted});
  }
  std::sort(r.repeats.begin(), r.repeats.end(), [](const RepeatRow& a, const RepeatRow& b) {
    if (a.wasted != b.wasted) return a.wasted > b.wasted;
    return a.call_site < b.call_site;
  });
  r.unscoped_prompts = unscoped.count;
  r.unscoped_credits = unscoped.credits;
  r.unscoped_by_user = top_rows(unscoped_by_user, kRowsMax);
  r.unscoped_by_file = top_rows(unscoped_by_file, kRowsMax);
  r.discuss_turns = discuss.count;
  r.discuss_credits = discuss.credits;
  r.discuss_share = ratio(discuss.credits, total);
  r.discuss_by_intent = top_rows(discuss_intent, kRowsMax);
  r.small_edits = small_edits.count;
  r.small_edit_credits = small_edits.credits;
  r.small_edits_by_file = top_rows(small_by_file, kRowsMax);
  r.agent_turns = agent_turns;
  r.turns_without_snapshot = no_snapshot.count;
  r.turns_without_snapshot_credits = no_snapshot.credits;
  std::vector<UserTotals> builders;
  for (const auto& [id, u] : users) {
    if (u.builder) builders.push_back({id, u.agent_turns, u.credits});
  }
  // By id, as find_outliers lists users with equal credits in the order it is given.
  std::sort(builders.begin(), builders.end(),
            [](const UserTotals& a, const UserTotals& b) { return a.user_id < b.user_id; });
  r.outliers = find_outliers(builders, agent_turns, total);
  r.advice = advise(r);
  findings_and_fixes(r, replay);
  return r;
}

AuditBuilder::AuditBuilder(std::string account_id, const pricing::RateCard& card,
                           AuditOptions options)
    : s_(std::make_unique<State>(std::move(account_id), card, std::move(options))) {}
AuditBuilder::~AuditBuilder() = default;
void AuditBuilder::add(const Event& event) {
  s_->add(event);
}
AuditReport AuditBuilder::finish() {
  return s_->finish();
}

void Auditor::add(const Event& event) {
  if (last_ == nullptr || *last_id_ != event.account_id) {
    auto it = builders_.find(std::string_view(event.account_id));
    if (it == builders_.end()) {
      it = builders_
               .emplace(event.account_id,
                        std::make_unique<AuditBuilder>(event.account_id, card_, options_))
               .first;
    }
    last_id_ = &it->first;
    last_ = it->second.get();
  }
  last_->add(event);
}

std::vector<AuditReport> Auditor::finish() {
  std::vector<std::pair<std::string_view, AuditBuilder*>> order;
  for (auto& [id, b] : builders_) order.emplace_back(id, b.get());
  std::sort(order.begin(), order.end());
  std::vector<AuditReport> out;
  for (auto& [id, b] : order) out.push_back(b->finish());
  return out;
}

// --- JSON ------------------------------------------------------------------------------

namespace {

void credits(json::Writer& w, std::string_view key, Millicredits c) {
  w.key(key).raw(format_credits(c));
}
void fraction(json::Writer& w, std::string_view key, double v) {
  w.key(key).fraction(v);
}
void instant(json::Writer& w, std::string_view key, std::int64_t at_ms) {
  w.key(key).string(format_rfc3339(at_ms));
}
void string_or_null(json::Writer& w, std::string_view key, const std::string& v) {
  w.key(key);
  if (v.empty()) {
    w.null();
  } else {
    w.string(v);
  }
}
void count_rows(json::Writer& w, std::string_view key, std::string_view name,
                const std::vector<CountRow>& rows) {
  w.key(key).begin_array();
  for (const auto& row : rows) {
    w.begin_object().key(name).string(row.key).key("count").integer(row.count);
    credits(w, "credits", row.credits);
    w.end_object();
  }
  w.end_array();
}
std::string median_text(std::int64_t x2) {
  return x2 % 2 == 0 ? std::to_string(x2 / 2) : std::to_string(x2 / 2) + ".5";
}

}  // namespace

void append_audit_json(std::string& out, const AuditReport& r) {
  json::Writer w(out);
  w.begin_object();
  w.key("account_id").string(r.account_id);
  string_or_null(w, "pool", r.pool);
  instant(w, "from", r.from_ms);
  instant(w, "to", r.to_ms);
  w.key("period_days").integer(r.period_days);
  w.key("events").integer(r.events);
  credits(w, "total", r.total);
  credits(w, "refunds", r.refunds);
  w.key("burn_by_source").begin_array();
  for (const auto& s : r.shares) {
    w.begin_object().key("source").string(s.source);
    credits(w, "credits", s.credits);
    w.key("events").integer(s.events);
    fraction(w, "share", s.share);
    w.key("typical").begin_object();
    fraction(w, "min", static_cast<double>(s.typical_min_pct) / 100);
    fraction(w, "max", static_cast<double>(s.typical_max_pct) / 100);
    w.end_object().key("in_range").boolean(s.in_range).end_object();
  }
  w.end_array();
  w.key("top_sources").begin_array();
  for (const auto& s : r.top_sources) {
    w.begin_object().key("kind").string(s.kind);
    string_or_null(w, "key", s.key);
    credits(w, "credits", s.credits);
    w.key("events").integer(s.events);
    fraction(w, "share", s.share);
    w.end_object();
  }
  w.end_array();
  w.key("hot_files").begin_array();
  for (const auto& f : r.hot_files) {
    w.begin_object().key("file").string(f.file).key("turns").integer(f.turns);
    credits(w, "credits", f.credits);
    w.end_object();
  }
  w.end_array();
  w.key("daily").begin_array();
  for (const auto& d : r.daily) {
    w.begin_object().key("date").string(format_date(d.day_ms));
    credits(w, "credits", d.credits);
    w.end_object();
  }
  w.end_array();
  w.key("regression_loops").begin_object();
  credits(w, "waste", r.loop_waste);
  w.key("loops").begin_array();
  for (const auto& l : r.loops) {
    w.begin_object();
    string_or_null(w, "file", l.file);
    string_or_null(w, "feature", l.feature);
    w.key("turns").integer(l.turns).key("fixes").integer(l.fixes);
    credits(w, "credits", l.credits);
    credits(w, "waste", l.waste);
    instant(w, "first_at", l.first_at_ms);
    instant(w, "last_at", l.last_at_ms);
    string_or_null(w, "revert_to_snapshot", l.revert_to_snapshot);
    w.end_object();
  }
  w.end_array().end_object();
  w.key("repeated_calls").begin_object();
  w.key("paid_repeats").integer(r.repeat_calls_paid);
  credits(w, "waste", r.repeat_waste);
  w.key("by_call_site").begin_array();
  for (const auto& row : r.repeats) {
    w.begin_object();
    string_or_null(w, "call_site", row.call_site);
    w.key("calls").integer(row.calls).key("paid_repeats").integer(row.paid_repeats);
    credits(w, "waste", row.wasted);
    w.end_object();
  }
  w.end_array().end_object();
  w.key("unscoped_prompts").begin_object().key("prompts").integer(r.unscoped_prompts);
  credits(w, "credits", r.unscoped_credits);
  count_rows(w, "by_user", "user_id", r.unscoped_by_user);
  count_rows(w, "by_file", "file", r.unscoped_by_file);
  w.end_object();
  w.key("discuss").begin_object().key("turns").integer(r.discuss_turns);
  credits(w, "credits", r.discuss_credits);
  fraction(w, "share", r.discuss_share);
  count_rows(w, "by_intent", "intent", r.discuss_by_intent);
  w.end_object();
  w.key("small_edits").begin_object().key("turns").integer(r.small_edits);
  credits(w, "credits", r.small_edit_credits);
  count_rows(w, "by_file", "file", r.small_edits_by_file);
  w.end_object();
  w.key("snapshots").begin_object().key("agent_turns").integer(r.agent_turns);
  w.key("without_snapshot").integer(r.turns_without_snapshot);
  credits(w, "credits_without_snapshot", r.turns_without_snapshot_credits);
  w.end_object();
  w.key("outliers").begin_array();
  for (const auto& o : r.outliers) {
    w.begin_object().key("user_id").string(o.user_id).key("agent_turns").integer(o.agent_turns);
    credits(w, "credits", o.credits);
    w.key("by_turns").boolean(o.by_turns).key("by_credits").boolean(o.by_credits);
    w.key("median_agent_turns").raw(median_text(o.median_turns_x2));
    credits(w, "median_credits", Millicredits::from_mc(o.median_credits_mc_x2 / 2));
    credits(w, "excess", o.excess);
    w.end_object();
  }
  w.end_array();
  w.key("advice");
  if (r.advice) {
    const Advice& a = *r.advice;
    w.begin_object().key("current_plan").string(a.current_plan);
    credits(w, "allowance", a.allowance);
    credits(w, "used_per_cycle", a.used_per_cycle);
    credits(w, "need", a.need);
    fraction(w, "utilization", a.utilization);
    w.key("runs_out").boolean(a.runs_out);
    w.key("runs_out_after_days");
    if (a.runs_out_after_days) {
      w.integer(*a.runs_out_after_days);
    } else {
      w.null();
    }
    w.key("action").string(a.action).key("plan").string(a.plan);
    w.key("price_delta_usd").raw(usd_text(a.price_delta_usd_cents));
    w.key("engineering_hours").raw(hours_text(a.engineering_hours));
    w.key("sized_correctly").boolean(a.sized_correctly);
    w.key("reason").string(a.reason).end_object();
  } else {
    w.null();
  }
  w.key("findings").begin_array();
  for (const auto& f : r.findings) {
    w.begin_object().key("code").string(f.code).key("message").string(f.message);
    credits(w, "credits", f.credits);
    w.end_object();
  }
  w.end_array();
  w.key("fixes").begin_array();
  for (const auto& f : r.fixes) {
    w.begin_object().key("id").string(f.id).key("title").string(f.title);
    string_or_null(w, "policy", f.policy);
    credits(w, "saved", f.saved);
    credits(w, "saved_per_cycle", f.saved_per_cycle);
    w.key("effort").string(f.effort).key("effort_hours").integer(f.effort_hours);
    credits(w, "saved_per_hour", f.saved_per_hour);
    w.key("finding").string(f.finding).end_object();
  }
  w.end_array();
  credits(w, "saved_per_cycle_all_fixes", r.saved_per_cycle_all);
  w.end_object();
}

std::string audit_json(const std::vector<AuditReport>& reports) {
  std::string out;
  if (reports.size() == 1) {
    append_audit_json(out, reports.front());
  } else {
    out += "{\"reports\":[";
    for (std::size_t i = 0; i < reports.size(); ++i) {
      if (i > 0) out += ',';
      append_audit_json(out, reports[i]);
    }
    out += "]}";
  }
  out += '\n';
  return out;
}

}  // namespace credit::analytics
