// src/server/analytics_routes.cc
// The analytics routes, the import, the event sink and the webhook sender
// (see analytics_routes.h).
#include "server/analytics_routes.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "analytics/burn.h"
#include "analytics/event_json.h"
#include "analytics/forecast.h"
#include "base/json_writer.h"
#include "ledger/event_codec.h"
#include "server/crypto.h"
#include "server/json_reader.h"
#include "time/time.h"

namespace credit::server {
namespace {

using analytics::Analytics;
using ledger::Event;

std::string credits(std::int64_t mc) {
  return format_credits(Millicredits::from_mc(mc));
}

// A fraction for JSON: up to 6 decimals, trailing zeros dropped.
std::string fraction(double v) {
  std::string s = fmt::format("{:.6f}", v);
  while (!s.empty() && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s.empty() || s == "-0" ? "0" : s;
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
  auto t = parse_rfc3339(req.query_param(name));
  if (!t) *bad = bad_param(name, std::string(name) + " must be an RFC 3339 instant");
  return t;
}

std::int64_t hour_ceil(std::int64_t at_ms) {
  std::int64_t h = hour_start_ms(at_ms);
  return h == at_ms ? h : h + kMsPerHour;
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
  for (const auto& p : c.view.pools) {
    if (want.empty() || p.name == want) {
      c.pool = &p;
      break;
    }
  }
  if (c.pool == nullptr) {
    *out = bad_param("pool", "the account's plan has no such pool");
    return std::nullopt;
  }
  return c;
}

// [from, to) snapped to the hour (from down, to up); the current cycle by default.
std::optional<analytics::TimeRange> range_of(const HttpRequest& req, const Ctx& c,
                                             HttpResponse* bad) {
  auto from = time_param(req, "from", bad);
  if (req.has_query("from") && !from) return std::nullopt;
  auto to = time_param(req, "to", bad);
  if (req.has_query("to") && !to) return std::nullopt;
  analytics::TimeRange r;
  r.from_ms = hour_start_ms(from.value_or(c.view.cycle_start_ms));
  r.to_ms = hour_ceil(to.value_or(c.view.cycle_end_ms));
  if (r.to_ms < r.from_ms) {
    *bad = bad_param("to", "to must not be before from");
    return std::nullopt;
  }
  return r;
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
  // Every filtered field is in the head of the encoding: a page decodes only the events
  // it returns.
  bool match(const ledger::EventHead& e) const {
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
                                         "plan",      "previous_plan",   "reason"};

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
    cell(std::to_string(e->rate_card_version), false);
    cell(e->imported ? "true" : "false", false);
    for (const std::string* v : {&e->hold_id, &e->charge_id, &e->grant_id, &e->refund_id,
                                 &e->object, &e->plan, &e->previous_plan, &e->reason}) {
      cell(*v);
    }
    out += "\r\n";
  }
}

HttpResponse events_route(EngineState& st, const std::string& id, const HttpRequest& req) {
  if (st.ledger.find(id) == nullptr) return not_found_account();
  HttpResponse bad;
  EventFilter f;
  f.from_ms = time_param(req, "from", &bad);
  if (req.has_query("from") && !f.from_ms) return bad;
  f.to_ms = time_param(req, "to", &bad);
  if (req.has_query("to") && !f.to_ms) return bad;
  if (req.has_query("type")) {
    f.type = ledger::parse_event_type(req.query_param("type"));
    if (!f.type) return bad_param("type", "unknown event type");
  }
  if (req.has_query("kind")) {
    f.kind = pricing::parse_kind(req.query_param("kind"));
    if (!f.kind) return bad_param("kind", "unknown kind");
  }
  f.user_id = std::string(req.query_param("user_id"));
  std::size_t limit = 100;
  if (req.has_query("limit")) {
    auto v = json_int64(req.query_param("limit"));
    if (!v || *v < 1 || *v > 1000) return bad_param("limit", "limit must be 1 to 1000");
    limit = static_cast<std::size_t>(*v);
  }
  std::uint64_t after = 0;
  if (req.has_query("after")) {
    auto v = json_int64(req.query_param("after"));
    if (!v || *v < 0) return bad_param("after", "after must be a cursor from an earlier page");
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
    st.events.decode_head(*it, head);
    if (f.match(head)) st.events.decode(*it, page.emplace_back());
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
  for (const auto& row : u.rows) {
    w.begin_object().key("key");
    nullable(w, row.key);
    w.key("credits").raw(credits(row.credits_mc)).key("count").integer(row.count);
    double share = u.total_mc > 0
                       ? static_cast<double>(row.credits_mc) / static_cast<double>(u.total_mc)
                       : 0.0;
    w.key("share").raw(fraction(share)).end_object();
  }
  w.end_array().end_object();
  return out;
}

HttpResponse hot_files_route(EngineState& st, Analytics& a, const std::string& id,
                             const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  std::size_t limit = kHotFilesLimitDefault;
  if (req.has_query("limit")) {
    auto v = json_int64(req.query_param("limit"));
    if (!v || *v < 1 || *v > static_cast<std::int64_t>(kHotFilesLimitMax))
      return bad_param("limit", "limit must be 1 to 1000");
    limit = static_cast<std::size_t>(*v);
  }
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

HttpResponse loops_route(EngineState& st, Analytics& a, const std::string& id,
                         const HttpRequest& req) {
  HttpResponse out;
  auto c = context(st, id, req, &out);
  if (!c) return out;
  auto r = range_of(req, *c, &out);
  if (!r) return out;
  std::vector<analytics::Loop> loops;
  a.sync();
  {
    std::lock_guard lock(a.mu());
    loops = a.rollups().loops(id, *r);
  }
  json::Writer w(out.body);
  w.begin_object();
  range_json(w, *r);
  w.key("loops").begin_array();
  for (const auto& l : loops) {
    w.begin_object().key("file");
    nullable(w, l.file);
    w.key("feature");
    nullable(w, l.feature);
    w.key("turns").integer(l.turns).key("fixes").integer(l.fixes);
    w.key("credits").raw(format_credits(l.credits)).key("waste").raw(format_credits(l.waste));
    w.key("first_at")
        .string(format_rfc3339(l.first_at_ms))
        .key("last_at")
        .string(format_rfc3339(l.last_at_ms));
    w.key("revert_to_snapshot");
    nullable(w, l.revert_to_snapshot);
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
  w.key("engineering_hours").raw(fmt::format("{:.2f}", f.engineering_hours));
  w.key("sized_correctly").boolean(f.sized_correctly).key("reason").string(f.reason).end_object();
  w.end_object();
  return out;
}

HttpResponse alerts_route(EngineState& st, Analytics& a, const std::string& id) {
  if (st.ledger.find(id) == nullptr) return not_found_account();
  a.sync();  // evaluations still queued record their alerts first
  HttpResponse out;
  json::Writer w(out.body);
  w.begin_object().key("alerts").begin_array();
  for (const auto& al : a.alerts().alerts_of(id)) {
    w.raw("");
    analytics::append_alert_json(out.body, al);
  }
  w.end_array().end_object();
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
      if (!m.ok() || m->mc() < 1000 || m->mc() > 1'000'000)
        return s.invalid("factor", "factor must be 1 to 1000");
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
      auto n = v.is_number() ? v.int64_value() : std::nullopt;
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
      d.pools.push_back({v.name, v.used.mc(), v.allowance.mc(), v.extra.mc(), v.available.mc()});
    }
    return d;
  }
  auto view = ledger.view(id, at_ms);
  if (!view.ok() || view->closed) return std::nullopt;
  d.cycle_start_ms = view->cycle_start_ms;
  d.cycle_end_ms = view->cycle_end_ms;
  for (const auto& p : view->pools)
    d.pools.push_back({p.name, p.used.mc(), p.allowance.mc(), p.extra.mc(), p.available.mc()});
  return d;
}

// Takes the balances of the accounts that had events (on the ledger thread, in a read
// job after their batch) and queues them for the analytics worker to judge.
void evaluate_due(EngineState& st, Analytics& a) {
  std::vector<analytics::DueAccount> due;
  for (const auto& [id, at] : a.take_due()) {
    if (auto d = due_account(st.ledger, id, at)) {
      d->rules = a.alerts().params(id);
      due.push_back(std::move(*d));
    }
  }
  a.queue_evaluation(std::move(due));
}

// ---- import --------------------------------------------------------------------------

struct ImportLine {
  std::uint64_t line = 0;
  Event event;
};

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

}  // namespace

// ---- public --------------------------------------------------------------------------

void attach_analytics(Engine& engine, Analytics& analytics) {
  engine.set_event_sink([&engine, &analytics](const std::vector<Event>& events) {
    if (!analytics.on_events(events)) return;
    if (!engine.read([&analytics](EngineState& st) { evaluate_due(st, analytics); }))
      analytics.unschedule();
  });
}

AnalyticsRoute make_analytics_routes(Engine& engine, Analytics& analytics,
                                     bool allow_local_webhooks) {
  return [&engine, &analytics, allow_local_webhooks](const HttpRequest& req, const std::string& id,
                                                     const std::string& route, const Auth& auth,
                                                     Responder& respond) -> bool {
    using Fn = HttpResponse (*)(EngineState&, Analytics&, const std::string&, const HttpRequest&);
    static const std::map<std::string, Fn, std::less<>> kGets = {
        {"usage", usage_route},
        {"hot-files", hot_files_route},
        {"burn", burn_route},
        {"forecast", forecast_route},
        {"regression-loops", loops_route},
        {"cache-stats", cache_stats_route},
    };
    if (!reaches(auth, id)) return false;  // the core answered 403 already
    auto shared = std::make_shared<Responder>(respond);
    auto run = [&](std::function<HttpResponse(EngineState&)> fn) {
      if (!engine.read([shared, fn = std::move(fn)](EngineState& st) { (*shared)(fn(st)); })) {
        (*shared)(
            error_response(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
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
        return run([q, id](EngineState& st) { return events_route(st, id, *q); });
      if (route == "alerts")
        return run([id, &analytics](EngineState& st) { return alerts_route(st, analytics, id); });
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
      return run([id, body, &analytics, allow_local_webhooks](EngineState& st) {
        if (st.ledger.find(id) == nullptr) return not_found_account();
        auto rules = parse_rules(body, analytics.alerts().rules(id), allow_local_webhooks);
        if (!rules.ok()) return error_response(rules.error());
        if (Status s = analytics.alerts().set_rules(id, *rules); !s.ok())
          return error_response(s.error());
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
  if (req.path != "/v1/admin/import" && req.path != "/v1/admin/import/")
    return api_.handle(std::move(req), std::move(respond));
  auto auth = authenticate(engine_, options_, req.authorization);
  if (!auth)
    return respond(
        error_response(Error(ErrorCode::kUnauthorized, "a valid bearer key is required")));
  if (req.method != "POST")
    return respond(error_response(Error(ErrorCode::kNotFound, "no such route")));
  if (auth->role != Role::kAdmin)
    return respond(error_response(Error(ErrorCode::kForbidden, "this key may not do that")));
  std::string_view mode = req.has_query("mode") ? req.query_param("mode") : "analytics";
  if (mode != "analytics" && mode != "apply")
    return respond(bad_param("mode", "mode is analytics or apply"));
  bool apply = mode == "apply";
  {
    std::lock_guard lock(active_mu_);
    ++active_;
  }
  // Parsing and applying a large body takes a while: not on an I/O thread.
  std::thread([this, req = std::move(req), apply, respond = std::move(respond)]() mutable {
    run_import(std::move(req), apply, std::move(respond));
    std::lock_guard lock(active_mu_);
    --active_;
    active_cv_.notify_all();
  }).detach();
}

void ImportingHandler::run_import(HttpRequest req, bool apply, Responder respond) {
  std::lock_guard one_at_a_time(import_mu_);
  std::uint64_t imported = 0, rejected = 0;
  std::vector<analytics::LineError> errors;
  auto reject = [&](std::uint64_t line, std::string reason) {
    ++rejected;
    if (errors.size() < kImportErrorsMax) errors.push_back({line, std::move(reason)});
  };
  const pricing::RateCard& card = engine_.rate_card();
  std::vector<ImportLine> lines;
  std::string_view body = req.body;
  std::uint64_t n = 0;
  for (std::size_t pos = 0; pos < body.size();) {
    std::size_t nl = body.find('\n', pos);
    if (nl == std::string_view::npos) nl = body.size();
    std::string_view text = body.substr(pos, nl - pos);
    pos = nl + 1;
    ++n;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (text.size() > analytics::kEventLineBytesMax) {
      reject(n, "the line is longer than 1 MiB");
      continue;
    }
    auto e = analytics::parse_event_json(text);
    if (!e.ok()) {
      std::string reason = e.error().message;
      if (auto p = e.error().detail("param"); !p.empty()) reason += " (" + std::string(p) + ")";
      reject(n, reason);
      continue;
    }
    if (!valid_id(e->account_id)) {
      reject(n, "account_id is not a valid id");
      continue;
    }
    if (e->pool.empty() && e->kind) e->pool = std::string(card.pool(*e->kind));
    e->seq = 0;
    lines.push_back(ImportLine{n, std::move(*e)});
  }
  std::stable_sort(lines.begin(), lines.end(), [](const ImportLine& a, const ImportLine& b) {
    return a.event.at_ms < b.event.at_ms;
  });

  auto answer = [&](int status) {
    std::string out;
    json::Writer w(out);
    w.begin_object().key("imported").integer(static_cast<std::int64_t>(imported));
    w.key("rejected").integer(static_cast<std::int64_t>(rejected)).key("errors").begin_array();
    for (const auto& e : errors) {
      w.begin_object()
          .key("line")
          .integer(static_cast<std::int64_t>(e.line))
          .key("reason")
          .string(e.reason)
          .end_object();
    }
    w.end_array().end_object();
    respond(json_response(status, std::move(out)));
  };

  if (!apply) {
    // Which accounts exist (one read on the ledger thread).
    std::set<std::string> ids;
    for (const auto& l : lines) ids.insert(l.event.account_id);
    std::promise<std::set<std::string>> known_p;
    auto known_f = known_p.get_future();
    auto shared_p = std::make_shared<std::promise<std::set<std::string>>>(std::move(known_p));
    if (!engine_.read([ids, shared_p](EngineState& st) {
          std::set<std::string> known;
          for (const auto& id : ids) {
            if (st.ledger.find(id) != nullptr) known.insert(id);
          }
          shared_p->set_value(std::move(known));
        })) {
      return respond(
          error_response(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
    }
    std::set<std::string> known = known_f.get();
    std::vector<Event> accepted;
    std::set<std::pair<std::string, std::string>> keys;  // this import's (account, key)
    {
      std::lock_guard lock(analytics_.mu());
      for (auto& l : lines) {
        const Event& e = l.event;
        if (!known.count(e.account_id)) {
          reject(l.line, "unknown account " + e.account_id);
          continue;
        }
        if (!e.idempotency_key.empty() &&
            (analytics_.rollups().imported_key_seen(e.account_id, e.idempotency_key) ||
             !keys.insert({e.account_id, e.idempotency_key}).second)) {
          reject(l.line, "duplicate: this account already has an event with idempotency_key " +
                             e.idempotency_key);
          continue;
        }
        l.event.imported = true;
        accepted.push_back(std::move(l.event));
      }
    }
    if (Status s = analytics_.add_imported(accepted); !s.ok()) {
      // Not durable, so not imported: the whole body can be sent again.
      return respond(error_response(s.error()));
    }
    imported = accepted.size();
    std::sort(errors.begin(), errors.end(),
              [](const auto& a, const auto& b) { return a.line < b.line; });
    return answer(200);
  }

  // mode=apply: each charge line becomes a charge at its own instant.
  std::vector<std::pair<ImportLine*, ledger::Command>> cmds;
  for (auto& l : lines) {
    Event& e = l.event;
    if (e.type != ledger::EventType::kCharge) {
      reject(l.line, "only charge lines can be applied (this line is a " +
                         std::string(ledger::event_type_name(e.type)) + ")");
      continue;
    }
    if (!e.kind) {
      reject(l.line, "kind is required");
      continue;
    }
    if (e.usage) {
      if (Status v = card.validate(*e.kind, *e.usage); !v.ok()) {
        reject(l.line, "usage: " + v.error().message);
        continue;
      }
    }
    ledger::Command c;
    std::string canon = "charge:" + e.account_id + ":";
    canon += '\x1f';
    analytics::append_event_json(canon, e);
    if (e.idempotency_key.empty()) e.idempotency_key = "import:" + sha256_hex(canon).substr(0, 32);
    c.idem.has_key = true;
    c.idem.key = e.idempotency_key;
    c.idem.scope_key_hash = hash128(e.account_id, e.idempotency_key);
    c.idem.request_hash = hash128("request", canon);
    ledger::Charge ch;
    ch.account_id = e.account_id;
    ch.user_id = e.user_id;
    ch.kind = *e.kind;
    ch.pool = std::string(card.pool(*e.kind));
    ch.amount = e.credits;
    ch.priced_by_usage = false;
    ch.rate_card_version = card.version();
    ch.usage = e.usage;
    ch.metadata = e.metadata;
    c.body = std::move(ch);
    cmds.emplace_back(&l, std::move(c));
  }
  if (!cmds.empty()) {
    const std::int64_t first = cmds.front().first->event.at_ms;
    const std::int64_t last = cmds.back().first->event.at_ms;
    const std::int64_t now = clock_.now_ms();
    if (first < engine_.last_logged_ms() || last > now) {
      Error e(ErrorCode::kBackfillOutOfOrder,
              first < engine_.last_logged_ms()
                  ? "a line is before the ledger's last logged instant " +
                        format_rfc3339(engine_.last_logged_ms())
                  : "a line is after the clock's now " + format_rfc3339(now));
      e.with_string("at", format_rfc3339(first < engine_.last_logged_ms() ? first : last));
      return respond(error_response(e));
    }
  }
  using Replies = std::vector<ledger::Reply>;
  struct InFlight {
    std::vector<ImportLine*> lines;
    std::future<Replies> replies;
  };
  std::deque<InFlight> flight;
  auto settle = [&](InFlight& f) {
    Replies replies = f.replies.get();
    for (std::size_t i = 0; i < f.lines.size(); ++i) {
      const ledger::Reply& r = replies[i];
      if (r.status < 300 && !r.replayed) {
        ++imported;
      } else if (r.replayed) {
        reject(f.lines[i]->line, "duplicate: idempotency_key " + f.lines[i]->event.idempotency_key +
                                     " was applied before");
      } else {
        reject(f.lines[i]->line, reply_reason(r));
      }
    }
  };
  for (std::size_t i = 0; i < cmds.size();) {
    std::size_t j = i;
    std::vector<Op> ops;
    InFlight f;
    while (j < cmds.size() && ops.size() < kImportBatchOpsMax &&
           cmds[j].first->event.at_ms == cmds[i].first->event.at_ms) {
      f.lines.push_back(cmds[j].first);
      ops.push_back(std::move(cmds[j].second));
      ++j;
    }
    auto p = std::make_shared<std::promise<Replies>>();
    f.replies = p->get_future();
    if (!engine_.submit_at(cmds[i].first->event.at_ms, std::move(ops),
                           [p](Replies&& r) { p->set_value(std::move(r)); })) {
      for (ImportLine* l : f.lines) reject(l->line, "overloaded: the server is busy");
    } else {
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
  std::sort(errors.begin(), errors.end(),
            [](const auto& a, const auto& b) { return a.line < b.line; });
  answer(200);
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
  if (u.host.empty() || u.port.empty() || u.port.size() > 5 ||
      u.port.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
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
                             net::ssl::context& tls, int& status) {
  auto ex = co_await net::this_coro::executor;
  net::ip::tcp::resolver resolver(ex);
  auto results = co_await resolver.async_resolve(url.host, url.port, net::use_awaitable);
  std::vector<net::ip::tcp::endpoint> targets;
  for (const auto& r : results) {
    // Checked after resolving too: a public name may point at a private address, and
    // plain http goes only to local ones (and only with allow_local).
    const bool local = local_address(r.endpoint().address());
    if (!allow_local && local) co_return;
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
  const bool local_name = host == "localhost" || (host.size() > 10 && host.ends_with(".localhost"));
  boost::system::error_code ec;
  auto addr = net::ip::make_address(host, ec);
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
  return [tls, allow_local](const analytics::WebhookRequest& w) -> bool {
    auto url = parse_url(w.url);
    if (!url || (!url->tls && !allow_local)) return false;
    http::request<http::string_body> req{http::verb::post, url->target, 11};
    req.set(http::field::host, url->host);
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
    net::co_spawn(ioc, deliver(*url, std::move(req), allow_local, *tls, status),
                  [&failed](std::exception_ptr e) { failed = e != nullptr; });
    ioc.run_for(std::chrono::milliseconds(kWebhookTimeoutMs));
    // Not finished in time: stopping the context abandons the delivery (a failure).
    if (!ioc.stopped()) ioc.stop();
    return !failed && status >= 200 && status < 300;
  };
}

}  // namespace credit::server
