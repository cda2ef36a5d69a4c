// src/server/audit_route.cc
// GET /v1/accounts/{id}/audit (see audit_route.h).
#include "server/audit_route.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "analytics/audit.h"
#include "analytics/range.h"
#include "analytics/refunds.h"
#include "base/assert.h"
#include "base/json_writer.h"
#include "ledger/event_codec.h"
#include "money/money.h"
#include "server/analytics_routes.h"
#include "server/json_reader.h"
#include "time/cycle.h"
#include "time/time.h"

namespace credit::server {
namespace {

HttpResponse bad_param(std::string_view param, std::string message) {
  Error e(ErrorCode::kInvalidRequest, std::move(message));
  e.with_string("param", param);
  return error_response(e);
}

HttpResponse overloaded() {
  return error_response(Error(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
}

enum class Format : std::uint8_t { kJson, kMarkdown, kHtml };

// What the I/O thread validated, before the ledger thread is asked anything.
struct Query {
  Format format = Format::kJson;
  std::optional<std::int64_t> from_ms;
  std::optional<std::int64_t> to_ms;
  std::string pool;  // "" the plan's first
  // GET .../regression-loops: the audit's loops only, the current cycle by default.
  bool loops_only = false;
};

std::optional<HttpResponse> parse_query(const HttpRequest& req, Query& q) {
  if (!q.loops_only && req.has_query("format")) {
    std::string_view f = req.query_param("format");
    if (f == "json") {
      q.format = Format::kJson;
    } else if (f == "md" || f == "markdown") {
      q.format = Format::kMarkdown;
    } else if (f == "html") {
      q.format = Format::kHtml;
    } else {
      return bad_param("format", "format is json, md or html");
    }
  }
  for (std::string_view name : {"from", "to"}) {
    if (!req.has_query(name)) continue;
    auto t = parse_rfc3339_bound(req.query_param(name));
    if (!t)
      return bad_param(name, std::string(name) + " must be an RFC 3339 instant from 1970 to 9999");
    (name == "from" ? q.from_ms : q.to_ms) = *t;
  }
  q.pool = std::string(req.query_param("pool"));
  // An empty `pool=` names no pool (api-notes, "Lists"): not the default.
  if (req.has_query("pool") && q.pool.empty()) {
    return bad_param("pool", std::string(kNoSuchPoolMessage));
  }
  return std::nullopt;
}

// The work handed from the ledger thread to a worker.
struct Job {
  std::string account_id;
  std::string plan_id;
  // The account's plan in force and the plans it could move to (the ledger's catalog),
  // copied: the worker reads no ledger state.
  pricing::Plan plan;
  pricing::Catalog catalog;
  std::string pool;
  // The encodings of the account's events in the range, in sequence order, copied on the
  // ledger thread (see audit_route.h); event i is event_bytes[ends[i-1], ends[i]).
  std::string event_bytes;
  std::vector<std::size_t> event_ends;
  // The same, of the charges before the range that refunds in it refund (AuditOptions::
  // prior_charges).
  std::string prior_bytes;
  std::vector<std::size_t> prior_ends;
  // The range the events were chosen from, now, and the cycle's days (AuditOptions).
  std::int64_t from_ms = 0;
  std::int64_t to_ms = 0;
  std::int64_t now_ms = 0;
  std::int64_t cycle_days = analytics::kCycleDaysNominal;
  bool loops_only = false;
};

// On the ledger thread: the account, the range, the events in it. An answer when the
// request ends here (404, 400).
std::optional<HttpResponse> gather(EngineState& st, const std::string& id, const Query& q,
                                   Job& job) {
  const ledger::Account* account = st.ledger.find(id);
  const std::int64_t now_ms = std::max(st.now_ms, st.ledger.now_ms());
  auto view = st.ledger.view(id, now_ms);
  if (account == nullptr || !view.ok()) {
    return error_response(Error(ErrorCode::kAccountNotFound, "no such account"));
  }
  // One pool's audit (API.md: every analytics route takes `pool`, default the plan's
  // first), checked as the other analytics routes check it.
  const ledger::PoolView* pool = nullptr;
  for (const auto& p : view->pools) {
    if (q.pool.empty() || p.name == q.pool) {
      pool = &p;
      break;
    }
  }
  if (pool == nullptr) return bad_param("pool", std::string(kNoSuchPoolMessage));
  // The last full cycle: the one before the current, when the account already lived at
  // its start; else the current cycle.
  std::int64_t from_ms = view->cycle_start_ms;
  std::int64_t to_ms = view->cycle_end_ms;
  const CycleBounds previous = cycle_at(account->anchor_ms, view->cycle_start_ms - 1);
  const std::int64_t born_ms = std::min(account->signup_at_ms, account->created_at_ms);
  if (!q.loops_only && previous.start_ms >= born_ms) {
    from_ms = previous.start_ms;
    to_ms = view->cycle_start_ms;
  }
  const analytics::TimeRange left_out{from_ms, to_ms};
  from_ms = q.from_ms.value_or(from_ms);
  to_ms = q.to_ms.value_or(to_ms);
  // The rule of every time-ranged route: a `to` before `from` is refused as given; the
  // ends given then snap to the hour (from == to is a range too, empty on the hour), an
  // end left out is the cycle's, exact.
  if (to_ms < from_ms) return bad_param("to", std::string(kToBeforeFromMessage));
  const analytics::TimeRange range = analytics::query_range(q.from_ms, q.to_ms, left_out);
  from_ms = range.from_ms;
  to_ms = range.to_ms;
  if (!q.loops_only && to_ms - from_ms > kAuditRangeMsMax) {
    return bad_param("to", "the range is at most 400 days");
  }
  job.loops_only = q.loops_only;
  job.account_id = id;
  job.plan_id = view->plan;
  job.plan = account->plan;
  job.catalog = st.ledger.catalog();
  job.pool = pool->name;
  job.from_ms = from_ms;
  job.to_ms = to_ms;
  job.now_ms = now_ms;
  // "Per cycle" figures are scaled to the length of the account's cycle that the range
  // starts in (its first cycle for a range that starts before it): a full cycle's report
  // is its own burn.
  const CycleBounds cycle = cycle_at(account->anchor_ms, std::max(from_ms, born_ms));
  job.cycle_days = std::max<std::int64_t>(1, (cycle.end_ms - cycle.start_ms) / kMsPerDay);
  const std::span<const EventIndex::Entry> list = st.events.events_of(id);
  job.event_ends.reserve(list.size());
  ledger::EventHead head;
  ledger::Event refund;
  std::vector<std::uint64_t> prior_seqs;  // charges before the range refunded in it
  for (const EventIndex::Entry& entry : list) {
    // An event whose day retention deleted is gone from the report too.
    const std::optional<std::string_view> bytes = st.events.bytes_of(entry);
    if (!bytes || !ledger::decode_event_head(*bytes, head).ok()) continue;
    if (head.at_ms < from_ms || head.at_ms >= to_ms) continue;
    job.event_bytes += *bytes;
    job.event_ends.push_back(job.event_bytes.size());
    if (head.type != ledger::EventType::kRefund) continue;
    if (!ledger::decode_event_into(*bytes, refund).ok() || refund.imported) continue;
    // A live charge's id is "c_<the seq of the event that made it>".
    const std::optional<std::uint64_t> seq = analytics::charge_seq(refund.charge_id);
    if (seq && *seq < entry.seq) prior_seqs.push_back(*seq);
  }
  // Those charges' events, from before the range (the list is in seq order): the audit
  // books each refund under its charge's file and source, as the rollups do (refunds.h).
  std::sort(prior_seqs.begin(), prior_seqs.end());
  prior_seqs.erase(std::unique(prior_seqs.begin(), prior_seqs.end()), prior_seqs.end());
  for (const std::uint64_t seq : prior_seqs) {
    auto it =
        std::lower_bound(list.begin(), list.end(), seq,
                         [](const EventIndex::Entry& x, std::uint64_t s) { return x.seq < s; });
    if (it == list.end() || it->seq != seq) continue;
    const std::optional<std::string_view> bytes = st.events.bytes_of(*it);
    if (!bytes || !ledger::decode_event_head(*bytes, head).ok() || head.at_ms >= from_ms) continue;
    job.prior_bytes += *bytes;
    job.prior_ends.push_back(job.prior_bytes.size());
  }
  return std::nullopt;
}

// GET .../regression-loops's answer: the range, then the loops in first-turn order.
HttpResponse loops_json(const Job& job, std::vector<analytics::Loop> loops) {
  std::stable_sort(loops.begin(), loops.end(),
                   [](const analytics::Loop& a, const analytics::Loop& b) {
                     return a.first_at_ms < b.first_at_ms;
                   });
  const auto nullable = [](json::Writer& w, std::string_view s) {
    if (s.empty()) {
      w.null();
    } else {
      w.string(s);
    }
  };
  HttpResponse h;
  json::Writer w(h.body);
  w.begin_object();
  w.key("from").string(format_rfc3339(job.from_ms)).key("to").string(format_rfc3339(job.to_ms));
  w.key("loops").begin_array();
  for (const analytics::Loop& l : loops) {
    w.begin_object().key("file");
    nullable(w, l.file);
    w.key("feature");
    nullable(w, l.feature);
    w.key("turns").integer(l.turns).key("fixes").integer(l.fixes);
    w.key("credits").raw(format_credits(l.credits)).key("waste").raw(format_credits(l.waste));
    w.key("first_at").string(format_rfc3339(l.first_at_ms));
    w.key("last_at").string(format_rfc3339(l.last_at_ms));
    w.key("revert_to_snapshot");
    nullable(w, l.revert_to_snapshot);
    w.end_object();
  }
  w.end_array().end_object();
  return h;
}

// On a worker: the report in the format asked for.
HttpResponse compute(const Engine& engine, const Job& job, Format format) {
  analytics::AuditOptions options;
  options.catalog = &job.catalog;
  options.plan_id = job.plan_id;
  options.current_plan = &job.plan;
  options.pool = job.pool;
  options.range_from_ms = job.from_ms;
  options.range_to_ms = job.to_ms;
  options.now_ms = job.now_ms;
  options.cycle_days = job.cycle_days;
  // A first pass for the refunds (analytics/refunds.h): each charge is booked net of them.
  // Only refund events are decoded whole; the others' heads say what they are.
  analytics::RefundBook refunds;
  ledger::Event event;
  ledger::EventHead head;
  // The events in time order, ties in sequence order: the order the audit's rules are
  // about (a loop is a run of turns in time, a cache is filled before it answers), and the
  // one `creditctl audit` reads a file in (cli/time_order.h). The index lists them in
  // sequence order, which is not time order where events were imported after later ones
  // (a second import, or one of several chunks: each chunk is numbered in time order).
  struct Placed {
    std::int64_t at_ms;
    std::uint64_t seq;
    std::size_t begin;
    std::size_t end;
  };
  std::vector<Placed> order;
  order.reserve(job.event_ends.size());
  std::size_t begin = 0;
  for (std::size_t end : job.event_ends) {
    const std::string_view bytes = std::string_view(job.event_bytes).substr(begin, end - begin);
    // The bytes were read back from the event log and their head decoded: a record the
    // log checked when it wrote or recovered it.
    Status decoded = ledger::decode_event_head(bytes, head);
    CREDIT_ASSERT(decoded.ok());
    order.push_back({head.at_ms, head.seq, begin, end});
    begin = end;
    if (head.type != ledger::EventType::kRefund) continue;
    decoded = ledger::decode_event_into(bytes, event);
    CREDIT_ASSERT(decoded.ok());
    refunds.add(event);
  }
  const auto earlier = [](const Placed& a, const Placed& b) {
    return a.at_ms != b.at_ms ? a.at_ms < b.at_ms : a.seq < b.seq;
  };
  if (!std::is_sorted(order.begin(), order.end(), earlier)) {
    std::sort(order.begin(), order.end(), earlier);
  }
  options.refunds = &refunds;
  std::vector<ledger::Event> prior_charges(job.prior_ends.size());
  begin = 0;
  for (std::size_t i = 0; i < job.prior_ends.size(); ++i) {
    const std::size_t end = job.prior_ends[i];
    Status decoded = ledger::decode_event_into(
        std::string_view(job.prior_bytes).substr(begin, end - begin), prior_charges[i]);
    CREDIT_ASSERT(decoded.ok());
    begin = end;
  }
  options.prior_charges = &prior_charges;
  analytics::AuditBuilder builder(job.account_id, engine.rate_card(), options);
  for (const Placed& p : order) {
    Status decoded = ledger::decode_event_into(
        std::string_view(job.event_bytes).substr(p.begin, p.end - p.begin), event);
    CREDIT_ASSERT(decoded.ok());
    builder.add(event);
  }
  std::vector<analytics::AuditReport> reports;
  reports.push_back(builder.finish());
  if (job.loops_only) return loops_json(job, reports.front().loops);
  HttpResponse h;
  h.headers.emplace_back("X-Content-Type-Options", "nosniff");
  switch (format) {
    case Format::kJson:
      h.body = analytics::audit_json(reports);
      break;
    case Format::kMarkdown:
      h.content_type = "text/markdown; charset=utf-8";
      h.body = analytics::audit_markdown(reports);
      break;
    case Format::kHtml:
      h.content_type = "text/html; charset=utf-8";
      h.headers.emplace_back("Content-Security-Policy", kAuditHtmlCsp);
      h.body = analytics::audit_html(reports);
      break;
  }
  return h;
}

}  // namespace

AuditWorkers::AuditWorkers() {
  for (std::size_t i = 0; i < kAuditWorkers; ++i) threads_.emplace_back([this] { run(); });
}

AuditWorkers::~AuditWorkers() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool AuditWorkers::post(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= kAuditQueueMax) return false;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void AuditWorkers::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      // Queued jobs still run at a stop: each holds a Responder the server waits for.
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

AnalyticsRoute make_audit_route(Engine& engine, AuditWorkers& workers) {
  return
      [&engine, &workers](const HttpRequest& req, const std::string& id, const std::string& route,
                          const Auth& auth, Responder& respond) -> bool {
        if ((route != "audit" && route != "regression-loops") || req.method != "GET" ||
            !reaches(auth, id)) {
          return false;
        }
        Query q;
        q.loops_only = route == "regression-loops";
        // Answered on the ledger thread: an unknown account (404) comes before a bad query
        // (400), in API.md's order of checks.
        auto bad = std::make_shared<std::optional<HttpResponse>>(parse_query(req, q));
        auto shared = std::make_shared<Responder>(respond);
        bool queued = engine.read([&engine, &workers, shared, id, q, bad](EngineState& st) {
          if (bad->has_value() && st.ledger.find(id) != nullptr) {
            (*shared)(std::move(**bad));
            return;
          }
          auto job = std::make_shared<Job>();
          if (auto answer = gather(st, id, q, *job)) {
            (*shared)(std::move(*answer));
            return;
          }
          bool posted = workers.post([&engine, shared, job, format = q.format] {
            (*shared)(compute(engine, *job, format));
          });
          if (!posted) (*shared)(overloaded());
        });
        if (!queued) (*shared)(overloaded());
        return true;
      };
}

}  // namespace credit::server
