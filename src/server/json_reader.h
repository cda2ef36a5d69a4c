// src/server/json_reader.h
// Reads request bodies: validates a JSON document completely, then hands out typed fields
// with errors that name the field path ("usage.input_tokens", "ops[3].amount").
// Owns: the JSON limits of a request (depth, value count), the exact text of numbers,
//   the HTTP answer of an error (error_response: its status and headers around
//   base/error_json.h's body).
// Does not: parse money or time (money/, time/ parse the number and string text given
//   here), decide which fields a route has (the routes do).
//
// Design. simdjson's DOM keeps numbers only as double/int64, which loses the text that
// money must be parsed from ("1.500" and "15e-1" must both reach money/ as written). So a
// JsonParser walks the whole document once with simdjson On Demand and records it in a
// flat pre-order tape of JsonNodes, reused from one parse to the next:
//   - every value is visited, so nothing invalid hides in a part a route does not read;
//     UTF-8 is checked by simdjson for the whole input, numbers against the JSON grammar
//     here (On Demand alone would let `01`, `1.` and `-` through);
//   - a number keeps its exact token text (JsonValue::number_text), never a double;
//   - strings and keys are unescaped into simdjson's buffer, numbers point into the
//     parser's padded copy of the body: every string_view and JsonValue of a parse is
//     valid until the next parse on the same JsonParser (or its destruction);
//   - deeper than depth_max (32), more than values_max values, duplicate keys, or
//     anything after the top-level value is kInvalidJson.
// A JsonParser is single-threaded; thread_json_parser() gives each thread its own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "server/http_server.h"

namespace credit::server {

// API.md / DESIGN.md section 5: nesting deeper than this is refused.
constexpr std::size_t kJsonDepthMax = 32;
// Values (objects, arrays, strings, numbers, literals) in one document. A full batch
// (8,192 ops of about 40 values each) stays far below it; a 16 MiB `[0,0,0,...]` does
// not, so one request cannot make a thread keep about 400 MiB of tape.
constexpr std::size_t kJsonValuesMax = 1u << 20;
// Keys a route may ask one ObjectReader for; more is a programming error.
constexpr std::size_t kObjectReaderKeysMax = 32;

struct JsonLimits {
  std::size_t depth_max = kJsonDepthMax;
  std::size_t values_max = kJsonValuesMax;
};

enum class JsonType : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

// One value on the tape. Children of an array or object follow it in order; `end` is
// the index one past its last descendant, so the next sibling of node i is nodes[i].end.
struct JsonNode {
  JsonType type = JsonType::kNull;
  bool bool_value = false;
  std::uint32_t size = 0;  // members or elements
  std::uint32_t end = 0;
  std::string_view key;   // the member name when the parent is an object
  std::string_view text;  // unescaped string, or exact number token
};

struct JsonMember;

// A handle to one value of a parsed document; cheap to copy.
class JsonValue {
 public:
  JsonValue() = default;
  JsonValue(const JsonNode* nodes, std::uint32_t index) : nodes_(nodes), index_(index) {}

  JsonType type() const { return node().type; }
  bool is_null() const { return type() == JsonType::kNull; }
  bool is_bool() const { return type() == JsonType::kBool; }
  bool is_number() const { return type() == JsonType::kNumber; }
  bool is_string() const { return type() == JsonType::kString; }
  bool is_array() const { return type() == JsonType::kArray; }
  bool is_object() const { return type() == JsonType::kObject; }

  // Preconditions: the matching type (checked with CREDIT_ASSERT).
  bool bool_value() const;
  std::string_view string_value() const;
  // The number exactly as written in the body, e.g. "1.500" or "15e-1".
  std::string_view number_text() const;
  // The number as an int64 when its text is an integer token in range.
  std::optional<std::int64_t> int64_value() const;
  // Members of an object or elements of an array.
  std::uint32_t size() const { return node().size; }

  // The first member named `key` of an object (keys are unique: duplicates are refused).
  std::optional<JsonValue> find(std::string_view key) const;

  class Iterator {
   public:
    Iterator(const JsonNode* nodes, std::uint32_t index) : nodes_(nodes), index_(index) {}
    JsonMember operator*() const;
    Iterator& operator++() {
      index_ = nodes_[index_].end;
      return *this;
    }
    bool operator==(const Iterator& o) const { return index_ == o.index_; }

   private:
    const JsonNode* nodes_;
    std::uint32_t index_;
  };
  // Children of an array or object: `for (auto [key, value] : v)`; key is empty in arrays.
  Iterator begin() const { return Iterator(nodes_, index_ + 1); }
  Iterator end() const { return Iterator(nodes_, node().end); }

  // Appends the value as compact JSON (numbers as written, strings re-escaped): for
  // storing a client's JSON (cache responses) and hashing a request canonically.
  void append_json(std::string& out) const;

 private:
  const JsonNode& node() const { return nodes_[index_]; }
  const JsonNode* nodes_ = nullptr;
  std::uint32_t index_ = 0;
};

struct JsonMember {
  std::string_view key;
  JsonValue value;
};

inline JsonMember JsonValue::Iterator::operator*() const {
  return {nodes_[index_].key, JsonValue(nodes_, index_)};
}

// Parses documents into a tape it reuses. Not thread-safe; one per thread.
class JsonParser {
 public:
  JsonParser();
  ~JsonParser();
  JsonParser(const JsonParser&) = delete;
  JsonParser& operator=(const JsonParser&) = delete;

  // Any JSON value at the top. Errors are kInvalidJson with a message.
  Result<JsonValue> parse(std::string_view body, const JsonLimits& limits = {});
  // As parse, and the top-level value must be an object (kInvalidJson otherwise).
  Result<JsonValue> parse_object(std::string_view body, const JsonLimits& limits = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// This thread's parser. What it returns lives until the thread's next parse.
JsonParser& thread_json_parser();

// True when `text` is a number by the JSON grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view text);
// The integer a number token names, when it has no fraction or exponent and fits.
std::optional<std::int64_t> json_int64(std::string_view number_text);
// The integer a number token's value is, however it is spelled ("3", "3.0", "30e-1",
// "0.3e1"), when the value is whole and has at most kJsonWholeDigitsMax digits.
constexpr std::size_t kJsonWholeDigitsMax = 18;
std::optional<std::int64_t> json_whole_number(std::string_view number_text);

// Field paths for the `param` detail: "usage" + "input_tokens" -> "usage.input_tokens",
// "ops" + 3 -> "ops[3]".
std::string json_path_join(std::string_view parent, std::string_view key);
std::string json_path_index(std::string_view parent, std::size_t index);

// Typed access to one object's fields. A missing or mistyped field is kInvalidRequest
// with `param` naming its full path. "Optional" fields may be missing or null (API.md:
// optional values are null). Every key asked for is remembered, so no_unknown_fields()
// can refuse the rest (kUnknownField with `param`).
class ObjectReader {
 public:
  // Precondition: object.is_object(). `path` is the object's own path ("" at the top).
  explicit ObjectReader(JsonValue object, std::string path = {});

  Result<std::string_view> string(std::string_view key);
  Result<std::optional<std::string_view>> optional_string(std::string_view key);
  Result<std::int64_t> int64(std::string_view key, std::int64_t min, std::int64_t max);
  Result<std::optional<std::int64_t>> optional_int64(std::string_view key, std::int64_t min,
                                                     std::int64_t max);
  Result<bool> boolean(std::string_view key);
  Result<std::optional<bool>> optional_boolean(std::string_view key);
  // The exact number text, for money (money/ parses it).
  Result<std::string_view> number_text(std::string_view key);
  Result<std::optional<std::string_view>> optional_number_text(std::string_view key);
  Result<ObjectReader> object(std::string_view key);
  Result<std::optional<ObjectReader>> optional_object(std::string_view key);
  Result<JsonValue> array(std::string_view key);
  Result<std::optional<JsonValue>> optional_array(std::string_view key);
  // Any value, or nullopt when missing (null is returned as a null value).
  std::optional<JsonValue> any(std::string_view key);

  // kUnknownField naming the first member no getter above asked for.
  Status no_unknown_fields() const;

  JsonValue value() const { return object_; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const { return json_path_join(path_, key); }
  // kInvalidRequest with `param` = path_of(key): for route checks on a field's value.
  Error invalid(std::string_view key, std::string message) const;

 private:
  // Remembers `key` as known and finds it; a null value counts as missing when
  // null_is_missing.
  std::optional<JsonValue> lookup(std::string_view key, bool null_is_missing);
  Error missing(std::string_view key) const;
  Error wrong_type(std::string_view key, std::string_view expected) const;

  JsonValue object_;
  std::string path_;
  std::array<std::string_view, kObjectReaderKeysMax> known_{};
  std::size_t known_count_ = 0;
};

// An HttpResponse for the error, its body base/error_json.h's: status from error_code_http_status;
// kRateLimited gets Retry-After from `retry_after_ms` (whole seconds, rounded up, at least 1),
// kOverloaded gets Retry-After: 1.
HttpResponse error_response(const Error& error);

}  // namespace credit::server
