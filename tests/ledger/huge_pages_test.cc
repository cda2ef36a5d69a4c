// tests/ledger/huge_pages_test.cc
// The memory helpers of ledger/internal/huge_pages.h that the ledger thread leaves to a
// background thread: faulting a mapping in by touch (no byte changes, every page becomes
// resident) and unmapping one later (nothing is unmapped until the job runs; then all of
// it is).
#include "ledger/internal/huge_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <functional>
#include <vector>

namespace credit::ledger {
namespace {

constexpr std::size_t kMappingBytes = 4 * kHugePageBytes;
constexpr std::size_t kPageBytes = 4096;

std::size_t resident_pages(void* at, std::size_t bytes) {
  std::vector<unsigned char> in(bytes / kPageBytes);
  EXPECT_EQ(::mincore(at, bytes, in.data()), 0);
  std::size_t n = 0;
  for (unsigned char c : in) n += c & 1;
  return n;
}

// msync fails with ENOMEM on a range that is not mapped.
bool mapped(void* at, std::size_t bytes) {
  errno = 0;
  return ::msync(at, bytes, MS_ASYNC) == 0 || errno != ENOMEM;
}

TEST(HugePages, FaultInByTouchKeepsEveryByteAndMakesEveryPageResident) {
  auto* at = static_cast<unsigned char*>(map_huge(kMappingBytes));
  // A few pages written before, as when another thread already uses part of the buffer.
  for (std::size_t i = 0; i < kMappingBytes; i += 3 * kPageBytes + 17) {
    at[i] = static_cast<unsigned char>(i % 251 + 1);
  }
  fault_in_by_touch(at, kMappingBytes);
  EXPECT_EQ(resident_pages(at, kMappingBytes), kMappingBytes / kPageBytes);
  for (std::size_t i = 0; i < kMappingBytes; ++i) {
    const bool written = i % (3 * kPageBytes + 17) == 0;
    ASSERT_EQ(at[i], written ? static_cast<unsigned char>(i % 251 + 1) : 0) << i;
  }
  unmap_huge(at, kMappingBytes);
}

TEST(HugePages, UnmapLaterUnmapsOnlyWhenTheBackgroundJobRuns) {
  std::vector<std::function<void()>> held;
  const Background background = [&held](std::function<void()> job) {
    held.push_back(std::move(job));
  };
  auto* at = static_cast<unsigned char*>(map_huge(kMappingBytes));
  fault_in_by_touch(at, kMappingBytes);
  unmap_huge_later(background, at, kMappingBytes);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_TRUE(mapped(at, kMappingBytes));  // given up, but not yet unmapped
  held.front()();
  EXPECT_FALSE(mapped(at, kMappingBytes));
  EXPECT_FALSE(mapped(at + kMappingBytes - kPageBytes, kPageBytes));
}

TEST(HugePages, UnmapLaterWithoutABackgroundThreadUnmapsAtOnce) {
  auto* at = static_cast<unsigned char*>(map_huge(kMappingBytes));
  fault_in_by_touch(at, kMappingBytes);
  unmap_huge_later(nullptr, at, kMappingBytes);
  EXPECT_FALSE(mapped(at, kMappingBytes));
}

}  // namespace
}  // namespace credit::ledger
