// src/server/replay_storer.cc
// The storing thread and the hand-over of deferred stores (replay_storer.h).
#include "server/replay_storer.h"

#include <utility>

#include "base/thread_priority.h"

namespace credit::server {

ReplayStorer::ReplayStorer(ledger::Ledger& ledger) : ledger_(ledger) {
  thread_ = std::thread([this] {
    // Below the replaying thread, which sets a start's pace (engine.cc, replay_log).
    run_in_background();
    while (ledger::DeferredStores* s = slots_.next()) {
      if (stored_.ok()) stored_ = ledger_.apply_deferred_stores(*s);
      if (!stored_.ok()) slots_.stop();  // the next hand-over fails
      slots_.release();
    }
  });
  (void)hand_over();
}

bool ReplayStorer::hand_over() {
  if (!running_) return true;
  if (filling_ != nullptr) slots_.publish();
  filling_ = slots_.acquire();
  if (filling_ != nullptr) filling_->clear();
  ledger_.defer_stores(filling_);
  return filling_ != nullptr;
}

Status ReplayStorer::finish() {
  if (!running_) return ok_status();
  running_ = false;
  if (filling_ != nullptr) slots_.publish();
  filling_ = nullptr;
  ledger_.defer_stores(nullptr);
  slots_.close();
  thread_.join();  // from here on the calling thread alone touches the table and replies
  return std::move(stored_);
}

}  // namespace credit::server
