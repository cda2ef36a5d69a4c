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

}  // namespace

Status write_file_durably(const std::string& path, std::string_view data, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return file_error("cannot create", tmp, errno);
  std::size_t done = 0;
  int error_number = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error_number = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (error_number == 0 && ::fsync(fd) != 0) error_number = errno;
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
  const std::string dir = dir_of(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return file_error("cannot open the directory", dir, errno);
  const bool synced = ::fsync(dfd) == 0;
  const int e = errno;
  ::close(dfd);
  if (!synced) return file_error("cannot sync the directory", dir, e);
  return ok_status();
}

}  // namespace credit::store
