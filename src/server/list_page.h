// src/server/list_page.h
// A list's page (API.md, Conventions): `limit` (default 100, at most 1,000) and `after`
// (an opaque cursor) in, `next` (null at the end) out. Shared by every list route, so
// each refuses a bad limit or cursor with the same 400.
// Owns: reading limit and after, and the cursor's form. Does not: read the list (each
// route pages its own).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "base/json_writer.h"
#include "base/status.h"
#include "server/http_server.h"
#include "server/json_reader.h"

namespace credit::server {

constexpr std::size_t kListLimitDefault = 100;
constexpr std::size_t kListLimitMax = 1000;

// The request's `limit`, or `default_limit` when it gives none; nullopt when it is not a
// whole number from 1 to kListLimitMax (answer bad_limit()).
inline std::optional<std::size_t> list_limit(const HttpRequest& req,
                                             std::size_t default_limit = kListLimitDefault) {
  if (!req.has_query("limit")) return default_limit;
  const std::optional<std::int64_t> v = json_int64(req.query_param("limit"));
  if (!v || *v < 1 || *v > static_cast<std::int64_t>(kListLimitMax)) return std::nullopt;
  return static_cast<std::size_t>(*v);
}

inline Error bad_limit() {
  Error e(ErrorCode::kInvalidRequest, "limit must be 1 to 1000");
  e.with_string("param", "limit");
  return e;
}

// An `after` that no page of the list answered.
inline Error bad_cursor() {
  Error e(ErrorCode::kInvalidRequest, "after must be a cursor from an earlier page");
  e.with_string("param", "after");
  return e;
}

// Ends a list's answer: the array, then `next`, the cursor of the last item shown when
// more follow, else null.
inline void end_page(json::Writer& w, bool more, std::string_view last) {
  w.end_array();
  if (more) {
    w.key("next").string(last);
  } else {
    w.key("next").null();
  }
  w.end_object();
}

}  // namespace credit::server
