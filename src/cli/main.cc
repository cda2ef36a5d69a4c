// src/cli/main.cc
// creditctl: the command-line client. Offline subcommands (simulate, replay, audit) run
// on event files (cli/offline.h); online subcommands talk to a creditd server.
// Owns: the top-level CLI11 app and the mapping of parse errors to exit code 2.
#include <CLI/CLI.hpp>
#include <iostream>

#include "cli/offline.h"

int main(int argc, char** argv) {
  CLI::App app{"creditctl: credit metering client and offline analytics"};
  app.require_subcommand(1);
  credit::cli::OfflineCommands offline;
  credit::cli::add_offline_commands(app, offline);
  // Online subcommands (accounts, charges, usage, ... against a server) register here,
  // beside the offline ones, and are dispatched after them below.
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
  if (auto code = credit::cli::run_offline_command(offline)) return *code;
  std::cerr << "creditctl: no such subcommand\n";
  return credit::cli::kExitUsage;
}
