// tests/store/crash_child.cc
// store_crash_child DIR: the process crash_test.cc kills. It recovers the log in DIR, then
// appends consecutive numbers forever through group commit and prints each number to
// stdout only after its group is durable (an acknowledgement).
// Owns: the child side of the crash test. Exit codes: 2 usage, 3 recovery failed, 4 the
// recovered numbers are not contiguous, 5 a commit failed.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "store/group_commit.h"
#include "store/wal.h"

namespace {

using credit::ok_status;
using credit::Status;
using namespace credit::store;

// Small segments so that the crashes land on rotations and preallocations too.
constexpr std::uint64_t kChildSegmentBytes = 64 << 10;
constexpr std::size_t kChildBatchJobsMax = 512;
constexpr int kProducers = 2;

struct Job {
  std::uint64_t number = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: store_crash_child DIR\n");
    return 2;
  }
  WalOptions options;
  options.segment_bytes = kChildSegmentBytes;
  std::uint64_t next = 0;
  bool contiguous = true;
  auto wal = Wal::open(argv[1], options, [&](std::uint64_t, std::string_view record) {
    for (std::size_t i = 0; i + sizeof(std::uint64_t) <= record.size();
         i += sizeof(std::uint64_t)) {
      std::uint64_t number;
      std::memcpy(&number, record.data() + i, sizeof(number));
      contiguous = contiguous && number == next;
      next = number + 1;
    }
    return ok_status();
  });
  if (!wal) {
    std::fprintf(stderr, "store_crash_child: %s\n", wal.error().message.c_str());
    return 3;
  }
  if (!contiguous) return 4;

  GroupCommitOptions commit_options;
  commit_options.batch_jobs_max = kChildBatchJobsMax;
  commit_options.batch_bytes_max = kChildBatchJobsMax * sizeof(std::uint64_t);
  commit_options.queue_jobs_max = 4 * kChildBatchJobsMax;
  GroupCommitter<Job> committer(
      **wal, commit_options,
      [&](std::vector<Job>& jobs, std::string& record) {
        for (Job& job : jobs) {
          job.number = next++;
          record.append(reinterpret_cast<const char*>(&job.number), sizeof(job.number));
        }
      },
      [&](Job& job, const Status& durable) {
        if (!durable) _exit(5);
        const std::string line = std::to_string(job.number) + "\n";
        // One write per line: a pipe write of at most PIPE_BUF bytes is never split.
        if (::write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          _exit(5);
        }
      });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&] {
      while (true) {
        if (!committer.submit(Job{}, sizeof(std::uint64_t))) {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    });
  }
  for (auto& producer : producers) producer.join();
  return 0;
}
