// src/analytics/rollup.cc
// The per-hour rollups and their reads (see rollup.h for what each event adds).
#include "analytics/rollup.h"

#include <algorithm>

#include "pricing/usage.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

std::string model_of(const Event& e) {
  if (!e.metadata.model.empty()) return e.metadata.model;
  if (e.usage && e.usage->model) return *e.usage->model;
  return {};
}

bool is_spend(const Event& e) {
  return e.type == EventType::kCharge || e.type == EventType::kCapture;
}

void add_to(HourCell& cell, const std::array<std::string, kDimCount>& keys, std::int64_t credits_mc,
            std::int64_t count) {
  cell.total.credits_mc += credits_mc;
  cell.total.count += count;
  for (std::size_t d = 0; d < kDimCount; ++d) {
    Tally& t = cell.by[d][keys[d]];
    t.credits_mc += credits_mc;
    t.count += count;
  }
}

void merge_rows(std::unordered_map<std::string, Tally>& into,
                const std::unordered_map<std::string, Tally>& from) {
  for (const auto& [k, t] : from) {
    Tally& x = into[k];
    x.credits_mc += t.credits_mc;
    x.count += t.count;
  }
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

void Rollups::remember_charge(AccountRollup& a, const Event& e) {
  // Forget charges that can no longer be refunded, so the memory stays one cycle deep.
  while (!a.charge_order.empty() && a.charge_order.front().first + kRefundMemoryMs < e.at_ms) {
    a.charge_dims.erase(a.charge_order.front().second);
    a.charge_order.pop_front();
  }
  if (e.charge_id.empty()) return;
  a.charge_dims[e.charge_id] =
      ChargeDims{e.metadata.file, e.metadata.feature, model_of(e), e.metadata.call_site};
  a.charge_order.emplace_back(e.at_ms, e.charge_id);
}

void Rollups::add(const Event& e) {
  AccountRollup& a = accounts_[e.account_id];
  if (!e.imported && !a.first_live_ms) a.first_live_ms = e.at_ms;
  if (e.imported && !e.idempotency_key.empty()) a.imported_keys.insert(e.idempotency_key);
  const bool spend = is_spend(e);
  const bool refund = e.type == EventType::kRefund;
  const bool hit = e.type == EventType::kCacheHit;
  const bool miss =
      !e.cache_key.empty() && (e.type == EventType::kCharge || e.type == EventType::kHold);
  if (!spend && !refund && !hit && !miss) return;

  PoolRollup& pool = a.pools[e.pool];
  const std::int64_t hour = hour_start_ms(e.at_ms);
  HourCell& cell = (e.imported ? pool.imported : pool.live)[hour];
  const std::string kind = e.kind ? std::string(pricing::kind_name(*e.kind)) : std::string();
  if (spend) {
    std::array<std::string, kDimCount> keys = {
        kind, e.user_id, e.metadata.file, e.metadata.feature, model_of(e), e.metadata.call_site};
    add_to(cell, keys, e.credits.mc(), 1);
    if (!e.imported) {
      pool.live_daily_mc[day_start_ms(e.at_ms)] += e.credits.mc();
      remember_charge(a, e);
    }
    if (e.kind == pricing::Kind::kAgentPrompt) {
      if (!e.metadata.file.empty()) {
        Tally& f = cell.agent_files[e.metadata.file];
        ++f.count;
        f.credits_mc += e.credits.mc();
      }
      std::optional<LoopState>& ls = e.imported ? a.imported_loops : a.live_loops;
      if (!ls) ls.emplace(LoopState{LoopDetector(loop_rules_), {}});
      LoopTurn turn;
      turn.at_ms = e.at_ms;
      turn.credits = e.credits;
      turn.fix = e.metadata.intent == "fix";
      turn.snapshot_id = e.metadata.snapshot_id;
      turn.feature = e.metadata.feature;
      turn.replay_credits = e.credits;
      std::vector<Loop>& found = ls->found;
      ls->detector.add(e.metadata.file, turn, [&found](const Loop& l) { found.push_back(l); });
    }
  }
  if (refund) {
    ChargeDims dims;
    if (e.imported) {
      dims = ChargeDims{e.metadata.file, e.metadata.feature, model_of(e), e.metadata.call_site};
    } else if (auto it = a.charge_dims.find(e.charge_id); it != a.charge_dims.end()) {
      dims = it->second;
    }
    std::array<std::string, kDimCount> keys = {kind,         e.user_id,  dims.file,
                                               dims.feature, dims.model, dims.call_site};
    add_to(cell, keys, -e.credits.mc(), 0);
    if (!e.imported) pool.live_daily_mc[day_start_ms(e.at_ms)] -= e.credits.mc();
    if (e.kind == pricing::Kind::kAgentPrompt && !dims.file.empty()) {
      cell.agent_files[dims.file].credits_mc -= e.credits.mc();
    }
  }
  if (hit) {
    CacheTally& c = cell.cache[e.metadata.call_site];
    ++c.hits;
    c.saved_mc += e.credits.mc();
  }
  if (miss) ++cell.cache[e.metadata.call_site].misses;
}

bool Rollups::has_events(std::string_view account_id) const {
  return accounts_.count(std::string(account_id)) > 0;
}

std::optional<std::int64_t> Rollups::first_event_ms(std::string_view account_id) const {
  auto it = accounts_.find(std::string(account_id));
  if (it == accounts_.end()) return std::nullopt;
  return it->second.first_live_ms;
}

bool Rollups::imported_key_seen(std::string_view account_id, std::string_view key) const {
  auto it = accounts_.find(std::string(account_id));
  return it != accounts_.end() && it->second.imported_keys.count(std::string(key)) > 0;
}

template <typename Fn>
void Rollups::each_cell(std::string_view account_id, std::string_view pool, TimeRange range,
                        Fn fn) const {
  auto a = accounts_.find(std::string(account_id));
  if (a == accounts_.end()) return;
  auto p = a->second.pools.find(std::string(pool));
  if (p == a->second.pools.end()) return;
  for (const auto* layer : {&p->second.live, &p->second.imported}) {
    for (auto it = layer->lower_bound(range.from_ms); it != layer->end() && it->first < range.to_ms;
         ++it) {
      fn(it->first, it->second);
    }
  }
}

UsageResult Rollups::usage(std::string_view account_id, std::string_view pool, GroupBy group,
                           TimeRange range) const {
  UsageResult out;
  std::unordered_map<std::string, Tally> rows;
  const bool by_time = group == GroupBy::kDay || group == GroupBy::kWeek;
  each_cell(account_id, pool, range, [&](std::int64_t hour, const HourCell& cell) {
    out.total_mc += cell.total.credits_mc;
    out.count += cell.total.count;
    if (by_time) {
      std::string key = group == GroupBy::kDay ? format_date(hour) : iso_week(hour);
      Tally& t = rows[key];
      t.credits_mc += cell.total.credits_mc;
      t.count += cell.total.count;
    } else {
      merge_rows(rows, cell.by[static_cast<std::size_t>(group)]);
    }
  });
  for (auto& [k, t] : rows) {
    if (t.count == 0 && t.credits_mc == 0) continue;
    out.rows.push_back(UsageRow{k, t.credits_mc, t.count});
  }
  std::sort(out.rows.begin(), out.rows.end(), [by_time](const UsageRow& x, const UsageRow& y) {
    if (!by_time && x.credits_mc != y.credits_mc) return x.credits_mc > y.credits_mc;
    return x.key < y.key;
  });
  return out;
}

std::vector<HotFileRow> Rollups::hot_files(std::string_view account_id, std::string_view pool,
                                           TimeRange range, bool by_credits,
                                           std::size_t limit) const {
  std::unordered_map<std::string, Tally> files;
  each_cell(account_id, pool, range,
            [&](std::int64_t, const HourCell& cell) { merge_rows(files, cell.agent_files); });
  std::vector<HotFileRow> out;
  for (const auto& [f, t] : files) {
    if (t.count > 0) out.push_back(HotFileRow{f, t.count, t.credits_mc});
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
  std::unordered_map<std::string, CacheTally> sites;
  each_cell(account_id, pool, range, [&](std::int64_t, const HourCell& cell) {
    for (const auto& [site, c] : cell.cache) {
      CacheTally& s = sites[site];
      s.hits += c.hits;
      s.misses += c.misses;
      s.saved_mc += c.saved_mc;
    }
  });
  CacheStats out;
  for (const auto& [site, c] : sites) {
    out.total.hits += c.hits;
    out.total.misses += c.misses;
    out.total.saved_mc += c.saved_mc;
    out.by_call_site.push_back(CacheSiteRow{site, c});
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
  auto a = accounts_.find(std::string(account_id));
  if (a == accounts_.end()) return out;
  auto p = a->second.pools.find(std::string(pool));
  if (p == a->second.pools.end()) return out;
  const auto& daily = p->second.live_daily_mc;
  for (auto it = daily.lower_bound(first_day_ms); it != daily.end() && it->first <= last_day_ms;
       ++it) {
    out[static_cast<std::size_t>((it->first - first_day_ms) / kMsPerDay)] = it->second;
  }
  return out;
}

std::vector<Loop> Rollups::loops(std::string_view account_id, TimeRange range) const {
  std::vector<Loop> out;
  auto a = accounts_.find(std::string(account_id));
  if (a == accounts_.end()) return out;
  for (const auto* ls : {&a->second.live_loops, &a->second.imported_loops}) {
    if (!*ls) continue;
    std::vector<Loop> all = (*ls)->found;
    // Decide the open windows on a copy: the stream goes on afterwards.
    LoopDetector open = (*ls)->detector;
    open.finish([&all](const Loop& l) { all.push_back(l); });
    for (Loop& l : all) {
      if (l.first_at_ms >= range.from_ms && l.first_at_ms < range.to_ms)
        out.push_back(std::move(l));
    }
  }
  std::sort(out.begin(), out.end(), [](const Loop& x, const Loop& y) {
    if (x.first_at_ms != y.first_at_ms) return x.first_at_ms < y.first_at_ms;
    return x.file + "\x1f" + x.feature < y.file + "\x1f" + y.feature;
  });
  return out;
}

}  // namespace credit::analytics
