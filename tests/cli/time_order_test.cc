// tests/cli/time_order_test.cc
// The order the offline audit and replay read events in: time, then seq, then file order;
// the check that notices a stream out of it, and the sorted reading with its limit.
#include "cli/time_order.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace credit::cli {
namespace {

using ledger::Event;

constexpr std::int64_t kT0 = 1'772'442'000'000;  // 2026-03-02T09:00:00Z

Event charge(std::string account, std::int64_t at_ms, std::uint64_t seq, std::string user) {
  Event e;
  e.seq = seq;
  e.at_ms = at_ms;
  e.account_id = std::move(account);
  e.user_id = std::move(user);
  e.type = ledger::EventType::kCharge;
  e.kind = pricing::Kind::kSendEmail;
  e.credits = Millicredits::from_mc(1'000);
  return e;
}

std::string line(const Event& e) {
  std::string out;
  analytics::append_event_json(out, e);
  return out;
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = testing::TempDir() + "time_order_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(next_++) + ".ndjson";
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int next_ = 0;
  std::string path_;
};

TEST(OrderCheck, EachAccountInTimeThenSeqOrderWhateverTheInterleaving) {
  OrderCheck check;
  EXPECT_TRUE(check.in_order(charge("a", kT0, 5, "u")));
  EXPECT_TRUE(check.in_order(charge("b", kT0 - 1000, 1, "u")));  // another account: its own
  EXPECT_TRUE(check.in_order(charge("a", kT0, 5, "v")));         // the same place: in order
  EXPECT_TRUE(check.in_order(charge("a", kT0, 6, "u")));
  EXPECT_FALSE(check.in_order(charge("a", kT0, 4, "u")));  // same instant, earlier seq
  EXPECT_FALSE(check.in_order(charge("b", kT0 - 2000, 9, "u")));
  EXPECT_TRUE(check.in_order(charge("b", kT0 + 1, 0, "u")));
}

TEST(TimeOrderedReader, ReadsEventsInTimeThenSeqThenFileOrder) {
  // Lines out of order, with a tie of instant and seq (file order decides), a blank line,
  // a bad line and a CRLF line end.
  const std::string text = line(charge("a", kT0 + 2000, 0, "third")) + "\n" +
                           line(charge("b", kT0, 7, "second")) + "\r\n" + "\n" +
                           "{\"not\": \"an event\"}\n" + line(charge("a", kT0, 3, "first")) + "\n" +
                           line(charge("a", kT0 + 2000, 0, "fourth")) + "\n" +
                           line(charge("a", kT0 + 3000, 1, "last"));  // no final newline
  TempFile file(text);
  TimeOrderedReader reader(file.path());
  std::vector<std::string> users;
  ASSERT_TRUE(reader.run([](const Event&) { return true; },
                         [&](const Event& e) { users.push_back(e.user_id); }, nullptr))
      << reader.problem();
  EXPECT_EQ(users, (std::vector<std::string>{"first", "second", "third", "fourth", "last"}));
  EXPECT_EQ(reader.error_count(), 1u);
  ASSERT_EQ(reader.errors().size(), 1u);
  EXPECT_EQ(reader.errors()[0].line, 4u);
}

TEST(TimeOrderedReader, SortsAtMostItsLimitOfTheEventsKept) {
  std::string text;
  for (int i = 3; i > 0; --i) text += line(charge("a", kT0 + i, 0, "u")) + "\n";
  text += line(charge("other", kT0, 0, "u")) + "\n";
  TempFile file(text);
  auto only_a = [](const Event& e) { return e.account_id == "a"; };
  std::int64_t added = 0;
  TimeOrderedReader three(file.path(), 3);
  EXPECT_TRUE(three.run(
      only_a, [&](const Event&) { ++added; }, nullptr));
  EXPECT_EQ(added, 3);
  added = 0;
  TimeOrderedReader two(file.path(), 2);
  EXPECT_FALSE(two.run(
      only_a, [&](const Event&) { ++added; }, nullptr));
  EXPECT_EQ(added, 0);
  EXPECT_NE(two.problem().find("at most 2 events"), std::string::npos) << two.problem();
}

TEST(TimeOrderedReader, AMissingFileIsAProblem) {
  TimeOrderedReader reader(testing::TempDir() + "no-such-file.ndjson");
  EXPECT_FALSE(reader.run([](const Event&) { return true; }, [](const Event&) {}, nullptr));
  EXPECT_FALSE(reader.problem().empty());
}

}  // namespace
}  // namespace credit::cli
