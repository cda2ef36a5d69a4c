// tests/policy/rate_limiter_test.cc: the token buckets refill exactly at per_minute per
// 60 s, however often they are looked at, and say exactly when to retry.
#include "policy/rate_limiter.h"

#include <gtest/gtest.h>

#include <vector>

namespace credit::policy {
namespace {

pricing::PlanRateLimits per_user(std::int64_t per_minute, std::int64_t burst) {
  pricing::PlanRateLimits l;
  l.per_user = pricing::RateLimit{per_minute, burst};
  return l;
}

pricing::PlanRateLimits per_account(std::int64_t per_minute, std::int64_t burst) {
  pricing::PlanRateLimits l;
  l.per_account = pricing::RateLimit{per_minute, burst};
  return l;
}

TEST(RateLimiter, BurstThenRetryAfterIsOneTokenTime) {
  RateLimiter rl;
  auto limits = per_user(20, 20);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(rl.take("A", "u", limits, 1000).allowed) << i;
  RateDecision d = rl.take("A", "u", limits, 1000);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 3000);  // 60,000 ms / 20
}

TEST(RateLimiter, PollingEvery2MsKeepsTheFractionsAndGetsATokenAt3000Ms) {
  RateLimiter rl;
  auto limits = per_user(20, 20);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(rl.take("A", "u", limits, 0).allowed);
  std::int64_t granted_at_ms = -1;
  for (std::int64_t now_ms = 2; now_ms <= 4000; now_ms += 2) {
    RateDecision d = rl.take("A", "u", limits, now_ms);
    if (d.allowed) {
      granted_at_ms = now_ms;
      break;
    }
    EXPECT_EQ(d.retry_after_ms, 3000 - now_ms);
  }
  EXPECT_EQ(granted_at_ms, 3000);
}

TEST(RateLimiter, ChargeEachMsAt100PerMinuteBurst1AllowsEvery600Ms) {
  RateLimiter rl;
  auto limits = per_account(100, 1);
  std::vector<std::int64_t> allowed_at_ms;
  for (std::int64_t now_ms = 0; now_ms < 3000; ++now_ms) {
    if (rl.take("A", "u", limits, now_ms).allowed) allowed_at_ms.push_back(now_ms);
  }
  EXPECT_EQ(allowed_at_ms, (std::vector<std::int64_t>{0, 600, 1200, 1800, 2400}));
}

TEST(RateLimiter, RetryAfterRoundsUpAPartialMs) {
  RateLimiter rl;
  auto limits = per_account(7, 1);  // one token per 8,571.43 ms
  ASSERT_TRUE(rl.take("A", "u", limits, 0).allowed);
  RateDecision d = rl.take("A", "u", limits, 0);
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 8572);
  EXPECT_FALSE(rl.take("A", "u", limits, 8571).allowed);
  EXPECT_TRUE(rl.take("A", "u", limits, 8572).allowed);
}

TEST(RateLimiter, RefillStopsAtBurst) {
  RateLimiter rl;
  auto limits = per_account(60, 2);
  ASSERT_TRUE(rl.take("A", "u", limits, 0).allowed);
  ASSERT_TRUE(rl.take("A", "u", limits, 0).allowed);
  // An hour idle refills two tokens, not sixty.
  EXPECT_TRUE(rl.take("A", "u", limits, 3'600'000).allowed);
  EXPECT_TRUE(rl.take("A", "u", limits, 3'600'000).allowed);
  EXPECT_FALSE(rl.take("A", "u", limits, 3'600'000).allowed);
}

TEST(RateLimiter, TheSmallestTableKeepsTheAccountsBucketWhileMakingTheUsers) {
  // With room for kRateBucketsMin buckets, a request that makes its user's bucket does not
  // evict its account's (found by an audit: with room for one, the account's limit was
  // never kept and the pointer to its bucket dangled).
  RateLimiter rl(kRateBucketsMin);
  pricing::PlanRateLimits limits = per_account(1, 1);
  limits.per_user = pricing::RateLimit{100, 100};
  EXPECT_TRUE(rl.take("A", "u", limits, 1000).allowed);
  EXPECT_FALSE(rl.take("A", "u", limits, 1000).allowed);
  EXPECT_FALSE(rl.take("A", "v", limits, 1000).allowed);  // another user: the account's limit
}

}  // namespace
}  // namespace credit::policy
