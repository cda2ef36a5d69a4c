// src/store/file_ops.cc
// The real system calls behind FileOps, and the countdowns of FaultInjectingFileOps.
// Owns: nothing but the pass-through. Does not: retry (a failed fsync is not retried: the
// kernel may have dropped the dirty pages, so a retry could report success for lost data).
#include "store/file_ops.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace credit::store {

ssize_t FileOps::pwrite(int fd, const void* data, std::size_t bytes, off_t offset) {
  return ::pwrite(fd, data, bytes, offset);
}

int FileOps::fdatasync(int fd) {
  return ::fdatasync(fd);
}

int FileOps::fsync(int fd) {
  return ::fsync(fd);
}

int FileOps::fallocate(int fd, off_t offset, off_t bytes) {
  return ::fallocate(fd, 0, offset, bytes);
}

FileOps& FileOps::real() {
  static FileOps ops;
  return ops;
}

bool FaultInjectingFileOps::should_fail(std::atomic<long>& countdown) {
  long current = countdown.load();
  while (current > 0) {
    if (countdown.compare_exchange_weak(current, current - 1)) return false;
  }
  if (current == 0) {
    errno = error_number.load();
    return true;
  }
  return false;
}

ssize_t FaultInjectingFileOps::pwrite(int fd, const void* data, std::size_t bytes, off_t offset) {
  if (should_fail(writes_before_failure)) return -1;
  ++writes;
  return FileOps::pwrite(fd, data, bytes, offset);
}

int FaultInjectingFileOps::fdatasync(int fd) {
  if (should_fail(syncs_before_failure)) return -1;
  ++syncs;
  return FileOps::fdatasync(fd);
}

int FaultInjectingFileOps::fsync(int fd) {
  if (should_fail(syncs_before_failure)) return -1;
  ++syncs;
  return FileOps::fsync(fd);
}

int FaultInjectingFileOps::fallocate(int fd, off_t offset, off_t bytes) {
  if (should_fail(fallocates_before_failure)) return -1;
  return FileOps::fallocate(fd, offset, bytes);
}

void FaultInjectingFileOps::heal() {
  writes_before_failure = -1;
  syncs_before_failure = -1;
  fallocates_before_failure = -1;
}

}  // namespace credit::store
