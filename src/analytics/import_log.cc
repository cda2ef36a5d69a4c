// src/analytics/import_log.cc
// imported.ndjson: appends with fdatasync, and the start's read (import_log.h).
#include "analytics/import_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "analytics/event_json.h"
#include "base/assert.h"

namespace credit::analytics {
namespace {

Error io_error(const std::string& what, const std::string& path) {
  return Error(ErrorCode::kStorageFailed, what + " " + path + ": " + std::strerror(errno));
}

// The offset just past the last newline of the file's first `size` bytes (0: none).
Result<std::uint64_t> complete_prefix(int fd, std::uint64_t size, const std::string& path) {
  constexpr std::size_t kBlockBytes = 64 * 1024;
  char block[kBlockBytes];
  std::uint64_t end = size;
  while (end > 0) {
    const std::uint64_t begin = end > kBlockBytes ? end - kBlockBytes : 0;
    const auto n = static_cast<std::size_t>(end - begin);
    if (::pread(fd, block, n, static_cast<off_t>(begin)) != static_cast<ssize_t>(n)) {
      return io_error("cannot read", path);
    }
    for (std::size_t i = n; i > 0; --i) {
      if (block[i - 1] == '\n') return begin + i;
    }
    end = begin;
  }
  return std::uint64_t{0};
}

}  // namespace

Result<std::unique_ptr<ImportLog>> ImportLog::open(
    const std::string& path, const std::function<void(ledger::Event&)>& on_event) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot open", path);
  std::unique_ptr<ImportLog> log(new ImportLog(path, fd, 0));
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io_error("cannot stat", path);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  auto complete = complete_prefix(fd, size, path);
  if (!complete.ok()) return complete.error();
  if (*complete < size) {
    // A crash during an append: the last line was never acknowledged.
    if (::ftruncate(fd, static_cast<off_t>(*complete)) != 0 || ::fdatasync(fd) != 0) {
      return io_error("cannot cut the torn tail of", path);
    }
    log->torn_bytes_ = size - *complete;
  }
  log->size_bytes_ = *complete;
  if (log->size_bytes_ > 0) {
    NdjsonReader reader(path);
    if (!reader.ok()) return io_error("cannot read", path);
    ledger::Event e;
    while (reader.next(e)) {
      e.imported = true;
      on_event(e);
    }
    if (reader.error_count() > 0) {
      const LineError& first = reader.errors().front();
      return Error(ErrorCode::kStorageFailed, path + ": line " + std::to_string(first.line) +
                                                  " is damaged (" + first.reason + ")");
    }
  }
  if (::lseek(fd, static_cast<off_t>(log->size_bytes_), SEEK_SET) < 0) {
    return io_error("cannot seek", path);
  }
  return log;
}

ImportLog::~ImportLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status ImportLog::append(const std::vector<ledger::Event>& events) {
  buffer_.clear();
  for (const ledger::Event& e : events) {
    append_event_json(buffer_, e);
    buffer_ += '\n';
  }
  if (buffer_.empty()) return ok_status();
  if (size_bytes_ + buffer_.size() > kImportLogBytesMax) {
    return Error(ErrorCode::kStorageFailed, path_ + " would pass its limit of " +
                                                std::to_string(kImportLogBytesMax) + " bytes");
  }
  std::size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::pwrite(fd_, buffer_.data() + done, buffer_.size() - done,
                               static_cast<off_t>(size_bytes_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done < buffer_.size() || ::fdatasync(fd_) != 0) {
    Error e = io_error("cannot append to", path_);
    // Nothing of this append counts; a later start would cut a partial line anyway.
    if (::ftruncate(fd_, static_cast<off_t>(size_bytes_)) != 0) {
      e.message += " (and cannot cut it back)";
    }
    return e;
  }
  size_bytes_ += buffer_.size();
  return ok_status();
}

}  // namespace credit::analytics
