// src/server/http_server.h
// HTTP/1.1 with keep-alive on Boost.Beast: accepts connections, reads one request at a
// time per connection (a pipelined request waits until the previous answer is written),
// hands it to a Handler, and writes the answer the Handler gives back, from any thread.
// A Handler may take a body as a stream instead (stream_body, for the import): the session
// then hands it each piece as it is read and keeps none of it, and stops reading while the
// sink is full (back-pressure), so a body of any size costs a bounded amount of memory.
// Owns: connections, the limits on headers and bodies (API.md: 1 MiB, 16 MiB for
//   /v1/batch, the import limit for /v1/admin/import), idle timeouts, graceful stop, the
//   errors for requests that never reach a Handler (400, 413), the hand-off of a
//   streamed body.
// Does not: route, authenticate or parse JSON (routes, json_reader.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace credit::server {

struct HttpRequest {
  std::string method;  // as sent, e.g. "GET"
  std::string path;    // the target before '?', percent-decoded ('+' stays '+')
  std::vector<std::pair<std::string, std::string>> query;  // percent- and '+'-decoded
  std::string authorization;                               // the Authorization header, or empty
  std::string idempotency_key_header;
  bool has_idempotency_key_header = false;
  // The header came more than once: refused where the key is read (400, field validation
  // in API.md's order), as two readers could take different ones.
  bool idempotency_key_header_repeated = false;
  std::string content_type;
  std::string body;
  bool from_loopback = false;  // the peer is 127.0.0.0/8 or ::1 (GET /metrics)

  // The first value of query parameter `name`, or empty.
  std::string_view query_param(std::string_view name) const;
  bool has_query(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers (Retry-After, Idempotent-Replayed, ...). A name or value holding CR or
  // LF is dropped rather than written, so no header can be injected.
  std::vector<std::pair<std::string, std::string>> headers;
};

// Answers one request. Call it exactly once, from any thread; later calls are ignored.
// Dropping every copy without calling it answers 500, so a connection never hangs.
using Responder = std::function<void(HttpResponse&&)>;

// Called to let the session read on after a BodySink said it was full. Any thread, once;
// it holds the connection until it is called or dropped.
using Resume = std::function<void()>;

// Takes a request's body in pieces as they are read (Handler::stream_body). The session
// calls write() for each piece in order, then exactly one of finish() or abort(), all on
// an I/O thread and never two at once.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // The next bytes of the body (valid during the call; a piece holds at most one read,
  // 64 KiB). true: send more. false: the sink is full and the session reads nothing more
  // until `resume` (a copy kept by the sink) is called; after abort() the sink may drop it.
  virtual bool write(std::string_view bytes, const Resume& resume) = 0;
  // The body is complete: answer through `respond` (as Handler::handle would).
  virtual void finish(Responder respond) = 0;
  // The body will not complete: the client left or broke the framing, the body went over
  // its limit, or the server is stopping. Nothing is answered (the session answers a 400
  // or 413 itself, or has no one to answer).
  virtual void abort() = 0;
  // Whether the sink answers a body that went over its limit itself (finish_over_limit)
  // instead of being aborted under a 413: a sink that acts on the pieces as they come (an
  // import applies them) cannot take them back, so its answer must say what it did.
  virtual bool answers_over_limit() const { return false; }
  // The body went over `limit_bytes` after the pieces written so far: answer through
  // `respond` (the rest of the body is not read). Only when answers_over_limit().
  virtual void finish_over_limit(std::size_t limit_bytes, Responder respond) {
    (void)limit_bytes;
    (void)respond;
  }
};

class Handler {
 public:
  virtual ~Handler() = default;
  // Called on an I/O thread for every complete request. Must not block for long: hand
  // slow work to another thread and answer through `respond`.
  virtual void handle(HttpRequest&& req, Responder respond) = 0;
  // Called on an I/O thread once the headers are in and before the body is read (`body`
  // is empty). An Error is answered at once and the body is never read: this lets routes
  // refuse a request that is unauthorised (401 comes before 413 in API.md) before a large
  // body is buffered. The default admits everything.
  virtual std::optional<Error> check_head(const HttpRequest& head) {
    (void)head;
    return std::nullopt;
  }
  // Called on an I/O thread after check_head passed and the Content-Length, if any, is
  // within the path's limit, before the body is read (`body` is empty). A sink takes the
  // body as it arrives (handle() is not called); an Error is answered at once like
  // check_head's. The default (null) reads the body whole for handle().
  virtual Result<std::shared_ptr<BodySink>> stream_body(const HttpRequest& head) {
    (void)head;
    return std::shared_ptr<BodySink>();
  }
  // Called on an I/O thread for each answer the server gives itself, without handle()
  // (a head refused by check_head or stream_body, 413, headers over the limit, a request that is
  // not HTTP): lets the handler count it. `method` and `path` are empty when the head was not read.
  virtual void answered_early(std::string_view method, std::string_view path,
                              const HttpResponse& answer) {
    (void)method;
    (void)path;
    (void)answer;
  }
};

// While one is alive on a thread, the answers given on that thread (Responder calls) are
// gathered and handed to the I/O threads together when the outermost one ends: one
// wake-up of an I/O thread for many answers instead of one per answer.
class AnswerBatch {
 public:
  AnswerBatch();
  ~AnswerBatch();
  AnswerBatch(const AnswerBatch&) = delete;
  AnswerBatch& operator=(const AnswerBatch&) = delete;
};

// Limits with their units; the defaults are those of API.md and DESIGN.md section 5.
struct HttpServerOptions {
  std::string address = "127.0.0.1";
  unsigned short port = 8080;  // 0 = an ephemeral port; see HttpServer::port()
  int io_threads = 1;
  std::size_t connections_max = 10'000;
  std::size_t header_bytes_max = 16 * 1024;
  std::size_t body_bytes_max = 1 << 20;
  std::size_t batch_body_bytes_max = 16 << 20;  // for path /v1/batch
  // For path /v1/admin/import, whose body creditd streams (ImportingHandler::stream_body):
  // nothing holds it whole, so the limit is one of sanity, not of memory. A Handler that
  // does not stream the path would buffer up to this much.
  std::size_t import_body_bytes_max = std::size_t{64} << 30;
  std::int64_t idle_timeout_ms = 60'000;  // per read or write without progress
  // A body must also keep this average rate: each byte read extends its deadline by
  // 1 / rate s, never past idle_timeout_ms from now, so trickling one byte now and then
  // does not hold a connection (and its buffer) for ever. A pause of the server's own (a
  // full import sink) does not count.
  std::size_t body_bytes_per_second_min = 4 * 1024;
  // Bodies buffered whole (every path but a streamed one) in all connections together;
  // a request whose body would pass it gets 503 overloaded (Retry-After) and a close.
  std::size_t buffered_body_bytes_max = std::size_t{1} << 30;
  std::int64_t linger_ms = 2'000;  // reading and dropping a refused body before close
  // Called on an I/O thread after a run of Handler::handle calls (the requests read
  // together): lets the work they queued be handed on with one wake-up. Optional.
  std::function<void()> after_handling;
};

// Takes the next segment of a path off the front of `rest` (empty ones are skipped: "/v1//x/"
// is v1, x); "" when none is left. The router (api.cc) and the body limits read paths so.
std::string_view next_path_segment(std::string_view& rest);

// The body limit of a request to `path` under `options` (its segments as the router
// reads them: "/v1/batch/" and "/v1//batch" are the batch route).
std::size_t body_bytes_max_for_path(const HttpServerOptions& options, std::string_view path);

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(HttpServerOptions options, Handler& handler);
  ~HttpServer();  // stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, then starts the I/O threads. An error (kInvalidRequest, naming the
  // address) when the address is bad or cannot be bound.
  Status start();
  // Whether start() could bind this address now: binds a socket as start() does and closes
  // it. creditd asks before a recovery that may take seconds, so that a port in use or an
  // address not of this machine stops the start at once (start() still decides).
  static Status check_can_listen(const std::string& address, unsigned short port);
  // The bound port (the ephemeral one when options.port was 0); 0 before start().
  unsigned short port() const;
  // Stops accepting, closes connections that wait for a request, lets each request
  // already handed to the Handler be answered and written, then joins the I/O threads.
  // Waits for every outstanding Responder: the Handler must answer or drop them all.
  // Call from a thread that is not an I/O thread. Idempotent.
  void stop();

  struct Core;

 private:
  std::unique_ptr<Core> core_;
};

// Decodes a query string ("a=1&b=x%20y") into `out`; false on a bad percent escape.
bool decode_query(std::string_view query, std::vector<std::pair<std::string, std::string>>& out);

}  // namespace credit::server
