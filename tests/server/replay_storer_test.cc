// The replay's storing thread (src/server/replay_storer.h): records applied with their
// stores handed over end in the state of a ledger that stored as it applied; a failed
// store stops the hand-overs and finish() gives its error.
#include "server/replay_storer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../ledger/ledger_harness.h"
#include "ledger/snapshot_codec.h"

namespace credit::server {
namespace {

using ledger::testing::at;
using ledger::testing::charge;
using ledger::testing::create;
using ledger::testing::default_catalog;
using ledger::testing::hash_of;
using ledger::testing::mc;

ledger::Command keyed(ledger::CommandBody body, const std::string& key) {
  ledger::Command c;
  c.idem.has_key = true;
  c.idem.key = key;
  c.idem.scope_key_hash = hash_of(key);
  c.idem.request_hash = hash_of("request");
  c.body = std::move(body);
  return c;
}

// Batches of keyed charges, a day apart (so keys expire), the first creating the account.
std::vector<std::vector<ledger::Command>> batches() {
  std::vector<std::vector<ledger::Command>> out;
  out.push_back({keyed(create("a", "pro"), "create")});
  for (int b = 0; b < 30; ++b) {
    std::vector<ledger::Command> batch;
    for (int i = 0; i < 200; ++i) {
      batch.push_back(keyed(charge("a", mc(10 + i)), std::to_string(b) + "-" + std::to_string(i)));
    }
    out.push_back(std::move(batch));
  }
  return out;
}

TEST(ReplayStorer, StoresHandedOverEndInTheStateOfStoringInPlace) {
  ledger::Ledger in_place(default_catalog());
  ledger::Ledger handed(default_catalog());
  std::vector<ledger::Event> events;
  const std::int64_t start = at("2026-03-01T10:00:00Z");
  const auto all = batches();
  for (std::size_t b = 0; b < all.size(); ++b) {
    in_place.begin_batch(start + static_cast<std::int64_t>(b) * 3'600'000);
    for (ledger::Command c : all[b]) ASSERT_TRUE(in_place.apply(c, events).logged);
  }
  {
    ReplayStorer storer(handed);
    for (std::size_t b = 0; b < all.size(); ++b) {
      handed.begin_batch(start + static_cast<std::int64_t>(b) * 3'600'000);
      for (ledger::Command c : all[b]) ASSERT_TRUE(handed.apply(c, events).logged);
      ASSERT_TRUE(storer.hand_over());
    }
    ASSERT_TRUE(storer.finish().ok());
  }
  std::string a, b;
  ledger::encode_ledger_snapshot(in_place, a);
  ledger::encode_ledger_snapshot(handed, b);
  EXPECT_EQ(a, b);
}

// A ledger with account "a" created under key "k", the storer (enabled or not) started
// before the creation.
struct Created {
  Created() : storer((l.begin_batch(at("2026-03-01T10:00:00Z")), l)) {
    ledger::Command c = keyed(create("a", "pro"), "k");
    l.apply(c, events);
  }
  ledger::Ledger l{default_catalog()};
  std::vector<ledger::Event> events;
  ReplayStorer storer;
};

TEST(ReplayStorer, AFailedStoreStopsTheHandOversAndFinishSaysWhy) {
  Created c;
  ledger::Ledger& l = c.l;
  std::vector<ledger::Event>& events = c.events;
  ReplayStorer& storer = c.storer;
  ASSERT_TRUE(storer.hand_over());
  // The same key again: a log written by the ledger never holds it.
  bool stopped = false;
  for (int i = 0; i < 100 && !stopped; ++i) {
    ledger::Command again = keyed(charge("a", mc(1)), "k");
    l.apply(again, events);
    stopped = !storer.hand_over();
  }
  EXPECT_TRUE(stopped);
  Status s = storer.finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("live"), std::string::npos);
}

}  // namespace
}  // namespace credit::server
