// src/server/replay_storer.h
// Keeps the ledger's idempotency table and stored replies on a thread of their own while
// a replay applies the command log (Ledger::defer_stores): the replay thread defers each
// record's stores into a slot, hands the slot over, and this thread applies it, in order,
// through a ReplayPipe.
// Owns: the thread and the slots. Does not: decide what is stored (ledger.cc).
#pragma once

#include <thread>

#include "base/status.h"
#include "ledger/deferred_stores.h"
#include "ledger/ledger.h"
#include "server/replay_pipe.h"

namespace credit::server {

class ReplayStorer {
 public:
  // Starts the thread and defers the ledger's stores into the first slot.
  explicit ReplayStorer(ledger::Ledger& ledger);
  ~ReplayStorer() { (void)finish(); }
  ReplayStorer(const ReplayStorer&) = delete;
  ReplayStorer& operator=(const ReplayStorer&) = delete;

  // Hands the stores deferred so far to the thread and defers into the next slot; false
  // once the thread stopped at a failed store (finish() says why).
  bool hand_over();
  // Hands over the rest and waits for the thread; the ledger stores on the calling thread
  // again. The first failed store's error, if any (then the ledger's state is not to be
  // used). Once; later calls return ok.
  Status finish();

 private:
  ledger::Ledger& ledger_;
  bool running_ = true;  // until finish()
  ReplayPipe<ledger::DeferredStores> slots_;
  ledger::DeferredStores* filling_ = nullptr;  // the slot the ledger defers into
  Status stored_ = ok_status();                // the thread's, read after it is joined
  std::thread thread_;
};

}  // namespace credit::server
