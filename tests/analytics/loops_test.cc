// tests/analytics/loops_test.cc
// Regression loops, hand-computed: at least 3 turns within 24 h of the first, more than
// half fixes, at least 30 credits; each turn in at most one loop.
#include "analytics/loops.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace credit::analytics
