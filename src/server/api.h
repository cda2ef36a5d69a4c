// src/server/api.h
// The HTTP API of API.md: authentication and roles, routing, request validation, and
// the translation of requests into engine ops and of replies into HTTP answers.
// Owns: the check order of API.md (401; 413; 400 invalid_json; 403; 404; replay or 422;
// 400 validation; 429; 409 or 403; 402) up to the point where the ledger takes over.
// Does not: apply anything (engine.h) or compute analytics (analytics routes).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "server/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "time/clock.h"

namespace credit::server {

// The message of every 403 forbidden for a key's role or account, single request or batch
// op alike, so that the answer tells nothing of which accounts exist.
constexpr std::string_view kForbiddenMessage = "this key may not do that";

struct ApiOptions {
  ManualClock* manual_clock = nullptr;  // set with --clock manual
  std::string admin_key_hash_hex;
  std::string web_dir;  // served under /ui/
  bool allow_local_webhooks = false;
  // Metering submits do not wake the ledger thread: the HTTP server's after_handling
  // calls Engine::wake() once per run of requests. Only with that hook installed.
  bool defer_engine_wake = false;
};

struct Auth {
  Role role = Role::kRead;
  std::string account_id;  // for account keys
  std::string key_id;
};

// Answers the analytics routes of one account (GET .../usage etc.); set by main.
using AnalyticsRoute =
    std::function<bool(const HttpRequest& req, const std::string& account_id,
                       const std::string& route, const Auth& auth, Responder& respond)>;

class Api final : public Handler {
 public:
  Api(Engine& engine, MetricsRegistry& metrics, ApiOptions options);
  void handle(HttpRequest&& req, Responder respond) override;
  std::optional<Error> check_head(const HttpRequest& head) override;
  // Counts the answers the HTTP server gives without handle() (requests and rejections).
  // `respond` wrapped to count and time its answer under the request's route (what handle()
  // does for the requests it takes): for a request answered elsewhere, the streamed import.
  Responder timed(std::string_view method, std::string_view path, Responder respond);
  void answered_early(std::string_view method, std::string_view path,
                      const HttpResponse& answer) override;
  void set_analytics(AnalyticsRoute route) { analytics_ = std::move(route); }
  // GET /v1/accounts/{id}/audit (the audit report; its own module).
  void set_audit(AnalyticsRoute route) { audit_ = std::move(route); }
  // From here on every request is answered 503 shutting_down (a SIGTERM's grace before
  // the server stops: requests already submitted are still answered).
  void refuse_new_requests() { shutting_down_.store(true, std::memory_order_release); }

  ~Api() override;

  struct Impl;

 private:
  Engine& engine_;
  MetricsRegistry& metrics_;
  ApiOptions options_;
  AnalyticsRoute analytics_;
  AnalyticsRoute audit_;
  std::atomic<bool> shutting_down_{false};
  // The routes. One for the Api's life: their reads and submits capture it and run later
  // on the ledger and log threads, after handle() has returned.
  std::unique_ptr<Impl> impl_;
};

// Shared helpers for route files.
bool valid_id(std::string_view id);
// The refusal's message for an id field that is not valid_id: "<field> must be ...".
std::string id_rule(std::string_view field);
// The refusal's message for a `pool` the account's plan lacks (an empty `pool=` too).
inline constexpr std::string_view kNoSuchPoolMessage = "the account's plan has no such pool";
// The idempotency hashes: XXH3-128 of "a \x1f b". Scope and key give the table's key;
// "request" and the canonical command give the request hash. Imports use it too, so a
// key used by an import and by a request of the same account is the same key.
ledger::Hash128 hash128(std::string_view a, std::string_view b);
HttpResponse json_response(int status, std::string body);
std::optional<Auth> authenticate(const Engine& engine, const ApiOptions& options,
                                 std::string_view authorization);
// May this key read or meter this account? (admin and service: every account.)
bool reaches(const Auth& auth, std::string_view account_id);

}  // namespace credit::server
