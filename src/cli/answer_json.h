// src/cli/answer_json.h
// The server's JSON answers as creditctl's tables read them: a small tree in which every
// number keeps its exact text.
// Owns: parsing an answer (simdjson On Demand) into JsonNodes, and writing a node back as
//   compact JSON.
// Does not: format tables or talk to the server (online.cc).
//
// Why not simdjson's DOM: it keeps a number only as a double or an int64, and a double
// cannot hold every balance (DESIGN §1 Money: no binary floating point touches a balance).
// 9000000009999.997 credits read as a double prints as 9000000009999.996. Here a number
// is its token as the server wrote it, so a table shows the server's own figure.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace credit::cli {

enum class JsonKind : unsigned char { kMissing, kNull, kBool, kNumber, kString, kArray, kObject };

struct JsonNode {
  JsonKind kind = JsonKind::kMissing;
  std::string key;                 // the member name when the parent is an object
  std::string text;                // a string unescaped, a number's exact token, "true" or "false"
  std::vector<JsonNode> children;  // the members of an object, the elements of an array

  bool is_missing() const { return kind == JsonKind::kMissing; }
  bool is_null() const { return kind == JsonKind::kNull; }
  bool is_object() const { return kind == JsonKind::kObject; }
  bool is_array() const { return kind == JsonKind::kArray; }

  // The member `name` of an object; a missing node when there is none or this is not
  // an object (so lookups chain: doc["cycle"]["end"]).
  const JsonNode& operator[](std::string_view name) const;
  // Members of an object (each with its key), none for any other kind.
  std::span<const JsonNode> members() const;
  // Elements of an array, none for any other kind.
  std::span<const JsonNode> elements() const;

  // Appends the value as compact JSON: numbers as the server wrote them, strings
  // re-escaped; a missing node as null.
  void append_json(std::string& out) const;
};

// The answer `body` as a tree; nullopt when it is not one JSON object or array.
std::optional<JsonNode> parse_answer(std::string_view body);

}  // namespace credit::cli
