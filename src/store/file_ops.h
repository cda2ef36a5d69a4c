// src/store/file_ops.h
// The system calls through which the store changes files, behind an interface so tests can
// make the Nth write, sync or preallocation fail (a full disk, EIO) at a chosen point.
// Owns: FileOps (the real calls) and FaultInjectingFileOps (for tests and drills).
// Does not: decide what a failure means (the Wal turns a failed write or sync into a sticky
// kStorageFailed).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>

namespace credit::store {

// Each call returns what the system call returns and leaves errno set on failure.
class FileOps {
 public:
  virtual ~FileOps() = default;
  virtual ssize_t pwrite(int fd, const void* data, std::size_t bytes, off_t offset);
  virtual int fdatasync(int fd);
  virtual int fsync(int fd);
  // Reserves [offset, offset + bytes) so that later writes there cannot hit ENOSPC.
  virtual int fallocate(int fd, off_t offset, off_t bytes);

  // The process-wide instance making the real calls.
  static FileOps& real();
};

// Passes calls through until a countdown reaches zero, then fails that call and every later
// call of the same kind with `error_number` until the countdown is set again.
// A countdown of -1 never fails. Thread-safe: the Wal preallocates on a background thread.
class FaultInjectingFileOps : public FileOps {
 public:
  std::atomic<long> writes_before_failure{-1};
  std::atomic<long> syncs_before_failure{-1};
  std::atomic<long> fallocates_before_failure{-1};
  std::atomic<int> error_number{5};  // EIO

  std::atomic<long> writes{0};
  std::atomic<long> syncs{0};

  ssize_t pwrite(int fd, const void* data, std::size_t bytes, off_t offset) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int fallocate(int fd, off_t offset, off_t bytes) override;

  // Stops every injected failure.
  void heal();

 private:
  bool should_fail(std::atomic<long>& countdown);
};

}  // namespace credit::store
