// tests/server/engine_lock_test.cc
// One engine per data dir: a second one is refused (kStorageFailed naming DATA/LOCK)
// while the first lives, and opens once it is gone; a SIGKILLed process leaves no lock.
// The key secret beside it: made once, kept, and a damaged one stops the start.
// Owns: these tests.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>

#include "engine_test_support.h"
#include "server/engine.h"
#include "time/clock.h"

namespace credit::server {
namespace {

using test_support::cards;
using test_support::catalog;
using TempDir = test_support::TempDir;

EngineOptions options(const std::string& dir) {
  return test_support::engine_options(dir);
}

TEST(EngineLock, ASecondEngineOnTheSameDirIsRefusedUntilTheFirstIsGone) {
  TempDir dir("engine_lock_test");
  ManualClock clock(1'772'000'000'000);
  {
    Engine first(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(first.open().ok());
    first.start();
    Engine second(clock, catalog(), cards(), options(dir.path()));
    Status s = second.open();
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::kStorageFailed);
    EXPECT_NE(s.error().message.find("in use by another creditd"), std::string::npos)
        << s.error().message;
    EXPECT_EQ(s.error().detail("file"), "\"" + dir.path() + "/LOCK\"");  // a JSON string
    first.stop();
  }
  Engine again(clock, catalog(), cards(), options(dir.path()));
  EXPECT_TRUE(again.open().ok());
}

TEST(EngineLock, AKilledProcessLeavesNoLock) {
  TempDir dir("engine_lock_test");
  ManualClock clock(1'772'000'000'000);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Engine e(clock, catalog(), cards(), options(dir.path()));
    const char ok = e.open().ok() ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    ::pause();
    ::_exit(0);
  }
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  {
    Engine blocked(clock, catalog(), cards(), options(dir.path()));
    EXPECT_FALSE(blocked.open().ok());
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(ready[0]);
  ::close(ready[1]);
  Engine after(clock, catalog(), cards(), options(dir.path()));
  EXPECT_TRUE(after.open().ok());
}

// DATA/key.secret (the secret created keys are derived from) is made at the first open,
// kept as it is by the next ones, and a damaged one stops the start, naming the file.
TEST(EngineKeySecret, MadeOnceKeptAndADamagedOneStopsTheStart) {
  TempDir dir("engine_lock_test");
  ManualClock clock(1'772'000'000'000);
  const std::string path = dir.path() + "/key.secret";
  auto read_all = [&] {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  {
    Engine e(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(e.open().ok());
  }
  const std::string first = read_all();
  EXPECT_EQ(first.size(), 65u);  // 32 bytes in hex and a newline
  {
    Engine e(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(e.open().ok());
  }
  EXPECT_EQ(read_all(), first);
  std::ofstream(path) << "not hex at all\n";
  Engine damaged(clock, catalog(), cards(), options(dir.path()));
  Status s = damaged.open();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kStorageFailed);
  EXPECT_NE(s.error().message.find("is damaged"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().detail("file"), "\"" + path + "\"");
}

}  // namespace
}  // namespace credit::server
