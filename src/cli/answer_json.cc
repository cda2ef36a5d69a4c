// src/cli/answer_json.cc
// Parsing an answer into JsonNodes (answer_json.h): one On Demand walk over all of it.
#include "cli/answer_json.h"

#include <simdjson.h>

#include <utility>

#include "base/json_writer.h"

namespace credit::cli {

namespace {

namespace od = simdjson::ondemand;

const JsonNode kMissingNode{};

// raw_json_token() ends at the next token, so it may carry the whitespace before it.
std::string_view trim_right(std::string_view s) {
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

std::size_t skip_digits(std::string_view s, std::size_t i) {
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  return i;
}

// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?: On Demand hands out a number's token
// without checking it.
bool is_json_number(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size()) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    const std::size_t start = i;
    i = skip_digits(s, i);
    if (i == start) return false;
  }
  if (i < s.size() && s[i] == '.') {
    const std::size_t start = ++i;
    i = skip_digits(s, i);
    if (i == start) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    const std::size_t start = i;
    i = skip_digits(s, i);
    if (i == start) return false;
  }
  return i == s.size();
}

bool read_value(od::value v, JsonNode& out);

bool read_object(od::object object, JsonNode& out) {
  out.kind = JsonKind::kObject;
  for (auto member : object) {
    od::field f;
    if (std::move(member).get(f)) return false;
    std::string_view key;
    if (f.unescaped_key().get(key)) return false;
    JsonNode& child = out.children.emplace_back();
    child.key = std::string(key);
    if (!read_value(f.value(), child)) return false;
  }
  return true;
}

bool read_array(od::array array, JsonNode& out) {
  out.kind = JsonKind::kArray;
  for (auto element : array) {
    od::value v;
    if (std::move(element).get(v)) return false;
    if (!read_value(v, out.children.emplace_back())) return false;
  }
  return true;
}

// Recursion is bounded by the parser's depth limit (simdjson refuses deeper documents).
bool read_value(od::value v, JsonNode& out) {
  od::json_type type;
  if (v.type().get(type)) return false;
  switch (type) {
    case od::json_type::object: {
      od::object object;
      return !v.get_object().get(object) && read_object(object, out);
    }
    case od::json_type::array: {
      od::array array;
      return !v.get_array().get(array) && read_array(array, out);
    }
    case od::json_type::number: {
      std::string_view token;
      if (simdjson::simdjson_result<std::string_view>(v.raw_json_token()).get(token)) return false;
      token = trim_right(token);
      if (!is_json_number(token)) return false;
      out.kind = JsonKind::kNumber;
      out.text = std::string(token);
      return true;
    }
    case od::json_type::string: {
      std::string_view s;
      if (v.get_string().get(s)) return false;
      out.kind = JsonKind::kString;
      out.text = std::string(s);
      return true;
    }
    case od::json_type::boolean: {
      bool b = false;
      if (v.get_bool().get(b)) return false;
      out.kind = JsonKind::kBool;
      out.text = b ? "true" : "false";
      return true;
    }
    case od::json_type::null: {
      bool null = false;
      if (v.is_null().get(null) || !null) return false;
      out.kind = JsonKind::kNull;
      return true;
    }
  }
  return false;
}

}  // namespace

const JsonNode& JsonNode::operator[](std::string_view name) const {
  if (kind != JsonKind::kObject) return kMissingNode;
  for (const JsonNode& c : children) {
    if (c.key == name) return c;
  }
  return kMissingNode;
}

std::span<const JsonNode> JsonNode::members() const {
  return kind == JsonKind::kObject ? std::span<const JsonNode>(children)
                                   : std::span<const JsonNode>();
}

std::span<const JsonNode> JsonNode::elements() const {
  return kind == JsonKind::kArray ? std::span<const JsonNode>(children)
                                  : std::span<const JsonNode>();
}

void JsonNode::append_json(std::string& out) const {
  switch (kind) {
    case JsonKind::kMissing:
    case JsonKind::kNull:
      out += "null";
      return;
    case JsonKind::kBool:
    case JsonKind::kNumber:
      out += text;
      return;
    case JsonKind::kString:
      json::append_string(out, text);
      return;
    case JsonKind::kArray:
    case JsonKind::kObject: {
      const bool object = kind == JsonKind::kObject;
      out += object ? '{' : '[';
      for (std::size_t i = 0; i < children.size(); ++i) {
        if (i > 0) out += ',';
        if (object) {
          json::append_string(out, children[i].key);
          out += ':';
        }
        children[i].append_json(out);
      }
      out += object ? '}' : ']';
      return;
    }
  }
}

std::optional<JsonNode> parse_answer(std::string_view body) {
  simdjson::padded_string padded(body);
  od::parser parser;
  od::document doc;
  if (parser.iterate(padded).get(doc)) return std::nullopt;
  od::json_type type;
  if (doc.type().get(type)) return std::nullopt;
  JsonNode root;
  if (type == od::json_type::object) {
    od::object object;
    if (doc.get_object().get(object) || !read_object(object, root)) return std::nullopt;
  } else if (type == od::json_type::array) {
    od::array array;
    if (doc.get_array().get(array) || !read_array(array, root)) return std::nullopt;
  } else {
    return std::nullopt;
  }
  // Anything after the value (`{} x`, `{}}`) makes the body other than one JSON document:
  // simdjson has a location to report only while text is left.
  const char* rest = nullptr;
  if (doc.current_location().get(rest) == simdjson::SUCCESS) return std::nullopt;
  return root;
}

}  // namespace credit::cli
