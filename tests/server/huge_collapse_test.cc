// tests/server/huge_collapse_test.cc
// The heap's dense anonymous memory is folded into huge pages; a stop request ends a
// pass at once; sparse mappings are left alone.
#include "server/huge_collapse.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace credit::server {
namespace {

// AnonHugePages of the whole process, in kB.
std::uint64_t anon_huge_kb() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  std::uint64_t kb = 0;
  while (in >> key) {
    if (key == "AnonHugePages:") {
      in >> kb;
      return kb;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

TEST(HugeCollapse, FoldsADenseHeapAndLeavesASparseMappingAlone) {
  if (!collapse_supported()) GTEST_SKIP() << "no MADV_COLLAPSE on this kernel";
  // 64 MiB of small allocations, all written: the malloc heap, dense.
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < 64 * 1024 * 4; ++i) {
    blocks.emplace_back(new char[256]);
    std::memset(blocks.back().get(), 1, 256);
  }
  // 64 MiB mapped, one page of it written: sparse, never filled by a collapse.
  constexpr std::size_t kSparseBytes = std::size_t{64} << 20;
  void* sparse =
      ::mmap(nullptr, kSparseBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(sparse, MAP_FAILED);
  static_cast<char*>(sparse)[0] = 1;
  const std::uint64_t before_kb = anon_huge_kb();
  std::atomic<bool> stop{false};
  const CollapseResult r = collapse_anonymous_memory(stop);
  EXPECT_TRUE(r.supported);
  EXPECT_GE(r.bytes_tried, std::uint64_t{32} << 20);
  EXPECT_LT(r.bytes_failed, r.bytes_tried);
  EXPECT_GE(anon_huge_kb(), before_kb + 16 * 1024) << "at least 16 MiB folded";
  // The sparse mapping still holds its one page (a collapse would have filled 512).
  std::vector<unsigned char> resident(kSparseBytes / 4096);
  ASSERT_EQ(::mincore(sparse, kSparseBytes, resident.data()), 0);
  std::size_t pages = 0;
  for (unsigned char r : resident) pages += r & 1;
  EXPECT_LE(pages, 16u);
  ::munmap(sparse, kSparseBytes);
}

TEST(HugeCollapse, AStopRequestEndsThePassBeforeItStarts) {
  std::atomic<bool> stop{true};
  const CollapseResult r = collapse_anonymous_memory(stop);
  EXPECT_EQ(r.bytes_tried, 0u);
}

}  // namespace
}  // namespace credit::server
