// src/store/internal/fs.cc
// File helpers of the store: POSIX calls wrapped into Status values that name the file.
// Owns: the I/O plumbing. Does not: know any file format.
#include "store/internal/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/assert.h"

namespace credit::store::internal {
namespace {

// Zero-filling writes in chunks of this size: large enough for few system calls, small
// enough to live in static storage.
constexpr std::size_t kZeroChunkBytes = 1 << 20;
const unsigned char kZeros[kZeroChunkBytes] = {};

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int Fd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string join_path(std::string_view dir, std::string_view name) {
  std::string path(dir);
  if (!path.empty() && path.back() != '/') path.push_back('/');
  path.append(name);
  return path;
}

Error io_error(std::string_view what, const std::string& path, int error_number) {
  Error error(ErrorCode::kStorageFailed,
              std::string(what) + " " + path + ": " + std::strerror(error_number));
  error.with_string("file", path);
  return error;
}

Error damage_error(std::string_view what, const std::string& path, std::uint64_t offset,
                   std::string_view reason) {
  Error error(ErrorCode::kStorageFailed, std::string(what) + " " + path + " at offset " +
                                             std::to_string(offset) + ": " + std::string(reason));
  error.with_string("file", path);
  error.with("offset", std::to_string(offset));
  error.with_string("reason", reason);
  return error;
}

Status make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return io_error("cannot create directory", dir, errno);
  }
  return ok_status();
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* handle = ::opendir(dir.c_str());
  if (handle == nullptr) return io_error("cannot list", dir, errno);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* entry = ::readdir(handle)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int error_number = errno;
  ::closedir(handle);
  if (error_number != 0) return io_error("cannot list", dir, error_number);
  std::sort(names.begin(), names.end());
  return names;
}

Status read_file(const std::string& path, std::vector<unsigned char>& out) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path, errno);
  out.resize(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd.get(), out.data() + done, out.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot read", path, errno);
    if (n == 0) break;  // shrank while reading: what is missing reads as absent
    done += static_cast<std::size_t>(n);
  }
  out.resize(done);
  return ok_status();
}

MappedFile::MappedFile(MappedFile&& other) noexcept : data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
  }
  return *this;
}

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

Status MappedFile::open(const std::string& path) {
  reset();
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path, errno);
  if (st.st_size == 0) return ok_status();
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (p == MAP_FAILED) return io_error("cannot map", path, errno);
  (void)::madvise(p, size, MADV_SEQUENTIAL);
  data_ = static_cast<unsigned char*>(p);
  size_ = size;
  return ok_status();
}

void write_back_step(int fd, std::uint64_t from, std::uint64_t at, std::uint64_t bytes,
                     std::uint64_t chunk_bytes) {
  CREDIT_ASSERT(chunk_bytes > 0 && at >= from);
  (void)::sync_file_range(fd, static_cast<off_t>(at), static_cast<off_t>(bytes),
                          SYNC_FILE_RANGE_WRITE);
  if (at - from >= chunk_bytes) {
    (void)::sync_file_range(
        fd, static_cast<off_t>(at - chunk_bytes), static_cast<off_t>(chunk_bytes),
        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  }
}

void write_back_paced(int fd, std::uint64_t bytes, std::uint64_t chunk_bytes) {
  CREDIT_ASSERT(chunk_bytes > 0);
  for (std::uint64_t at = 0; at < bytes; at += chunk_bytes) {
    write_back_step(fd, 0, at, std::min(chunk_bytes, bytes - at), chunk_bytes);
  }
}

void prefetch_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_WILLNEED);
}

Status write_all(FileOps& ops, int fd, const void* data, std::size_t bytes, off_t offset,
                 const std::string& path) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (bytes > 0) {
    const ssize_t n = ops.pwrite(fd, p, bytes, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot write", path, errno);
    if (n == 0) return io_error("cannot write", path, ENOSPC);
    p += n;
    bytes -= static_cast<std::size_t>(n);
    offset += n;
  }
  return ok_status();
}

Status fsync_dir(FileOps& ops, const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open directory", dir, errno);
  if (ops.fsync(fd.get()) != 0) return io_error("cannot fsync directory", dir, errno);
  return ok_status();
}

Status write_zeros(FileOps& ops, int fd, std::uint64_t offset, std::uint64_t bytes,
                   const std::string& path) {
  while (bytes > 0) {
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(bytes, kZeroChunkBytes));
    Status written = write_all(ops, fd, kZeros, chunk, static_cast<off_t>(offset), path);
    if (!written) return written;
    offset += chunk;
    bytes -= chunk;
  }
  return ok_status();
}

Status create_zeroed_file(FileOps& ops, const std::string& dir, const std::string& path,
                          std::uint64_t bytes) {
  Status result = [&]() -> Status {
    Fd fd(::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd.valid()) return io_error("cannot create", path, errno);
    // fallocate reserves the blocks (ENOSPC now rather than mid-append); the zero writes
    // then turn the unwritten extents into written ones, so an fdatasync after an append
    // has no extent metadata to commit.
    if (ops.fallocate(fd.get(), 0, static_cast<off_t>(bytes)) != 0 && errno != EOPNOTSUPP) {
      return io_error("cannot preallocate", path, errno);
    }
    Status zeroed = write_zeros(ops, fd.get(), 0, bytes, path);
    if (!zeroed) return zeroed;
    if (ops.fsync(fd.get()) != 0) return io_error("cannot fsync", path, errno);
    return fsync_dir(ops, dir);
  }();
  if (!result) ::unlink(path.c_str());
  return result;
}

bool all_zero(const unsigned char* data, std::size_t bytes) {
  static const unsigned char kBlock[4096] = {};
  while (bytes >= sizeof(kBlock)) {
    if (std::memcmp(data, kBlock, sizeof(kBlock)) != 0) return false;
    data += sizeof(kBlock);
    bytes -= sizeof(kBlock);
  }
  return bytes == 0 || std::memcmp(data, kBlock, bytes) == 0;
}

}  // namespace credit::store::internal
