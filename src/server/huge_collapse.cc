#include "server/huge_collapse.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

namespace credit::server {
namespace {

constexpr std::uintptr_t kHugePageBytes = std::uintptr_t{2} << 20;

struct Range {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
};

// The ranges to collapse, from /proc/self/smaps: each mapping's header line, then its
// "Rss:" line.
std::vector<Range> chosen_ranges() {
  std::vector<Range> out;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  Range mapping;
  bool candidate = false;
  while (std::getline(smaps, line)) {
    unsigned long begin = 0;
    unsigned long end = 0;
    char perms[5] = {};
    unsigned long offset = 0;
    char dev[16] = {};
    unsigned long inode = 0;
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %lx %15s %lu %n", &begin, &end, perms, &offset, dev,
                    &inode, &path_at) >= 6) {
      const std::string path = path_at > 0 ? line.substr(static_cast<std::size_t>(path_at)) : "";
      // Private, writable, anonymous (no file, or the brk heap).
      candidate = perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p' && inode == 0 &&
                  (path.empty() || path == "[heap]") && end - begin >= kCollapseMappingBytesMin;
      mapping = Range{begin, end};
      continue;
    }
    unsigned long rss_kb = 0;
    if (candidate && std::sscanf(line.c_str(), "Rss: %lu kB", &rss_kb) == 1) {
      candidate = false;
      const std::uint64_t size = mapping.end - mapping.begin;
      if (rss_kb * 1024 * 100 < size * kCollapseResidentPercentMin) continue;
      const std::uintptr_t b = (mapping.begin + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
      const std::uintptr_t e = mapping.end & ~(kHugePageBytes - 1);
      if (e > b) out.push_back(Range{b, e});
    }
  }
  return out;
}

}  // namespace

bool collapse_supported() {
  // One aligned huge page of our own, one page of it touched: EINVAL means no MADV_COLLAPSE.
  static const bool supported = [] {
    const std::size_t bytes = 2 * kHugePageBytes;
    void* raw = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return false;
    const auto at =
        (reinterpret_cast<std::uintptr_t>(raw) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    *reinterpret_cast<volatile char*>(at) = 1;
    const bool ok = ::madvise(reinterpret_cast<void*>(at), kHugePageBytes, MADV_COLLAPSE) == 0 ||
                    errno != EINVAL;
    ::munmap(raw, bytes);
    return ok;
  }();
  return supported;
}

CollapseResult collapse_anonymous_memory(const std::atomic<bool>& stop) {
  const auto t0 = std::chrono::steady_clock::now();
  CollapseResult r;
  r.supported = collapse_supported();
  if (r.supported) {
    for (const Range& range : chosen_ranges()) {
      for (std::uintptr_t at = range.begin; at < range.end && !stop.load();
           at += kCollapseStepBytes) {
        const std::uintptr_t step = std::min<std::uintptr_t>(kCollapseStepBytes, range.end - at);
        r.bytes_tried += step;
        // The mapping may have changed since smaps was read (freed, moved), or memory may
        // be short: a failure is counted, never fatal.
        if (::madvise(reinterpret_cast<void*>(at), step, MADV_COLLAPSE) != 0)
          r.bytes_failed += step;
      }
    }
  }
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace credit::server
