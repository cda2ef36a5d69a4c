// src/cli/main.cc
// creditctl: the command-line client. Offline subcommands (simulate, replay, audit) run
// on event files (cli/offline.h); online subcommands talk to a creditd server
// (cli/online.h, which lists the exit codes).
// Owns: the top-level CLI11 app and the mapping of parse errors to exit code 2.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/offline.h"
#include "cli/online.h"

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
  if (offline.audit_cmd->parsed() && credit::cli::audit_is_online(offline.audit)) {
    return credit::cli::run_online_audit(online.conn, offline.audit);
  }
  if (auto code = credit::cli::run_offline_command(offline)) return *code;
  if (auto code = credit::cli::run_online_command(online)) return *code;
  std::cerr << "creditctl: no such subcommand\n";
  return credit::cli::kExitUsage;
}
