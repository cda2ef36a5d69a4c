// tests/store/group_commit_test.cc
// Tests of src/store/group_commit.h: every job completes exactly once after its group is
// durable, a full queue refuses at once, and a storage failure completes jobs with
// kStorageFailed and stops applying for good.
// Owns: group commit tests.
#include "store/group_commit.h"

#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <set>

#include "test_util.h"

namespace credit::store {
namespace {

using testing::open_wal;
using testing::TempDir;

struct Job {
  std::uint64_t id = 0;
};

void encode_ids(const std::vector<Job>& jobs, std::string& record) {
  for (const Job& job : jobs) record.append(reinterpret_cast<const char*>(&job.id), sizeof(job.id));
}

std::vector<std::uint64_t> decode_ids(std::string_view record) {
  std::vector<std::uint64_t> ids(record.size() / sizeof(std::uint64_t));
  std::memcpy(ids.data(), record.data(), ids.size() * sizeof(std::uint64_t));
  return ids;
}

TEST(GroupCommit, EveryJobCompletesOnceAfterItsGroupIsDurable) {
  TempDir dir;
  constexpr std::uint64_t kProducers = 4;
  constexpr std::uint64_t kJobsPerProducer = 3000;
  std::mutex mutex;
  std::multiset<std::uint64_t> completed;
  std::uint64_t applied = 0;
  {
    auto opened = open_wal(dir.path(), WalOptions{});
    ASSERT_TRUE(opened.ok());
    Wal& wal = *opened->wal;
    GroupCommitOptions options;
    options.batch_jobs_max = 256;
    options.queue_jobs_max = 1 << 20;
    GroupCommitter<Job> committer(
        wal, options,
        [&](std::vector<Job>& jobs, std::string& record) {
          applied += jobs.size();
          encode_ids(jobs, record);
        },
        [&](Job& job, const Status& durable) {
          ASSERT_TRUE(durable.ok());
          // Completed only once the log says so.
          ASSERT_GE(wal.durable_lsn(), 1u);
          std::lock_guard lock(mutex);
          completed.insert(job.id);
        });
    std::vector<std::thread> producers;
    for (std::uint64_t p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (std::uint64_t i = 0; i < kJobsPerProducer; ++i) {
          ASSERT_TRUE(committer.submit(Job{p * kJobsPerProducer + i}, sizeof(std::uint64_t)).ok());
        }
      });
    }
    for (auto& producer : producers) producer.join();
    committer.stop();
    EXPECT_EQ(committer.jobs_committed(), kProducers * kJobsPerProducer);
    EXPECT_LT(committer.groups_committed(), committer.jobs_committed());
    EXPECT_EQ(committer.submit(Job{}).error().code, ErrorCode::kShuttingDown);
    ASSERT_TRUE(wal.close().ok());
  }
  EXPECT_EQ(applied, kProducers * kJobsPerProducer);
  ASSERT_EQ(completed.size(), kProducers * kJobsPerProducer);
  EXPECT_EQ(std::set<std::uint64_t>(completed.begin(), completed.end()).size(), completed.size());

  auto reopened = open_wal(dir.path(), WalOptions{});
  ASSERT_TRUE(reopened.ok());
  std::multiset<std::uint64_t> logged;
  for (const auto& [lsn, record] : reopened->records) {
    EXPECT_LE(decode_ids(record).size(), 256u);
    for (std::uint64_t id : decode_ids(record)) logged.insert(id);
  }
  EXPECT_EQ(logged, completed);
}

TEST(GroupCommit, FullQueueIsRefusedAtOnceWithOverloaded) {
  TempDir dir;
  auto opened = open_wal(dir.path(), WalOptions{});
  ASSERT_TRUE(opened.ok());
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> completed{0};
  GroupCommitOptions options;
  options.queue_jobs_max = 4;
  GroupCommitter<Job> committer(
      *opened->wal, options,
      [&, first = true](std::vector<Job>& jobs, std::string& record) mutable {
        if (first) {
          first = false;
          entered.set_value();
          released.wait();  // the committer is busy: the queue fills up
        }
        encode_ids(jobs, record);
      },
      [&](Job&, const Status& durable) {
        EXPECT_TRUE(durable.ok());
        ++completed;
      });
  ASSERT_TRUE(committer.submit(Job{0}).ok());
  entered.get_future().wait();
  for (std::uint64_t i = 1; i <= 4; ++i) ASSERT_TRUE(committer.submit(Job{i}).ok());
  const Status refused = committer.submit(Job{5});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kOverloaded);
  release.set_value();
  committer.stop();
  EXPECT_EQ(completed.load(), 5);
}

TEST(GroupCommit, StorageFailureCompletesJobsWithStorageFailedAndStopsApplying) {
  TempDir dir;
  FaultInjectingFileOps ops;
  WalOptions wal_options;
  wal_options.file_ops = &ops;
  wal_options.preallocate_in_background = false;
  auto opened = open_wal(dir.path(), wal_options);
  ASSERT_TRUE(opened.ok());
  std::atomic<int> applied{0};
  std::mutex mutex;
  std::vector<std::pair<std::uint64_t, ErrorCode>> outcomes;
  GroupCommitter<Job> committer(
      *opened->wal, GroupCommitOptions{},
      [&](std::vector<Job>& jobs, std::string& record) {
        applied += static_cast<int>(jobs.size());
        encode_ids(jobs, record);
      },
      [&](Job& job, const Status& durable) {
        std::lock_guard lock(mutex);
        outcomes.emplace_back(job.id, durable.ok() ? ErrorCode::kOk : durable.error().code);
      });
  auto wait_for = [&](std::size_t n) {
    while (true) {
      {
        std::lock_guard lock(mutex);
        if (outcomes.size() >= n) return;
      }
      std::this_thread::yield();
    }
  };
  ASSERT_TRUE(committer.submit(Job{1}, 8).ok());
  wait_for(1);
  ops.syncs_before_failure = 0;
  ASSERT_TRUE(committer.submit(Job{2}, 8).ok());
  wait_for(2);
  ops.heal();
  ASSERT_TRUE(committer.submit(Job{3}, 8).ok());
  wait_for(3);
  committer.stop();
  EXPECT_TRUE(committer.failed());
  EXPECT_EQ(applied.load(), 2);  // job 3 was refused before apply
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0], std::make_pair(std::uint64_t{1}, ErrorCode::kOk));
  EXPECT_EQ(outcomes[1], std::make_pair(std::uint64_t{2}, ErrorCode::kStorageFailed));
  EXPECT_EQ(outcomes[2], std::make_pair(std::uint64_t{3}, ErrorCode::kStorageFailed));
}

TEST(GroupCommit, OptionsAreCheckedAgainstTheSegment) {
  GroupCommitOptions options;
  options.batch_bytes_max = 5000;
  EXPECT_EQ(check_group_commit_options(options, 4043).error().code, ErrorCode::kInvalidRequest);
  EXPECT_TRUE(check_group_commit_options(options, 5000).ok());
}

}  // namespace
}  // namespace credit::store
