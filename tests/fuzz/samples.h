// tests/fuzz/samples.h
// Valid material for the fuzz targets' seeds: a short ledger history (accounts on two
// plans, charges priced by usage and by amount with metadata, a cache hit, holds captured,
// voided and expired, a refund, grants, a plan change, a closed account), kept as the
// commands run, the events they made and the ledger they leave.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ledger/command.h"
#include "ledger/event.h"
#include "ledger/ledger.h"

namespace credit::fuzz {

struct SampleRun {
  std::vector<ledger::Command> commands;   // as applied (ids filled in)
  std::vector<std::int64_t> batch_now_ms;  // each command's batch instant
  std::vector<ledger::Event> events;
  std::unique_ptr<ledger::Ledger> ledger;
};

// Runs the history once per process and returns it.
const SampleRun& sample_run();

// A fresh, empty ledger with the shipped catalog (what a snapshot is decoded into).
std::unique_ptr<ledger::Ledger> fresh_ledger();

}  // namespace credit::fuzz
