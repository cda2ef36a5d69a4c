// tests/server/engine_snapshot_test.cc
// The engine's snapshots while charges continue: rebuilt from the log by a worker of the
// engine's helper process (the default), written by a forked child, or encoded on the
// ledger thread (the path taken when fork() fails). A restart after a clean stop or a
// SIGKILL has exactly the state of an engine that never took a snapshot, a clean stop
// waits for the child, and a SIGKILLed server leaves no child behind.
// Owns: these tests. Does not: test the snapshot file format (tests/store).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/thread_priority.h"
#include "engine_test_support.h"
#include "ledger/snapshot_codec.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/engine.h"
#include "store/snapshot.h"
#include "time/clock.h"

namespace credit::server {
namespace {

constexpr std::int64_t kStartMs = 1'772'000'000'000;  // 2026-02-25
constexpr std::size_t kAccounts = 20;
constexpr std::size_t kSubmits = 300;
// Submits are fast (fsync off) and snapshots slower (fsynced, on a shared disk): past
// kSubmits a run goes on, a submit per kPaceMs, until it has seen enough snapshots or
// for kRunLongest.
constexpr std::int64_t kPaceMs = 1;
constexpr auto kRunLongest = std::chrono::seconds(60);
constexpr std::size_t kChargesPerSubmit = 10;
// Each submit is a batch of its own at its own instant: kStartMs + i * kSubmitEveryMs.
constexpr std::int64_t kSubmitEveryMs = 1'000;
// About 600 bytes of log per submit: a snapshot is due every 7 submits or so.
constexpr std::uint64_t kSnapshotWalBytes = 4 << 10;
// Long enough for many submits to be answered while the child still writes.
constexpr std::int64_t kSlowSnapshotDelayMs = 100;
// Long enough for a submit and a stop to begin while the child still waits.
constexpr std::int64_t kStopDuringSnapshotDelayMs = 1'000;
// A child that outlives its server would still be sleeping long after the test's wait.
constexpr std::int64_t kStuckSnapshotDelayMs = 60'000;
constexpr auto kChildGoneWithin = std::chrono::seconds(10);
constexpr auto kChildStartsWithin = std::chrono::seconds(10);

using test_support::cards;
using test_support::catalog;
using TempDir = test_support::TempDir;

EngineOptions options(const std::string& dir, SnapshotMode mode, std::int64_t child_delay_ms = 0) {
  EngineOptions o = test_support::engine_options(dir);  // snapshots are fsynced all the same
  o.snapshot_wal_bytes = kSnapshotWalBytes;
  o.snapshot_mode = mode;
  o.snapshot_child_delay_ms = child_delay_ms;
  return o;
}

ledger::Hash128 hash_of(std::uint64_t v, std::uint8_t salt) {
  ledger::Hash128 h{};
  for (int i = 0; i < 8; ++i) h[i] = static_cast<std::uint8_t>(v >> (8 * i));
  h[8] = salt;
  return h;
}

// Submit 0 creates the accounts and an API key; every later one is keyed charges.
std::vector<Op> submit_ops(std::size_t i) {
  std::vector<Op> ops;
  if (i == 0) {
    for (std::size_t a = 0; a < kAccounts; ++a) {
      ledger::Command c;
      c.body = ledger::CreateAccount{"acct_" + std::to_string(a), "pro", std::nullopt};
      ops.emplace_back(std::move(c));
    }
    CreateKeyOp k;
    k.key = KeyInfo{"key_1", Role::kMeter, "acct_1", "ci", std::string(64, 'a'), kStartMs};
    ops.emplace_back(std::move(k));
    return ops;
  }
  for (std::size_t k = 0; k < kChargesPerSubmit; ++k) {
    const std::uint64_t n = i * kChargesPerSubmit + k;
    ledger::Command c;
    c.idem.has_key = true;
    c.idem.key = "charge-" + std::to_string(n);
    c.idem.scope_key_hash = hash_of(n, 1);
    c.idem.request_hash = hash_of(n, 2);
    ledger::Charge ch;
    ch.account_id = "acct_" + std::to_string(n % kAccounts);
    ch.user_id = "u" + std::to_string(n % 3);
    ch.kind = pricing::Kind::kBackendFunction;
    ch.pool = "credits";
    ch.amount = Millicredits::from_mc(static_cast<std::int64_t>(1 + n % 997));
    ch.metadata.file = "src/f" + std::to_string(n % 5) + ".tsx";
    c.body = std::move(ch);
    ops.emplace_back(std::move(c));
  }
  return ops;
}

// Runs submits [from, to), each alone at its instant and answered before the next;
// `after_each` runs after each answer. Returns every reply in order.
std::vector<ledger::Reply> run_submits(Engine& engine, ManualClock& clock, std::size_t from,
                                       std::size_t to,
                                       const std::function<void()>& after_each = nullptr) {
  std::vector<ledger::Reply> all;
  for (std::size_t i = from; i < to; ++i) {
    clock.set_ms(kStartMs + static_cast<std::int64_t>(i) * kSubmitEveryMs);
    std::promise<std::vector<ledger::Reply>> answered;
    auto replies = answered.get_future();
    while (!engine.submit(
        submit_ops(i), [&](std::vector<ledger::Reply>&& r) { answered.set_value(std::move(r)); })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    for (auto& r : replies.get()) all.push_back(std::move(r));
    if (after_each) after_each();
  }
  return all;
}

// The replies of a run, in order, and how many submits it made.
struct Submitted {
  std::vector<ledger::Reply> replies;
  std::size_t submits = 0;
};

// Runs submits from 0 until at least kSubmits are answered and `snapshots` (a counter of
// the engine's stats) reaches `snapshots_min`, or for kRunLongest.
Submitted run_until(Engine& engine, ManualClock& clock, const std::atomic<std::uint64_t>& snapshots,
                    std::uint64_t snapshots_min,
                    const std::function<void()>& after_each = nullptr) {
  Submitted run;
  const auto deadline = std::chrono::steady_clock::now() + kRunLongest;
  while (run.submits < kSubmits ||
         (snapshots.load() < snapshots_min && std::chrono::steady_clock::now() < deadline)) {
    for (auto& r : run_submits(engine, clock, run.submits, run.submits + 1, after_each)) {
      run.replies.push_back(std::move(r));
    }
    ++run.submits;
    if (run.submits >= kSubmits) std::this_thread::sleep_for(std::chrono::milliseconds(kPaceMs));
  }
  return run;
}

// What a restart must restore: the ledger (its snapshot encoding is canonical: equal
// states encode to equal bytes), the keys and the retained events.
struct State {
  std::string ledger_bytes;
  std::uint64_t events = 0;
  std::int64_t last_logged_ms = 0;
  std::vector<std::string> key_ids;
  bool operator==(const State&) const = default;
};

State state_of(Engine& engine) {
  State s = test_support::read_state(engine, [](EngineState& st) {
    State s;
    ledger::encode_ledger_snapshot(st.ledger, s.ledger_bytes);
    s.events = st.events.size();
    return s;
  });
  s.last_logged_ms = engine.last_logged_ms();
  for (const KeyInfo& k : engine.keys_of("acct_1")) s.key_ids.push_back(k.key_id);
  return s;
}

struct Reference {
  State state;
  std::vector<ledger::Reply> replies;
};

// What `run(engine, clock)` returns on an engine, in a data dir of its own, that takes no
// snapshot while it runs.
template <class Run>
auto without_snapshots(Run run) {
  TempDir dir;
  EngineOptions o = options(dir.path(), SnapshotMode::kInline);
  o.snapshot_wal_bytes = UINT64_MAX;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), o);
  EXPECT_TRUE(engine.open().ok());
  engine.start();
  auto result = run(engine, clock);
  engine.stop();
  EXPECT_EQ(engine.stats().snapshots.load(), 1u);  // the clean stop's only
  return result;
}

// The state and replies of submits [0, submits) on an engine that takes no snapshot
// while it runs.
Reference reference(std::size_t submits) {
  return without_snapshots([&](Engine& engine, ManualClock& clock) {
    Reference ref;
    ref.replies = run_submits(engine, clock, 0, submits);
    ref.state = state_of(engine);
    return ref;
  });
}

// Opens the data dir as a restart does and returns its state.
State restarted_state(const std::string& dir) {
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir, SnapshotMode::kInline));
  Status s = engine.open();
  EXPECT_TRUE(s.ok()) << s.error().message;
  if (!s.ok()) return {};
  engine.start();
  State state = state_of(engine);
  engine.stop();
  return state;
}

std::size_t snapshot_files(const std::string& dir) {
  std::size_t n = 0;
  if (!std::filesystem::exists(dir + "/snapshots")) return 0;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/snapshots")) {
    n += e.path().extension() == ".snap";
  }
  return n;
}

// A created key is derived from its data dir's secret (DATA/key.secret, engine.h), so
// two runs in two dirs show two keys for the same key id: compared without it.
std::string without_key(std::string body) {
  constexpr std::string_view kKey = "{\"key\":\"";
  if (body.rfind(kKey, 0) != 0) return body;
  const std::size_t end = body.find('"', kKey.size());
  return body.erase(kKey.size(), end - kKey.size());
}

void expect_same_replies(const std::vector<ledger::Reply>& got,
                         const std::vector<ledger::Reply>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].status, want[i].status) << i;
    EXPECT_EQ(without_key(got[i].body), without_key(want[i].body)) << i;
  }
}

// The run's replies, and the state a restart of `dir` finds, are those of an engine that
// took no snapshot.
void expect_as_without_snapshots(const Submitted& run, const std::string& dir) {
  const Reference ref = reference(run.submits);
  expect_same_replies(run.replies, ref.replies);
  EXPECT_EQ(restarted_state(dir), ref.state);
}

// What the server process tells the test before it is killed.
struct ServerReport {
  std::size_t submits = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t snapshots_forked = 0;
  std::uint64_t snapshots_replayed = 0;
  std::int64_t child_pid = 0;  // a snapshot child alive when the report was written
  int replies_failed = 0;
};

// Forks a server process that runs submits on `o` until it has taken `snapshots_min`
// snapshots (run_until), and with wait_for_child waits until a snapshot child is running;
// then it reports and is SIGKILLed. Its snapshot children are reparented to this process
// (a subreaper), which reaps them.
ServerReport run_server_then_sigkill(const EngineOptions& o, std::uint64_t snapshots_min,
                                     bool wait_for_child) {
  EXPECT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int report[2];
  EXPECT_EQ(::pipe(report), 0);
  const pid_t server = ::fork();
  if (server == 0) {
    // No gtest here: the outcome is the report (or its absence).
    ::close(report[0]);
    ManualClock clock(kStartMs);
    auto* engine = new Engine(clock, catalog(), cards(), o);  // never stopped: killed
    if (!engine->open().ok()) ::_exit(2);
    engine->start();
    ServerReport r;
    const Submitted run = run_until(*engine, clock, engine->stats().snapshots, snapshots_min);
    r.submits = run.submits;
    for (const auto& reply : run.replies) r.replies_failed += reply.status >= 500;
    const auto deadline = std::chrono::steady_clock::now() + kChildStartsWithin;
    while (wait_for_child && engine->stats().snapshot_child_pid.load() == 0 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    r.snapshots = engine->stats().snapshots.load();
    r.snapshots_forked = engine->stats().snapshots_forked.load();
    r.snapshots_replayed = engine->stats().snapshots_replayed.load();
    r.child_pid = engine->stats().snapshot_child_pid.load();
    if (::write(report[1], &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(report[1]);
  ServerReport r;
  const ssize_t n = ::read(report[0], &r, sizeof(r));
  ::close(report[0]);
  EXPECT_EQ(n, static_cast<ssize_t>(sizeof(r))) << "the server process died before its report";
  EXPECT_EQ(::kill(server, SIGKILL), 0);
  int status = 0;
  EXPECT_EQ(::waitpid(server, &status, 0), server);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  return r;
}

// How a snapshot child of a killed server ended, as this subreaper sees it.
struct ChildEnd {
  bool gone = false;          // no longer running
  std::optional<int> status;  // its wait status, when this process reaped it
};

// Waits up to `within` for `pid`, orphaned to this process, to end (then kills it).
ChildEnd wait_for_orphan(pid_t pid, std::chrono::seconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t got = ::waitpid(pid, &status, WNOHANG);
    if (got == pid) return ChildEnd{true, status};
    // Not our child (the server's waiter thread, woken by the same kill, reaped it before
    // it died; or a worker of the helper, whose child it is): ended once it no longer
    // exists.
    if (got < 0 && errno == ECHILD) {
      if (::kill(pid, 0) != 0 && errno == ESRCH) return ChildEnd{true, std::nullopt};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return ChildEnd{};
}

// Reaps what the killed server left to this subreaper (a finished child's zombie).
void reap_leftovers() {
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

// The snapshots taken in the background, by a replaying worker or a forked child.
const std::atomic<std::uint64_t>& background_snapshots(Engine& engine, SnapshotMode mode) {
  return mode == SnapshotMode::kReplay ? engine.stats().snapshots_replayed
                                       : engine.stats().snapshots_forked;
}

std::string mode_name(const ::testing::TestParamInfo<SnapshotMode>& info) {
  return info.param == SnapshotMode::kReplay ? "Replayed" : "Forked";
}

// Tests run with both background modes.
class EngineSnapshotInBackground : public ::testing::TestWithParam<SnapshotMode> {};

TEST_P(EngineSnapshotInBackground, WhileChargesContinueAndACleanRestartHasExactlyTheState) {
  const SnapshotMode mode = GetParam();
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path(), mode, kSlowSnapshotDelayMs));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  std::size_t answered_while_child_wrote = 0;
  const Submitted run = run_until(engine, clock, background_snapshots(engine, mode), 3, [&] {
    answered_while_child_wrote += engine.stats().snapshot_child_pid.load() != 0;
  });
  ASSERT_GE(background_snapshots(engine, mode).load(), 3u) << run.submits << " submits";
  const State before = state_of(engine);
  engine.stop();
  const EngineStats& stats = engine.stats();
  // Each snapshot the log triggered was taken in the background, and only in this mode.
  // A forked engine forks its clean stop's snapshot too; a replaying one encodes it on
  // the ledger thread (a worker would replay the log since the last one first).
  const std::uint64_t in_background = background_snapshots(engine, mode).load();
  EXPECT_EQ(stats.snapshots_forked.load() + stats.snapshots_replayed.load(), in_background);
  if (mode == SnapshotMode::kReplay) {
    EXPECT_GE(stats.snapshots.load(), in_background);
    EXPECT_LE(stats.snapshots.load(), in_background + 1);
  } else {
    EXPECT_EQ(stats.snapshots.load(), in_background);
  }
  // Charges went on while the children wrote (each waits 100 ms before it writes).
  EXPECT_GE(answered_while_child_wrote, 10u);
  EXPECT_GT(stats.snapshot_pause_ns_max.load(), 0u);
  EXPECT_GT(stats.snapshot_encode_ns_last.load(), 0u);
  EXPECT_EQ(stats.snapshot_child_pid.load(), 0);
  EXPECT_EQ(stats.snapshot_helper_pid.load(), 0) << "the helper outlived the stop";

  const Reference ref = reference(run.submits);
  expect_same_replies(run.replies, ref.replies);
  EXPECT_EQ(before, ref.state);
  EXPECT_EQ(restarted_state(dir.path()), ref.state);
}

// An engine opened and started in a data dir of its own, whose snapshot children each
// sleep kStopDuringSnapshotDelayMs before they write, submitted to one at a time until a
// child runs (or kSubmits).
class EngineWithASlowChild : public ::testing::TestWithParam<SnapshotMode> {
 protected:
  EngineWithASlowChild()
      : engine(clock, catalog(), cards(),
               options(dir.path(), GetParam(), kStopDuringSnapshotDelayMs)) {}
  void SetUp() override {
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    while (engine.stats().snapshot_child_pid.load() == 0 && submits < kSubmits) {
      run_submits(engine, clock, submits, submits + 1);
      ++submits;
    }
    // On a loaded machine the worker may start after the last submit (the helper that
    // forks it runs at a low priority): wait for it a while.
    for (int i = 0; i < 500 && engine.stats().snapshot_child_pid.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  TempDir dir;
  ManualClock clock{kStartMs};
  Engine engine;
  std::size_t submits = 0;
};

TEST_P(EngineWithASlowChild, ACleanStopWaitsForAForkedChildAndCancelsAWorker) {
  // A forked child: PR_SET_PDEATHSIG kills it when the ledger thread that forked it ends,
  // so the thread waits for it before it does. A replaying worker still rebuilding the
  // state is cancelled instead: the stop's own snapshot covers its log, and at 10 M
  // commands the worker may have half a minute left.
  const auto child = static_cast<pid_t>(engine.stats().snapshot_child_pid.load());
  ASSERT_NE(child, 0) << "no snapshot was started";
  // One more batch while the child writes, so the clean stop takes a snapshot of its own.
  run_submits(engine, clock, submits, submits + 1);
  ++submits;
  ASSERT_NE(engine.stats().snapshot_child_pid.load(), 0);
  engine.stop();
  EXPECT_EQ(engine.stats().snapshot_child_pid.load(), 0);
  if (GetParam() == SnapshotMode::kReplay) {
    // Only the stop's snapshot, encoded in place; the worker is gone, and was never
    // counted.
    EXPECT_EQ(engine.stats().snapshots.load(), 1u);
    EXPECT_EQ(engine.stats().snapshots_replayed.load(), 0u);
    EXPECT_EQ(snapshot_files(dir.path()), 1u);
    EXPECT_EQ(::kill(child, 0), -1) << "the cancelled worker still runs";
  } else {
    // The child's snapshot and the clean stop's, both forked, none failed (a child killed
    // with the ledger thread would leave one).
    EXPECT_EQ(engine.stats().snapshots.load(), 2u);
    EXPECT_EQ(engine.stats().snapshots_forked.load(), 2u);
    EXPECT_EQ(snapshot_files(dir.path()), 2u);
  }
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

TEST_P(EngineWithASlowChild, ASnapshotThatEndsAfterTheLastWriteIsFinishedWithoutAnother) {
  // Nothing is submitted after the child started: the ledger thread is woken by the
  // snapshot's end (not by the next batch) to count it and truncate the log.
  ASSERT_NE(engine.stats().snapshot_child_pid.load(), 0) << "no snapshot was started";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (engine.stats().snapshots.load() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(engine.stats().snapshots.load(), 1u);
  EXPECT_EQ(background_snapshots(engine, GetParam()).load(), 1u);
  engine.stop();
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

TEST(EngineSnapshot, AStopRightAfterACancelledWorkerStillWritesItsOwnSnapshot) {
  // Nothing is logged after the worker starts: the stop's snapshot is still due, since
  // the last one written (none here) does not cover the log.
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(),
                options(dir.path(), SnapshotMode::kReplay, kStopDuringSnapshotDelayMs));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  std::size_t submits = 0;
  // After each submit, a while for a worker it started to show (the snapshot thread
  // publishes its pid), so that no submit follows the one that started it.
  constexpr auto kWorkerShowsWithin = std::chrono::milliseconds(200);
  while (engine.stats().snapshot_child_pid.load() == 0 && submits < kSubmits) {
    run_submits(engine, clock, submits, submits + 1);
    ++submits;
    const auto until = std::chrono::steady_clock::now() + kWorkerShowsWithin;
    while (engine.stats().snapshot_child_pid.load() == 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ASSERT_NE(engine.stats().snapshot_child_pid.load(), 0) << "no snapshot was started";
  engine.stop();
  EXPECT_EQ(engine.stats().snapshots.load(), 1u);
  EXPECT_EQ(snapshot_files(dir.path()), 1u);
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

TEST_P(EngineWithASlowChild, TheSnapshotChildRunsBelowTheServersThreads) {
  // The child lowers itself (a forked one) or was forked by a helper that did (a
  // replaying one) to background priority, so that its work does not take a core from
  // the server's threads.
  const auto pid = static_cast<id_t>(engine.stats().snapshot_child_pid.load());
  ASSERT_NE(pid, 0u) << "no snapshot was started";
  // The child sleeps kStopDuringSnapshotDelayMs after its encode: long enough to look.
  int nice = 0;
  const auto deadline = std::chrono::steady_clock::now() + kChildStartsWithin;
  do {
    errno = 0;
    nice = ::getpriority(PRIO_PROCESS, pid);
    if (nice == kBackgroundNice) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < deadline && errno == 0);
  EXPECT_EQ(nice, kBackgroundNice);
  // The server's own (ledger) thread was not lowered with it.
  EXPECT_EQ(::getpriority(PRIO_PROCESS, 0), 0);
  engine.stop();
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

// The parent process of `pid`, from /proc (0 when it cannot be read).
pid_t parent_of(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  int ppid = 0;
  // pid (comm) state ppid: comm has no spaces here (a fork keeps the test's name).
  const int got = std::fscanf(f, "%*d %*s %*c %d", &ppid);
  std::fclose(f);
  return got == 1 ? ppid : 0;
}

TEST_P(EngineWithASlowChild, OnlyAForkedChildIsForkedFromTheServer) {
  // The point of the replay mode: the server never forks itself once its state is large,
  // so no fork copies its page tables. Its worker is a child of the helper (forked at
  // open(), before the state was loaded), and the helper a child of the server.
  const auto pid = static_cast<pid_t>(engine.stats().snapshot_child_pid.load());
  ASSERT_NE(pid, 0) << "no snapshot was started";
  const auto helper = static_cast<pid_t>(engine.stats().snapshot_helper_pid.load());
  if (GetParam() == SnapshotMode::kReplay) {
    ASSERT_NE(helper, 0);
    EXPECT_EQ(parent_of(pid), helper);
    EXPECT_EQ(parent_of(helper), ::getpid());
  } else {
    EXPECT_EQ(helper, 0);
    EXPECT_EQ(parent_of(pid), ::getpid());
  }
  engine.stop();
  EXPECT_EQ(engine.stats().snapshot_helper_pid.load(), 0);
  if (helper != 0) {
    // Reaped by the stop: no such process any more.
    EXPECT_EQ(::kill(helper, 0), -1) << "the helper outlived the stop";
  }
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

TEST(EngineSnapshot, UnforkedSnapshotsOnTheLedgerThreadGiveTheSameState) {
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kInline));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  const Submitted run = run_until(engine, clock, engine.stats().snapshots, 3);
  ASSERT_GE(engine.stats().snapshots.load(), 3u) << run.submits << " submits";
  engine.stop();
  EXPECT_EQ(engine.stats().snapshots_forked.load(), 0u);
  EXPECT_EQ(engine.stats().snapshots_replayed.load(), 0u);
  EXPECT_EQ(engine.stats().snapshot_helper_pid.load(), 0);
  EXPECT_GT(engine.stats().snapshot_pause_ns_max.load(), 0u);
  expect_as_without_snapshots(run, dir.path());
}

TEST(EngineSnapshot, WithTheHelperGoneSnapshotsAreForkedInstead) {
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kReplay));
  ASSERT_TRUE(engine.open().ok());
  const auto helper = static_cast<pid_t>(engine.stats().snapshot_helper_pid.load());
  ASSERT_NE(helper, 0);
  ASSERT_EQ(::kill(helper, SIGKILL), 0);
  engine.start();
  const Submitted run = run_until(engine, clock, engine.stats().snapshots_forked, 2);
  ASSERT_GE(engine.stats().snapshots_forked.load(), 2u) << run.submits << " submits";
  engine.stop();
  EXPECT_EQ(engine.stats().snapshots_replayed.load(), 0u);
  EXPECT_EQ(engine.stats().snapshot_helper_pid.load(), 0);
  expect_as_without_snapshots(run, dir.path());
}

TEST(EngineSnapshot, AfterAWorkerFailedTheNextSnapshotIsForkedAndThenWorkersAgain) {
  // A worker killed (for want of memory, say) fails its snapshot and keeps the log; the
  // next snapshot is forked so that the log is still cut, and the one after is a
  // worker's again.
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(),
                options(dir.path(), SnapshotMode::kReplay, kSlowSnapshotDelayMs));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  const EngineStats& stats = engine.stats();
  std::size_t submits = 0;
  bool killed = false;
  auto submit_until = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kRunLongest;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      run_submits(engine, clock, submits, submits + 1);
      ++submits;
      const pid_t worker = static_cast<pid_t>(stats.snapshot_child_pid.load());
      if (!killed && worker != 0) killed = ::kill(worker, SIGKILL) == 0;
    }
    return done();
  };
  ASSERT_TRUE(submit_until([&] { return stats.snapshots_forked.load() > 0; }));
  EXPECT_TRUE(killed);
  EXPECT_EQ(stats.snapshots_replayed.load(), 0u) << "the killed worker's snapshot counted";
  EXPECT_EQ(stats.snapshots_forked.load(), 1u);
  ASSERT_TRUE(submit_until([&] { return stats.snapshots_replayed.load() > 0; }));
  EXPECT_EQ(stats.snapshots_forked.load(), 1u);
  EXPECT_NE(stats.snapshot_helper_pid.load(), 0) << "the helper was let go";
  engine.stop();
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

// The engine's own state beside the ledger: the integration cache (least recently used
// first), the rate-limit overrides and the live keys.
struct EngineSideState {
  std::vector<std::string> cache;
  std::vector<std::string> rate_limits;
  std::vector<std::string> keys;
  bool operator==(const EngineSideState&) const = default;
};

EngineSideState engine_side_state(Engine& engine) {
  EngineSideState s = test_support::read_state(engine, [](EngineState& st) {
    EngineSideState s;
    st.cache.for_each([&](const std::string& key, const policy::CacheEntry& e) {
      // The generation too: a replayed cache hit compares it (engine.cc, replay_cached_response).
      s.cache.push_back(key + "=" + e.response_json + "@" + std::to_string(e.expires_at_ms) + "#" +
                        std::to_string(e.generation));
    });
    for (const auto& [account, limits] : st.rate_limits) {
      s.rate_limits.push_back(account + ":" + std::to_string(limits.per_user->per_minute));
    }
    std::sort(s.rate_limits.begin(), s.rate_limits.end());
    return s;
  });
  for (std::size_t a = 0; a < kAccounts; ++a) {
    for (const KeyInfo& k : engine.keys_of("acct_" + std::to_string(a))) {
      s.keys.push_back(k.key_id);
    }
  }
  return s;
}

// Engine ops for submit i (after the first): a cache entry each time, a rate-limit
// override every 5th, a second key at 3 and its revocation at 40.
std::vector<Op> engine_ops(std::size_t i) {
  std::vector<Op> ops;
  CachePutOp c;
  c.account_id = "acct_" + std::to_string(i % kAccounts);
  c.kind = "invokeLLM";
  c.cache_key = "q" + std::to_string(i % 37);
  c.entry.response_json = "{\"answer\":" + std::to_string(i) + "}";
  c.entry.call_site = "src/f.tsx";
  c.entry.expires_at_ms = kStartMs + static_cast<std::int64_t>(i) * kSubmitEveryMs + 3'600'000;
  c.ttl_s = 3600;
  ops.emplace_back(std::move(c));
  if (i % 5 == 0) {
    RateLimitsOp t;
    t.account_id = "acct_" + std::to_string(i % kAccounts);
    t.limits.per_user = pricing::RateLimit{static_cast<std::int64_t>(10 + i), 5};
    ops.emplace_back(std::move(t));
  }
  if (i == 3) {
    CreateKeyOp k;
    k.key = KeyInfo{"key_2", Role::kMeter, "acct_2", "ci", std::string(64, 'b'), kStartMs};
    ops.emplace_back(std::move(k));
  }
  if (i == 40) ops.emplace_back(RevokeKeyOp{"acct_1", "key_1"});
  return ops;
}

// Submits [from, to) with engine ops added to each, one at a time.
void run_mixed_submits(Engine& engine, ManualClock& clock, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i) {
    clock.set_ms(kStartMs + static_cast<std::int64_t>(i) * kSubmitEveryMs);
    std::vector<Op> ops = submit_ops(i);
    if (i > 0) {
      for (Op& op : engine_ops(i)) ops.push_back(std::move(op));
    }
    std::promise<void> answered;
    auto done = answered.get_future();
    while (!engine.submit(std::move(ops),
                          [&](std::vector<ledger::Reply>&&) { answered.set_value(); })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    done.get();
  }
}

TEST(EngineSnapshot, AWorkersSnapshotKeepsTheCacheTheRateLimitsAndTheKeys) {
  // A worker rebuilds the engine's own state from the log too (cache puts, rate-limit
  // overrides, keys created and revoked): a restart from its snapshots finds exactly
  // what an engine that never took one holds.
  constexpr std::size_t kMixedSubmits = 200;
  TempDir dir;
  std::size_t submits = 0;
  {
    ManualClock clock(kStartMs);
    Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kReplay));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    // At least kMixedSubmits, and on (paced) until two workers' snapshots are written:
    // while one runs, the next is not started.
    const auto deadline = std::chrono::steady_clock::now() + kRunLongest;
    while (submits < kMixedSubmits || (engine.stats().snapshots_replayed.load() < 2 &&
                                       std::chrono::steady_clock::now() < deadline)) {
      run_mixed_submits(engine, clock, submits, submits + 1);
      ++submits;
      if (submits >= kMixedSubmits) std::this_thread::sleep_for(std::chrono::milliseconds(kPaceMs));
    }
    ASSERT_GE(engine.stats().snapshots_replayed.load(), 2u) << submits << " submits";
    engine.stop();
  }
  // The clean stop's own snapshot (encoded from the live state) is removed: the restart
  // starts from the newest worker's snapshot and the log after it.
  std::filesystem::path newest;
  std::uint64_t newest_lsn = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() + "/snapshots")) {
    if (e.path().extension() != ".snap") continue;
    // "snap-" and the LSN in hex.
    const std::uint64_t lsn = std::stoull(e.path().stem().string().substr(5), nullptr, 16);
    if (newest.empty() || lsn > newest_lsn) {
      newest = e.path();
      newest_lsn = lsn;
    }
  }
  ASSERT_FALSE(newest.empty());
  ASSERT_TRUE(std::filesystem::remove(newest));
  ASSERT_EQ(snapshot_files(dir.path()), 1u) << "the worker's snapshot was pruned";
  const EngineSideState want = without_snapshots([&](Engine& engine, ManualClock& clock) {
    run_mixed_submits(engine, clock, 0, submits);
    return engine_side_state(engine);
  });
  ASSERT_FALSE(want.cache.empty());
  ASSERT_FALSE(want.rate_limits.empty());
  EXPECT_EQ(want.keys, std::vector<std::string>{"key_2"});
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kInline));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  EXPECT_EQ(engine_side_state(engine), want);
  engine.stop();
}

// Cache puts alone, answered before this returns.
void put_cache_entries(Engine& engine, std::size_t from, std::size_t to) {
  std::vector<Op> ops;
  for (std::size_t i = from; i < to; ++i) ops.push_back(engine_ops(i).front());
  std::promise<void> answered;
  auto done = answered.get_future();
  ASSERT_TRUE(
      engine.submit(std::move(ops), [&](std::vector<ledger::Reply>&&) { answered.set_value(); }));
  done.get();
}

// The cache entries' generations, least recently used first.
std::vector<std::uint64_t> cache_generations(Engine& engine) {
  return test_support::read_state(engine, [](EngineState& st) {
    std::vector<std::uint64_t> out;
    st.cache.for_each(
        [&](const std::string&, const policy::CacheEntry& e) { out.push_back(e.generation); });
    return out;
  });
}

// The state bytes of a version 2 snapshot written as version 1 (no cache generations).
// A version 3 snapshot as version 1 wrote it: no cache generations, no capacities.
std::string as_version_1(std::string_view v3) {
  ByteReader r(v3);
  std::string out;
  ByteWriter w(out);
  EXPECT_EQ(r.u8(), 3);
  w.u8(1);
  w.sv(r.sv());
  const std::uint64_t keys = r.uv();
  w.uv(keys);
  for (std::uint64_t i = 0; i < keys; ++i) {
    w.str(r.str());
    w.u8(r.u8());
    for (int s = 0; s < 3; ++s) w.str(r.str());
    w.sv(r.sv());
  }
  r.uv();  // cache_generation_last: not in version 1
  const std::uint64_t entries = r.uv();
  w.uv(entries);
  for (std::uint64_t i = 0; i < entries; ++i) {
    for (int s = 0; s < 5; ++s) w.str(r.str());
    w.sv(r.sv());
    r.uv();  // the entry's generation
  }
  const std::uint64_t limits = r.uv();
  w.uv(limits);
  for (std::uint64_t i = 0; i < limits; ++i) {
    w.str(r.str());
    for (int scope = 0; scope < 2; ++scope) {
      const bool has = r.b();
      w.b(has);
      if (!has) continue;
      w.sv(r.sv());
      w.sv(r.sv());
    }
  }
  for (int c = 0; c < 3; ++c) r.uv();  // the capacities: not before version 3
  EXPECT_TRUE(r.ok());
  const std::size_t rest = r.pos();
  w.raw(v3.data() + rest, v3.size() - rest);
  return out;
}

TEST(EngineSnapshot, AVersion1SnapshotLoadsAndNumbersItsCacheEntriesInOrder) {
  // Snapshots written before cache generations still load: their entries are numbered in
  // their order (least recently used first), and the puts after go on from there.
  TempDir dir;
  {
    ManualClock clock(kStartMs);
    Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kInline));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    put_cache_entries(engine, 1, 4);
    EXPECT_EQ(cache_generations(engine), (std::vector<std::uint64_t>{1, 2, 3}));
    engine.stop();  // a clean stop writes a snapshot of everything
  }
  const std::string snaps = dir.path() + "/snapshots";
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(snaps)) {
    if (e.path().extension() == ".snap") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());
  Result<store::Snapshot> newest = store::read_snapshot(files.back().string());
  ASSERT_TRUE(newest.ok());
  for (const auto& f : files) std::filesystem::remove(f);
  ASSERT_TRUE(store::write_snapshot(snaps, newest->lsn, as_version_1(newest->bytes)).ok());
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path(), SnapshotMode::kInline));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  EXPECT_EQ(cache_generations(engine), (std::vector<std::uint64_t>{1, 2, 3}));
  put_cache_entries(engine, 4, 5);
  EXPECT_EQ(cache_generations(engine), (std::vector<std::uint64_t>{1, 2, 3, 4}));
  engine.stop();
}

TEST_P(EngineSnapshotInBackground, SigkillAfterSnapshotsRestartsFromTheNewestAndTheLogAfterIt) {
  TempDir dir;
  const ServerReport r = run_server_then_sigkill(options(dir.path(), GetParam()), 3, false);
  if (r.child_pid != 0) wait_for_orphan(static_cast<pid_t>(r.child_pid), kChildGoneWithin);
  reap_leftovers();
  const std::uint64_t in_background =
      GetParam() == SnapshotMode::kReplay ? r.snapshots_replayed : r.snapshots_forked;
  EXPECT_GE(in_background, 3u);
  EXPECT_EQ(r.snapshots, in_background);
  EXPECT_EQ(r.replies_failed, 0);
  EXPECT_GE(snapshot_files(dir.path()), 1u);
  EXPECT_EQ(restarted_state(dir.path()), reference(r.submits).state);
}

TEST(EngineSnapshot, SigkillAfterUnforkedSnapshotsRestartsWithTheSameState) {
  TempDir dir;
  const ServerReport r =
      run_server_then_sigkill(options(dir.path(), SnapshotMode::kInline), 3, false);
  reap_leftovers();
  EXPECT_GE(r.snapshots, 3u);
  EXPECT_EQ(r.snapshots_forked, 0u);
  EXPECT_EQ(r.snapshots_replayed, 0u);
  EXPECT_EQ(r.child_pid, 0);
  EXPECT_GE(snapshot_files(dir.path()), 1u);
  EXPECT_EQ(restarted_state(dir.path()), reference(r.submits).state);
}

TEST_P(EngineSnapshotInBackground, SigkillDuringALongSnapshotLeavesNoChildBehind) {
  TempDir dir;
  const ServerReport r =
      run_server_then_sigkill(options(dir.path(), GetParam(), kStuckSnapshotDelayMs), 0, true);
  ASSERT_NE(r.child_pid, 0) << "no snapshot child was running at the kill";
  // The child must die with its server, not sleep out its 60 s and write: a forked one
  // by PR_SET_PDEATHSIG, a replaying one killed by its helper, which sees the server's
  // end of their socket close (and dies with it).
  const ChildEnd end = wait_for_orphan(static_cast<pid_t>(r.child_pid), kChildGoneWithin);
  ASSERT_TRUE(end.gone) << "the snapshot child outlived its server";
  // Reaped here, its status shows the signal; reaped by the server or the helper, it
  // ended within the kill all the same (it had 60 s of sleep left).
  if (end.status) {
    EXPECT_TRUE(WIFSIGNALED(*end.status) && WTERMSIG(*end.status) == SIGKILL);
  }
  reap_leftovers();
  EXPECT_EQ(r.replies_failed, 0);
  // Every child slept, so no snapshot was written: the restart replays the whole log.
  EXPECT_EQ(snapshot_files(dir.path()), 0u);
  EXPECT_EQ(restarted_state(dir.path()), reference(r.submits).state);
}

INSTANTIATE_TEST_SUITE_P(Modes, EngineSnapshotInBackground,
                         ::testing::Values(SnapshotMode::kReplay, SnapshotMode::kFork), mode_name);
INSTANTIATE_TEST_SUITE_P(Modes, EngineWithASlowChild,
                         ::testing::Values(SnapshotMode::kReplay, SnapshotMode::kFork), mode_name);

TEST(EngineSnapshot, ACollapsePassStartsAheadOfEachSnapshot) {
  // At three quarters of snapshot_wal_bytes the heap grown since the last pass is folded
  // into huge pages, so that the fork copies fewer page-table entries (engine.h): one pass
  // per snapshot interval, started before that interval's snapshot. Counted whether or not
  // the kernel can collapse (the pass then ends at once).
  TempDir dir;
  ManualClock clock(kStartMs);
  EngineOptions o = options(dir.path(), SnapshotMode::kFork);
  o.snapshot_collapse = true;
  Engine engine(clock, catalog(), cards(), o);
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  const EngineStats& stats = engine.stats();
  std::size_t submits = 0;
  // After each submit, the snapshot child and the pass it may have started end before the
  // next: however slow they are here, no snapshot follows another at once (a snapshot due
  // as the last one ends has no interval to fold the heap in).
  auto submit_until = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + kRunLongest;
    while (!done() && submits < kSubmits) {
      run_submits(engine, clock, submits, submits + 1);
      ++submits;
      while ((stats.snapshot_child_pid.load() != 0 || engine.collapse_running()) &&
             std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    return done();
  };
  ASSERT_TRUE(submit_until([&] { return stats.precollapses.load() > 0; }));
  EXPECT_EQ(stats.precollapses.load(), 1u);
  EXPECT_EQ(stats.snapshot_pause_ns_max.load(), 0u) << "a snapshot started before the pass";
  EXPECT_GT(submits, 1u) << "a pass started before the log had grown";
  ASSERT_TRUE(submit_until([&] { return stats.snapshot_pause_ns_max.load() > 0; }));
  EXPECT_EQ(stats.precollapses.load(), 1u) << "more than one pass in one interval";
  ASSERT_TRUE(submit_until([&] { return stats.precollapses.load() > 1; }));
  EXPECT_EQ(stats.precollapses.load(), 2u);
  engine.stop();
  EXPECT_EQ(restarted_state(dir.path()), reference(submits).state);
}

}  // namespace
}  // namespace credit::server
