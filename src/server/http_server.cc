// src/server/http_server.cc
// The connection state machine behind http_server.h. One Session per connection, on a
// strand of its own; the head is read first so the body limit can depend on the path:
//   read head -> [check_head, 413 by Content-Length, 100 Continue] -> read body
//   -> Handler::handle -> (Responder, any thread, posted to the strand) -> write
//   -> read the next head, or close.
// A request refused before its body was read (400, 413, check_head) is answered
// with Connection: close; the rest of what the client sends is read and dropped for
// linger_ms so the answer reaches it instead of a TCP reset.
// A streamed body (Handler::stream_body) goes the same way, except that each read's bytes
// go to the BodySink and are dropped from the session at once:
//   read body -> write(piece) -> [full: paused until the sink's Resume] -> read body ...
//   -> finish(Responder) -> write the answer; any failure or stop on the way -> abort().
#include "server/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <limits>
#include <list>
#include <mutex>
#include <thread>

#include "base/assert.h"
#include "server/json_reader.h"

namespace credit::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// After accept fails (out of file descriptors, say), wait this long before the next
// accept so a full table does not spin an I/O thread.
constexpr std::chrono::milliseconds kAcceptBackoff{50};
// Bytes read per call while dropping a refused body.
constexpr std::size_t kDrainChunkBytes = 64 * 1024;
// A whole body's storage is reserved from its Content-Length up to this (the largest
// limit of a body that is not streamed); a larger one grows as it arrives.
constexpr std::size_t kBodyReserveBytesMax = 16 << 20;
constexpr std::string_view kPathBatch = "/v1/batch";
constexpr std::string_view kPathImport = "/v1/admin/import";
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// Answer to a request whose Responder was dropped unanswered: a bug in a route, reported
// as such rather than leaving the client waiting.
constexpr std::string_view kDroppedBody =
    R"({"error":{"code":"internal","message":"the server dropped the request without an answer"}})";
constexpr int kStatusInternal = 500;

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

bool has_crlf(std::string_view s) {
  return s.find_first_of("\r\n") != std::string_view::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A query's parts ('+' is a space) or a path ('+' stays; an encoded '/' is refused: it
// would decode into a segment boundary that a proxy in front did not see, and no id holds
// one).
enum class Encoded { kQuery, kPath };

bool percent_decode(std::string_view in, std::string& out, Encoded part = Encoded::kQuery) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+' && part == Encoded::kQuery) {
      out += ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = hex_value(in[i + 1]);
      const int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      if (part == Encoded::kPath && hi * 16 + lo == '/') return false;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += c;
    }
  }
  return true;
}

bool no_body_status(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

bool is_loopback(const tcp::endpoint& ep) {
  const net::ip::address a = ep.address();
  if (a.is_loopback()) return true;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).is_loopback();
  }
  return false;
}

// A Beast Body for requests: the bytes read so far, which are the whole body for
// Handler::handle, or, when `streamed`, only those of the last read (the session hands
// them to the BodySink and clears them, so they never add up).
struct RequestBody {
  struct value_type {
    std::string bytes;
    bool streamed = false;
  };

  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, beast::error_code& ec) {
      ec = {};
      if (length && !body_.streamed) {
        body_.bytes.reserve(
            static_cast<std::size_t>(std::min<std::uint64_t>(*length, kBodyReserveBytesMax)));
      }
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      ec = {};
      const std::size_t extra = beast::buffer_bytes(buffers);
      const std::size_t size = body_.bytes.size();
      body_.bytes.resize(size + extra);
      net::buffer_copy(net::buffer(body_.bytes.data() + size, extra), buffers);
      return extra;
    }

    void finish(beast::error_code& ec) { ec = {}; }

   private:
    value_type& body_;
  };
};

}  // namespace

std::string_view HttpRequest::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return v;
  }
  return {};
}

bool HttpRequest::has_query(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return true;
  }
  return false;
}

bool decode_query(std::string_view query, std::vector<std::pair<std::string, std::string>>& out) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    std::string key;
    std::string value;
    if (!percent_decode(part.substr(0, eq), key)) return false;
    if (eq != std::string_view::npos && !percent_decode(part.substr(eq + 1), value)) {
      return false;
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return true;
}

std::string_view next_path_segment(std::string_view& rest) {
  while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  const std::size_t end = std::min(rest.find('/'), rest.size());
  const std::string_view segment = rest.substr(0, end);
  rest.remove_prefix(end);
  return segment;
}

namespace {
// Whether two paths have the same segments (no allocation: this runs for every request).
bool same_segments(std::string_view a, std::string_view b) {
  for (;;) {
    const std::string_view x = next_path_segment(a), y = next_path_segment(b);
    if (x != y) return false;
    if (x.empty()) return true;
  }
}
}  // namespace

std::size_t body_bytes_max_for_path(const HttpServerOptions& options, std::string_view path) {
  if (same_segments(path, kPathBatch)) return options.batch_body_bytes_max;
  if (same_segments(path, kPathImport)) return options.import_body_bytes_max;
  return options.body_bytes_max;
}

namespace {
class Session;
}  // namespace

struct HttpServer::Core {
  Core(HttpServerOptions o, Handler& h)
      : options(std::move(o)),
        handler(h),
        ioc(std::max(1, options.io_threads)),
        acceptor(net::make_strand(ioc)),
        accept_backoff(acceptor.get_executor()) {}

  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);
  // With one I/O thread every handler runs on it in turn, so a connection needs no
  // strand: one would only add a queue and a post to every operation.
  bool single_io_thread() const { return options.io_threads <= 1; }
  // After a handle(): calls options.after_handling once the requests read with it are
  // handled.
  void schedule_flush() {
    if (!options.after_handling || flush_posted.exchange(true, std::memory_order_acq_rel)) return;
    // Completions already queued (the other requests of this read) run before it.
    net::post(ioc, [this] {
      flush_posted.store(false, std::memory_order_release);
      options.after_handling();
    });
  }
  void session_ended(std::list<std::weak_ptr<Session>>::iterator it);

  const HttpServerOptions options;
  Handler& handler;
  net::io_context ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  tcp::acceptor acceptor;
  net::steady_timer accept_backoff;
  std::vector<std::thread> threads;
  std::atomic<unsigned short> port{0};
  std::atomic<bool> flush_posted{false};
  // Session::post_from_outside calls between their post and the end of their copy of the
  // session's executor: stop() waits for them, since the io_context (and the strand
  // service that copy points into) dies with the server.
  std::atomic<std::size_t> delivering{0};
  // Bytes of bodies being read into memory, in every session (options.buffered_body_bytes_max).
  std::atomic<std::size_t> buffered_body_bytes{0};

  std::mutex mu;
  std::condition_variable all_closed;
  bool started = false;                        // under mu
  bool stopping = false;                       // under mu
  std::list<std::weak_ptr<Session>> sessions;  // under mu
  std::size_t live = 0;                        // under mu
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer::Core& core, tcp::socket&& socket, bool from_loopback)
      : core_(core), stream_(std::move(socket)), from_loopback_(from_loopback) {}
  ~Session() {
    abort_stream();
    release_buffered();
    core_.session_ended(registry_it_);
  }

  void set_registry_it(std::list<std::weak_ptr<Session>>::iterator it) { registry_it_ = it; }

  void start() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::read_head, shared_from_this()));
  }

  // From stop(): close if waiting for a request; otherwise close after the answer.
  void request_stop() {
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->stop_requested_ = true;
      if (self->state_ == State::kReadingHead || self->state_ == State::kReadingBody ||
          self->state_ == State::kContinue || self->state_ == State::kPaused) {
        self->close();
      }
    });
  }

  // From any thread: the Handler's answer (gathered while an AnswerBatch is alive).
  static void deliver(std::shared_ptr<Session> self, HttpResponse&& res);

  // On the only I/O thread, from a handler posted to it (never from inside handle()):
  // the answer is written at once, without another trip through the queue.
  static void deliver_here(const std::shared_ptr<Session>& self, HttpResponse&& res) {
    CREDIT_ASSERT(self->core_.single_io_thread());
    self->on_response(std::move(res));
  }

  // On an I/O thread: the answer goes to the session's strand.
  static void deliver_now(std::shared_ptr<Session> self, HttpResponse&& res) {
    post_from_outside(std::move(self), [res = std::move(res)](Session& s) mutable {
      s.on_response(std::move(res));
    });
  }

  // From a thread that is not an I/O thread: runs fn(session) on the session's strand.
  // The posted work may end the session, and with the last session stop() may go on to
  // destroy the io_context while this thread still holds its copy of the executor (found
  // by AddressSanitizer: a heap-use-after-free in ~strand_impl); `delivering` makes stop()
  // wait until the copy is gone. Nothing of the server is touched after the decrement.
  template <typename Fn>
  static void post_from_outside(std::shared_ptr<Session> self, Fn fn) {
    std::atomic<std::size_t>& delivering = self->core_.delivering;
    delivering.fetch_add(1, std::memory_order_relaxed);
    {
      auto executor = self->stream_.get_executor();
      net::post(executor, [self = std::move(self), fn = std::move(fn)]() mutable { fn(*self); });
    }
    delivering.fetch_sub(1, std::memory_order_release);
  }

  HttpServer::Core& core() { return core_; }

 private:
  enum class State {
    kReadingHead,
    kContinue,
    kReadingBody,
    kPaused,  // a streamed body's sink is full: no read until its Resume
    kHandling,
    kWriting,
    kLingering,
    kClosed
  };

  std::chrono::milliseconds idle_timeout() const {
    return std::chrono::milliseconds(core_.options.idle_timeout_ms);
  }

  void read_head() {
    if (stop_requested_) return close();
    const HttpServerOptions& o = core_.options;
    parser_.emplace();
    head_read_ = false;
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(o.header_bytes_max, std::numeric_limits<std::uint32_t>::max())));
    // No limit while the head is read: the path's own is applied once the key is checked
    // (API.md's order: 401 before 413, whatever the Content-Length says). Not boost::none:
    // Boost 1.74's parser compares a length with it as with a value below every length.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    state_ = State::kReadingHead;
    stream_.expires_after(idle_timeout());
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_head, shared_from_this()));
  }

  // Errors of a request that cannot be answered normally; false when the connection
  // should just close (the peer left, timed out, or we are stopping).
  bool refuse_on_read_error(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      HttpResponse res =
          error_response(Error(ErrorCode::kInvalidRequest,
                               "the request headers are larger than " +
                                   std::to_string(core_.options.header_bytes_max) + " bytes")
                             .with_string("param", "headers"));
      // 400, as API.md's table gives invalid_request (HTTP also has 431 for this; the
      // contract's statuses win).
      answer_early(std::move(res), true);
      return true;
    }
    if (ec == http::error::body_limit) {
      refuse_body_too_large();
      return true;
    }
    const bool http_syntax =
        ec.category() == http::make_error_code(http::error::bad_method).category();
    if (http_syntax && ec != http::error::end_of_stream && ec != http::error::partial_message) {
      answer_early(error_response(Error(ErrorCode::kInvalidRequest,
                                        "the request is not valid HTTP/1.1: " + ec.message())
                                      .with_string("param", "request")),
                   true);
      return true;
    }
    return false;
  }

  void refuse_body_too_large() {
    Error e(ErrorCode::kBodyTooLarge,
            "the body is larger than " + std::to_string(body_limit_) + " bytes");
    e.with("limit_bytes", std::to_string(body_limit_));
    answer_early(error_response(e), true);
  }

  // An answer the session gives itself, counted by the handler first.
  void answer_early(HttpResponse&& res, bool close_after) {
    core_.handler.answered_early(head_read_ ? std::string_view(req_.method) : std::string_view(),
                                 head_read_ ? std::string_view(req_.path) : std::string_view(),
                                 res);
    write_response(std::move(res), close_after);
  }

  void on_head(beast::error_code ec, std::size_t head_bytes) {
    if (ec) {
      const std::string_view target = sv(parser_->get().target());
      body_limit_ = body_bytes_max_for_path(core_.options, target.substr(0, target.find('?')));
      if (!refuse_on_read_error(ec)) close();
      return;
    }
    // Beast checks its header limit only where a read ends: a head a little over it can
    // slip through. The bytes the parser took for this head are exact.
    if (head_bytes > core_.options.header_bytes_max) {
      const std::string_view target = sv(parser_->get().target());
      body_limit_ = body_bytes_max_for_path(core_.options, target.substr(0, target.find('?')));
      head_read_ = false;
      return (void)refuse_on_read_error(http::error::header_limit);
    }
    auto& msg = parser_->get();
    const std::string_view target = sv(msg.target());
    const std::size_t qmark = target.find('?');
    req_.method.assign(sv(msg.method_string()));
    req_.path.assign(target.substr(0, qmark));
    req_.query.clear();
    req_.authorization.clear();
    req_.idempotency_key_header.clear();
    req_.has_idempotency_key_header = false;
    req_.idempotency_key_header_repeated = false;
    req_.content_type.clear();
    req_.body.clear();
    req_.from_loopback = from_loopback_;
    head_read_ = true;
    body_limit_ = body_bytes_max_for_path(core_.options, req_.path);
    is_head_ = msg.method() == http::verb::head;

    // Transfer-Encoding is "chunked" alone, on HTTP/1.1 (RFC 9112 section 6.1). With any
    // other coding the body's length is unknown here, but not to a proxy in front: its
    // bytes would be read as the next request. Refused, and the connection closed.
    if (auto te = msg.find(http::field::transfer_encoding); te != msg.end()) {
      // The parser keeps a field's value without the whitespace around it.
      if (msg.count(http::field::transfer_encoding) != 1 || msg.version() != 11 ||
          !beast::iequals(te->value(), "chunked")) {
        answer_early(error_response(Error(ErrorCode::kInvalidRequest,
                                          "Transfer-Encoding may only be chunked (HTTP/1.1)")
                                        .with_string("param", "Transfer-Encoding")),
                     true);
        return;
      }
    }

    if (req_.path.empty() || req_.path.front() != '/') {
      return refuse(Error(ErrorCode::kInvalidRequest, "the request target must be a path")
                        .with_string("param", "path"));
    }
    // A client may escape an id's ':' (API.md's ids are [A-Za-z0-9._:-]); routes read the
    // decoded path. A bad escape is answered after the key is checked (API.md's order: 401
    // first), which reads no path.
    std::optional<Error> bad_escape;
    if (req_.path.find('%') != std::string::npos) {
      std::string decoded;
      if (!percent_decode(req_.path, decoded, Encoded::kPath)) {
        bad_escape = Error(ErrorCode::kInvalidRequest,
                           "the path has a bad percent escape or an encoded '/' (%2F)")
                         .with_string("param", "path");
      } else {
        req_.path = std::move(decoded);
        body_limit_ = body_bytes_max_for_path(core_.options, req_.path);
      }
    }
    if (!bad_escape && qmark != std::string_view::npos &&
        !decode_query(target.substr(qmark + 1), req_.query)) {
      bad_escape = Error(ErrorCode::kInvalidRequest, "the query has a bad percent escape")
                       .with_string("param", "query");
    }
    // Two of a header that names who calls or which operation this is would let two
    // readers disagree; refuse instead of picking one. Two Authorization headers leave no
    // caller to check, so they are refused at once; two Idempotency-Key headers where the
    // route reads its key (API.md's order: 401, invalid_json, 403 and 404 first).
    // RFC 9112 3.2: a request with more than one Host header is a 400 whatever its
    // version, and so is an HTTP/1.1 request without one (HTTP/1.0 may leave it out).
    // creditd routes on no host, but a request a proxy in front could read another way is
    // refused, as the framing checks above are.
    if (const std::size_t hosts = msg.count(http::field::host);
        hosts > 1 || (hosts == 0 && msg.version() >= 11)) {
      return refuse(Error(ErrorCode::kInvalidRequest,
                          hosts > 1 ? "the Host header may appear once"
                                    : "an HTTP/1.1 request carries exactly one Host header")
                        .with_string("param", "Host"));
    }
    if (msg.count(http::field::authorization) > 1) {
      return refuse(Error(ErrorCode::kInvalidRequest, "the Authorization header may appear once")
                        .with_string("param", "Authorization"));
    }
    req_.idempotency_key_header_repeated = msg.count("Idempotency-Key") > 1;
    if (auto it = msg.find(http::field::authorization); it != msg.end()) {
      req_.authorization.assign(sv(it->value()));
    }
    if (auto it = msg.find("Idempotency-Key"); it != msg.end()) {
      req_.idempotency_key_header.assign(sv(it->value()));
      req_.has_idempotency_key_header = true;
    }
    if (auto it = msg.find(http::field::content_type); it != msg.end()) {
      req_.content_type.assign(sv(it->value()));
    }

    if (std::optional<Error> refused = core_.handler.check_head(req_)) {
      return refuse(*refused);
    }
    if (bad_escape) return refuse(*bad_escape);
    if (const auto length = parser_->content_length(); length && *length > body_limit_) {
      return refuse_body_too_large();
    }
    Result<std::shared_ptr<BodySink>> sink = core_.handler.stream_body(req_);
    if (!sink.ok()) return refuse(sink.error());
    sink_ = std::move(*sink);
    parser_->get().body().streamed = sink_ != nullptr;
    parser_->body_limit(static_cast<std::uint64_t>(body_limit_));
    if (parser_->is_done()) return on_request();
    if (const auto length = parser_->content_length();
        length && !sink_ && !reserve_buffered(*length)) {
      return refuse_overloaded();
    }
    body_deadline_ = std::chrono::steady_clock::now() + idle_timeout();

    // An HTTP/1.0 client's 100-continue is ignored (RFC 9110 10.1.1): it waits for no 100.
    if (auto it = msg.find(http::field::expect);
        msg.version() >= 11 && it != msg.end() && beast::iequals(it->value(), "100-continue")) {
      state_ = State::kContinue;
      stream_.expires_after(idle_timeout());
      net::async_write(stream_, net::buffer(kContinue.data(), kContinue.size()),
                       beast::bind_front_handler(&Session::on_continue, shared_from_this()));
      return;
    }
    read_body();
  }

  // A request answered from its head alone: the body, if any, is never read, so the
  // connection cannot carry another request unless there was no body.
  void refuse(const Error& error) {
    const bool body_unread = !parser_->is_done();
    answer_early(error_response(error), body_unread || !parser_->get().keep_alive());
  }

  void on_continue(beast::error_code ec, std::size_t) {
    if (ec || stop_requested_) return close();
    body_deadline_ = std::chrono::steady_clock::now() + idle_timeout();
    read_body();
  }

  void read_body() {
    state_ = State::kReadingBody;
    // Not reset per read: each byte buys 1 / body_bytes_per_second_min s (on_body), so a
    // trickle ends at the deadline while a steady upload never meets it.
    stream_.expires_at(body_deadline_);
    http::async_read_some(stream_, buffer_, *parser_,
                          beast::bind_front_handler(&Session::on_body, shared_from_this()));
  }

  void on_body(beast::error_code ec, std::size_t bytes) {
    if (ec == http::error::body_limit && sink_ && sink_->answers_over_limit()) {
      // A sink that acted on what it took answers for itself, saying where the body was
      // cut (a 413 would claim that nothing changed); the rest is not read.
      std::shared_ptr<BodySink> sink = std::move(sink_);
      state_ = State::kHandling;
      stream_.expires_never();
      keep_alive_ = false;
      sink->finish_over_limit(body_limit_, make_responder());
      return;
    }
    if (ec) {
      abort_stream();
      if (!refuse_on_read_error(ec)) close();
      return;
    }
    // The bytes buy time at the minimum rate; the deadline never passes the idle timeout
    // from now (which also bounds the time bought).
    const auto now = std::chrono::steady_clock::now();
    const double rate =
        static_cast<double>(std::max<std::size_t>(core_.options.body_bytes_per_second_min, 1));
    const auto bought = std::min<std::chrono::duration<double>>(
        std::chrono::duration<double>(static_cast<double>(bytes) / rate), idle_timeout());
    body_deadline_ = std::min(
        now + idle_timeout(),
        body_deadline_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(bought));
    // A body read whole is counted against the sessions' budget as it grows (a chunked
    // one has no length to reserve up front).
    if (!sink_ && !reserve_buffered(parser_->get().body().bytes.size())) return refuse_overloaded();
    const bool more = !sink_ || pass_to_sink();
    if (parser_->is_done()) return on_request();
    if (!more) {
      state_ = State::kPaused;
      return;
    }
    read_body();
  }

  // Hands the bytes of the last read to the sink and drops them; false when it is full.
  bool pass_to_sink() {
    std::string& bytes = parser_->get().body().bytes;
    if (bytes.empty()) return true;
    const Resume resume = [self = shared_from_this()] {
      post_from_outside(self, [](Session& s) { s.on_resume(); });
    };
    const bool more = sink_->write(bytes, resume);
    bytes.clear();
    return more;
  }

  void on_resume() {
    if (state_ != State::kPaused) return;  // closed (the sink was aborted) meanwhile
    if (stop_requested_) return close();
    // The wait was the server's own (its sink was full): not the client's to pay for.
    body_deadline_ = std::chrono::steady_clock::now() + idle_timeout();
    read_body();
  }

  // Counts this session's buffered body as `bytes` in all, if the sessions' budget has
  // room for the growth; false (and nothing counted) otherwise.
  bool reserve_buffered(std::size_t bytes) {
    if (bytes <= buffered_bytes_) return true;
    const std::size_t more = bytes - buffered_bytes_;
    const std::size_t before = core_.buffered_body_bytes.fetch_add(more, std::memory_order_relaxed);
    if (before + more > core_.options.buffered_body_bytes_max) {
      core_.buffered_body_bytes.fetch_sub(more, std::memory_order_relaxed);
      return false;
    }
    buffered_bytes_ = bytes;
    return true;
  }
  void release_buffered() {
    if (buffered_bytes_ == 0) return;  // most requests: the body came with the head
    core_.buffered_body_bytes.fetch_sub(buffered_bytes_, std::memory_order_relaxed);
    buffered_bytes_ = 0;
  }

  // The bodies being read in every session fill their budget: 503 overloaded, retried
  // after a second, and the connection closed (its body is not read).
  void refuse_overloaded() {
    release_buffered();
    // error_response gives an overloaded answer its Retry-After.
    answer_early(error_response(Error(ErrorCode::kOverloaded,
                                      "the server holds too many request bodies; retry later")),
                 true);
  }

  // The streamed body will not complete: tell its sink, once.
  void abort_stream() {
    if (std::shared_ptr<BodySink> sink = std::move(sink_)) sink->abort();
  }

  void on_request() {
    state_ = State::kHandling;
    stream_.expires_never();
    release_buffered();  // the body is the handler's from here
    keep_alive_ = parser_->get().keep_alive();
    http10_ = parser_->get().version() == 10;
    if (std::shared_ptr<BodySink> sink = std::move(sink_)) {
      sink->finish(make_responder());
      return;
    }
    req_.body = std::move(parser_->get().body().bytes);
    try {
      core_.handler.handle(std::move(req_), make_responder());
    } catch (const std::exception& e) {
      // A throwing route is a bug; its dropped Responder answers 500.
      std::fprintf(stderr, "creditd: http handler threw: %s\n", e.what());
    }
    core_.schedule_flush();
  }

  // The answer to the request being handled: exactly once, from any thread; dropped
  // unanswered, it answers 500.
  Responder make_responder() {
    struct Slot {
      explicit Slot(std::shared_ptr<Session> s) : session(std::move(s)) {}
      ~Slot() {
        if (!answered.load(std::memory_order_acquire) && session) {
          HttpResponse res;
          res.status = kStatusInternal;
          res.body = kDroppedBody;
          deliver(std::move(session), std::move(res));
        }
      }
      void send(HttpResponse&& res) {
        if (answered.exchange(true, std::memory_order_acq_rel)) return;
        deliver(std::move(session), std::move(res));
      }
      std::shared_ptr<Session> session;
      std::atomic<bool> answered{false};
    };
    auto slot = std::make_shared<Slot>(shared_from_this());
    return [slot = std::move(slot)](HttpResponse&& res) { slot->send(std::move(res)); };
  }

  void on_response(HttpResponse&& res) {
    if (state_ != State::kHandling) return;
    write_response(std::move(res), !keep_alive_ || stop_requested_);
  }

  void write_response(HttpResponse&& res, bool close_after) {
    res_ = std::move(res);
    close_after_write_ = close_after;
    const bool with_body = !no_body_status(res_.status);
    head_.clear();
    head_ += "HTTP/1.1 ";
    head_ += std::to_string(res_.status);
    head_ += ' ';
    head_ += sv(http::obsolete_reason(http::int_to_status(static_cast<unsigned>(res_.status))));
    head_ += "\r\nServer: creditd\r\n";
    if (with_body) {
      if (!res_.content_type.empty() && !has_crlf(res_.content_type)) {
        head_ += "Content-Type: ";
        head_ += res_.content_type;
        head_ += "\r\n";
      }
      head_ += "Content-Length: ";
      head_ += std::to_string(res_.body.size());
      head_ += "\r\n";
    }
    for (const auto& [name, value] : res_.headers) {
      if (name.empty() || has_crlf(name) || has_crlf(value)) continue;
      head_ += name;
      head_ += ": ";
      head_ += value;
      head_ += "\r\n";
    }
    if (close_after) {
      head_ += "Connection: close\r\n";
    } else if (http10_) {
      head_ += "Connection: keep-alive\r\n";
    }
    head_ += "\r\n";
    const bool send_body = with_body && !is_head_;
    std::array<net::const_buffer, 2> buffers{
        net::buffer(head_), send_body ? net::buffer(res_.body) : net::const_buffer()};
    state_ = State::kWriting;
    stream_.expires_after(idle_timeout());
    net::async_write(stream_, buffers,
                     beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return close();
    res_.body.clear();
    res_.headers.clear();
    // Only a request whose body was left unread needs the linger; otherwise nothing
    // unread can turn the close into a reset.
    if (close_after_write_) return parser_->is_done() ? close() : linger();
    read_head();
  }

  void linger() {
    state_ = State::kLingering;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(std::chrono::milliseconds(core_.options.linger_ms));
    drain();
  }

  void drain() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(kDrainChunkBytes),
                            beast::bind_front_handler(&Session::on_drain, shared_from_this()));
  }

  void on_drain(beast::error_code ec, std::size_t) {
    if (ec) return close();
    drain();
  }

  void close() {
    abort_stream();
    state_ = State::kClosed;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

  HttpServer::Core& core_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<RequestBody>> parser_;
  std::shared_ptr<BodySink> sink_;  // the streamed body's, from its head to finish or abort
  HttpRequest req_;
  HttpResponse res_;
  std::string head_;
  std::size_t body_limit_ = 0;
  std::size_t buffered_bytes_ = 0;  // of this body, counted in core_.buffered_body_bytes
  std::chrono::steady_clock::time_point body_deadline_{};  // read_body, on_body
  State state_ = State::kReadingHead;
  bool from_loopback_;
  bool keep_alive_ = true;
  bool http10_ = false;
  bool is_head_ = false;
  bool head_read_ = false;  // req_ holds this request's method and path
  bool close_after_write_ = false;
  bool stop_requested_ = false;
  std::list<std::weak_ptr<Session>>::iterator registry_it_;
};

// The answers gathered by the AnswerBatch scopes of this thread.
struct PendingAnswers {
  int depth = 0;
  std::vector<std::pair<std::shared_ptr<Session>, HttpResponse>> answers;
};
thread_local PendingAnswers t_pending_answers;

void Session::deliver(std::shared_ptr<Session> self, HttpResponse&& res) {
  PendingAnswers& pending = t_pending_answers;
  if (pending.depth > 0) {
    pending.answers.emplace_back(std::move(self), std::move(res));
    return;
  }
  deliver_now(std::move(self), std::move(res));
}

}  // namespace

void HttpServer::Core::do_accept() {
  auto accepted = [this](beast::error_code ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  };
  if (single_io_thread()) {
    acceptor.async_accept(ioc.get_executor(), std::move(accepted));
  } else {
    acceptor.async_accept(net::make_strand(ioc), std::move(accepted));
  }
}

void HttpServer::Core::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
  if (ec) {
    accept_backoff.expires_after(kAcceptBackoff);
    accept_backoff.async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec && acceptor.is_open()) do_accept();
    });
    return;
  }
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  const tcp::endpoint peer = socket.remote_endpoint(ignored);
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(mu);
    if (!stopping && live < options.connections_max) {
      ++live;
      session = std::make_shared<Session>(*this, std::move(socket), !ignored && is_loopback(peer));
      sessions.push_front(session);
      session->set_registry_it(sessions.begin());
    }
  }
  if (session) {
    session->start();
  } else {
    // Over connections_max (or stopping): accepted, then closed at once, so the client
    // learns now instead of waiting in the backlog.
    socket.close(ignored);
  }
  do_accept();
}

void HttpServer::Core::session_ended(std::list<std::weak_ptr<Session>>::iterator it) {
  std::lock_guard lock(mu);
  sessions.erase(it);
  CREDIT_ASSERT(live > 0);
  if (--live == 0) all_closed.notify_all();
}

AnswerBatch::AnswerBatch() {
  ++t_pending_answers.depth;
}

AnswerBatch::~AnswerBatch() {
  PendingAnswers& pending = t_pending_answers;
  CREDIT_ASSERT(pending.depth > 0);
  if (--pending.depth > 0 || pending.answers.empty()) return;
  // One post per server (usually one) carries all of its answers to an I/O thread, where
  // each goes on to its session's strand without another wake-up.
  using Answers = std::vector<std::pair<std::shared_ptr<Session>, HttpResponse>>;
  Answers all;
  all.swap(pending.answers);
  while (!all.empty()) {
    HttpServer::Core* core = &all.front().first->core();
    Answers mine;
    Answers rest;
    for (auto& a : all) (&a.first->core() == core ? mine : rest).push_back(std::move(a));
    net::post(core->ioc, [core, mine = std::move(mine)]() mutable {
      for (auto& [session, res] : mine) {
        if (core->single_io_thread()) {
          Session::deliver_here(session, std::move(res));
        } else {
          Session::deliver_now(std::move(session), std::move(res));
        }
      }
    });
    all.swap(rest);
  }
}

HttpServer::HttpServer(HttpServerOptions options, Handler& handler)
    : core_(std::make_unique<Core>(std::move(options), handler)) {}

HttpServer::~HttpServer() {
  stop();
}

unsigned short HttpServer::port() const {
  return core_->port.load();
}

namespace {
// Opens `acceptor` and binds it to address:port as creditd listens (reuse_address on); on an
// error closes it again and names the address and the step that failed.
Status bind_acceptor(tcp::acceptor& acceptor, const std::string& address_text,
                     unsigned short port) {
  const std::string where = address_text + ":" + std::to_string(port);
  beast::error_code ec;
  auto fail = [&](std::string_view what) -> Status {
    beast::error_code ignored;
    acceptor.close(ignored);
    return Error(ErrorCode::kInvalidRequest,
                 "cannot listen on " + where + ": " + std::string(what) + ": " + ec.message());
  };
  const net::ip::address address = net::ip::make_address(address_text, ec);
  if (ec) return fail("bad address");
  const tcp::endpoint endpoint(address, port);
  acceptor.open(endpoint.protocol(), ec);
  if (ec) return fail("open");
  acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (ec) return fail("reuse_address");
  acceptor.bind(endpoint, ec);
  if (ec) return fail("bind");
  return ok_status();
}
}  // namespace

Status HttpServer::check_can_listen(const std::string& address, unsigned short port) {
  net::io_context ioc;
  tcp::acceptor probe(ioc);
  return bind_acceptor(probe, address, port);  // closed as it goes out of scope
}

Status HttpServer::start() {
  Core& c = *core_;
  const std::string where = c.options.address + ":" + std::to_string(c.options.port);
  auto fail = [&](std::string_view what, const beast::error_code& ec) -> Status {
    beast::error_code ignored;
    c.acceptor.close(ignored);
    return Error(ErrorCode::kInvalidRequest,
                 "cannot listen on " + where + ": " + std::string(what) + ": " + ec.message());
  };
  {
    std::lock_guard lock(c.mu);
    if (c.started) return Error(ErrorCode::kInvalidRequest, "the server is already started");
  }
  if (Status s = bind_acceptor(c.acceptor, c.options.address, c.options.port); !s.ok()) return s;
  beast::error_code ec;
  c.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen", ec);
  c.port = c.acceptor.local_endpoint(ec).port();
  if (ec) return fail("local_endpoint", ec);

  {
    std::lock_guard lock(c.mu);
    c.started = true;
  }
  c.work.emplace(c.ioc.get_executor());
  net::dispatch(c.acceptor.get_executor(), [&c] { c.do_accept(); });
  const int threads = std::max(1, c.options.io_threads);
  for (int i = 0; i < threads; ++i) {
    c.threads.emplace_back([&c] {
      for (;;) {
        try {
          c.ioc.run();
          return;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "creditd: http I/O thread: %s\n", e.what());
        }
      }
    });
  }
  return ok_status();
}

void HttpServer::stop() {
  Core& c = *core_;
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(c.mu);
    if (!c.started || c.stopping) return;
    c.stopping = true;
    for (auto& weak : c.sessions) {
      if (auto s = weak.lock()) open.push_back(std::move(s));
    }
  }
  net::post(c.acceptor.get_executor(), [&c] {
    beast::error_code ignored;
    c.acceptor.close(ignored);
    c.accept_backoff.cancel();
  });
  for (auto& s : open) s->request_stop();
  open.clear();  // our references must not keep a session alive
  {
    std::unique_lock lock(c.mu);
    c.all_closed.wait(lock, [&c] { return c.live == 0; });
  }
  // An answer's deliverer may still hold a copy of its session's executor
  // (post_from_outside).
  while (c.delivering.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  c.work.reset();
  c.ioc.stop();
  for (auto& t : c.threads) t.join();
  c.threads.clear();
}

}  // namespace credit::server
