// src/server/analytics_routes.cc
// The analytics routes, the import, the event sink and the webhook sender
// (see analytics_routes.h).
#include "server/analytics_routes.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <compare>
#include <cstdio>
#include <cstring>
#include <deque>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "analytics/burn.h"
#include "analytics/event_json.h"
#include "analytics/forecast.h"
#include "base/json_writer.h"
#include "ledger/event_codec.h"
#include "ledger/limits.h"
#include "server/crypto.h"
#include "server/json_reader.h"
#include "server/list_page.h"
#include "time/time.h"

namespace credit::server {
namespace {

using analytics::Analytics;
using ledger::Event;

std::string credits(std::int64_t mc) {
  return format_credits(Millicredits::from_mc(mc));
}

std::string fraction(double v) {
  return json::fraction_text(v);
}

HttpResponse bad_param(std::string_view param, std::string message) {
  Error e(ErrorCode::kInvalidRequest, std::move(message));
  e.with_string("param", param);
  return error_response(e);
}

HttpResponse not_found_account() {
  return error_response(Error(ErrorCode::kAccountNotFound, "no such account"));
}

// Optional RFC 3339 query parameter.
std::optional<std::int64_t> time_param(const HttpRequest& req, std::string_view name,
                                       HttpResponse* bad) {
  if (!req.has_query(name)) return std::nullopt;
  auto t = parse_rfc3339_bound(req.query_param(name));
  if (!t)
    *bad = bad_param(name, std::string(name) + " must be an RFC 3339 instant from 1970 to 9999");
  return t;
}

// A decimal query parameter with up to 3 decimals, as thousandths (money/ parses it).
std::optional<std::int64_t> milli_param(const HttpRequest& req, std::string_view name,
                                        std::int64_t def, std::int64_t min_milli,
                                        std::int64_t max_milli, HttpResponse* bad) {
  if (!req.has_query(name)) return def;
  auto m = parse_credits(req.query_param(name));
  if (!m.ok() || m->mc() < min_milli || m->mc() > max_milli) {
    *bad = bad_param(name, fmt::format("{} must be a number from {} to {} (at most 3 decimals)",
                                       name, credits(min_milli), credits(max_milli)));
    return std::nullopt;
  }
  return m->mc();
}

// Everything the read routes share: the account's view at now and the pool asked for.
struct Ctx {
  ledger::AccountView view;
  const ledger::PoolView* pool = nullptr;
  std::int64_t now_ms = 0;
};

std::optional<Ctx> context(EngineState& st, const std::string& id, const HttpRequest& req,
                           HttpResponse* out) {
  auto v = st.ledger.view(id, st.now_ms);
  if (!v.ok()) {
    *out = not_found_account();
    return std::nullopt;
  }
  Ctx c;
  c.view = std::move(*v);
  c.now_ms = std::max(st.now_ms, st.ledger.now_ms());
  std::string_view want = req.query_param("pool");
  // An empty `pool=` names no pool (api-notes, "Lists"): not the default.
  if (req.has_query("pool") && want.empty()) {
    *out = bad_param("pool", std::string(kNoSuchPoolMessage));
    return std::nullopt;
  }
  for (const auto& p : c.view.pools) {
    if (want.empty() || p.name == want) {
      c.pool = &p;
      break;
    }
  }
  if (c.pool == nullptr) {
    *out = bad_param("pool", std::string(kNoSuchPoolMessage));
    return std::nullopt;
  }
  return c;
}

// [from, to): the ends given snapped to the hour, an end left out the current cycle's
// (analytics::query_range). A `to` before `from` is refused as given, before snapping, as
// the events route refuses it: from=10:40&to=10:10 would snap to [10:00, 11:00) and pass
// otherwise.
std::optional<analytics::TimeRange> range_of(const HttpRequest& req, const Ctx& c,
                                             HttpResponse* bad) {
  auto from = time_param(req, "from", bad);
  if (req.has_query("from") && !from) return std::nullopt;
  auto to = time_param(req, "to", bad);
  if (req.has_query("to") && !to) return std::nullopt;
  const std::int64_t from_ms = from.value_or(c.view.cycle_start_ms);
  const std::int64_t to_ms = to.value_or(c.view.cycle_end_ms);
  if (to_ms < from_ms) {
    *bad = bad_param("to", std::string(kToBeforeFromMessage));
    return std::nullopt;
  }
  return analytics::query_range(from, to, {c.view.cycle_start_ms, c.view.cycle_end_ms});
}

void range_json(json::Writer& w, const analytics::TimeRange& r) {
  w.key("from").string(format_rfc3339(r.from_ms)).key("to").string(format_rfc3339(r.to_ms));
}

void nullable(json::Writer& w, std::string_view s) {
  if (s.empty())
    w.null();
  else
    w.string(s);
}

// ---- events --------------------------------------------------------------------------

struct EventFilter {
  std::optional<std::int64_t> from_ms, to_ms;
  std::optional<ledger::EventType> type;
  std::optional<pricing::Kind> kind;
  std::string user_id;
  std::string pool;  // "" for every pool; not in the head, so checked on the decoded event
  // Every filtered field but the pool is in the head of the encoding: a page decodes only
  // the events it returns (and, with a pool, the other pools' events among them).
  bool match(const ledger::EventHead& e) const {
    // API.md's list of types: the internal ones ("account", "close") are never listed.
    if (!ledger::event_type_listed(e.type)) return false;
    if (from_ms && e.at_ms < *from_ms) return false;
    if (to_ms && e.at_ms >= *to_ms) return false;
    if (type && e.type != *type) return false;
    if (kind && e.kind != *kind) return false;
    if (!user_id.empty() && e.user_id != user_id) return false;
    return true;
  }
};

// A CSV cell: quoted when it holds a separator, a quote or a line break; a text starting
// with = + - @ gets a leading ' so that a spreadsheet does not run it as a formula.
void csv_cell(std::string& out, std::string_view v, bool text = true) {
  std::string s;
  if (text && !v.empty() && std::strchr("=+-@\t\r", v[0]) != nullptr) s += '\'';
  s += v;
  if (s.find_first_of(",\"\r\n") == std::string::npos) {
    out += s;
    return;
  }
  out += '"';
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
}

constexpr std::string_view kCsvHead[] = {"seq",
                                         "at",
                                         "account_id",
                                         "user_id",
                                         "type",
                                         "kind",
                                         "pool",
                                         "credits",
                                         "available_after",
                                         "drawn_from",
                                         "refused_by",
                                         "priced_by",
                                         "usage.model",
                                         "usage.input_tokens",
                                         "usage.output_tokens",
                                         "usage.files_read",
                                         "usage.lines_emitted",
                                         "usage.lines_changed",
                                         "usage.size",
                                         "usage.count",
                                         "usage.duration_ms",
                                         "usage.records",
                                         "metadata.file",
                                         "metadata.feature",
                                         "metadata.model",
                                         "metadata.snapshot_id",
                                         "metadata.call_site",
                                         "metadata.intent",
                                         "metadata.request_hash"};
constexpr std::string_view kCsvTail[] = {"cache_key", "idempotency_key", "rate_card_version",
                                         "imported",  "hold_id",         "charge_id",
                                         "grant_id",  "refund_id",       "object",
                                         "plan",      "previous_plan",   "proration_usd_cents",
                                         "reason"};

void csv_events(std::string& out, const std::vector<const Event*>& events) {
  std::set<std::string> extra;
  for (const Event* e : events) {
    for (const auto& [k, v] : e->metadata.extra) extra.insert(k);
  }
  bool first = true;
  auto head = [&](std::string_view h) {
    if (!first) out += ',';
    first = false;
    csv_cell(out, h, false);
  };
  for (auto h : kCsvHead) head(h);
  for (const auto& k : extra) head("metadata." + k);
  for (auto h : kCsvTail) head(h);
  out += "\r\n";
  for (const Event* e : events) {
    first = true;
    auto cell = [&](std::string_view v, bool text = true) {
      if (!first) out += ',';
      first = false;
      csv_cell(out, v, text);
    };
    auto num = [&](const std::optional<std::int64_t>& v) {
      cell(v ? std::to_string(*v) : "", false);
    };
    const pricing::Usage u = e->usage.value_or(pricing::Usage{});
    std::string drawn;
    for (const auto& d : e->drawn_from) {
      if (!drawn.empty()) drawn += ';';
      drawn += d.source + "=" + format_credits(d.credits);
    }
    cell(std::to_string(e->seq), false);
    cell(format_rfc3339(e->at_ms), false);
    cell(e->account_id);
    cell(e->user_id);
    cell(ledger::event_type_name(e->type));
    cell(e->kind ? pricing::kind_name(*e->kind) : "");
    cell(e->pool);
    cell(format_credits(e->credits), false);
    cell(e->available_after ? format_credits(*e->available_after) : "", false);
    cell(drawn);
    cell(e->refused_by);
    cell(e->priced_by);
    cell(u.model.value_or(""));
    num(u.input_tokens);
    num(u.output_tokens);
    num(u.files_read);
    num(u.lines_emitted);
    num(u.lines_changed);
    cell(u.size.value_or(""));
    num(u.count);
    num(u.duration_ms);
    num(u.records);
    const ledger::Metadata& m = e->metadata;
    for (const std::string* v : {&m.file, &m.feature, &m.model, &m.snapshot_id, &m.call_site,
                                 &m.intent, &m.request_hash}) {
      cell(*v);
    }
    for (const auto& k : extra) {
      auto it = std::find_if(m.extra.begin(), m.extra.end(),
                             [&](const auto& kv) { return kv.first == k; });
      cell(it == m.extra.end() ? "" : it->second);
    }
    cell(e->cache_key);
    cell(e->idempotency_key);
    // Empty where the JSON form has null (events that were not priced by a card).
    cell(e->rate_card_version != 0 ? std::to_string(e->rate_card_version) : "", false);
    cell(e->imported ? "true" : "false", false);
    for (const std::string* v : {&e->hold_id, &e->charge_id, &e->grant_id, &e->refund_id,
                                 &e->object, &e->plan, &e->previous_plan}) {
      cell(*v);
    }
    // Empty where the JSON form has none (every event but a priced plan change or pack).
    cell(e->proration_usd_cents != 0 ? std::to_string(e->proration_usd_cents) : "", false);
    cell(e->reason);
    out += "\r\n";
  }
}

HttpResponse events_route(EngineState& st, const std::string& id, const HttpRequest& req) {
  const ledger::Account* account = st.ledger.find(id);
  if (account == nullptr) return not_found_account();
  HttpResponse bad;
  EventFilter f;
  // Every analytics route takes `pool` (API.md). Left out, the list keeps every pool's
  // events (and those of no pool: resets, plan changes).
  if (req.has_query("pool")) {
    f.pool = std::string(req.query_param("pool"));
    if (std::none_of(account->pools.begin(), account->pools.end(),
                     [&](const ledger::PoolState& p) { return p.name == f.pool; })) {
      return bad_param("pool", std::string(kNoSuchPoolMessage));
    }
  }
  f.from_ms = time_param(req, "from", &bad);
  if (req.has_query("from") && !f.from_ms) return bad;
  f.to_ms = time_param(req, "to", &bad);
  if (req.has_query("to") && !f.to_ms) return bad;
  if (f.from_ms && f.to_ms && *f.to_ms < *f.from_ms)
    return bad_param("to", std::string(kToBeforeFromMessage));
  if (req.has_query("type")) {
    f.type = ledger::parse_event_type(req.query_param("type"));
    if (!f.type || !ledger::event_type_listed(*f.type)) {
      return bad_param("type", "unknown event type");
    }
  }
  if (req.has_query("kind")) {
    f.kind = pricing::parse_kind(req.query_param("kind"));
    if (!f.kind) return bad_param("kind", "unknown kind");
  }
  f.user_id = std::string(req.query_param("user_id"));
  // A user id is 1-128 characters (API.md): an empty one names no user, as `type=` names
  // no type.
  if (req.has_query("user_id") && f.user_id.empty()) {
    return bad_param("user_id", "user_id must be 1 to 128 printable ASCII characters");
  }
  const std::optional<std::size_t> asked = list_limit(req);
  if (!asked) return error_response(bad_limit());
  const std::size_t limit = *asked;
  std::uint64_t after = 0;
  if (req.has_query("after")) {
    auto v = json_int64(req.query_param("after"));
    if (!v || *v < 0) return error_response(bad_cursor());
    after = static_cast<std::uint64_t>(*v);
  }
  std::string_view format = req.has_query("format") ? req.query_param("format") : "json";
  if (format != "json" && format != "ndjson" && format != "csv") {
    return bad_param("format", "format is json, ndjson or csv");
  }
  std::vector<Event> page;
  std::optional<std::uint64_t> next;
  const std::span<const EventIndex::Entry> list = st.events.events_of(id);
  auto it = std::upper_bound(
      list.begin(), list.end(), after,
      [](std::uint64_t seq, const EventIndex::Entry& entry) { return seq < entry.seq; });
  std::size_t scanned = 0;
  ledger::EventHead head;
  for (; it != list.end(); ++it) {
    if (++scanned > kEventsScannedPerPageMax || page.size() == limit) {
      // More may follow: the cursor is the last event looked at.
      next = page.size() == limit ? page.back().seq : (it - 1)->seq;
      break;
    }
    // An event whose day retention deleted is not listed.
    if (!st.events.decode_head(*it, head) || !f.match(head)) continue;
    if (!st.events.decode(*it, page.emplace_back()) ||
        (!f.pool.empty() && page.back().pool != f.pool)) {
      page.pop_back();
    }
  }
  HttpResponse h;
  if (format == "json") {
    json::Writer w(h.body);
    w.begin_object().key("events").begin_array();
    for (const Event& e : page) {
      w.raw("");
      analytics::append_event_json(h.body, e);
    }
    w.end_array().key("next");
    if (next)
      w.string(std::to_string(*next));
    else
      w.null();
    w.end_object();
    return h;
  }
  if (next) h.headers.emplace_back("Creditd-Next-Cursor", std::to_string(*next));
  if (format == "ndjson") {
    h.content_type = "application/x-ndjson";
    for (const Event& e : page) {
      analytics::append_event_json(h.body, e);
      h.body += '\n';
    }
    return h;
  }
  h.content_type = "text/csv; charset=utf-8";
  std::vector<const Event*> rows;
  rows.reserve(page.size());
  for (const Event& e : page) rows.push_back(&e);
  csv_events(h.body, rows);
  return h;
}

// ---- usage, hot files, cache stats, loops -------------------------------------------

HttpResponse usage_route(EngineState& st, Analytics& a, const std::string& id,
                         const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  std::string_view g = req.has_query("group_by") ? req.query_param("group_by") : "kind";
  auto group = analytics::parse_group_by(g);
  if (!group)
    return bad_param("group_by",
                     "group_by is kind, user, file, feature, model, call_site, day or week");
  auto r = range_of(req, *c, &out);
  if (!r) return out;
  analytics::UsageResult u;
  a.sync();
  {
    std::lock_guard lock(a.mu());
    u = a.rollups().usage(id, c->pool->name, *group, *r);
  }
  json::Writer w(out.body);
  w.begin_object();
  range_json(w, *r);
  w.key("pool").string(c->pool->name).key("group_by").string(g);
  w.key("total").raw(credits(u.total_mc)).key("count").integer(u.count).key("rows").begin_array();
  // Shares are fractions from 0 to 1 (API.md). A refund is booked to the group (and
  // hour) it happened in, so a group can be net negative (a day of refunds of the day
  // before's charges): such a group's share is 0, and the shares of the others are of the
  // sum of the positive groups, so they still add up to 1. `total` stays the net sum.
  std::int64_t positive_mc = 0;
  for (const auto& row : u.rows) {
    positive_mc = saturating_add_mc(positive_mc, std::max<std::int64_t>(row.credits_mc, 0));
  }
  for (const auto& row : u.rows) {
    w.begin_object().key("key");
    nullable(w, row.key);
    w.key("credits").raw(credits(row.credits_mc)).key("count").integer(row.count);
    double share = positive_mc > 0
                       ? static_cast<double>(std::max<std::int64_t>(row.credits_mc, 0)) /
                             static_cast<double>(positive_mc)
                       : 0.0;
    w.key("share").raw(fraction(std::clamp(share, 0.0, 1.0))).end_object();
  }
  w.end_array().end_object();
  return out;
}

HttpResponse hot_files_route(EngineState& st, Analytics& a, const std::string& id,
                             const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  const std::optional<std::size_t> asked = list_limit(req, kHotFilesLimitDefault);
  if (!asked) return error_response(bad_limit());
  const std::size_t limit = *asked;
  std::string_view order = req.has_query("order_by") ? req.query_param("order_by") : "turns";
  if (order != "turns" && order != "credits")
    return bad_param("order_by", "order_by is turns or credits");
  auto r = range_of(req, *c, &out);
  if (!r) return out;
  std::vector<analytics::HotFileRow> rows;
  a.sync();
  {
    std::lock_guard lock(a.mu());
    rows = a.rollups().hot_files(id, c->pool->name, *r, order == "credits", limit);
  }
  json::Writer w(out.body);
  w.begin_object();
  range_json(w, *r);
  w.key("order_by").string(order).key("rows").begin_array();
  for (const auto& row : rows) {
    w.begin_object().key("file").string(row.file).key("turns").integer(row.turns);
    w.key("credits").raw(credits(row.credits_mc)).end_object();
  }
  w.end_array().end_object();
  return out;
}

void cache_tally_json(json::Writer& w, const analytics::CacheTally& t) {
  w.key("hits").integer(t.hits).key("misses").integer(t.misses);
  std::int64_t n = t.hits + t.misses;
  w.key("hit_rate")
      .raw(fraction(n > 0 ? static_cast<double>(t.hits) / static_cast<double>(n) : 0.0));
  w.key("saved").raw(credits(t.saved_mc));
}

HttpResponse cache_stats_route(EngineState& st, Analytics& a, const std::string& id,
                               const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  auto r = range_of(req, *c, &out);
  if (!r) return out;
  analytics::CacheStats s;
  a.sync();
  {
    std::lock_guard lock(a.mu());
    s = a.rollups().cache_stats(id, c->pool->name, *r);
  }
  json::Writer w(out.body);
  w.begin_object();
  range_json(w, *r);
  cache_tally_json(w, s.total);
  w.key("by_call_site").begin_array();
  for (const auto& site : s.by_call_site) {
    w.begin_object().key("call_site");
    nullable(w, site.call_site);
    cache_tally_json(w, site.tally);
    w.end_object();
  }
  w.end_array().end_object();
  return out;
}

// ---- burn, forecast, alerts ----------------------------------------------------------

analytics::BurnReport burn_of(Analytics& a, const std::string& id, const ledger::AccountView& view,
                              const ledger::PoolView& pool, std::int64_t now_ms,
                              const analytics::BurnParams& params) {
  std::vector<std::int64_t> series;
  analytics::BurnDays days;
  a.sync();
  {
    std::lock_guard lock(a.mu());
    days =
        analytics::burn_days(now_ms, view.cycle_start_ms, a.rollups().first_event_ms(id), params);
    series = a.rollups().daily_burn(id, pool.name, days.series_first_ms, days.today_ms);
  }
  return analytics::burn_report(days, series, now_ms, view.cycle_end_ms, pool.available.mc(),
                                params);
}

HttpResponse burn_route(EngineState& st, Analytics& a, const std::string& id,
                        const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  analytics::AlertRules rules = a.alerts().rules(id);
  analytics::BurnReport b = burn_of(a, id, c->view, *c->pool, c->now_ms, rules.burn);
  json::Writer w(out.body);
  w.begin_object().key("pool").string(c->pool->name).key("days").begin_array();
  for (const auto& d : b.days) {
    w.begin_object()
        .key("date")
        .string(format_date(d.day_ms))
        .key("credits")
        .raw(credits(d.credits_mc))
        .end_object();
  }
  w.end_array();
  w.key("today").raw(credits(b.today_mc));
  w.key("trailing_mean").raw(b.trailing_mean_mc ? credits(*b.trailing_mean_mc) : "null");
  w.key("window_days").integer(b.window_days);
  w.key("ratio").raw(b.ratio ? fraction(*b.ratio) : "null");
  w.key("factor").raw(credits(rules.burn.factor_milli));
  w.key("spike").boolean(b.spike).key("projected_exhaustion");
  if (b.projected_exhaustion_ms)
    w.string(format_rfc3339(*b.projected_exhaustion_ms));
  else
    w.null();
  // The instant the report is of (the server's clock, manual or not): "today" is its day.
  w.key("now").string(format_rfc3339(c->now_ms));
  w.end_object();
  return out;
}

HttpResponse forecast_route(EngineState& st, Analytics& a, const std::string& id,
                            const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  auto rate = milli_param(req, "hourly_rate", analytics::kHourlyRateUsdMilliDefault, 1,
                          1'000'000'000, &out);
  if (!rate) return out;
  auto hours = milli_param(req, "break_even_hours", analytics::kBreakEvenHoursMilliDefault, 0,
                           10'000'000, &out);
  if (!hours) return out;
  analytics::AlertRules rules = a.alerts().rules(id);
  analytics::BurnReport b = burn_of(a, id, c->view, *c->pool, c->now_ms, rules.burn);
  analytics::ForecastInputs in;
  // The other pools' burn over the same window: the advice covers every pool (forecast.h).
  for (const ledger::PoolView& p : c->view.pools) {
    if (&p == c->pool) continue;
    const analytics::BurnReport o = burn_of(a, id, c->view, p, c->now_ms, rules.burn);
    in.other_pools.push_back({p.name, o.window_sum_mc, p.available.mc()});
  }
  in.now_ms = c->now_ms;
  in.cycle_start_ms = c->view.cycle_start_ms;
  in.cycle_end_ms = c->view.cycle_end_ms;
  in.used_mc = c->pool->used.mc();
  in.allowance_mc = c->pool->allowance.mc();
  in.extra_mc = c->pool->extra.mc();
  in.available_mc = c->pool->available.mc();
  in.window_days = b.window_days;
  in.window_sum_mc = b.window_sum_mc;
  in.plan_id = c->view.plan;
  in.pool = c->pool->name;
  in.hourly_rate_usd_milli = *rate;
  in.break_even_hours_milli = *hours;
  analytics::Forecast f = analytics::forecast(in, st.ledger.catalog());
  json::Writer w(out.body);
  w.begin_object().key("pool").string(c->pool->name).key("plan").string(c->view.plan);
  w.key("used").raw(credits(in.used_mc)).key("allowance").raw(credits(in.allowance_mc));
  w.key("extra").raw(credits(in.extra_mc)).key("available").raw(credits(in.available_mc));
  w.key("trailing_mean").raw(b.trailing_mean_mc ? credits(*b.trailing_mean_mc) : "null");
  w.key("need").raw(f.need_mc ? credits(*f.need_mc) : "null");
  w.key("utilization").raw(f.utilization ? fraction(*f.utilization) : "null");
  w.key("runs_out_at");
  if (f.runs_out_at_ms)
    w.string(format_rfc3339(*f.runs_out_at_ms));
  else
    w.null();
  w.key("cycle_end").string(format_rfc3339(c->view.cycle_end_ms));
  w.key("advice").begin_object().key("action").string(analytics::advice_action_name(f.action));
  w.key("plan").string(f.plan);
  w.key("price_delta_usd")
      .raw(fmt::format("{}", static_cast<double>(f.price_delta_usd_cents) / 100.0));
  w.key("engineering_hours").raw(analytics::hours_text(f.engineering_hours));
  w.key("sized_correctly").boolean(f.sized_correctly).key("reason").string(f.reason).end_object();
  w.end_object();
  return out;
}

// The pools of an account as Ledger::view projects them to at_ms, without the copy when
// the projection changes nothing: no cycle boundary, open hold or grant expiry at or
// before at_ms (Ledger::advance's next instant is after it), so the state as it is is
// the projection. Otherwise (rare) the view itself.
std::optional<analytics::DueAccount> due_account(const ledger::Ledger& ledger,
                                                 const std::string& id, std::int64_t at_ms) {
  const ledger::Account* acc = ledger.find(id);
  if (acc == nullptr || acc->closed) return std::nullopt;
  const std::int64_t now = std::max(at_ms, ledger.now_ms());
  analytics::DueAccount d;
  d.account_id = id;
  d.now_ms = now;
  bool as_is = acc->open_holds == 0 && acc->cycle_end_ms > now;
  for (const auto& p : acc->pools) {
    for (const auto& b : p.buckets) {
      if (!b.ended && b.kind != ledger::BucketKind::kAllowance && b.expires_at_ms <= now)
        as_is = false;
    }
  }
  if (as_is) {
    d.cycle_start_ms = acc->cycle_start_ms;
    d.cycle_end_ms = acc->cycle_end_ms;
    for (const auto& p : acc->pools) {
      const ledger::PoolView v = ledger::Ledger::pool_view(*acc, p, now);
      d.pools.push_back(
          {v.name, v.used.mc(), v.allowance.mc(), v.extra.mc(), v.available.mc(), {}});
    }
    return d;
  }
  auto view = ledger.view(id, at_ms);
  if (!view.ok() || view->closed) return std::nullopt;
  d.cycle_start_ms = view->cycle_start_ms;
  d.cycle_end_ms = view->cycle_end_ms;
  for (const auto& p : view->pools)
    d.pools.push_back({p.name, p.used.mc(), p.allowance.mc(), p.extra.mc(), p.available.mc(), {}});
  return d;
}

// Takes the balances of the accounts that had events (on the ledger thread, in a read
// job after their batch) and queues them for the analytics worker to judge.
void evaluate_due(EngineState& st, Analytics& a) {
  std::vector<analytics::DueAccount> due;
  for (analytics::Analytics::Due& due_at : a.take_due()) {
    if (auto d = due_account(st.ledger, due_at.account_id, due_at.at_ms)) {
      d->rules = a.alerts().params(due_at.account_id);
      for (analytics::PoolStep& s : due_at.steps) {
        for (analytics::DuePool& p : d->pools) {
          if (p.pool == s.pool) p.steps.push_back(s.step);
        }
      }
      due.push_back(std::move(*d));
    }
  }
  a.queue_evaluation(std::move(due));
}

HttpResponse alerts_route(EngineState& st, Analytics& a, const std::string& id,
                          const HttpRequest& req) {
  const ledger::Account* account = st.ledger.find(id);
  if (account == nullptr) return not_found_account();
  // Every analytics route takes `pool`, default the plan's first pool (API.md): a pool's
  // alerts only (found by an audit: left out, the list kept every pool's). An alert that
  // names no pool (none does today) is listed with every pool's.
  std::string pool(req.query_param("pool"));
  if (req.has_query("pool") &&
      std::none_of(account->pools.begin(), account->pools.end(),
                   [&](const ledger::PoolState& p) { return p.name == pool; })) {
    return bad_param("pool", std::string(kNoSuchPoolMessage));
  }
  if (!req.has_query("pool") && !account->pools.empty()) pool = account->pools.front().name;
  // The sink schedules its evaluation as a read job, which may be queued behind this one:
  // judged here, so the alerts of every batch answered before this request are listed.
  evaluate_due(st, a);
  a.sync();  // evaluations still queued record their alerts first
  const std::optional<std::size_t> asked = list_limit(req);
  if (!asked) return error_response(bad_limit());
  const std::size_t limit = *asked;
  // Alerts are listed in the order they fired; the cursor is the id of the last one shown.
  const std::vector<analytics::Alert> alerts = a.alerts().alerts_of(id);
  auto it = alerts.begin();
  if (req.has_query("after")) {
    const std::string_view after = req.query_param("after");
    it = std::find_if(alerts.begin(), alerts.end(),
                      [&](const analytics::Alert& al) { return al.alert_id == after; });
    // Not one of the listed alerts (garbage, or one of the oldest, dropped since).
    if (it == alerts.end()) return error_response(bad_cursor());
    ++it;
  }
  HttpResponse out;
  json::Writer w(out.body);
  w.begin_object().key("alerts").begin_array();
  std::size_t n = 0;
  const analytics::Alert* last = nullptr;
  bool more = false;
  for (; it != alerts.end(); ++it) {
    if (!it->pool.empty() && it->pool != pool) continue;
    if (n == limit) {
      more = true;
      break;
    }
    w.raw("");
    analytics::append_alert_json(out.body, *it);
    last = &*it;
    ++n;
  }
  end_page(w, more, more ? std::string_view(last->alert_id) : std::string_view());
  return out;
}

std::string rules_json(const analytics::AlertRules& r) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("burn_spike").begin_object().key("factor").raw(credits(r.burn.factor_milli));
  w.key("window_days").integer(r.burn.window_days).end_object();
  w.key("thresholds").begin_array();
  for (auto t : r.thresholds_percent) w.integer(t);
  w.end_array().key("webhook_url");
  nullable(w, r.webhook_url);
  w.key("webhook_secret_set").boolean(!r.webhook_secret.empty()).end_object();
  return out;
}

// PUT alert-rules: fields left out keep their value; null clears the webhook fields.
Result<analytics::AlertRules> parse_rules(std::string_view body, analytics::AlertRules r,
                                          bool allow_local) {
  auto parsed = thread_json_parser().parse_object(body.empty() ? std::string_view("{}") : body);
  if (!parsed.ok()) return parsed.error();
  ObjectReader o(*parsed);
  auto spike = o.optional_object("burn_spike");
  if (!spike.ok()) return spike.error();
  if (*spike) {
    ObjectReader& s = **spike;
    auto factor = s.optional_number_text("factor");
    if (!factor.ok()) return factor.error();
    if (*factor) {
      auto m = parse_credits(**factor);
      if (!m.ok() || m->mc() < analytics::kSpikeFactorMilliMin ||
          m->mc() > analytics::kSpikeFactorMilliMax) {
        return s.invalid(
            "factor", fmt::format("factor must be {} to {}", analytics::kSpikeFactorMilliMin / 1000,
                                  analytics::kSpikeFactorMilliMax / 1000));
      }
      r.burn.factor_milli = m->mc();
    }
    auto window = s.optional_int64("window_days", 1, analytics::kBurnWindowDaysMax);
    if (!window.ok()) return window.error();
    if (*window) r.burn.window_days = **window;
    if (Status u = s.no_unknown_fields(); !u.ok()) return u.error();
  }
  auto ths = o.optional_array("thresholds");
  if (!ths.ok()) return ths.error();
  if (*ths) {
    std::vector<std::int64_t> list;
    for (auto [k, v] : **ths) {
      auto n = v.is_number() ? json_whole_number(v.number_text()) : std::nullopt;
      if (!n || *n < 1 || *n > analytics::kThresholdPercentMax ||
          std::find(list.begin(), list.end(), *n) != list.end() ||
          list.size() >= analytics::kThresholdsMax) {
        return o.invalid("thresholds",
                         "thresholds are up to 10 distinct whole percentages from 1 to 1000");
      }
      list.push_back(*n);
    }
    std::sort(list.begin(), list.end());
    r.thresholds_percent = std::move(list);
  }
  if (auto url = o.any("webhook_url")) {
    if (url->is_null()) {
      r.webhook_url.clear();
    } else if (!url->is_string() || url->string_value().size() > analytics::kWebhookUrlCharsMax) {
      return o.invalid("webhook_url", "webhook_url must be a URL string");
    } else if (auto problem = webhook_url_problem(url->string_value(), allow_local)) {
      return o.invalid("webhook_url", *problem);
    } else {
      r.webhook_url = std::string(url->string_value());
    }
  }
  if (auto secret = o.any("webhook_secret")) {
    if (secret->is_null()) {
      r.webhook_secret.clear();
    } else if (!secret->is_string() || secret->string_value().empty() ||
               secret->string_value().size() > analytics::kWebhookSecretCharsMax) {
      return o.invalid("webhook_secret", "webhook_secret must be 1 to 256 characters");
    } else {
      r.webhook_secret = std::string(secret->string_value());
    }
  }
  if (Status u = o.no_unknown_fields(); !u.ok()) return u.error();
  if (!r.webhook_url.empty() && r.webhook_secret.empty()) {
    return o.invalid("webhook_secret", "a webhook needs a webhook_secret to sign its deliveries");
  }
  return r;
}

// ---- import --------------------------------------------------------------------------

std::string reply_reason(const ledger::Reply& r) {
  auto at = r.body.find("\"code\":\"");
  if (at == std::string::npos) return "status " + std::to_string(r.status);
  auto end = r.body.find('"', at + 8);
  std::string reason = r.body.substr(at + 8, end - at - 8);
  auto m = r.body.find("\"message\":\"");
  if (m != std::string::npos)
    reason += ": " + r.body.substr(m + 11, r.body.find('"', m + 11) - m - 11);
  return reason;
}

bool is_import_path(std::string_view path) {
  return path == "/v1/admin/import" || path == "/v1/admin/import/";
}

// The idempotency keys that an account's events already carry, for mode=analytics's
// duplicate check (DESIGN.md: a line with the same account and idempotency key as one of
// the account's events, live or imported, is refused). Read from the engine's event index
// (every retained event, live or imported), per import and lazily: the first chunk with a
// keyed line of an account gathers that account's keys, as 128-bit hashes in a sorted
// vector (16 bytes a key, as much as the index's entry for the event). Memory: at most
// kImportKnownKeysMax hashes are kept for the accounts of one import (the sets of the
// other accounts are dropped to make room, and gathered again if a later chunk needs
// them); an account with more events than that is not kept but scanned again for each
// chunk, keeping only the chunk's keys found. The scan reads kImportKeyScanEventsPerRead
// events per read job, so the ledger thread is never held for a whole account.
// (Keys of this import's earlier chunks are in the rollups: Rollups::imported_key_seen;
// with mode=apply, in the event index, read again for each chunk: forget().)
class AccountKeys {
 public:
  explicit AccountKeys(Engine& engine) : engine_(engine) {}

  // Readies has() for the keyed lines of `lines` whose account is in `known`. false: the
  // engine refused a read (its queue is full).
  bool prepare(const std::set<std::string>& known, const std::vector<Event>& lines) {
    chunk_found_.clear();
    // The chunk's accounts, and its keys by account for those without a kept set.
    std::set<std::string_view> in_chunk;
    std::map<std::string, std::vector<KeyHash>> wanted;
    for (const Event& e : lines) {
      if (e.idempotency_key.empty() || !known.count(e.account_id)) continue;
      in_chunk.insert(e.account_id);
      if (!kept_.count(e.account_id)) wanted[e.account_id].push_back(hash_of(e.idempotency_key));
    }
    for (auto& [account, keys] : wanted) {
      std::sort(keys.begin(), keys.end());
      std::vector<KeyHash> found;
      bool keep = true;
      for (std::size_t next = 0;;) {
        auto slice = read_slice(account, next);
        if (!slice) return false;
        if (next == 0) keep = make_room(slice->events, in_chunk);
        for (const KeyHash& h : slice->hashes) {
          if (keep || std::binary_search(keys.begin(), keys.end(), h)) found.push_back(h);
        }
        next = slice->next;
        if (next >= slice->events) break;
      }
      std::sort(found.begin(), found.end());
      found.erase(std::unique(found.begin(), found.end()), found.end());
      if (keep) {
        held_ += found.size();
        kept_[account] = std::move(found);
      } else {
        chunk_found_[account] = std::move(found);
      }
    }
    return true;
  }

  // Drops what is kept of the account's keys: the next prepare() reads them again from the
  // event index (after mode=apply gave the account events, whose keys are there).
  void forget(const std::string& account) {
    if (auto it = kept_.find(account); it != kept_.end()) {
      held_ -= it->second.size();
      kept_.erase(it);
    }
  }

  // Does one of the account's events carry this key? (After prepare() for its chunk.)
  bool has(const std::string& account, std::string_view key) const {
    const std::vector<KeyHash>* set = nullptr;
    if (auto it = kept_.find(account); it != kept_.end()) set = &it->second;
    if (auto it = chunk_found_.find(account); it != chunk_found_.end()) set = &it->second;
    return set != nullptr && std::binary_search(set->begin(), set->end(), hash_of(key));
  }

 private:
  struct KeyHash {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    auto operator<=>(const KeyHash&) const = default;
  };
  static KeyHash hash_of(std::string_view key) {
    const XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
    return KeyHash{h.low64, h.high64};
  }
  struct Slice {
    std::vector<KeyHash> hashes;
    std::size_t events = 0;  // the account's indexed events when the slice was read
    std::size_t next = 0;    // the index of the event after the slice
  };
  // Whether a set of `events` keys can be kept: the sets of accounts that are not in this
  // chunk are dropped for it when needed; false when it still does not fit.
  bool make_room(std::size_t events, const std::set<std::string_view>& in_chunk) {
    if (events > kImportKnownKeysMax) return false;
    for (auto it = kept_.begin(); held_ + events > kImportKnownKeysMax && it != kept_.end();) {
      if (in_chunk.count(it->first)) {
        ++it;
        continue;
      }
      held_ -= it->second.size();
      it = kept_.erase(it);
    }
    return held_ + events <= kImportKnownKeysMax;
  }

  // The key hashes of the account's indexed events [from, from + kImportKeyScanEventsPerRead),
  // read on the ledger thread; nullopt when the engine refused the read.
  std::optional<Slice> read_slice(const std::string& account, std::size_t from) {
    auto p = std::make_shared<std::promise<Slice>>();
    auto f = p->get_future();
    if (!engine_.read([p, account, from](EngineState& st) {
          const std::span<const EventIndex::Entry> list = st.events.events_of(account);
          Slice slice;
          slice.events = list.size();
          slice.next = std::min(list.size(), from + kImportKeyScanEventsPerRead);
          Event e;
          for (std::size_t i = from; i < slice.next; ++i) {
            // An event whose day retention deleted is gone: so is its key.
            if (st.events.decode(list[i], e) && !e.idempotency_key.empty())
              slice.hashes.push_back(hash_of(e.idempotency_key));
          }
          p->set_value(std::move(slice));
        })) {
      return std::nullopt;
    }
    return f.get();
  }

  Engine& engine_;
  std::unordered_map<std::string, std::vector<KeyHash>> kept_;  // sorted, by account
  std::size_t held_ = 0;                                        // hashes in kept_
  // This chunk's keys found among the events of accounts too large to keep.
  std::unordered_map<std::string, std::vector<KeyHash>> chunk_found_;
};

// One import's lines, from the body's bytes to the ledger or the rollups a chunk at a time,
// and its answer. Lives on the import worker; memory: one unfinished line (the splitter),
// one chunk of parsed lines (its room reserved once, so it never grows by copying), and
// the first errors.
class Importer {
 public:
  Importer(Engine& engine, Analytics& analytics, const Clock& clock, bool apply)
      : engine_(engine),
        analytics_(analytics),
        clock_(clock),
        card_(engine.rate_card()),
        apply_(apply) {
    events_.reserve(kImportChunkLinesMax);
    lines_.reserve(kImportChunkLinesMax);
  }

  // The next bytes of the body.
  void feed(std::string_view bytes) {
    splitter_.feed(bytes, [this](std::uint64_t n, std::string_view text, bool too_long) {
      add_line(n, text, too_long);
    });
  }

  // The end of the body: the last chunk, then the answer. With `over_limit_bytes` the
  // body was cut there: if no chunk was imported yet, the request is refused whole (413);
  // else a line begun but not ended is not taken, the lines read before it are imported,
  // and the answer says where the import stopped (an error on the first line not read,
  // and `limit_bytes`).
  HttpResponse finish(std::optional<std::size_t> over_limit_bytes = std::nullopt) {
    if (over_limit_bytes && !chunk_loaded_ && !failed_) {
      // Nothing taken yet: refused whole, as a body with its length over the limit is
      // (API.md: a 413 changes nothing).
      Error e(ErrorCode::kBodyTooLarge,
              "the body is larger than " + std::to_string(*over_limit_bytes) + " bytes");
      e.with("limit_bytes", std::to_string(*over_limit_bytes));
      return error_response(e);
    }
    std::uint64_t cut_line = 0;
    if (over_limit_bytes) {
      cut_line = splitter_.drop_partial();
      if (cut_line == 0) cut_line = splitter_.lines() + 1;
    } else {
      splitter_.finish([this](std::uint64_t n, std::string_view text, bool too_long) {
        add_line(n, text, too_long);
      });
    }
    if (!failed_ && !events_.empty()) load_chunk();
    if (failed_) return std::move(*failed_);
    if (over_limit_bytes) {
      reject(cut_line, "the body is over the import limit of " + std::to_string(*over_limit_bytes) +
                           " bytes: this line and the rest were not read");
    }
    keep_first_errors();
    std::string out;
    json::Writer w(out);
    w.begin_object().key("imported").integer(static_cast<std::int64_t>(imported_));
    if (over_limit_bytes)
      w.key("limit_bytes").integer(static_cast<std::int64_t>(*over_limit_bytes));
    w.key("rejected").integer(static_cast<std::int64_t>(rejected_)).key("errors").begin_array();
    for (const auto& e : errors_) {
      w.begin_object()
          .key("line")
          .integer(static_cast<std::int64_t>(e.line))
          .key("reason")
          .string(e.reason)
          .end_object();
    }
    w.end_array().end_object();
    return json_response(200, std::move(out));
  }

 private:
  void add_line(std::uint64_t n, std::string_view text, bool too_long) {
    if (failed_) return;  // the answer is decided; the rest of the body is read and dropped
    if (too_long) return reject(n, "the line is longer than 1 MiB");
    if (analytics::is_blank_line(text)) return;
    Event& e = events_.emplace_back();
    if (Status parsed = analytics::parse_event_json(text, e); !parsed.ok()) {
      events_.pop_back();
      std::string reason = std::move(parsed.error().message);
      if (auto p = parsed.error().detail("param"); !p.empty())
        reason += " (" + std::string(p) + ")";
      return reject(n, std::move(reason));
    }
    if (!valid_id(e.account_id)) {
      events_.pop_back();
      return reject(n, "account_id is not a valid id");
    }
    // The types API.md lists; "account" and "close" are the ledger's own records.
    if (!ledger::event_type_listed(e.type)) {
      events_.pop_back();
      return reject(n, "type " + std::string(ledger::event_type_name(e.type)) +
                           " is not an event type of API.md (create accounts with "
                           "POST /v1/accounts)");
    }
    // API.md: idempotency keys are 1-128 printable ASCII characters.
    if (e.idempotency_key.size() > ledger::kIdempotencyKeyBytesMax ||
        !std::all_of(e.idempotency_key.begin(), e.idempotency_key.end(),
                     [](char c) { return c >= 0x20 && c <= 0x7e; })) {
      events_.pop_back();
      return reject(n, "idempotency_key must be 1 to 128 printable ASCII characters");
    }
    // mode=analytics refuses only what DESIGN.md names (unknown accounts, duplicates) and
    // malformed lines: an instant after the clock's now is another system's history all the
    // same (a manual clock starts at 1970). mode=apply refuses it as backfill_out_of_order.
    if (e.pool.empty() && e.kind) e.pool = std::string(card_.pool(*e.kind));
    e.seq = 0;
    lines_.push_back(n);
    chunk_bytes_ += text.size();
    if (events_.size() >= kImportChunkLinesMax || chunk_bytes_ >= kImportChunkBytesMax) {
      load_chunk();
    }
  }

  void reject(std::uint64_t line, std::string reason) {
    ++rejected_;
    errors_.push_back({line, std::move(reason)});
    // Errors come out of line order (a chunk's are found after it is sorted by time), so
    // twice the kept number are gathered before the later ones are dropped.
    if (errors_.size() >= 2 * kImportErrorsMax) keep_first_errors();
  }

  void keep_first_errors() {
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const auto& a, const auto& b) { return a.line < b.line; });
    if (errors_.size() > kImportErrorsMax) errors_.resize(kImportErrorsMax);
  }

  void load_chunk() {
    chunk_loaded_ = true;
    if (apply_) {
      apply_chunk();
    } else {
      add_chunk();
    }
    events_.clear();
    lines_.clear();
    chunk_bytes_ = 0;
    first_chunk_ = false;
  }

  // An answer for the whole request, given when the body ends: what this import already
  // loaded stays, so the error says how much that was.
  void fail(Error e) {
    e.with("imported", std::to_string(imported_));
    failed_ = error_response(e);
  }

  // mode=analytics: unknown accounts and duplicates refused, the rest appended durably.
  void add_chunk() {
    // Which accounts exist (one read on the ledger thread).
    std::set<std::string> ids;
    for (const Event& e : events_) ids.insert(e.account_id);
    // The duplicate check reads the rollups: after the sink's catch-up (Engine::
    // read_caught_up), and with what it queued applied.
    auto known_p = std::make_shared<std::promise<std::optional<std::set<std::string>>>>();
    auto known_f = known_p->get_future();
    if (!engine_.read_caught_up(
            [ids = std::move(ids), known_p](EngineState& st) {
              std::set<std::string> known;
              for (const auto& id : ids) {
                if (st.ledger.find(id) != nullptr) known.insert(id);
              }
              known_p->set_value(std::move(known));
            },
            [known_p] { known_p->set_value(std::nullopt); })) {
      return fail(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
    }
    const std::optional<std::set<std::string>> found = known_f.get();
    if (!found) return fail(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
    const std::set<std::string>& known = *found;
    // The keys of the accounts' own events (live and imported), from the event index.
    if (!account_keys_.prepare(known, events_)) {
      return fail(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
    }
    analytics_.sync();
    // Events before the first retained day (whole UTC days, as the event log deletes).
    constexpr std::int64_t kDayMs = 86'400'000;
    const std::int64_t today_ms = clock_.now_ms() - clock_.now_ms() % kDayMs;
    const std::int64_t retained_from_ms = today_ms - engine_.events_retain_days() * kDayMs;
    // This chunk's (account, key) pairs: the earlier chunks' are in the rollups already,
    // and the accounts' own events' in account_keys_.
    std::set<std::pair<std::string, std::string>> keys;
    std::size_t accepted = 0;  // the accepted lines move to the front, in body order
    {
      std::lock_guard lock(analytics_.mu());
      for (std::size_t i = 0; i < events_.size(); ++i) {
        Event& e = events_[i];
        if (!known.count(e.account_id)) {
          reject(lines_[i], "unknown account " + e.account_id);
          continue;
        }
        if (e.at_ms < retained_from_ms) {
          // The event log would delete it at its next pass: refused rather than kept
          // for a while and then lost.
          reject(lines_[i], "older than the event retention of " +
                                std::to_string(engine_.events_retain_days()) + " days (before " +
                                format_rfc3339(retained_from_ms) + ")");
          continue;
        }
        if (!e.idempotency_key.empty() &&
            (account_keys_.has(e.account_id, e.idempotency_key) ||
             analytics_.rollups().imported_key_seen(e.account_id, e.idempotency_key) ||
             !keys.insert({e.account_id, e.idempotency_key}).second)) {
          reject(lines_[i], "duplicate: this account already has an event with idempotency_key " +
                                e.idempotency_key);
          continue;
        }
        e.imported = true;
        if (accepted != i) events_[accepted] = std::move(e);
        ++accepted;
      }
    }
    events_.resize(accepted);
    // The rollups take an account's imported events in time order (regression loops are
    // runs of consecutive turns): within a chunk that is this sort; a body in time order
    // (an export is) keeps it across chunks.
    std::stable_sort(events_.begin(), events_.end(),
                     [](const Event& a, const Event& b) { return a.at_ms < b.at_ms; });
    if (events_.empty()) return;
    // One logged op: durable, numbered by the ledger, listed by the events route, kept in
    // the event log, and fed to the rollups like any event (imported ones touch no
    // balance, threshold or webhook). Not durable, so not imported: this chunk and the
    // rest of the body can be sent again.
    // Logged a slice at a time, each waited for: the events in flight stay few.
    for (std::size_t from = 0; from < events_.size(); from += kImportEventsPerLogMax) {
      const std::size_t to = std::min(events_.size(), from + kImportEventsPerLogMax);
      ImportEventsOp slice;
      slice.events.assign(std::make_move_iterator(events_.begin() + from),
                          std::make_move_iterator(events_.begin() + to));
      auto done_p = std::make_shared<std::promise<std::vector<ledger::Reply>>>();
      auto done_f = done_p->get_future();
      std::vector<Op> ops;
      ops.emplace_back(std::move(slice));
      if (!engine_.submit(std::move(ops), [done_p](std::vector<ledger::Reply>&& r) {
            done_p->set_value(std::move(r));
          })) {
        return fail(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
      }
      const std::vector<ledger::Reply> replies = done_f.get();
      if (replies.size() != 1 || replies[0].status >= 300) {
        return fail(Error(ErrorCode::kStorageFailed, "the imported events could not be logged"));
      }
      imported_ += to - from;
    }
    // The next chunk's duplicate check reads the rollups: wait until this chunk is in
    // them. A job queued now runs after the ledger thread handed the chunk's events to
    // the sink (the log thread passes them on before it answers); sync() applies them.
    auto seen_p = std::make_shared<std::promise<void>>();
    auto seen_f = seen_p->get_future();
    if (engine_.read([seen_p](EngineState&) { seen_p->set_value(); })) seen_f.wait();
    analytics_.sync();
  }

  // Commands with the index in events_ of their line, in time order.
  using Commands = std::vector<std::pair<std::size_t, ledger::Command>>;

  // mode=apply: each charge or capture line becomes a charge at its own instant, in time
  // order.
  void apply_chunk() {
    // The chunk's lines in time order (lines of one instant in body order).
    std::vector<std::size_t> order(events_.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [this](std::size_t a, std::size_t b) {
      return events_[a].at_ms < events_[b].at_ms;
    });
    Commands cmds;
    for (std::size_t i : order) {
      Event& e = events_[i];
      // A capture moved its credits like a charge: taken over as one. The other types are
      // what the ledger makes itself (holds, resets, expiries, rejections) or name the
      // other system's ids (refunds, voids): not applied, and said so line by line.
      if (e.type != ledger::EventType::kCharge && e.type != ledger::EventType::kCapture) {
        reject(lines_[i], "only charge and capture lines can be applied (this line is a " +
                              std::string(ledger::event_type_name(e.type)) + ")");
        continue;
      }
      if (!e.kind) {
        reject(lines_[i], "kind is required");
        continue;
      }
      if (e.usage) {
        if (Status v = card_.validate(*e.kind, *e.usage); !v.ok()) {
          reject(lines_[i], "usage: " + v.error().message);
          continue;
        }
      }
      // Applied as a charge, it draws from the pool the rate card names for its kind: a
      // line that says another is refused, not moved silently.
      if (!e.pool.empty() && e.pool != card_.pool(*e.kind)) {
        reject(lines_[i], "pool: the rate card charges " +
                              std::string(pricing::kind_name(*e.kind)) + " to the " +
                              std::string(card_.pool(*e.kind)) + " pool, not " + e.pool);
        continue;
      }
      // Applied as a charge, the line takes a charge's rules for its cache key (API.md).
      if (!e.cache_key.empty() && !valid_id(e.cache_key)) {
        reject(lines_[i], id_rule("cache_key"));
        continue;
      }
      cmds.emplace_back(i, charge_command(e));
    }
    if (cmds.empty()) return;
    const std::int64_t now = clock_.now_ms();
    const std::int64_t logged = engine_.last_logged_ms();
    if (first_chunk_) {
      // The whole request is refused, as it was before imports were streamed.
      const std::int64_t first = events_[cmds.front().first].at_ms;
      const std::int64_t last = events_[cmds.back().first].at_ms;
      if (first < logged || last > now) {
        Error e(ErrorCode::kBackfillOutOfOrder,
                first < logged
                    ? "a line is before the ledger's last logged instant " + format_rfc3339(logged)
                    : "a line is after the clock's now " + format_rfc3339(now));
        e.with_string("at", format_rfc3339(first < logged ? first : last));
        failed_ = error_response(e);
        return;
      }
    } else {
      // A later chunk: the lines before what is applied already, or in the future, alone.
      const std::int64_t floor = std::max(applied_through_ms_, logged);
      std::erase_if(cmds, [&](const auto& c) {
        const std::int64_t at = events_[c.first].at_ms;
        if (at < floor) {
          reject(lines_[c.first], "backfill_out_of_order: the line is before " +
                                      format_rfc3339(floor) + ", the last instant already applied");
          return true;
        }
        if (at > now) {
          reject(lines_[c.first],
                 "backfill_out_of_order: the line is after the clock's now " + format_rfc3339(now));
          return true;
        }
        return false;
      });
    }
    // Duplicates (DESIGN.md: a line with the account and idempotency key of one of the
    // account's events is refused): the ledger's table answers a key of the last 24 hours
    // only, so the account's events themselves are read (the event index), and this
    // chunk's lines between them.
    std::set<std::string> accounts;
    for (const auto& c : cmds) accounts.insert(events_[c.first].account_id);
    if (!account_keys_.prepare(accounts, events_)) {
      return fail(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
    }
    std::set<std::pair<std::string, std::string>> chunk_keys;
    std::erase_if(cmds, [&](const auto& c) {
      const Event& e = events_[c.first];
      if (account_keys_.has(e.account_id, e.idempotency_key) ||
          !chunk_keys.insert({e.account_id, e.idempotency_key}).second) {
        reject(lines_[c.first],
               "duplicate: this account already has an event with idempotency_key " +
                   e.idempotency_key);
        return true;
      }
      return false;
    });
    submit(cmds);
    for (const auto& account : accounts) account_keys_.forget(account);
  }

  // The ledger charge of a line; a line without an idempotency key gets one from its content.
  ledger::Command charge_command(Event& e) const {
    std::string canon = "charge:" + e.account_id + ":";
    canon += '\x1f';
    analytics::append_event_json(canon, e);
    if (e.idempotency_key.empty()) e.idempotency_key = "import:" + sha256_hex(canon).substr(0, 32);
    ledger::Command c;
    c.idem.has_key = true;
    c.idem.key = e.idempotency_key;
    c.idem.scope_key_hash = hash128(e.account_id, e.idempotency_key);
    c.idem.request_hash = hash128("request", canon);
    ledger::Charge ch;
    ch.account_id = e.account_id;
    ch.user_id = e.user_id;
    ch.kind = *e.kind;
    ch.pool = std::string(card_.pool(*e.kind));
    ch.amount = e.credits;
    ch.priced_by_usage = false;
    ch.rate_card_version = card_.version();
    ch.usage = e.usage;
    ch.metadata = e.metadata;
    ch.cache_key = e.cache_key;  // kept with the event: the audit finds repeats by it
    c.body = std::move(ch);
    c.imported = true;
    return c;
  }

  // One ledger batch per instant (at most kImportBatchOpsMax ops), in time order.
  void submit(Commands& cmds) {
    using Replies = std::vector<ledger::Reply>;
    struct InFlight {
      std::vector<std::size_t> lines;  // indexes into events_
      std::future<Replies> replies;
    };
    std::deque<InFlight> flight;
    auto settle = [&](InFlight& f) {
      Replies replies = f.replies.get();
      for (std::size_t i = 0; i < f.lines.size(); ++i) {
        const ledger::Reply& r = replies[i];
        const std::size_t at = f.lines[i];
        if (r.status < 300 && !r.replayed) {
          ++imported_;
        } else if (r.replayed) {
          reject(lines_[at], "duplicate: idempotency_key " + events_[at].idempotency_key +
                                 " was applied before");
        } else {
          reject(lines_[at], reply_reason(r));
        }
      }
    };
    for (std::size_t i = 0; i < cmds.size();) {
      const std::int64_t at = events_[cmds[i].first].at_ms;
      std::size_t j = i;
      std::vector<Op> ops;
      InFlight f;
      while (j < cmds.size() && ops.size() < kImportBatchOpsMax &&
             events_[cmds[j].first].at_ms == at) {
        f.lines.push_back(cmds[j].first);
        ops.push_back(std::move(cmds[j].second));
        ++j;
      }
      auto p = std::make_shared<std::promise<Replies>>();
      f.replies = p->get_future();
      if (!engine_.submit_at(at, std::move(ops),
                             [p](Replies&& r) { p->set_value(std::move(r)); })) {
        for (std::size_t l : f.lines) reject(lines_[l], "overloaded: the server is busy");
      } else {
        applied_through_ms_ = std::max(applied_through_ms_, at);
        flight.push_back(std::move(f));
      }
      while (flight.size() >= kImportBatchesInFlightMax) {
        settle(flight.front());
        flight.pop_front();
      }
      i = j;
    }
    while (!flight.empty()) {
      settle(flight.front());
      flight.pop_front();
    }
  }

  Engine& engine_;
  Analytics& analytics_;
  const Clock& clock_;
  const pricing::RateCard& card_;
  const bool apply_;
  AccountKeys account_keys_{engine_};
  analytics::NdjsonSplitter splitter_;
  std::vector<Event> events_;         // the chunk's parsed lines, in body order
  std::vector<std::uint64_t> lines_;  // events_[i]'s line number
  std::size_t chunk_bytes_ = 0;       // the text bytes of the chunk's lines
  bool first_chunk_ = true;
  bool chunk_loaded_ = false;  // a chunk was imported (applied): nothing can be refused whole
  std::int64_t applied_through_ms_ = std::numeric_limits<std::int64_t>::min();
  std::uint64_t imported_ = 0;
  std::uint64_t rejected_ = 0;
  std::vector<analytics::LineError> errors_;  // the first by line once keep_first_errors() ran
  std::optional<HttpResponse> failed_;        // the whole request's answer, when decided early
};

}  // namespace

// The queue between an import's HTTP session (write, finish and abort, on an I/O thread)
// and its worker (take): body pieces up to kImportQueuedBytesMax, then back-pressure.
class ImportSink final : public BodySink {
 public:
  enum class Next { kPiece, kEnd, kAborted };

  bool write(std::string_view bytes, const Resume& resume) override {
    std::lock_guard lock(mu_);
    if (aborted_) return true;
    pieces_.emplace_back(bytes);
    queued_bytes_ += bytes.size();
    cv_.notify_one();
    if (queued_bytes_ < kImportQueuedBytesMax) return true;
    resume_ = resume;
    return false;
  }

  // The import's answer counted and timed as every handled request's is (Api::timed).
  void set_timed(std::function<Responder(Responder)> timed) { timed_ = std::move(timed); }

  void finish(Responder respond) override {
    Responder counted = timed_ ? timed_(std::move(respond)) : std::move(respond);
    std::lock_guard lock(mu_);
    respond_ = std::move(counted);
    finished_ = true;
    cv_.notify_one();
  }

  // An import applies its chunks as they come: over the limit, it answers what it did.
  bool answers_over_limit() const override { return true; }
  void finish_over_limit(std::size_t limit_bytes, Responder respond) override {
    {
      std::lock_guard lock(mu_);
      over_limit_bytes_ = limit_bytes;
    }
    finish(std::move(respond));
  }
  std::optional<std::size_t> over_limit_bytes() {
    std::lock_guard lock(mu_);
    return over_limit_bytes_;
  }

  void abort() override {
    Resume dropped;  // destroyed after the lock is released: it may hold the last session
    std::lock_guard lock(mu_);
    aborted_ = true;
    pieces_.clear();
    queued_bytes_ = 0;
    dropped = std::exchange(resume_, Resume());
    cv_.notify_one();
  }

  // Worker: waits for the next piece (moved into `piece`), the end of the body, or an abort.
  Next take(std::string& piece) {
    Resume resume;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return aborted_ || finished_ || !pieces_.empty(); });
      if (aborted_) return Next::kAborted;
      if (pieces_.empty()) return Next::kEnd;
      piece = std::move(pieces_.front());
      pieces_.pop_front();
      queued_bytes_ -= piece.size();
      // Half empty before the session reads on, so it is not woken for every piece.
      if (queued_bytes_ <= kImportQueuedBytesMax / 2) resume = std::exchange(resume_, Resume());
    }
    if (resume) resume();
    return Next::kPiece;
  }

  // Worker, after kEnd: the answer.
  void respond(HttpResponse&& res) {
    Responder respond;
    {
      std::lock_guard lock(mu_);
      respond = std::move(respond_);
    }
    respond(std::move(res));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;  // under mu_, as the other members
  std::size_t queued_bytes_ = 0;
  Resume resume_;  // set while the session waits for room
  Responder respond_;
  std::function<Responder(Responder)> timed_;
  bool finished_ = false;
  bool aborted_ = false;
  std::optional<std::size_t> over_limit_bytes_;  // finish_over_limit
};

// ---- public --------------------------------------------------------------------------

void attach_analytics(Engine& engine, Analytics& analytics) {
  // A new UTC day moves the burn window: accounts are judged again without an event
  // (Analytics::mark_new_day), once the sink has every event of the start.
  engine.set_tick([&engine, &analytics](EngineState& st) {
    if (engine.sink_caught_up() && analytics.mark_new_day(st.now_ms)) evaluate_due(st, analytics);
  });
  engine.set_event_sink(
      [&engine, &analytics](const std::vector<Event>& events, bool more_behind) {
        // The catch-up after a start: the accounts stay due until its last slice, so each
        // is judged once, on the rollups with every event.
        if (!analytics.on_events(events)) return;
        if (more_behind) return analytics.unschedule();
        if (!engine.read([&analytics](EngineState& st) { evaluate_due(st, analytics); }))
          analytics.unschedule();
      },
      [&analytics] { return analytics.has_room(); });
  // Days the event log deleted leave the rollups behind the events fed before them.
  engine.set_retention_sink([&analytics](const std::vector<std::int64_t>& day_starts_ms) {
    analytics.on_days_deleted(day_starts_ms);
  });
}

AnalyticsRoute make_analytics_routes(Engine& engine, Analytics& analytics,
                                     bool allow_local_webhooks) {
  return [&engine, &analytics, allow_local_webhooks](const HttpRequest& req, const std::string& id,
                                                     const std::string& route, const Auth& auth,
                                                     Responder& respond) -> bool {
    using Fn = HttpResponse (*)(EngineState&, Analytics&, const std::string&, const HttpRequest&);
    static const std::map<std::string, Fn, std::less<>> kGets = {
        {"usage", usage_route},       {"hot-files", hot_files_route},     {"burn", burn_route},
        {"forecast", forecast_route}, {"cache-stats", cache_stats_route},
    };
    if (!reaches(auth, id)) return false;  // the core answered 403 already
    auto shared = std::make_shared<Responder>(respond);
    auto busy = [shared] {
      (*shared)(error_response(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
    };
    // What reads the rollups or the alerts waits for the sink's catch-up after a start
    // (Engine::read_caught_up); the events route reads the event index, whole from the start.
    auto run = [&](std::function<HttpResponse(EngineState&)> fn, bool needs_sink = true) {
      auto answer = [shared, fn = std::move(fn)](EngineState& st) { (*shared)(fn(st)); };
      if (!(needs_sink ? engine.read_caught_up(std::move(answer), busy)
                       : engine.read(std::move(answer)))) {
        busy();
      }
      return true;
    };
    if (req.method == "GET") {
      auto q = std::make_shared<HttpRequest>(req);
      if (auto it = kGets.find(route); it != kGets.end()) {
        Fn fn = it->second;
        return run([fn, q, id, &analytics](EngineState& st) { return fn(st, analytics, id, *q); });
      }
      if (route == "events")
        return run([q, id](EngineState& st) { return events_route(st, id, *q); }, false);
      if (route == "alerts") {
        return run(
            [q, id, &analytics](EngineState& st) { return alerts_route(st, analytics, id, *q); });
      }
      if (route == "alert-rules") {
        return run([id, &analytics](EngineState& st) {
          if (st.ledger.find(id) == nullptr) return not_found_account();
          return json_response(200, rules_json(analytics.alerts().rules(id)));
        });
      }
      return false;
    }
    if (req.method == "PUT" && route == "alert-rules") {
      // Read keys may set their own account's rules (DESIGN.md section 5).
      std::string body = req.body;
      return run([id, body, &engine, &analytics, allow_local_webhooks](EngineState& st) {
        const ledger::Account* account = st.ledger.find(id);
        if (account == nullptr) return not_found_account();
        auto rules = parse_rules(body, analytics.alerts().rules(id), allow_local_webhooks);
        if (!rules.ok()) return error_response(rules.error());
        // API.md: a closed account's later mutations get 409.
        if (account->closed) return error_response(ledger::account_closed_error());
        if (Status s = analytics.alerts().set_rules(id, *rules); !s.ok())
          return error_response(s.error());
        // Judged under the new rules now, as the next start would judge it (found by an
        // audit: a threshold already passed fired only after a restart, dated before the
        // rules). During a start's catch-up the catch-up's own end judges every account.
        if (engine.sink_caught_up()) {
          if (auto d = due_account(st.ledger, id, st.now_ms)) {
            d->rules = analytics.alerts().params(id);
            std::vector<analytics::DueAccount> due;
            due.push_back(std::move(*d));
            analytics.queue_evaluation(std::move(due));
          }
        }
        return json_response(200, rules_json(*rules));
      });
    }
    return false;
  };
}

ImportingHandler::ImportingHandler(Api& api, Engine& engine, Analytics& analytics,
                                   const Clock& clock, ApiOptions options)
    : api_(api),
      engine_(engine),
      analytics_(analytics),
      clock_(clock),
      options_(std::move(options)) {}

ImportingHandler::~ImportingHandler() {
  std::unique_lock lock(active_mu_);
  active_cv_.wait(lock, [&] { return active_ == 0; });
}

void ImportingHandler::handle(HttpRequest&& req, Responder respond) {
  if (!is_import_path(req.path)) return api_.handle(std::move(req), std::move(respond));
  // The HTTP server streams imports (stream_body); a caller with the whole body hands it
  // over in one piece.
  auto sink = start_import(req);
  if (!sink.ok()) return respond(error_response(sink.error()));
  (*sink)->write(req.body, [] {});
  (*sink)->finish(std::move(respond));
}

Result<std::shared_ptr<BodySink>> ImportingHandler::stream_body(const HttpRequest& head) {
  if (!is_import_path(head.path)) return std::shared_ptr<BodySink>();
  auto sink = start_import(head);
  if (!sink.ok()) return sink.error();
  return std::shared_ptr<BodySink>(std::move(*sink));
}

Result<std::shared_ptr<ImportSink>> ImportingHandler::start_import(const HttpRequest& head) {
  auto auth = authenticate(engine_, options_, head.authorization);
  if (!auth) return Error(ErrorCode::kUnauthorized, "a valid bearer key is required");
  if (head.method != "POST") return Error(ErrorCode::kNotFound, "no such route");
  if (auth->role != Role::kAdmin)
    return Error(ErrorCode::kForbidden, std::string(kForbiddenMessage));
  std::string_view mode = head.has_query("mode") ? head.query_param("mode") : "analytics";
  if (mode != "analytics" && mode != "apply") {
    Error e(ErrorCode::kInvalidRequest, "mode is analytics or apply");
    e.with_string("param", "mode");
    return e;
  }
  const bool apply = mode == "apply";
  auto sink = std::make_shared<ImportSink>();
  sink->set_timed([this, method = head.method, path = head.path](Responder respond) {
    return api_.timed(method, path, std::move(respond));
  });
  {
    std::lock_guard lock(active_mu_);
    ++active_;
  }
  // Parsing and loading take a while: not on an I/O thread.
  std::thread([this, sink, apply] {
    run_import(sink, apply);
    std::lock_guard lock(active_mu_);
    --active_;
    active_cv_.notify_all();
  }).detach();
  return sink;
}

void ImportingHandler::run_import(const std::shared_ptr<ImportSink>& sink, bool apply) {
  std::lock_guard one_at_a_time(import_mu_);
  Importer importer(engine_, analytics_, clock_, apply);
  std::string piece;
  for (;;) {
    switch (sink->take(piece)) {
      case ImportSink::Next::kPiece:
        importer.feed(piece);
        break;
      case ImportSink::Next::kEnd:
        sink->respond(importer.finish(sink->over_limit_bytes()));
        return;
      case ImportSink::Next::kAborted:
        // The client left: the chunks loaded stay; the lines read since are dropped.
        return;
    }
  }
}

// ---- webhooks ------------------------------------------------------------------------

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

bool local_address(const net::ip::address& a) {
  if (a.is_v6()) {
    net::ip::address_v6 v6 = a.to_v6();
    if (v6.is_v4_mapped()) return local_address(net::ip::make_address_v4(net::ip::v4_mapped, v6));
    auto b = v6.to_bytes();
    // ::a.b.c.d (IPv4-compatible, deprecated) still names an IPv4 address.
    if (std::all_of(b.begin(), b.begin() + 12, [](unsigned char x) { return x == 0; }))
      return local_address(net::ip::address_v4({b[12], b[13], b[14], b[15]}));
    // 64:ff9b::a.b.c.d (NAT64, RFC 6052) reaches the IPv4 address it embeds.
    constexpr std::array<unsigned char, 12> kNat64 = {0, 0x64, 0xff, 0x9b};
    if (std::equal(kNat64.begin(), kNat64.end(), b.begin()))
      return local_address(net::ip::address_v4({b[12], b[13], b[14], b[15]}));
    // 2002:aabb:ccdd::/48 (6to4, RFC 3056) embeds a.b.c.d; 64:ff9b:1::/48 is NAT64 for
    // local use only (RFC 8215).
    if (b[0] == 0x20 && b[1] == 0x02)
      return local_address(net::ip::address_v4({b[2], b[3], b[4], b[5]}));
    if (b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && b[4] == 0 && b[5] == 1)
      return true;
    return v6.is_loopback() || v6.is_unspecified() || v6.is_link_local() || v6.is_multicast() ||
           v6.is_site_local() || (b[0] & 0xfe) == 0xfc;  // fc00::/7 unique local
  }
  auto b = a.to_v4().to_bytes();
  return b[0] == 127 || b[0] == 10 || b[0] == 0 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
         (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254) ||
         (b[0] == 100 && (b[1] & 0xc0) == 64) || b[0] >= 224;
}

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};

std::optional<Url> parse_url(std::string_view s) {
  Url u;
  if (s.rfind("https://", 0) == 0) {
    u.tls = true;
    s.remove_prefix(8);
  } else if (s.rfind("http://", 0) == 0) {
    s.remove_prefix(7);
  } else {
    return std::nullopt;
  }
  std::size_t slash = s.find_first_of("/?#");
  std::string_view authority = s.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
  if (auto hash = u.target.find('#'); hash != std::string::npos) u.target.resize(hash);
  if (u.target.empty() || u.target[0] != '/') u.target = "/" + u.target;
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  u.port = u.tls ? "443" : "80";
  if (authority[0] == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':' || rest.size() < 2) return std::nullopt;
      u.port = std::string(rest.substr(1));
    }
  } else {
    std::size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  // A name (letters, digits, '-', '_', '.') or an IPv4 address; an IPv6 address in
  // brackets. Anything else (a space, %-escapes, other dots) names no host this sender
  // would reach as written.
  if (authority[0] == '[') {
    in6_addr v6{};
    if (inet_pton(AF_INET6, u.host.c_str(), &v6) != 1) return std::nullopt;
  } else {
    for (char ch : u.host) {
      const bool name_char =
          std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '-' || ch == '_' || ch == '.';
      if (!name_char) return std::nullopt;
    }
  }
  if (u.host.empty() || u.port.empty() || u.port.size() > 5 ||
      u.port.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  // A TCP port: 1 to 65535.
  if (const int port = std::stoi(u.port); port < 1 || port > 65535) return std::nullopt;
  for (char ch : u.target) {
    if (ch <= 0x20 || ch == 0x7f) return std::nullopt;
  }
  return u;
}

template <typename Stream>
net::awaitable<void> exchange(Stream& stream, const http::request<http::string_body>& req,
                              int& status) {
  co_await http::async_write(stream, req, net::use_awaitable);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kWebhookResponseBytesMax);
  co_await http::async_read(stream, buffer, parser, net::use_awaitable);
  status = static_cast<int>(parser.get().result_int());
}

net::awaitable<void> deliver(Url url, http::request<http::string_body> req, bool allow_local,
                             net::ssl::context& tls, int& status, bool& refused_local) {
  auto ex = co_await net::this_coro::executor;
  net::ip::tcp::resolver resolver(ex);
  auto results = co_await resolver.async_resolve(url.host, url.port, net::use_awaitable);
  std::vector<net::ip::tcp::endpoint> targets;
  for (const auto& r : results) {
    // Checked after resolving too: a public name may point at a private address, and
    // plain http goes only to local ones (and only with allow_local).
    const bool local = local_address(r.endpoint().address());
    if (!allow_local && local) {
      refused_local = true;
      co_return;
    }
    if (!url.tls && !local) co_return;
    targets.push_back(r.endpoint());
  }
  if (url.tls) {
    beast::ssl_stream<beast::tcp_stream> stream(ex, tls);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str())) co_return;
    stream.set_verify_callback(net::ssl::host_name_verification(url.host));
    co_await beast::get_lowest_layer(stream).async_connect(targets, net::use_awaitable);
    co_await stream.async_handshake(net::ssl::stream_base::client, net::use_awaitable);
    co_await exchange(stream, req, status);
  } else {
    beast::tcp_stream stream(ex);
    co_await stream.async_connect(targets, net::use_awaitable);
    co_await exchange(stream, req, status);
  }
}

}  // namespace

std::optional<std::string> webhook_url_problem(std::string_view url, bool allow_local) {
  auto u = parse_url(url);
  if (!u) return "webhook_url must be an absolute http(s) URL without user info";
  if (!u->tls && !allow_local) return "webhook_url must be https";
  std::string host = u->host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (host.size() > 1 && host.back() == '.') host.pop_back();  // "localhost." is localhost
  const bool local_name = host == "localhost" || (host.size() > 10 && host.ends_with(".localhost"));
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  // The resolver also reads the old IPv4 forms ("127.1", "2130706433", "0x7f.0.0.1").
  in_addr legacy{};
  if (ec && inet_aton(host.c_str(), &legacy) != 0) {
    addr = net::ip::address_v4(ntohl(legacy.s_addr));
    ec = {};
  }
  const bool local = local_name || (!ec && local_address(addr));
  // Plain http only to this machine or a private network, and only when allowed.
  if (!u->tls)
    return local ? std::nullopt : std::optional<std::string>("webhook_url must be https");
  if (allow_local || !local) return std::nullopt;
  if (local_name) return "webhook_url must not point at this machine";
  return "webhook_url must not be a loopback, private or link-local address";
}

analytics::WebhookSender make_webhook_sender(bool allow_local) {
  auto tls = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
  tls->set_default_verify_paths();
  tls->set_verify_mode(net::ssl::verify_peer);
  // The URLs already reported as resolving to this machine or a private network (a line
  // each, not one per retry), at most kWebhookRefusalsLoggedMax of them.
  struct Refusals {
    std::mutex mu;
    std::unordered_set<std::string> urls;
  };
  auto refusals = std::make_shared<Refusals>();
  // Names a refused target once (its host, never the path), not once per retry.
  auto report = [refusals](const std::string& url, const std::string& host,
                           const std::string& alert_id, const char* why) {
    std::lock_guard lock(refusals->mu);
    if (refusals->urls.size() < kWebhookRefusalsLoggedMax && refusals->urls.insert(url).second) {
      std::fprintf(stderr, "creditd: webhook %s not sent (alert %s): %s; retried with backoff\n",
                   host.c_str(), alert_id.c_str(), why);
    }
  };
  return [tls, allow_local, report](const analytics::WebhookRequest& w) -> bool {
    auto url = parse_url(w.url);
    if (!url) return false;
    if (!url->tls && !allow_local) {
      // Stored by a run with --allow-local-webhooks, which this one is not.
      report(w.url, url->host, w.alert_id,
             "an http:// URL is allowed only with --allow-local-webhooks (this run has not "
             "got it)");
      return false;
    }
    http::request<http::string_body> req{http::verb::post, url->target, 11};
    // RFC 9112: the port when it is not the scheme's default; an IPv6 literal in brackets.
    std::string host = url->host.find(':') != std::string::npos ? "[" + url->host + "]" : url->host;
    if (url->port != (url->tls ? "443" : "80")) host += ":" + url->port;
    req.set(http::field::host, host);
    req.set(http::field::user_agent, "creditd-webhooks");
    req.set(http::field::content_type, "application/json");
    std::string t = std::to_string(w.at_unix_s);
    req.set("Creditd-Signature", "t=" + t + ",v1=" + hmac_sha256_hex(w.secret, t + "." + w.body));
    req.set("Creditd-Delivery-Id", w.alert_id);
    req.body() = w.body;
    req.prepare_payload();
    net::io_context ioc;
    int status = 0;
    bool failed = false;
    bool refused_local = false;
    net::co_spawn(ioc, deliver(*url, std::move(req), allow_local, *tls, status, refused_local),
                  [&failed](std::exception_ptr e) { failed = e != nullptr; });
    ioc.run_for(std::chrono::milliseconds(kWebhookTimeoutMs));
    // Not finished in time: stopping the context abandons the delivery (a failure).
    if (!ioc.stopped()) ioc.stop();
    if (refused_local) {
      report(w.url, url->host, w.alert_id,
             "its host resolves to a loopback, private or link-local address, allowed only "
             "with --allow-local-webhooks");
    }
    return !failed && status >= 200 && status < 300;
  };
}

}  // namespace credit::server
