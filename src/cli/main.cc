// src/cli/main.cc
// creditctl: the command-line client. Offline subcommands (simulate, replay, audit) run
// on event files (cli/offline.h); online subcommands talk to a creditd server
// (cli/online.h, which lists the exit codes).
// Owns: the top-level CLI11 app, the mapping of parse errors to exit code 2, and --json /
// --format given before or after any subcommand.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/offline.h"
#include "cli/online.h"

namespace {

// The first option given an empty value ("--pool ''": an unset shell variable) in `app`
// and the subcommands it parsed; nullptr when none. No flag reads an empty value as
// meaning something: refused, where skipping it would send the default in its place.
const CLI::Option* empty_value_option(const CLI::App& app) {
  for (const CLI::Option* o : app.get_options()) {
    for (const std::string& value : o->results()) {
      if (value.empty() && o->get_expected_min() > 0) return o;
    }
  }
  for (const CLI::App* sub : app.get_subcommands()) {
    if (const CLI::Option* o = empty_value_option(*sub)) return o;
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"creditctl: credit metering client and offline analytics"};
  app.require_subcommand(1);
  // Options of the top level (--url, --key, --json, ...) may follow any subcommand.
  app.fallthrough();
  credit::cli::OfflineCommands offline;
  credit::cli::add_offline_commands(app, offline);
  credit::cli::OnlineCommands online;
  credit::cli::add_online_commands(app, online);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return credit::cli::kExitUsage;
  }
  if (const CLI::Option* o = empty_value_option(app)) {
    std::cerr << "creditctl: " << o->get_name()
              << ": an empty value (leave the flag out for its default)\n";
    return credit::cli::kExitUsage;
  }
  // --json is --format json on every command, wherever it is given (DESIGN.md section 3).
  credit::cli::Connection& conn = online.conn;
  const bool audit = offline.audit_cmd->parsed();
  if (conn.format == "json") conn.json = true;
  if (conn.json) {
    offline.audit.json = true;
    offline.replay.json = true;
    offline.simulate.json = true;
  }
  if (conn.format == "md" || conn.format == "html") {
    if (!audit) {
      std::cerr << "creditctl: --format " << conn.format
                << " is for audit only (other commands: table or json)\n";
      return credit::cli::kExitUsage;
    }
    if (offline.audit_cmd->get_option("--format")->count() == 0) offline.audit.format = conn.format;
  }
  if (audit && conn.format == "table" && offline.audit_cmd->get_option("--format")->count() == 0) {
    std::cerr << "creditctl: audit --format is json, md or html\n";
    return credit::cli::kExitUsage;
  }
  if (audit && credit::cli::audit_is_online(offline.audit)) {
    return credit::cli::run_online_audit(online.conn, offline.audit);
  }
  if (auto code = credit::cli::run_offline_command(offline)) return *code;
  if (auto code = credit::cli::run_online_command(online)) return *code;
  std::cerr << "creditctl: no such subcommand\n";
  return credit::cli::kExitUsage;
}
