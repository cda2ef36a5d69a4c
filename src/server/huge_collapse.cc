#include "server/huge_collapse.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
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

// Resident bytes of [begin, end), by mincore in pieces so that a stop request is seen
// between them; nullopt when stopped (or when the range is no longer mapped).
std::optional<std::uint64_t> resident_bytes(std::uintptr_t begin, std::uintptr_t end,
                                            const std::atomic<bool>& stop) {
  constexpr std::uintptr_t kPageBytes = 4096;
  constexpr std::uintptr_t kPieceBytes = std::uintptr_t{64} << 20;
  std::vector<unsigned char> pages(kPieceBytes / kPageBytes);
  std::uint64_t resident = 0;
  for (std::uintptr_t at = begin; at < end; at += kPieceBytes) {
    if (stop.load()) return std::nullopt;
    const std::uintptr_t bytes = std::min(kPieceBytes, end - at);
    if (::mincore(reinterpret_cast<void*>(at), bytes, pages.data()) != 0) return std::nullopt;
    const std::size_t n = (bytes + kPageBytes - 1) / kPageBytes;
    for (std::size_t i = 0; i < n; ++i) resident += (pages[i] & 1) * kPageBytes;
  }
  return resident;
}

// The ranges to collapse: the mappings of /proc/self/maps (which, unlike smaps, the kernel
// lists without walking their page tables), then each candidate's resident share by
// mincore. A stop request ends the choice early (nothing chosen).
std::vector<Range> chosen_ranges(const std::atomic<bool>& stop) {
  std::vector<Range> candidates;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long begin = 0;
    unsigned long end = 0;
    char perms[5] = {};
    unsigned long offset = 0;
    char dev[16] = {};
    unsigned long inode = 0;
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %lx %15s %lu %n", &begin, &end, perms, &offset, dev,
                    &inode, &path_at) < 6) {
      continue;
    }
    const std::string path = path_at > 0 ? line.substr(static_cast<std::size_t>(path_at)) : "";
    // Private, writable, anonymous (no file, or the brk heap).
    if (perms[0] == 'r' && perms[1] == 'w' && perms[3] == 'p' && inode == 0 &&
        (path.empty() || path == "[heap]") && end - begin >= kCollapseMappingBytesMin) {
      candidates.push_back(Range{begin, end});
    }
  }
  std::vector<Range> out;
  for (const Range& mapping : candidates) {
    const std::optional<std::uint64_t> resident = resident_bytes(mapping.begin, mapping.end, stop);
    if (!resident) {
      if (stop.load()) return {};
      continue;  // unmapped since maps was read
    }
    const std::uint64_t size = mapping.end - mapping.begin;
    if (*resident * 100 < size * kCollapseResidentPercentMin) continue;
    const std::uintptr_t b = (mapping.begin + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
    const std::uintptr_t e = mapping.end & ~(kHugePageBytes - 1);
    if (e > b) out.push_back(Range{b, e});
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
    for (const Range& range : chosen_ranges(stop)) {
      for (std::uintptr_t at = range.begin; at < range.end && !stop.load();
           at += kCollapseStepBytes) {
        const std::uintptr_t step = std::min<std::uintptr_t>(kCollapseStepBytes, range.end - at);
        r.bytes_tried += step;
        // The mapping may have changed since maps was read (freed, moved), or memory may
        // be short: a failure is counted, never fatal.
        const auto t_step = std::chrono::steady_clock::now();
        if (::madvise(reinterpret_cast<void*>(at), step, MADV_COLLAPSE) != 0)
          r.bytes_failed += step;
        // A step that folded pages held the mapping (and the memory map) while it copied
        // them: the pass then rests as long, so that the ledger thread's page faults and
        // heap growth in that mapping are not queued behind step after step.
        const auto now = std::chrono::steady_clock::now();
        if (now - t_step <= kCollapseStepQuiet) continue;
        for (const auto rest_end = now + (now - t_step);
             !stop.load() && std::chrono::steady_clock::now() < rest_end;) {
          std::this_thread::sleep_for(kCollapseRestSlice);
        }
      }
    }
  }
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace credit::server
