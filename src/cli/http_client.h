// src/cli/http_client.h
// The one HTTP/1.1 request creditctl makes per command: plain http (creditd binds
// loopback by default; put TLS in front with a proxy), Boost.Beast, one connection, a
// deadline over the whole exchange.
// Owns: URL parsing, the request (Authorization, Content-Type, Idempotency-Key never:
// keys go in bodies), transport errors as text. Does not: interpret statuses (online.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace credit::cli {

// The largest answer read (an audit page of a busy account is a few MiB).
constexpr std::size_t kResponseBytesMax = std::size_t{256} << 20;
constexpr std::int64_t kRequestTimeoutMsDefault = 60'000;

struct ServerUrl {
  std::string host;
  std::string port;
  std::string base_path;  // without a trailing '/', e.g. "" or "/creditd"
};

// "http://host[:port][/base]"; nullopt with `problem` set when it is not one.
std::optional<ServerUrl> parse_server_url(const std::string& url, std::string& problem);

struct HttpAnswer {
  bool reached = false;  // false: no answer (see transport_error)
  std::string transport_error;
  int status = 0;
  std::string content_type;
  std::string retry_after;  // the Retry-After header, when present
  std::string body;
};

struct HttpCall {
  std::string method = "GET";
  std::string target;  // path and query, after the base path
  std::string body;    // sent as application/json when not empty
  std::string key;     // Bearer key; empty: none
  std::int64_t timeout_ms = kRequestTimeoutMsDefault;
};

HttpAnswer http_request(const ServerUrl& url, const HttpCall& call);

// Percent-encodes a query value or a path segment (RFC 3986 unreserved kept).
std::string url_encode(std::string_view text);

}  // namespace credit::cli
