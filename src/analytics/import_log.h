// src/analytics/import_log.h
// The durable record of history imported with `mode=analytics`: such events feed only the
// time-ranged analytics, so they are neither commands nor ledger events and have no place
// in the WAL or the event log. They are kept in DATA/analytics/imported.ndjson, one event
// per line in the import format of API.md (analytics/event_json.h), appended and
// fdatasynced before the import is answered, and read back on start.
// A start cuts a torn tail (a last line without its newline, left by a crash during an
// append) and says so; any other line that does not parse stops the start with an error
// that names the file and the line.
// Owns: that file. Does not: decide what is imported (server/analytics_routes.cc) or add
// it up (rollup.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "ledger/event.h"

namespace credit::analytics {

// The file's name in the analytics dir (DATA/analytics).
constexpr const char* kImportLogFile = "imported.ndjson";

// The file's size is bounded: past this an append is refused (503 storage_failed, with the
// lines of that import loaded before it) rather than the disk filled.
constexpr std::uint64_t kImportLogBytesMax = std::uint64_t{16} << 30;

class ImportLog {
 public:
  // Opens (creating) `path`, cuts a torn tail, and calls `on_event` for every event in
  // file order (imported = true).
  static Result<std::unique_ptr<ImportLog>> open(
      const std::string& path, const std::function<void(ledger::Event&)>& on_event);
  ~ImportLog();
  ImportLog(const ImportLog&) = delete;
  ImportLog& operator=(const ImportLog&) = delete;

  // Appends the events and syncs them. On an error nothing of them counts: the file is cut
  // back to where it was.
  Status append(const std::vector<ledger::Event>& events);

  std::uint64_t size_bytes() const { return size_bytes_; }
  // The bytes a start cut off as a torn tail (0: none).
  std::uint64_t torn_bytes() const { return torn_bytes_; }

 private:
  ImportLog(std::string path, int fd, std::uint64_t size_bytes)
      : path_(std::move(path)), fd_(fd), size_bytes_(size_bytes) {}

  std::string path_;
  int fd_ = -1;
  std::uint64_t size_bytes_ = 0;
  std::uint64_t torn_bytes_ = 0;
  std::string buffer_;  // the lines of one append
};

}  // namespace credit::analytics
