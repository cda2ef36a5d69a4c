// src/analytics/live.h
// The live analytics of a running creditd: the rollups fed by the engine's event sink,
// the alert book (rules, fired alerts, outbox), and the accounts whose alerts are due
// for evaluation.
// Threads: the sink runs on the ledger thread and only does O(1) map updates per event
// under `mu` (no I/O, no evaluation); it marks the accounts it touched, and the server
// evaluates their alerts in a read job of the engine (one outstanding at a time), so an
// alert is judged on the state of the batch that caused it. Imports add to the rollups
// from their own thread, reads take `mu` for the time of one query.
// Owns: that wiring of state. Does not: read the ledger or speak HTTP (server/).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "analytics/alerts.h"
#include "analytics/rollup.h"
#include "base/status.h"
#include "ledger/event.h"

namespace credit::analytics {

class Analytics {
 public:
  // The alert files live in `dir` (DATA/analytics).
  static Result<std::unique_ptr<Analytics>> open(const std::string& dir);

  // The engine's sink: adds live events; returns true when the caller should schedule
  // an alert evaluation (accounts became due and none is scheduled yet).
  bool on_events(const std::vector<ledger::Event>& events);
  // The accounts due for evaluation, each with the instant of its latest live event;
  // clears the list and the "scheduled" mark.
  std::unordered_map<std::string, std::int64_t> take_due();
  // The evaluation could not be scheduled (the engine's queue was full): the next batch
  // of events schedules it again, with these accounts still due.
  void unschedule();

  // Imported events (imported = true), in time order.
  void add_imported(const std::vector<ledger::Event>& events);

  std::mutex& mu() { return mu_; }
  // Guarded by mu().
  Rollups& rollups() { return rollups_; }
  // Has its own lock.
  AlertBook& alerts() { return *alerts_; }

 private:
  std::mutex mu_;
  Rollups rollups_;
  std::unique_ptr<AlertBook> alerts_;
  std::unordered_map<std::string, std::int64_t> due_;
  bool scheduled_ = false;
};

}  // namespace credit::analytics
