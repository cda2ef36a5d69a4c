// src/store/durable_file.cc: see durable_file.h.
#include "store/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace credit::store {
namespace {

Error file_error(const std::string& what, const std::string& path, int error_number) {
  Error e(ErrorCode::kStorageFailed, what + " " + path + ": " + std::strerror(error_number));
  e.with_string("file", path);
  return e;
}

std::string dir_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Writes all of `data` to `fd`, then syncs its data (and, with `metadata`, the rest of the
// inode); 0 or the errno of the first failure.
int write_all_and_sync(int fd, std::string_view data, bool metadata) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += static_cast<std::size_t>(n);
  }
  if ((metadata ? ::fsync(fd) : ::fdatasync(fd)) != 0) return errno;
  return 0;
}

Status sync_dir(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return file_error("cannot open the directory", dir, errno);
  const bool synced = ::fsync(dfd) == 0;
  const int e = errno;
  ::close(dfd);
  if (!synced) return file_error("cannot sync the directory", dir, e);
  return ok_status();
}

}  // namespace

Status write_file_durably(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return file_error("cannot create", tmp, errno);
  const int error_number = write_all_and_sync(fd, data, true);
  ::close(fd);
  if (error_number != 0) {
    ::unlink(tmp.c_str());
    return file_error("cannot write", tmp, error_number);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return file_error("cannot rename to", path, e);
  }
  return sync_dir(dir_of(path));
}

Status append_durably(const std::string& path, std::string_view data, mode_t mode) {
  const bool existed = ::access(path.c_str(), F_OK) == 0;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode);
  if (fd < 0) return file_error("cannot open", path, errno);
  const int error_number = write_all_and_sync(fd, data, false);
  ::close(fd);
  if (error_number != 0) return file_error("cannot append to", path, error_number);
  return existed ? ok_status() : sync_dir(dir_of(path));
}

}  // namespace credit::store
