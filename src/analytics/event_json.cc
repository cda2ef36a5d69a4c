// src/analytics/event_json.cc
// Writes and parses the JSON line of an event (see event_json.h for the field list) and
// streams NDJSON files line by line.
#include "analytics/event_json.h"

#include <simdjson.h>

#include <iostream>
#include <utility>

#include "base/json_writer.h"
#include "money/money.h"
#include "time/time.h"

namespace credit::analytics {
namespace {

using ledger::Event;
using ledger::EventType;

void key_string_or_null(json::Writer& w, std::string_view key, std::string_view value) {
  w.key(key);
  if (value.empty()) {
    w.null();
  } else {
    w.string(value);
  }
}

void key_credits(json::Writer& w, std::string_view key, Millicredits amount) {
  w.key(key).raw(format_credits(amount));
}

void write_usage(json::Writer& w, const pricing::Usage& u) {
  w.begin_object();
  if (u.model) w.key("model").string(*u.model);
  if (u.input_tokens) w.key("input_tokens").integer(*u.input_tokens);
  if (u.output_tokens) w.key("output_tokens").integer(*u.output_tokens);
  if (u.files_read) w.key("files_read").integer(*u.files_read);
  if (u.lines_emitted) w.key("lines_emitted").integer(*u.lines_emitted);
  if (u.lines_changed) w.key("lines_changed").integer(*u.lines_changed);
  if (u.size) w.key("size").string(*u.size);
  if (u.count) w.key("count").integer(*u.count);
  if (u.duration_ms) w.key("duration_ms").integer(*u.duration_ms);
  if (u.records) w.key("records").integer(*u.records);
  w.end_object();
}

void write_metadata(json::Writer& w, const ledger::Metadata& m) {
  w.begin_object();
  auto put = [&](std::string_view k, const std::string& v) {
    if (!v.empty()) w.key(k).string(v);
  };
  put("file", m.file);
  put("feature", m.feature);
  put("model", m.model);
  put("snapshot_id", m.snapshot_id);
  put("call_site", m.call_site);
  put("intent", m.intent);
  put("request_hash", m.request_hash);
  for (const auto& [k, v] : m.extra) {
    if (!v.empty()) w.key(k).string(v);
  }
  w.end_object();
}

// --- parsing ---------------------------------------------------------------------------

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

using simdjson::ondemand::json_type;
using simdjson::ondemand::value;

// A string, or "" for null. Error when it is another type.
Result<std::string> read_optional_string(value v, std::string_view param) {
  json_type t;
  if (v.type().get(t)) return field_error(param, "invalid JSON");
  if (t == json_type::null) return std::string();
  std::string_view s;
  if (t != json_type::string || v.get_string().get(s)) {
    return field_error(param, "must be a string or null");
  }
  return std::string(s);
}

Result<std::int64_t> read_count(value v, std::string_view param) {
  std::int64_t n = 0;
  if (v.get_int64().get(n)) return field_error(param, "must be an integer");
  if (n < 0 || n > pricing::kUsageDimensionMax) return field_error(param, "out of range");
  return n;
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

Result<std::optional<pricing::Usage>> read_usage(value v) {
  json_type t;
  if (v.type().get(t)) return field_error("usage", "invalid JSON");
  if (t == json_type::null) return std::optional<pricing::Usage>();
  simdjson::ondemand::object obj;
  if (t != json_type::object || v.get_object().get(obj)) {
    return field_error("usage", "must be an object or null");
  }
  pricing::Usage u;
  for (auto field_result : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return field_error("usage", "invalid JSON", ErrorCode::kInvalidJson);
    }
    std::string param = "usage." + std::string(key);
    value fv = field.value();
    if (key == "model" || key == "size") {
      std::string_view s;
      if (fv.get_string().get(s)) return field_error(param, "must be a string");
      (key == "model" ? u.model : u.size) = std::string(s);
      continue;
    }
    std::optional<std::int64_t>* slot = nullptr;
    if (key == "input_tokens") slot = &u.input_tokens;
    if (key == "output_tokens") slot = &u.output_tokens;
    if (key == "files_read") slot = &u.files_read;
    if (key == "lines_emitted") slot = &u.lines_emitted;
    if (key == "lines_changed") slot = &u.lines_changed;
    if (key == "count") slot = &u.count;
    if (key == "duration_ms") slot = &u.duration_ms;
    if (key == "records") slot = &u.records;
    if (slot == nullptr) return field_error(param, "unknown usage dimension");
    auto n = read_count(fv, param);
    if (!n.ok()) return n.error();
    *slot = *n;
  }
  return std::optional<pricing::Usage>(std::move(u));
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
    std::string param = "metadata." + std::string(key);
    auto s = read_optional_string(field.value(), param);
    if (!s.ok()) return s.error();
    if (s->size() > kMetadataValueCharsMax) return field_error(param, "longer than 256 chars");
    if (key == "file")
      m.file = std::move(*s);
    else if (key == "feature")
      m.feature = std::move(*s);
    else if (key == "model")
      m.model = std::move(*s);
    else if (key == "snapshot_id")
      m.snapshot_id = std::move(*s);
    else if (key == "call_site")
      m.call_site = std::move(*s);
    else if (key == "intent") {
      if (!s->empty() && *s != "feature" && *s != "fix" && *s != "question") {
        return field_error(param, "must be feature, fix or question");
      }
      m.intent = std::move(*s);
    } else if (key == "request_hash")
      m.request_hash = std::move(*s);
    else {
      if (m.extra.size() >= kMetadataExtraKeysMax) {
        return field_error(param, "more than 16 keys of the client's own");
      }
      m.extra.emplace_back(std::string(key), std::move(*s));
    }
  }
  return ok_status();
}

Result<std::vector<ledger::DrawnFrom>> read_drawn_from(value v) {
  std::vector<ledger::DrawnFrom> out;
  json_type t;
  if (v.type().get(t)) return field_error("drawn_from", "invalid JSON");
  if (t == json_type::null) return out;
  simdjson::ondemand::array arr;
  if (t != json_type::array || v.get_array().get(arr)) {
    return field_error("drawn_from", "must be an array");
  }
  for (auto item_result : arr) {
    simdjson::ondemand::object obj;
    if (item_result.get_object().get(obj)) {
      return field_error("drawn_from", "items must be objects");
    }
    ledger::DrawnFrom d;
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
        d.source = std::string(s);
      } else if (key == "credits") {
        auto c = read_credits(field.value(), "drawn_from.credits");
        if (!c.ok()) return c.error();
        d.credits = *c;
      }
    }
    out.push_back(std::move(d));
  }
  return out;
}

bool user_caused(EventType t) {
  return t == EventType::kCharge || t == EventType::kHold || t == EventType::kCapture ||
         t == EventType::kCacheHit || t == EventType::kRejected;
}

simdjson::ondemand::parser& thread_parser() {
  thread_local simdjson::ondemand::parser parser;
  return parser;
}

}  // namespace

void append_event_json(std::string& out, const Event& e) {
  json::Writer w(out);
  w.begin_object();
  w.key("seq").integer(static_cast<std::int64_t>(e.seq));
  w.key("at").string(format_rfc3339(e.at_ms));
  w.key("account_id").string(e.account_id);
  key_string_or_null(w, "user_id", e.user_id);
  w.key("type").string(ledger::event_type_name(e.type));
  key_string_or_null(w, "kind", e.kind ? pricing::kind_name(*e.kind) : std::string_view());
  key_string_or_null(w, "pool", e.pool);
  key_credits(w, "credits", e.credits);
  w.key("available_after");
  if (e.available_after) {
    w.raw(format_credits(*e.available_after));
  } else {
    w.null();
  }
  w.key("drawn_from").begin_array();
  for (const auto& d : e.drawn_from) {
    w.begin_object().key("source").string(d.source);
    key_credits(w, "credits", d.credits);
    w.end_object();
  }
  w.end_array();
  key_string_or_null(w, "refused_by", e.refused_by);
  key_string_or_null(w, "priced_by", e.priced_by);
  w.key("usage");
  if (e.usage) {
    write_usage(w, *e.usage);
  } else {
    w.null();
  }
  w.key("metadata");
  write_metadata(w, e.metadata);
  key_string_or_null(w, "cache_key", e.cache_key);
  key_string_or_null(w, "idempotency_key", e.idempotency_key);
  w.key("rate_card_version");
  if (e.rate_card_version != 0) {
    w.integer(e.rate_card_version);
  } else {
    w.null();
  }
  w.key("imported").boolean(e.imported);
  auto put = [&](std::string_view k, const std::string& v) {
    if (!v.empty()) w.key(k).string(v);
  };
  put("hold_id", e.hold_id);
  put("charge_id", e.charge_id);
  put("grant_id", e.grant_id);
  put("refund_id", e.refund_id);
  put("object", e.object);
  put("plan", e.plan);
  put("previous_plan", e.previous_plan);
  if (e.proration_usd_cents != 0) w.key("proration_usd_cents").integer(e.proration_usd_cents);
  put("reason", e.reason);
  w.end_object();
}

std::string event_to_json(const Event& event) {
  std::string out;
  append_event_json(out, event);
  return out;
}

Result<Event> parse_event_json(std::string_view line) {
  if (line.size() > kEventLineBytesMax) {
    return Error(ErrorCode::kBodyTooLarge, "line longer than 1 MiB");
  }
  // simdjson reads up to SIMDJSON_PADDING bytes past the end: parse from a padded copy.
  thread_local std::string padded;
  padded.assign(line);
  padded.resize(line.size() + simdjson::SIMDJSON_PADDING, '\0');
  simdjson::padded_string_view view(padded.data(), line.size(), padded.size());
  simdjson::ondemand::document doc;
  if (thread_parser().iterate(view).get(doc)) {
    return Error(ErrorCode::kInvalidJson, "not valid JSON");
  }
  simdjson::ondemand::object obj;
  if (doc.get_object().get(obj)) return Error(ErrorCode::kInvalidJson, "not a JSON object");

  Event e;
  bool has_at = false, has_account = false, has_user = false, has_type = false;
  bool has_credits = false;
  std::string kind_text;
  for (auto field_result : obj) {
    simdjson::ondemand::field field;
    std::string_view key;
    if (std::move(field_result).get(field) || field.unescaped_key().get(key)) {
      return Error(ErrorCode::kInvalidJson, "not valid JSON");
    }
    value v = field.value();
    if (key == "seq") {
      json_type t;
      if (v.type().get(t)) return field_error("seq", "invalid JSON", ErrorCode::kInvalidJson);
      std::uint64_t seq = 0;
      if (t != json_type::null && v.get_uint64().get(seq)) {
        return field_error("seq", "must be a non-negative integer");
      }
      e.seq = seq;
    } else if (key == "at") {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("at", "must be an RFC 3339 string");
      auto at = parse_rfc3339(s);
      if (!at) return field_error("at", "not an RFC 3339 instant");
      e.at_ms = *at;
      has_at = true;
    } else if (key == "account_id") {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("account_id", "must be a string");
      if (s.empty() || s.size() > kIdCharsMax || !id_chars(s)) {
        return field_error("account_id", "must be 1-64 characters of [A-Za-z0-9._:-]");
      }
      e.account_id = std::string(s);
      has_account = true;
    } else if (key == "user_id") {
      auto s = read_optional_string(v, "user_id");
      if (!s.ok()) return s.error();
      if (s->size() > kUserIdCharsMax || !printable_ascii(*s)) {
        return field_error("user_id", "must be 1-128 printable ASCII characters");
      }
      e.user_id = std::move(*s);
      has_user = !e.user_id.empty();
    } else if (key == "type") {
      std::string_view s;
      if (v.get_string().get(s)) return field_error("type", "must be a string");
      auto t = ledger::parse_event_type(s);
      if (!t) return field_error("type", "unknown event type '" + std::string(s) + "'");
      e.type = *t;
      has_type = true;
    } else if (key == "kind") {
      auto s = read_optional_string(v, "kind");
      if (!s.ok()) return s.error();
      kind_text = std::move(*s);
    } else if (key == "pool") {
      auto s = read_optional_string(v, "pool");
      if (!s.ok()) return s.error();
      e.pool = std::move(*s);
    } else if (key == "credits") {
      auto c = read_credits(v, "credits");
      if (!c.ok()) return c.error();
      if (c->is_negative())
        return field_error("credits", "must not be negative", ErrorCode::kInvalidAmount);
      e.credits = *c;
      has_credits = true;
    } else if (key == "available_after") {
      json_type t;
      if (v.type().get(t)) return field_error("available_after", "invalid JSON");
      if (t != json_type::null) {
        auto c = read_credits(v, "available_after");
        if (!c.ok()) return c.error();
        e.available_after = *c;
      }
    } else if (key == "drawn_from") {
      auto d = read_drawn_from(v);
      if (!d.ok()) return d.error();
      e.drawn_from = std::move(*d);
    } else if (key == "usage") {
      auto u = read_usage(v);
      if (!u.ok()) return u.error();
      e.usage = std::move(*u);
    } else if (key == "metadata") {
      auto st = read_metadata(v, e.metadata);
      if (!st.ok()) return st.error();
    } else if (key == "rate_card_version") {
      json_type t;
      if (v.type().get(t)) return field_error("rate_card_version", "invalid JSON");
      if (t != json_type::null && v.get_int64().get(e.rate_card_version)) {
        return field_error("rate_card_version", "must be an integer");
      }
    } else if (key == "imported") {
      json_type t;
      if (v.type().get(t)) return field_error("imported", "invalid JSON");
      if (t != json_type::null && v.get_bool().get(e.imported)) {
        return field_error("imported", "must be a boolean");
      }
    } else if (key == "proration_usd_cents") {
      if (v.get_int64().get(e.proration_usd_cents)) {
        return field_error("proration_usd_cents", "must be an integer");
      }
    } else {
      std::string* slot = nullptr;
      if (key == "refused_by")
        slot = &e.refused_by;
      else if (key == "priced_by")
        slot = &e.priced_by;
      else if (key == "cache_key")
        slot = &e.cache_key;
      else if (key == "idempotency_key")
        slot = &e.idempotency_key;
      else if (key == "hold_id")
        slot = &e.hold_id;
      else if (key == "charge_id")
        slot = &e.charge_id;
      else if (key == "grant_id")
        slot = &e.grant_id;
      else if (key == "refund_id")
        slot = &e.refund_id;
      else if (key == "object")
        slot = &e.object;
      else if (key == "plan")
        slot = &e.plan;
      else if (key == "previous_plan")
        slot = &e.previous_plan;
      else if (key == "reason")
        slot = &e.reason;
      if (slot != nullptr) {
        auto s = read_optional_string(v, key);
        if (!s.ok()) return s.error();
        *slot = std::move(*s);
      }
      // Other fields are ignored: an import may carry another system's extras.
    }
  }

  if (!has_at) return field_error("at", "required");
  if (!has_account) return field_error("account_id", "required");
  if (!has_type) return field_error("type", "required");
  if (!has_credits) return field_error("credits", "required", ErrorCode::kInvalidAmount);
  if (!has_user && user_caused(e.type)) return field_error("user_id", "required");
  if (!kind_text.empty()) {
    e.kind = pricing::parse_kind(kind_text);
    if (!e.kind) return field_error("kind", "unknown kind '" + kind_text + "'");
  } else if (e.type == EventType::kCharge || e.type == EventType::kHold) {
    return field_error("kind", "required for charges and holds");
  }
  return e;
}

// --- NdjsonReader ----------------------------------------------------------------------

NdjsonReader::NdjsonReader(const std::string& path) {
  if (path == "-") {
    in_ = &std::cin;
  } else {
    file_.open(path, std::ios::binary);
    in_ = &file_;
  }
  ok_ = static_cast<bool>(*in_);
}

bool NdjsonReader::read_line() {
  line_text_.clear();
  too_long_ = false;
  bool got_any = false;
  for (;;) {
    if (buffer_pos_ >= buffer_.size()) {
      if (eof_) return got_any;
      buffer_.resize(kChunkBytes);
      in_->read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
      auto n = static_cast<std::size_t>(in_->gcount());
      buffer_.resize(n);
      buffer_pos_ = 0;
      bytes_read_ += n;
      if (n == 0 || !*in_) eof_ = true;
      if (n == 0) return got_any;
    }
    got_any = true;
    std::string_view rest(buffer_.data() + buffer_pos_, buffer_.size() - buffer_pos_);
    auto nl = rest.find('\n');
    std::string_view piece = nl == std::string_view::npos ? rest : rest.substr(0, nl);
    if (!too_long_) {
      if (line_text_.size() + piece.size() > kEventLineBytesMax) {
        // Keep reading to the newline but drop the bytes: memory stays bounded.
        too_long_ = true;
        line_text_.clear();
        line_text_.shrink_to_fit();
      } else {
        line_text_.append(piece);
      }
    }
    if (nl == std::string_view::npos) {
      buffer_pos_ = buffer_.size();
      continue;
    }
    buffer_pos_ += nl + 1;
    return true;
  }
}

void NdjsonReader::add_error(std::string reason) {
  ++error_count_;
  if (errors_.size() < kErrorsKept) errors_.push_back({line_, std::move(reason)});
}

bool NdjsonReader::next(Event& out) {
  while (read_line()) {
    ++line_;
    if (too_long_) {
      add_error("line longer than 1 MiB");
      continue;
    }
    std::string_view text = line_text_;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find_first_not_of(" \t") == std::string_view::npos) continue;
    auto parsed = parse_event_json(text);
    if (!parsed.ok()) {
      add_error(parsed.error().message);
      continue;
    }
    out = std::move(*parsed);
    return true;
  }
  return false;
}

}  // namespace credit::analytics
