// tests/store/crash_test.cc
// Kills store_crash_child with SIGKILL at random moments (during recovery, appends,
// rotations and preallocations) and checks after each kill that the log holds the numbers
// 0, 1, 2, ... without a gap or a repeat and that every number the child acknowledged is
// among them.
// Owns: the crash test. Does not: simulate power loss (SIGKILL keeps the page cache; the
// torn-write cases of a power loss are in wal_test.cc).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <random>

#include "store/wal.h"
#include "test_util.h"

namespace credit::store {
namespace {

constexpr int kKillPoints = 120;
// Kill moments are drawn uniformly from [0, kKillAfterMsMax] after the start.
constexpr int kKillAfterMsMax = 60;
constexpr std::uint64_t kChildSegmentBytes = 64 << 10;  // as in crash_child.cc

struct Child {
  pid_t pid = -1;
  int out = -1;
};

Child start_child(const std::string& dir) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(STORE_CRASH_CHILD_PATH, STORE_CRASH_CHILD_PATH, dir.c_str(), nullptr);
    _exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads what is available until the deadline (nothing: until end of file).
void drain(int fd, std::string& out, std::optional<std::chrono::steady_clock::time_point> until) {
  char buffer[1 << 16];
  while (true) {
    int timeout_ms = -1;
    if (until) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout_ms = static_cast<int>(left.count());
    }
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready == 0) return;
    if (ready < 0) continue;
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) return;
    out.append(buffer, static_cast<std::size_t>(n));
  }
}

TEST(Crash, EveryAcknowledgedRecordSurvivesSigkillExactlyOnce) {
  testing::TempDir dir;
  const auto seed =
      static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> kill_after_ms(0, kKillAfterMsMax);

  std::uint64_t acknowledged_max_plus_one = 0;  // over every run so far
  std::uint64_t acknowledged_total = 0;
  for (int kill = 0; kill < kKillPoints; ++kill) {
    Child child = start_child(dir.path());
    ASSERT_GT(child.pid, 0);
    std::string output;
    drain(child.out, output,
          std::chrono::steady_clock::now() + std::chrono::milliseconds(kill_after_ms(random)));
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child.pid, &status, 0), child.pid);
    drain(child.out, output, std::nullopt);
    ::close(child.out);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "kill " << kill << ": child exited by itself with status " << WEXITSTATUS(status);

    std::size_t line_start = 0;
    while (true) {
      const std::size_t end = output.find('\n', line_start);
      if (end == std::string::npos) break;
      const std::uint64_t number = std::stoull(output.substr(line_start, end - line_start));
      acknowledged_max_plus_one = std::max(acknowledged_max_plus_one, number + 1);
      ++acknowledged_total;
      line_start = end + 1;
    }
    ASSERT_EQ(line_start, output.size()) << "a line was split";

    WalOptions options;
    options.segment_bytes = kChildSegmentBytes;
    std::uint64_t next = 0;
    auto wal = Wal::open(dir.path(), options, [&](std::uint64_t, std::string_view record) {
      for (std::size_t i = 0; i < record.size(); i += sizeof(std::uint64_t)) {
        std::uint64_t number;
        std::memcpy(&number, record.data() + i, sizeof(number));
        if (number != next) {
          return Status(Error(ErrorCode::kStorageFailed, "expected " + std::to_string(next) +
                                                             ", logged " + std::to_string(number)));
        }
        ++next;
      }
      return ok_status();
    });
    ASSERT_TRUE(wal.ok()) << "kill " << kill << ": " << wal.error().message;
    ASSERT_GE(next, acknowledged_max_plus_one) << "kill " << kill << ": acknowledged records lost";
    // Half the time the checker closes cleanly, so the child also starts after a shutdown
    // record.
    if (kill % 2 == 0) {
      ASSERT_TRUE((*wal)->close().ok());
    }
  }
  RecordProperty("acknowledged", static_cast<int>(acknowledged_total));
  EXPECT_GT(acknowledged_total, 0u);
}

}  // namespace
}  // namespace credit::store
