// tests/server/engine_sink_test.cc
// The event sink's catch-up after a start (Engine::set_event_sink, read_caught_up): the
// start feeds the sink nothing; after start() it gets every event of the event log, then
// the events of batches applied meanwhile, each once and in log order; reads that need
// the sink wait for the end of it, past the bound they are refused, and so are those still
// waiting at a stop.
// Owns: these tests. Does not: test the analytics the sink feeds (tests/analytics,
// tests/integration).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine_test_support.h"
#include "server/engine.h"
#include "time/clock.h"

namespace credit::server {
namespace {

constexpr std::int64_t kStartMs = 1'772'000'000'000;  // 2026-02-25
constexpr auto kWait = std::chrono::seconds(20);

using test_support::cards;
using test_support::catalog;
using test_support::charge;
using test_support::create_account;
using test_support::submit;
using TempDir = test_support::TempDir;

// Every event's seq, in the order the sink got them; the sink's room is a switch.
struct Sink {
  std::mutex mu;
  std::vector<std::uint64_t> seqs;
  std::vector<bool> calls;  // each call's more_behind
  std::atomic<bool> room{false};
  void attach(Engine& engine) {
    engine.set_event_sink(
        [this](const std::vector<ledger::Event>& events, bool more_behind) {
          std::lock_guard lock(mu);
          for (const auto& e : events) seqs.push_back(e.seq);
          calls.push_back(more_behind);
        },
        [this] { return room.load(); });
  }
  std::vector<std::uint64_t> got() {
    std::lock_guard lock(mu);
    return seqs;
  }
  std::vector<bool> behind() {
    std::lock_guard lock(mu);
    return calls;
  }
};

// An engine with a Sink attached (with room, or none until a test gives it), opened and
// started.
struct Started {
  Started(ManualClock& clock, EngineOptions o, bool room)
      : engine(clock, catalog(), cards(), std::move(o)) {
    sink.room.store(room);
    sink.attach(engine);
    opened = engine.open().ok();
    if (opened) engine.start();
  }
  Sink sink;  // before the engine: it outlives the engine's calls
  Engine engine;
  bool opened = false;
};

// The seqs of every event the engine's index holds, in increasing order.
std::vector<std::uint64_t> all_seqs(Engine& engine, const std::vector<std::string>& accounts) {
  return test_support::read_state(engine, [&](EngineState& st) {
    std::vector<std::uint64_t> out;
    for (const auto& a : accounts) {
      for (const auto& entry : st.events.events_of(a)) out.push_back(entry.seq);
    }
    std::sort(out.begin(), out.end());
    return out;
  });
}

// Two accounts and `batches` batches of `per_batch` charges in `dir`; a clean stop.
void write_history(const std::string& dir, ManualClock& clock, int batches = 10,
                   int per_batch = 8) {
  Engine engine(clock, catalog(), cards(), test_support::engine_options(dir));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  std::vector<Op> accounts;
  accounts.push_back(create_account("a"));
  accounts.push_back(create_account("b"));
  for (const auto& r : submit(engine, std::move(accounts))) ASSERT_EQ(r.status, 201);
  for (int batch = 0; batch < batches; ++batch) {
    clock.set_ms(clock.now_ms() + 1'000);
    std::vector<Op> ops;
    for (int i = 0; i < per_batch; ++i) ops.push_back(charge(i % 2 ? "a" : "b", 1));
    for (const auto& r : submit(engine, std::move(ops))) ASSERT_EQ(r.status, 201);
  }
  engine.stop();
}

// Whether a read that needs the sink ran within kWait (the catch-up ended).
bool caught_up(Engine& engine) {
  auto ran = std::make_shared<std::promise<void>>();
  auto ran_future = ran->get_future();
  if (!engine.read_caught_up([ran](EngineState&) { ran->set_value(); },
                             [] { ADD_FAILURE() << "refused"; })) {
    return false;
  }
  return ran_future.wait_for(kWait) == std::future_status::ready;
}

bool ready(std::future<void>& f) {
  return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

TEST(EngineSink, AStartFeedsTheLoggedEventsAfterItInLogOrderThenTheNewOnes) {
  TempDir dir;
  ManualClock clock(kStartMs);
  write_history(dir.path(), clock);
  Sink sink;
  Engine engine(clock, catalog(), cards(), test_support::engine_options(dir.path()));
  sink.attach(engine);
  ASSERT_TRUE(engine.open().ok());
  EXPECT_TRUE(sink.got().empty()) << "the start fed the sink";
  engine.start();
  EXPECT_EQ(engine.stats().sink_backlog_events.load(), 82u);  // two accounts, 80 charges
  EXPECT_EQ(all_seqs(engine, {"a", "b"}).size(), 82u);

  // The sink has no room: a read that needs it waits; new charges wait behind the backlog.
  std::promise<void> read_ran;
  auto read_future = read_ran.get_future();
  std::size_t seen_by_read = 0;
  ASSERT_TRUE(engine.read_caught_up(
      [&](EngineState&) {
        seen_by_read = sink.got().size();
        read_ran.set_value();
      },
      [] { ADD_FAILURE() << "refused"; }));
  clock.set_ms(clock.now_ms() + 1'000);
  std::vector<Op> more;
  for (int i = 0; i < 3; ++i) more.push_back(charge("a", 500));
  for (const auto& r : submit(engine, std::move(more))) ASSERT_EQ(r.status, 201);
  (void)all_seqs(engine, {"a"});  // a read behind the batch: its events are taken
  EXPECT_FALSE(ready(read_future));
  EXPECT_TRUE(sink.got().empty());

  sink.room.store(true);
  ASSERT_EQ(read_future.wait_for(kWait), std::future_status::ready);
  const std::vector<std::uint64_t> expected = all_seqs(engine, {"a", "b"});
  ASSERT_EQ(expected.size(), 85u);
  EXPECT_EQ(sink.got(), expected);                     // each once, in log order, the new ones last
  EXPECT_EQ(sink.behind(), std::vector<bool>{false});  // one slice: the last
  EXPECT_EQ(seen_by_read, expected.size());
  EXPECT_EQ(engine.stats().sink_backlog_events.load(), 0u);

  // Caught up: a new batch's events go to the sink directly, and reads run at once.
  std::vector<Op> last;
  last.push_back(charge("b", 250));
  ASSERT_EQ(submit(engine, std::move(last))[0].status, 201);
  std::promise<void> second;
  auto second_future = second.get_future();
  ASSERT_TRUE(engine.read_caught_up([&](EngineState&) { second.set_value(); },
                                    [] { ADD_FAILURE() << "refused"; }));
  ASSERT_EQ(second_future.wait_for(kWait), std::future_status::ready);
  EXPECT_EQ(sink.got(), all_seqs(engine, {"a", "b"}));
  EXPECT_EQ(sink.got().size(), 86u);
  engine.stop();
}

TEST(EngineSink, ReadsPastTheBoundAreRefusedAndAStopRefusesTheWaitingOnes) {
  TempDir dir;
  ManualClock clock(kStartMs);
  write_history(dir.path(), clock);
  {
    EngineOptions o = test_support::engine_options(dir.path());
    o.parked_reads_max = 1;
    Started started(clock, o, /*room=*/false);
    ASSERT_TRUE(started.opened);
    Engine& engine = started.engine;
    std::atomic<int> ran{0}, refused{0};
    std::promise<void> second_refused;
    auto second_future = second_refused.get_future();
    ASSERT_TRUE(engine.read_caught_up([&](EngineState&) { ++ran; }, [&] { ++refused; }));
    ASSERT_TRUE(engine.read_caught_up([&](EngineState&) { ++ran; },
                                      [&] {
                                        ++refused;
                                        second_refused.set_value();
                                      }));
    ASSERT_EQ(second_future.wait_for(kWait), std::future_status::ready);
    EXPECT_EQ(refused.load(), 1);
    EXPECT_EQ(ran.load(), 0);
    engine.stop();  // the sink still has no room: the waiting read is refused
    EXPECT_EQ(refused.load(), 2);
    EXPECT_EQ(ran.load(), 0);
    EXPECT_TRUE(started.sink.got().empty());
  }
  {
    // A stop coming: the waiting read and the next one are refused before it, and charges
    // are still served.
    Started started(clock, test_support::engine_options(dir.path()), /*room=*/false);
    ASSERT_TRUE(started.opened);
    Engine& engine = started.engine;
    std::promise<void> first_refused, second_refused;
    auto first = first_refused.get_future(), second = second_refused.get_future();
    ASSERT_TRUE(engine.read_caught_up([](EngineState&) { ADD_FAILURE() << "ran"; },
                                      [&] { first_refused.set_value(); }));
    (void)all_seqs(engine, {"a"});  // the read above is waiting now
    EXPECT_FALSE(ready(first));
    engine.refuse_waiting_reads();
    ASSERT_EQ(first.wait_for(kWait), std::future_status::ready);
    ASSERT_TRUE(engine.read_caught_up([](EngineState&) { ADD_FAILURE() << "ran"; },
                                      [&] { second_refused.set_value(); }));
    ASSERT_EQ(second.wait_for(kWait), std::future_status::ready);
    std::vector<Op> ops;
    ops.push_back(charge("a", 1));
    EXPECT_EQ(submit(engine, std::move(ops))[0].status, 201);
    engine.stop();
  }
  // The next start catches up from the whole log again.
  Started started(clock, test_support::engine_options(dir.path()), /*room=*/true);
  ASSERT_TRUE(started.opened);
  Engine& engine = started.engine;
  Sink& sink = started.sink;
  ASSERT_TRUE(caught_up(engine));
  EXPECT_EQ(sink.got(), all_seqs(engine, {"a", "b"}));
  engine.stop();
}

TEST(EngineSink, ALongBacklogComesInSlicesAndOnlyTheLastSaysNoneIsBehind) {
  TempDir dir;
  ManualClock clock(kStartMs);
  write_history(dir.path(), clock, 9, 1'000);  // 9,002 events: three slices
  Started started(clock, test_support::engine_options(dir.path()), /*room=*/true);
  ASSERT_TRUE(started.opened);
  Engine& engine = started.engine;
  Sink& sink = started.sink;
  ASSERT_TRUE(caught_up(engine));
  static_assert(kSinkCatchUpSliceEvents * 2 < 9'002 && 9'002 <= kSinkCatchUpSliceEvents * 3);
  EXPECT_EQ(sink.behind(), (std::vector<bool>{true, true, false}));
  EXPECT_EQ(sink.got(), all_seqs(engine, {"a", "b"}));
  engine.stop();
}

TEST(EngineSink, WithAnEmptyEventLogNothingWaits) {
  TempDir dir;
  ManualClock clock(kStartMs);
  // No room, ever: nothing should need it.
  Started started(clock, test_support::engine_options(dir.path()), /*room=*/false);
  ASSERT_TRUE(started.opened);
  Engine& engine = started.engine;
  Sink& sink = started.sink;
  ASSERT_TRUE(caught_up(engine));
  std::vector<Op> ops;
  ops.push_back(create_account("a"));
  ops.push_back(charge("a", 1'000));
  for (const auto& r : submit(engine, std::move(ops))) ASSERT_EQ(r.status, 201);
  (void)all_seqs(engine, {"a"});
  EXPECT_EQ(sink.got(), all_seqs(engine, {"a"}));
  EXPECT_EQ(sink.got().size(), 2u);
  EXPECT_EQ(sink.behind(), std::vector<bool>{false});
  engine.stop();
}

}  // namespace
}  // namespace credit::server
