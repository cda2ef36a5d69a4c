// tests/analytics/loops_test.cc
// Regression loops, hand-computed: at least 3 turns within 24 h of the first, more than
// half fixes, at least 30 credits; each turn in at most one loop.
#include "analytics/loops.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace credit::analytics {
namespace {

constexpr std::int64_t kT0 = 1'772'442'000'000;  // 2026-03-02T09:00:00Z

LoopTurn turn(std::int64_t at_ms, std::int64_t credits_mc, bool fix, std::string snapshot = "",
              std::string feature = "") {
  LoopTurn t;
  t.at_ms = at_ms;
  t.credits = Millicredits::from_mc(credits_mc);
  t.fix = fix;
  t.snapshot_id = std::move(snapshot);
  t.feature = std::move(feature);
  return t;
}

struct LoopRun {
  std::vector<Loop> loops;
  LoopDetector detector;
  void add(const std::string& file, const LoopTurn& t) {
    detector.add(file, t, [this](const Loop& l) { loops.push_back(l); });
  }
  std::vector<Loop>& finish() {
    detector.finish([this](const Loop& l) { loops.push_back(l); });
    return loops;
  }
};

TEST(Loops, ThreeTurnsWithTwoFixesAndThirtyCreditsAreALoop) {
  LoopRun r;
  r.add("src/Checkout.jsx", turn(kT0, 12'000, false, "snap-1", "checkout"));
  r.add("src/Checkout.jsx", turn(kT0 + kMsPerHour, 10'000, true, "snap-2", "checkout"));
  r.add("src/Checkout.jsx", turn(kT0 + 2 * kMsPerHour, 8'000, true, "snap-3", "checkout"));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].file, "src/Checkout.jsx");
  EXPECT_EQ(loops[0].feature, "checkout");
  EXPECT_EQ(loops[0].turns, 3);
  EXPECT_EQ(loops[0].fixes, 2);
  EXPECT_EQ(loops[0].credits.mc(), 30'000);
  EXPECT_EQ(loops[0].waste.mc(), 18'000);
  EXPECT_EQ(loops[0].first_at_ms, kT0);
  EXPECT_EQ(loops[0].last_at_ms, kT0 + 2 * kMsPerHour);
  EXPECT_EQ(loops[0].revert_to_snapshot, "snap-1");
}

TEST(Loops, TurnsOnThreeFeaturesWithoutFileAreNoLoop) {
  LoopRun r;
  r.add("", turn(kT0, 20'000, true, "", "checkout"));
  r.add("", turn(kT0 + 1, 20'000, true, "", "search"));
  r.add("", turn(kT0 + 2, 20'000, true, "", "profile"));
  EXPECT_TRUE(r.finish().empty());
}

TEST(Loops, TurnsWithoutFileAreGroupedByFeature) {
  LoopRun r;
  r.add("", turn(kT0, 20'000, true, "s1", "search"));
  r.add("", turn(kT0 + 1, 20'000, true, "s2", "search"));
  r.add("", turn(kT0 + 2, 20'000, true, "s3", "search"));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].file, "");
  EXPECT_EQ(loops[0].feature, "search");
}

TEST(Loops, ATurnExactly24HoursAfterTheFirstIsOutsideTheWindow) {
  LoopRun r;
  r.add("f", turn(kT0, 15'000, true));
  r.add("f", turn(kT0 + kMsPerHour, 15'000, true));
  r.add("f", turn(kT0 + kMsPerDay, 15'000, true));
  EXPECT_TRUE(r.finish().empty());
}

TEST(Loops, ATurnOneMillisecondBefore24HoursIsInside) {
  LoopRun r;
  r.add("f", turn(kT0, 15'000, true));
  r.add("f", turn(kT0 + kMsPerHour, 15'000, true));
  r.add("f", turn(kT0 + kMsPerDay - 1, 15'000, true));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].turns, 3);
}

TEST(Loops, HalfFixesIsNotMoreThanHalf) {
  LoopRun r;
  r.add("f", turn(kT0, 10'000, true));
  r.add("f", turn(kT0 + 1, 10'000, false));
  r.add("f", turn(kT0 + 2, 10'000, true));
  r.add("f", turn(kT0 + 3, 10'000, false));
  EXPECT_TRUE(r.finish().empty());
}

TEST(Loops, BelowThirtyCreditsIsNoLoop) {
  LoopRun r;
  r.add("f", turn(kT0, 10'000, true));
  r.add("f", turn(kT0 + 1, 10'000, true));
  r.add("f", turn(kT0 + 2, 9'999, true));
  EXPECT_TRUE(r.finish().empty());
}

TEST(Loops, EachTurnBelongsToOneLoop) {
  LoopRun r;
  // Loop 1: three fixes in the first day; loop 2 starts after its window.
  for (int i = 0; i < 3; ++i) r.add("f", turn(kT0 + i * kMsPerHour, 10'000, true));
  for (int i = 0; i < 3; ++i) r.add("f", turn(kT0 + kMsPerDay + i * kMsPerHour, 10'000, true));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 2u);
  EXPECT_EQ(loops[0].turns, 3);
  EXPECT_EQ(loops[1].turns, 3);
  EXPECT_EQ(loops[1].first_at_ms, kT0 + kMsPerDay);
}

TEST(Loops, AFailedStartIsDroppedAndTheRunFromTheNextTurnCounts) {
  LoopRun r;
  // From the first turn the 24 h run is s0, s1, s2 with 1 fix: no loop, s0 is dropped.
  // From s1 the run is s1..s4 (all within 24 h of s1) with 3 fixes, 48 credits: a loop.
  r.add("f", turn(kT0, 12'000, false, "s0"));
  r.add("f", turn(kT0 + 20 * kMsPerHour, 12'000, true, "s1"));
  r.add("f", turn(kT0 + 23 * kMsPerHour, 12'000, false, "s2"));
  r.add("f", turn(kT0 + 25 * kMsPerHour, 12'000, true, "s3"));
  r.add("f", turn(kT0 + 26 * kMsPerHour, 12'000, true, "s4"));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].turns, 4);
  EXPECT_EQ(loops[0].fixes, 3);
  EXPECT_EQ(loops[0].revert_to_snapshot, "s1");
}

TEST(Loops, OpenWindowsAreDecidedFilesFirstThenFeaturesEachByName) {
  LoopRun r;
  auto three = [&r](const std::string& file, const std::string& feature, std::int64_t at) {
    for (int i = 0; i < 3; ++i) r.add(file, turn(at + i, 10'000, true, "", feature));
  };
  three("", "search", kT0);
  three("src/b.js", "b", kT0 + 10);
  three("", "auth", kT0 + 20);
  three("src/a.js", "a", kT0 + 30);
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 4u);
  EXPECT_EQ(loops[0].file, "src/a.js");
  EXPECT_EQ(loops[1].file, "src/b.js");
  EXPECT_EQ(loops[2].feature, "auth");
  EXPECT_EQ(loops[3].feature, "search");
}

TEST(Loops, AFileLoopReportsTheFeatureOfItsFirstTurn) {
  LoopRun r;
  r.add("src/cart.js", turn(kT0, 10'000, true, "s1", "cart"));
  r.add("src/cart.js", turn(kT0 + 1, 10'000, true, "s2", "checkout"));
  r.add("src/cart.js", turn(kT0 + 2, 10'000, true, "s3", ""));
  r.add("src/cart.js", turn(kT0 + kMsPerDay, 10'000, true, "s4", ""));
  r.add("src/cart.js", turn(kT0 + kMsPerDay + 1, 10'000, true, "s5", "cart"));
  r.add("src/cart.js", turn(kT0 + kMsPerDay + 2, 10'000, true, "s6", "x"));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 2u);
  EXPECT_EQ(loops[0].feature, "cart");
  EXPECT_EQ(loops[0].revert_to_snapshot, "s1");
  EXPECT_EQ(loops[1].feature, "");
  EXPECT_EQ(loops[1].revert_to_snapshot, "s4");
}

TEST(Loops, AFileIdleForDaysStillFindsItsNextLoop) {
  LoopRun r;
  r.add("f", turn(kT0, 10'000, false, "s0"));
  r.add("g", turn(kT0 + 3 * kMsPerDay, 10'000, false));  // does not touch f's window
  for (int i = 0; i < 3; ++i)
    r.add("f", turn(kT0 + 5 * kMsPerDay + i, 11'000, true, "s" + std::to_string(i + 1)));
  auto& loops = r.finish();
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].file, "f");
  EXPECT_EQ(loops[0].credits.mc(), 33'000);
  EXPECT_EQ(loops[0].revert_to_snapshot, "s1");
}

// The detector as first written (a map of deques keyed "f:" + file or "t:" + feature):
// small enough to be obviously right, and the compact one must report the same loops in
// the same order.
class ModelDetector {
 public:
  void add(const std::string& file, const LoopTurn& turn, std::vector<Loop>& out) {
    if (file.empty() && turn.feature.empty()) return;
    auto& [name, turns] = groups_[file.empty() ? "t:" + turn.feature : "f:" + file];
    name = file;
    settle(name, turns, turn.at_ms, false, out);
    if (turns.size() >= kLoopWindowTurnsMax) settle(name, turns, turn.at_ms, true, out);
    turns.push_back(turn);
  }
  void finish(std::vector<Loop>& out) {
    for (auto& [key, g] : groups_) settle(g.first, g.second, 0, true, out);
  }

 private:
  void settle(const std::string& file, std::deque<LoopTurn>& turns, std::int64_t now_ms, bool all,
              std::vector<Loop>& out) {
    const LoopRules rules;
    while (!turns.empty() && (all || now_ms - turns.front().at_ms >= rules.window_ms)) {
      Loop l;
      l.file = file;
      l.feature = turns.front().feature;
      l.revert_to_snapshot = turns.front().snapshot_id;
      l.first_at_ms = turns.front().at_ms;
      std::size_t n = 0;
      for (const auto& t : turns) {
        if (t.at_ms - l.first_at_ms >= rules.window_ms) break;
        ++n;
        l.fixes += t.fix ? 1 : 0;
        l.credits += t.credits;
        if (n > 1) l.waste += t.credits;
        if (n > 1) l.replay_waste += t.replay_credits;
        l.last_at_ms = t.at_ms;
      }
      l.turns = static_cast<std::int64_t>(n);
      if (l.turns >= rules.turns_min && l.fixes * 2 > l.turns && l.credits >= rules.credits_min) {
        turns.erase(turns.begin(), turns.begin() + static_cast<std::ptrdiff_t>(n));
        out.push_back(l);
      } else {
        turns.pop_front();
      }
    }
  }
  std::map<std::string, std::pair<std::string, std::deque<LoopTurn>>> groups_;
};

void expect_same(const std::vector<Loop>& got, const std::vector<Loop>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].file, want[i].file);
    EXPECT_EQ(got[i].feature, want[i].feature);
    EXPECT_EQ(got[i].turns, want[i].turns);
    EXPECT_EQ(got[i].fixes, want[i].fixes);
    EXPECT_EQ(got[i].credits.mc(), want[i].credits.mc());
    EXPECT_EQ(got[i].waste.mc(), want[i].waste.mc());
    EXPECT_EQ(got[i].replay_waste.mc(), want[i].replay_waste.mc());
    EXPECT_EQ(got[i].first_at_ms, want[i].first_at_ms);
    EXPECT_EQ(got[i].last_at_ms, want[i].last_at_ms);
    EXPECT_EQ(got[i].revert_to_snapshot, want[i].revert_to_snapshot);
  }
}

TEST(Loops, RandomStreamsGiveTheModelsLoopsInTheModelsOrder) {
  const std::vector<std::string> files = {"",    "", "src/a.js", "src/b.js", "src/zz/long/path.jsx",
                                          "A.js"};
  const std::vector<std::string> features = {"", "auth", "search", "cart", "a-much-longer-name"};
  std::size_t loops_seen = 0;
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::uint32_t n) { return static_cast<std::size_t>(rng() % n); };
    LoopRun r;
    ModelDetector model;
    std::vector<Loop> want;
    std::int64_t at = kT0;
    const std::size_t events = 20 + pick(400);
    const std::size_t copy_at = pick(static_cast<std::uint32_t>(events));
    for (std::size_t i = 0; i < events; ++i) {
      // Mostly bursts within the hour, sometimes a gap of up to two days.
      at += pick(10) == 0 ? static_cast<std::int64_t>(pick(2 * kMsPerDay))
                          : static_cast<std::int64_t>(pick(kMsPerHour));
      LoopTurn t = turn(at, 1'000 + static_cast<std::int64_t>(pick(20'000)), pick(3) != 0,
                        pick(4) == 0 ? "" : "snap-" + std::to_string(i),
                        features[pick(static_cast<std::uint32_t>(features.size()))]);
      t.replay_credits = Millicredits::from_mc(static_cast<std::int64_t>(pick(5'000)));
      const std::string& file = files[pick(static_cast<std::uint32_t>(files.size()))];
      r.add(file, t);
      model.add(file, t, want);
      if (i == copy_at) {
        // The online routes decide the open windows on a copy while the stream goes on.
        LoopDetector copy = r.detector;
        ModelDetector model_copy = model;
        std::vector<Loop> got_copy = r.loops, want_copy = want;
        copy.finish([&got_copy](const Loop& l) { got_copy.push_back(l); });
        model_copy.finish(want_copy);
        expect_same(got_copy, want_copy);
        // peek() reports what finish() would, without deciding anything.
        std::vector<Loop> peeked = r.loops;
        r.detector.peek([&peeked](const Loop& l) { peeked.push_back(l); });
        expect_same(peeked, want_copy);
      }
    }
    model.finish(want);
    expect_same(r.finish(), want);
    loops_seen += want.size();
  }
  EXPECT_GT(loops_seen, 1000u);  // the streams do find loops
}

TEST(Loops, ABurstOverTheWindowCapIsCutLikeTheModel) {
  LoopRun r;
  ModelDetector model;
  std::vector<Loop> want;
  for (std::size_t i = 0; i < 3 * kLoopWindowTurnsMax + 7; ++i) {
    LoopTurn t =
        turn(kT0 + static_cast<std::int64_t>(i), 100, i % 3 != 0, "s" + std::to_string(i), "burst");
    r.add(i % 2 == 0 ? "f" : "", t);
    model.add(i % 2 == 0 ? "f" : "", t, want);
  }
  model.finish(want);
  auto& got = r.finish();
  EXPECT_GE(got.size(), 4u);
  expect_same(got, want);
}

// Refunds (DESIGN.md: "Refunds are subtracted"): a detector told of refunds as they come,
// within its hold, finds the loops of the stream whose turns cost their net credits.

constexpr std::int64_t kHoldMs = 32 * kMsPerDay;

TEST(Loops, ARefundThatTakesARunUnderThirtyCreditsEndsTheLoop) {
  LoopDetector d(LoopRules{}, kHoldMs);
  std::vector<Loop> loops;
  auto sink = [&loops](const Loop& l) { loops.push_back(l); };
  for (std::uint64_t i = 0; i < 3; ++i) {
    LoopTurn t = turn(kT0 + static_cast<std::int64_t>(i) * kMsPerHour, i == 0 ? 12'000 : 9'000,
                      true, "s" + std::to_string(i));
    t.ref = i + 1;
    d.add("f", t, sink);
  }
  // Two days on, the window is closed, but the decision waits for refunds.
  d.add("f", turn(kT0 + 2 * kMsPerDay, 1'000, false), sink);
  EXPECT_TRUE(loops.empty());
  std::vector<Loop> peeked;
  d.peek([&peeked](const Loop& l) { peeked.push_back(l); });
  ASSERT_EQ(peeked.size(), 1u);  // 12 + 9 + 9 = 30
  d.refund("f", "", 2, Millicredits::from_mc(500));
  d.refund("g", "", 2, Millicredits::from_mc(500));  // another file: nothing
  d.finish(sink);
  EXPECT_TRUE(loops.empty());  // 29.5 credits
}

TEST(Loops, ARefundAfterTheHoldChangesNothing) {
  LoopDetector d(LoopRules{}, kMsPerDay);  // a one-day hold
  std::vector<Loop> loops;
  auto sink = [&loops](const Loop& l) { loops.push_back(l); };
  for (std::uint64_t i = 0; i < 3; ++i) {
    LoopTurn t = turn(kT0 + static_cast<std::int64_t>(i), 10'000, true);
    t.ref = i + 1;
    d.add("f", t, sink);
  }
  d.add("f", turn(kT0 + 2 * kMsPerDay, 1'000, false), sink);  // window + hold are over
  ASSERT_EQ(loops.size(), 1u);
  d.refund("f", "", 2, Millicredits::from_mc(5'000));
  d.finish(sink);
  ASSERT_EQ(loops.size(), 1u);
  EXPECT_EQ(loops[0].credits.mc(), 30'000);
}

TEST(Loops, RandomStreamsWithRefundsGiveTheLoopsOfTheNetStream) {
  const std::vector<std::string> files = {"", "src/a.js", "src/b.js"};
  const std::vector<std::string> features = {"", "auth", "cart"};
  std::size_t loops_seen = 0, refunds_seen = 0;
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::uint32_t n) { return static_cast<std::size_t>(rng() % n); };
    struct Item {
      std::int64_t at_ms;
      bool is_refund;
      std::size_t turn;  // index into turns
      std::int64_t credits_mc;
    };
    std::vector<std::pair<std::string, LoopTurn>> turns;
    std::vector<Item> items;
    std::int64_t at = kT0;
    const std::size_t n = 20 + pick(300);
    for (std::size_t i = 0; i < n; ++i) {
      at += pick(10) == 0 ? static_cast<std::int64_t>(pick(3 * kMsPerDay))
                          : static_cast<std::int64_t>(pick(kMsPerHour));
      LoopTurn t = turn(at, 5'000 + static_cast<std::int64_t>(pick(10'000)), pick(3) != 0,
                        "snap-" + std::to_string(i),
                        features[pick(static_cast<std::uint32_t>(features.size()))]);
      t.ref = i + 1;
      turns.emplace_back(files[pick(static_cast<std::uint32_t>(files.size()))], t);
      items.push_back({at, false, i, 0});
      // Some turns get one or two partial refunds within the hold.
      std::int64_t left = t.credits.mc();
      for (int k = 0; k < 2 && pick(4) == 0; ++k) {
        const std::int64_t back =
            1 + static_cast<std::int64_t>(pick(static_cast<std::uint32_t>(left)));
        left -= back;
        items.push_back({at + static_cast<std::int64_t>(pick(static_cast<std::uint32_t>(kHoldMs))),
                         true, i, back});
        if (left == 0) break;
      }
    }
    // In time order, a turn before the refunds of its instant.
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      return a.at_ms < b.at_ms || (a.at_ms == b.at_ms && !a.is_refund && b.is_refund);
    });
    std::vector<Loop> got;
    LoopDetector d(LoopRules{}, kHoldMs);
    auto sink = [&got](const Loop& l) { got.push_back(l); };
    std::vector<LoopTurn> net;
    for (const auto& [file, t] : turns) net.push_back(t);
    for (const Item& item : items) {
      const auto& [file, t] = turns[item.turn];
      if (item.is_refund) {
        d.refund(file, t.feature, t.ref, Millicredits::from_mc(item.credits_mc));
        net[item.turn].credits -= Millicredits::from_mc(item.credits_mc);
        ++refunds_seen;
      } else {
        d.add(file, t, sink);
      }
    }
    d.finish(sink);
    // The model, fed every turn at its net credits (no refund, no hold).
    ModelDetector model;
    std::vector<Loop> want;
    for (std::size_t i = 0; i < turns.size(); ++i) {
      LoopTurn t = net[i];
      t.replay_credits = Millicredits::zero();
      model.add(turns[i].first, t, want);
    }
    model.finish(want);
    auto order = [](std::vector<Loop>& v) {
      std::sort(v.begin(), v.end(), [](const Loop& a, const Loop& b) {
        return std::tie(a.first_at_ms, a.file, a.feature) <
               std::tie(b.first_at_ms, b.file, b.feature);
      });
    };
    for (Loop& l : got) l.replay_waste = Millicredits::zero();
    order(got);
    order(want);
    expect_same(got, want);
    loops_seen += want.size();
  }
  EXPECT_GT(loops_seen, 200u);
  EXPECT_GT(refunds_seen, 1000u);
}

}  // namespace
}  // namespace credit::analytics
