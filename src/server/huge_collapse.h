// src/server/huge_collapse.h
// Folds the process's dense anonymous memory into transparent huge pages
// (madvise(MADV_COLLAPSE), Linux 6.1+), so that the fork of a snapshot copies one page
// table entry per 2 MiB instead of 512: on this project's VM a fork of 1.3 GB of malloc
// heap takes about 30 ms in 4 KiB pages and 1 ms once collapsed. A forked child's
// copy-on-write splits the huge pages the parent then writes, so the engine collapses again
// after each snapshot, on a thread of its own, while charges go on.
// Which memory: private anonymous read-write mappings (the malloc heap and arenas, large
// allocations) of at least kCollapseMappingBytesMin whose resident part is at least
// kCollapseResidentPercentMin of their size, so that sparse mappings (thread stacks,
// reserved tables) are not filled. Owns: choosing ranges and collapsing them. Does not:
// decide when (engine.cc).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace credit::server {

constexpr std::size_t kCollapseMappingBytesMin = std::size_t{4} << 20;
constexpr int kCollapseResidentPercentMin = 75;
// One madvise call covers one huge page: a stop request (a snapshot about to fork) is seen
// within one step and one rest slice, and the memory map is never held long by one call (see the
// populate pieces in ledger/idempotency.cc for what a long hold costs the ledger thread).
constexpr std::size_t kCollapseStepBytes = std::size_t{2} << 20;
// A step that took longer than this folded pages (an already folded range returns at
// once): the pass rests as long as the step took before the next (huge_collapse.cc), in
// slices of kCollapseRestSlice between checks of the stop flag.
constexpr std::chrono::microseconds kCollapseStepQuiet{100};
constexpr std::chrono::milliseconds kCollapseRestSlice{1};

struct CollapseResult {
  bool supported = true;           // false: the kernel has no MADV_COLLAPSE
  std::uint64_t bytes_tried = 0;   // 2 MiB-aligned bytes of the chosen mappings
  std::uint64_t bytes_failed = 0;  // of those, in calls that failed (e.g. memory short)
  double ms = 0;
};

// Whether this kernel has MADV_COLLAPSE (probed once).
bool collapse_supported();
// Collapses the chosen mappings; returns early once `stop` is set.
CollapseResult collapse_anonymous_memory(const std::atomic<bool>& stop);

}  // namespace credit::server
