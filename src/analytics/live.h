// src/analytics/live.h
// The live analytics of a running creditd: the rollups fed by the engine's event sink,
// the alert book (rules, fired alerts, outbox), and the accounts whose alerts are due
// for evaluation.
// Threads: the sink runs on the ledger thread and only copies the events the rollups
// read into a bounded FIFO (Fact, rollup.h) and marks the accounts they touched; a
// worker thread applies the FIFO to the rollups, so neither the rollups nor the alert
// rules hold up a batch's replies. The server takes each due account's balances in a
// read job of the engine (one outstanding at a time, so at most once per account per
// batch) and queues them behind the facts (queue_evaluation); the worker judges them
// on the rollups as of that point in the FIFO, which is the state of the batch that
// caused them, as when it ran on the ledger thread. An account is judged cheaply first
// (alert_keys(), no strings) and only built and recorded when a rule calls for an alert
// not yet fired. Reads and imports call sync() first: it applies whatever is still
// queued, so a read sees every event of the batches before it.
// Retention: when the event log deletes days (the engine's retention sink, on the ledger
// thread), on_days_deleted() queues them behind the facts already queued, and the worker
// drops them from the rollups at that point of the FIFO (Rollups::drop_days): from then on
// the rollups count what the log holds, as a restart would rebuild them.
// Bounds: at most kFactsQueuedMax facts wait; past that the sink applies them itself.
// The worker passes over the queue at most once per kWorkerLingerMs.
// Owns: that wiring of state. Does not: read the ledger or speak HTTP (server/).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "analytics/alerts.h"
#include "analytics/rollup.h"
#include "base/id_index.h"
#include "base/status.h"
#include "ledger/event.h"

namespace credit::analytics {

// Facts waiting for the worker (about 400 bytes each): beyond this the sink applies the
// queue itself rather than grow it (a burst of imports or recovery).
constexpr std::size_t kFactsQueuedMax = 1 << 16;
// Emptied fact vectors the worker hands back to the sink, so that a batch's facts land in
// memory already allocated (and paged in) instead of a fresh block of ~400 bytes a fact.
constexpr std::size_t kSpareFactVectorsMax = 4;
// The worker sleeps this long after each pass, so that it wakes at most about a
// thousand times a second however many batches the ledger applies.
constexpr std::int64_t kWorkerLingerMs = 1;
// At a new UTC day the burn window moves, so projected_exhaustion and burn_spike may hold
// for an account without any new event (DESIGN.md section 2): every account that had a
// live event (every account has alert rules, its own or the defaults) is judged again,
// at most this many per pass (a pass per engine tick, kSweepCheckMs).
constexpr std::size_t kNewDayAccountsPerPassMax = 4096;

// One pool of an account due for evaluation, as the ledger projects it at `now_ms`.
struct DuePool {
  std::string pool;
  std::int64_t used_mc = 0;
  std::int64_t allowance_mc = 0;
  std::int64_t extra_mc = 0;
  std::int64_t available_mc = 0;
  std::vector<UsedStep> steps;  // PoolStatus::steps
};

// The used-credit steps kept per account between two evaluations (the newest; a threshold
// crossed before them fires at the evaluation instant).
constexpr std::size_t kUsedStepsPerAccountMax = 4096;

// A step of one pool of an account (Analytics::Due).
struct PoolStep {
  std::string pool;
  UsedStep step;
};
struct DueAccount {
  std::string account_id;
  std::int64_t now_ms = 0;
  RuleParams rules;  // as they were at that point (a PUT of the rules is ordered too)
  std::int64_t cycle_start_ms = 0;
  std::int64_t cycle_end_ms = 0;
  std::vector<DuePool> pools;
};

class Analytics {
 public:
  // The alert files live in `dir` (DATA/analytics). Starts the worker.
  static Result<std::unique_ptr<Analytics>> open(const std::string& dir, bool repair = false);
  ~Analytics();  // stops the worker, then applies what is still queued

  // The engine's sink: queues live events; returns true when the caller should schedule
  // an alert evaluation (accounts became due and none is scheduled yet).
  bool on_events(const std::vector<ledger::Event>& events);
  // The accounts due for evaluation, each once, in the order they became due, with the
  // instant of its latest live event; clears the list and the "scheduled" mark.
  struct Due {
    std::string account_id;
    std::int64_t at_ms = 0;
    std::vector<PoolStep> steps;  // the live changes of used credits since the last take
  };
  std::vector<Due> take_due();
  // The evaluation could not be scheduled (the engine's queue was full): the next batch
  // of events schedules it again, with these accounts still due.
  void unschedule();
  // The engine's tick (ledger thread): at the first call of each UTC day of now_ms, every
  // account that had a live event becomes due at now_ms again, kNewDayAccountsPerPassMax
  // per call. True when some became due (then take_due() them).
  bool mark_new_day(std::int64_t now_ms);
  // The balances of the accounts take_due() returned: judged by the worker, in order.
  void queue_evaluation(std::vector<DueAccount>&& accounts);

  // The engine's retention sink (ledger thread): the event log deleted these UTC days (day
  // starts, sorted); the rollups forget them once the facts queued before are applied.
  void on_days_deleted(const std::vector<std::int64_t>& day_starts_ms);

  // Applies everything queued so far (facts and evaluations) before returning.
  void sync();
  // Whether fewer than half of kFactsQueuedMax facts wait: a feeder that can wait (the
  // engine's catch-up after a start) waits for this, so the sink never applies the queue
  // itself on its account.
  bool has_room();

  std::mutex& mu() { return mu_; }
  // Guarded by mu(); call sync() first to see the latest events.
  Rollups& rollups() { return rollups_; }
  // Has its own lock.
  AlertBook& alerts() { return *alerts_; }

 private:
  struct Item {
    std::vector<Fact> facts;
    std::vector<DueAccount> due;
    std::vector<std::int64_t> days_deleted;  // applied after the facts
  };
  struct Fired {
    std::string pool;
    AlertKey key;
  };
  Analytics() = default;
  void run_worker();
  // Takes the queue and applies it; the caller holds drain_mu_.
  void drain();
  void evaluate(const DueAccount& d);

  std::mutex mu_;  // rollups_
  Rollups rollups_;
  std::unique_ptr<AlertBook> alerts_;

  // The FIFO between the sink and the worker.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<Item> queue_;
  std::size_t queued_facts_ = 0;
  std::vector<std::vector<Fact>> spare_facts_;  // empty, with capacity
  bool stopping_ = false;
  std::thread worker_;

  // Whoever applies the queue holds this for the whole take-and-apply, so sync() returns
  // only after the worker's batch in hand is applied too. Guards memo_.
  std::mutex drain_mu_;
  // Alerts known to be fired, per account: the cheap check skips them.
  std::unordered_map<std::string, std::vector<Fired>> memo_;

  // Ledger thread only (the sink and the read job it schedules).
  struct Mark {
    std::int64_t due_at_ms = 0;  // the latest live event since take_due(), when due
    bool due = false;
    std::vector<PoolStep> steps;  // since take_due(), the newest kUsedStepsPerAccountMax
  };
  // Every account that had a live event, by number (mark_numbers_ finds it by id): one
  // lookup per event tells both whether it is the account's first and where its due
  // instant is.
  struct MarkedAccount {
    std::string account_id;
    Mark mark;
    // The end of the UTC day of the last listed event queued for the rollups: the first
    // listed event of each day goes to them (the account's first event, once the days
    // before are deleted, is the first of a later day).
    std::int64_t listed_until_ms = INT64_MIN;
  };
  // Adds the change of used credits `e` makes (if any) to the mark's steps.
  static void record_step(Mark& mark, const ledger::Event& e);
  std::vector<MarkedAccount> marks_;
  IdIndex mark_numbers_;
  // The due accounts' numbers in the order they became due (take_due() lists them in
  // that order).
  std::vector<std::uint32_t> due_order_;
  bool scheduled_ = false;
  // mark_new_day: the day being marked, the next account number and the end of them.
  std::int64_t new_day_start_ms_ = INT64_MIN;
  std::size_t new_day_next_ = 0;
  std::size_t new_day_end_ = 0;
};

}  // namespace credit::analytics
