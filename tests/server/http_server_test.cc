// tests/server/http_server_test.cc
// HttpServer over real sockets: keep-alive, pipelining, limits by path, malformed input,
// answers from another thread, dropped responders, stop, and streamed bodies (BodySink:
// pieces, back-pressure, limits, disconnects).
#include "server/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "base/json_writer.h"
#include "server/json_reader.h"

namespace credit::server {
namespace {

constexpr int kClientTimeoutSeconds = 5;

// Answers every request from its own worker thread, never from the I/O thread.
class EchoHandler : public Handler {
 public:
  EchoHandler() : worker_([this] { run(); }) {}
  ~EchoHandler() override {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void handle(HttpRequest&& req, Responder respond) override {
    if (req.path == "/drop") return;  // drops the Responder unanswered
    std::lock_guard lock(mu_);
    queue_.emplace_back(std::move(req), std::move(respond));
    cv_.notify_all();
  }

  std::optional<Error> check_head(const HttpRequest& head) override {
    if (head.path == "/v1/admin/import" && head.authorization != "Bearer admin") {
      return Error(ErrorCode::kUnauthorized, "a key is required");
    }
    return std::nullopt;
  }

  std::thread::id worker_id() const { return worker_.get_id(); }

 private:
  void run() {
    for (;;) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return done_ || !queue_.empty(); });
      if (queue_.empty()) return;
      auto [req, respond] = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      if (req.path == "/slow") std::this_thread::sleep_for(std::chrono::milliseconds(200));
      HttpResponse res;
      json::Writer w(res.body);
      w.begin_object();
      w.key("method").string(req.method);
      w.key("path").string(req.path);
      w.key("query").begin_array();
      for (const auto& [k, v] : req.query) w.begin_array().string(k).string(v).end_array();
      w.end_array();
      w.key("body_bytes").integer(static_cast<std::int64_t>(req.body.size()));
      if (req.body.size() < 256) w.key("body").string(req.body);
      w.key("idempotency_key").string(req.idempotency_key_header);
      w.key("has_idempotency_key").boolean(req.has_idempotency_key_header);
      w.key("loopback").boolean(req.from_loopback);
      w.end_object();
      res.headers.emplace_back("X-Echo", "yes");
      res.headers.emplace_back("X-Bad", "a\r\nInjected: 1");
      respond(std::move(res));
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<HttpRequest, Responder>> queue_;
  bool done_ = false;
  std::thread worker_;
};

struct Response {
  int status = 0;
  std::string head;
  std::string body;
  bool ok = false;
  bool has_header(std::string_view line) const { return head.find(line) != std::string::npos; }
};

class Client {
 public:
  explicit Client(unsigned short port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{kClientTimeoutSeconds, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Client() { ::close(fd_); }
  bool connected() const { return connected_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response (Content-Length framed). ok=false on EOF or timeout.
  Response read() {
    Response r;
    std::size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return r;
    }
    r.head = buf_.substr(0, end + 4);
    buf_.erase(0, end + 4);
    r.status = std::stoi(r.head.substr(9, 3));
    std::size_t length = 0;
    if (auto p = r.head.find("Content-Length: "); p != std::string::npos) {
      length = std::stoul(r.head.substr(p + 16));
    }
    while (buf_.size() < length) {
      if (!fill()) return r;
    }
    r.body = buf_.substr(0, length);
    buf_.erase(0, length);
    r.ok = true;
    return r;
  }

  // True when the server closed the connection (EOF or reset) with nothing more to read.
  bool closed_by_peer() {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  bool fill() {
    char chunk[65536];
    const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

std::string post(std::string_view path, std::string_view body, std::string_view extra = "") {
  std::string r = "POST " + std::string(path) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) +
                  "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  r += body;
  return r;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions options = {}) {
    options.port = 0;
    options.io_threads = 2;
    server_ = std::make_unique<HttpServer>(options, handler_);
    ASSERT_TRUE(server_->start().ok());
    ASSERT_NE(server_->port(), 0);
  }
  void SetUp() override { start(); }
  void TearDown() override { server_->stop(); }

  EchoHandler handler_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  for (int i = 0; i < 5; ++i) {
    const std::string body = "{\"n\":" + std::to_string(i) + "}";
    ASSERT_TRUE(c.send(post("/v1/echo", body)));
    Response r = c.read();
    ASSERT_TRUE(r.ok) << i;
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("\"body\":\"{\\\"n\\\":" + std::to_string(i) + "}\""), std::string::npos)
        << r.body;
    EXPECT_TRUE(r.has_header("Server: creditd\r\n"));
    EXPECT_TRUE(r.has_header("Content-Type: application/json\r\n"));
    EXPECT_TRUE(r.has_header("Content-Length: " + std::to_string(r.body.size()) + "\r\n"));
    EXPECT_TRUE(r.has_header("X-Echo: yes\r\n"));
    EXPECT_FALSE(r.has_header("Injected"));
    EXPECT_FALSE(r.has_header("Connection: close"));
    EXPECT_NE(r.body.find("\"loopback\":true"), std::string::npos);
  }
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  Client c(server_->port());
  ASSERT_TRUE(c.send(post("/slow", "first") + post("/v1/fast", "second") +
                     "GET /third HTTP/1.1\r\nHost: x\r\n\r\n"));
  Response a = c.read();
  Response b = c.read();
  Response d = c.read();
  ASSERT_TRUE(a.ok && b.ok && d.ok);
  EXPECT_NE(a.body.find("\"body\":\"first\""), std::string::npos);
  EXPECT_NE(b.body.find("\"body\":\"second\""), std::string::npos);
  EXPECT_NE(d.body.find("\"path\":\"/third\""), std::string::npos);
}

TEST_F(HttpServerTest, QueryIsPercentDecoded) {
  Client c(server_->port());
  ASSERT_TRUE(c.send(
      "GET /v1/accounts/acme/events?from=2026-03-01T00%3A00%3A00Z&user_id=dana+k&flag&e=%E2%82%AC "
      "HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k-1\r\n\r\n"));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_NE(r.body.find("\"path\":\"/v1/accounts/acme/events\""), std::string::npos) << r.body;
  EXPECT_NE(
      r.body.find(R"(["from","2026-03-01T00:00:00Z"],["user_id","dana k"],["flag",""],["e","€"])"),
      std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("\"idempotency_key\":\"k-1\",\"has_idempotency_key\":true"),
            std::string::npos);
}

TEST_F(HttpServerTest, BadPercentEscapeIs400) {
  Client c(server_->port());
  ASSERT_TRUE(c.send("GET /v1/x?a=%zz HTTP/1.1\r\nHost: x\r\n\r\n"));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"code\":\"invalid_request\""), std::string::npos);
  // No body was pending, so the connection stays usable.
  ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.read().status, 200);
}

// Found by an audit: /v1%2Faccounts%2Facme%2Fcharges was a charge (decoded before it was
// split), a way past a proxy's rules on paths.
TEST_F(HttpServerTest, AnEncodedSlashInThePathIs400) {
  for (std::string_view path : {"/v1%2Fx", "/v1/accounts/a%2f", "/v1/accounts/a%2Fb/charges"}) {
    SCOPED_TRACE(path);
    Client c(server_->port());
    c.send(post(path, "{}"));
    Response r = c.read();
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("\"param\":\"path\""), std::string::npos) << r.body;
  }
}

TEST_F(HttpServerTest, BodyOverOneMibIs413JsonAndCloses) {
  Client c(server_->port());
  const std::string body(2 << 20, 'x');
  c.send(post("/v1/accounts/acme/charges", body));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("{\"error\":{\"code\":\"body_too_large\",\"message\":"), std::string::npos)
      << r.body;
  EXPECT_TRUE(r.has_header("Connection: close\r\n"));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(HttpServerTest, ChunkedBodyOverLimitIs413) {
  Client c(server_->port());
  const std::string chunk(600 * 1024, 'y');
  char size_line[32];
  std::snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk.size());
  std::string req = "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 2; ++i) req += size_line + chunk + "\r\n";
  req += "0\r\n\r\n";
  c.send(req);
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("body_too_large"), std::string::npos);
}

TEST_F(HttpServerTest, BatchOver16MibIs413) {
  Client c(server_->port());
  const std::string body((16 << 20) + 1, 'x');
  c.send(post("/v1/batch", body));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("body_too_large"), std::string::npos);
}

TEST_F(HttpServerTest, BatchAcceptsABodyOverTheDefaultLimit) {
  Client c(server_->port());
  const std::string big(2 << 20, 'x');
  ASSERT_TRUE(c.send(post("/v1/batch", big)));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"body_bytes\":2097152"), std::string::npos);
  ASSERT_TRUE(c.send(post("/v1/batch", R"({"ops":[]})")));
  r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find(R"("body":"{\"ops\":[]}")"), std::string::npos) << r.body;
}

TEST_F(HttpServerTest, ExpectContinueGetsAnInterimAnswer) {
  Client c(server_->port());
  ASSERT_TRUE(c.send(
      "POST /v1/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"));
  Response interim = c.read();
  ASSERT_TRUE(interim.ok);
  EXPECT_EQ(interim.status, 100);
  ASSERT_TRUE(c.send("{}"));
  Response r = c.read();
  EXPECT_EQ(r.status, 200);
}

TEST_F(HttpServerTest, HeaderOver16KibIsRefusedWithJson) {
  Client c(server_->port());
  const std::string req =
      "GET /v1/x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(17 * 1024, 'h') + "\r\n\r\n";
  c.send(req);
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  // API.md's table gives invalid_request the status 400 (not HTTP's 431).
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"code\":\"invalid_request\""), std::string::npos);
  EXPECT_NE(r.body.find("\"param\":\"headers\""), std::string::npos);
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(HttpServerTest, MalformedRequestIs400AndCloses) {
  Client c(server_->port());
  c.send("GARBAGE\r\n\r\n");
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"code\":\"invalid_request\""), std::string::npos);
  EXPECT_TRUE(r.has_header("Connection: close\r\n"));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(HttpServerTest, BadContentLengthIs400) {
  Client c(server_->port());
  c.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 400);
}

TEST_F(HttpServerTest, CheckHeadAnswersBeforeTheBodyIsRead) {
  Client c(server_->port());
  // A gigabyte announced but never sent: the 401 comes from the head alone.
  c.send("POST /v1/admin/import HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n");
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 401);
  EXPECT_NE(r.body.find("unauthorized"), std::string::npos);
}

TEST_F(HttpServerTest, DroppedResponderAnswers500) {
  Client c(server_->port());
  ASSERT_TRUE(c.send("GET /drop HTTP/1.1\r\nHost: x\r\n\r\n"));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 500);
  ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.read().status, 200);
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  Client c(server_->port());
  ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.has_header("Connection: close\r\n"));
  EXPECT_TRUE(c.closed_by_peer());
}

TEST_F(HttpServerTest, StopWaitsForTheAnswerInFlight) {
  Client idle(server_->port());
  Client busy(server_->port());
  ASSERT_TRUE(busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server_->stop();
  Response r = busy.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.has_header("Connection: close\r\n"));
  EXPECT_TRUE(idle.closed_by_peer());
}

TEST(HttpServer, OverConnectionsMaxIsClosedAtOnce) {
  EchoHandler handler;
  HttpServerOptions options;
  options.port = 0;
  options.connections_max = 1;
  HttpServer server(options, handler);
  ASSERT_TRUE(server.start().ok());
  Client first(server.port());
  ASSERT_TRUE(first.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(first.read().ok);
  Client second(server.port());
  EXPECT_TRUE(second.closed_by_peer());
  ASSERT_TRUE(first.send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(first.read().status, 200);
}

TEST(HttpServer, StartFailsOnABadAddress) {
  EchoHandler handler;
  HttpServerOptions options;
  options.address = "not-an-address";
  HttpServer server(options, handler);
  Status s = server.start();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("not-an-address"), std::string::npos);
}

// ---- streamed bodies ------------------------------------------------------------------

std::uint64_t fnv1a(std::uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) h = (h ^ c) * 1'099'511'628'211ull;
  return h;
}
constexpr std::uint64_t kFnvBasis = 14'695'981'039'346'656'037ull;

// Streams the bodies of POST /v1/admin/import into a sink that counts them; with
// pause_every_bytes the sink says it is full after that many bytes and is resumed from
// another thread (or, with never_resume, only dropped when aborted).
class StreamHandler : public Handler {
 public:
  struct Seen {
    std::uint64_t bytes = 0;
    std::uint64_t checksum = kFnvBasis;
    std::size_t pieces = 0;
    std::size_t largest_piece_bytes = 0;
    std::size_t pauses = 0;
    std::size_t writes_while_full = 0;  // must stay 0: no read between "full" and resume
    int finished = 0;
    int aborted = 0;
  };

  StreamHandler(std::size_t pause_every_bytes, bool never_resume)
      : pause_every_bytes_(pause_every_bytes),
        never_resume_(never_resume),
        resumer_([this] { run_resumer(); }) {}
  ~StreamHandler() override {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    resumer_.join();
  }

  void handle(HttpRequest&& req, Responder respond) override {
    HttpResponse res;
    res.body = "{\"handled\":" + std::to_string(req.body.size()) + "}";
    respond(std::move(res));
  }

  Result<std::shared_ptr<BodySink>> stream_body(const HttpRequest& head) override {
    if (head.query_param("refuse") == "1") return Error(ErrorCode::kForbidden, "not this one");
    if (head.path != "/v1/admin/import") return std::shared_ptr<BodySink>();
    return std::shared_ptr<BodySink>(std::make_shared<Sink>(*this));
  }

  Seen seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // Waits until `done(seen)` holds; false after kClientTimeoutSeconds.
  template <typename Pred>
  bool wait_for(Pred done) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(kClientTimeoutSeconds),
                        [&] { return done(seen_); });
  }

 private:
  class Sink : public BodySink, public std::enable_shared_from_this<Sink> {
   public:
    explicit Sink(StreamHandler& h) : h_(h) {}
    bool write(std::string_view bytes, const Resume& resume) override {
      std::lock_guard lock(h_.mu_);
      Seen& s = h_.seen_;
      if (full_) ++s.writes_while_full;
      s.bytes += bytes.size();
      s.checksum = fnv1a(s.checksum, bytes);
      ++s.pieces;
      s.largest_piece_bytes = std::max(s.largest_piece_bytes, bytes.size());
      since_pause_bytes_ += bytes.size();
      h_.cv_.notify_all();
      if (h_.pause_every_bytes_ == 0 || since_pause_bytes_ < h_.pause_every_bytes_) return true;
      since_pause_bytes_ = 0;
      ++s.pauses;
      full_ = true;
      if (h_.never_resume_) {
        held_ = resume;
      } else {
        // Under h_.mu_ when the resumer calls it.
        h_.resumes_.push_back([self = shared_from_this(), resume] {
          self->full_ = false;
          return resume;
        });
      }
      return false;
    }
    void finish(Responder respond) override {
      std::string body;
      {
        std::lock_guard lock(h_.mu_);
        ++h_.seen_.finished;
        body = "{\"bytes\":" + std::to_string(h_.seen_.bytes) + "}";
        h_.cv_.notify_all();
      }
      HttpResponse res;
      res.body = std::move(body);
      respond(std::move(res));
    }
    void abort() override {
      Resume dropped;
      std::lock_guard lock(h_.mu_);
      ++h_.seen_.aborted;
      dropped = std::move(held_);
      held_ = nullptr;
      h_.cv_.notify_all();
    }

   private:
    StreamHandler& h_;
    std::size_t since_pause_bytes_ = 0;
    bool full_ = false;  // under h_.mu_
    Resume held_;
  };

  void run_resumer() {
    for (;;) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return done_ || !resumes_.empty(); });
      if (resumes_.empty()) return;
      lock.unlock();
      // A slow consumer: the session must wait, not read on.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      lock.lock();
      Resume resume = resumes_.front()();
      resumes_.pop_front();
      lock.unlock();
      resume();
    }
  }

  const std::size_t pause_every_bytes_;
  const bool never_resume_;
  std::mutex mu_;
  std::condition_variable cv_;
  Seen seen_;
  std::deque<std::function<Resume()>> resumes_;  // each marks its sink not full
  bool done_ = false;
  std::thread resumer_;
};

std::string chunked_post(std::string_view path, std::string_view body, std::size_t chunk_bytes) {
  std::string r =
      "POST " + std::string(path) + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  char size_line[32];
  for (std::size_t at = 0; at < body.size(); at += chunk_bytes) {
    const std::string_view chunk = body.substr(at, chunk_bytes);
    std::snprintf(size_line, sizeof(size_line), "%zx\r\n", chunk.size());
    r += size_line;
    r += chunk;
    r += "\r\n";
  }
  r += "0\r\n\r\n";
  return r;
}

std::string pattern_body(std::size_t bytes) {
  std::string body(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i)
    body[i] = static_cast<char>('a' + (i * 7 + i / 1000) % 26);
  return body;
}

struct StreamServer {
  StreamServer(std::size_t pause_every_bytes, bool never_resume, HttpServerOptions options = {})
      : handler(pause_every_bytes, never_resume) {
    options.port = 0;
    options.io_threads = 2;
    server = std::make_unique<HttpServer>(options, handler);
    EXPECT_TRUE(server->start().ok());
  }
  ~StreamServer() { server->stop(); }
  StreamHandler handler;
  std::unique_ptr<HttpServer> server;
};

TEST(HttpServerStream, AChunkedBodyOverEveryOtherLimitArrivesInPiecesThenIsAnswered) {
  StreamServer s(0, false);
  const std::string body = pattern_body(20 << 20);  // over the 16 MiB of /v1/batch too
  Client c(s.server->port());
  ASSERT_TRUE(c.send(chunked_post("/v1/admin/import", body, 4000)));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"bytes\":" + std::to_string(body.size()) + "}");
  const StreamHandler::Seen seen = s.handler.seen();
  EXPECT_EQ(seen.checksum, fnv1a(kFnvBasis, body));
  EXPECT_EQ(seen.finished, 1);
  EXPECT_EQ(seen.aborted, 0);
  // No piece is more than one read: the session never holds the body.
  EXPECT_LE(seen.largest_piece_bytes, 64u * 1024);
  EXPECT_GT(seen.pieces, body.size() / (64 * 1024));
  // The connection carries the next request.
  ASSERT_TRUE(c.send(post("/v1/other", "{}")));
  r = c.read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{\"handled\":2}");
}

TEST(HttpServerStream, AFullSinkStopsTheReadsUntilItResumes) {
  StreamServer s(256 * 1024, false);
  const std::string body = pattern_body(8 << 20);
  Client c(s.server->port());
  ASSERT_TRUE(c.send(post("/v1/admin/import", body)));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  const StreamHandler::Seen seen = s.handler.seen();
  EXPECT_EQ(seen.bytes, body.size());
  EXPECT_EQ(seen.checksum, fnv1a(kFnvBasis, body));
  EXPECT_GE(seen.pauses, 30u);  // 8 MiB / 256 KiB, each followed by a wait for resume
  EXPECT_EQ(seen.writes_while_full, 0u);
}

TEST(HttpServerStream, ABodyOverThePathsLimitIs413AndAbortsTheSink) {
  HttpServerOptions options;
  options.import_body_bytes_max = 1 << 20;
  StreamServer s(0, false, options);
  Client c(s.server->port());
  c.send(chunked_post("/v1/admin/import", pattern_body(2 << 20), 64 * 1024));
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(s.handler.wait_for([](const auto& seen) { return seen.aborted == 1; }));
  EXPECT_EQ(s.handler.seen().finished, 0);
}

TEST(HttpServerStream, AnErrorFromStreamBodyIsAnsweredFromTheHead) {
  StreamServer s(0, false);
  Client c(s.server->port());
  c.send("POST /v1/admin/import?refuse=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n");
  Response r = c.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 403);
  EXPECT_TRUE(r.has_header("Connection: close\r\n"));
  EXPECT_EQ(s.handler.seen().pieces, 0u);
}

TEST(HttpServerStream, AClientLeavingMidBodyAbortsTheSink) {
  StreamServer s(0, false);
  {
    Client c(s.server->port());
    ASSERT_TRUE(
        c.send("POST /v1/admin/import HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"));
    ASSERT_TRUE(c.send(pattern_body(100'000)));
    ASSERT_TRUE(s.handler.wait_for([](const auto& seen) { return seen.bytes == 100'000; }));
  }  // closed with the body unfinished
  EXPECT_TRUE(s.handler.wait_for([](const auto& seen) { return seen.aborted == 1; }));
  EXPECT_EQ(s.handler.seen().finished, 0);
  Client next(s.server->port());
  ASSERT_TRUE(next.send(post("/v1/other", "x")));
  EXPECT_EQ(next.read().status, 200);
}

TEST(HttpServerStream, StopEndsASessionWaitingForItsSink) {
  StreamServer s(64 * 1024, true);  // full after 64 KiB, never resumed
  Client c(s.server->port());
  const std::string body = pattern_body(4 << 20);
  std::thread sender([&] { c.send(post("/v1/admin/import", body)); });
  ASSERT_TRUE(s.handler.wait_for([](const auto& seen) { return seen.pauses == 1; }));
  s.server->stop();  // returns: the paused session is closed and its sink aborted
  EXPECT_EQ(s.handler.seen().aborted, 1);
  EXPECT_EQ(s.handler.seen().finished, 0);
  EXPECT_TRUE(c.closed_by_peer());
  sender.join();
}

TEST(HttpServer, BodyLimitDependsOnThePath) {
  HttpServerOptions o;
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/accounts/a/charges"), 1u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/batch"), 16u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/admin/import"), std::size_t{64} << 30);
  // The segments the router reads (found by an audit: /v1/batch/ routed to the batch but
  // was held to 1 MiB).
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/batch/"), 16u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "//v1//batch"), 16u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/batchx"), 1u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/batch/x"), 1u << 20);
  EXPECT_EQ(body_bytes_max_for_path(o, "/v1/admin/import/"), std::size_t{64} << 30);
}

// Found by an audit: a Transfer-Encoding other than chunked left the body's bytes to be
// read as the next request (request smuggling behind a proxy that honours the coding).
TEST_F(HttpServerTest, TransferEncodingOtherThanChunkedIs400AndCloses) {
  for (std::string_view te : {"gzip", "identity", "chunked, gzip", "xchunked"}) {
    SCOPED_TRACE(te);
    Client c(server_->port());
    const std::string smuggled = post("/v1/echo", "smuggled");
    c.send("GET /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + std::string(te) + "\r\n\r\n" +
           smuggled);
    Response r = c.read();
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("Transfer-Encoding"), std::string::npos) << r.body;
    EXPECT_TRUE(r.has_header("Connection: close\r\n"));
    EXPECT_TRUE(c.closed_by_peer());  // the smuggled request is never answered
  }
  // "chunked" with whitespace around it is chunked.
  Client spaced(server_->port());
  spaced.send(
      "POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:   chunked  \r\n\r\n"
      "2\r\nok\r\n0\r\n\r\n");
  Response ok = spaced.read();
  ASSERT_TRUE(ok.ok);
  EXPECT_EQ(ok.status, 200);
  Client old(server_->port());
  old.send("POST /v1/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  Response r = old.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 400);
}

// Found by an audit: a body trickled a byte at a time held its connection for ever (the
// idle timeout restarted on every byte).
TEST(HttpServer, ABodyTrickledBelowTheMinimumRateIsCut) {
  EchoHandler handler;
  HttpServerOptions o;
  o.port = 0;
  o.idle_timeout_ms = 400;
  o.body_bytes_per_second_min = 1000;  // a byte buys 1 ms
  HttpServer server(o, handler);
  ASSERT_TRUE(server.start().ok());
  Client c(server.port());
  ASSERT_TRUE(c.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"));
  const auto started = std::chrono::steady_clock::now();
  bool cut = false;
  for (int i = 0; i < 40 && !cut; ++i) {  // a byte each 100 ms: 4 s if never cut
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    cut = !c.send("x");
  }
  if (!cut) cut = c.closed_by_peer();
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(cut);
  EXPECT_LT(took, std::chrono::milliseconds(3000));
  // A steady upload above the rate is not cut, though it lasts past the idle timeout:
  // 2,000 bytes in 20 steps of 50 ms (2,000 bytes a second).
  Client steady(server.port());
  ASSERT_TRUE(steady.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"));
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(steady.send(std::string(100, 'y')));
  }
  Response r = steady.read();
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.status, 200);
  server.stop();
}

// Found by an audit: each connection buffered up to its own limit, with no budget for all
// of them (150 bodies of 16 MiB held 2.5 GB).
TEST(HttpServer, BodiesPastTheSessionsBudgetAre503OverloadedWithRetryAfter) {
  EchoHandler handler;
  HttpServerOptions o;
  o.port = 0;
  o.buffered_body_bytes_max = 1000;
  HttpServer server(o, handler);
  ASSERT_TRUE(server.start().ok());
  Client a(server.port());
  ASSERT_TRUE(a.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\n\r\nabc"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Client b(server.port());
  ASSERT_TRUE(b.send(post("/v1/x", std::string(500, 'b'))));
  Response rb = b.read();
  ASSERT_TRUE(rb.ok);
  EXPECT_EQ(rb.status, 503);
  EXPECT_NE(rb.body.find("\"code\":\"overloaded\""), std::string::npos);
  EXPECT_TRUE(rb.has_header("Retry-After: 1\r\n"));
  EXPECT_EQ(rb.head.find("Retry-After"), rb.head.rfind("Retry-After"));  // once
  // A chunked body is counted as it grows.
  Client ch(server.port());
  ASSERT_TRUE(
      ch.send("POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "190\r\n" +
              std::string(400, 'c') + "\r\n"));
  Response rc = ch.read();
  ASSERT_TRUE(rc.ok);
  EXPECT_EQ(rc.status, 503);
  // Once the first body is whole (and handed on), the budget has room again.
  ASSERT_TRUE(a.send(std::string(797, 'a')));
  Response ra = a.read();
  ASSERT_TRUE(ra.ok);
  EXPECT_EQ(ra.status, 200);
  Client again(server.port());
  ASSERT_TRUE(again.send(post("/v1/x", std::string(500, 'b'))));
  Response r2 = again.read();
  ASSERT_TRUE(r2.ok);
  EXPECT_EQ(r2.status, 200);
  server.stop();
}

}  // namespace
}  // namespace credit::server
