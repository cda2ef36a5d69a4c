// tests/server/fork_server_test.cc
// Tests of src/server/fork_server.h: a worker runs each request and its exit status and
// report come back; the helper holds none of the server's descriptors; a worker in flight
// is killed when the server cancels it or lets the helper go; the helper and its workers
// run at background priority.
// Owns: these tests. Does not: test what the engine's workers do (engine_snapshot_test.cc).
#include "server/fork_server.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "base/thread_priority.h"

namespace credit::server {
namespace {

constexpr auto kGoneWithin = std::chrono::seconds(10);

// A worker that answers "echo:REQUEST" and exits with the request's length; "sleep" sleeps
// a minute first; "nice" reports its niceness.
int work(std::string_view request, int report_fd) {
  std::string report = "echo:" + std::string(request);
  if (request == "sleep") std::this_thread::sleep_for(std::chrono::seconds(60));
  if (request == "nice") report = std::to_string(::getpriority(PRIO_PROCESS, 0));
  if (::write(report_fd, report.data(), report.size()) < 0) return 99;
  return static_cast<int>(request.size());
}

bool gone_within(pid_t pid, std::chrono::seconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(ForkServer, EachRequestRunsInAWorkerWhoseStatusAndReportComeBack) {
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok()) << server.error().message;
  for (const std::string& request :
       std::vector<std::string>{"a", "hello", std::string(5000, 'x')}) {
    auto pid = (*server)->begin(request);
    ASSERT_TRUE(pid.ok()) << pid.error().message;
    EXPECT_NE(*pid, (*server)->helper_pid());
    auto outcome = (*server)->wait();
    ASSERT_TRUE(outcome.ok()) << outcome.error().message;
    ASSERT_TRUE(WIFEXITED(outcome->wait_status));
    EXPECT_EQ(WEXITSTATUS(outcome->wait_status), static_cast<int>(request.size() & 0xff));
    // A report is at most kForkReportBytesMax: the long one is cut there.
    const std::string want = ("echo:" + request).substr(0, kForkReportBytesMax);
    EXPECT_EQ(outcome->report, want);
  }
}

TEST(ForkServer, TheHelperAndItsWorkersRunAtBackgroundPriority) {
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->begin("nice").ok());
  auto outcome = (*server)->wait();
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(outcome->report, std::to_string(kBackgroundNice));
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>((*server)->helper_pid())),
            kBackgroundNice);
  EXPECT_EQ(::getpriority(PRIO_PROCESS, 0), 0);  // not this process
}

TEST(ForkServer, TheHelperHoldsNoneOfTheServersDescriptors) {
  // A pipe opened before the helper: once this process closes its write end, the read end
  // sees the end of file only if the helper closed its copy (a listening socket or the
  // data dir's lock kept open by it would outlive the server the same way).
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE((*server)->begin("a").ok());  // the helper has run past its start
  ASSERT_TRUE((*server)->wait().ok());
  ::close(p[1]);
  char c = 0;
  EXPECT_EQ(::read(p[0], &c, 1), 0);
  ::close(p[0]);
}

TEST(ForkServer, LettingTheHelperGoKillsTheWorkerInFlight) {
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok());
  auto pid = (*server)->begin("sleep");
  ASSERT_TRUE(pid.ok());
  const pid_t helper = (*server)->helper_pid();
  server->reset();  // closes the socket and reaps the helper
  EXPECT_TRUE(gone_within(*pid, kGoneWithin)) << "the worker outlived its helper";
  EXPECT_TRUE(gone_within(helper, kGoneWithin));
}

TEST(ForkServer, ACancelKillsTheWorkerInFlightAndTheHelperGoesOn) {
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok());
  (*server)->cancel();  // none in flight: ignored
  auto pid = (*server)->begin("sleep");
  ASSERT_TRUE(pid.ok());
  (*server)->cancel();
  auto outcome = (*server)->wait();
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_TRUE(WIFSIGNALED(outcome->wait_status) && WTERMSIG(outcome->wait_status) == SIGKILL);
  EXPECT_TRUE(outcome->report.empty());
  EXPECT_TRUE(gone_within(*pid, kGoneWithin));
  // The next request is served as usual.
  ASSERT_TRUE((*server)->begin("next").ok());
  auto next = (*server)->wait();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->report, "echo:next");
}

TEST(ForkServer, AHelperThatDiedIsAnErrorNotAWait) {
  auto server = ForkServer::start(work);
  ASSERT_TRUE(server.ok());
  ASSERT_EQ(::kill((*server)->helper_pid(), SIGKILL), 0);
  auto pid = (*server)->begin("a");
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.error().message.find("is gone"), std::string::npos) << pid.error().message;
}

}  // namespace
}  // namespace credit::server
