// src/store/group_commit.h
// Group commit: many producers hand jobs to one committer thread, which applies everything
// waiting as one batch, logs it as one WAL record, fdatasyncs once and only then completes
// each job.
// Owns: the bounded queue (full: kOverloaded at once, never blocking a producer), the
// committer thread, the order apply -> append -> sync -> complete, and stopping for good
// after a storage failure. Does not: know what a job is (the server and the ledger supply
// apply and complete), or read the log back (Wal::open does).
//
// While a GroupCommitter runs it is the only user of its Wal.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/assert.h"
#include "base/status.h"
#include "store/wal.h"

namespace credit::store {

struct GroupCommitOptions {
  // Jobs waiting beyond this are refused with kOverloaded.
  std::size_t queue_jobs_max = 65536;
  // One group holds at most this many jobs...
  std::size_t batch_jobs_max = 4096;
  // ...and at most this many log bytes, summed over the jobs' log_bytes_max; it is also
  // the largest record apply may produce. Must not exceed Wal::payload_bytes_max().
  std::size_t batch_bytes_max = 4 << 20;
};

// kInvalidRequest naming the option that is out of range for a log whose records hold
// at most payload_bytes_max bytes.
Status check_group_commit_options(const GroupCommitOptions& options,
                                  std::uint64_t payload_bytes_max);

template <typename Job>
class GroupCommitter {
 public:
  // Applies a group in memory and appends the bytes to log to `record` (cleared before the
  // call; left empty when nothing is to be logged). At most the sum of the jobs'
  // log_bytes_max bytes. Runs on the committer thread.
  using ApplyFn = std::function<void(std::vector<Job>& jobs, std::string& record)>;
  // Called once per job after its group is durable (ok), or with kStorageFailed when it is
  // not (either refused before apply, or outcome unknown after a write or sync failure),
  // or kShuttingDown. Runs on the committer thread, in submission order.
  using CompleteFn = std::function<void(Job& job, const Status& durable)>;

  // Starts the committer thread. `options` must pass check_group_commit_options.
  GroupCommitter(Wal& wal, const GroupCommitOptions& options, ApplyFn apply, CompleteFn complete)
      : wal_(wal), options_(options), apply_(std::move(apply)), complete_(std::move(complete)) {
    CREDIT_ASSERT(check_group_commit_options(options_, wal_.payload_bytes_max()).ok());
    jobs_.reserve(options_.batch_jobs_max);
    thread_ = std::thread([this] { run(); });
  }
  // Commits what is queued, then stops.
  ~GroupCommitter() { stop(); }
  GroupCommitter(const GroupCommitter&) = delete;
  GroupCommitter& operator=(const GroupCommitter&) = delete;

  // Queues a job that adds at most log_bytes_max bytes to its group's record. Never blocks:
  // kOverloaded when the queue is full, kShuttingDown after stop(), kInvalidRequest when
  // log_bytes_max exceeds batch_bytes_max.
  Status submit(Job job, std::size_t log_bytes_max = 0) {
    if (log_bytes_max > options_.batch_bytes_max) {
      return Error(ErrorCode::kInvalidRequest, "job of " + std::to_string(log_bytes_max) +
                                                   " log bytes exceeds batch_bytes_max " +
                                                   std::to_string(options_.batch_bytes_max));
    }
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return Error(ErrorCode::kShuttingDown, "group commit is stopping");
      if (queue_.size() >= options_.queue_jobs_max) {
        return Error(ErrorCode::kOverloaded, "commit queue holds queue_jobs_max = " +
                                                 std::to_string(options_.queue_jobs_max) + " jobs");
      }
      queue_.push_back({std::move(job), log_bytes_max});
    }
    wake_.notify_one();
    return ok_status();
  }

  // Commits every job already queued, refuses later ones, joins the committer thread.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  // True after a write or sync failure: every later job completes with kStorageFailed.
  bool failed() const { return failed_.load(); }
  std::uint64_t groups_committed() const { return groups_committed_.load(); }
  std::uint64_t jobs_committed() const { return jobs_committed_.load(); }

 private:
  struct Pending {
    Job job;
    std::size_t log_bytes_max = 0;
  };

  void run() {
    while (true) {
      std::size_t group_bytes = 0;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
        while (!queue_.empty() && jobs_.size() < options_.batch_jobs_max &&
               group_bytes + queue_.front().log_bytes_max <= options_.batch_bytes_max) {
          group_bytes += queue_.front().log_bytes_max;
          jobs_.push_back(std::move(queue_.front().job));
          queue_.pop_front();
        }
      }
      const Status durable = commit(group_bytes);
      for (Job& job : jobs_) complete_(job, durable);
      jobs_.clear();
    }
  }

  Status commit(std::size_t group_bytes) {
    if (failure_) return *failure_;
    // Room first, so that a next segment that cannot be preallocated refuses the group
    // before anything is applied.
    Status room = wal_.reserve(group_bytes);
    if (!room) return stop_if_wal_failed(std::move(room));
    record_.clear();
    apply_(jobs_, record_);
    // Once applied, the state in memory is ahead of the log: any failure from here on
    // leaves outcomes unknown and stops the committer for good.
    if (!record_.empty()) {
      auto lsn = wal_.append(record_);
      if (!lsn) return fail(lsn.error());
    }
    Status synced = wal_.sync();
    if (!synced) return fail(synced.error());
    groups_committed_.fetch_add(1);
    jobs_committed_.fetch_add(jobs_.size());
    return ok_status();
  }

  Status stop_if_wal_failed(Status status) {
    if (wal_.failed()) return fail(status.error());
    return status;
  }

  Status fail(Error error) {
    if (error.code != ErrorCode::kStorageFailed) {
      error = Error(ErrorCode::kStorageFailed, "outcome unknown: " + error.message);
    }
    failure_ = error;
    failed_.store(true);
    return error;
  }

  Wal& wal_;
  const GroupCommitOptions options_;
  const ApplyFn apply_;
  const CompleteFn complete_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;  // guarded by mutex_
  bool stopping_ = false;      // guarded by mutex_

  // Committer thread only.
  std::vector<Job> jobs_;
  std::string record_;
  std::optional<Error> failure_;

  std::atomic<bool> failed_{false};
  std::atomic<std::uint64_t> groups_committed_{0};
  std::atomic<std::uint64_t> jobs_committed_{0};
  std::thread thread_;
};

}  // namespace credit::store
