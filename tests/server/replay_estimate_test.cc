// The estimate of the keys a replay adds (src/server/replay_estimate.h).
#include "server/replay_estimate.h"

#include <gtest/gtest.h>

namespace credit::server {
namespace {

constexpr std::uint64_t kSegment = 64ULL << 20;

TEST(ReplayKeyEstimate, ScalesTheSampledKeysPerByteToTheRestOfTheLog) {
  // Four segments; records of 1 MiB with 10,000 keys each.
  ReplayKeyEstimate e(4 * kSegment, kSegment);
  constexpr std::uint64_t kRecord = 1 << 20;
  for (int i = 0; i < 15; ++i) EXPECT_FALSE(e.add(kRecord, 10'000).has_value()) << i;
  // The 16th MiB completes the sample: this record's keys plus 240 MiB more at the rate.
  const std::optional<std::uint64_t> keys = e.add(kRecord, 10'000);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(*keys, 10'000u + 240u * 10'000u);
  EXPECT_FALSE(e.add(kRecord, 10'000).has_value());  // once
}

TEST(ReplayKeyEstimate, RecordsASnapshotCoversAreNotCounted) {
  ReplayKeyEstimate e(4 * kSegment, kSegment);
  e.skip(2 * kSegment);  // half the log is covered
  for (int i = 0; i < 15; ++i) EXPECT_FALSE(e.add(1 << 20, 100).has_value());
  const std::optional<std::uint64_t> keys = e.add(1 << 20, 100);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(*keys, 100u + 112u * 100u);  // 128 MiB left, 16 already read
}

TEST(ReplayKeyEstimate, ALogOfOneSegmentOrARecordOfNoKeysGivesLittleOrNothing) {
  ReplayKeyEstimate one(kSegment, kSegment);
  for (int i = 0; i < 64; ++i) EXPECT_FALSE(one.add(1 << 20, 1'000).has_value());
  ReplayKeyEstimate none(8 * kSegment, kSegment);
  std::optional<std::uint64_t> keys;
  for (int i = 0; i < 16; ++i) keys = none.add(1 << 20, 0);
  ASSERT_TRUE(keys.has_value());
  EXPECT_EQ(*keys, 0u);
}

}  // namespace
}  // namespace credit::server
