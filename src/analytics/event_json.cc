// src/analytics/event_json.cc
// Writes and parses the JSON line of an event (see event_json.h for the field list) and
// streams NDJSON files line by line.
// Writing appends literal keys and values straight to the output (the bytes json::Writer
// would produce). Parsing dispatches on a key's first byte, then compares the key once,
// and assigns strings into the reused Event (no temporary string per field).
#include "analytics/event_json.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

#include "base/assert.h"
#include "base/json_writer.h"
#include "base/utf8.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

static_assert(kEventJsonPaddingBytes >= simdjson::SIMDJSON_PADDING);

using ledger::Event;
using ledger::EventType;

// --- writing ---------------------------------------------------------------------------

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

// `key` is the literal text from the comma to the colon, e.g. `,"pool":`.
void string_or_null(std::string& out, std::string_view key, std::string_view value) {
  out += key;
  if (value.empty()) {
    out += "null";
  } else {
    json::append_string(out, value);
  }
}

void separate(std::string& out, bool& first) {
  if (!first) out += ',';
  first = false;
}

// Appends `,"key":value` when `value` is not empty; `first` drops the comma.
void optional_string(std::string& out, bool& first, std::string_view key, std::string_view value) {
  if (value.empty()) return;
  separate(out, first);
  out += key;
  json::append_string(out, value);
}

void optional_int(std::string& out, bool& first, std::string_view key,
                  const std::optional<std::int64_t>& value) {
  if (!value) return;
  separate(out, first);
  out += key;
  append_int(out, *value);
}

// Every dimension present is written, an empty model or size too.
void write_usage(std::string& out, const pricing::Usage& u) {
  out += '{';
  bool first = true;
  if (u.model) {
    separate(out, first);
    out += "\"model\":";
    json::append_string(out, *u.model);
  }
  optional_int(out, first, "\"input_tokens\":", u.input_tokens);
  optional_int(out, first, "\"output_tokens\":", u.output_tokens);
  optional_int(out, first, "\"files_read\":", u.files_read);
  optional_int(out, first, "\"lines_emitted\":", u.lines_emitted);
  optional_int(out, first, "\"lines_changed\":", u.lines_changed);
  if (u.size) {
    separate(out, first);
    out += "\"size\":";
    json::append_string(out, *u.size);
  }
  optional_int(out, first, "\"count\":", u.count);
  optional_int(out, first, "\"duration_ms\":", u.duration_ms);
  optional_int(out, first, "\"records\":", u.records);
  out += '}';
}

void write_metadata(std::string& out, const ledger::Metadata& m) {
  out += '{';
  bool first = true;
  optional_string(out, first, "\"file\":", m.file);
  optional_string(out, first, "\"feature\":", m.feature);
  optional_string(out, first, "\"model\":", m.model);
  optional_string(out, first, "\"snapshot_id\":", m.snapshot_id);
  optional_string(out, first, "\"call_site\":", m.call_site);
  optional_string(out, first, "\"intent\":", m.intent);
  optional_string(out, first, "\"request_hash\":", m.request_hash);
  for (const auto& [k, v] : m.extra) {
    if (v.empty()) continue;
    separate(out, first);
    json::append_string(out, k);
    out += ':';
    json::append_string(out, v);
  }
  out += '}';
}

}  // namespace

void append_event_json(std::string& out, const Event& e) {
  out += "{\"seq\":";
  append_int(out, static_cast<std::int64_t>(e.seq));
  out += ",\"at\":\"";
  append_rfc3339(out, e.at_ms);
  out += "\",\"account_id\":";
  json::append_string(out, e.account_id);
  string_or_null(out, ",\"user_id\":", e.user_id);
  out += ",\"type\":\"";
  out += ledger::event_type_name(e.type);
  out += '"';
  string_or_null(out, ",\"kind\":", e.kind ? pricing::kind_name(*e.kind) : std::string_view());
  string_or_null(out, ",\"pool\":", e.pool);
  out += ",\"credits\":";
  append_credits(out, e.credits);
  out += ",\"available_after\":";
  if (e.available_after) {
    append_credits(out, *e.available_after);
  } else {
    out += "null";
  }
  out += ",\"drawn_from\":[";
  for (std::size_t i = 0; i < e.drawn_from.size(); ++i) {
    out += i == 0 ? "{\"source\":" : ",{\"source\":";
    json::append_string(out, e.drawn_from[i].source);
    out += ",\"credits\":";
    append_credits(out, e.drawn_from[i].credits);
    out += '}';
  }
  out += ']';
  string_or_null(out, ",\"refused_by\":", e.refused_by);
  string_or_null(out, ",\"priced_by\":", e.priced_by);
  out += ",\"usage\":";
  if (e.usage) {
    write_usage(out, *e.usage);
  } else {
    out += "null";
  }
  out += ",\"metadata\":";
  write_metadata(out, e.metadata);
  string_or_null(out, ",\"cache_key\":", e.cache_key);
  string_or_null(out, ",\"idempotency_key\":", e.idempotency_key);
  out += ",\"rate_card_version\":";
  if (e.rate_card_version != 0) {
    append_int(out, e.rate_card_version);
  } else {
    out += "null";
  }
  out += e.imported ? ",\"imported\":true" : ",\"imported\":false";
  bool first = false;  // fields follow "imported"
  optional_string(out, first, "\"hold_id\":", e.hold_id);
  optional_string(out, first, "\"charge_id\":", e.charge_id);
  optional_string(out, first, "\"grant_id\":", e.grant_id);
  optional_string(out, first, "\"refund_id\":", e.refund_id);
  optional_string(out, first, "\"object\":", e.object);
  optional_string(out, first, "\"plan\":", e.plan);
  optional_string(out, first, "\"previous_plan\":", e.previous_plan);
  if (e.proration_usd_cents != 0) {
    out += ",\"proration_usd_cents\":";
    append_int(out, e.proration_usd_cents);
  }
  optional_string(out, first, "\"reason\":", e.reason);
  out += '}';
}

std::string event_to_json(const Event& event) {
  std::string out;
  append_event_json(out, event);
  return out;
}

// --- parsing ---------------------------------------------------------------------------

namespace {

using simdjson::ondemand::json_type;
using simdjson::ondemand::value;

Error field_error(std::string_view param, std::string_view what,
                  ErrorCode code = ErrorCode::kInvalidRequest) {
  Error e(code, std::string(param) + ": " + std::string(what));
  e.with_string("param", param);
  return e;
}

std::string_view trim_token(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool printable_ascii(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

bool id_chars(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// A string or null ("" for null), as a view into the parser's string buffer (valid until
// the next line is parsed).
Status read_optional_view(value v, std::string_view param, std::string_view& out) {
  json_type t;
  if (v.type().get(t)) return field_error(param, "invalid JSON");
  if (t == json_type::null) {
    out = {};
    return ok_status();
  }
  if (t != json_type::string || v.get_string().get(out)) {
    return field_error(param, "must be a string or null");
  }
  return ok_status();
}

Status read_optional_string(value v, std::string_view param, std::string& out) {
  std::string_view s;
  Status st = read_optional_view(v, param, s);
  if (st.ok()) out.assign(s);
  return st;
}

std::string dotted(std::string_view parent, std::string_view key) {
  std::string param(parent);
  param += '.';
  param += key;
  return param;
}

Result<Millicredits> read_credits(value v, std::string_view param) {
  json_type t;
  if (v.type().get(t) || t != json_type::number) {
    return field_error(param, "must be a number", ErrorCode::kInvalidAmount);
  }
  auto parsed = parse_credits(trim_token(v.raw_json_token()));
  if (!parsed.ok()) return field_error(param, parsed.error().message, ErrorCode::kInvalidAmount);
  return *parsed;
}

// Credits an event moved or left: a number, never negative.
Result<Millicredits> read_non_negative_credits(value v, std::string_view param) {
  auto c = read_credits(v, param);
  if (c.ok() && c->is_negative()) {
    return field_error(param, "must not be negative", ErrorCode::kInvalidAmount);
  }
  return c;
}

// The slot of an integer usage dimension, or null when `key` is not one.
std::optional<std::int64_t>* usage_count_slot(pricing::Usage& u, std::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 'i':
      return key == "input_tokens" ? &u.input_tokens : nullptr;
    case 'o':
      return key == "output_tokens" ? &u.output_tokens : nullptr;
    case 'f':
      return key == "files_read" ? &u.files_read : nullptr;
    case 'l':
      return key == "lines_emitted"   ? &u.lines_emitted
             : key == "lines_changed" ? &u.lines_changed
                                      : nullptr;
    case 'c':
      return key == "count" ? &u.count : nullptr;
    case 'd':
      return key == "duration_ms" ? &u.duration_ms : nullptr;
    case 'r':
      return key == "records" ? &u.records : nullptr;
    default:
      return nullptr;
  }
}

Status read_usage(value v, std::optional<pricing::Usage>& out) {
  json_type t;
  if (v.type().get(t)) return field_error("usage", "invalid JSON");
  if (t == json_type::null) {
    out.reset();
    return ok_status();
  }
  simdjson::ondemand::object obj;
  if (t != json_type::object || v.get_object().get(obj)) {
    return field_error("usage", "must be an object or null");
  }
  pricing::Usage& u = out.emplace();
  for (auto field_result : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return field_error("usage", "invalid JSON", ErrorCode::kInvalidJson);
    }
    value fv = field.value();
    if (key == "model" || key == "size") {
      std::string_view s;
      if (fv.get_string().get(s)) return field_error(dotted("usage", key), "must be a string");
      (key == "model" ? u.model : u.size) = std::string(s);
      continue;
    }
    std::optional<std::int64_t>* slot = usage_count_slot(u, key);
    if (slot == nullptr) return field_error(dotted("usage", key), "unknown usage dimension");
    std::int64_t n = 0;
    if (fv.get_int64().get(n)) return field_error(dotted("usage", key), "must be an integer");
    if (n < 0 || n > pricing::kUsageDimensionMax) {
      return field_error(dotted("usage", key), "out of range");
    }
    *slot = n;
  }
  return ok_status();
}

// The known key's string, or null for a key of the client's own.
std::string* metadata_slot(ledger::Metadata& m, std::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 'f':
      return key == "file" ? &m.file : key == "feature" ? &m.feature : nullptr;
    case 'm':
      return key == "model" ? &m.model : nullptr;
    case 's':
      return key == "snapshot_id" ? &m.snapshot_id : nullptr;
    case 'c':
      return key == "call_site" ? &m.call_site : nullptr;
    case 'i':
      return key == "intent" ? &m.intent : nullptr;
    case 'r':
      return key == "request_hash" ? &m.request_hash : nullptr;
    default:
      return nullptr;
  }
}

Status read_metadata(value v, ledger::Metadata& m) {
  json_type t;
  if (v.type().get(t)) return field_error("metadata", "invalid JSON");
  if (t == json_type::null) return ok_status();
  simdjson::ondemand::object obj;
  if (t != json_type::object || v.get_object().get(obj)) {
    return field_error("metadata", "must be an object or null");
  }
  for (auto field_result : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return field_error("metadata", "invalid JSON", ErrorCode::kInvalidJson);
    }
    std::string_view s;
    json_type vt;
    value fv = field.value();
    if (fv.type().get(vt)) return field_error(dotted("metadata", key), "invalid JSON");
    if (vt == json_type::null) {
      s = {};
    } else if (vt != json_type::string || fv.get_string().get(s)) {
      return field_error(dotted("metadata", key), "must be a string or null");
    }
    if (!utf8_chars_at_most(s, kMetadataValueCharsMax)) {
      return field_error(dotted("metadata", key), "longer than 256 chars");
    }
    if (std::string* slot = metadata_slot(m, key)) {
      if (slot == &m.intent && !s.empty() && s != "feature" && s != "fix" && s != "question") {
        return field_error(dotted("metadata", key), "must be feature, fix or question");
      }
      slot->assign(s);
      continue;
    }
    // A client key given as null (or "") is absent: the writer leaves it out.
    if (s.empty()) continue;
    if (m.extra.size() >= kMetadataExtraKeysMax) {
      return field_error(dotted("metadata", key), "more than 16 keys of the client's own");
    }
    m.extra.emplace_back(std::string(key), std::string(s));
  }
  return ok_status();
}

Status read_drawn_from(value v, std::vector<ledger::DrawnFrom>& out) {
  out.clear();
  json_type t;
  if (v.type().get(t)) return field_error("drawn_from", "invalid JSON");
  if (t == json_type::null) return ok_status();
  simdjson::ondemand::array arr;
  if (t != json_type::array || v.get_array().get(arr)) {
    return field_error("drawn_from", "must be an array");
  }
  for (auto item_result : arr) {
    simdjson::ondemand::object obj;
    if (item_result.get_object().get(obj)) {
      return field_error("drawn_from", "items must be objects");
    }
    ledger::DrawnFrom& d = out.emplace_back();
    for (auto field_result : obj) {
      simdjson::ondemand::field field;
      std::string_view key;
      if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
        return field_error("drawn_from", "invalid JSON", ErrorCode::kInvalidJson);
      }
      if (key == "source") {
        std::string_view s;
        if (field.value().get_string().get(s)) {
          return field_error("drawn_from.source", "must be a string");
        }
        d.source.assign(s);
      } else if (key == "credits") {
        auto c = read_non_negative_credits(field.value(), "drawn_from.credits");
        if (!c.ok()) return c.error();
        d.credits = *c;
      }
    }
  }
  return ok_status();
}

// The types that always have a user. Not `rejected`: a refusal of a refund, a plan change
// or a pack (a service's or the admin's request) has none, and the server's own export
// writes it with user_id null, which must read back (creditctl, import).
bool user_caused(EventType t) {
  return t == EventType::kCharge || t == EventType::kHold || t == EventType::kCapture ||
         t == EventType::kCacheHit;
}

// --- the enumerated fields ------------------------------------------------------------
//
// Checked on the parsed Event, after either reader, so that the canonical scanner and the
// simdjson path refuse the same lines with the same messages (found by an audit: an
// import kept "object":"bogus" and "refused_by":"weird", and every export then showed
// them). The sets are what the contract names and the ledger writes, so that an export
// reads back whole; a pool name is not checked (imported history may predate a plan).

// What an event's `object` may be, by type. DESIGN.md "Events": an expire names what
// expired (hold | grant). docs/api-notes.md: a plan_change scheduled (pending), dropped
// (pending_cleared) or applied at a boundary (pending_applied), none for an upgrade; a
// pack's grant is "pack" (the ledger writes rollover and adjustment for the others). No
// other type has one.
Status check_object(const Event& e) {
  const std::string_view o = e.object;
  switch (e.type) {
    case EventType::kExpire:
      if (o == "hold" || o == "grant") return ok_status();
      return field_error("object", o.empty() ? "required on an expire event (hold or grant)"
                                             : "must be hold or grant on an expire event");
    case EventType::kGrant:
      if (o.empty() || o == "rollover" || o == "pack" || o == "adjustment") return ok_status();
      return field_error("object", "must be rollover, pack or adjustment on a grant event");
    case EventType::kPlanChange:
      if (o.empty() || o == "pending" || o == "pending_cleared" || o == "pending_applied") {
        return ok_status();
      }
      return field_error("object",
                         "must be pending, pending_cleared or pending_applied on a plan_change "
                         "event");
    default:
      if (o.empty()) return ok_status();
      return field_error("object", "only on expire, grant and plan_change events");
  }
}

// The rule a rejected event's refused_by names, as the ledger records its stored refusals:
// "pool" or "daily_cap" for a 402 (API.md), else the refusal's own code, a 409's or 403
// purchase_not_allowed (ledger.cc, record_refusal).
bool refusal_rule(std::string_view s) {
  if (s == "pool" || s == "daily_cap") return true;
  // kIdempotencyCapacity is the last code (as ledger/codec.cc reads them).
  constexpr auto kLastCode = static_cast<unsigned>(ErrorCode::kIdempotencyCapacity);
  for (unsigned i = 0; i <= kLastCode; ++i) {
    const auto code = static_cast<ErrorCode>(i);
    const bool stored =
        error_code_http_status(code) == 409 || code == ErrorCode::kPurchaseNotAllowed;
    if (stored && error_code_name(code) == s) return true;
  }
  return false;
}

// A bucket of API.md's drawn_from: "allowance" or "grant:<id>".
bool bucket_source(std::string_view s) {
  constexpr std::string_view kGrantPrefix = "grant:";
  return s == "allowance" || (s.size() > kGrantPrefix.size() && s.starts_with(kGrantPrefix));
}

Status check_enumerated(const Event& e) {
  if (Status s = check_object(e); !s.ok()) return s;
  if (!e.refused_by.empty()) {
    if (e.type != EventType::kRejected) {
      return field_error("refused_by", "only on rejected events");
    }
    if (!refusal_rule(e.refused_by)) {
      return field_error("refused_by",
                         "must be pool, daily_cap or the code of a stored refusal (a 409's, "
                         "purchase_not_allowed)");
    }
  }
  if (!e.priced_by.empty() && e.priced_by != "usage" && e.priced_by != "amount") {
    return field_error("priced_by", "must be usage or amount");
  }
  for (const ledger::DrawnFrom& d : e.drawn_from) {
    if (!bucket_source(d.source)) {
      return field_error("drawn_from.source", "must be allowance or grant:<id>");
    }
  }
  // credits, available_after and drawn_from.credits are refused negative as they are read.
  return ok_status();
}

simdjson::ondemand::parser& thread_parser() {
  thread_local simdjson::ondemand::parser parser;
  return parser;
}

// The plain string fields that take a string or null, by key; null for other keys.
std::string* string_slot(Event& e, std::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 'c':
      return key == "cache_key" ? &e.cache_key : key == "charge_id" ? &e.charge_id : nullptr;
    case 'g':
      return key == "grant_id" ? &e.grant_id : nullptr;
    case 'h':
      return key == "hold_id" ? &e.hold_id : nullptr;
    case 'i':
      return key == "idempotency_key" ? &e.idempotency_key : nullptr;
    case 'o':
      return key == "object" ? &e.object : nullptr;
    case 'p':
      return key == "pool"            ? &e.pool
             : key == "priced_by"     ? &e.priced_by
             : key == "plan"          ? &e.plan
             : key == "previous_plan" ? &e.previous_plan
                                      : nullptr;
    case 'r':
      return key == "refused_by"  ? &e.refused_by
             : key == "refund_id" ? &e.refund_id
             : key == "reason"    ? &e.reason
                                  : nullptr;
    default:
      return nullptr;
  }
}

// The string fields that name something (an id, a key, a pool): an empty string names
// nothing and is refused, where null or no field says "none" (the writer never writes "").
bool names_something(std::string_view key) {
  return key == "cache_key" || key == "idempotency_key" || key == "pool" || key == "hold_id" ||
         key == "charge_id" || key == "grant_id" || key == "refund_id";
}

// The top-level keys with their own rules (string fields go through string_slot).
enum class Key : std::uint8_t {
  kOther,
  kSeq,
  kAt,
  kAccountId,
  kUserId,
  kType,
  kKind,
  kCredits,
  kAvailableAfter,
  kDrawnFrom,
  kUsage,
  kMetadata,
  kRateCardVersion,
  kImported,
  kProration,
};

Key classify(std::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 's':
      return key == "seq" ? Key::kSeq : Key::kOther;
    case 'a':
      return key == "at"                ? Key::kAt
             : key == "account_id"      ? Key::kAccountId
             : key == "available_after" ? Key::kAvailableAfter
                                        : Key::kOther;
    case 'u':
      return key == "user_id" ? Key::kUserId : key == "usage" ? Key::kUsage : Key::kOther;
    case 't':
      return key == "type" ? Key::kType : Key::kOther;
    case 'k':
      return key == "kind" ? Key::kKind : Key::kOther;
    case 'c':
      return key == "credits" ? Key::kCredits : Key::kOther;
    case 'd':
      return key == "drawn_from" ? Key::kDrawnFrom : Key::kOther;
    case 'm':
      return key == "metadata" ? Key::kMetadata : Key::kOther;
    case 'r':
      return key == "rate_card_version" ? Key::kRateCardVersion : Key::kOther;
    case 'i':
      return key == "imported" ? Key::kImported : Key::kOther;
    case 'p':
      return key == "proration_usd_cents" ? Key::kProration : Key::kOther;
    default:
      return Key::kOther;
  }
}

struct Seen {
  bool at = false, account = false, user = false, type = false, credits = false;
  std::string_view kind_text;
};

// An ignored field's value, walked only to hold it to kEventJsonDepthMax; `depth` is the
// depth of the container holding it.
Status check_ignored_depth(value v, std::size_t depth) {
  json_type t;
  if (v.type().get(t)) return Error(ErrorCode::kInvalidJson, "not valid JSON");
  if (t != json_type::object && t != json_type::array) return ok_status();
  if (depth + 1 > kEventJsonDepthMax) {
    return Error(ErrorCode::kInvalidJson, "the line nests JSON deeper than " +
                                              std::to_string(kEventJsonDepthMax) + " levels");
  }
  if (t == json_type::object) {
    simdjson::ondemand::object obj;
    if (v.get_object().get(obj)) return Error(ErrorCode::kInvalidJson, "not valid JSON");
    for (auto field_result : obj) {
      simdjson::ondemand::field field;
      if (std::move(field_result).get(field)) {
        return Error(ErrorCode::kInvalidJson, "not valid JSON");
      }
      if (Status s = check_ignored_depth(field.value(), depth + 1); !s.ok()) return s;
    }
    return ok_status();
  }
  simdjson::ondemand::array arr;
  if (v.get_array().get(arr)) return Error(ErrorCode::kInvalidJson, "not valid JSON");
  for (auto element : arr) {
    value item;
    if (std::move(element).get(item)) return Error(ErrorCode::kInvalidJson, "not valid JSON");
    if (Status s = check_ignored_depth(item, depth + 1); !s.ok()) return s;
  }
  return ok_status();
}

Status read_field(std::string_view key, value v, Event& e, Seen& seen) {
  switch (classify(key)) {
    case Key::kSeq: {
      json_type t;
      if (v.type().get(t)) return field_error("seq", "invalid JSON", ErrorCode::kInvalidJson);
      std::uint64_t seq = 0;
      if (t != json_type::null && v.get_uint64().get(seq)) {
        return field_error("seq", "must be a non-negative integer");
      }
      e.seq = seq;
      return ok_status();
    }
    case Key::kAt: {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("at", "must be an RFC 3339 string");
      auto at = parse_rfc3339(s);
      if (!at) return field_error("at", "not an RFC 3339 instant from 1970 to 9999");
      e.at_ms = *at;
      seen.at = true;
      return ok_status();
    }
    case Key::kAccountId: {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("account_id", "must be a string");
      if (s.empty() || s.size() > kIdCharsMax || !id_chars(s)) {
        return field_error("account_id", "must be 1-64 characters of [A-Za-z0-9._:-]");
      }
      e.account_id.assign(s);
      seen.account = true;
      return ok_status();
    }
    case Key::kUserId: {
      std::string_view s;
      Status st = read_optional_view(v, "user_id", s);
      if (!st.ok()) return st;
      if (s.size() > kUserIdCharsMax || !printable_ascii(s)) {
        return field_error("user_id", "must be 1-128 printable ASCII characters");
      }
      e.user_id.assign(s);
      seen.user = !s.empty();
      return ok_status();
    }
    case Key::kType: {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("type", "must be a string");
      auto t = ledger::parse_event_type(s);
      if (!t) return field_error("type", "unknown event type '" + std::string(s) + "'");
      e.type = *t;
      seen.type = true;
      return ok_status();
    }
    case Key::kKind:
      return read_optional_view(v, "kind", seen.kind_text);
    case Key::kCredits: {
      auto c = read_non_negative_credits(v, "credits");
      if (!c.ok()) return c.error();
      e.credits = *c;
      seen.credits = true;
      return ok_status();
    }
    case Key::kAvailableAfter: {
      json_type t;
      if (v.type().get(t)) return field_error("available_after", "invalid JSON");
      if (t != json_type::null) {
        auto c = read_non_negative_credits(v, "available_after");
        if (!c.ok()) return c.error();
        e.available_after = *c;
      }
      return ok_status();
    }
    case Key::kDrawnFrom:
      return read_drawn_from(v, e.drawn_from);
    case Key::kUsage:
      return read_usage(v, e.usage);
    case Key::kMetadata:
      return read_metadata(v, e.metadata);
    case Key::kRateCardVersion: {
      json_type t;
      if (v.type().get(t)) return field_error("rate_card_version", "invalid JSON");
      if (t != json_type::null && v.get_int64().get(e.rate_card_version)) {
        return field_error("rate_card_version", "must be an integer");
      }
      return ok_status();
    }
    case Key::kImported: {
      json_type t;
      if (v.type().get(t)) return field_error("imported", "invalid JSON");
      if (t != json_type::null && v.get_bool().get(e.imported)) {
        return field_error("imported", "must be a boolean");
      }
      return ok_status();
    }
    case Key::kProration:
      if (v.get_int64().get(e.proration_usd_cents)) {
        return field_error("proration_usd_cents", "must be an integer");
      }
      return ok_status();
    case Key::kOther:
      if (std::string* slot = string_slot(e, key)) {
        json_type t;
        if (v.type().get(t)) return field_error(key, "invalid JSON");
        Status read = read_optional_string(v, key, *slot);
        if (read.ok() && t == json_type::string && slot->empty() && names_something(key)) {
          return field_error(key, "must not be empty (null, or leave it out)");
        }
        return read;
      }
      // Other fields are ignored (an import may carry another system's extras), within
      // the depth limit; the line's own object is depth 1.
      return check_ignored_depth(v, 1);
  }
  return ok_status();
}

// --- the canonical layout -----------------------------------------------------------
//
// Lines in the layout append_event_json writes (its keys in its order, strings of printable
// ASCII without escapes, plain decimal numbers) are read by a scanner made for it; any
// other line, and any value the rules refuse, goes to the simdjson path, which gives the
// errors. Every value the scanner accepts is one the simdjson path reads the same way (the
// same checks and conversions on the same text), so the Event is the same; the values of
// the enumerated fields are then checked on it whichever path read it (check_enumerated).
class CanonicalScanner {
 public:
  CanonicalScanner(std::string_view line, Event& e)
      : p_(line.data()), end_(p_ + line.size()), e_(e) {}

  // True when the whole line was read into the event (which was reset first).
  bool scan() {
    ledger::reset_keeping_capacity(e_);
    std::string_view s;
    if (!lit("{\"seq\":") || !uint(e_.seq)) return false;
    if (!lit(",\"at\":") || !str(s)) return false;
    auto at = parse_rfc3339(s);
    if (!at) return false;
    e_.at_ms = *at;
    if (!lit(",\"account_id\":") || !str(s)) return false;
    if (s.empty() || s.size() > kIdCharsMax || !id_chars(s)) return false;
    e_.account_id.assign(s);
    if (!lit(",\"user_id\":") || !str_or_null(s) || s.size() > kUserIdCharsMax) return false;
    e_.user_id.assign(s);
    const bool user = !s.empty();
    if (!lit(",\"type\":") || !str(s)) return false;
    auto type = ledger::parse_event_type(s);
    if (!type) return false;
    e_.type = *type;
    std::string_view kind_text;
    if (!lit(",\"kind\":") || !str_or_null(kind_text)) return false;
    if (!lit(",\"pool\":") || !named_or_null(e_.pool)) return false;
    if (!lit(",\"credits\":") || !credits(e_.credits)) return false;
    if (!lit(",\"available_after\":")) return false;
    if (!null()) {
      Millicredits c;
      if (!credits(c)) return false;
      e_.available_after = c;
    }
    if (!lit(",\"drawn_from\":[") || !drawn_from()) return false;
    if (!lit(",\"refused_by\":") || !str_or_null(e_.refused_by)) return false;
    if (!lit(",\"priced_by\":") || !str_or_null(e_.priced_by)) return false;
    if (!lit(",\"usage\":") || !(null() || usage())) return false;
    if (!lit(",\"metadata\":") || !(null() || metadata())) return false;
    if (!lit(",\"cache_key\":") || !named_or_null(e_.cache_key)) return false;
    if (!lit(",\"idempotency_key\":") || !named_or_null(e_.idempotency_key)) return false;
    if (!lit(",\"rate_card_version\":")) return false;
    if (!null()) {
      std::uint64_t v = 0;
      if (!uint(v)) return false;
      e_.rate_card_version = static_cast<std::int64_t>(v);
    }
    if (lit(",\"imported\":true")) {
      e_.imported = true;
    } else if (!lit(",\"imported\":false")) {
      return false;
    }
    // The optional fields, in the writer's order.
    if (lit(",\"hold_id\":") && (!str(s, e_.hold_id) || s.empty())) return false;
    if (lit(",\"charge_id\":") && (!str(s, e_.charge_id) || s.empty())) return false;
    if (lit(",\"grant_id\":") && (!str(s, e_.grant_id) || s.empty())) return false;
    if (lit(",\"refund_id\":") && (!str(s, e_.refund_id) || s.empty())) return false;
    if (lit(",\"object\":") && !str(s, e_.object)) return false;
    if (lit(",\"plan\":") && !str(s, e_.plan)) return false;
    if (lit(",\"previous_plan\":") && !str(s, e_.previous_plan)) return false;
    if (lit(",\"proration_usd_cents\":")) {
      std::uint64_t v = 0;
      if (!uint(v)) return false;
      e_.proration_usd_cents = static_cast<std::int64_t>(v);
    }
    if (lit(",\"reason\":") && !str(s, e_.reason)) return false;
    if (!lit("}") || p_ != end_) return false;
    // The simdjson path's checks after the fields (at, account_id, type and credits were
    // read above).
    if (!user && user_caused(e_.type)) return false;
    if (!kind_text.empty()) {
      e_.kind = pricing::parse_kind(kind_text);
      if (!e_.kind) return false;
    } else if (e_.type == EventType::kCharge || e_.type == EventType::kHold) {
      return false;
    }
    return true;
  }

 private:
  bool lit(std::string_view text) {
    if (static_cast<std::size_t>(end_ - p_) < text.size() ||
        std::memcmp(p_, text.data(), text.size()) != 0) {
      return false;
    }
    p_ += text.size();
    return true;
  }
  bool null() { return lit("null"); }
  // A string of printable ASCII without escapes (what needs no unescaping).
  bool str(std::string_view& out) {
    if (p_ == end_ || *p_ != '"') return false;
    const char* begin = ++p_;
    while (p_ != end_) {
      const char c = *p_;
      if (c == '"') {
        out = std::string_view(begin, static_cast<std::size_t>(p_ - begin));
        ++p_;
        return true;
      }
      if (c < 0x20 || c > 0x7e || c == '\\') return false;
      ++p_;
    }
    return false;
  }
  bool str(std::string_view& s, std::string& out) {
    if (!str(s)) return false;
    out.assign(s);
    return true;
  }
  bool str_or_null(std::string_view& out) {
    if (null()) {
      out = {};
      return true;
    }
    return str(out);
  }
  // A string that names something (names_something): null, or not empty.
  bool named_or_null(std::string& out) {
    std::string_view s;
    if (null()) {
      out.clear();
      return true;
    }
    if (!str(s) || s.empty()) return false;
    out.assign(s);
    return true;
  }
  bool str_or_null(std::string& out) {
    std::string_view s;
    if (!str_or_null(s)) return false;
    out.assign(s);
    return true;
  }
  // A non-negative integer of at most 18 digits, without leading zeros.
  bool uint(std::uint64_t& out) {
    const char* begin = p_;
    std::uint64_t v = 0;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
      v = v * 10 + static_cast<std::uint64_t>(*p_ - '0');
      ++p_;
    }
    const auto digits = p_ - begin;
    if (digits == 0 || digits > 18 || (digits > 1 && *begin == '0')) return false;
    out = v;
    return true;
  }
  // Digits, optionally a point and digits: read by parse_credits as the simdjson path does.
  bool credits(Millicredits& out) {
    const char* begin = p_;
    while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    if (p_ == begin) return false;
    if (p_ != end_ && *p_ == '.') {
      const char* frac = ++p_;
      while (p_ != end_ && *p_ >= '0' && *p_ <= '9') ++p_;
      if (p_ == frac) return false;
    }
    auto parsed = parse_credits(std::string_view(begin, static_cast<std::size_t>(p_ - begin)));
    if (!parsed.ok() || parsed->is_negative()) return false;
    out = *parsed;
    return true;
  }
  bool drawn_from() {
    if (lit("]")) return true;
    do {
      ledger::DrawnFrom& d = e_.drawn_from.emplace_back();
      std::string_view s;
      if (!lit("{\"source\":") || !str(s)) return false;
      d.source.assign(s);
      if (!lit(",\"credits\":") || !credits(d.credits) || !lit("}")) return false;
    } while (lit(","));
    return lit("]");
  }
  bool usage() {
    if (!lit("{")) return false;
    pricing::Usage& u = e_.usage.emplace();
    if (lit("}")) return true;
    do {
      std::string_view key;
      if (!str(key) || !lit(":")) return false;
      if (key == "model" || key == "size") {
        std::string_view s;
        if (!str(s)) return false;
        (key == "model" ? u.model : u.size) = std::string(s);
        continue;
      }
      std::optional<std::int64_t>* slot = usage_count_slot(u, key);
      std::uint64_t n = 0;
      if (slot == nullptr || !uint(n) ||
          n > static_cast<std::uint64_t>(pricing::kUsageDimensionMax)) {
        return false;
      }
      *slot = static_cast<std::int64_t>(n);
    } while (lit(","));
    return lit("}");
  }
  bool metadata() {
    if (!lit("{")) return false;
    if (lit("}")) return true;
    ledger::Metadata& m = e_.metadata;
    do {
      std::string_view key, s;
      if (!str(key) || !lit(":") || !str_or_null(s) ||
          !utf8_chars_at_most(s, kMetadataValueCharsMax)) {
        return false;
      }
      if (std::string* slot = metadata_slot(m, key)) {
        if (slot == &m.intent && !s.empty() && s != "feature" && s != "fix" && s != "question") {
          return false;
        }
        slot->assign(s);
        continue;
      }
      if (s.empty()) continue;  // absent, as in read_metadata
      if (m.extra.size() >= kMetadataExtraKeysMax) return false;
      m.extra.emplace_back(std::string(key), std::string(s));
    } while (lit(","));
    return lit("}");
  }

  const char* p_;
  const char* end_;
  Event& e_;
};

}  // namespace

Status parse_event_json_padded(std::string_view line, Event& e) {
  if (line.size() > kEventLineBytesMax) {
    return Error(ErrorCode::kBodyTooLarge, std::string(kLineTooLong));
  }
  if (CanonicalScanner(line, e).scan()) return check_enumerated(e);
  ledger::reset_keeping_capacity(e);
  simdjson::padded_string_view view(line.data(), line.size(),
                                    line.size() + simdjson::SIMDJSON_PADDING);
  simdjson::ondemand::document doc;
  if (thread_parser().iterate(view).get(doc)) {
    return Error(ErrorCode::kInvalidJson, "not valid JSON");
  }
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) return Error(ErrorCode::kInvalidJson, "not a JSON object");

  Seen seen;
  for (auto field_result : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return Error(ErrorCode::kInvalidJson, "not valid JSON");
    }
    Status st = read_field(key, field.value(), e, seen);
    if (!st.ok()) return st;
  }
  // Anything after the object ("{...}{...}", "{...}}") is not one event: refused, never
  // dropped unseen.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS) {
    return Error(ErrorCode::kInvalidJson, "text after the JSON object (one event per line)");
  }

  if (!seen.at) return field_error("at", "required");
  if (!seen.account) return field_error("account_id", "required");
  if (!seen.type) return field_error("type", "required");
  if (!seen.credits) return field_error("credits", "required", ErrorCode::kInvalidAmount);
  if (!seen.user && user_caused(e.type)) return field_error("user_id", "required");
  if (!seen.kind_text.empty()) {
    e.kind = pricing::parse_kind(seen.kind_text);
    if (!e.kind) {
      return field_error("kind", "unknown kind '" + std::string(seen.kind_text) + "'");
    }
  } else if (e.type == EventType::kCharge || e.type == EventType::kHold) {
    return field_error("kind", "required for charges and holds");
  }
  return check_enumerated(e);
}

Status parse_event_json(std::string_view line, Event& out) {
  if (line.size() > kEventLineBytesMax) {
    return Error(ErrorCode::kBodyTooLarge, std::string(kLineTooLong));
  }
  // simdjson reads up to SIMDJSON_PADDING bytes past the end: parse from a padded copy.
  thread_local std::string padded;
  padded.assign(line);
  padded.resize(line.size() + simdjson::SIMDJSON_PADDING, '\0');
  return parse_event_json_padded(std::string_view(padded.data(), line.size()), out);
}

Result<Event> parse_event_json(std::string_view line) {
  Event e;
  Status st = parse_event_json(line, e);
  if (!st.ok()) return std::move(st.error());
  return e;
}

// --- NdjsonReader ----------------------------------------------------------------------

NdjsonReader::NdjsonReader(const std::string& path) {
  if (path == "-") {
    fd_ = STDIN_FILENO;
  } else {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) problem_ = std::strerror(errno);
    own_fd_ = fd_ >= 0;
  }
  struct stat st {};
  if (fd_ >= 0 && ::fstat(fd_, &st) == 0 && S_ISDIR(st.st_mode)) {
    problem_ = "is a directory";
    if (own_fd_) ::close(fd_);
    own_fd_ = false;
    fd_ = -1;
  }
  ok_ = fd_ >= 0;
  if (ok_) buffer_ = std::make_unique<char[]>(kBufferBytes + kEventJsonPaddingBytes);
}

NdjsonReader::~NdjsonReader() {
  if (own_fd_) ::close(fd_);
}

bool NdjsonReader::fill() {
  if (eof_ || !ok_) return false;
  if (begin_ > 0) {
    std::memmove(buffer_.get(), buffer_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  CREDIT_ASSERT(kBufferBytes - end_ >= kChunkBytes);
  for (;;) {
    ssize_t n = ::read(fd_, buffer_.get() + end_, kBufferBytes - end_);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // A read error ends the input too, and is reported: the input was cut short.
      if (n < 0) problem_ = std::string("read failed: ") + std::strerror(errno);
      eof_ = true;
      return false;
    }
    end_ += static_cast<std::size_t>(n);
    bytes_read_ += static_cast<std::uint64_t>(n);
    return true;
  }
}

bool NdjsonReader::read_line(std::string_view& line) {
  too_long_ = false;
  if (!ok_) return false;
  std::size_t scanned = begin_;  // no newline in [begin_, scanned)
  for (;;) {
    const char* base = buffer_.get();
    if (scanned < end_) {
      if (const void* nl = std::memchr(base + scanned, '\n', end_ - scanned)) {
        const auto at = static_cast<std::size_t>(static_cast<const char*>(nl) - base);
        line = std::string_view(base + begin_, at - begin_);
        line_offset_ = bytes_read_ - end_ + begin_;  // the buffer holds the input's last end_ bytes
        if (line.size() > kEventLineBytesMax) too_long_ = true;
        begin_ = at + 1;
        return true;
      }
    }
    if (end_ - begin_ > kEventLineBytesMax) {
      // Too long already: drop its bytes and look for its end, so memory stays bounded.
      too_long_ = true;
      begin_ = end_;
    }
    const std::size_t pending = end_ - begin_;  // this line's bytes so far, all scanned
    if (!fill()) {
      // The last line has no newline (or the input ended inside a dropped line).
      if (pending == 0 && !too_long_) return false;
      line = std::string_view(base + begin_, pending);
      line_offset_ = bytes_read_ - end_ + begin_;
      begin_ = end_;
      return true;
    }
    scanned = begin_ + pending;
  }
}

void NdjsonReader::add_error(std::string reason) {
  ++error_count_;
  if (errors_.size() < kErrorsKept) errors_.push_back({line_, std::move(reason)});
}

bool NdjsonReader::next_line(std::string_view& line, bool& too_long) {
  if (!read_line(line)) return false;
  ++line_;
  // A UTF-8 byte order mark, which some editors put before the first line, is no text (as
  // in NdjsonSplitter, the server's import); on any later line it is the line's, a bad one.
  if (line_ == 1 && !too_long_ && line.starts_with(kUtf8ByteOrderMark)) {
    line.remove_prefix(kUtf8ByteOrderMark.size());
    line_offset_ += kUtf8ByteOrderMark.size();
  }
  too_long = too_long_;
  if (!too_long && !line.empty() && line.back() == '\r') line.remove_suffix(1);
  return true;
}

bool NdjsonReader::next(Event& out) {
  std::string_view text;
  bool too_long = false;
  while (next_line(text, too_long)) {
    if (too_long) {
      add_error(std::string(kLineTooLong));
      continue;
    }
    if (is_blank_line(text)) continue;
    // The buffer has kEventJsonPaddingBytes after its end, so any line in it is padded.
    Status parsed = parse_event_json_padded(text, out);
    if (!parsed.ok()) {
      add_error(std::move(parsed.error().message));
      continue;
    }
    event_offset_ = line_offset_;
    event_size_ = text.size();
    return true;
  }
  return false;
}

}  // namespace credit::analytics
