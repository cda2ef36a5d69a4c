// src/cli/online.h
// creditctl's online subcommands: accounts, balances, metering and the analytics of a
// creditd server (API.md), human tables by default and the server's JSON with --json.
// Owns: the connection options (--url, --key / CREDITD_KEY / --key-file, --timeout), the
// subcommands' options and requests, the mapping of answers to exit codes and messages.
// Does not: compute anything itself (the server does), or run offline work (offline.h).
//
// Exit codes, for scripts (also in `creditctl --help` and docs/cli.md):
//   0 ok; 1 the server said no (a 4xx not listed below); 2 usage error; 3 bad input file
//   (an unreadable --key-file, an event file with bad lines); 4 the server cannot be
//   reached (or did not answer in --timeout); 5 bad key (401, or 403 forbidden);
//   6 insufficient credits (402); 7 rate limited (429); 8 server error (5xx).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "cli/offline.h"

namespace credit::cli {

constexpr int kExitRefused = 1;
constexpr int kExitUnreachable = 4;
constexpr int kExitBadKey = 5;
constexpr int kExitInsufficient = 6;
constexpr int kExitRateLimited = 7;
constexpr int kExitServerError = 8;

constexpr const char* kServerUrlDefault = "http://127.0.0.1:8080";
constexpr std::int64_t kTimeoutSecondsDefault = 60;
constexpr std::int64_t kTimeoutSecondsMax = 3600;

// The text of `creditctl --help`'s footer: the exit codes.
extern const char* const kExitCodesHelp;

struct Connection {
  std::string url = kServerUrlDefault;
  std::string key;       // --key or CREDITD_KEY
  std::string key_file;  // read when no key was given
  std::int64_t timeout_s = kTimeoutSecondsDefault;
  bool json = false;
  // --format: "table" or "json" (= --json) on every command; audit also takes md | html.
  std::string format;
};

// The options of every online subcommand; only the chosen one's are read.
struct OnlineArgs {
  std::string account;
  std::string hold_id;
  std::string plan;
  std::string signup_at;
  std::string kind;
  std::string user;
  std::string amount;
  std::string usage;     // k=v,...
  std::string metadata;  // k=v,...
  std::string cache_key;
  std::string key_id;  // the idempotency key
  std::string overage;
  // Sent when given, as given (the server refuses a value out of its range).
  std::optional<std::int64_t> ttl_ms;
  std::string group_by = "kind";
  std::string order_by;
  std::string from;
  std::string to;
  std::string pool;
  std::optional<std::int64_t> limit;  // as ttl_ms
  std::string after;
  std::string hourly_rate;
  std::string break_even_hours;
};

struct OnlineCommands {
  Connection conn;
  OnlineArgs args;
  CLI::App* accounts = nullptr;
  CLI::App* accounts_list = nullptr;
  CLI::App* accounts_get = nullptr;
  CLI::App* accounts_create = nullptr;
  CLI::App* balance = nullptr;
  CLI::App* charge = nullptr;
  CLI::App* hold = nullptr;
  CLI::App* capture = nullptr;
  CLI::App* void_hold = nullptr;
  CLI::App* usage = nullptr;
  CLI::App* hot_files = nullptr;
  CLI::App* burn = nullptr;
  CLI::App* forecast = nullptr;
  CLI::App* loops = nullptr;
  CLI::App* alerts = nullptr;
};

// Adds --url, --key, --key-file, --timeout, --json and --format to `app` (usable after any
// subcommand too) and the online subcommands; `commands` must outlive `app`.
void add_online_commands(CLI::App& app, OnlineCommands& commands);
// After app.parse(): the exit code of the online subcommand that was given, or nullopt.
std::optional<int> run_online_command(const OnlineCommands& commands);

// `creditctl audit X`: X names an account on the server (rather than an event file)
// when --online is given, or when X is not "-", does not exist, has no '/' and does not
// end in .ndjson, .jsonl or .json.
bool audit_is_online(const AuditArgs& args);
// GET /v1/accounts/{id}/audit with the audit's --format (or --json), --from, --to, --out.
int run_online_audit(const Connection& conn, const AuditArgs& args);

}  // namespace credit::cli
