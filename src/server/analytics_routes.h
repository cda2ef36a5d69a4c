// src/server/analytics_routes.h
// The analytics routes of API.md ("Events and analytics (read)"), the import route
// (POST /v1/admin/import), the engine's event sink that feeds the rollups and schedules
// alert evaluation, and the webhook sender (Boost.Beast; https with OpenSSL).
// Reads run as engine read jobs (the ledger thread) because they need the account's
// cycle and balances; they sync the analytics FIFO (analytics/live.h) and read rollups
// (analytics/rollup.h), never a cycle of raw events. Alert evaluation takes only the
// balances on the ledger thread (without Ledger::view's copy when the projection changes
// nothing); the analytics worker judges them. The event listing reads the engine's
// in-memory events through the per-account index and scans at most
// kEventsScannedPerPageMax of them per page.
// Owns: query parsing and validation, the JSON/NDJSON/CSV answers, the import (parse,
// checks, ledger commands at each line's instant), the balances alerts are judged on.
// Does not: keep analytics state (analytics/live.h) or route core requests (api.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "analytics/live.h"
#include "server/api.h"
#include "server/engine.h"
#include "time/clock.h"

namespace credit::server {

// Events one page of GET .../events may look at before it answers with a cursor.
constexpr std::size_t kEventsScannedPerPageMax = 200'000;
// hot-files: default and largest `limit`.
constexpr std::size_t kHotFilesLimitDefault = 5;
constexpr std::size_t kHotFilesLimitMax = 1000;
// Import: line errors reported, ops per ledger batch, batches in flight.
constexpr std::size_t kImportErrorsMax = 100;
constexpr std::size_t kImportBatchOpsMax = 4096;
// One: each instant is durable and its balances taken for alert evaluation (a read job
// queued by the sink, which queues them behind the instant's events for the analytics
// worker) before the next instant is submitted, so alerts see the same states as live
// traffic.
constexpr std::size_t kImportBatchesInFlightMax = 1;
// Webhooks: the whole delivery (resolve, connect, TLS, request, answer) and the answer's
// body that is read (and dropped).
constexpr std::int64_t kWebhookTimeoutMs = 5'000;
constexpr std::size_t kWebhookResponseBytesMax = 64 * 1024;

// Sets the engine's event sink: events go to the rollups, and the accounts they touch get
// their alerts evaluated in a read job. Call before engine.open() (recovery feeds it).
void attach_analytics(Engine& engine, analytics::Analytics& analytics);

// GET/PUT /v1/accounts/{id}/{events,usage,hot-files,burn,forecast,regression-loops,
// cache-stats,alerts,alert-rules}. allow_local_webhooks: creditd --allow-local-webhooks.
AnalyticsRoute make_analytics_routes(Engine& engine, analytics::Analytics& analytics,
                                     bool allow_local_webhooks);

// Signs (Creditd-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">) and POSTs
// one delivery, 5 s in all, no redirects (a 3xx is a failure). Loopback, private and
// link-local targets are refused unless allow_local; plain http is allowed only with
// allow_local and only to such targets (never to a public address).
analytics::WebhookSender make_webhook_sender(bool allow_local);

// Is this webhook URL acceptable? (https; no userinfo; not a loopback, private or
// link-local address literal or "localhost" unless allow_local, which also allows http
// to exactly those local hosts, never to a public one.)
std::optional<std::string> webhook_url_problem(std::string_view url, bool allow_local);

// The HTTP handler creditd serves: POST /v1/admin/import here, everything else to `api`.
class ImportingHandler final : public Handler {
 public:
  ImportingHandler(Api& api, Engine& engine, analytics::Analytics& analytics, const Clock& clock,
                   ApiOptions options);
  ~ImportingHandler() override;  // waits for imports in progress
  void handle(HttpRequest&& req, Responder respond) override;
  std::optional<Error> check_head(const HttpRequest& head) override {
    return api_.check_head(head);
  }

 private:
  void run_import(HttpRequest req, bool apply, Responder respond);

  Api& api_;
  Engine& engine_;
  analytics::Analytics& analytics_;
  const Clock& clock_;
  ApiOptions options_;
  std::mutex import_mu_;  // one import at a time, in arrival order
  std::mutex active_mu_;
  std::condition_variable active_cv_;
  std::size_t active_ = 0;
};

}  // namespace credit::server
