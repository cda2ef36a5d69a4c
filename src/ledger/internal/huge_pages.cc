#include "ledger/internal/huge_pages.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <new>

namespace credit::ledger {

void* map_huge(std::size_t bytes) {
  // Over-map by a huge page to align the start, then give back the slack.
  const std::size_t mapped = bytes + kHugePageBytes;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  if (aligned > start) ::munmap(p, aligned - start);
  const std::size_t tail = (start + mapped) - (aligned + bytes);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + bytes), tail);
  // Advice only: without THP the memory works the same on 4 KiB pages.
  (void)::madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<void*>(aligned);
}

void unmap_huge(void* at, std::size_t bytes) {
  ::munmap(at, bytes);
}

void unmap_huge_later(const Background& background, void* at, std::size_t bytes) {
  if (!background) {
    unmap_huge(at, bytes);
    return;
  }
  background([at = static_cast<char*>(at), bytes] {
    for (std::size_t off = 0; off < bytes; off += kHugePageBytes) {
      (void)::madvise(at + off, std::min(kHugePageBytes, bytes - off), MADV_DONTNEED);
    }
    unmap_huge(at, bytes);
  });
}

void set_inherited_by_fork(void* at, std::size_t bytes, bool inherited) {
  // Advice only: a failure leaves the memory shared, which costs copying, not correctness.
  (void)::madvise(at, bytes, inherited ? MADV_DOFORK : MADV_DONTFORK);
}

void populate_for_write(void* at, std::size_t bytes) {
  if (::madvise(at, bytes, MADV_POPULATE_WRITE) == 0) return;
  fault_in_by_touch(at, bytes);
}

// Not instrumented by ThreadSanitizer: the ledger thread writes the same memory plainly
// while this runs (by design), and an atomic add of 0 never changes a byte, so a write
// before or after it keeps its value; the one data race TSan reports in a whole run of
// the integration tests (scripts/sanitize.sh) is this benign one.
__attribute__((no_sanitize("thread"))) void fault_in_by_touch(void* at, std::size_t bytes) {
  constexpr std::size_t kPageBytes = 4096;
  auto* p = static_cast<char*>(at);
  for (std::size_t i = 0; i < bytes; i += kPageBytes)
    __atomic_fetch_add(p + i, 0, __ATOMIC_RELAXED);
}

void BackgroundFaultIn::start(const Background& background, char* at, std::size_t bytes) {
  stop();
  auto job = std::make_shared<Job>();
  job_ = job;
  background([job, at, bytes] {
    std::size_t off = 0;
    for (; off < bytes && !job->cancel.load(); off += kHugePageBytes) {
      fault_in_by_touch(at + off, std::min(kHugePageBytes, bytes - off));
    }
    std::lock_guard lock(job->mu);
    job->done = true;
    job->finished.store(off >= bytes, std::memory_order_release);
    job->cv.notify_all();
  });
}

void BackgroundFaultIn::stop() {
  if (!job_) return;
  job_->cancel.store(true);
  std::unique_lock lock(job_->mu);
  job_->cv.wait(lock, [&] { return job_->done; });
  lock.unlock();
  job_.reset();
}

}  // namespace credit::ledger
