// src/store/internal/fs.h
// File helpers shared by the WAL and the snapshots: reading whole files, listing a
// directory, durable creation of zero-filled files, and the errors that name a file.
// Owns: the I/O plumbing. Does not: know any file format.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/file_ops.h"

namespace credit::store::internal {

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

std::string join_path(std::string_view dir, std::string_view name);

// kStorageFailed with the errno text, naming the file.
Error io_error(std::string_view what, const std::string& path, int error_number);
// kStorageFailed for bytes that fail their check, naming the file and the byte offset.
Error damage_error(std::string_view what, const std::string& path, std::uint64_t offset,
                   std::string_view reason);

Status make_dir(const std::string& dir);
// Names of the entries of `dir` (not "." or "..").
Result<std::vector<std::string>> list_dir(const std::string& dir);
Status read_file(const std::string& path, std::vector<unsigned char>& out);
// A whole file mapped read-only, for recovery: it reads the page cache in place instead of
// copying it into a heap buffer as large as the file. The file must not shrink below what
// is read while mapped (recovery reads nothing past a cut it makes).
class MappedFile {
 public:
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() { reset(); }
  // Maps `path` (an empty file maps to an empty view).
  Status open(const std::string& path);
  void reset();
  std::span<const unsigned char> bytes() const { return {data_, size_}; }

 private:
  unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};
// Asks the kernel to start reading the whole file into the page cache without waiting
// for it (recovery reads the next segment while it replays this one). Best effort: a
// file that cannot be opened is left for read_file to report.
void prefetch_file(const std::string& path);
Status write_all(FileOps& ops, int fd, const void* data, std::size_t bytes, off_t offset,
                 const std::string& path);
// Writeback paced so that a large sync does not queue ahead of the command log's
// fdatasync on the same disk: a file's range [from, ...) goes to writeback chunk by chunk,
// at most two chunks in flight. Advice only (sync_file_range): an fsync after it is what
// makes data durable, so its errors are left to that fsync.
// One step: starts the writeback of the chunk [at, at + bytes) and waits for that of the
// chunk of chunk_bytes before it, unless `at` is the range's first chunk (at < from +
// chunk_bytes).
void write_back_step(int fd, std::uint64_t from, std::uint64_t at, std::uint64_t bytes,
                     std::uint64_t chunk_bytes);
// Every step of [0, bytes) of a written file; returns once all of it was written back (or
// failed: see above).
void write_back_paced(int fd, std::uint64_t bytes, std::uint64_t chunk_bytes);
Status fsync_dir(FileOps& ops, const std::string& dir);
// Creates `path` holding `bytes` zero bytes, really written (not just allocated), so that
// later fdatasync calls on it need not write metadata; fsyncs it and its directory.
// On failure removes the file.
Status create_zeroed_file(FileOps& ops, const std::string& dir, const std::string& path,
                          std::uint64_t bytes);
// Writes zeros over [offset, offset + bytes) of an open file.
Status write_zeros(FileOps& ops, int fd, std::uint64_t offset, std::uint64_t bytes,
                   const std::string& path);
bool all_zero(const unsigned char* data, std::size_t bytes);

}  // namespace credit::store::internal
