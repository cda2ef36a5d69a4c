// tests/base/id_index_test.cc: IdIndex finds every id it was given by the owner's compare,
// across growth and with ids whose hashes collide, and finds nothing it was not given.
#include "base/id_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace credit {
namespace {

TEST(IdIndex, FindsEveryIdAcrossGrowthAndNothingElse) {
  IdIndex index;
  std::vector<std::string> ids;
  auto find = [&](const std::string& id) {
    return index.find(IdIndex::hash_of(id), [&](std::uint32_t n) { return ids_equal(ids[n], id); });
  };
  EXPECT_EQ(find("acct-1"), IdIndex::kNone);  // empty
  for (int i = 0; i < 5'000; ++i) {
    const std::string id = "acct-" + std::to_string(i);
    ASSERT_EQ(find(id), IdIndex::kNone);
    index.insert(IdIndex::hash_of(id), static_cast<std::uint32_t>(ids.size()));
    ids.push_back(id);
  }
  EXPECT_EQ(index.size(), 5'000u);
  for (std::uint32_t n = 0; n < ids.size(); ++n) EXPECT_EQ(find(ids[n]), n);
  EXPECT_EQ(find("acct-5000"), IdIndex::kNone);
  EXPECT_EQ(find(""), IdIndex::kNone);
}

// Ids given the same hash are told apart by the owner's compare, in probe order.
TEST(IdIndex, CollidingHashesAreToldApartByTheCompare) {
  IdIndex index;
  const std::vector<std::string> ids = {"a", "b", "c", "d"};
  for (std::uint32_t n = 0; n < ids.size(); ++n) index.insert(42, n);
  for (std::uint32_t n = 0; n < ids.size(); ++n) {
    EXPECT_EQ(index.find(42, [&](std::uint32_t i) { return ids[i] == ids[n]; }), n);
  }
  EXPECT_EQ(index.find(42, [](std::uint32_t) { return false; }), IdIndex::kNone);
  EXPECT_EQ(index.find(43, [](std::uint32_t) { return true; }), IdIndex::kNone);
}

// The hash is deterministic and spreads short ids over the low bits a table masks.
TEST(IdIndex, HashIsStableAndSpreadsShortIds) {
  EXPECT_EQ(IdIndex::hash_of("acct-1"), IdIndex::hash_of(std::string("acct-1")));
  EXPECT_NE(IdIndex::hash_of("acct-1"), IdIndex::hash_of("acct-2"));
  EXPECT_NE(IdIndex::hash_of(""), IdIndex::hash_of(std::string_view("\0", 1)));
  std::vector<std::uint64_t> low;
  for (int i = 0; i < 64; ++i) low.push_back(IdIndex::hash_of("u" + std::to_string(i)) & 63);
  std::sort(low.begin(), low.end());
  EXPECT_GT(std::unique(low.begin(), low.end()) - low.begin(), 30);  // not clustered
}

}  // namespace
}  // namespace credit
