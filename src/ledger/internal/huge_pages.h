// src/ledger/internal/huge_pages.h
// Large zeroed buffers mapped on their own, 2 MiB aligned and advised into transparent
// huge pages. The ledger's big arrays (the idempotency table, the stored replies) are
// touched at random or fresh all the time: on 4 KiB pages every access misses the TLB
// and every 4 KiB of new replies costs a page fault; on 2 MiB pages neither does.
// Owns: the mappings. Does not: decide what goes in them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>

namespace credit::ledger {

constexpr std::size_t kHugePageBytes = 2 << 20;

// Maps `bytes` of zeroed memory (throws std::bad_alloc when the kernel refuses).
void* map_huge(std::size_t bytes);
void unmap_huge(void* at, std::size_t bytes);
// Faults in [at, at + bytes) for writing without changing a byte (MADV_POPULATE_WRITE, or
// an atomic add of 0 per 4 KiB where the kernel lacks it): safe while other threads
// write the same memory.
void populate_for_write(void* at, std::size_t bytes);
// The same by a write fault per 4 KiB page (an atomic add of 0; one fault maps a whole
// huge page). A fault holds only the lock of its own mapping (per-VMA locks, Linux 6.4+),
// not the memory map: an mmap, munmap or brk on another thread does not wait for it.
void fault_in_by_touch(void* at, std::size_t bytes);
// Whether a child forked from now on gets [at, at + bytes) (a mapping of map_huge's)
// (MADV_DOFORK / MADV_DONTFORK). Memory a snapshot child never reads is left out of it:
// after a fork the parent's first write to a shared huge page copies all 2 MiB of it, so
// a gigabyte the child shares but never needs costs the parent a gigabyte of copying.
void set_inherited_by_fork(void* at, std::size_t bytes, bool inherited);

// Runs a job on another thread (Ledger options: the server gives one); null: none.
using Background = std::function<void(std::function<void()>)>;

// Faults a buffer in for writing on another thread (a Background job), by touch
// (fault_in_by_touch), a huge page at a time between checks for cancellation. Not with
// MADV_POPULATE_WRITE: that holds the memory map (mmap_lock) for reading, 2-10 ms per huge
// page on the benchmark VM, and an mmap, munmap, brk or mprotect on the ledger thread (its
// heap growing, a reply chunk) waits for it; in 64 MiB pieces a charge stalled for 90-340
// ms (docs/benchmarks.md, session 4), and with one huge page per call an insert still
// waited 10-22 ms (session 10). Pages the job has not reached yet fault in as they are
// used. stop() (and the destructor) end it early and wait for it: the buffer must outlive
// it.
class BackgroundFaultIn {
 public:
  BackgroundFaultIn() = default;
  ~BackgroundFaultIn() { stop(); }
  BackgroundFaultIn(BackgroundFaultIn&&) noexcept = default;
  BackgroundFaultIn& operator=(BackgroundFaultIn&& o) noexcept {
    if (this != &o) {
      stop();
      job_ = std::move(o.job_);
    }
    return *this;
  }
  BackgroundFaultIn(const BackgroundFaultIn&) = delete;
  BackgroundFaultIn& operator=(const BackgroundFaultIn&) = delete;

  // Starts faulting in [at, at + bytes) (after stopping a job still running).
  void start(const Background& background, char* at, std::size_t bytes);
  // Whether the job ran to its end (true when none was started).
  bool finished() const { return !job_ || job_->finished.load(std::memory_order_acquire); }
  // Cancels the job and waits for it to return.
  void stop();

 private:
  struct Job {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;                  // returned, under mu
    std::atomic<bool> finished{false};  // ran to its end
    std::atomic<bool> cancel{false};
  };
  std::shared_ptr<Job> job_;
};

// Unmaps [at, at + bytes) (a mapping of map_huge's) on the background thread, emptied
// one huge page at a time first (MADV_DONTNEED) so that no call holds the memory map
// long: one munmap of a 512 MiB array that a snapshot child's copy-on-write had split
// into 4 KiB pages held the ledger thread ~50 ms (docs/benchmarks.md, "Snapshot pause",
// session 10). Without a background thread, unmaps it here. The caller gives the mapping
// up: nothing may touch it after the call.
void unmap_huge_later(const Background& background, void* at, std::size_t bytes);

// One mapping, released with the object.
class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(std::size_t bytes)
      : at_(static_cast<char*>(map_huge(bytes))), bytes_(bytes) {}
  ~HugeBuffer() { reset(); }
  HugeBuffer(HugeBuffer&& o) noexcept
      : at_(std::exchange(o.at_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  HugeBuffer& operator=(HugeBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      at_ = std::exchange(o.at_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  char* data() const { return at_; }
  std::size_t size() const { return bytes_; }
  explicit operator bool() const { return at_ != nullptr; }
  void reset() {
    if (at_ != nullptr) unmap_huge(at_, bytes_);
    at_ = nullptr;
    bytes_ = 0;
  }

 private:
  char* at_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace credit::ledger
