// src/pricing/internal/toml_reader.h
// Strict reading of a parsed TOML document for the config loaders (plan.cc, rate_card.cc).
// Owns: typed field access that rejects unknown keys, missing keys, wrong types and values
// out of range, with errors that name the file, the line and the field
// ("config/plans.toml:12: plans.pro.price_usd_cents: must be >= 0").
// Does not: know what a plan or a rate card is (the loaders decide which keys exist).
// A failed check throws ConfigFailure, which only the loaders' parse functions catch and
// turn into a Result: bad config is a start-up error, never on the charge path.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "money/money.h"

namespace credit::pricing::internal {

struct ConfigFailure {
  std::uint32_t line = 0;  // 0: unknown
  std::string field;       // "plans.pro.price_usd_cents"; empty for the whole document
  std::string what;        // "must be >= 0"
};

// Formats a failure as "<source>:<line>: <field>: <what>" (kInvalidRequest, with the
// detail "field").
Error config_error(std::string_view source, const ConfigFailure& failure);

// Reads a whole config file; an unreadable file is kInvalidRequest naming the path.
Result<std::string> read_config_file(const std::string& path, std::string_view what);

// Parses TOML text; a syntax error (duplicate tables included) throws ConfigFailure.
toml::table parse_toml(std::string_view text, std::string_view source);

// Appends a key to a dotted field path, quoting it when it is not a bare TOML key:
// field_path("kinds", "integration.invoke_llm") == "kinds.\"integration.invoke_llm\"".
std::string field_path(std::string_view path, std::string_view key);

// Plan ids, pool names, model and size names appear in URLs, events and CSV columns, so
// they are 1-64 characters of a-z, 0-9, '_' and '-' ("1024x1024", "gpt-4o"), plus '.'
// where `allow_dot` (model names such as "claude-3.5").
constexpr std::size_t kIdBytesMax = 64;
bool is_plain_id(std::string_view id, bool allow_dot);

[[noreturn]] void fail(const toml::node* at, std::string field, std::string what);

// The largest whole-credit amount a config may state: the API limit, 10^12 credits.
constexpr std::int64_t kConfigCreditsMax = 1'000'000'000'000LL;

// A TOML table together with its field path, read strictly.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string path)
      : table_(&table), path_(std::move(path)) {}

  const toml::table& table() const { return *table_; }
  const std::string& path() const { return path_; }
  std::string field(std::string_view key) const { return field_path(path_, key); }
  bool has(std::string_view key) const { return table_->contains(key); }

  // Throws on the first key (in file order) that is not in `allowed`.
  void only_keys(std::initializer_list<std::string_view> allowed) const;

  std::int64_t required_int(std::string_view key, std::int64_t min, std::int64_t max) const;
  std::optional<std::int64_t> optional_int(std::string_view key, std::int64_t min,
                                           std::int64_t max) const;
  std::string required_string(std::string_view key) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  std::optional<bool> optional_bool(std::string_view key) const;
  // Credits: an integer (whole credits) or a string holding an exact decimal with at most
  // three decimals ("0.5"); never a TOML float, whose binary value is not exact.
  Millicredits required_credits(std::string_view key) const;
  std::optional<Millicredits> optional_credits(std::string_view key) const;
  TableReader required_table(std::string_view key) const;
  std::optional<TableReader> optional_table(std::string_view key) const;

  // Every value of this table as a table, in the order the keys first appear in the file
  // (toml++ keeps keys sorted; file order matters for plans and pools).
  std::vector<std::pair<std::string, TableReader>> tables_in_file_order() const;

  // Throws "<path>: <what>" at this table's line.
  [[noreturn]] void fail_here(std::string what) const;

 private:
  const toml::node& required(std::string_view key) const;

  const toml::table* table_;
  std::string path_;
};

}  // namespace credit::pricing::internal
