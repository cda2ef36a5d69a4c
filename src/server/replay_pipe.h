// src/server/replay_pipe.h
// Hands decoded command-log records from the thread that reads and decodes the log to the
// thread that replays them (Engine::open), through a fixed ring of reused slots, so that
// decoding record n + 1 overlaps applying record n. Records are applied in log order.
// Owns: the slots and the handoff. Does not: decode or apply (engine.cc).
#pragma once

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "base/assert.h"

namespace credit::server {

// Slots in flight between the two threads: enough to keep both busy, few enough that
// reused records (a batch is up to tens of thousands of commands) stay in the caches.
constexpr std::size_t kReplayPipeSlots = 4;

template <typename Record>
class ReplayPipe {
 public:
  // Producer: the slot to fill next (its last contents are still there, for reuse), or
  // nullptr once the consumer stopped. Waits while every slot is in flight.
  Record* acquire() {
    std::unique_lock lock(mu_);
    room_.wait(lock, [&] { return stopped_ || produced_ - consumed_ < kReplayPipeSlots; });
    if (stopped_) return nullptr;
    return &slots_[produced_ % kReplayPipeSlots];
  }
  // The slot from acquire() is filled.
  void publish() {
    change(ready_, [&] {
      CREDIT_ASSERT(produced_ - consumed_ < kReplayPipeSlots);
      ++produced_;
    });
  }
  // No more records will be published.
  void close() {
    change(ready_, [&] { closed_ = true; });
  }

  // Consumer: the next record in order, or nullptr once closed and every record was taken.
  Record* next() {
    std::unique_lock lock(mu_);
    ready_.wait(lock, [&] { return closed_ || consumed_ < produced_; });
    if (consumed_ == produced_) return nullptr;
    return &slots_[consumed_ % kReplayPipeSlots];
  }
  // Done with the record from next(): its slot may be filled again.
  void release() {
    change(room_, [&] {
      CREDIT_ASSERT(consumed_ < produced_);
      ++consumed_;
    });
  }
  // The consumer gives up (an apply failed): acquire() returns nullptr from now on.
  void stop() {
    change(room_, [&] { stopped_ = true; });
  }

 private:
  // Changes the state under the lock, then wakes the other side's waiter.
  template <typename Change>
  void change(std::condition_variable& wake, Change&& f) {
    {
      std::lock_guard lock(mu_);
      f();
    }
    wake.notify_one();
  }

  std::mutex mu_;
  std::condition_variable room_;   // the producer waits for a free slot
  std::condition_variable ready_;  // the consumer waits for a record
  std::array<Record, kReplayPipeSlots> slots_{};
  std::uint64_t produced_ = 0;  // records published
  std::uint64_t consumed_ = 0;  // records released
  bool closed_ = false;
  bool stopped_ = false;
};

}  // namespace credit::server
