// tests/server/event_index_test.cc
// The compact in-memory event store: what goes in comes back, per account, in seq order.
#include "server/event_index.h"

#include <gtest/gtest.h>

#include <string>

#include "ledger/event_codec.h"

namespace credit::server {
namespace {

ledger::Event charge(std::uint64_t seq, std::string account, std::string file) {
  ledger::Event e;
  e.seq = seq;
  e.at_ms = 1'772'000'000'000 + static_cast<std::int64_t>(seq);
  e.account_id = std::move(account);
  e.user_id = "u1";
  e.kind = pricing::Kind::kBackendFunction;
  e.pool = "credits";
  e.credits = Millicredits::from_mc(1'500);
  e.drawn_from.push_back({"allowance", Millicredits::from_mc(1'500)});
  e.metadata.file = std::move(file);
  e.metadata.extra.emplace_back("team", "web");
  e.charge_id = "c_" + std::to_string(seq);
  return e;
}

TEST(EventIndex, KeepsEachAccountsEventsInSeqOrderAndDecodesThemBack) {
  EventIndex index;
  ASSERT_TRUE(index.append(charge(1, "acct_a", "a.ts")));
  ASSERT_TRUE(index.append(charge(2, "acct_b", "b.ts")));
  ASSERT_TRUE(index.append(charge(5, "acct_a", "c.ts")));
  EXPECT_EQ(index.size(), 3u);

  auto a = index.events_of("acct_a");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].seq, 1u);
  EXPECT_EQ(a[1].seq, 5u);
  ledger::Event out;
  index.decode(a[1], out);
  EXPECT_EQ(out, charge(5, "acct_a", "c.ts"));
  index.decode(a[0], out);  // into a reused Event: every field overwritten
  EXPECT_EQ(out, charge(1, "acct_a", "a.ts"));

  ASSERT_EQ(index.events_of("acct_b").size(), 1u);
  EXPECT_TRUE(index.events_of("acct_none").empty());
}

TEST(EventIndex, KeepsTheEventLogsBytesAsTheyAre) {
  EventIndex index;
  std::string bytes;
  ledger::encode_event(charge(7, "acct_a", "x.ts"), bytes);
  ASSERT_TRUE(index.append_encoded("acct_a", 7, bytes));
  auto a = index.events_of("acct_a");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(index.bytes_of(a[0]), bytes);
}

TEST(EventIndex, RecordsFillBlocksAndOneLargerThanABlockGetsItsOwn) {
  EventIndex index;
  // 70,000 events of about 100 bytes: more than one 4 MiB block.
  for (std::uint64_t seq = 1; seq <= 70'000; ++seq) {
    ASSERT_TRUE(index.append(charge(seq, "acct_" + std::to_string(seq % 3), "src/page.tsx")));
  }
  const std::string big_file(kEventBlockBytes + 10, 'f');
  ASSERT_TRUE(index.append(charge(70'001, "acct_1", big_file)));
  ASSERT_TRUE(index.append(charge(70'002, "acct_1", "after.ts")));

  auto list = index.events_of("acct_1");
  ASSERT_EQ(list.size(), 23'336u);  // seq 1, 4, ..., 69'997 (23'334 of them), then two
  ledger::Event out;
  index.decode(list[list.size() - 2], out);
  EXPECT_EQ(out.metadata.file, big_file);
  index.decode(list.back(), out);
  EXPECT_EQ(out, charge(70'002, "acct_1", "after.ts"));
  index.decode(list.front(), out);
  EXPECT_EQ(out, charge(1, "acct_1", "src/page.tsx"));
  // Blocks plus lists: at least the 4 blocks written, far below a KB per event.
  EXPECT_GE(index.memory_bytes(), 2 * kEventBlockBytes + big_file.size());
  EXPECT_LT(index.memory_bytes(), 70'002u * 300 + big_file.size());
}

TEST(EventIndex, TheHeadOfAnEncodingHoldsWhatTheEventsRouteFiltersOn) {
  EventIndex index;
  ledger::Event e = charge(9, "acct_a", "x.ts");
  e.user_id = "u42";
  e.type = ledger::EventType::kRefund;
  ASSERT_TRUE(index.append(e));
  ledger::EventHead head;
  index.decode_head(index.events_of("acct_a")[0], head);
  EXPECT_EQ(head.seq, 9u);
  EXPECT_EQ(head.at_ms, 1'772'000'000'009);
  EXPECT_EQ(head.account_id, "acct_a");
  EXPECT_EQ(head.user_id, "u42");
  EXPECT_EQ(head.type, ledger::EventType::kRefund);
  EXPECT_EQ(head.kind, pricing::Kind::kBackendFunction);

  e.kind.reset();
  std::string bytes;
  ledger::encode_event(e, bytes);
  ASSERT_TRUE(ledger::decode_event_head(bytes, head).ok());
  EXPECT_FALSE(head.kind.has_value());
  EXPECT_FALSE(ledger::decode_event_head(std::string_view(bytes).substr(0, 3), head).ok());
}

}  // namespace
}  // namespace credit::server
