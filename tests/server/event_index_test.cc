// tests/server/event_index_test.cc
// The per-account index of the event log: what goes in comes back, per account, in seq
// order, read from the log by its place.
#include "server/event_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "engine_test_support.h"
#include "ledger/event_codec.h"
#include "store/event_log.h"
#include "time/time.h"

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

// An event log in a temporary directory and the index of what it holds.
class Indexed {
 public:
  explicit Indexed(store::EventLogOptions options = {}) {
    auto log = store::EventLog::open(
        dir_.path(), options, [](std::uint64_t, std::int64_t, std::string_view, store::EventPlace) {
          return ok_status();
        });
    EXPECT_TRUE(log.ok());
    log_ = std::move(*log);
    index.attach(log_.get());
  }
  // Logs the event and indexes its place, as the engine does.
  bool add(const ledger::Event& e) {
    std::string bytes;
    ledger::encode_event(e, bytes);
    auto place = log_->append(e.seq, e.at_ms, bytes);
    EXPECT_TRUE(place.ok());
    return index.append(e.account_id, e.seq, *place);
  }
  store::EventLog& log() { return *log_; }
  EventIndex index;

 private:
  test_support::TempDir dir_;
  std::unique_ptr<store::EventLog> log_;
};

TEST(EventIndex, KeepsEachAccountsEventsInSeqOrderAndDecodesThemBack) {
  Indexed x;
  EventIndex& index = x.index;
  ASSERT_TRUE(x.add(charge(1, "acct_a", "a.ts")));
  ASSERT_TRUE(x.add(charge(2, "acct_b", "b.ts")));
  ASSERT_TRUE(x.add(charge(5, "acct_a", "c.ts")));
  EXPECT_EQ(index.size(), 3u);

  auto a = index.events_of("acct_a");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].seq, 1u);
  EXPECT_EQ(a[1].seq, 5u);
  ledger::Event out;
  ASSERT_TRUE(index.decode(a[1], out));  // still in the log's write buffer
  EXPECT_EQ(out, charge(5, "acct_a", "c.ts"));
  ASSERT_TRUE(x.log().sync().ok());
  ASSERT_TRUE(index.decode(a[0], out));  // from the file, into a reused Event
  EXPECT_EQ(out, charge(1, "acct_a", "a.ts"));
  std::string bytes;
  ledger::encode_event(charge(5, "acct_a", "c.ts"), bytes);
  EXPECT_EQ(index.bytes_of(a[1]), bytes);  // the log's bytes as they are

  ASSERT_EQ(index.events_of("acct_b").size(), 1u);
  EXPECT_TRUE(index.events_of("acct_none").empty());
  // An entry the log does not hold (another seq at that place) decodes to nothing.
  EXPECT_FALSE(index.decode(EventIndex::Entry{6, a[1].place}, out));
  EventIndex detached;
  EXPECT_FALSE(detached.decode(a[1], out));
}

TEST(EventIndex, RetentionsDeletedSegmentsLeaveTheIndexAndItsMemory) {
  // Three days of events of two accounts; retention deletes the first two days' segments:
  // their entries go (a restart would not index them), the third day's stay and decode.
  store::EventLogOptions options;
  options.retain_days = 1;
  Indexed x(options);
  EventIndex& index = x.index;
  std::uint64_t seq = 1;
  for (int day = 0; day < 3; ++day) {
    for (int i = 0; i < 40; ++i) {
      ledger::Event e = charge(seq++, i % 2 == 0 ? "acct_a" : "acct_b", "f.ts");
      e.at_ms = 1'772'000'000'000 + day * kMsPerDay + i;
      ASSERT_TRUE(x.add(e));
    }
  }
  ASSERT_TRUE(x.log().flush().ok());
  const std::uint64_t bytes_before = index.memory_bytes();
  std::vector<store::EventLogDeleted> deleted;
  auto r = x.log().enforce_retention(1'772'000'000'000 + 3 * kMsPerDay + 1, &deleted);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(*r, 2u);
  ASSERT_EQ(deleted.size(), 2u);
  EXPECT_LT(deleted[0].day_start_ms, deleted[1].day_start_ms);
  std::vector<std::uint32_t> numbers = {deleted[0].number, deleted[1].number};
  std::sort(numbers.begin(), numbers.end());
  EXPECT_EQ(index.drop_segments(numbers), 80u);
  EXPECT_EQ(index.size(), 40u);
  EXPECT_LT(index.memory_bytes(), bytes_before);  // lists under half full shrank
  for (const char* account : {"acct_a", "acct_b"}) {
    auto list = index.events_of(account);
    ASSERT_EQ(list.size(), 20u) << account;
    ledger::Event out;
    for (const EventIndex::Entry& e : list) {
      EXPECT_GT(e.seq, 80u);
      EXPECT_TRUE(index.decode(e, out)) << e.seq;
    }
  }
  EXPECT_EQ(index.drop_segments({}), 0u);
}

TEST(EventIndex, HoldsSixteenBytesAnEventAndReadsLargeOnesBack) {
  Indexed x;
  EventIndex& index = x.index;
  // 70,000 events of about 100 bytes, and one of 900 KB of metadata.
  for (std::uint64_t seq = 1; seq <= 70'000; ++seq) {
    ASSERT_TRUE(x.add(charge(seq, "acct_" + std::to_string(seq % 3), "src/page.tsx")));
  }
  const std::string big_file(900'000, 'f');
  ASSERT_TRUE(x.add(charge(70'001, "acct_1", big_file)));
  ASSERT_TRUE(x.add(charge(70'002, "acct_1", "after.ts")));

  auto list = index.events_of("acct_1");
  ASSERT_EQ(list.size(), 23'336u);  // seq 1, 4, ..., 69'997 (23'334 of them), then two
  ledger::Event out;
  ASSERT_TRUE(index.decode(list[list.size() - 2], out));
  EXPECT_EQ(out.metadata.file, big_file);
  ASSERT_TRUE(index.decode(list.back(), out));
  EXPECT_EQ(out, charge(70'002, "acct_1", "after.ts"));
  ASSERT_TRUE(index.decode(list.front(), out));
  EXPECT_EQ(out, charge(1, "acct_1", "src/page.tsx"));
  // Only the lists: 16 bytes an entry, at most twice that with the vectors' growth.
  EXPECT_GE(index.memory_bytes(), 70'002u * sizeof(EventIndex::Entry));
  EXPECT_LT(index.memory_bytes(), 2 * 70'002u * sizeof(EventIndex::Entry) + 3 * 4096);
}

TEST(EventIndex, ALoadDealsEntriesToTheSameListsAsAppendsInSeqOrder) {
  // A start's load: log order, one account's imported day read before later days' events
  // (seq out of order), then appends after the load as live batches make them.
  Indexed live;
  EventIndex loaded;
  loaded.attach(&live.log());
  std::vector<std::uint64_t> seqs;
  for (std::uint64_t seq = 1; seq <= 3'000; ++seq) seqs.push_back(seq);
  std::swap(seqs[10], seqs[2'000]);  // acct_1's 2,001 comes before its 11
  std::swap(seqs[11], seqs[2'500]);
  std::sort(seqs.begin(), seqs.begin() + 10);
  // The log takes seqs in order; the load reads them in `seqs` order.
  std::vector<store::EventPlace> places(3'001);
  for (std::uint64_t seq = 1; seq <= 3'000; ++seq) {
    ledger::Event e = charge(seq, "acct_" + std::to_string(seq % 4), "f.ts");
    std::string bytes;
    ledger::encode_event(e, bytes);
    auto place = live.log().append(e.seq, e.at_ms, bytes);
    ASSERT_TRUE(place.ok());
    places[seq] = *place;
  }
  loaded.begin_load();
  for (std::uint64_t seq : seqs) {
    ASSERT_TRUE(loaded.append("acct_" + std::to_string(seq % 4), seq, places[seq]));
  }
  EXPECT_TRUE(loaded.events_of("acct_1").empty());  // nothing dealt out before finish_load
  std::vector<EventIndex::Entry> order;
  loaded.finish_load(&order);
  EXPECT_EQ(loaded.size(), 3'000u);
  // The load order, as read: what the engine's sink catch-up feeds in.
  ASSERT_EQ(order.size(), seqs.size());
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(order[i].seq, seqs[i]) << i;
    ASSERT_EQ(order[i].place, places[seqs[i]]) << i;
  }
  ledger::Event out;
  for (int a = 0; a < 4; ++a) {
    auto list = loaded.events_of("acct_" + std::to_string(a));
    ASSERT_EQ(list.size(), 750u);
    for (std::size_t i = 0; i < list.size(); ++i) {
      ASSERT_EQ(list[i].seq, (a == 0 ? 4 : a) + 4 * i) << a;  // every seq, in order
    }
    ASSERT_TRUE(loaded.decode(list[list.size() / 2], out));
    EXPECT_EQ(out, charge(list[list.size() / 2].seq, "acct_" + std::to_string(a), "f.ts"));
  }
  // Appends after the load go straight to the lists.
  std::string bytes;
  ledger::Event later = charge(3'001, "acct_1", "later.ts");
  ledger::encode_event(later, bytes);
  auto place = live.log().append(later.seq, later.at_ms, bytes);
  ASSERT_TRUE(place.ok());
  ASSERT_TRUE(loaded.append(later.account_id, later.seq, *place));
  ASSERT_EQ(loaded.events_of("acct_1").back().seq, 3'001u);
  ASSERT_TRUE(loaded.decode(loaded.events_of("acct_1").back(), out));
  EXPECT_EQ(out, later);
}

TEST(EventIndex, TheHeadOfAnEncodingHoldsWhatTheEventsRouteFiltersOn) {
  Indexed x;
  EventIndex& index = x.index;
  ledger::Event e = charge(9, "acct_a", "x.ts");
  e.user_id = "u42";
  e.type = ledger::EventType::kRefund;
  ASSERT_TRUE(x.add(e));
  ledger::EventHead head;
  ASSERT_TRUE(index.decode_head(index.events_of("acct_a")[0], head));
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

TEST(EventIndex, ALoadLongerThanItsChunksKeepsEveryEntryAndItsOrder) {
  // 600,000 entries: past two of the load's chunks (1 << 18 entries each).
  constexpr std::uint64_t kEvents = 600'000;
  EventIndex index;
  index.begin_load();
  for (std::uint64_t seq = 1; seq <= kEvents; ++seq) {
    ASSERT_TRUE(index.append("acct_" + std::to_string(seq % 3), seq, seq * 100));
  }
  std::vector<EventIndex::Entry> order;
  index.finish_load(&order);
  EXPECT_EQ(index.size(), kEvents);
  ASSERT_EQ(order.size(), kEvents);
  for (std::uint64_t i = 0; i < kEvents; ++i) {
    ASSERT_EQ(order[i].seq, i + 1) << i;
    ASSERT_EQ(order[i].place, (i + 1) * 100) << i;
  }
  for (int a = 0; a < 3; ++a) {
    auto list = index.events_of("acct_" + std::to_string(a));
    ASSERT_EQ(list.size(), kEvents / 3);
    for (std::size_t i = 0; i < list.size(); ++i) {
      ASSERT_EQ(list[i].seq, (a == 0 ? 3 : a) + 3 * i) << a;
      ASSERT_EQ(list[i].place, list[i].seq * 100) << a;
    }
  }
}

}  // namespace
}  // namespace credit::server
