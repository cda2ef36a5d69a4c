// tests/server/engine_import_test.cc
// Imported history (ImportEventsOp, the import with mode=analytics) through the engine:
// numbered after the commands of its batch, listed with the other events, and numbered
// the same way when the command log is replayed without an event log; a batch of imports
// alone leaves the ledger's now where it was. An event index read back from a log whose
// days hold later-numbered imported events is in seq order. A replay over an event log
// that kept only part of a record's events rebuilds the rest with the same numbers.
// Owns: these tests. Does not: test the HTTP import (tests/integration).
#include <gtest/gtest.h>

#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "engine_test_support.h"
#include "ledger/event_codec.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/engine.h"
#include "time/clock.h"

namespace credit::server {
namespace {

constexpr std::int64_t kStartMs = 1'772'000'000'000;               // 2026-02-25
constexpr std::int64_t kHistoryMs = kStartMs - 20 * 86'400'000LL;  // 20 days before

using test_support::cards;
using test_support::catalog;
using test_support::charge;
using test_support::submit;
using TempDir = test_support::TempDir;

EngineOptions options(const std::string& dir) {
  EngineOptions o = test_support::engine_options(dir);
  o.snapshot_wal_bytes = UINT64_MAX;  // every command stays in the log after the start
  return o;
}

void create_account(Engine& engine) {
  std::vector<Op> ops;
  ops.push_back(test_support::create_account("acct"));
  EXPECT_EQ(submit(engine, std::move(ops))[0].status, 201);
}

ledger::Event history(const std::string& account, std::int64_t at_ms, const std::string& key) {
  ledger::Event e;
  e.at_ms = at_ms;
  e.account_id = account;
  e.user_id = "old";
  e.type = ledger::EventType::kCharge;
  e.kind = pricing::Kind::kAgentPrompt;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(7'000);
  e.idempotency_key = key;
  e.metadata.file = "src/legacy.js";
  e.imported = true;
  return e;
}

// (seq, at, imported, idempotency key) of every retained event of `account`.
using Row = std::tuple<std::uint64_t, std::int64_t, bool, std::string>;
std::vector<Row> events_of(Engine& engine, const std::string& account) {
  return test_support::read_state(engine, [&](EngineState& st) {
    std::vector<Row> out;
    ledger::Event e;
    for (const auto& entry : st.events.events_of(account)) {
      EXPECT_TRUE(st.events.decode(entry, e)) << entry.seq;
      out.emplace_back(e.seq, e.at_ms, e.imported, e.idempotency_key);
    }
    return out;
  });
}

TEST(EngineImport, NumberedAfterTheBatchsCommandsAndTheSameOnReplay) {
  TempDir dir, copy;
  ManualClock clock(kStartMs);
  std::vector<Row> live;
  {
    Engine engine(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    create_account(engine);
    clock.set_ms(kStartMs + 1'000);
    // One batch: a charge, two imported events (two days apart), another charge.
    std::vector<Op> mixed;
    mixed.push_back(charge("acct", 1'000));
    mixed.emplace_back(ImportEventsOp{{history("acct", kHistoryMs, "h-1"),
                                       history("acct", kHistoryMs + 2 * 86'400'000LL, "h-2")}});
    mixed.push_back(charge("acct", 2'000));
    auto replies = submit(engine, std::move(mixed));
    ASSERT_EQ(replies.size(), 3u);
    EXPECT_EQ(replies[0].status, 201);
    EXPECT_EQ(replies[1].status, 200);
    EXPECT_EQ(replies[2].status, 201);
    live = events_of(engine, "acct");
    // The account event, the two charges, then the imports (after the batch's commands).
    ASSERT_EQ(live.size(), 5u);
    EXPECT_FALSE(std::get<2>(live[1]));
    EXPECT_FALSE(std::get<2>(live[2]));
    EXPECT_EQ(std::get<3>(live[3]), "h-1");
    EXPECT_EQ(std::get<3>(live[4]), "h-2");
    EXPECT_TRUE(std::get<2>(live[3]) && std::get<2>(live[4]));
    EXPECT_GT(std::get<0>(live[3]), std::get<0>(live[2]));
    EXPECT_EQ(std::get<1>(live[3]), kHistoryMs);
    // The command log and the event log as a crash would leave them (no clean stop).
    std::filesystem::copy(dir.path(), copy.path(),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
    engine.stop();
  }
  // Restarted from the event log (the imported events lie in their own days' segments,
  // numbered after later days' events): the same list, in seq order.
  {
    Engine engine(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    EXPECT_EQ(events_of(engine, "acct"), live);
    engine.stop();
  }
  // Without the event log every event is rebuilt by replaying the command log: numbered
  // the same way.
  std::filesystem::remove_all(copy.path() + "/events");
  {
    Engine engine(clock, catalog(), cards(), options(copy.path()));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    EXPECT_EQ(events_of(engine, "acct"), live);
    engine.stop();
  }
}

TEST(EngineReplay, EventsTheEventLogLostAreRebuiltAfterTheOnesItKept) {
  // One log record of many charges whose events the event log holds only in part (a
  // crash before the last events reached it): the replay drops the events the log holds
  // and rebuilds the rest with the same numbers, whichever of the two (the replay, the
  // event log's loader) runs ahead.
  constexpr int kCharges = 400;
  TempDir dir, crashed;
  ManualClock clock(kStartMs);
  std::vector<Row> live;
  {
    Engine engine(clock, catalog(), cards(), options(dir.path()));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    create_account(engine);
    std::vector<Op> ops;
    for (int i = 0; i < kCharges; ++i) ops.push_back(charge("acct", 1'000 + i));
    for (const ledger::Reply& r : submit(engine, std::move(ops))) ASSERT_EQ(r.status, 201);
    live = events_of(engine, "acct");
    ASSERT_EQ(live.size(), 1u + kCharges);
    // The command log and the event log as a crash would leave them (no clean stop).
    std::filesystem::copy(dir.path(), crashed.path(),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
    engine.stop();
  }
  for (const double kept : {0.9, 0.5, 0.1}) {
    TempDir run;
    std::filesystem::copy(crashed.path(), run.path(),
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
    std::vector<std::filesystem::path> segments;
    for (const auto& f : std::filesystem::directory_iterator(run.path() + "/events")) {
      segments.push_back(f.path());
    }
    ASSERT_EQ(segments.size(), 1u);
    // Cut inside a record: a torn tail, which the event log cuts off at start.
    const auto bytes = std::filesystem::file_size(segments[0]);
    std::filesystem::resize_file(segments[0], static_cast<std::uintmax_t>(bytes * kept));
    Engine engine(clock, catalog(), cards(), options(run.path()));
    ASSERT_TRUE(engine.open().ok());
    engine.start();
    EXPECT_EQ(events_of(engine, "acct"), live) << "kept " << kept;
    engine.stop();
  }
}

TEST(EngineImport, ABatchOfImportsAloneDoesNotMoveTheLedgersNow) {
  TempDir dir;
  ManualClock clock(kStartMs);
  Engine engine(clock, catalog(), cards(), options(dir.path()));
  ASSERT_TRUE(engine.open().ok());
  engine.start();
  create_account(engine);
  const std::int64_t logged = engine.last_logged_ms();
  clock.set_ms(kStartMs + 3'600'000);
  std::vector<Op> ops;
  ops.emplace_back(ImportEventsOp{{history("acct", kHistoryMs, "h-1")}});
  EXPECT_EQ(submit(engine, std::move(ops))[0].status, 200);
  EXPECT_EQ(engine.last_logged_ms(), logged);
  // A backfill may still begin at the last logged instant.
  std::promise<std::vector<ledger::Reply>> answered;
  auto replies = answered.get_future();
  std::vector<Op> backfill;
  backfill.push_back(charge("acct", 500));
  ASSERT_TRUE(
      engine.submit_at(logged + 60'000, std::move(backfill),
                       [&](std::vector<ledger::Reply>&& r) { answered.set_value(std::move(r)); }));
  EXPECT_EQ(replies.get()[0].status, 201);
  engine.stop();
}

}  // namespace
}  // namespace credit::server
