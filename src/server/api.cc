// src/server/api.cc
// Routes of API.md sections "Plans, accounts and keys", "Metering" and "Operations".
#include "server/api.h"

#include <xxhash.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "base/assert.h"
#include "base/error_json.h"
#include "base/json_writer.h"
#include "base/utf8.h"
#include "ledger/codec.h"
#include "ledger/render.h"
#include "money/money.h"
#include "server/crypto.h"
#include "server/json_reader.h"
#include "server/list_page.h"
#include "time/time.h"

namespace credit::server {

using ledger::Command;
using ledger::Reply;

namespace {

constexpr std::size_t kBatchOpsMax = 8192;
constexpr std::size_t kMetadataExtraKeysMax = 16;
// API.md: "string values, 256 chars each": characters (code points), up to 4 bytes each.
constexpr std::size_t kMetadataValueCharsMax = 256;
constexpr std::size_t kLabelBytesMax = 128;

Error err(ErrorCode code, std::string message) {
  return Error(code, std::move(message));
}
Error err_param(ErrorCode code, std::string message, std::string_view param) {
  Error e(code, std::move(message));
  e.with_string("param", param);
  return e;
}

HttpResponse from_error(const Error& e) {
  return error_response(e);
}

HttpResponse from_reply(Reply&& r) {
  HttpResponse h;
  h.status = r.status;
  h.body = std::move(r.body);
  if (r.replayed) h.headers.emplace_back("Idempotent-Replayed", "true");
  if (r.code == ErrorCode::kRateLimited) {
    std::int64_t s = std::max<std::int64_t>(1, (r.retry_after_ms + 999) / 1000);
    h.headers.emplace_back("Retry-After", std::to_string(s));
  }
  if (h.status == 204) h.body.clear();
  return h;
}

bool printable_ascii(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// The idempotency scope of the admin routes (POST /v1/accounts, POST /v1/keys): '#' is
// outside the id alphabet, so no account's scope (its id) equals it (DESIGN.md: "(account_id,
// key), or (admin, key)").
constexpr std::string_view kAdminScope = "#admin";

// The manual clock's bound: 9000-01-01T00:00:00Z, far from the year 10000 that RFC 3339
// cannot write (a cycle end, a hold's expiry or a key's 24 hours after now).
constexpr std::int64_t kClockNowMsMax =
    std::int64_t{2567655} * kMsPerDay;  // days_from_civil(9000, 1, 1)

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> parts;
  for (std::string_view s = next_path_segment(path); !s.empty(); s = next_path_segment(path)) {
    parts.push_back(s);
  }
  return parts;
}

// DESIGN.md: "PUT, DELETE, clock and import take none" (no idempotency key): a DELETE's
// body names no field, as a PUT's names none it does not define (400 unknown_field).
Status no_body_fields(const std::optional<JsonValue>& body) {
  if (!body) return ok_status();
  ObjectReader r(*body);
  return r.no_unknown_fields();
}

// A cursor's number: digits only, as the lists write them.
std::optional<std::uint64_t> cursor_number(std::string_view text) {
  std::uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

// A cursor of two parts, "<number>:<rest>" (rest not empty).
struct CursorPair {
  std::uint64_t number = 0;
  std::string rest;
};
std::optional<CursorPair> cursor_pair(std::string_view text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return std::nullopt;
  std::optional<std::uint64_t> n = cursor_number(text.substr(0, colon));
  if (!n) return std::nullopt;
  return CursorPair{*n, std::string(text.substr(colon + 1))};
}

// A list's page whose cursor has two parts: the limit, and the cursor when the request
// gives one; or the 400 its query earns (bad_limit, bad_cursor).
struct PairPage {
  std::size_t limit = kListLimitDefault;
  std::optional<CursorPair> after;
};
Result<PairPage> pair_page(const HttpRequest& req) {
  const std::optional<std::size_t> limit = list_limit(req);
  if (!limit) return bad_limit();
  PairPage page{*limit, std::nullopt};
  if (req.has_query("after")) {
    page.after = cursor_pair(req.query_param("after"));
    if (!page.after) return bad_cursor();
  }
  return page;
}

// A hold's place in creation order: the number in its id "h_<seq>" (Ledger::new_id).
std::optional<std::uint64_t> hold_seq(std::string_view hold_id) {
  if (!hold_id.starts_with("h_")) return std::nullopt;
  return cursor_number(hold_id.substr(2));
}

// Reads "amount"-like credits: exact, within the API limit.
Result<Millicredits> credits_of(ObjectReader& r, std::string_view key, bool allow_negative) {
  auto text = r.number_text(key);
  if (!text.ok()) {
    Error e = text.error();
    if (e.code == ErrorCode::kInvalidRequest && r.any(key).has_value()) {
      e.code = ErrorCode::kInvalidAmount;
    }
    return e;
  }
  auto m = parse_credits(*text);
  if (!m.ok()) {
    Error e = m.error();
    e.with_string("param", r.path_of(key));
    return e;
  }
  if (!allow_negative && m->is_negative()) {
    return err_param(ErrorCode::kInvalidAmount, "the amount must not be negative", r.path_of(key));
  }
  return *m;
}

Result<pricing::Usage> parse_usage(JsonValue v) {
  if (!v.is_object())
    return err_param(ErrorCode::kInvalidUsage, "usage must be an object", "usage");
  pricing::Usage u;
  for (auto [key, value] : v) {
    // The field's path, for an error only (a charge's usage is read on every request).
    auto param = [&key] { return "usage." + std::string(key); };
    // A dimension given as null is absent; a whole number may be spelled "3.0" or "3e0".
    auto int_dim = [&](std::optional<std::int64_t>& dst) -> std::optional<Error> {
      if (value.is_null()) return std::nullopt;
      auto n = value.is_number() ? json_whole_number(value.number_text()) : std::nullopt;
      if (!n || *n < 0 || *n > pricing::kUsageDimensionMax) {
        return err_param(ErrorCode::kInvalidUsage,
                         param() + " must be a whole number from 0 to 10^12", param());
      }
      dst = *n;
      return std::nullopt;
    };
    auto str_dim = [&](std::optional<std::string>& dst) -> std::optional<Error> {
      if (value.is_null()) return std::nullopt;
      if (!value.is_string() || value.string_value().empty() || value.string_value().size() > 64) {
        return err_param(ErrorCode::kInvalidUsage, param() + " must be a short string", param());
      }
      dst = std::string(value.string_value());
      return std::nullopt;
    };
    std::optional<Error> e;
    if (key == "model")
      e = str_dim(u.model);
    else if (key == "size")
      e = str_dim(u.size);
    else if (key == "input_tokens")
      e = int_dim(u.input_tokens);
    else if (key == "output_tokens")
      e = int_dim(u.output_tokens);
    else if (key == "files_read")
      e = int_dim(u.files_read);
    else if (key == "lines_emitted")
      e = int_dim(u.lines_emitted);
    else if (key == "lines_changed")
      e = int_dim(u.lines_changed);
    else if (key == "count")
      e = int_dim(u.count);
    else if (key == "duration_ms")
      e = int_dim(u.duration_ms);
    else if (key == "records")
      e = int_dim(u.records);
    else
      e = err_param(ErrorCode::kInvalidUsage, "unknown usage dimension " + param(), param());
    if (e) return *e;
  }
  return u;
}

// Whether s (UTF-8, checked by the parser) holds at most `max` code points.
bool chars_at_most(std::string_view s, std::size_t max) {
  return utf8_chars_at_most(s, max);
}

Result<ledger::Metadata> parse_metadata(JsonValue v) {
  if (!v.is_object())
    return err_param(ErrorCode::kInvalidRequest, "metadata must be an object", "metadata");
  ledger::Metadata m;
  for (auto [key, value] : v) {
    // The field's path, for an error only (a charge's metadata is read on every request).
    auto param = [&key] { return "metadata." + std::string(key); };
    if (!value.is_string() || !chars_at_most(value.string_value(), kMetadataValueCharsMax)) {
      return err_param(ErrorCode::kInvalidRequest,
                       param() + " must be a string of at most 256 characters", param());
    }
    const std::string_view s = value.string_value();
    if (key == "file")
      m.file = s;
    else if (key == "feature")
      m.feature = s;
    else if (key == "model")
      m.model = s;
    else if (key == "snapshot_id")
      m.snapshot_id = s;
    else if (key == "call_site")
      m.call_site = s;
    else if (key == "request_hash")
      m.request_hash = s;
    else if (key == "intent") {
      if (s != "feature" && s != "fix" && s != "question") {
        return err_param(ErrorCode::kInvalidRequest, "intent must be feature, fix or question",
                         param());
      }
      m.intent = s;
    } else {
      if (m.extra.size() >= kMetadataExtraKeysMax) {
        return err_param(ErrorCode::kInvalidRequest, "at most 16 metadata keys of your own",
                         param());
      }
      if (key.empty() || key.size() > 64) {
        return err_param(ErrorCode::kInvalidRequest, "metadata keys are 1 to 64 bytes", param());
      }
      m.extra.emplace_back(std::string(key), std::string(s));
    }
  }
  std::sort(m.extra.begin(), m.extra.end());
  return m;
}

}  // namespace

namespace {
// XXH3-128 of `bytes`, low half first.
ledger::Hash128 hash128_of(std::string_view bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  ledger::Hash128 out;
  std::memcpy(out.data(), &h.low64, 8);
  std::memcpy(out.data() + 8, &h.high64, 8);
  return out;
}
}  // namespace

ledger::Hash128 hash128(std::string_view a, std::string_view b) {
  // One-shot XXH3 over "a \x1f b" in a per-thread buffer: no allocation per request once
  // the buffer has grown.
  thread_local std::string in;
  in.assign(a);
  in += '\x1f';
  in += b;
  return hash128_of(in);
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string id_rule(std::string_view field) {
  return std::string(field) + " must be 1 to 64 characters of [A-Za-z0-9._:-]";
}

HttpResponse json_response(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

namespace {
// The last answer of this thread: a keep-alive connection sends the same header on every
// request, and each request asks twice (check_head, then the route). Invalidated by any
// key change.
struct AuthMemo {
  std::string authorization;
  std::uint64_t generation = 0;
  std::optional<Auth> auth;
  bool valid = false;
};
thread_local AuthMemo t_auth_memo;

std::optional<Auth> authenticate_uncached(const Engine& engine, const ApiOptions& options,
                                          std::string_view authorization);
}  // namespace

std::optional<Auth> authenticate(const Engine& engine, const ApiOptions& options,
                                 std::string_view authorization) {
  AuthMemo& memo = t_auth_memo;
  std::uint64_t generation = engine.keys_generation();
  if (memo.valid && memo.generation == generation && memo.authorization == authorization) {
    return memo.auth;
  }
  memo.auth = authenticate_uncached(engine, options, authorization);
  memo.authorization.assign(authorization);
  memo.generation = generation;
  memo.valid = true;
  return memo.auth;
}

namespace {
std::optional<Auth> authenticate_uncached(const Engine& engine, const ApiOptions& options,
                                          std::string_view authorization) {
  // The scheme is case-insensitive (RFC 7235): "Bearer", "bearer", "BEARER".
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() <= kBearer.size()) return std::nullopt;
  for (std::size_t i = 0; i < kBearer.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kBearer[i]) {
      return std::nullopt;
    }
  }
  std::string_view key = authorization.substr(kBearer.size());
  std::string hash = sha256_hex(key);
  if (!options.admin_key_hash_hex.empty() &&
      constant_time_equal(hash, options.admin_key_hash_hex)) {
    return Auth{Role::kAdmin, "", "admin"};
  }
  // The lookup is by hash: the key itself is never compared or stored.
  std::optional<KeyInfo> k = engine.find_key(hash);
  if (!k) return std::nullopt;
  return Auth{k->role, k->account_id, k->key_id};
}
}  // namespace

bool reaches(const Auth& auth, std::string_view account_id) {
  if (auth.role == Role::kAdmin || auth.role == Role::kService) return true;
  return auth.account_id == account_id;
}

// ---------------------------------------------------------------------------------

struct Api::Impl {
  Api& api;
  Engine& engine;
  const ApiOptions& options;

  // The who-may-call rule of API.md for a route on one account.
  static bool allowed(const Auth& a, Role need, std::string_view account_id) {
    switch (need) {
      case Role::kAdmin:
        return a.role == Role::kAdmin;
      case Role::kService:
        return a.role == Role::kAdmin || a.role == Role::kService;
      case Role::kMeter:
        return a.role == Role::kAdmin || a.role == Role::kService ||
               (a.role == Role::kMeter && a.account_id == account_id);
      case Role::kRead:
        return reaches(a, account_id);
    }
    return false;
  }

  // The idempotency part: the key from the body or the header (both and different: 400).
  // Returns an error for a missing or bad key.
  std::optional<Error> idem_of(ObjectReader& r, const HttpRequest& req, std::string_view scope,
                               std::string_view route, ledger::IdempotencyRef& idem,
                               const std::string* header_key = nullptr) {
    auto body_key = r.optional_string("idempotency_key");
    if (!body_key.ok()) return body_key.error();
    std::optional<std::string_view> key = *body_key;
    std::string_view header =
        header_key ? std::string_view(*header_key) : std::string_view(req.idempotency_key_header);
    bool has_header = header_key ? !header_key->empty() : req.has_idempotency_key_header;
    if (header_key == nullptr && req.idempotency_key_header_repeated) {
      return err_param(ErrorCode::kInvalidRequest, "the Idempotency-Key header may appear once",
                       "Idempotency-Key");
    }
    if (key && has_header && *key != header) {
      return err_param(ErrorCode::kInvalidRequest,
                       "the Idempotency-Key header and idempotency_key differ", "idempotency_key");
    }
    if (!key && has_header) key = header;
    if (!key)
      return err_param(ErrorCode::kInvalidRequest, "idempotency_key is required",
                       "idempotency_key");
    if (!printable_ascii(*key, ledger::kIdempotencyKeyBytesMax)) {
      return err_param(ErrorCode::kInvalidRequest,
                       "idempotency_key must be 1 to 128 printable ASCII characters",
                       "idempotency_key");
    }
    idem.has_key = true;
    idem.key = std::string(*key);
    idem.scope_key_hash = hash128(scope, *key);
    (void)route;  // the request hash is sealed from the parsed command (seal())
    return std::nullopt;
  }

  // The request hash: the route with its path ids and the command's canonical fields
  // (DESIGN.md: key order, whitespace and number spelling do not matter; the key itself
  // is left out). A request that failed validation hashes its raw fields instead, so
  // it never matches a valid one. `given` names the optional fields given with their
  // default value, which the command cannot tell from absent ones (a hold's ttl_ms, a
  // capture's overage): "an absent field is not the same as its default".
  static void seal(Command& c, std::string_view route, ObjectReader* r = nullptr,
                   std::string_view given = {}) {
    // hash128("request", canon), with canon written straight after "request\x1f" in a
    // per-thread buffer: no allocation and no second copy per command.
    thread_local std::string in;
    in.assign("request\x1f");
    in += route;
    in += '\x1f';
    if (c.precheck_error != ErrorCode::kOk && r != nullptr) {
      in += "invalid\x1f";
      r->value().append_json(in);
    } else {
      if (auto* charge = std::get_if<ledger::Charge>(&c.body)) {
        encode_asked(*charge, c.body, in);
      } else if (auto* hold = std::get_if<ledger::Hold>(&c.body)) {
        encode_asked(*hold, c.body, in);
      } else {
        ledger::encode_command_body(c.body, in);
      }
      // Appended only when a default was given explicitly, so the hashes of every other
      // request (and of the keys stored before this rule) stay as they were.
      if (!given.empty()) in.append("\x1fgiven:").append(given);
    }
    c.idem.request_hash = hash128_of(in);
  }

  // A charge's or hold's command as the request asked it: without what the server derived
  // from its rate card (a usage's price, the card's version, the kind's pool), so that a
  // retry after the rate card changed is the same request, not 422 (found by an audit).
  // The fields are cleared for the encoding and put back.
  template <class ChargeOrHold>
  static void encode_asked(ChargeOrHold& x, const ledger::CommandBody& body, std::string& in) {
    const Millicredits amount = x.amount;
    const std::int64_t version = x.rate_card_version;
    std::string pool;
    pool.swap(x.pool);
    if (x.priced_by_usage) x.amount = Millicredits::zero();
    x.rate_card_version = 0;
    ledger::encode_command_body(body, in);
    x.amount = amount;
    x.rate_card_version = version;
    x.pool.swap(pool);
  }

  // The command's answer is the key's error when there is one: a command without a usable
  // key still goes to the ledger, so that its 404s come first (API.md's order).
  static void keep_key_error(Command& c, const std::optional<Error>& key_error) {
    if (key_error) set_precheck(c, *key_error);
  }

  static void set_precheck(Command& c, const Error& e) {
    if (c.precheck_error != ErrorCode::kOk) return;
    c.precheck_error = e.code;
    c.precheck_message = e.message;
    std::string_view p = e.detail("param");
    if (p.size() >= 2) c.precheck_param = std::string(p.substr(1, p.size() - 2));
  }

  // Builds a charge, hold, capture or void command from its body. Validation errors, the
  // idempotency key's among them, ride in the command (precheck), so the ledger answers
  // the 404s and a replay first (API.md's order).
  // Fills `c`, a default Command (a batch builds each in its place in the op vector, so
  // nothing is moved afterwards).
  void metering_command(Command& c, std::string_view op, std::string_view account_id,
                        std::string_view hold_id, ObjectReader& r, const HttpRequest& req,
                        const std::string* header_key) {
    std::string route;
    route.reserve(op.size() + account_id.size() + hold_id.size() + 2);
    route.append(op).append(1, ':').append(account_id).append(1, ':').append(hold_id);
    // Without a usable key there is nothing to replay, and the key's error is a field
    // error: the command goes on without a key, so that the 404s come first (API.md's
    // order), and the key's error is its answer after them (keep_key_error).
    const std::optional<Error> key_error = idem_of(r, req, account_id, route, c.idem, header_key);
    if (key_error) c.idem = ledger::IdempotencyRef{};
    const pricing::RateCard& card = engine.rate_card();
    if (op == "charge" || op == "hold") {
      pricing::Kind kind = pricing::Kind::kAgentPrompt;
      std::string user_id;
      std::optional<pricing::Usage> usage;
      std::optional<Millicredits> amount;
      ledger::Metadata meta;
      std::string cache_key;
      std::int64_t ttl_ms = ledger::kHoldTtlMsDefault;
      std::optional<Error> bad;
      auto kind_s = r.string("kind");
      if (!kind_s.ok()) {
        bad = kind_s.error();
      } else if (auto k = pricing::parse_kind(*kind_s)) {
        kind = *k;
      } else {
        bad = err_param(ErrorCode::kInvalidRequest, "unknown kind", "kind");
      }
      auto uid = r.string("user_id");
      if (!bad && !uid.ok()) bad = uid.error();
      if (!bad && !printable_ascii(*uid, 128)) {
        bad = err_param(ErrorCode::kInvalidRequest,
                        "user_id must be 1 to 128 printable ASCII characters", "user_id");
      }
      if (!bad) user_id = std::string(*uid);
      if (auto u = r.any("usage"); u && !u->is_null() && !bad) {
        auto pu = parse_usage(*u);
        if (!pu.ok())
          bad = pu.error();
        else
          usage = std::move(*pu);
      }
      if (auto a = r.any("amount"); a && !a->is_null() && !bad) {
        auto m = credits_of(r, "amount", false);
        if (!m.ok())
          bad = m.error();
        else
          amount = *m;
      }
      // The optional fields given with the value an absent one has, which the command
      // cannot tell apart (seal()).
      std::string given;
      if (auto m = r.any("metadata"); m && !m->is_null() && !bad) {
        auto pm = parse_metadata(*m);
        if (!pm.ok())
          bad = pm.error();
        else
          meta = std::move(*pm);
        if (!bad && meta.empty()) given += "metadata;";
      }
      auto ck = r.optional_string("cache_key");
      if (!bad && !ck.ok()) bad = ck.error();
      if (!bad && *ck) {
        if (!valid_id(**ck))
          bad = err_param(ErrorCode::kInvalidRequest, id_rule("cache_key"), "cache_key");
        else
          cache_key = std::string(**ck);
      }
      if (op == "hold") {
        auto ttl = r.optional_int64("ttl_ms", 1, ledger::kHoldTtlMsMax);
        if (!bad && !ttl.ok()) bad = ttl.error();
        if (!bad && *ttl) {
          ttl_ms = **ttl;
          // Only the default needs marking: any other value already hashes apart.
          if (ttl_ms == ledger::kHoldTtlMsDefault) given += "ttl_ms";
        }
      }
      if (!bad) {
        Status unknown = r.no_unknown_fields();
        if (!unknown.ok()) bad = unknown.error();
      }
      Millicredits cost;
      bool by_usage = false;
      if (!bad && !usage && !amount) {
        bad = err_param(ErrorCode::kInvalidRequest, "give usage or amount", "usage");
      }
      // What the rate card in force says of a well-formed usage (an unknown model, a price
      // past the bound) is checked apart: the request is still the same request, so a
      // retry of a key stored under another card replays its answer (API.md's order:
      // replay before 400), and only a new key gets this 400.
      std::optional<Error> card_bad;
      if (!bad && usage) {
        if (amount) {
          Status v = card.validate(kind, *usage);
          if (!v.ok()) card_bad = v.error();
        } else {
          by_usage = true;
          auto price = card.price(kind, *usage);
          if (!price.ok())
            card_bad = price.error();
          else
            cost = price->cost;
        }
      }
      if (amount) cost = *amount;
      // Charge and Hold share these fields; the body is built in place.
      auto fill = [&](auto& x) {
        x.account_id = account_id;
        x.user_id = std::move(user_id);
        x.kind = kind;
        x.pool = card.pool(kind);
        x.amount = cost;
        x.priced_by_usage = by_usage;
        x.rate_card_version = card.version();
        x.usage = std::move(usage);
        x.metadata = std::move(meta);
        x.cache_key = std::move(cache_key);
      };
      if (op == "charge") {
        fill(c.body.emplace<ledger::Charge>());
      } else {
        ledger::Hold& h = c.body.emplace<ledger::Hold>();
        fill(h);
        h.ttl_ms = ttl_ms;
      }
      if (bad) set_precheck(c, *bad);
      if (card_bad) set_precheck(c, *card_bad);
      // A malformed request hashes its raw fields; one the card refused, its fields.
      seal(c, route, bad ? &r : nullptr, given);
      keep_key_error(c, key_error);
      return;
    }
    if (op == "capture") {
      ledger::Capture& cap = c.body.emplace<ledger::Capture>();
      cap.account_id = account_id;
      cap.hold_id = hold_id;
      std::optional<Error> bad;
      if (auto u = r.any("usage"); u && !u->is_null()) {
        auto pu = parse_usage(*u);
        if (!pu.ok())
          bad = pu.error();
        else
          cap.usage = std::move(*pu);
      }
      if (auto a = r.any("amount"); a && !a->is_null() && !bad) {
        auto m = credits_of(r, "amount", false);
        if (!m.ok())
          bad = m.error();
        else
          cap.amount = *m;
      }
      auto ov = r.optional_string("overage");
      if (!bad && !ov.ok()) bad = ov.error();
      // "refuse" is the default (a "charge" already hashes apart from it).
      const bool overage_given = !bad && *ov && **ov == "refuse";
      if (!bad && *ov) {
        if (**ov == "charge")
          cap.overage_charge = true;
        else if (**ov != "refuse")
          bad = err_param(ErrorCode::kInvalidRequest, "overage is refuse or charge", "overage");
      }
      std::string given = overage_given ? "overage" : "";
      if (auto m = r.any("metadata"); m && !m->is_null() && !bad) {
        auto pm = parse_metadata(*m);
        if (!pm.ok())
          bad = pm.error();
        else
          cap.metadata = std::move(*pm);
        if (!bad && cap.metadata.empty()) given = "metadata;" + given;
      }
      if (!bad) {
        Status unknown = r.no_unknown_fields();
        if (!unknown.ok()) bad = unknown.error();
      }
      // Usage is priced on the ledger thread with the hold's rate card version.
      cap.priced_by_usage = cap.usage.has_value() && !cap.amount.has_value();
      if (bad) set_precheck(c, *bad);
      seal(c, route, &r, given);
      keep_key_error(c, key_error);
      return;
    }
    ledger::Void& v = c.body.emplace<ledger::Void>();
    v.account_id = account_id;
    v.hold_id = hold_id;
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) set_precheck(c, unknown.error());
    seal(c, route, &r);
    keep_key_error(c, key_error);
  }

  // A single charge, hold, capture or void: its command built in the op vector it is
  // submitted in.
  void submit_metering(std::string_view op, std::string_view account_id, std::string_view hold_id,
                       ObjectReader& r, const HttpRequest& req, Responder respond) {
    std::vector<Op> ops(1);
    metering_command(std::get<Command>(ops[0]), op, account_id, hold_id, r, req, nullptr);
    submit_ops(std::move(ops), std::move(respond));
  }

  void submit_one(Op&& op, Responder respond) {
    std::vector<Op> ops;
    ops.push_back(std::move(op));
    submit_ops(std::move(ops), std::move(respond));
  }

  // Submits ops that answer with one reply (a single request's).
  void submit_ops(std::vector<Op>&& ops, Responder respond) {
    auto shared = std::make_shared<Responder>(std::move(respond));
    bool ok = engine.submit(
        std::move(ops),
        [shared](std::vector<Reply>&& replies) { (*shared)(from_reply(std::move(replies[0]))); },
        !options.defer_engine_wake);
    if (!ok)
      (*shared)(from_error(err(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
  }

  void read(std::function<HttpResponse(EngineState&)> fn, Responder respond) {
    auto shared = std::make_shared<Responder>(std::move(respond));
    bool ok = engine.read([shared, fn = std::move(fn)](EngineState& st) { (*shared)(fn(st)); });
    if (!ok)
      (*shared)(from_error(err(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
  }

  // ---- routes ----

  void plans(Responder respond) {
    std::string out;
    json::Writer w(out);
    w.begin_object().key("plans").begin_array();
    for (const auto& p : engine.catalog().plans) {
      w.begin_object();
      w.key("id").string(p.id).key("name").string(p.name);
      w.key("price_usd_cents").integer(p.price_usd_cents);
      w.key("pools").begin_object();
      for (const auto& pa : p.pools) {
        w.key(pa.pool).begin_object();
        w.key("allowance").raw(format_credits(pa.allowance));
        if (pa.daily_cap)
          w.key("daily_cap").raw(format_credits(*pa.daily_cap));
        else
          w.key("daily_cap").null();
        w.end_object();
      }
      w.end_object();
      w.key("cycle_anchor")
          .string(p.cycle_anchor == pricing::CycleAnchor::kSignup ? "signup" : "billing");
      w.key("packs_allowed").boolean(p.packs_allowed);
      w.key("rollover_percent").integer(p.rollover_percent);
      w.end_object();
    }
    w.end_array().end_object();
    respond(json_response(200, std::move(out)));
  }

  void account_get(const std::string& id, Responder respond) {
    read(
        [id](EngineState& st) {
          auto v = st.ledger.view(id, st.now_ms);
          if (!v.ok()) return from_error(v.error());
          std::string out;
          ledger::render_account_view(*v, out);
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  void accounts_list(const HttpRequest& req, Responder respond) {
    const std::optional<std::size_t> page = list_limit(req);
    if (!page) return respond(from_error(bad_limit()));
    const std::size_t limit = *page;
    std::string after(req.query_param("after"));
    // The cursor is the last account id of the page before: anything else (an empty
    // `after=` too) is a bad cursor, as on the other lists.
    if (req.has_query("after") && !valid_id(after)) return respond(from_error(bad_cursor()));
    read(
        [after, limit](EngineState& st) {
          std::vector<std::string> ids = st.ledger.list_accounts(after, limit + 1);
          bool more = ids.size() > limit;
          if (more) ids.pop_back();
          std::string out;
          json::Writer w(out);
          w.begin_object().key("accounts").begin_array();
          for (const auto& id : ids) {
            auto v = st.ledger.view(id, st.now_ms);
            w.raw("");
            ledger::render_account_view(*v, out);
          }
          end_page(w, more, more ? std::string_view(ids.back()) : std::string_view());
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  // Grants are listed pool by pool, each pool's in the order they were made (bucket ids
  // grow); the cursor "<pool index>:<bucket id>" names the last one shown.
  void grants(const HttpRequest& req, const std::string& id, Responder respond) {
    Result<PairPage> page = pair_page(req);
    if (!page.ok()) return refuse_after_lookup(id, page.error(), std::move(respond));
    const std::size_t limit = page->limit;
    const bool has_after = page->after.has_value();
    const std::optional<std::uint64_t> bucket =
        has_after ? cursor_number(page->after->rest) : std::optional<std::uint64_t>(0);
    if (!bucket) return refuse_after_lookup(id, bad_cursor(), std::move(respond));
    std::uint64_t after_pool = has_after ? page->after->number : 0;
    std::uint64_t after_bucket = *bucket;
    read(
        [id, limit, has_after, after_pool, after_bucket](EngineState& st) {
          const ledger::Account* a = st.ledger.find(id);
          if (a == nullptr) return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          ledger::Account p = st.ledger.projected(*a, st.now_ms);
          std::string out;
          json::Writer w(out);
          w.begin_object().key("grants").begin_array();
          std::size_t n = 0;
          std::string last;
          bool more = false;
          for (std::size_t pi = 0; pi < p.pools.size() && !more; ++pi) {
            const auto& pool = p.pools[pi];
            for (const auto& b : pool.buckets) {
              if (b.kind == ledger::BucketKind::kAllowance) continue;
              const bool seen = has_after && (pi < after_pool ||
                                              (pi == after_pool && b.bucket_id <= after_bucket));
              if (seen) continue;
              if (n == limit) {
                more = true;
                break;
              }
              w.raw("");
              ledger::render_grant(pool.name, b, out);
              last = std::to_string(pi) + ":" + std::to_string(b.bucket_id);
              ++n;
            }
          }
          end_page(w, more, last);
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  void holds_list(const HttpRequest& req, const std::string& id, Responder respond) {
    const std::optional<std::size_t> page = list_limit(req);
    if (!page) return refuse_after_lookup(id, bad_limit(), std::move(respond));
    const std::size_t limit = *page;
    std::string status(req.query_param("status"));
    if (req.has_query("status") && status != "open" && status != "captured" && status != "voided" &&
        status != "expired") {
      return refuse_after_lookup(id,
                                 err_param(ErrorCode::kInvalidRequest,
                                           "status is open, captured, voided or expired", "status"),
                                 std::move(respond));
    }
    // The cursor is the last hold shown; holds are listed in the order they were made.
    std::uint64_t after_seq = 0;
    if (req.has_query("after")) {
      std::optional<std::uint64_t> seq = hold_seq(req.query_param("after"));
      if (!seq) return refuse_after_lookup(id, bad_cursor(), std::move(respond));
      after_seq = *seq;
    }
    read(
        [id, status, after_seq, limit](EngineState& st) {
          const ledger::Account* a0 = st.ledger.find(id);
          if (a0 == nullptr) return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          const ledger::Account& a = *a0;
          // An open hold whose time has passed reads as expired (its expiry is applied lazily).
          auto state_of = [&](const ledger::HoldRecord& h) {
            if (h.state == ledger::HoldState::kOpen && h.expires_at_ms <= st.now_ms)
              return ledger::HoldState::kExpired;
            return h.state;
          };
          std::string out;
          json::Writer w(out);
          w.begin_object().key("holds").begin_array();
          // The account's map is in id-string order ("h_10066" before "h_8458"): the page
          // is the `limit` holds of smallest seq after the cursor.
          std::vector<std::pair<std::uint64_t, const ledger::HoldRecord*>> after;
          for (const auto& [hold_id, h] : a.holds) {
            const std::uint64_t seq = hold_seq(hold_id).value_or(0);
            if (seq <= after_seq) continue;
            if (!status.empty() && ledger::hold_state_name(state_of(h)) != status) continue;
            after.emplace_back(seq, &h);
          }
          const bool more = after.size() > limit;
          const std::size_t shown = std::min(after.size(), limit);
          std::partial_sort(after.begin(), after.begin() + static_cast<std::ptrdiff_t>(shown),
                            after.end());
          std::string last;
          for (std::size_t i = 0; i < shown; ++i) {
            const ledger::HoldRecord& h = *after[i].second;
            w.begin_object();
            w.key("hold_id").string(h.hold_id);
            w.key("kind").string(pricing::kind_name(h.kind));
            w.key("user_id").string(h.user_id);
            w.key("amount").raw(format_credits(h.amount));
            w.key("state").string(ledger::hold_state_name(state_of(h)));
            w.key("expires_at").string(format_rfc3339(h.expires_at_ms));
            w.end_object();
            last = h.hold_id;
          }
          end_page(w, more, last);
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  void charge_get(const std::string& id, const std::string& charge_id, Responder respond) {
    read(
        [id, charge_id](EngineState& st) {
          const ledger::Account* a = st.ledger.find(id);
          if (a == nullptr) return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          // As the next write would see it: a charge that the resets due by now forget is 404
          // already (charge_at), before any write applies them.
          const ledger::ChargeRecord* rec = st.ledger.charge_at(*a, charge_id, st.now_ms);
          if (rec == nullptr) return from_error(err(ErrorCode::kChargeNotFound, "no such charge"));
          const ledger::ChargeRecord& c = *rec;
          const ledger::PoolState& pool = a->pools[c.pool_index];
          std::string out;
          json::Writer w(out);
          w.begin_object();
          w.key("charge_id").string(charge_id);
          w.key("account_id").string(a->account_id);
          w.key("user_id").string(a->charges.user_id(c));
          w.key("kind").string(pricing::kind_name(c.kind));
          w.key("pool").string(pool.name);
          w.key("cost").raw(format_credits(c.cost));
          w.key("refunded").raw(format_credits(c.refunded()));
          w.key("at").string(format_rfc3339(c.at_ms));
          w.key("rate_card_version").integer(c.rate_card_version);
          if (c.hold_seq == 0)
            w.key("hold_id").null();
          else
            w.key("hold_id").string(c.hold_id());
          w.key("drawn_from").begin_array();
          for (const auto& d : c.drawn()) {
            std::string source = "allowance";
            for (const auto& b : pool.buckets) {
              if (b.bucket_id == d.bucket_id && b.kind != ledger::BucketKind::kAllowance)
                source = "grant:" + b.grant_id;
            }
            w.begin_object()
                .key("source")
                .string(source)
                .key("credits")
                .raw(format_credits(d.credits))
                .end_object();
          }
          w.end_array();
          w.key("refunds").begin_array();
          for (const auto& r : c.refunds()) {
            w.begin_object().key("refund_id").string(r.refund_id);
            w.key("credits").raw(format_credits(r.credits));
            w.key("at").string(format_rfc3339(r.at_ms));
            w.key("reason").string(r.reason).end_object();
          }
          w.end_array();
          w.end_object();
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  static std::string rate_limits_json(const pricing::PlanRateLimits& limits) {
    std::string out;
    json::Writer w(out);
    w.begin_object();
    auto put = [&](std::string_view key, const std::optional<pricing::RateLimit>& l) {
      w.key(key);
      if (!l) {
        w.null();
        return;
      }
      w.begin_object()
          .key("per_minute")
          .integer(l->per_minute)
          .key("burst")
          .integer(l->burst)
          .end_object();
    };
    put("per_user", limits.per_user);
    put("per_account", limits.per_account);
    w.end_object();
    return out;
  }

  // A request that failed validation on an account route still asks whether the account
  // exists: API.md's order puts 404 before 400.
  void refuse_after_lookup(const std::string& id, Error e, Responder respond) {
    read(
        [id, e = std::move(e)](EngineState& st) {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          return from_error(e);
        },
        std::move(respond));
  }

  void quote(const std::string& id, ObjectReader& r, Responder respond) {
    const pricing::RateCard& card = engine.rate_card();
    auto kind_s = r.string("kind");
    if (!kind_s.ok()) return refuse_after_lookup(id, kind_s.error(), std::move(respond));
    auto kind = pricing::parse_kind(*kind_s);
    if (!kind)
      return refuse_after_lookup(id, err_param(ErrorCode::kInvalidRequest, "unknown kind", "kind"),
                                 std::move(respond));
    auto u = r.any("usage");
    if (!u || u->is_null())
      return refuse_after_lookup(
          id, err_param(ErrorCode::kInvalidRequest, "usage is required", "usage"),
          std::move(respond));
    auto usage = parse_usage(*u);
    if (!usage.ok()) return refuse_after_lookup(id, usage.error(), std::move(respond));
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) return refuse_after_lookup(id, unknown.error(), std::move(respond));
    auto price = card.price(*kind, *usage);
    if (!price.ok()) return refuse_after_lookup(id, price.error(), std::move(respond));
    std::string out;
    json::Writer w(out);
    w.begin_object().key("cost").raw(format_credits(price->cost));
    w.key("pool").string(price->pool);
    w.key("rate_card_version").integer(card.version());
    w.end_object();
    read(
        [id, out](EngineState& st) {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          return json_response(200, out);
        },
        std::move(respond));
  }

  void create_account(const HttpRequest& req, ObjectReader& r, Responder respond) {
    Command c;
    ledger::CreateAccount ca;
    std::optional<Error> bad;
    if (auto e = idem_of(r, req, kAdminScope, "create_account", c.idem)) {
      return respond(from_error(*e));
    }
    auto id = r.string("account_id");
    if (!id.ok())
      bad = id.error();
    else if (!valid_id(*id))
      bad = err_param(ErrorCode::kInvalidRequest, id_rule("account_id"), "account_id");
    else
      ca.account_id = std::string(*id);
    auto plan = r.string("plan");
    if (!bad && !plan.ok()) bad = plan.error();
    if (!bad) ca.plan_id = std::string(*plan);
    auto signup = r.optional_string("signup_at");
    if (!bad && !signup.ok()) bad = signup.error();
    if (!bad && *signup) {
      auto t = parse_rfc3339(**signup);
      if (!t)
        bad = err_param(ErrorCode::kInvalidRequest,
                        "signup_at must be an RFC 3339 instant from 1970 to 9999", "signup_at");
      else
        ca.signup_at_ms = *t;
    }
    if (!bad) {
      Status unknown = r.no_unknown_fields();
      if (!unknown.ok()) bad = unknown.error();
    }
    c.body = std::move(ca);
    if (bad) set_precheck(c, *bad);
    seal(c, "create_account", &r);
    submit_one(std::move(c), std::move(respond));
  }

  void simple_account_op(const HttpRequest& req, const std::string& id, std::string_view route,
                         ObjectReader& r, Responder respond) {
    Command c;
    // As in metering_command: a key's error is answered after the 404s.
    const std::optional<Error> key_error =
        idem_of(r, req, id, std::string(route) + ":" + id, c.idem);
    if (key_error) c.idem = ledger::IdempotencyRef{};
    std::optional<Error> bad;
    std::optional<Error> passed;  // an expires_at already past (see below)
    if (route == "close") {
      c.body = ledger::CloseAccount{id};
    } else if (route == "plan") {
      ledger::ChangePlan cp;
      cp.account_id = id;
      auto plan = r.string("plan");
      if (!plan.ok())
        bad = plan.error();
      else if (engine.catalog().find(*plan) == nullptr)
        bad = err_param(ErrorCode::kInvalidRequest, "unknown plan", "plan");
      else
        cp.plan_id = std::string(*plan);
      c.body = std::move(cp);
    } else {  // packs, adjustments
      ledger::AddGrant g;
      g.account_id = id;
      g.source = route == "packs" ? ledger::GrantSource::kPack : ledger::GrantSource::kAdjustment;
      auto pool = r.string("pool");
      if (!pool.ok())
        bad = pool.error();
      else
        g.pool = std::string(*pool);
      auto credits = credits_of(r, "credits", route == "adjustments");
      if (!bad && !credits.ok()) bad = credits.error();
      if (!bad) {
        g.credits = *credits;
        if (g.credits.is_zero() || (route == "packs" && g.credits.is_negative())) {
          bad = err_param(ErrorCode::kInvalidAmount,
                          route == "packs" ? "credits must be positive" : "credits must not be 0",
                          "credits");
        }
      }
      if (route == "adjustments") {
        auto reason = r.string("reason");
        if (!bad && !reason.ok()) bad = reason.error();
        if (!bad && (reason->empty() || reason->size() > ledger::kReasonBytesMax)) {
          bad = err_param(ErrorCode::kInvalidRequest, "reason must be 1 to 256 bytes", "reason");
        }
        if (!bad) g.reason = std::string(*reason);
        auto exp = r.optional_string("expires_at");
        if (!bad && !exp.ok()) bad = exp.error();
        if (!bad && *exp) {
          auto t = parse_rfc3339(**exp);
          if (!t)
            bad =
                err_param(ErrorCode::kInvalidRequest,
                          "expires_at must be an RFC 3339 instant from 1970 to 9999", "expires_at");
          else if (g.credits.is_negative())
            // DESIGN.md: a negative adjustment takes free credits at once; nothing of it
            // lives on to expire, so an expiry given for it is a mistake, not ignored.
            bad = err_param(ErrorCode::kInvalidRequest,
                            "a negative adjustment takes credits at once and has no expires_at",
                            "expires_at");
          else {
            g.expires_at_ms = *t;
            // Refused after the request is sealed: whether the instant has passed depends
            // on when the request comes, not on what it says, so a retry of a key whose
            // expiry has passed since is still the same request (a replay, not a 422).
            if (*t <= engine.last_logged_ms() ||
                (options.manual_clock == nullptr && *t <= SystemClock().now_ms()) ||
                (options.manual_clock != nullptr && *t <= options.manual_clock->now_ms())) {
              passed = err_param(ErrorCode::kInvalidRequest, "expires_at must be in the future",
                                 "expires_at");
            }
          }
        }
      } else {
        g.reason = "pack";  // API.md: a pack's body has no reason (unknown_field)
      }
      c.body = std::move(g);
    }
    if (!bad) {
      Status unknown = r.no_unknown_fields();
      if (!unknown.ok()) bad = unknown.error();
    }
    if (bad) set_precheck(c, *bad);
    keep_key_error(c, key_error);
    seal(c, std::string(route) + ":" + id, &r);
    if (!bad && passed) set_precheck(c, *passed);
    submit_one(std::move(c), std::move(respond));
  }

  void refund(const HttpRequest& req, const std::string& id, const std::string& charge_id,
              ObjectReader& r, Responder respond) {
    Command c;
    // As in metering_command: a key's error is answered after the 404s.
    const std::optional<Error> key_error =
        idem_of(r, req, id, "refund:" + id + ":" + charge_id, c.idem);
    if (key_error) c.idem = ledger::IdempotencyRef{};
    ledger::Refund rf;
    rf.account_id = id;
    rf.charge_id = charge_id;
    std::optional<Error> bad;
    if (auto a = r.any("credits"); a && !a->is_null()) {
      auto m = credits_of(r, "credits", false);
      if (!m.ok())
        bad = m.error();
      else if (m->is_zero())
        bad = err_param(ErrorCode::kInvalidAmount, "credits must be positive", "credits");
      else
        rf.credits = *m;
    }
    // API.md: a refund's body is {"idempotency_key", "credits"?, "reason"}: the reason is
    // required, as on adjustments, so every refund can be explained.
    auto reason = r.string("reason");
    if (!bad && !reason.ok()) bad = reason.error();
    if (!bad && (reason->empty() || reason->size() > ledger::kReasonBytesMax))
      bad = err_param(ErrorCode::kInvalidRequest, "reason must be 1 to 256 bytes", "reason");
    if (!bad) rf.reason = std::string(*reason);
    if (!bad) {
      Status unknown = r.no_unknown_fields();
      if (!unknown.ok()) bad = unknown.error();
    }
    c.body = std::move(rf);
    if (bad) set_precheck(c, *bad);
    keep_key_error(c, key_error);
    seal(c, "refund:" + id + ":" + charge_id, &r);
    submit_one(std::move(c), std::move(respond));
  }

  void create_key(const HttpRequest& req, const std::string& account_id, ObjectReader& r,
                  Responder respond) {
    CreateKeyOp op;
    const std::string route = "key:" + (account_id.empty() ? std::string(kAdminScope) : account_id);
    // A key's error rides in the op like the other validation errors, so that a missing
    // account's 404 comes first (API.md's order).
    const std::optional<Error> key_error = idem_of(
        r, req, account_id.empty() ? kAdminScope : std::string_view(account_id), route, op.idem);
    if (key_error) op.idem = ledger::IdempotencyRef{};
    // Validation errors ride in the op: the engine answers a replay or 422 first.
    std::optional<Error> bad = key_error;
    auto role = r.optional_string("role");
    const std::string_view rs =
        role.ok() ? role->value_or(account_id.empty() ? "service" : "read") : "";
    if (!role.ok()) {
      bad = role.error();
    } else if (account_id.empty()) {
      // API.md gives POST /v1/keys's role without a default: it is required.
      if (!role->has_value())
        bad = err_param(ErrorCode::kInvalidRequest, "role is required (\"service\")", "role");
      else if (rs != "service")
        bad = err_param(ErrorCode::kInvalidRequest, "role must be service", "role");
      op.key.role = Role::kService;
    } else if (rs == "read") {
      op.key.role = Role::kRead;
    } else if (rs == "meter") {
      op.key.role = Role::kMeter;
    } else {
      bad = err_param(ErrorCode::kInvalidRequest, "role must be read or meter", "role");
    }
    auto label = r.optional_string("label");
    if (!bad && !label.ok()) bad = label.error();
    if (!bad && *label && (*label)->size() > kLabelBytesMax) {
      bad = err_param(ErrorCode::kInvalidRequest, "label is at most 128 bytes", "label");
    }
    if (!bad) {
      Status unknown = r.no_unknown_fields();
      if (!unknown.ok()) bad = unknown.error();
    }
    // The request hash: the route and the fields as given (an absent role or label is not
    // its default); a request that failed validation hashes its raw body instead.
    std::string canon = route;
    canon += '\x1f';
    if (bad) {
      canon += "invalid\x1f";
      r.value().append_json(canon);
      op.precheck = std::make_shared<const Error>(*bad);
    } else {
      canon += role->has_value() ? "role=" + std::string(**role) : std::string("role?");
      canon += '\x1f';
      canon += label->has_value() ? "label=" + std::string(**label) : std::string("label?");
      op.key.label = std::string(label->value_or(""));
    }
    op.idem.request_hash = hash128("request", canon);
    // The key itself is derived by the engine from its id (CreateKeyOp, engine.h).
    op.key.key_id = random_id("key_");
    op.key.account_id = account_id;
    op.key.created_at_ms =
        std::max(engine.last_logged_ms(),
                 options.manual_clock ? options.manual_clock->now_ms() : SystemClock().now_ms());
    auto submit = [this, op = std::move(op)](Responder respond) mutable {
      submit_one(std::move(op), std::move(respond));
    };
    if (account_id.empty()) return submit(std::move(respond));
    // The account must exist (404).
    auto shared = std::make_shared<Responder>(std::move(respond));
    read(
        [this, account_id, shared, submit = std::move(submit)](EngineState& st) mutable {
          if (st.ledger.find(account_id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          submit(std::move(*shared));
          return HttpResponse{0, "", "", {}};
        },
        [shared](HttpResponse&& r) {
          if (r.status != 0) (*shared)(std::move(r));
        });
  }

  // Keys are listed by creation (keys_of's order: created_at, then key id); the cursor
  // "<created_at_ms>:<key_id>" names the last one shown, so a key revoked between pages
  // moves nothing.
  void keys_list(const HttpRequest& req, const std::string& id, Responder respond) {
    Result<PairPage> page = pair_page(req);
    if (!page.ok()) return refuse_after_lookup(id, page.error(), std::move(respond));
    read(
        [this, id, limit = page->limit, after = std::move(page->after)](EngineState& st) {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          std::string out;
          json::Writer w(out);
          w.begin_object().key("keys").begin_array();
          std::size_t n = 0;
          std::string last;
          bool more = false;
          for (const auto& k : engine.keys_of(id)) {
            const auto created_at_ms = static_cast<std::uint64_t>(k.created_at_ms);
            const bool seen =
                after && (created_at_ms < after->number ||
                          (created_at_ms == after->number && k.key_id <= after->rest));
            if (seen) continue;
            if (n == limit) {
              more = true;
              break;
            }
            w.begin_object().key("key_id").string(k.key_id).key("role").string(role_name(k.role));
            if (k.label.empty())
              w.key("label").null();
            else
              w.key("label").string(k.label);
            w.key("created_at").string(format_rfc3339(k.created_at_ms));
            w.end_object();
            last = std::to_string(created_at_ms) + ":" + k.key_id;
            ++n;
          }
          end_page(w, more, last);
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  // `refused`: the body's error, answered after the account's and the key's 404 (API.md's
  // order: 404 before 400).
  void key_delete(const std::string& id, const std::string& key_id, std::optional<Error> refused,
                  Responder respond) {
    bool found = false;
    for (const auto& k : engine.keys_of(id)) found = found || k.key_id == key_id;
    auto shared = std::make_shared<Responder>(std::move(respond));
    read(
        [this, id, key_id, found, refused, shared](EngineState& st) {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          if (!found) return from_error(err(ErrorCode::kKeyNotFound, "no such key"));
          if (refused) return from_error(*refused);
          submit_one(RevokeKeyOp{id, key_id}, std::move(*shared));
          return HttpResponse{0, "", "", {}};
        },
        [shared](HttpResponse&& r) {
          if (r.status != 0) (*shared)(std::move(r));
        });
  }

  // DELETE /v1/keys/{key_id}: revokes a service key (DESIGN.md section 5: keys are
  // revocable), logged as an account key's revocation is. Only service keys: an account's
  // key id here is 404, as it is under another account.
  void service_key_delete(const std::string& key_id, std::optional<Error> refused,
                          Responder respond) {
    bool found = false;
    for (const auto& k : engine.keys_of("")) {
      found = found || (k.key_id == key_id && k.role == Role::kService);
    }
    if (!found) return respond(from_error(err(ErrorCode::kKeyNotFound, "no such key")));
    if (refused) return respond(from_error(*refused));
    submit_one(RevokeKeyOp{"", key_id}, std::move(respond));
  }

  void rate_limits_put(const std::string& id, ObjectReader& r, Responder respond) {
    RateLimitsOp op;
    op.account_id = id;
    auto one = [&](std::string_view key,
                   std::optional<pricing::RateLimit>& dst) -> std::optional<Error> {
      auto o = r.optional_object(key);
      if (!o.ok()) return o.error();
      if (!*o) return std::nullopt;
      auto pm = (*o)->int64("per_minute", 1, pricing::kRateLimitMax);
      if (!pm.ok()) return pm.error();
      auto burst = (*o)->int64("burst", 1, pricing::kRateLimitMax);
      if (!burst.ok()) return burst.error();
      Status unknown = (*o)->no_unknown_fields();
      if (!unknown.ok()) return unknown.error();
      dst = pricing::RateLimit{*pm, *burst};
      return std::nullopt;
    };
    if (auto e = one("per_user", op.limits.per_user))
      return refuse_after_lookup(id, *e, std::move(respond));
    if (auto e = one("per_account", op.limits.per_account))
      return refuse_after_lookup(id, *e, std::move(respond));
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) return refuse_after_lookup(id, unknown.error(), std::move(respond));
    auto shared = std::make_shared<Responder>(std::move(respond));
    read(
        [this, id, op = std::move(op), shared](EngineState& st) mutable {
          const ledger::Account* a = st.ledger.find(id);
          if (a == nullptr) return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          // The limits in force: the overrides, and the plan's where they name none.
          std::string out = rate_limits_json(pricing::in_force(op.limits, a->plan.rate_limits));
          std::vector<Op> ops;
          ops.push_back(std::move(op));
          bool ok = engine.submit(std::move(ops), [out, shared](std::vector<Reply>&& replies) {
            Reply& r = replies[0];
            if (r.status == 200)
              (*shared)(json_response(200, out));
            else
              (*shared)(from_reply(std::move(r)));
          });
          if (!ok)
            return from_error(err(ErrorCode::kOverloaded, "the server is busy; retry shortly"));
          return HttpResponse{0, "", "", {}};
        },
        [shared](HttpResponse&& r) {
          if (r.status != 0) (*shared)(std::move(r));
        });
  }

  void cache_put(const HttpRequest& req, const std::string& id, const std::string& cache_key,
                 ObjectReader& r, Responder respond) {
    (void)req;
    CachePutOp op;
    op.account_id = id;
    op.cache_key = cache_key;
    auto kind = r.string("kind");
    if (!kind.ok()) return refuse_after_lookup(id, kind.error(), std::move(respond));
    const std::optional<pricing::Kind> parsed = pricing::parse_kind(*kind);
    if (!parsed)
      return refuse_after_lookup(id, err_param(ErrorCode::kInvalidRequest, "unknown kind", "kind"),
                                 std::move(respond));
    // DESIGN.md: the cache is for integration calls.
    if (!pricing::kind_is_integration_call(*parsed)) {
      return refuse_after_lookup(
          id, err_param(ErrorCode::kInvalidRequest, "only integration kinds are cached", "kind"),
          std::move(respond));
    }
    op.kind = std::string(*kind);
    auto resp = r.any("response");
    if (!resp)
      return refuse_after_lookup(
          id, err_param(ErrorCode::kInvalidRequest, "response is required", "response"),
          std::move(respond));
    resp->append_json(op.entry.response_json);
    if (op.entry.response_json.size() > policy::kCacheResponseBytesMax) {
      return refuse_after_lookup(
          id, err_param(ErrorCode::kInvalidRequest, "response is at most 256 KiB", "response"),
          std::move(respond));
    }
    auto ttl = r.optional_int64("ttl_s", 1, policy::kCacheTtlSMax);
    if (!ttl.ok()) return refuse_after_lookup(id, ttl.error(), std::move(respond));
    auto cs = r.optional_string("call_site");
    if (!cs.ok()) return refuse_after_lookup(id, cs.error(), std::move(respond));
    // The same call_site as in a charge's metadata, so the same size (API.md).
    if (*cs && !chars_at_most(**cs, kMetadataValueCharsMax)) {
      return refuse_after_lookup(
          id,
          err_param(ErrorCode::kInvalidRequest, "call_site is at most 256 characters", "call_site"),
          std::move(respond));
    }
    if (*cs) op.entry.call_site = std::string(**cs);
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) return refuse_after_lookup(id, unknown.error(), std::move(respond));
    std::int64_t ttl_s = ttl->value_or(policy::kCacheTtlSDefault);
    auto shared = std::make_shared<Responder>(std::move(respond));
    read(
        [this, id, op = std::move(op), ttl_s, shared](EngineState& st) mutable {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          // An entry larger than the cache's budget or the account's quota could not be
          // kept: refused, and the entry it would replace stays.
          if (!st.cache.fits(id, op.kind, op.cache_key, op.entry.response_json.size())) {
            const std::size_t size = policy::IntegrationCache::entry_bytes(
                id, op.kind, op.cache_key, op.entry.response_json.size());
            const bool by_quota = st.cache.account_bytes_max() != 0 &&
                                  st.cache.account_bytes_max() < st.cache.bytes_max();
            const std::string limit =
                by_quota
                    ? "the account's cache quota (" + std::to_string(st.cache.account_bytes_max()) +
                          " bytes)"
                    : "the cache's budget (" + std::to_string(st.cache.bytes_max()) + " bytes)";
            return from_error(err_param(ErrorCode::kInvalidRequest,
                                        "the entry (" + std::to_string(size) +
                                            " bytes with its key) is larger than " + limit,
                                        "response"));
          }
          op.entry.expires_at_ms = st.now_ms + ttl_s * 1000;
          submit_one(std::move(op), std::move(*shared));
          return HttpResponse{0, "", "", {}};
        },
        [shared](HttpResponse&& r) {
          if (r.status != 0) (*shared)(std::move(r));
        });
  }

  void cache_get(const HttpRequest& req, const std::string& id, const std::string& cache_key,
                 Responder respond) {
    std::string kind(req.query_param("kind"));
    if (!pricing::parse_kind(kind))
      return refuse_after_lookup(id,
                                 err_param(ErrorCode::kInvalidRequest,
                                           "kind is required and must be a known kind", "kind"),
                                 std::move(respond));
    read(
        [id, cache_key, kind](EngineState& st) {
          if (st.ledger.find(id) == nullptr)
            return from_error(err(ErrorCode::kAccountNotFound, "no such account"));
          const policy::CacheEntry* e = st.cache.peek(id, kind, cache_key, st.now_ms);
          if (e == nullptr) return from_error(err(ErrorCode::kNotFound, "no such cache entry"));
          std::string out = "{\"response\":";
          out += e->response_json;
          out += '}';
          return json_response(200, std::move(out));
        },
        std::move(respond));
  }

  void clock(ObjectReader& r, Responder respond) {
    if (options.manual_clock == nullptr) {
      return respond(
          from_error(err(ErrorCode::kClockDisabled,
                         "the clock is not manual (start creditd with --clock manual)")));
    }
    auto now = r.string("now");
    if (!now.ok()) return respond(from_error(now.error()));
    auto t = parse_rfc3339(*now);
    if (!t)
      return respond(from_error(err_param(
          ErrorCode::kInvalidRequest,
          "now must be an RFC 3339 instant from 1970 and before 9000-01-01T00:00:00Z", "now")));
    // A cycle or a hold that starts now ends within RFC 3339's four-digit years.
    if (*t >= kClockNowMsMax) {
      return respond(from_error(
          err_param(ErrorCode::kInvalidRequest, "now must be before 9000-01-01T00:00:00Z", "now")));
    }
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) return respond(from_error(unknown.error()));
    if (*t < engine.last_logged_ms() || !options.manual_clock->set_ms(*t)) {
      return respond(from_error(err(ErrorCode::kClockBackwards, "the clock never goes backwards")));
    }
    std::string out = "{\"now\":";
    json::append_string(out, format_rfc3339(*t));
    out += '}';
    // What the move made due (hold expiries, grant expiries, resets) is swept and durable
    // before the answer, so the next read sees its events.
    auto shared = std::make_shared<Responder>(std::move(respond));
    auto answer = [shared, out = std::move(out)](EngineState&) mutable {
      (*shared)(json_response(200, std::move(out)));
    };
    if (!engine.sweep_then_read(std::move(answer)))
      (*shared)(from_error(err(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
  }

  void batch(const HttpRequest& req, const Auth& auth, JsonValue root, Responder respond) {
    ObjectReader r(root);
    auto ops_v = r.array("ops");
    if (!ops_v.ok()) return respond(from_error(ops_v.error()));
    Status unknown = r.no_unknown_fields();
    if (!unknown.ok()) return respond(from_error(unknown.error()));
    if (ops_v->size() > kBatchOpsMax) {
      return respond(from_error(err(ErrorCode::kTooManyOps, "a batch holds at most 8192 ops")));
    }
    // Ops refused here, in op order, beside the ops submitted (the others, in order):
    // the replies are merged back by position when the response is rendered.
    const std::size_t n = ops_v->size();
    std::vector<std::pair<std::size_t, HttpResponse>> refused;
    std::vector<Op> ops;
    ops.reserve(n);
    std::size_t i = 0;
    const std::string none;
    for (auto [k, v] : *ops_v) {
      (void)k;
      auto fail = [&](const Error& e) { refused.emplace_back(i, from_error(e)); };
      if (!v.is_object()) {
        fail(err_param(ErrorCode::kInvalidRequest, "each op is an object",
                       json_path_index("ops", i)));
        ++i;
        continue;
      }
      ObjectReader o(v, "");
      auto op = o.string("op");
      auto acct = o.string("account_id");
      // An op's account_id is its request's path: 403 for an account the key cannot reach
      // comes before the op's 400s (API.md's order), as on the single routes.
      if (acct.ok() && !allowed(auth, Role::kMeter, *acct)) {
        fail(err(ErrorCode::kForbidden, std::string(kForbiddenMessage)));
      } else if (!op.ok() ||
                 (*op != "charge" && *op != "hold" && *op != "capture" && *op != "void")) {
        fail(err_param(ErrorCode::kInvalidRequest, "op is charge, hold, capture or void", "op"));
      } else if (!acct.ok()) {
        fail(acct.error());
      } else if (!valid_id(*acct)) {
        // As the op's own request would answer: no account has such an id.
        fail(err(ErrorCode::kAccountNotFound, "no such account"));
      } else {
        std::string_view hold_id;
        if (*op == "capture" || *op == "void") {
          auto h = o.string("hold_id");
          if (!h.ok()) {
            fail(h.error());
            ++i;
            continue;
          }
          hold_id = *h;
        }
        metering_command(std::get<Command>(ops.emplace_back()), *op, *acct, hold_id, o, req, &none);
      }
      ++i;
    }
    auto finish = [n, refused = std::move(refused)](std::vector<Reply>* replies,
                                                    Responder& respond) {
      // One allocation for the whole answer: the reply bodies plus the frame of each.
      constexpr std::size_t kResultFrameBytes = 48;
      std::size_t bytes = 16 + n * kResultFrameBytes;
      for (const auto& [j, h] : refused) bytes += h.body.size();
      if (replies != nullptr) {
        for (const Reply& r : *replies) bytes += r.body.size();
      }
      std::string out;
      out.reserve(bytes);
      out += "{\"results\":[";
      auto put = [&out](int status, std::string_view body, bool replayed) {
        char digits[16];
        auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
        (void)ec;
        out += "{\"status\":";
        out.append(digits, end);
        out += ",\"body\":";
        out += body.empty() ? std::string_view("null") : body;
        out += ",\"replayed\":";
        out += replayed ? "true" : "false";
        out += '}';
      };
      std::size_t next_refused = 0;
      std::size_t next_reply = 0;
      for (std::size_t j = 0; j < n; ++j) {
        if (j > 0) out += ',';
        if (next_refused < refused.size() && refused[next_refused].first == j) {
          // An error answer: never a replay (its only header is Retry-After, if any).
          const HttpResponse& h = refused[next_refused++].second;
          put(h.status, h.body, false);
          continue;
        }
        CREDIT_ASSERT(replies != nullptr && next_reply < replies->size());
        const Reply& r = (*replies)[next_reply++];
        // As from_reply: a 204 has no body.
        put(r.status, r.status == 204 ? std::string_view() : std::string_view(r.body), r.replayed);
      }
      CREDIT_ASSERT(next_refused == refused.size());
      CREDIT_ASSERT(replies == nullptr || next_reply == replies->size());
      out += "]}";
      respond(json_response(200, std::move(out)));
    };
    if (ops.empty()) return finish(nullptr, respond);
    auto shared = std::make_shared<Responder>(std::move(respond));
    bool ok = engine.submit(
        std::move(ops),
        [finish = std::move(finish), shared](std::vector<Reply>&& replies) {
          finish(&replies, *shared);
        },
        !options.defer_engine_wake);
    if (!ok)
      (*shared)(from_error(err(ErrorCode::kOverloaded, "the server is busy; retry shortly")));
  }

  void static_file(const HttpRequest& req, Responder respond) {
    std::string rel = req.path.substr(4);  // after "/ui/"
    // "/ui//app.js" is "/ui/app.js" (a leading "/" would make the path absolute).
    rel.erase(0, std::min(rel.size(), rel.find_first_not_of('/')));
    if (rel.empty()) rel = "index.html";
    if (rel.find("..") != std::string::npos)
      return respond(from_error(err(ErrorCode::kNotFound, "not found")));
    // A regular file inside the dashboard directory once links are resolved: a link placed
    // in it does not reach out (to DATA/admin.key, say).
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::path root = fs::canonical(options.web_dir, ec);
    const fs::path file = ec ? fs::path() : fs::canonical(root / rel, ec);
    const auto [end, _] = std::mismatch(root.begin(), root.end(), file.begin(), file.end());
    if (ec || end != root.end() || !fs::is_regular_file(file, ec))
      return respond(from_error(err(ErrorCode::kNotFound, "not found")));
    std::ifstream f(file, std::ios::binary);
    if (!f) return respond(from_error(err(ErrorCode::kNotFound, "not found")));
    std::ostringstream ss;
    ss << f.rdbuf();
    HttpResponse h;
    h.body = ss.str();
    auto ends = [&](std::string_view s) {
      return rel.size() >= s.size() && rel.compare(rel.size() - s.size(), s.size(), s) == 0;
    };
    h.content_type = ends(".html")                 ? "text/html; charset=utf-8"
                     : ends(".js") || ends(".mjs") ? "text/javascript; charset=utf-8"
                     : ends(".css")                ? "text/css; charset=utf-8"
                     : ends(".svg")                ? "image/svg+xml"
                     : ends(".png")                ? "image/png"
                     : ends(".json")               ? "application/json"
                                                   : "application/octet-stream";
    h.headers.emplace_back("Cache-Control", ends(".html") ? "no-cache" : "public, max-age=300");
    h.headers.emplace_back(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-src blob:; object-src 'none'; base-uri 'none'; frame-ancestors "
        "'none'");
    h.headers.emplace_back("X-Content-Type-Options", "nosniff");
    respond(std::move(h));
  }

  void dispatch(HttpRequest&& req, Responder respond) {
    // HEAD is GET without the body (RFC 9110; the HTTP server sends the head only).
    const std::string_view m = req.method == "HEAD" ? std::string_view("GET") : req.method;
    if (m == "GET" && req.path == "/healthz")
      return respond(json_response(200, "{\"status\":\"ok\"}"));
    if (m == "GET" && req.path == "/metrics") {
      if (!req.from_loopback)
        return respond(
            from_error(err(ErrorCode::kForbidden, "metrics are served on loopback only")));
      HttpResponse h;
      h.content_type = std::string(MetricsRegistry::kContentType);
      h.body = api.metrics_.render();
      return respond(std::move(h));
    }
    if (m == "GET" && (req.path == "/ui" || req.path.rfind("/ui/", 0) == 0)) {
      if (req.path == "/ui") {
        HttpResponse h;
        h.status = 301;
        h.headers.emplace_back("Location", "/ui/");
        return respond(std::move(h));
      }
      return static_file(req, std::move(respond));
    }
    std::optional<Auth> auth = authenticate(engine, options, req.authorization);
    if (!auth)
      return respond(from_error(err(ErrorCode::kUnauthorized, "a valid bearer key is required")));
    std::vector<std::string_view> p = split_path(req.path);
    if (p.empty() || p[0] != "v1")
      return respond(from_error(err(ErrorCode::kNotFound, "no such route")));
    // Bodies are parsed before the role checks (API.md: 400 invalid_json before 403).
    std::optional<JsonValue> body;
    // A DELETE's body, when it has one, is parsed too: it may name no field.
    // A body of nothing but JSON whitespace reads as no body: {} (api-notes, "Bodies").
    const bool blank_body = req.body.find_first_not_of(" \t\r\n") == std::string::npos;
    if (m == "POST" || m == "PUT" || (m == "DELETE" && !blank_body)) {
      bool is_import = p.size() >= 3 && p[1] == "admin" && p[2] == "import";
      if (!is_import) {
        auto parsed = thread_json_parser().parse_object(blank_body ? std::string_view("{}")
                                                                   : std::string_view(req.body));
        if (!parsed.ok()) return respond(from_error(parsed.error()));
        body = *parsed;
      }
    }
    auto forbid = [&]() {
      respond(from_error(err(ErrorCode::kForbidden, std::string(kForbiddenMessage))));
    };
    auto need = [&](Role role, std::string_view account) { return allowed(*auth, role, account); };
    if (p.size() == 2 && p[1] == "plans" && m == "GET") return plans(std::move(respond));
    if (p.size() == 2 && p[1] == "batch" && m == "POST") {
      if (auth->role == Role::kRead) return forbid();
      return batch(req, *auth, *body, std::move(respond));
    }
    if (p.size() == 2 && p[1] == "keys" && m == "POST") {
      if (!need(Role::kAdmin, "")) return forbid();
      ObjectReader r(*body);
      return create_key(req, "", r, std::move(respond));
    }
    if (p.size() == 3 && p[1] == "keys" && m == "DELETE") {
      if (!need(Role::kAdmin, "")) return forbid();
      Status none = no_body_fields(body);
      return service_key_delete(std::string(p[2]),
                                none.ok() ? std::nullopt : std::optional(none.error()),
                                std::move(respond));
    }
    if (p.size() == 3 && p[1] == "admin" && p[2] == "clock" && m == "POST") {
      if (!need(Role::kAdmin, "")) return forbid();
      ObjectReader r(*body);
      return clock(r, std::move(respond));
    }
    if (p.size() >= 2 && p[1] == "accounts") {
      if (p.size() == 2) {
        if (m == "GET") {
          if (!need(Role::kService, "")) return forbid();
          return accounts_list(req, std::move(respond));
        }
        if (m == "POST") {
          if (!need(Role::kAdmin, "")) return forbid();
          ObjectReader r(*body);
          return create_account(req, r, std::move(respond));
        }
        return respond(from_error(err(ErrorCode::kNotFound, "no such route")));
      }
      std::string id(p[2]);
      // An account key never learns whether another account exists: 403 for any other id.
      if (!reaches(*auth, id)) return forbid();
      if (!valid_id(id))
        return respond(from_error(err(ErrorCode::kAccountNotFound, "no such account")));
      std::string sub = p.size() >= 4 ? std::string(p[3]) : std::string();
      if (p.size() == 3 && m == "GET") return account_get(id, std::move(respond));
      if (p.size() == 4 && m == "POST" &&
          (sub == "close" || sub == "plan" || sub == "packs" || sub == "adjustments")) {
        if (!need(Role::kAdmin, id)) return forbid();
        ObjectReader r(*body);
        return simple_account_op(req, id, sub, r, std::move(respond));
      }
      if (sub == "keys") {
        if (!need(Role::kAdmin, id)) return forbid();
        if (p.size() == 4 && m == "POST") {
          ObjectReader r(*body);
          return create_key(req, id, r, std::move(respond));
        }
        if (p.size() == 4 && m == "GET") return keys_list(req, id, std::move(respond));
        if (p.size() == 5 && m == "DELETE") {
          Status none = no_body_fields(body);
          return key_delete(id, std::string(p[4]),
                            none.ok() ? std::nullopt : std::optional(none.error()),
                            std::move(respond));
        }
      }
      if (p.size() == 4 && sub == "grants" && m == "GET")
        return grants(req, id, std::move(respond));
      if (p.size() == 4 && sub == "rate-limits" && m == "PUT") {
        if (!need(Role::kAdmin, id)) return forbid();
        ObjectReader r(*body);
        return rate_limits_put(id, r, std::move(respond));
      }
      if (p.size() == 4 && sub == "quote" && m == "POST") {
        ObjectReader r(*body);
        return quote(id, r, std::move(respond));
      }
      if (sub == "charges") {
        if (p.size() == 4 && m == "POST") {
          if (!need(Role::kMeter, id)) return forbid();
          ObjectReader r(*body);
          return submit_metering("charge", id, "", r, req, std::move(respond));
        }
        if (p.size() == 5 && m == "GET")
          return charge_get(id, std::string(p[4]), std::move(respond));
        if (p.size() == 6 && p[5] == "refunds" && m == "POST") {
          if (!need(Role::kService, id)) return forbid();
          ObjectReader r(*body);
          return refund(req, id, std::string(p[4]), r, std::move(respond));
        }
      }
      if (sub == "holds") {
        if (p.size() == 4 && m == "POST") {
          if (!need(Role::kMeter, id)) return forbid();
          ObjectReader r(*body);
          return submit_metering("hold", id, "", r, req, std::move(respond));
        }
        if (p.size() == 4 && m == "GET") return holds_list(req, id, std::move(respond));
        if (p.size() == 6 && m == "POST" && (p[5] == "capture" || p[5] == "void")) {
          if (!need(Role::kMeter, id)) return forbid();
          ObjectReader r(*body);
          return submit_metering(p[5], id, p[4], r, req, std::move(respond));
        }
      }
      if (sub == "cache" && p.size() == 5) {
        std::string key(p[4]);
        // API.md's order: 403, then 404 for a missing account, then the key's 400.
        auto bad_key = [] {
          return err_param(ErrorCode::kInvalidRequest, "bad cache key", "cache_key");
        };
        if (m == "PUT") {
          if (!need(Role::kMeter, id)) return forbid();
          if (!valid_id(key)) return refuse_after_lookup(id, bad_key(), std::move(respond));
          ObjectReader r(*body);
          return cache_put(req, id, key, r, std::move(respond));
        }
        if (m == "GET") {
          if (!need(Role::kService, id)) return forbid();
          if (!valid_id(key)) return refuse_after_lookup(id, bad_key(), std::move(respond));
          return cache_get(req, id, key, std::move(respond));
        }
      }
      if (api.audit_ && p.size() == 4 && (sub == "audit" || sub == "regression-loops") &&
          api.audit_(req, id, sub, *auth, respond))
        return;
      if (api.analytics_ && p.size() == 4 && api.analytics_(req, id, sub, *auth, respond)) return;
    }
    respond(from_error(err(ErrorCode::kNotFound, "no such route")));
  }
};

Api::Api(Engine& engine, MetricsRegistry& metrics, ApiOptions options)
    : engine_(engine),
      metrics_(metrics),
      options_(std::move(options)),
      impl_(std::make_unique<Impl>(Impl{*this, engine_, options_})) {
  engine_.set_metrics(Engine::Metrics{
      .batch_ops = &metrics_.histogram("creditd_batch_ops", "Ops per batch the ledger applied",
                                       kSizeBuckets),
      .fsync_seconds = &metrics_.histogram("creditd_fsync_seconds",
                                           "Latency of the log's fdatasync (one per group commit)",
                                           kLatencyBucketsSeconds),
      .charges = &metrics_.counter("creditd_charges_total",
                                   "Charges applied (201, idempotent replays not counted)")});
}

// The engine's metrics live in the registry, which may go before the engine does.
Api::~Api() {
  engine_.set_metrics({});
}

std::optional<Error> Api::check_head(const HttpRequest& head) {
  if (shutting_down_.load(std::memory_order_acquire)) {
    return Error(ErrorCode::kShuttingDown, "the server is shutting down; retry on its restart");
  }
  // The store failed and the process is about to exit (DESIGN.md section 3): nothing new
  // is read or applied from the state in memory, which may be ahead of the disk.
  if (engine_.failed()) {
    return Error(ErrorCode::kStorageFailed,
                 "the store failed; the server is stopping (retry with the same key after "
                 "its restart)");
  }
  // 401 comes before 413: an unauthenticated client learns nothing about body limits.
  if (head.path == "/healthz" || head.path == "/metrics" || head.path.rfind("/ui", 0) == 0)
    return std::nullopt;
  if (!authenticate(engine_, options_, head.authorization)) {
    return Error(ErrorCode::kUnauthorized, "a valid bearer key is required");
  }
  return std::nullopt;
}

namespace {
// The words of API.md's paths. Any other segment is labelled {id}: a label never holds
// text of the client's (a key pasted into a path must not reach /metrics, DESIGN.md
// section 5) and the number of labels stays bounded.
bool route_word(std::string_view part) {
  static constexpr std::string_view kWords[] = {"v1",
                                                "accounts",
                                                "plans",
                                                "batch",
                                                "keys",
                                                "admin",
                                                "clock",
                                                "import",
                                                "close",
                                                "plan",
                                                "packs",
                                                "adjustments",
                                                "grants",
                                                "quote",
                                                "charges",
                                                "refunds",
                                                "holds",
                                                "capture",
                                                "void",
                                                "cache",
                                                "events",
                                                "usage",
                                                "hot-files",
                                                "burn",
                                                "forecast",
                                                "alerts",
                                                "audit",
                                                "rate-limits",
                                                "cache-stats",
                                                "alert-rules",
                                                "regression-loops",
                                                "healthz",
                                                "metrics",
                                                "ui"};
  return std::find(std::begin(kWords), std::end(kWords), part) != std::end(kWords);
}

// The route pattern of a path, for metric labels: ids become {id}, and a method other than
// the HTTP ones "OTHER", so that no request can add labels without bound (at most 6
// segments, each a route word or {id}). Built in a buffer of the thread and interned for
// the life of the process, so a request carries a pointer.
const std::string* route_label(std::string_view method, std::string_view path) {
  static constexpr std::string_view kMethods[] = {"GET",  "POST",  "PUT",    "DELETE",
                                                  "HEAD", "PATCH", "OPTIONS"};
  const bool known =
      std::find(std::begin(kMethods), std::end(kMethods), method) != std::end(kMethods);
  thread_local std::string out;
  out.assign(known ? method : std::string_view("OTHER"));
  out += ' ';
  std::string_view prev;
  std::string_view first;
  std::size_t i = 0;
  std::size_t at = 0;
  while (at < path.size() && i < 6) {
    if (path[at] == '/') {
      ++at;
      continue;
    }
    std::size_t end = path.find('/', at);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(at, end - at);
    at = end;
    if (i == 0) first = part;
    if (first == "ui" && i > 0) break;
    bool id =
        !route_word(part) || (i > 0 && (prev == "accounts" || prev == "holds" ||
                                        prev == "charges" || prev == "keys" || prev == "cache"));
    out += '/';
    out += id ? std::string_view("{id}") : part;
    prev = part;
    ++i;
  }
  // Only API.md's patterns (and the extensions api-notes documents) are labels of their
  // own: any other path of route words ("/v1/v1/plans/import") is "(unknown route)", so
  // the labels are at most the methods times these (found by an audit: requests with no
  // key made 2,000 new series).
  static const std::unordered_set<std::string_view> kPatterns = {
      "/healthz",
      "/metrics",
      "/ui",
      "/v1/plans",
      "/v1/batch",
      "/v1/keys",
      "/v1/keys/{id}",
      "/v1/admin/clock",
      "/v1/admin/import",
      "/v1/accounts",
      "/v1/accounts/{id}",
      "/v1/accounts/{id}/close",
      "/v1/accounts/{id}/plan",
      "/v1/accounts/{id}/packs",
      "/v1/accounts/{id}/adjustments",
      "/v1/accounts/{id}/grants",
      "/v1/accounts/{id}/quote",
      "/v1/accounts/{id}/charges",
      "/v1/accounts/{id}/charges/{id}",
      "/v1/accounts/{id}/charges/{id}/refunds",
      "/v1/accounts/{id}/holds",
      "/v1/accounts/{id}/holds/{id}",
      "/v1/accounts/{id}/holds/{id}/capture",
      "/v1/accounts/{id}/holds/{id}/void",
      "/v1/accounts/{id}/keys",
      "/v1/accounts/{id}/keys/{id}",
      "/v1/accounts/{id}/cache/{id}",
      "/v1/accounts/{id}/rate-limits",
      "/v1/accounts/{id}/alert-rules",
      "/v1/accounts/{id}/events",
      "/v1/accounts/{id}/usage",
      "/v1/accounts/{id}/hot-files",
      "/v1/accounts/{id}/burn",
      "/v1/accounts/{id}/forecast",
      "/v1/accounts/{id}/alerts",
      "/v1/accounts/{id}/audit",
      "/v1/accounts/{id}/cache-stats",
      "/v1/accounts/{id}/regression-loops",
  };
  const std::size_t pattern_at = out.find(' ') + 1;
  if (!kPatterns.contains(std::string_view(out).substr(pattern_at))) {
    out.resize(pattern_at);
    out += "(unknown route)";
  }
  static std::mutex mu;
  static auto* labels = new std::unordered_set<std::string>();  // never freed: see above
  std::lock_guard lock(mu);
  return &*labels->insert(out).first;
}

struct RouteStatus {
  const std::string* route;
  int status;
  bool operator==(const RouteStatus&) const = default;
};
struct RouteStatusHash {
  std::size_t operator()(const RouteStatus& k) const {
    return std::hash<const void*>()(k.route) * 31 + static_cast<std::size_t>(k.status);
  }
};

// Counts and times one answer. The registry lookup takes a lock; each thread remembers
// the metrics it used.
void record_answer(MetricsRegistry& metrics, const std::string* route,
                   std::optional<std::int64_t> ns, const HttpResponse& h) {
  thread_local std::unordered_map<RouteStatus, std::pair<Counter*, Histogram*>, RouteStatusHash>
      t_metrics;
  auto it = t_metrics.find(RouteStatus{route, h.status});
  if (it == t_metrics.end()) {
    Counter* c = &metrics.counter("creditd_requests_total", "HTTP requests by route and status",
                                  {{"route", *route}, {"status", std::to_string(h.status)}});
    Histogram* hist = &metrics.histogram(
        "creditd_request_seconds", "HTTP request latency by route and status",
        kLatencyBucketsSeconds, {{"route", *route}, {"status", std::to_string(h.status)}});
    it = t_metrics.emplace(RouteStatus{route, h.status}, std::make_pair(c, hist)).first;
  }
  it->second.first->inc();
  if (ns) it->second.second->observe_ns(*ns);
  if (h.status >= 400) {
    // The error code is the body's first string value after "code".
    auto at = h.body.find("\"code\":\"");
    if (at != std::string::npos) {
      auto end = h.body.find('"', at + 8);
      metrics
          .counter("creditd_rejections_total", "Rejected requests by error code",
                   {{"code", h.body.substr(at + 8, end - at - 8)}})
          .inc();
    }
  }
}
}  // namespace

void Api::answered_early(std::string_view method, std::string_view path,
                         const HttpResponse& answer) {
  // Not timed: the latency histograms are of handled requests.
  static const std::string* const unread = new std::string("(head not read)");
  record_answer(metrics_, method.empty() ? unread : route_label(method, path), std::nullopt,
                answer);
}

Responder Api::timed(std::string_view method, std::string_view path, Responder respond) {
  const std::string* route = route_label(method, path);
  auto t0 = std::chrono::steady_clock::now();
  MetricsRegistry* metrics = &metrics_;
  return [metrics, route, t0, respond = std::move(respond)](HttpResponse&& h) {
    auto ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    record_answer(*metrics, route, ns, h);
    respond(std::move(h));
  };
}

void Api::handle(HttpRequest&& req, Responder respond) {
  Impl& impl = *impl_;
  Responder timed = this->timed(req.method, req.path, std::move(respond));
  if (req.method == "GET" && req.path == "/metrics") {
    EngineStats& st = engine_.stats();
    metrics_.counter("creditd_batches_total", "Batches applied")
        .set_total(static_cast<std::uint64_t>(st.batches.load()));
    metrics_.counter("creditd_ops_total", "Ops applied (charges, holds, captures, ...)")
        .set_total(static_cast<std::uint64_t>(st.ops.load()));
    metrics_.gauge("creditd_fsync_seconds_total_micro", "Microseconds spent in fdatasync")
        .set(static_cast<std::int64_t>(st.fsync_ns_total.load() / 1000));
    metrics_.counter("creditd_fsyncs_total", "Log writes, each with one fdatasync (group commits)")
        .set_total(static_cast<std::uint64_t>(st.fsyncs.load()));
    metrics_.counter("creditd_cache_hits_total", "Integration cache hits")
        .set_total(static_cast<std::uint64_t>(st.cache_hits.load()));
    metrics_.counter("creditd_snapshots_total", "Snapshots written")
        .set_total(static_cast<std::uint64_t>(st.snapshots.load()));
    metrics_
        .gauge("creditd_snapshot_pause_micro_last",
               "Microseconds the last snapshot held the ledger thread")
        .set(static_cast<std::int64_t>(st.snapshot_pause_ns_last.load() / 1000));
    metrics_
        .counter("creditd_snapshots_replayed_total", "Snapshots rebuilt from the log by a worker")
        .set_total(static_cast<std::uint64_t>(st.snapshots_replayed.load()));
    metrics_
        .counter("creditd_snapshots_forked_total",
                 "Snapshots written by a child forked from the server")
        .set_total(static_cast<std::uint64_t>(st.snapshots_forked.load()));
    metrics_
        .gauge("creditd_snapshot_rebuild_ms_last",
               "Milliseconds the last worker took to rebuild the state from the log")
        .set(static_cast<std::int64_t>(st.snapshot_rebuild_ns_last.load() / 1'000'000));
    metrics_
        .gauge("creditd_analytics_backlog_events",
               "Events of the event log the analytics have yet to get after the start")
        .set(static_cast<std::int64_t>(st.sink_backlog_events.load()));
    metrics_
        .gauge("creditd_analytics_catch_up_ms",
               "Milliseconds from ready until the analytics had every event (0 until then)")
        .set(static_cast<std::int64_t>(st.sink_catch_up_ms_last.load()));
    // The longest of each step since the start: where a stall came from.
    const std::pair<const char*, const std::atomic<std::uint64_t>*> maxima[] = {
        {"creditd_log_write_micro_max", &st.log_write_ns_max},
        {"creditd_log_sync_micro_max", &st.log_sync_ns_max},
        {"creditd_event_write_micro_max", &st.event_write_ns_max},
        {"creditd_batch_apply_micro_max", &st.batch_apply_ns_max},
        {"creditd_snapshot_finish_micro_max", &st.snapshot_finish_ns_max},
    };
    for (const auto& [name, ns] : maxima) {
      metrics_.gauge(name, "Longest since the start, microseconds")
          .set(static_cast<std::int64_t>(ns->load() / 1000));
    }
    metrics_.gauge("creditd_heap_collapses", "Passes folding the heap into huge pages")
        .set(static_cast<std::int64_t>(st.collapses.load()));
    metrics_.gauge("creditd_heap_collapse_ms_last", "Milliseconds the last pass took")
        .set(static_cast<std::int64_t>(st.collapse_ms_last.load()));
  }
  impl.dispatch(std::move(req), std::move(timed));
}

}  // namespace credit::server
