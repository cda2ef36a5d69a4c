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
// The import is streamed: the HTTP session hands its body over in pieces as it is read
// (BodySink) to a worker thread that splits, parses and loads the lines in chunks
// (kImportChunkLinesMax or kImportChunkBytesMax), so its memory does not grow with the body.
// Owns: query parsing and validation, the JSON/NDJSON/CSV answers, the import (parse,
// checks, ledger commands at each line's instant), the balances alerts are judged on.
// Does not: keep analytics state (analytics/live.h) or route core requests (api.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "analytics/live.h"
#include "server/api.h"
#include "server/engine.h"
#include "time/clock.h"

namespace credit::server {

// The 400 of every time-ranged route (events, usage, hot-files, regression-loops,
// cache-stats, audit) for a `to` before `from`, as given (param "to").
constexpr std::string_view kToBeforeFromMessage = "to must not be before from";
// Events one page of GET .../events may look at before it answers with a cursor.
constexpr std::size_t kEventsScannedPerPageMax = 200'000;
// hot-files: the default `limit` (the largest is any list's, server/list_page.h).
constexpr std::size_t kHotFilesLimitDefault = 5;
// Import: line errors reported (the first by line number), ops per ledger batch, batches
// in flight.
constexpr std::size_t kImportErrorsMax = 100;
constexpr std::size_t kImportBatchOpsMax = 4096;
// One: each instant is durable and its balances taken for alert evaluation (a read job
// queued by the sink, which queues them behind the instant's events for the analytics
// worker) before the next instant is submitted, so alerts see the same states as live
// traffic.
constexpr std::size_t kImportBatchesInFlightMax = 1;
// Import: the lines parsed and held before they are loaded together (one account lookup
// and one durable append of the import log, or, with mode=apply, one sort by time): a
// chunk ends at this many lines or this many bytes of line text, whichever comes first.
// A parsed line is an Event of about 1 KiB before its strings, so 16,384 lines hold about
// 17 MiB (65,536 would hold 70 MiB for any body over a chunk).
constexpr std::size_t kImportChunkLinesMax = 16'384;
// mode=analytics logs a chunk's accepted events in slices of at most this many, each
// waited for, so that few parsed events are in flight at once.
constexpr std::size_t kImportEventsPerLogMax = 4'096;
constexpr std::size_t kImportChunkBytesMax = 16 << 20;
// mode=analytics's duplicate check: the key hashes (16 bytes each) one import keeps of
// its accounts' own events (about 64 MiB), and the events read per read job of the
// ledger thread while they are gathered.
constexpr std::size_t kImportKnownKeysMax = 4 << 20;
constexpr std::size_t kImportKeyScanEventsPerRead = 65'536;
// Body bytes queued between the HTTP session and the import worker; over this the session
// stops reading (the client's sends wait in TCP) until the worker has taken half of them.
constexpr std::size_t kImportQueuedBytesMax = 4 << 20;
// Webhooks: the whole delivery (resolve, connect, TLS, request, answer) and the answer's
// body that is read (and dropped).
constexpr std::int64_t kWebhookTimeoutMs = 5'000;
// Webhook URLs whose refusal (resolving to a local address) is logged, once each.
constexpr std::size_t kWebhookRefusalsLoggedMax = 1'024;
constexpr std::size_t kWebhookResponseBytesMax = 64 * 1024;

// Sets the engine's event sink: events go to the rollups, and the accounts they touch get
// their alerts evaluated in a read job; and its retention sink: the days the event log
// deletes leave the rollups. Call before engine.open() (recovery feeds it).
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

class ImportSink;

// The HTTP handler creditd serves: POST /v1/admin/import here, everything else to `api`.
//
// POST /v1/admin/import?mode=analytics|apply (API.md, "Operations") streams: the body is
// taken as it arrives (stream_body), one import runs at a time (the next waits, and so does
// its client, through back-pressure), and lines are loaded chunk by chunk, each line's
// error reported with its number. mode=analytics: per chunk, unknown accounts and
// duplicates (a key one of the account's events carries, live or imported, read from the
// event index; this import's earlier chunks are in the rollups by then) are refused line
// by line and the rest appended durably. mode=apply: each chunk is sorted by `at` and applied
// in time order. The first chunk keeps the whole-request rule: a line before the ledger's
// last logged instant or after the clock's now answers 409 backfill_out_of_order and
// nothing is applied (so a body of one chunk behaves as an unstreamed one). In a later
// chunk such a line (before the last instant already applied, or in the future) is
// refused on its own ("backfill_out_of_order: ...") and the rest load, so a body larger
// than a chunk should be in time order.
// A client that disconnects mid-body ends the import: the chunks already loaded stay
// loaded (durable; a line with an idempotency key is a duplicate if sent again), the
// lines read since are dropped, and nothing is answered.
class ImportingHandler final : public Handler {
 public:
  ImportingHandler(Api& api, Engine& engine, analytics::Analytics& analytics, const Clock& clock,
                   ApiOptions options);
  ~ImportingHandler() override;  // waits for imports in progress
  void handle(HttpRequest&& req, Responder respond) override;
  std::optional<Error> check_head(const HttpRequest& head) override {
    return api_.check_head(head);
  }
  // The import's body as a stream; null for every other route; 401, 403, 404 (not a
  // POST) or 400 (mode) answered from the head.
  Result<std::shared_ptr<BodySink>> stream_body(const HttpRequest& head) override;
  void answered_early(std::string_view method, std::string_view path,
                      const HttpResponse& answer) override {
    api_.answered_early(method, path, answer);
  }

 private:
  // Checks an import request's head and starts its worker.
  Result<std::shared_ptr<ImportSink>> start_import(const HttpRequest& head);
  // The worker: one import at a time, from the sink's pieces to the answer.
  void run_import(const std::shared_ptr<ImportSink>& sink, bool apply);

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
