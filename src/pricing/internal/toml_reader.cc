// src/pricing/internal/toml_reader.cc
// Strict, typed reading of TOML tables for the config loaders; see toml_reader.h.
#include "pricing/internal/toml_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>

namespace credit::pricing::internal {
namespace {

std::uint32_t line_of(const toml::node* at) {
  return at ? at->source().begin.line : 0;
}

std::string describe_int_range(std::int64_t min, std::int64_t max) {
  std::string out = "must be an integer >= " + std::to_string(min);
  if (max != INT64_MAX) out += " and <= " + std::to_string(max);
  return out;
}

bool is_bare_key(std::string_view key) {
  if (key.empty()) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

}  // namespace

Error config_error(std::string_view source, const ConfigFailure& failure) {
  std::string message(source);
  if (failure.line > 0) message += ":" + std::to_string(failure.line);
  message += ": ";
  if (!failure.field.empty()) message += failure.field + ": ";
  message += failure.what;
  Error error(ErrorCode::kInvalidRequest, std::move(message));
  if (!failure.field.empty()) error.with_string("field", failure.field);
  return error;
}

Result<std::string> read_config_file(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error(ErrorCode::kInvalidRequest,
                 path + ": cannot read the " + std::string(what) + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

toml::table parse_toml(std::string_view text, std::string_view source) {
  try {
    return toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw ConfigFailure{e.source().begin.line, "", std::string(e.description())};
  }
}

std::string field_path(std::string_view path, std::string_view key) {
  std::string out(path);
  if (!out.empty()) out += '.';
  if (is_bare_key(key)) {
    out += key;
  } else {
    out += '"';
    out += key;
    out += '"';
  }
  return out;
}

bool is_plain_id(std::string_view id, bool allow_dot) {
  if (id.empty() || id.size() > kIdBytesMax) return false;
  return std::all_of(id.begin(), id.end(), [allow_dot](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           (allow_dot && c == '.');
  });
}

void fail(const toml::node* at, std::string field, std::string what) {
  throw ConfigFailure{line_of(at), std::move(field), std::move(what)};
}

void TableReader::fail_here(std::string what) const {
  fail(table_, path_, std::move(what));
}

void TableReader::only_keys(std::initializer_list<std::string_view> allowed) const {
  std::optional<std::tuple<std::uint32_t, std::uint32_t, std::string>> first_unknown;
  for (auto&& [key, value] : *table_) {
    if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
    std::tuple<std::uint32_t, std::uint32_t, std::string> here{
        key.source().begin.line, key.source().begin.column, std::string(key.str())};
    if (!first_unknown || here < *first_unknown) first_unknown = here;
  }
  if (!first_unknown) return;
  std::string allowed_list;
  for (std::string_view k : allowed) {
    if (!allowed_list.empty()) allowed_list += ", ";
    allowed_list += k;
  }
  throw ConfigFailure{std::get<0>(*first_unknown), field(std::get<2>(*first_unknown)),
                      "unknown key (allowed here: " + allowed_list + ")"};
}

const toml::node& TableReader::required(std::string_view key) const {
  const toml::node* node = table_->get(key);
  if (!node) fail(table_, field(key), "missing (required)");
  return *node;
}

std::int64_t TableReader::required_int(std::string_view key, std::int64_t min,
                                       std::int64_t max) const {
  const toml::node& node = required(key);
  const auto* value = node.as_integer();
  if (!value || value->get() < min || value->get() > max) {
    fail(&node, field(key), describe_int_range(min, max));
  }
  return value->get();
}

std::optional<std::int64_t> TableReader::optional_int(std::string_view key, std::int64_t min,
                                                      std::int64_t max) const {
  if (!has(key)) return std::nullopt;
  return required_int(key, min, max);
}

std::string TableReader::required_string(std::string_view key) const {
  const toml::node& node = required(key);
  const auto* value = node.as_string();
  if (!value) fail(&node, field(key), "must be a string");
  return value->get();
}

std::optional<std::string> TableReader::optional_string(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return required_string(key);
}

std::optional<bool> TableReader::optional_bool(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  const toml::node& node = required(key);
  const auto* value = node.as_boolean();
  if (!value) fail(&node, field(key), "must be true or false");
  return value->get();
}

Millicredits TableReader::required_credits(std::string_view key) const {
  const toml::node& node = required(key);
  const std::string range = "must be credits from 0 to " + std::to_string(kConfigCreditsMax) +
                            ": an integer, or a string with at most three decimals such as \"0.5\"";
  if (const auto* whole = node.as_integer()) {
    if (whole->get() < 0 || whole->get() > kConfigCreditsMax) fail(&node, field(key), range);
    return Millicredits::from_mc(whole->get() * 1000);
  }
  if (const auto* text = node.as_string()) {
    Result<Millicredits> parsed = parse_credits(text->get());
    if (!parsed.ok() || parsed->is_negative()) fail(&node, field(key), range);
    return *parsed;
  }
  fail(&node, field(key), range);
}

std::optional<Millicredits> TableReader::optional_credits(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return required_credits(key);
}

TableReader TableReader::required_table(std::string_view key) const {
  const toml::node& node = required(key);
  const auto* table = node.as_table();
  if (!table) fail(&node, field(key), "must be a table");
  return TableReader(*table, field(key));
}

std::optional<TableReader> TableReader::optional_table(std::string_view key) const {
  if (!has(key)) return std::nullopt;
  return required_table(key);
}

std::vector<std::pair<std::string, TableReader>> TableReader::tables_in_file_order() const {
  struct Entry {
    toml::source_position at;
    std::string key;
    const toml::node* node;
  };
  std::vector<Entry> entries;
  for (auto&& [key, value] : *table_) {
    entries.push_back({key.source().begin, std::string(key.str()), &value});
  }
  std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.at.line, a.at.column) < std::tie(b.at.line, b.at.column);
  });
  std::vector<std::pair<std::string, TableReader>> out;
  out.reserve(entries.size());
  for (const Entry& e : entries) {
    const auto* table = e.node->as_table();
    if (!table) fail(e.node, field(e.key), "must be a table");
    out.emplace_back(e.key, TableReader(*table, field(e.key)));
  }
  return out;
}

}  // namespace credit::pricing::internal
