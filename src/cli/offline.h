// src/cli/offline.h
// creditctl's offline subcommands: simulate, replay and audit on NDJSON event files
// (DESIGN.md section 3, "The CLI"). The creditctl main registers them beside the online
// subcommands that talk to a server.
// Owns: the options, the CLI11 registration and the run_* functions with their exit
// codes. Does not: talk to a server, or compute analytics (analytics/, sim/).
//
// Exit codes: 0 ok; 2 usage error (bad option, unknown profile, policy or plan, a config
// file that does not load); 3 bad input file (unreadable, or some lines are not events:
// the rest is still processed and the bad lines are reported as FILE:LINE: reason).
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace credit::cli {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitBadInput = 3;

// replay --ttl-days: the cache policy's entries live at most ten years.
constexpr std::int64_t kReplayTtlDaysMax = 3660;
// audit --cycle-days: the longest billing cycle, a month.
constexpr std::int64_t kAuditCycleDaysMax = 31;

constexpr const char* kRateCardPathDefault = "config/rate_card.toml";
constexpr const char* kPlansPathDefault = "config/plans.toml";

// Whether --plans and --rate-card were given on the command line (run_offline_command
// fills it from the options' counts). A path given is used exactly as given, even when it
// is the default's text, and a catalog given must match the rate card (docs/cli.md); a
// default not given is looked for (resolve_config) and, for the catalog, used only when
// it matches.
struct ConfigGiven {
  bool plans = false;
  bool rate_card = false;
};

struct SimulateArgs {
  std::string profile = "typical";
  std::int64_t accounts = 1;
  std::int64_t days = 30;
  std::uint64_t seed = 1;
  std::string start;  // a UTC midnight; empty: the UTC midnight D days before now
  // The plan the accounts are on: the period is checked against it (a warning when a
  // cycle's credits at the simulated rate do not fit it, or no plan of the catalog).
  std::string plan;
  // Each account opens with an "account" line naming --plan (not an event of API.md: the
  // server's import refuses it), only when asked.
  bool account_lines = false;
  std::string plans = kPlansPathDefault;
  std::string out = "-";
  std::string truth;
  std::string rate_card = kRateCardPathDefault;
  ConfigGiven given;
  // The summary on standard error as one JSON object instead of a sentence (the events are
  // NDJSON already).
  bool json = false;
};

struct ReplayArgs {
  std::string file;
  std::vector<std::string> policies;
  bool json = false;
  std::string rate_card = kRateCardPathDefault;
  std::string plans = kPlansPathDefault;
  ConfigGiven given;
  std::string plan;  // rate-limit: take the limits of this plan
  std::int64_t ttl_days = 7;
  std::vector<std::string> hit_rates;  // "0.3" or "SITE=0.3"
  std::int64_t per_minute = 0;         // 0: the plan's, else the default
  std::int64_t burst = 0;
};

struct AuditArgs {
  std::string file;
  std::string format = "md";
  bool json = false;
  std::string plan;
  std::string plans = kPlansPathDefault;
  std::string rate_card = kRateCardPathDefault;
  ConfigGiven given;
  std::string account;  // only this account ("" every account in the file)
  // The pool audited, as the route's `pool`: "" the first pool of --plan's plan, or every
  // pool without --plan.
  std::string pool;
  std::string out = "-";
  std::string from;  // RFC 3339: only events at or after it
  std::string to;    // RFC 3339: only events before it
  // "Per cycle" figures are scaled to cycles of this many days.
  std::int64_t cycle_days = 30;
  bool online = false;  // `file` names an account on the server (online.h)
};

int run_simulate(const SimulateArgs& args);
int run_replay(const ReplayArgs& args);
int run_audit(const AuditArgs& args);

struct OfflineCommands {
  SimulateArgs simulate;
  ReplayArgs replay;
  AuditArgs audit;
  CLI::App* simulate_cmd = nullptr;
  CLI::App* replay_cmd = nullptr;
  CLI::App* audit_cmd = nullptr;
};

// Adds the subcommands simulate, replay and audit to `app`; `commands` must outlive it.
void add_offline_commands(CLI::App& app, OfflineCommands& commands);
// After app.parse(): the exit code of the offline subcommand that was given, or nullopt
// when another subcommand was chosen.
std::optional<int> run_offline_command(const OfflineCommands& commands);

}  // namespace credit::cli
