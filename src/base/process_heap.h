// src/base/process_heap.h
// malloc settings for a process whose state grows to gigabytes on one thread while other
// threads fault memory in (the idempotency table's next array, the event log's loader).
// Every brk, mmap and munmap takes the process's memory map lock for writing, and waits
// behind a thread that holds it for reading while it faults in and zeroes a huge page
// (a few ms here); the page faults of every other thread then queue behind the waiting
// writer. glibc's defaults grow the heap by brk in steps of 128 KiB: a restart replaying
// 10 M commands made ~800 such calls on its replay thread, each one a wait
// (docs/benchmarks.md, "Restart", session 6). With these settings the heap grows in large
// steps and allocations up to kMmapThresholdBytes come from it.
// Owns: the settings. Does not: allocate.
#pragma once

#include <cstddef>

namespace credit {

// The heap grows by this much beyond each request (untouched pages cost no memory).
constexpr std::size_t kHeapTopPadBytes = 64 << 20;
// Allocations below this come from the heap, not from a mapping of their own (glibc's
// default threshold starts at 128 KiB and adapts up to 32 MiB; setting the other values
// turns the adapting off, so it is set too).
constexpr std::size_t kMmapThresholdBytes = 32 << 20;
// Free memory at the top of the heap is given back only past this.
constexpr std::size_t kHeapTrimThresholdBytes = 256 << 20;

// Applies the settings above; call once at the start of main, before other threads start.
// Returns false when the C library refused one (the process works the same, slower).
bool tune_process_heap();

}  // namespace credit
