// src/cli/time_order.cc
// The order check and the sorted reading (time_order.h).
#include "cli/time_order.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "cli/progress.h"

namespace credit::cli {

bool OrderCheck::in_order(const ledger::Event& e) {
  const OrderKey key = OrderKey::of(e);
  if (last_key_ == nullptr || *last_id_ != e.account_id) {
    auto it = last_.find(std::string_view(e.account_id));
    if (it == last_.end()) it = last_.try_emplace(e.account_id, key).first;
    last_id_ = &it->first;
    last_key_ = &it->second;
  }
  if (key < *last_key_) return false;
  *last_key_ = key;
  return true;
}

namespace {

// Reads the lines back: exactly a line where the previous one did not end just before it
// (a shuffled file: one small read per event), a window of the lines that follow where it
// did (a file mostly in order: one read per window).
class LineSource {
 public:
  static constexpr std::size_t kWindowBytes = std::size_t{256} << 10;

  explicit LineSource(int fd)
      : fd_(fd),
        buffer_(std::make_unique<char[]>(kWindowBytes + analytics::kEventLineBytesMax +
                                         analytics::kEventJsonPaddingBytes)) {}

  // The line at [offset, offset + size), followed by readable padding; false when the
  // file no longer holds it.
  bool line(std::uint64_t offset, std::size_t size, std::string_view& out) {
    if (offset < begin_ || offset + size > end_) {
      const std::size_t want = offset == next_ ? std::max(size, kWindowBytes) : size;
      std::size_t got = 0;
      while (got < want) {
        const ssize_t n =
            ::pread(fd_, buffer_.get() + got, want - got, static_cast<off_t>(offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
      }
      begin_ = offset;
      end_ = offset + got;
      if (got < size) return false;
    }
    out = std::string_view(buffer_.get() + (offset - begin_), size);
    next_ = offset + size + 1;  // after its newline
    return true;
  }

 private:
  int fd_;
  std::unique_ptr<char[]> buffer_;
  std::uint64_t begin_ = 0;  // the buffer holds the file's [begin_, end_)
  std::uint64_t end_ = 0;
  std::uint64_t next_ = 0;  // where the line after the last one read begins
};

}  // namespace

bool TimeOrderedReader::run(const std::function<bool(const ledger::Event&)>& keep,
                            const std::function<void(const ledger::Event&)>& add,
                            Progress* progress) {
  // The index: one pass over the file as it lies.
  std::deque<Entry> entries;  // grows without copying what it holds
  std::uint64_t bytes = 0;    // the file's; the progress is half indexing, half reading
  {
    analytics::NdjsonReader reader(path_);
    if (!reader.ok()) {
      problem_ = reader.problem();
      return false;
    }
    ledger::Event e;
    while (reader.next(e)) {
      if (progress != nullptr) progress->update(reader.bytes_read() / 2);
      if (!keep(e)) continue;
      if (entries.size() >= events_max_) {
        problem_ = "its events are not in time order per account, and creditctl sorts at most " +
                   std::to_string(events_max_) +
                   " events; sort the file by time (`at`) first, or give --from/--to or "
                   "--account to take fewer";
        return false;
      }
      entries.push_back({e.at_ms, e.seq, reader.event_offset() << kSizeBits | reader.event_size()});
    }
    bytes = reader.bytes_read();
    error_count_ = reader.error_count();
    errors_ = reader.errors();
    if (!reader.problem().empty()) {
      problem_ = reader.problem();
      return false;
    }
  }
  // Ties in file order: the offset is in the place's high bits.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.at_ms != b.at_ms) return a.at_ms < b.at_ms;
    if (a.seq != b.seq) return a.seq < b.seq;
    return a.place < b.place;
  });
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    problem_ = std::strerror(errno);
    return false;
  }
  LineSource source(fd);
  ledger::Event e;
  std::uint64_t done = 0;
  bool ok = true;
  for (const Entry& entry : entries) {
    std::string_view text;
    const std::size_t size = entry.place & ((std::uint64_t{1} << kSizeBits) - 1);
    if (!source.line(entry.place >> kSizeBits, size, text) ||
        !analytics::parse_event_json_padded(text, e).ok()) {
      problem_ = "the file changed while it was read";
      ok = false;
      break;
    }
    add(e);
    if (progress != nullptr && ++done % 4096 == 0) {
      progress->update(bytes / 2 +
                       static_cast<std::uint64_t>(static_cast<unsigned __int128>(bytes / 2) * done /
                                                  entries.size()));
    }
  }
  ::close(fd);
  return ok;
}

}  // namespace credit::cli
