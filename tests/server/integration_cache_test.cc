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
  ASSERT_NE(cache.get("a", kKind, "k1", 0), nullptr);  // k1 is now a's most recent
  cache.put("a", kKind, "k3", entry_of(400));
  EXPECT_EQ(cache.get("a", kKind, "k2", 0), nullptr);  // the account's least recent went
  EXPECT_NE(cache.get("a", kKind, "k1", 0), nullptr);
  EXPECT_NE(cache.get("a", kKind, "k3", 0), nullptr);
  EXPECT_NE(cache.get("other", kKind, "o1", 0), nullptr);  // another account's stays
  EXPECT_LE(cache.account_bytes("a"), 1000u);
  EXPECT_EQ(cache.bytes(), cache.account_bytes("a") + cache.account_bytes("other"));
}

TEST(IntegrationCache, AnEntryLargerThanTheQuotaIsNotKept) {
  IntegrationCache cache(1 << 20, 100);
  cache.put("a", kKind, "small", entry_of(10));
  cache.put("a", kKind, "big", entry_of(200));
  EXPECT_EQ(cache.get("a", kKind, "big", 0), nullptr);
  EXPECT_NE(cache.get("a", kKind, "small", 0), nullptr);
}

TEST(IntegrationCache, TheGlobalBudgetEvictsTheLeastRecentOfAnyAccount) {
  IntegrationCache cache(1000);
  cache.put("a", kKind, "k1", entry_of(400));
  cache.put("b", kKind, "k1", entry_of(400));
  cache.put("c", kKind, "k1", entry_of(400));
  EXPECT_EQ(cache.get("a", kKind, "k1", 0), nullptr);
  EXPECT_EQ(cache.account_bytes("a"), 0u);
  EXPECT_NE(cache.get("b", kKind, "k1", 0), nullptr);
  EXPECT_NE(cache.get("c", kKind, "k1", 0), nullptr);
  EXPECT_LE(cache.bytes(), 1000u);
}

TEST(IntegrationCache, ReplacingAnEntryCountsItsBytesOnce) {
  IntegrationCache cache(1 << 20, 1000);
  cache.put("a", kKind, "k", entry_of(300));
  cache.put("a", kKind, "k", entry_of(500));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), cache.account_bytes("a"));
  EXPECT_EQ(cache.get("a", kKind, "k", 0)->response_json.size(), 500u);
}

}  // namespace
}  // namespace credit::policy
