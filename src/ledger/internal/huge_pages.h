// src/ledger/internal/huge_pages.h
// Large zeroed buffers mapped on their own, 2 MiB aligned and advised into transparent
// huge pages. The ledger's big arrays (the idempotency table, the stored replies) are
// touched at random or fresh all the time: on 4 KiB pages every access misses the TLB
// and every 4 KiB of new replies costs a page fault; on 2 MiB pages neither does.
// Owns: the mappings. Does not: decide what goes in them.
#pragma once

#include <cstddef>
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
// Whether a child forked from now on gets [at, at + bytes) (a mapping of map_huge's)
// (MADV_DOFORK / MADV_DONTFORK). Memory a snapshot child never reads is left out of it:
// after a fork the parent's first write to a shared huge page copies all 2 MiB of it, so
// a gigabyte the child shares but never needs costs the parent a gigabyte of copying.
void set_inherited_by_fork(void* at, std::size_t bytes, bool inherited);

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
