// src/server/json_reader.cc
// The On Demand walk that fills the tape, typed field access and the API error body.
// See json_reader.h for the design.
#include "server/json_reader.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "base/assert.h"
#include "base/error_json.h"
#include "base/json_writer.h"

namespace credit::server {

namespace od = simdjson::ondemand;

namespace {

// Objects with at most this many members are checked for duplicate keys pair by pair;
// bigger ones are sorted, so a hostile object cannot make the check quadratic.
constexpr std::size_t kDuplicateScanPairwiseMax = 16;
// A tape bigger than this (nodes) is freed after use instead of kept for the next parse,
// so one huge batch does not pin its memory on the thread for ever.
constexpr std::size_t kTapeRetainedNodesMax = 1u << 16;

bool is_json_whitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim_right(std::string_view s) {
  while (!s.empty() && is_json_whitespace(s.back())) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

}  // namespace

bool is_json_number(std::string_view t) {
  std::size_t i = 0;
  const std::size_t n = t.size();
  if (i < n && t[i] == '-') ++i;
  if (i >= n) return false;
  if (t[i] == '0') {
    ++i;
  } else if (t[i] >= '1' && t[i] <= '9') {
    while (i < n && is_digit(t[i])) ++i;
  } else {
    return false;
  }
  if (i < n && t[i] == '.') {
    ++i;
    if (i >= n || !is_digit(t[i])) return false;
    while (i < n && is_digit(t[i])) ++i;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    if (i >= n || !is_digit(t[i])) return false;
    while (i < n && is_digit(t[i])) ++i;
  }
  return i == n;
}

std::optional<std::int64_t> json_int64(std::string_view text) {
  if (!is_json_number(text)) return std::nullopt;
  if (text.find_first_of(".eE") != std::string_view::npos) return std::nullopt;
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<std::int64_t> json_whole_number(std::string_view text) {
  if (auto v = json_int64(text)) return v;
  if (!is_json_number(text)) return std::nullopt;
  // The value is digits x 10^shift: the mantissa's digits without its point, and the
  // exponent less the digits after the point.
  const bool negative = text.front() == '-';
  const std::size_t e = text.find_first_of("eE");
  const std::string_view mantissa = text.substr(negative ? 1 : 0, e - (negative ? 1 : 0));
  std::string digits;
  std::int64_t shift = 0;
  for (char c : mantissa) {
    if (c == '.') {
      shift = -static_cast<std::int64_t>(mantissa.size() - digits.size() - 1);
      continue;
    }
    digits += c;
  }
  if (e != std::string_view::npos) {
    std::string_view exp = text.substr(e + 1);
    if (!exp.empty() && exp.front() == '+') exp.remove_prefix(1);
    std::int64_t x = 0;
    auto [ptr, ec] = std::from_chars(exp.data(), exp.data() + exp.size(), x);
    // An exponent past the digits' limit either side leaves no whole number in range
    // (except for a zero mantissa).
    if (ec != std::errc() || ptr != exp.data() + exp.size() || x > 1000 || x < -1000) {
      if (digits.find_first_not_of('0') == std::string::npos) return 0;
      return std::nullopt;
    }
    shift += x;
  }
  const std::size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return 0;
  digits.erase(0, first);
  // Trailing zeros that the shift moves past the point.
  while (shift < 0 && !digits.empty() && digits.back() == '0') {
    digits.pop_back();
    ++shift;
  }
  if (shift < 0) return std::nullopt;  // a fraction
  if (digits.size() + static_cast<std::size_t>(shift) > kJsonWholeDigitsMax) return std::nullopt;
  digits.append(static_cast<std::size_t>(shift), '0');
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc()) return std::nullopt;
  return negative ? -v : v;
}

std::string json_path_join(std::string_view parent, std::string_view key) {
  std::string out;
  out.reserve(parent.size() + 1 + key.size());
  out += parent;
  if (!parent.empty()) out += '.';
  out += key;
  return out;
}

std::string json_path_index(std::string_view parent, std::size_t index) {
  std::string out(parent);
  out += '[';
  out += std::to_string(index);
  out += ']';
  return out;
}

// ---------------------------------------------------------------------------------------
// JsonValue

bool JsonValue::bool_value() const {
  CREDIT_ASSERT(is_bool());
  return node().bool_value;
}

std::string_view JsonValue::string_value() const {
  CREDIT_ASSERT(is_string());
  return node().text;
}

std::string_view JsonValue::number_text() const {
  CREDIT_ASSERT(is_number());
  return node().text;
}

std::optional<std::int64_t> JsonValue::int64_value() const {
  if (!is_number()) return std::nullopt;
  return json_int64(node().text);
}

std::optional<JsonValue> JsonValue::find(std::string_view key) const {
  if (!is_object()) return std::nullopt;
  for (std::uint32_t i = index_ + 1; i < node().end; i = nodes_[i].end) {
    if (nodes_[i].key == key) return JsonValue(nodes_, i);
  }
  return std::nullopt;
}

void JsonValue::append_json(std::string& out) const {
  const JsonNode& n = node();
  switch (n.type) {
    case JsonType::kNull:
      out += "null";
      return;
    case JsonType::kBool:
      out += n.bool_value ? "true" : "false";
      return;
    case JsonType::kNumber:
      out += n.text;
      return;
    case JsonType::kString:
      json::append_string(out, n.text);
      return;
    case JsonType::kArray:
    case JsonType::kObject: {
      const bool is_obj = n.type == JsonType::kObject;
      out += is_obj ? '{' : '[';
      bool first = true;
      for (auto [key, value] : *this) {
        if (!first) out += ',';
        first = false;
        if (is_obj) {
          json::append_string(out, key);
          out += ':';
        }
        value.append_json(out);
      }
      out += is_obj ? '}' : ']';
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------
// JsonParser

struct JsonParser::Impl {
  od::parser parser;
  std::string padded;  // the body plus simdjson's padding, reused
  std::vector<JsonNode> nodes;
  std::vector<std::string_view> key_scratch;  // for duplicate checks of big objects
  JsonLimits limits;
  Error error;

  Status fail(std::string message) {
    error = Error(ErrorCode::kInvalidJson, std::move(message));
    return error;
  }
  Status fail_simdjson(simdjson::error_code code) {
    return fail(std::string("the body is not valid JSON: ") + simdjson::error_message(code));
  }

  // Appends a node; false when the document has too many values.
  bool push(JsonType type, std::string_view key, std::string_view text) {
    if (nodes.size() >= limits.values_max) return false;
    JsonNode node;
    node.type = type;
    node.key = key;
    node.text = text;
    // A scalar ends right after itself; containers set `end` once their children are in.
    node.end = static_cast<std::uint32_t>(nodes.size() + 1);
    nodes.push_back(node);
    return true;
  }

  Status too_many_values() {
    return fail("the body has more than " + std::to_string(limits.values_max) + " JSON values");
  }

  // Fills the node for a scalar or descends into a container. `depth` counts the
  // containers that enclose the value.
  template <typename V>
  Status walk(V& v, std::string_view key, std::size_t depth) {
    od::json_type type;
    if (auto e = v.type().get(type)) return fail_simdjson(e);
    switch (type) {
      case od::json_type::object: {
        if (depth + 1 > limits.depth_max) return too_deep();
        od::object obj;
        if (auto e = v.get_object().get(obj)) return fail_simdjson(e);
        return walk_object(obj, key, depth + 1);
      }
      case od::json_type::array: {
        if (depth + 1 > limits.depth_max) return too_deep();
        od::array arr;
        if (auto e = v.get_array().get(arr)) return fail_simdjson(e);
        return walk_array(arr, key, depth + 1);
      }
      case od::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return fail_simdjson(e);
        if (!push(JsonType::kString, key, s)) return too_many_values();
        return ok_status();
      }
      case od::json_type::number: {
        std::string_view token;
        if (auto e = simdjson::simdjson_result<std::string_view>(v.raw_json_token()).get(token)) {
          return fail_simdjson(e);
        }
        token = trim_right(token);
        if (!is_json_number(token)) {
          return fail("the body is not valid JSON: bad number " + std::string(token));
        }
        if (!push(JsonType::kNumber, key, token)) return too_many_values();
        return ok_status();
      }
      case od::json_type::boolean: {
        bool b = false;
        if (auto e = v.get_bool().get(b)) return fail_simdjson(e);
        if (!push(JsonType::kBool, key, {})) return too_many_values();
        nodes.back().bool_value = b;
        return ok_status();
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto e = v.is_null().get(is_null)) return fail_simdjson(e);
        if (!is_null) return fail_simdjson(simdjson::INCORRECT_TYPE);
        if (!push(JsonType::kNull, key, {})) return too_many_values();
        return ok_status();
      }
    }
    return fail_simdjson(simdjson::TAPE_ERROR);
  }

  Status too_deep() {
    return fail("the body nests JSON deeper than " + std::to_string(limits.depth_max) + " levels");
  }

  Status walk_object(od::object& obj, std::string_view key, std::size_t depth) {
    const std::size_t self = nodes.size();
    if (!push(JsonType::kObject, key, {})) return too_many_values();
    std::uint32_t count = 0;
    for (auto field_result : obj) {
      od::field field;
      if (auto e = std::move(field_result).get(field)) return fail_simdjson(e);
      std::string_view name;
      if (auto e = field.unescaped_key().get(name)) return fail_simdjson(e);
      od::value& value = field.value();
      Status s = walk(value, name, depth);
      if (!s.ok()) return s;
      ++count;
    }
    nodes[self].size = count;
    nodes[self].end = static_cast<std::uint32_t>(nodes.size());
    return check_duplicates(self);
  }

  Status walk_array(od::array& arr, std::string_view key, std::size_t depth) {
    const std::size_t self = nodes.size();
    if (!push(JsonType::kArray, key, {})) return too_many_values();
    std::uint32_t count = 0;
    for (auto element_result : arr) {
      od::value value;
      if (auto e = std::move(element_result).get(value)) return fail_simdjson(e);
      Status s = walk(value, {}, depth);
      if (!s.ok()) return s;
      ++count;
    }
    nodes[self].size = count;
    nodes[self].end = static_cast<std::uint32_t>(nodes.size());
    return ok_status();
  }

  // Refuses an object that names a key twice: which one a reader sees would otherwise
  // depend on the reader.
  Status check_duplicates(std::size_t self) {
    const JsonNode& obj = nodes[self];
    if (obj.size < 2) return ok_status();
    if (obj.size <= kDuplicateScanPairwiseMax) {
      for (std::uint32_t i = self + 1; i < obj.end; i = nodes[i].end) {
        for (std::uint32_t j = nodes[i].end; j < obj.end; j = nodes[j].end) {
          if (nodes[i].key == nodes[j].key) return duplicate(nodes[i].key);
        }
      }
      return ok_status();
    }
    key_scratch.clear();
    for (std::uint32_t i = self + 1; i < obj.end; i = nodes[i].end) {
      key_scratch.push_back(nodes[i].key);
    }
    std::sort(key_scratch.begin(), key_scratch.end());
    auto it = std::adjacent_find(key_scratch.begin(), key_scratch.end());
    if (it != key_scratch.end()) return duplicate(*it);
    return ok_status();
  }

  Status duplicate(std::string_view key) {
    std::string message = "the body names the key ";
    json::append_string(message, key);
    message += " twice in one object";
    return fail(std::move(message));
  }

  Result<JsonValue> parse(std::string_view body, const JsonLimits& lim) {
    Result<JsonValue> r = parse_whole(body, lim);
    if (r.ok() || r.error().code != ErrorCode::kInvalidJson) return r;
    // simdjson may stop on the text after a value before it sees the value end ("{} x":
    // "ended early"): said as it is when the value alone is valid JSON.
    const std::optional<std::size_t> end = end_of_top_value(body);
    if (end && !parse_whole(body.substr(0, *end), lim).ok()) return r;
    if (end) return Error(fail("the body has text after the JSON value").error());
    return r;
  }

  // Where an object or array at the start of `body` closes, when text other than
  // whitespace follows it (strings and escapes skipped); nullopt otherwise.
  static std::optional<std::size_t> end_of_top_value(std::string_view body) {
    std::size_t i = 0;
    while (i < body.size() && is_json_whitespace(body[i])) ++i;
    if (i == body.size() || (body[i] != '{' && body[i] != '[')) return std::nullopt;
    int depth = 0;
    bool in_string = false;
    for (; i < body.size(); ++i) {
      const char c = body[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        break;
      }
    }
    if (i >= body.size()) return std::nullopt;
    for (std::size_t j = i + 1; j < body.size(); ++j) {
      if (!is_json_whitespace(body[j])) return i + 1;
    }
    return std::nullopt;
  }

  Result<JsonValue> parse_whole(std::string_view body, const JsonLimits& lim) {
    limits = lim;
    if (nodes.capacity() > kTapeRetainedNodesMax) std::vector<JsonNode>().swap(nodes);
    nodes.clear();
    padded.clear();
    padded.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    padded.append(body);
    simdjson::padded_string_view input(padded.data(), padded.size(), padded.capacity());

    od::document doc;
    if (auto e = parser.iterate(input).get(doc)) return Error(fail_simdjson(e).error());
    od::json_type type;
    if (auto e = doc.type().get(type)) return Error(fail_simdjson(e).error());
    Status s = ok_status();
    if (type == od::json_type::object || type == od::json_type::array) {
      s = walk(doc, {}, 0);
      if (s.ok()) {
        // Anything after the top-level value (`{} x`, `{}}`) is not one JSON document.
        const char* rest = nullptr;
        if (doc.current_location().get(rest) == simdjson::SUCCESS) {
          s = fail("the body has text after the JSON value");
        }
      }
    } else {
      s = walk(doc, {}, 0);
      if (s.ok()) {
        // A scalar document: simdjson stops at the scalar, so the rest must be blank.
        std::string_view token;
        if (auto e = doc.raw_json_token().get(token)) return Error(fail_simdjson(e).error());
        const std::size_t after =
            static_cast<std::size_t>(token.data() - padded.data()) + trim_right(token).size();
        for (std::size_t i = after; i < body.size(); ++i) {
          if (!is_json_whitespace(padded[i])) {
            s = fail("the body has text after the JSON value");
            break;
          }
        }
      }
    }
    if (!s.ok()) return s.error();
    CREDIT_ASSERT(!nodes.empty() && nodes[0].end == nodes.size());
    return JsonValue(nodes.data(), 0);
  }
};

JsonParser::JsonParser() : impl_(std::make_unique<Impl>()) {}
JsonParser::~JsonParser() = default;

Result<JsonValue> JsonParser::parse(std::string_view body, const JsonLimits& limits) {
  return impl_->parse(body, limits);
}

Result<JsonValue> JsonParser::parse_object(std::string_view body, const JsonLimits& limits) {
  Result<JsonValue> r = impl_->parse(body, limits);
  if (r.ok() && !r->is_object()) {
    return Error(ErrorCode::kInvalidJson, "the body must be a JSON object");
  }
  return r;
}

JsonParser& thread_json_parser() {
  thread_local JsonParser parser;
  return parser;
}

// ---------------------------------------------------------------------------------------
// ObjectReader

ObjectReader::ObjectReader(JsonValue object, std::string path)
    : object_(object), path_(std::move(path)) {
  CREDIT_ASSERT(object_.is_object());
}

std::optional<JsonValue> ObjectReader::lookup(std::string_view key, bool null_is_missing) {
  bool seen = false;
  for (std::size_t i = 0; i < known_count_; ++i) seen = seen || known_[i] == key;
  if (!seen) {
    // Asking for more keys than this is a route bug, not a client error.
    CREDIT_ASSERT(known_count_ < known_.size());
    known_[known_count_++] = key;
  }
  std::optional<JsonValue> v = object_.find(key);
  if (v && null_is_missing && v->is_null()) return std::nullopt;
  return v;
}

Error ObjectReader::invalid(std::string_view key, std::string message) const {
  Error e(ErrorCode::kInvalidRequest, std::move(message));
  e.with_string("param", path_of(key));
  return e;
}

Error ObjectReader::missing(std::string_view key) const {
  return invalid(key, "the field " + path_of(key) + " is required");
}

Error ObjectReader::wrong_type(std::string_view key, std::string_view expected) const {
  return invalid(key, "the field " + path_of(key) + " must be " + std::string(expected));
}

Result<std::optional<std::string_view>> ObjectReader::optional_string(std::string_view key) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<std::string_view>();
  if (!v->is_string()) return wrong_type(key, "a string");
  return std::optional<std::string_view>(v->string_value());
}

Result<std::string_view> ObjectReader::string(std::string_view key) {
  auto r = optional_string(key);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return **r;
}

Result<std::optional<std::int64_t>> ObjectReader::optional_int64(std::string_view key,
                                                                 std::int64_t min,
                                                                 std::int64_t max) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<std::int64_t>();
  if (!v->is_number()) return wrong_type(key, "an integer");
  // A whole number in any spelling ("1000", "1000.0", "1e3"), as usage dimensions take it:
  // JSON has one number type, and a body's numbers compare by value (DESIGN.md).
  std::optional<std::int64_t> i = json_whole_number(v->number_text());
  if (!i || *i < min || *i > max) {
    return invalid(key, "the field " + path_of(key) + " must be an integer from " +
                            std::to_string(min) + " to " + std::to_string(max));
  }
  return i;
}

Result<std::int64_t> ObjectReader::int64(std::string_view key, std::int64_t min, std::int64_t max) {
  auto r = optional_int64(key, min, max);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return **r;
}

Result<std::optional<bool>> ObjectReader::optional_boolean(std::string_view key) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<bool>();
  if (!v->is_bool()) return wrong_type(key, "true or false");
  return std::optional<bool>(v->bool_value());
}

Result<bool> ObjectReader::boolean(std::string_view key) {
  auto r = optional_boolean(key);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return **r;
}

Result<std::optional<std::string_view>> ObjectReader::optional_number_text(std::string_view key) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<std::string_view>();
  if (!v->is_number()) return wrong_type(key, "a number");
  return std::optional<std::string_view>(v->number_text());
}

Result<std::string_view> ObjectReader::number_text(std::string_view key) {
  auto r = optional_number_text(key);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return **r;
}

Result<std::optional<ObjectReader>> ObjectReader::optional_object(std::string_view key) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<ObjectReader>();
  if (!v->is_object()) return wrong_type(key, "an object");
  return std::optional<ObjectReader>(ObjectReader(*v, path_of(key)));
}

Result<ObjectReader> ObjectReader::object(std::string_view key) {
  auto r = optional_object(key);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return std::move(**r);
}

Result<std::optional<JsonValue>> ObjectReader::optional_array(std::string_view key) {
  std::optional<JsonValue> v = lookup(key, true);
  if (!v) return std::optional<JsonValue>();
  if (!v->is_array()) return wrong_type(key, "an array");
  return v;
}

Result<JsonValue> ObjectReader::array(std::string_view key) {
  auto r = optional_array(key);
  if (!r.ok()) return r.error();
  if (!*r) return missing(key);
  return **r;
}

std::optional<JsonValue> ObjectReader::any(std::string_view key) {
  return lookup(key, false);
}

Status ObjectReader::no_unknown_fields() const {
  for (auto [key, value] : object_) {
    bool known = false;
    for (std::size_t i = 0; i < known_count_ && !known; ++i) known = known_[i] == key;
    if (!known) {
      Error e(ErrorCode::kUnknownField, "the field " + path_of(key) + " is not defined here");
      e.with_string("param", path_of(key));
      return e;
    }
  }
  return ok_status();
}

// ---------------------------------------------------------------------------------------
// Error bodies

namespace {
// Retry-After is whole seconds; a client told 0 would retry at once.
constexpr std::int64_t kRetryAfterSecondsMin = 1;
constexpr std::int64_t kMsPerSecond = 1000;
}  // namespace

HttpResponse error_response(const Error& error) {
  HttpResponse res;
  res.status = error_code_http_status(error.code);
  res.body = error_json(error);
  if (error.code == ErrorCode::kRateLimited) {
    std::int64_t seconds = kRetryAfterSecondsMin;
    if (std::optional<std::int64_t> ms = json_int64(error.detail("retry_after_ms")); ms) {
      const std::int64_t rounded_up = *ms / kMsPerSecond + (*ms % kMsPerSecond > 0 ? 1 : 0);
      seconds = std::max(kRetryAfterSecondsMin, rounded_up);
    }
    res.headers.emplace_back("Retry-After", std::to_string(seconds));
  } else if (error.code == ErrorCode::kOverloaded || error.code == ErrorCode::kShuttingDown) {
    res.headers.emplace_back("Retry-After", std::to_string(kRetryAfterSecondsMin));
  } else if (error.code == ErrorCode::kUnauthorized) {
    // RFC 9110 section 11.6.1: a 401 names the scheme it takes.
    res.headers.emplace_back("WWW-Authenticate", "Bearer");
  }
  return res;
}

}  // namespace credit::server
