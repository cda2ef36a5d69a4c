// src/cli/http_client.cc
// One HTTP request over Boost.Beast (http_client.h). The exchange is written with Beast's
// async operations on a private io_context run to completion, which is synchronous for
// the caller and lets one deadline (beast::tcp_stream::expires_after) cover resolve,
// connect, write and read.
#include "cli/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>

namespace credit::cli {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// Everything one exchange needs, alive until its last handler ran.
struct Exchange {
  explicit Exchange(net::io_context& ioc) : resolver(ioc), stream(ioc) {}
  tcp::resolver resolver;
  beast::tcp_stream stream;
  http::request<http::string_body> request;
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  beast::error_code error;
  const char* stage = "connect";
};

std::string describe(const Exchange& x) {
  if (x.error == beast::error::timeout) return std::string("timed out (") + x.stage + ")";
  return std::string(x.stage) + ": " + x.error.message();
}

}  // namespace

std::optional<ServerUrl> parse_server_url(const std::string& url, std::string& problem) {
  constexpr std::string_view kScheme = "http://";
  if (url.rfind(kScheme, 0) != 0) {
    problem = url.rfind("https://", 0) == 0
                  ? "https is not supported by creditctl: use http:// (creditd binds loopback; "
                    "put TLS in a proxy in front of it)"
                  : "the URL must start with http://";
    return std::nullopt;
  }
  std::string rest = url.substr(kScheme.size());
  ServerUrl out;
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) out.base_path = rest.substr(slash);
  while (!out.base_path.empty() && out.base_path.back() == '/') out.base_path.pop_back();
  if (authority.empty() || authority.find('@') != std::string::npos) {
    problem = "the URL needs a host (and no user info): http://host:port";
    return std::nullopt;
  }
  auto colon = authority.rfind(':');
  bool bracketed = authority.front() == '[';
  if (colon != std::string::npos && (!bracketed || authority[colon - 1] == ']')) {
    out.host = authority.substr(0, colon);
    out.port = authority.substr(colon + 1);
  } else {
    out.host = authority;
    out.port = "80";
  }
  if (bracketed && out.host.size() >= 2) out.host = out.host.substr(1, out.host.size() - 2);
  if (out.host.empty() || out.port.empty() ||
      out.port.find_first_not_of("0123456789") != std::string::npos || out.port.size() > 5) {
    problem = "bad host or port in " + url;
    return std::nullopt;
  }
  return out;
}

HttpAnswer http_request(const ServerUrl& url, const HttpCall& call) {
  net::io_context ioc;
  auto x = std::make_shared<Exchange>(ioc);
  x->request.method_string(call.method);
  x->request.target(url.base_path + call.target);
  x->request.version(11);
  x->request.set(http::field::host, url.host + ":" + url.port);
  x->request.set(http::field::user_agent, "creditctl");
  x->request.set(http::field::connection, "close");
  if (!call.key.empty()) x->request.set(http::field::authorization, "Bearer " + call.key);
  if (!call.body.empty() || call.method == "POST" || call.method == "PUT") {
    x->request.set(http::field::content_type, "application/json");
    x->request.body() = call.body;
  }
  x->request.prepare_payload();
  x->parser.body_limit(kResponseBytesMax);

  x->stream.expires_after(std::chrono::milliseconds(call.timeout_ms));
  x->stage = "resolve";
  x->resolver.async_resolve(
      url.host, url.port, [x](beast::error_code ec, tcp::resolver::results_type results) {
        if (ec) {
          x->error = ec;
          return;
        }
        x->stage = "connect";
        x->stream.async_connect(results, [x](beast::error_code ec2, const tcp::endpoint&) {
          if (ec2) {
            x->error = ec2;
            return;
          }
          x->stage = "send";
          http::async_write(x->stream, x->request, [x](beast::error_code ec3, std::size_t) {
            if (ec3) {
              x->error = ec3;
              return;
            }
            x->stage = "read";
            http::async_read(x->stream, x->buffer, x->parser,
                             [x](beast::error_code ec4, std::size_t) {
                               x->error = ec4;
                               beast::error_code ignored;
                               x->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
                             });
          });
        });
      });
  ioc.run();

  HttpAnswer a;
  if (x->error || !x->parser.is_done()) {
    if (!x->error) x->error = beast::error::timeout;
    a.transport_error = describe(*x);
    return a;
  }
  auto& res = x->parser.get();
  a.reached = true;
  a.status = static_cast<int>(res.result_int());
  a.content_type = std::string(res[http::field::content_type]);
  a.retry_after = std::string(res[http::field::retry_after]);
  a.body = std::move(res.body());
  return a;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace credit::cli
