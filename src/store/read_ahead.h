// src/store/read_ahead.h
// Asks the kernel to read a start's files into the page cache before the start reads them:
// the log and the event log are read through maps, one fault at a time, and after a reboot
// (page cache cold) each fault beyond the readahead window waits for the disk. A hint
// (POSIX_FADV_WILLNEED) per file lets the disk work ahead of the readers instead.
// Owns: that hint. Does not: read or check anything (the readers do).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace credit::store {

// Files hinted per start, at most: beyond it the page cache would evict what the start
// read first.
constexpr std::uint64_t kReadAheadBytesMax = 8ULL << 30;

// Hints every regular file of each directory, the directories in the order given and the
// files of one in name order (oldest segment first), until `bytes_max` bytes are hinted.
// Blocks while the kernel queues the reads (run it on a thread of its own). Errors are
// ignored: a file that cannot be hinted is read as it would be without the hint.
// Returns the bytes hinted.
std::uint64_t read_ahead_dirs(const std::vector<std::string>& dirs,
                              std::uint64_t bytes_max = kReadAheadBytesMax);

}  // namespace credit::store
