// src/analytics/rollup.cc
// The per-hour rollups and their reads (see rollup.h for what each event adds and for
// the layout).
#include "analytics/rollup.h"

#include <algorithm>
#include <bit>

#include "base/assert.h"
#include "pricing/rate_card.h"
#include "pricing/usage.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

// Entry keys: 4 bits of dimension, 28 bits of interned id.
constexpr std::uint32_t kIdBits = 28;
constexpr std::uint32_t kIdMask = (1u << kIdBits) - 1;
constexpr std::uint32_t kAgentFileTag = 6;  // agent turns per file (hot files)

std::uint32_t entry_key(std::uint32_t tag, std::uint32_t id) {
  CREDIT_ASSERT(id <= kIdMask);
  return (tag << kIdBits) | id;
}

bool is_spend(EventType t) {
  return t == EventType::kCharge || t == EventType::kCapture;
}

// A live reset or account creation off the hour: a cycle starts inside an hour (at the
// reset; at or before the creation, which no live event of the account precedes), which
// the rollups split there.
bool is_cycle_split(EventType t, bool imported, std::int64_t at_ms) {
  return (t == EventType::kReset || t == EventType::kAccountCreated) && !imported &&
         hour_start_ms(at_ms) != at_ms;
}

std::size_t slot_of(std::uint32_t key, std::size_t mask) {
  return (static_cast<std::size_t>(key) * 0x9E3779B97F4A7C15ULL >> 32) & mask;
}

template <typename Row>
void sort_usage_rows(std::vector<Row>& rows, bool by_time) {
  std::sort(rows.begin(), rows.end(), [by_time](const Row& x, const Row& y) {
    if (!by_time && x.credits_mc != y.credits_mc) return x.credits_mc > y.credits_mc;
    return x.key < y.key;
  });
}

}  // namespace

std::optional<GroupBy> parse_group_by(std::string_view name) {
  static constexpr std::array<std::string_view, 8> kNames = {
      "kind", "user", "file", "feature", "model", "call_site", "day", "week"};
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<GroupBy>(i);
  }
  return std::nullopt;
}

bool fact_matters(const Event& e) {
  // Only integration calls use the cache (DESIGN.md): another kind's cache_key is no miss.
  const bool miss = !e.cache_key.empty() && e.kind && pricing::kind_is_integration_call(*e.kind) &&
                    (e.type == EventType::kCharge || e.type == EventType::kHold);
  return is_spend(e.type) || e.type == EventType::kRefund || e.type == EventType::kCacheHit ||
         miss || (e.imported && !e.idempotency_key.empty()) ||
         is_cycle_split(e.type, e.imported, e.at_ms);
}

Fact fact_of(const Event& e) {
  Fact f;
  f.at_ms = e.at_ms;
  f.type = e.type;
  f.kind = e.kind;
  f.imported = e.imported;
  f.has_cache_key = !e.cache_key.empty();
  f.credits_mc = e.credits.mc();
  f.account_id = e.account_id;
  f.user_id = e.user_id;
  f.pool = e.pool;
  f.file = e.metadata.file;
  f.feature = e.metadata.feature;
  if (!e.metadata.model.empty()) {
    f.model = e.metadata.model;
  } else if (e.usage && e.kind) {
    // A usage that names no model was priced as "default" by kinds that take one.
    if (auto m = pricing::RateCard::priced_model(*e.kind, *e.usage)) f.model = *m;
  }
  f.call_site = e.metadata.call_site;
  f.charge_id = e.charge_id;
  if (e.imported) f.idempotency_key = e.idempotency_key;
  return f;
}

// ---- Interner ------------------------------------------------------------------------

Interner::Interner() {
  names_.emplace_back();
  ids_.emplace(std::string_view(names_.back()), 0);
}

std::uint32_t Interner::intern(std::string_view s) {
  if (s.empty()) return 0;
  if (auto it = ids_.find(s); it != ids_.end()) return it->second;
  const auto id = static_cast<std::uint32_t>(names_.size());
  CREDIT_ASSERT(id <= kIdMask);
  names_.emplace_back(s);
  ids_.emplace(std::string_view(names_.back()), id);
  return id;
}

std::optional<std::uint32_t> Interner::find(std::string_view s) const {
  auto it = ids_.find(s);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

// ---- cells and layers ----------------------------------------------------------------

Rollups::Entry& Rollups::Cell::entry(std::uint32_t key) {
  if (index.empty()) {
    for (Entry& e : entries) {
      if (e.key == key) return e;
    }
    entries.push_back(Entry{key, 0, 0});
    if (entries.size() > kCellScanEntriesMax) {
      // Past the linear scan's size: index every entry (load at most 1/2).
      // A power of two: probing wraps with `& (size - 1)`.
      index.assign(std::bit_ceil(4 * kCellScanEntriesMax), 0);
      for (std::size_t i = 0; i < entries.size(); ++i) {
        std::size_t s = slot_of(entries[i].key, index.size() - 1);
        while (index[s] != 0) s = (s + 1) & (index.size() - 1);
        index[s] = static_cast<std::uint32_t>(i + 1);
      }
    }
    return entries.back();
  }
  CREDIT_ASSERT(std::has_single_bit(index.size()));
  const std::size_t mask = index.size() - 1;
  std::size_t s = slot_of(key, mask);
  while (index[s] != 0) {
    Entry& e = entries[index[s] - 1];
    if (e.key == key) return e;
    s = (s + 1) & mask;
  }
  entries.push_back(Entry{key, 0, 0});
  index[s] = static_cast<std::uint32_t>(entries.size());
  if (2 * entries.size() > index.size()) {
    index.assign(2 * index.size(), 0);
    const std::size_t m = index.size() - 1;
    for (std::size_t i = 0; i < entries.size(); ++i) {
      std::size_t t = slot_of(entries[i].key, m);
      while (index[t] != 0) t = (t + 1) & m;
      index[t] = static_cast<std::uint32_t>(i + 1);
    }
  }
  return entries.back();
}

Rollups::Cell& Rollups::Layer::at(std::int64_t start) {
  // Live events come in time order: the last cell, or a new one after it.
  if (!starts.empty() && starts.back() == start) return cells.back();
  if (starts.empty() || starts.back() < start) {
    starts.push_back(start);
    return cells.emplace_back();
  }
  auto it = std::lower_bound(starts.begin(), starts.end(), start);
  const auto i = static_cast<std::size_t>(it - starts.begin());
  if (it != starts.end() && *it == start) return cells[i];
  starts.insert(it, start);
  return *cells.emplace(cells.begin() + static_cast<std::ptrdiff_t>(i));
}

std::int64_t Rollups::AccountRollup::cell_start_ms(std::int64_t at_ms) const {
  const std::int64_t hour = hour_start_ms(at_ms);
  // The latest split at or before the event (live events: the last one, or none).
  auto it = std::upper_bound(cycle_splits.begin(), cycle_splits.end(), at_ms);
  if (it == cycle_splits.begin()) return hour;
  return std::max(hour, *std::prev(it));
}

// ---- add -----------------------------------------------------------------------------

void Rollups::add(const Event& e) {
  if (!fact_matters(e)) {
    // Only the account's first live event instant and its existence are kept. The
    // first event is one the events route lists (DESIGN.md's burn window starts on its
    // day): not the account's internal creation record.
    AccountRollup& a = account_for_write(e.account_id);
    if (!e.imported && event_type_listed(e.type)) note_listed(a, e.at_ms);
    return;
  }
  add(fact_of(e));
}

void Rollups::remember_charge(ChargeMemory& m, const Fact& f, const ChargeDims& dims) {
  // Forget charges that can no longer be refunded, so the memory stays one cycle deep.
  while (!m.charges.empty() && m.charges.front().at_ms + kRefundMemoryMs < f.at_ms) {
    m.charges.pop_front();
  }
  while (!m.other_order.empty() && m.other_order.front().first + kRefundMemoryMs < f.at_ms) {
    m.other_charges.erase(m.other_order.front().second);
    m.other_order.pop_front();
  }
  if (f.charge_id.empty()) return;
  auto seq = charge_seq(f.charge_id);
  // (other_charges is empty but for ids not of the ledger's form: no hashing then.)
  if (seq && (m.charges.empty() || m.charges.back().seq < *seq) &&
      (m.other_charges.empty() || !m.other_charges.count(f.charge_id))) {
    m.charges.push_back(ChargeMemo{f.at_ms, *seq, dims});
    return;
  }
  // Any other id (or one out of order): remembered by name, the last one winning.
  if (seq) {
    auto it = std::lower_bound(m.charges.begin(), m.charges.end(), *seq,
                               [](const ChargeMemo& c, std::uint64_t s) { return c.seq < s; });
    if (it != m.charges.end() && it->seq == *seq) {
      *it = ChargeMemo{f.at_ms, *seq, dims};
      return;
    }
  }
  m.other_charges[f.charge_id] = {f.at_ms, dims};
  m.other_order.emplace_back(f.at_ms, f.charge_id);
}

void Rollups::note_listed(AccountRollup& a, std::int64_t at_ms) {
  // Live events come in time order: the first of its day when the last noted is earlier.
  if (a.listed_days.empty() || day_start_ms(a.listed_days.back()) < day_start_ms(at_ms)) {
    a.listed_days.push_back(at_ms);
  }
}

std::optional<std::pair<std::int64_t, Rollups::ChargeDims>> Rollups::refunded_charge(
    const ChargeMemory& m, const Fact& refund) {
  if (!m.other_charges.empty()) {
    if (auto it = m.other_charges.find(refund.charge_id); it != m.other_charges.end()) {
      if (!refund_reaches(it->second.first, refund.at_ms)) return std::nullopt;
      return it->second;
    }
  }
  auto seq = charge_seq(refund.charge_id);
  if (!seq) return std::nullopt;
  auto it = std::lower_bound(m.charges.begin(), m.charges.end(), *seq,
                             [](const ChargeMemo& c, std::uint64_t s) { return c.seq < s; });
  if (it == m.charges.end() || it->seq != *seq || !refund_reaches(it->at_ms, refund.at_ms)) {
    return std::nullopt;
  }
  return std::pair{it->at_ms, it->dims};
}

void Rollups::add(const Fact& f) {
  AccountRollup& a = account_for_write(f.account_id);
  if (!f.imported && event_type_listed(f.type)) note_listed(a, f.at_ms);
  if (f.imported && !f.idempotency_key.empty()) a.imported_keys.emplace(f.idempotency_key, f.at_ms);
  if (is_cycle_split(f.type, f.imported, f.at_ms)) {
    // Each pool's reset names the same instant: kept once. Live events come in time order.
    auto& splits = a.cycle_splits;
    if (splits.empty() || splits.back() < f.at_ms) {
      if (splits.size() == kCycleSplitsPerAccountMax) splits.erase(splits.begin());
      splits.push_back(f.at_ms);
    }
    return;
  }
  const bool spend = is_spend(f.type);
  const bool refund = f.type == EventType::kRefund;
  const bool hit = f.type == EventType::kCacheHit;
  const bool miss = f.has_cache_key && f.kind && pricing::kind_is_integration_call(*f.kind) &&
                    (f.type == EventType::kCharge || f.type == EventType::kHold);
  if (!spend && !refund && !hit && !miss) return;

  const std::uint32_t pool_id = names_.intern(f.pool);
  PoolRollup* pool = nullptr;
  for (PoolRollup& p : a.pools) {
    if (p.pool == pool_id) pool = &p;
  }
  if (pool == nullptr) {
    pool = &a.pools.emplace_back();
    pool->pool = pool_id;
  }
  Cell& cell = (f.imported ? pool->imported : pool->live).at(a.cell_start_ms(f.at_ms));
  auto add_burn = [&](std::int64_t mc) {
    const std::int64_t day = day_start_ms(f.at_ms);
    auto& days = pool->burn_days;
    if (days.empty() || days.back() < day) {
      days.push_back(day);
      pool->burn_mc.push_back(mc);
      return;
    }
    auto it = std::lower_bound(days.begin(), days.end(), day);
    const auto i = it - days.begin();
    if (*it != day) {
      days.insert(it, day);
      pool->burn_mc.insert(pool->burn_mc.begin() + i, 0);
    }
    std::int64_t& burn_mc = pool->burn_mc[static_cast<std::size_t>(i)];
    burn_mc = saturating_add_mc(burn_mc, mc);
  };
  auto add_to = [&](const std::array<std::uint32_t, kDimCount>& ids, std::int64_t credits_mc,
                    std::int64_t count) {
    cell.total.credits_mc = saturating_add_mc(cell.total.credits_mc, credits_mc);
    cell.total.count += count;
    for (std::uint32_t d = 0; d < kDimCount; ++d) {
      Entry& t = cell.entry(entry_key(d, ids[d]));
      t.credits_mc = saturating_add_mc(t.credits_mc, credits_mc);
      t.count += count;
    }
  };
  const std::uint32_t kind = f.kind ? names_.intern(pricing::kind_name(*f.kind)) : 0;
  const std::uint32_t user = names_.intern(f.user_id);
  if (spend) {
    ChargeDims dims{names_.intern(f.file), names_.intern(f.feature), names_.intern(f.model),
                    names_.intern(f.call_site)};
    add_to({kind, user, dims.file, dims.feature, dims.model, dims.call_site}, f.credits_mc, 1);
    if (!f.imported) add_burn(f.credits_mc);
    remember_charge(f.imported ? a.imported_charges : a.live_charges, f, dims);
    if (f.kind == pricing::Kind::kAgentPrompt) {
      if (dims.file != 0) {
        Entry& t = cell.entry(entry_key(kAgentFileTag, dims.file));
        ++t.count;
        t.credits_mc = saturating_add_mc(t.credits_mc, f.credits_mc);
      }
    }
  }
  if (refund) {
    // refunds.h: under the charge it refunds, else under its own metadata (a live
    // refund has none).
    const auto charged = refunded_charge(f.imported ? a.imported_charges : a.live_charges, f);
    const ChargeDims own{names_.intern(f.file), names_.intern(f.feature), names_.intern(f.model),
                         names_.intern(f.call_site)};
    const ChargeDims dims = charged ? charged->second : own;
    // Its charge's day may be deleted before its own (drop_days): remembered to move then.
    if (charged && day_start_ms(charged->first) != day_start_ms(f.at_ms) &&
        (dims.file != own.file || dims.feature != own.feature || dims.model != own.model ||
         dims.call_site != own.call_site)) {
      a.cross_day_refunds.push_back(
          CrossDayRefund{day_start_ms(charged->first), a.cell_start_ms(f.at_ms), f.credits_mc,
                         pool_id, f.imported, f.kind == pricing::Kind::kAgentPrompt, dims, own});
    }
    add_to({kind, user, dims.file, dims.feature, dims.model, dims.call_site}, -f.credits_mc, 0);
    if (!f.imported) add_burn(-f.credits_mc);
    if (f.kind == pricing::Kind::kAgentPrompt && dims.file != 0) {
      std::int64_t& file_mc = cell.entry(entry_key(kAgentFileTag, dims.file)).credits_mc;
      file_mc = saturating_sub_mc(file_mc, f.credits_mc);
    }
  }
  if (hit || miss) {
    const std::uint32_t site = names_.intern(f.call_site);
    CacheEntry* c = nullptr;
    for (CacheEntry& x : cell.cache) {
      if (x.site == site) c = &x;
    }
    if (c == nullptr) c = &cell.cache.emplace_back(CacheEntry{site, {}});
    if (hit) {
      ++c->tally.hits;
      c->tally.saved_mc = saturating_add_mc(c->tally.saved_mc, f.credits_mc);
    }
    if (miss) ++c->tally.misses;
  }
}

// ---- reads ---------------------------------------------------------------------------

const Rollups::AccountRollup* Rollups::account(std::string_view account_id) const {
  const std::uint32_t n = by_id_.find(IdIndex::hash_of(account_id), is_id(account_id));
  return n == IdIndex::kNone ? nullptr : accounts_[n].get();
}

Rollups::AccountRollup& Rollups::account_for_write(std::string_view account_id) {
  const auto [n, added] =
      by_id_.find_or_insert(IdIndex::hash_of(account_id), is_id(account_id), accounts_.size());
  if (added) {
    accounts_.push_back(std::make_unique<AccountRollup>());
    accounts_.back()->account_id = std::string(account_id);
  }
  return *accounts_[n];
}

const Rollups::PoolRollup* Rollups::pool_of(std::string_view account_id,
                                            std::string_view pool) const {
  const AccountRollup* a = account(account_id);
  if (a == nullptr) return nullptr;
  auto id = names_.find(pool);
  if (!id) return nullptr;
  for (const PoolRollup& p : a->pools) {
    if (p.pool == *id) return &p;
  }
  return nullptr;
}

std::optional<std::int64_t> Rollups::first_event_ms(std::string_view account_id) const {
  const AccountRollup* a = account(account_id);
  if (a == nullptr || a->listed_days.empty()) return std::nullopt;
  return a->listed_days.front();
}

bool Rollups::imported_key_seen(std::string_view account_id, std::string_view key) const {
  const AccountRollup* a = account(account_id);
  return a != nullptr && a->imported_keys.count(std::string(key)) > 0;
}

// ---- retention -----------------------------------------------------------------------

namespace {

// The [first, last) index ranges of the sorted `instants` that lie in the sorted `days`.
std::vector<std::pair<std::size_t, std::size_t>> ranges_in_days(
    const std::vector<std::int64_t>& instants, const std::vector<std::int64_t>& days) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  auto from = instants.begin();
  for (const std::int64_t day : days) {
    from = std::lower_bound(from, instants.end(), day);
    auto to = std::lower_bound(from, instants.end(), day + kMsPerDay);
    if (from != to) {
      out.emplace_back(static_cast<std::size_t>(from - instants.begin()),
                       static_cast<std::size_t>(to - instants.begin()));
    }
    from = to;
  }
  return out;
}

// Removes the ranges (sorted, disjoint) from v, keeping the order of the rest.
template <typename T>
void erase_ranges(std::vector<T>& v,
                  const std::vector<std::pair<std::size_t, std::size_t>>& ranges) {
  if (ranges.empty()) return;
  std::size_t write = ranges.front().first;
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    const std::size_t keep_to = r + 1 < ranges.size() ? ranges[r + 1].first : v.size();
    for (std::size_t i = ranges[r].second; i < keep_to; ++i) v[write++] = std::move(v[i]);
  }
  v.erase(v.begin() + static_cast<std::ptrdiff_t>(write), v.end());
}

bool in_days(const std::vector<std::int64_t>& days, std::int64_t at_ms) {
  return std::binary_search(days.begin(), days.end(), day_start_ms(at_ms));
}

}  // namespace

void Rollups::reattribute(AccountRollup& a, const CrossDayRefund& r) {
  PoolRollup* pool = nullptr;
  for (PoolRollup& p : a.pools) {
    if (p.pool == r.pool) pool = &p;
  }
  if (pool == nullptr) return;
  Layer& layer = r.imported ? pool->imported : pool->live;
  auto it = std::lower_bound(layer.starts.begin(), layer.starts.end(), r.cell_start_ms);
  if (it == layer.starts.end() || *it != r.cell_start_ms) return;
  Cell& cell = layer.cells[static_cast<std::size_t>(it - layer.starts.begin())];
  // add(): the refund took its credits off the charge's dimensions; now off its own.
  const std::array<std::pair<Dim, std::array<std::uint32_t, 2>>, 4> moved = {{
      {Dim::kFile, {r.charged.file, r.own.file}},
      {Dim::kFeature, {r.charged.feature, r.own.feature}},
      {Dim::kModel, {r.charged.model, r.own.model}},
      {Dim::kCallSite, {r.charged.call_site, r.own.call_site}},
  }};
  for (const auto& [dim, ids] : moved) {
    if (ids[0] == ids[1]) continue;
    const auto d = static_cast<std::uint32_t>(dim);
    std::int64_t& charged_mc = cell.entry(entry_key(d, ids[0])).credits_mc;
    charged_mc = saturating_add_mc(charged_mc, r.credits_mc);
    std::int64_t& own_mc = cell.entry(entry_key(d, ids[1])).credits_mc;
    own_mc = saturating_sub_mc(own_mc, r.credits_mc);
  }
  if (r.agent_prompt && r.charged.file != r.own.file) {
    if (r.charged.file != 0) {
      std::int64_t& mc = cell.entry(entry_key(kAgentFileTag, r.charged.file)).credits_mc;
      mc = saturating_add_mc(mc, r.credits_mc);
    }
    if (r.own.file != 0) {
      std::int64_t& mc = cell.entry(entry_key(kAgentFileTag, r.own.file)).credits_mc;
      mc = saturating_sub_mc(mc, r.credits_mc);
    }
  }
}

void Rollups::drop_days(const std::vector<std::int64_t>& days) {
  CREDIT_ASSERT(std::is_sorted(days.begin(), days.end()));
  if (days.empty()) return;
  const auto gone = [&](std::int64_t at_ms) { return in_days(days, at_ms); };
  for (const std::unique_ptr<AccountRollup>& owned : accounts_) {
    AccountRollup& a = *owned;
    // Refunds first: a kept refund of a deleted charge moves while its cell is still found
    // by its start (kept cells stay; deleted ones take their refunds with them).
    if (!a.cross_day_refunds.empty()) {
      std::erase_if(a.cross_day_refunds, [&](const CrossDayRefund& r) {
        if (gone(r.cell_start_ms)) return true;
        if (!gone(r.charge_day_ms)) return false;
        reattribute(a, r);
        return true;
      });
    }
    for (PoolRollup& p : a.pools) {
      for (Layer* layer : {&p.live, &p.imported}) {
        const auto ranges = ranges_in_days(layer->starts, days);
        erase_ranges(layer->starts, ranges);
        erase_ranges(layer->cells, ranges);
      }
      const auto burn = ranges_in_days(p.burn_days, days);
      erase_ranges(p.burn_days, burn);
      erase_ranges(p.burn_mc, burn);
    }
    std::erase_if(a.pools, [](const PoolRollup& p) {
      return p.live.starts.empty() && p.imported.starts.empty() && p.burn_days.empty();
    });
    erase_ranges(a.listed_days, ranges_in_days(a.listed_days, days));
    std::erase_if(a.cycle_splits, gone);
    for (ChargeMemory* m : {&a.live_charges, &a.imported_charges}) {
      std::erase_if(m->charges, [&](const ChargeMemo& c) { return gone(c.at_ms); });
      if (m->other_order.empty()) continue;
      std::erase_if(m->other_order, [&](const std::pair<std::int64_t, std::string>& o) {
        if (!gone(o.first)) return false;
        // The name's latest memo may be a later charge of the same id (kept).
        auto it = m->other_charges.find(o.second);
        if (it != m->other_charges.end() && it->second.first == o.first) m->other_charges.erase(it);
        return true;
      });
    }
    std::erase_if(a.imported_keys, [&](const std::pair<const std::string, std::int64_t>& k) {
      return gone(k.second);
    });
  }
}

template <typename Fn>
void Rollups::each_cell(std::string_view account_id, std::string_view pool, TimeRange range,
                        Fn fn) const {
  const PoolRollup* p = pool_of(account_id, pool);
  if (p == nullptr) return;
  for (const Layer* layer : {&p->live, &p->imported}) {
    auto it = std::lower_bound(layer->starts.begin(), layer->starts.end(), range.from_ms);
    for (auto i = static_cast<std::size_t>(it - layer->starts.begin());
         i < layer->starts.size() && layer->starts[i] < range.to_ms; ++i) {
      fn(layer->starts[i], layer->cells[i]);
    }
  }
}

UsageResult Rollups::usage(std::string_view account_id, std::string_view pool, GroupBy group,
                           TimeRange range) const {
  UsageResult out;
  const bool by_time = group == GroupBy::kDay || group == GroupBy::kWeek;
  if (by_time) {
    std::unordered_map<std::string, Tally> rows;
    each_cell(account_id, pool, range, [&](std::int64_t hour, const Cell& cell) {
      out.total_mc = saturating_add_mc(out.total_mc, cell.total.credits_mc);
      out.count += cell.total.count;
      Tally& t = rows[group == GroupBy::kDay ? format_date(hour) : iso_week(hour)];
      t.credits_mc = saturating_add_mc(t.credits_mc, cell.total.credits_mc);
      t.count += cell.total.count;
    });
    for (auto& [k, t] : rows) {
      if (t.count == 0 && t.credits_mc == 0) continue;
      out.rows.push_back(UsageRow{k, t.credits_mc, t.count});
    }
  } else {
    const auto tag = static_cast<std::uint32_t>(group);
    std::unordered_map<std::uint32_t, Tally> rows;
    each_cell(account_id, pool, range, [&](std::int64_t, const Cell& cell) {
      out.total_mc = saturating_add_mc(out.total_mc, cell.total.credits_mc);
      out.count += cell.total.count;
      for (const Entry& e : cell.entries) {
        if (e.key >> kIdBits != tag) continue;
        Tally& t = rows[e.key & kIdMask];
        t.credits_mc = saturating_add_mc(t.credits_mc, e.credits_mc);
        t.count += e.count;
      }
    });
    for (auto& [id, t] : rows) {
      if (t.count == 0 && t.credits_mc == 0) continue;
      out.rows.push_back(UsageRow{names_.name(id), t.credits_mc, t.count});
    }
  }
  sort_usage_rows(out.rows, by_time);
  return out;
}

std::vector<HotFileRow> Rollups::hot_files(std::string_view account_id, std::string_view pool,
                                           TimeRange range, bool by_credits,
                                           std::size_t limit) const {
  std::unordered_map<std::uint32_t, Tally> files;
  each_cell(account_id, pool, range, [&](std::int64_t, const Cell& cell) {
    for (const Entry& e : cell.entries) {
      if (e.key >> kIdBits != kAgentFileTag) continue;
      Tally& t = files[e.key & kIdMask];
      t.credits_mc = saturating_add_mc(t.credits_mc, e.credits_mc);
      t.count += e.count;
    }
  });
  std::vector<HotFileRow> out;
  for (const auto& [f, t] : files) {
    if (t.count > 0) out.push_back(HotFileRow{names_.name(f), t.count, t.credits_mc});
  }
  std::sort(out.begin(), out.end(), [by_credits](const HotFileRow& x, const HotFileRow& y) {
    if (by_credits && x.credits_mc != y.credits_mc) return x.credits_mc > y.credits_mc;
    if (x.turns != y.turns) return x.turns > y.turns;
    if (x.credits_mc != y.credits_mc) return x.credits_mc > y.credits_mc;
    return x.file < y.file;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

CacheStats Rollups::cache_stats(std::string_view account_id, std::string_view pool,
                                TimeRange range) const {
  std::unordered_map<std::uint32_t, CacheTally> sites;
  each_cell(account_id, pool, range, [&](std::int64_t, const Cell& cell) {
    for (const CacheEntry& c : cell.cache) {
      CacheTally& s = sites[c.site];
      s.hits += c.tally.hits;
      s.misses += c.tally.misses;
      s.saved_mc = saturating_add_mc(s.saved_mc, c.tally.saved_mc);
    }
  });
  CacheStats out;
  for (const auto& [site, c] : sites) {
    out.total.hits += c.hits;
    out.total.misses += c.misses;
    out.total.saved_mc = saturating_add_mc(out.total.saved_mc, c.saved_mc);
    out.by_call_site.push_back(CacheSiteRow{names_.name(site), c});
  }
  std::sort(out.by_call_site.begin(), out.by_call_site.end(),
            [](const CacheSiteRow& x, const CacheSiteRow& y) {
              std::int64_t nx = x.tally.hits + x.tally.misses;
              std::int64_t ny = y.tally.hits + y.tally.misses;
              if (nx != ny) return nx > ny;
              return x.call_site < y.call_site;
            });
  return out;
}

std::vector<std::int64_t> Rollups::daily_burn(std::string_view account_id, std::string_view pool,
                                              std::int64_t first_day_ms,
                                              std::int64_t last_day_ms) const {
  std::vector<std::int64_t> out;
  if (last_day_ms < first_day_ms) return out;
  out.assign(static_cast<std::size_t>((last_day_ms - first_day_ms) / kMsPerDay + 1), 0);
  const PoolRollup* p = pool_of(account_id, pool);
  if (p == nullptr) return out;
  auto it = std::lower_bound(p->burn_days.begin(), p->burn_days.end(), first_day_ms);
  for (auto i = static_cast<std::size_t>(it - p->burn_days.begin());
       i < p->burn_days.size() && p->burn_days[i] <= last_day_ms; ++i) {
    out[static_cast<std::size_t>((p->burn_days[i] - first_day_ms) / kMsPerDay)] = p->burn_mc[i];
  }
  return out;
}

BurnWindow Rollups::burn_window(std::string_view account_id, std::string_view pool,
                                std::int64_t today_ms, std::int64_t window_first_ms,
                                std::int64_t window_days) const {
  BurnWindow w;
  const PoolRollup* p = pool_of(account_id, pool);
  if (p == nullptr) return w;
  const std::int64_t window_end_ms = window_first_ms + window_days * kMsPerDay;
  const std::int64_t from = std::min(window_first_ms, today_ms);
  auto it = std::lower_bound(p->burn_days.begin(), p->burn_days.end(), from);
  for (auto i = static_cast<std::size_t>(it - p->burn_days.begin());
       i < p->burn_days.size() && p->burn_days[i] <= std::max(today_ms, window_end_ms - 1); ++i) {
    const std::int64_t d = p->burn_days[i];
    if (d == today_ms) w.today_mc = p->burn_mc[i];
    if (window_days > 0 && d >= window_first_ms && d < window_end_ms)
      w.window_sum_mc = saturating_add_mc(w.window_sum_mc, p->burn_mc[i]);
  }
  return w;
}

}  // namespace credit::analytics
