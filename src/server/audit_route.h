// src/server/audit_route.h
// GET /v1/accounts/{id}/audit?format=json|md|html&from&to&pool (API.md): the audit report
// of one pool of one account (default the plan's first pool; an unknown one is 400
// invalid_request, param "pool"), computed with the same code as `creditctl audit`
// (analytics/audit.h).
// The default range is the last full cycle, or the current one when the account has not
// lived through a full cycle yet. A range is checked and snapped to the hour as on every
// analytics route (analytics/range.h).
//
// The ledger thread only gathers: in an engine read job it checks the account, settles
// the range and copies the encodings of the account's events in it (the per-account
// index of event_index.h; each event's time is read from the head of its encoding, and
// the bytes are about 100 per event). The report is computed on an audit worker, which
// decodes them: it never reads the engine's index, which the ledger thread appends to.
// The worker audits the events in time order, ties in sequence order (as `creditctl
// audit` reads a file, cli/time_order.h), not in the index's sequence order, which is not
// time order where events were imported after later ones (32 bytes more per event, for
// the order).
// Owns: the query validation, the range default, the worker pool, content types and the
// Content-Security-Policy of the HTML form.
// Does not: compute the audit (analytics/audit.h), authenticate (api.h did).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "server/api.h"
#include "server/engine.h"

namespace credit::server {

// Audits computed at once; the rest wait in the queue.
constexpr std::size_t kAuditWorkers = 2;
// Audits waiting for a worker; beyond this a request gets 503 overloaded.
constexpr std::size_t kAuditQueueMax = 32;
// The longest range one request may ask for (about 13 cycles).
constexpr std::int64_t kAuditRangeMsMax = 400LL * 86'400'000;
// The HTML form has no script, no style and no external resource (audit_render.cc).
constexpr const char* kAuditHtmlCsp =
    "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'";

// A fixed set of worker threads for audits; the destructor finishes the queued jobs and
// joins them. It must outlive the HTTP server that hands it requests.
class AuditWorkers {
 public:
  AuditWorkers();
  ~AuditWorkers();
  AuditWorkers(const AuditWorkers&) = delete;
  AuditWorkers& operator=(const AuditWorkers&) = delete;

  // false: the queue is full (the caller answers 503).
  bool post(std::function<void()> job);

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// The route for Api::set_audit. `engine` and `workers` must outlive the server.
AnalyticsRoute make_audit_route(Engine& engine, AuditWorkers& workers);

}  // namespace credit::server
