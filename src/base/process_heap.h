// src/base/process_heap.h
// malloc settings for a process whose state grows to gigabytes on one thread while other
// threads fault memory in (the idempotency table's next array, the event log's loader).
// Every brk, mmap and munmap takes the process's memory map lock for writing, and waits
// behind a thread that holds it for reading while it faults in and zeroes a huge page
// (a few ms here); the page faults of every other thread then queue behind the waiting
// writer. glibc's defaults grow the heap by brk in steps of 128 KiB: a start replaying
// 10 M commands made ~800 such calls on its replay thread, each one a wait
// (docs/benchmarks.md, "Restart", session 6). During such a bulk load (BulkHeapGrowth) the
// heap grows in large steps instead. Not while serving: a large step leaves the top of the
// heap mapped but untouched, and the snapshot's fork then held the ledger 13-20 ms instead
// of 3-6 ms (docs/benchmarks.md, "Snapshot pause", session 6).
// Owns: the settings. Does not: allocate.
#pragma once

#include <cstddef>

namespace credit {

// Allocations below this come from the heap, not from a mapping of their own (glibc's
// default threshold starts at 128 KiB and adapts up to 32 MiB; changing the heap step
// below turns the adapting off, so the threshold is set).
constexpr std::size_t kMmapThresholdBytes = 32 << 20;
// Free memory at the top of the heap is given back only past this.
constexpr std::size_t kHeapTrimThresholdBytes = 256 << 20;
// The heap's growth beyond each request during a bulk load, and glibc's default.
constexpr std::size_t kHeapTopPadBulkBytes = 64 << 20;
constexpr std::size_t kHeapTopPadDefaultBytes = 128 << 10;

// Applies the thresholds above; call once at the start of main, before other threads
// start. Returns false when the C library refused one (the process works the same).
bool tune_process_heap();

// While one lives, the heap grows in steps of kHeapTopPadBulkBytes (a start replaying the
// log); after, in glibc's default steps again. One at a time.
class BulkHeapGrowth {
 public:
  BulkHeapGrowth();
  ~BulkHeapGrowth();
  BulkHeapGrowth(const BulkHeapGrowth&) = delete;
  BulkHeapGrowth& operator=(const BulkHeapGrowth&) = delete;
};

}  // namespace credit
