// tests/server/integration_cache_test.cc
// The integration cache's bounds (src/policy/cache.h): the global LRU budget and the
// per-account quota, under which an account loses only its own oldest entries.
#include <gtest/gtest.h>

#include <string>

#include "policy/cache.h"

namespace credit::policy {
namespace {

CacheEntry entry_of(std::size_t bytes) {
  CacheEntry e;
  e.response_json = std::string(bytes, 'x');
  e.expires_at_ms = 1'000'000;
  return e;
}

constexpr std::string_view kKind = "integration.invoke_llm";

TEST(IntegrationCache, AnAccountOverItsQuotaLosesItsOwnOldestEntriesOnly) {
  IntegrationCache cache(1 << 20, 1000);
  cache.put("other", kKind, "o1", entry_of(400));
  cache.put("a", kKind, "k1", entry_of(400));
  cache.put("a", kKind, "k2", entry_of(400));
  ASSERT_NE(cache.peek("a", kKind, "k1", 0), nullptr);
  cache.touch("a", kKind, "k1");  // a hit: k1 is now a's most recent
  cache.put("a", kKind, "k3", entry_of(400));
  EXPECT_EQ(cache.peek("a", kKind, "k2", 0), nullptr);  // the account's least recent went
  EXPECT_NE(cache.peek("a", kKind, "k1", 0), nullptr);
  EXPECT_NE(cache.peek("a", kKind, "k3", 0), nullptr);
  EXPECT_NE(cache.peek("other", kKind, "o1", 0), nullptr);  // another account's stays
  EXPECT_LE(cache.account_bytes("a"), 1000u);
  EXPECT_EQ(cache.bytes(), cache.account_bytes("a") + cache.account_bytes("other"));
}

TEST(IntegrationCache, AnAccountOverItsQuotaFreesItsOwnBytesBeforeTheGlobalBudgetEvicts) {
  // Budget 1000, quota 600: x holds 2 x ~200, y ~300; y's second ~300 puts y over its
  // quota and the whole cache over budget. y's own oldest entry goes first, which brings
  // the total under budget: none of x's entries has to go.
  IntegrationCache cache(1000, 600);
  cache.put("x", kKind, "a", entry_of(200));
  cache.put("x", kKind, "c", entry_of(200));
  cache.put("y", kKind, "d", entry_of(300));
  cache.put("y", kKind, "e", entry_of(300));
  EXPECT_EQ(cache.peek("y", kKind, "d", 0), nullptr);
  EXPECT_NE(cache.peek("y", kKind, "e", 0), nullptr);
  EXPECT_NE(cache.peek("x", kKind, "a", 0), nullptr);
  EXPECT_NE(cache.peek("x", kKind, "c", 0), nullptr);
  EXPECT_LE(cache.bytes(), 1000u);
  EXPECT_LE(cache.account_bytes("y"), 600u);
}

TEST(IntegrationCache, AnEntryLargerThanTheQuotaIsNotKept) {
  IntegrationCache cache(1 << 20, 100);
  cache.put("a", kKind, "small", entry_of(10));
  cache.put("a", kKind, "big", entry_of(200));
  EXPECT_EQ(cache.peek("a", kKind, "big", 0), nullptr);
  EXPECT_NE(cache.peek("a", kKind, "small", 0), nullptr);
}

TEST(IntegrationCache, TheGlobalBudgetEvictsTheLeastRecentOfAnyAccount) {
  IntegrationCache cache(1000);
  cache.put("a", kKind, "k1", entry_of(400));
  cache.put("b", kKind, "k1", entry_of(400));
  cache.put("c", kKind, "k1", entry_of(400));
  EXPECT_EQ(cache.peek("a", kKind, "k1", 0), nullptr);
  EXPECT_EQ(cache.account_bytes("a"), 0u);
  EXPECT_NE(cache.peek("b", kKind, "k1", 0), nullptr);
  EXPECT_NE(cache.peek("c", kKind, "k1", 0), nullptr);
  EXPECT_LE(cache.bytes(), 1000u);
}

TEST(IntegrationCache, ReplacingAnEntryCountsItsBytesOnce) {
  IntegrationCache cache(1 << 20, 1000);
  cache.put("a", kKind, "k", entry_of(300));
  cache.put("a", kKind, "k", entry_of(500));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), cache.account_bytes("a"));
  EXPECT_EQ(cache.peek("a", kKind, "k", 0)->response_json.size(), 500u);
}

TEST(IntegrationCache, ALookUpChangesNothingAHitMovesTheEntryUp) {
  // The order follows what the log holds (puts, and hits marked with touch), never reads,
  // so a restart rebuilds the same cache (found by an audit: reads reordered it, and a
  // crash brought back an entry evicted after them).
  IntegrationCache cache(1000);
  cache.put("a", kKind, "k1", entry_of(400));
  cache.put("a", kKind, "k2", entry_of(400));
  ASSERT_NE(cache.peek("a", kKind, "k1", 0), nullptr);  // a read: k1 stays the oldest
  cache.put("a", kKind, "k3", entry_of(400));
  EXPECT_EQ(cache.peek("a", kKind, "k1", 0), nullptr);
  cache.touch("a", kKind, "k2");  // a hit: k2 is the most recent, k3 the oldest
  cache.put("a", kKind, "k4", entry_of(400));
  EXPECT_EQ(cache.peek("a", kKind, "k3", 0), nullptr);
  EXPECT_NE(cache.peek("a", kKind, "k2", 0), nullptr);
  // An expired entry is never answered, and a look-up leaves it where it is.
  EXPECT_EQ(cache.peek("a", kKind, "k2", 1'000'000), nullptr);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(IntegrationCache, AnEntryThatCannotFitReplacesNothing) {
  IntegrationCache cache(1 << 20, 100);
  cache.put("a", kKind, "k", entry_of(10));
  EXPECT_FALSE(cache.fits("a", kKind, "k", 200));
  cache.put("a", kKind, "k", entry_of(200));
  ASSERT_NE(cache.peek("a", kKind, "k", 0), nullptr);
  EXPECT_EQ(cache.peek("a", kKind, "k", 0)->response_json.size(), 10u);
}

}  // namespace
}  // namespace credit::policy
