// src/store/event_log.cc
// Daily event segments: recovery, buffered appends, sync and retention (format in
// event_log.h).
#include "store/event_log.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <span>
#include <unordered_set>

#include "base/assert.h"
#include "base/bytes.h"
#include "time/time.h"

namespace credit::store {
namespace {

using internal::damage_error;
using internal::io_error;
using internal::join_path;

constexpr std::string_view kDamage = "event log damage in";
constexpr std::string_view kPrefix = "events-";
constexpr std::string_view kSuffix = ".log";
constexpr std::size_t kDateChars = 10;  // YYYY-MM-DD

// The day of "events-YYYY-MM-DD.log", or nothing for any other name.
std::optional<std::int64_t> parse_segment_name(std::string_view name) {
  if (name.size() != kPrefix.size() + kDateChars + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  std::string_view date = name.substr(kPrefix.size(), kDateChars);
  int y = 0, m = 0, d = 0;
  for (std::size_t i = 0; i < kDateChars; ++i) {
    const bool dash = i == 4 || i == 7;
    if (dash != (date[i] == '-')) return std::nullopt;
    if (!dash && (date[i] < '0' || date[i] > '9')) return std::nullopt;
  }
  y = std::stoi(std::string(date.substr(0, 4)));
  m = std::stoi(std::string(date.substr(5, 2)));
  d = std::stoi(std::string(date.substr(8, 2)));
  if (m < 1 || m > 12 || d < 1 || d > days_in_month(y, m)) return std::nullopt;
  return days_from_civil(y, m, d) * kMsPerDay;
}

struct RecordView {
  std::uint64_t seq = 0;
  std::int64_t at_ms = 0;
  std::string_view payload;
};

// The record at `offset`, if it is intact and fits the segment's rules.
std::optional<RecordView> read_record(std::span<const unsigned char> data, std::size_t offset,
                                      std::int64_t day_start_ms, std::uint64_t previous_seq,
                                      std::string* why) {
  if (data.size() - offset < kEventRecordHeaderBytes) {
    *why = "record header runs past the end of the file";
    return std::nullopt;
  }
  const unsigned char* p = data.data() + offset;
  const auto length = get_fixed<std::uint32_t>(p, 8);
  if (length > kEventPayloadBytesMax || data.size() - offset - kEventRecordHeaderBytes < length) {
    *why = "record length runs past the end of the file";
    return std::nullopt;
  }
  if (get_fixed<std::uint64_t>(p, 0) != XXH3_64bits(p + 8, kEventRecordHeaderBytes - 8 + length)) {
    *why = "record checksum mismatch";
    return std::nullopt;
  }
  RecordView r;
  r.seq = get_fixed<std::uint64_t>(p, 12);
  r.at_ms = get_fixed<std::int64_t>(p, 20);
  if (r.seq <= previous_seq) {
    *why = "record sequence number does not increase";
    return std::nullopt;
  }
  if (r.at_ms < day_start_ms || r.at_ms >= day_start_ms + kMsPerDay) {
    *why = "record instant is outside the segment's day";
    return std::nullopt;
  }
  r.payload = std::string_view(reinterpret_cast<const char*>(p + kEventRecordHeaderBytes), length);
  return r;
}

EventPlace place_of(std::uint32_t segment_number, std::uint64_t offset) {
  CREDIT_ASSERT(offset < (1ULL << kEventPlaceOffsetBits));
  return (static_cast<std::uint64_t>(segment_number) << kEventPlaceOffsetBits) | offset;
}

Status cut_file(const std::string& path, std::uint64_t offset) {
  if (::truncate(path.c_str(), static_cast<off_t>(offset)) != 0) {
    return io_error("cannot truncate", path, errno);
  }
  return ok_status();
}

}  // namespace

std::string EventLog::segment_name(std::int64_t at_ms) {
  return std::string(kPrefix) + format_date(at_ms) + std::string(kSuffix);
}

EventLog::EventLog(std::string dir, const EventLogOptions& options)
    : dir_(std::move(dir)),
      options_(options),
      ops_(options.file_ops != nullptr ? *options.file_ops : FileOps::real()) {}

EventLog::~EventLog() {
  (void)flush();
  for (const Segment& segment : segments_) unmap(segment);
}

std::uint32_t EventLog::take_segment_number() {
  // One number per day a process ever writes or finds: far below the bound.
  CREDIT_ASSERT(next_segment_number_ + 1ULL < kEventSegmentNumbersMax);
  return next_segment_number_++;
}

Result<std::unique_ptr<EventLog>> EventLog::open(const std::string& dir,
                                                 const EventLogOptions& options,
                                                 const EventRecordFn& on_record) {
  std::unique_ptr<EventLog> log(new EventLog(dir, options));
  Status s = internal::make_dir(dir);
  if (s) s = log->recover(on_record);
  if (!s) return s.error();
  return log;
}

Status EventLog::recover(const EventRecordFn& on_record) {
  auto names = internal::list_dir(dir_);
  if (!names) return names.error();
  for (const std::string& name : *names) {
    if (auto day = parse_segment_name(name)) {
      segments_.push_back({*day, join_path(dir_, name), 0, take_segment_number(), 0, {}});
    }
  }
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.day_start_ms < b.day_start_ms; });
  std::vector<Segment> kept;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    Segment& segment = segments_[i];
    if (i + 1 < segments_.size()) internal::prefetch_file(segments_[i + 1].path);
    Status s = recover_segment(segment, on_record);
    if (!s) return s;
    if (segment.bytes > 0) kept.push_back(segment);
  }
  segments_ = std::move(kept);
  for (const Segment& segment : segments_) recovery_.bytes += segment.bytes;
  return ok_status();
}

// Reads one segment, delivering its records; sets segment.bytes to the size kept (0: the
// file was removed as an unfinished creation).
Status EventLog::recover_segment(Segment& segment, const EventRecordFn& on_record) {
  internal::MappedFile mapped;
  Status s = mapped.open(segment.path);
  if (!s) return s;
  std::span<const unsigned char> data = mapped.bytes();
  if (data.size() < kEventSegmentHeaderBytes ||
      internal::all_zero(data.data(), kEventSegmentHeaderBytes)) {
    if (::unlink(segment.path.c_str()) != 0) return io_error("cannot delete", segment.path, errno);
    recovery_.torn_tails.push_back({segment.path, 0, "unfinished segment removed"});
    dir_unsynced_ = true;
    segment.bytes = 0;
    return ok_status();
  }
  const unsigned char* h = data.data();
  if (get_fixed<std::uint32_t>(h, 8) != kEventLogVersion) {
    Error error(ErrorCode::kStorageFailed,
                "event segment " + segment.path + " has format version " +
                    std::to_string(get_fixed<std::uint32_t>(h, 8)) + "; this build reads version " +
                    std::to_string(kEventLogVersion));
    error.with_string("file", segment.path);
    error.with("offset", "8");
    return error;
  }
  if (get_fixed<std::uint64_t>(h, 0) != kEventSegmentMagic ||
      get_fixed<std::uint64_t>(h, 24) != XXH3_64bits(h, 24) ||
      get_fixed<std::uint32_t>(h, 12) != 0 ||
      get_fixed<std::int64_t>(h, 16) != segment.day_start_ms) {
    // Not even the header can be trusted: nothing in the file is usable.
    return damage_error(kDamage, segment.path, 0, "bad segment header");
  }
  std::size_t offset = kEventSegmentHeaderBytes;
  std::uint64_t previous_seq = 0;
  while (offset < data.size()) {
    std::string why;
    std::optional<RecordView> r =
        read_record(data, offset, segment.day_start_ms, previous_seq, &why);
    if (r) {
      Status delivered = on_record(r->seq, r->at_ms, r->payload, place_of(segment.number, offset));
      if (!delivered) return delivered;
      previous_seq = r->seq;
      segment.seq_last = r->seq;
      last_seq_ = std::max(last_seq_, r->seq);
      ++recovery_.events;
      offset += kEventRecordHeaderBytes + r->payload.size();
      continue;
    }
    // Torn tail or damage: does an intact record start anywhere after this byte?
    bool intact_after = false;
    std::string ignored;
    for (std::size_t at = offset + 1; at + kEventRecordHeaderBytes <= data.size(); ++at) {
      if (read_record(data, at, segment.day_start_ms, previous_seq, &ignored)) {
        intact_after = true;
        break;
      }
    }
    if (intact_after && !options_.repair) return damage_error(kDamage, segment.path, offset, why);
    s = cut_file(segment.path, offset);
    if (!s) return s;
    mark_unsynced(segment.path);
    (intact_after ? recovery_.repaired : recovery_.torn_tails)
        .push_back({segment.path, offset, why});
    data = data.first(offset);  // nothing past the cut is read again
  }
  segment.bytes = data.size();
  return ok_status();
}

Result<std::vector<EventLogCut>> EventLog::cut_from(std::uint64_t seq) {
  if (Status s = flush(); !s) return s.error();
  std::vector<EventLogCut> cuts;
  std::uint64_t last_kept = 0;
  for (Segment& segment : segments_) {
    unmap(segment);
    internal::MappedFile mapped;
    if (Status s = mapped.open(segment.path); !s) return s.error();
    std::span<const unsigned char> data =
        mapped.bytes().first(std::min<std::size_t>(mapped.bytes().size(), segment.bytes));
    std::size_t offset = kEventSegmentHeaderBytes;
    std::uint64_t previous_seq = 0;
    std::string why;
    while (offset < data.size()) {
      std::optional<RecordView> r =
          read_record(data, offset, segment.day_start_ms, previous_seq, &why);
      // Recovery left only intact records below segment.bytes.
      CREDIT_ASSERT(r.has_value());
      if (r->seq >= seq) break;
      previous_seq = r->seq;
      last_kept = std::max(last_kept, r->seq);
      offset += kEventRecordHeaderBytes + r->payload.size();
    }
    if (offset >= data.size()) continue;
    if (Status s = cut_file(segment.path, offset); !s) return s.error();
    cuts.push_back({segment.path, offset,
                    "events from seq " + std::to_string(seq) + " on are past the recovered state"});
    segment.bytes = offset;
    segment.seq_last = previous_seq;
    mark_unsynced(segment.path);
  }
  last_seq_ = last_kept;
  if (Status s = sync(); !s) return s.error();
  return cuts;
}

EventLog::Segment* EventLog::segment_of(std::int64_t day_start_ms) {
  // segments_ is in day order: every append looks its day up, among tens of thousands.
  auto at =
      std::lower_bound(segments_.begin(), segments_.end(), day_start_ms,
                       [](const Segment& x, std::int64_t day) { return x.day_start_ms < day; });
  return at != segments_.end() && at->day_start_ms == day_start_ms ? &*at : nullptr;
}

void EventLog::mark_unsynced(const std::string& path) {
  // Mostly the segment marked last (the day being written): found without a search of the
  // days written since the last sync.
  if (!unsynced_.empty() && unsynced_.back() == path) return;
  if (std::find(unsynced_.begin(), unsynced_.end(), path) == unsynced_.end()) {
    unsynced_.push_back(path);
  }
}

Status EventLog::switch_to(std::int64_t day_start_ms) {
  Status s = flush();
  if (!s) return s;
  fd_.reset();
  current_day_ms_ = -1;
  Segment* segment = segment_of(day_start_ms);
  if (segment == nullptr) {
    Segment created{
        day_start_ms, join_path(dir_, segment_name(day_start_ms)), 0, take_segment_number(), 0, {}};
    internal::Fd fd(::open(created.path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd.valid()) return io_error("cannot create", created.path, errno);
    unsigned char header[kEventSegmentHeaderBytes];
    put_fixed(header, 0, kEventSegmentMagic);
    put_fixed(header, 8, kEventLogVersion);
    put_fixed(header, 12, std::uint32_t{0});
    put_fixed(header, 16, day_start_ms);
    put_fixed(header, 24, XXH3_64bits(header, 24));
    s = internal::write_all(ops_, fd.get(), header, sizeof(header), 0, created.path);
    if (!s) return s;
    created.bytes = sizeof(header);
    dir_unsynced_ = true;
    // A new file is in no list yet (a deleted one left unsynced_ with it): no search.
    unsynced_.push_back(created.path);
    fd_ = std::move(fd);
    auto at =
        std::lower_bound(segments_.begin(), segments_.end(), day_start_ms,
                         [](const Segment& x, std::int64_t day) { return x.day_start_ms < day; });
    segments_.insert(at, std::move(created));
  } else {
    fd_ = internal::Fd(::open(segment->path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd_.valid()) return io_error("cannot open", segment->path, errno);
  }
  current_day_ms_ = day_start_ms;
  return ok_status();
}

Result<EventPlace> EventLog::append(std::uint64_t seq, std::int64_t at_ms,
                                    std::string_view payload) {
  CREDIT_ASSERT(seq > last_seq_);
  CREDIT_ASSERT(payload.size() <= kEventPayloadBytesMax);
  const std::int64_t day = day_start_ms(at_ms);
  if (day != current_day_ms_) {
    Status s = switch_to(day);
    if (!s) return s.error();
  }
  Segment* segment = segment_of(day);
  const EventPlace place = place_of(segment->number, segment->bytes);
  unsigned char header[kEventRecordHeaderBytes] = {};
  put_fixed(header, 8, static_cast<std::uint32_t>(payload.size()));
  put_fixed(header, 12, seq);
  put_fixed(header, 20, at_ms);
  const std::size_t start = buffer_.size();
  buffer_.append(reinterpret_cast<const char*>(header), sizeof(header));
  buffer_.append(payload);
  // The checksum covers the header after it and the payload, hashed where they now lie.
  const std::uint64_t checksum =
      XXH3_64bits(buffer_.data() + start + 8, kEventRecordHeaderBytes - 8 + payload.size());
  std::memcpy(buffer_.data() + start, &checksum, sizeof(checksum));
  segment->bytes += sizeof(header) + payload.size();
  segment->seq_last = seq;
  last_seq_ = seq;
  if (buffer_.size() >= kEventWriteBufferBytesMax) {
    if (Status s = flush(); !s) return s.error();
  }
  return place;
}

std::optional<std::string_view> EventLog::read(EventPlace place, std::uint64_t seq) const {
  const auto number = static_cast<std::uint32_t>(place >> kEventPlaceOffsetBits);
  const std::uint64_t offset = place & ((1ULL << kEventPlaceOffsetBits) - 1);
  // Readers go through one account's events, mostly in one segment: try the last one.
  if (last_read_segment_ >= segments_.size() || segments_[last_read_segment_].number != number) {
    auto it = std::find_if(segments_.begin(), segments_.end(),
                           [&](const Segment& s) { return s.number == number; });
    if (it == segments_.end()) return std::nullopt;  // deleted by retention
    last_read_segment_ = static_cast<std::size_t>(it - segments_.begin());
  }
  const Segment& segment = segments_[last_read_segment_];
  if (offset < kEventSegmentHeaderBytes || offset + kEventRecordHeaderBytes > segment.bytes) {
    return std::nullopt;
  }
  // A record is in the file or, whole, in the buffer of the segment being written.
  const bool current = segment.day_start_ms == current_day_ms_;
  const std::uint64_t flushed = current ? segment.bytes - buffer_.size() : segment.bytes;
  const unsigned char* p = nullptr;
  std::uint64_t available = 0;
  if (offset >= flushed) {
    p = reinterpret_cast<const unsigned char*>(buffer_.data()) + (offset - flushed);
    available = segment.bytes - offset;
  } else {
    // The map must hold the whole record; any record ends within the largest payload after
    // its header, and within what is flushed.
    const std::uint64_t needed =
        std::min(flushed, offset + kEventRecordHeaderBytes + kEventPayloadBytesMax);
    const ReadMap* map = map_for_read(segment, needed, flushed);
    if (map == nullptr) return std::nullopt;
    p = map->base + offset;
    available = flushed - offset;
  }
  const auto length = get_fixed<std::uint32_t>(p, 8);
  if (length > kEventPayloadBytesMax || kEventRecordHeaderBytes + length > available ||
      get_fixed<std::uint64_t>(p, 12) != seq) {
    return std::nullopt;
  }
  return std::string_view(reinterpret_cast<const char*>(p + kEventRecordHeaderBytes), length);
}

const EventLog::ReadMap* EventLog::map_for_read(const Segment& segment, std::uint64_t needed,
                                                std::uint64_t bytes) const {
  if (segment.map.length >= needed) return &segment.map;
  unmap(segment);
  // The whole written file, so that a segment being written is mapped again only for
  // reads of its last MiB after it grew.
  internal::Fd fd(::open(segment.path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st {};
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0 ||
      static_cast<std::uint64_t>(st.st_size) < bytes) {
    return nullptr;  // shorter than written: cut under the log, and never touched past its end
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (p == MAP_FAILED) return nullptr;
  segment.map = ReadMap{static_cast<const unsigned char*>(p), bytes};
  return &segment.map;
}

void EventLog::unmap(const Segment& segment) {
  if (segment.map.base == nullptr) return;
  ::munmap(const_cast<unsigned char*>(segment.map.base), segment.map.length);
  segment.map = ReadMap{};
}

Status EventLog::flush() {
  if (buffer_.empty()) return ok_status();
  Segment* segment = segment_of(current_day_ms_);
  CREDIT_ASSERT(segment != nullptr && fd_.valid());
  const std::uint64_t offset = segment->bytes - buffer_.size();
  Status s = internal::write_all(ops_, fd_.get(), buffer_.data(), buffer_.size(),
                                 static_cast<off_t>(offset), segment->path);
  if (!s) return s;
  buffer_.clear();
  mark_unsynced(segment->path);
  return ok_status();
}

Result<std::vector<std::string>> EventLog::take_unsynced() {
  Status s = flush();
  if (!s) return s.error();
  std::vector<std::string> files = std::move(unsynced_);
  unsynced_.clear();
  dir_unsynced_ = false;
  return files;
}

Status EventLog::sync_files(const std::vector<std::string>& files, const std::string& dir,
                            FileOps* ops_or_null) {
  FileOps& ops = ops_or_null != nullptr ? *ops_or_null : FileOps::real();
  for (const std::string& path : files) {
    internal::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    // Deleted by retention since it was written: nothing left to make durable.
    if (!fd.valid() && errno == ENOENT) continue;
    if (!fd.valid()) return io_error("cannot open", path, errno);
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
      internal::write_back_paced(fd.get(), static_cast<std::uint64_t>(st.st_size),
                                 kEventSyncChunkBytes);
    }
    if (ops.fdatasync(fd.get()) != 0) return io_error("cannot fdatasync", path, errno);
  }
  return internal::fsync_dir(ops, dir);
}

Status EventLog::sync() {
  auto files = take_unsynced();
  if (!files) return files.error();
  return sync_files(*files, dir_, &ops_);
}

std::uint64_t EventLog::bytes() const {
  std::uint64_t total = 0;
  for (const Segment& s : segments_) total += s.bytes;
  return total;
}

Result<std::size_t> EventLog::enforce_retention(std::int64_t now_ms,
                                                std::vector<EventLogDeleted>* deleted_out) {
  if (deleted_out != nullptr) deleted_out->clear();
  const std::int64_t cutoff_ms = now_ms - options_.retain_days * kMsPerDay;
  std::uint64_t total = bytes();
  // Oldest first; the segment being written and the one holding the newest event stay.
  // The files go first; segments_ and unsynced_ then lose them in one pass each: erased
  // one by one, the ~83,000 days of a clock moved on by centuries held the ledger thread
  // for some 90 s.
  std::vector<bool> gone(segments_.size(), false);
  std::unordered_set<std::string_view> gone_paths;
  Status unlinked = ok_status();
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const Segment& oldest = segments_[i];
    const bool kept =
        oldest.day_start_ms == current_day_ms_ || (last_seq_ != 0 && oldest.seq_last == last_seq_);
    if (kept) continue;
    const bool too_old = oldest.day_start_ms + kMsPerDay <= cutoff_ms;
    const bool over_budget = options_.bytes_max != 0 && total > options_.bytes_max;
    if (!too_old && !over_budget) break;
    if (::unlink(oldest.path.c_str()) != 0 && errno != ENOENT) {
      unlinked = io_error("cannot delete", oldest.path, errno);
      break;
    }
    unmap(oldest);
    total -= oldest.bytes;
    gone[i] = true;
    gone_paths.insert(oldest.path);
    if (deleted_out != nullptr) {
      deleted_out->push_back(EventLogDeleted{oldest.day_start_ms, oldest.number});
    }
  }
  const std::size_t deleted = gone_paths.size();
  if (deleted > 0) {
    std::erase_if(unsynced_, [&](const std::string& path) { return gone_paths.contains(path); });
    gone_paths.clear();  // its views point into segments_, which moves below
    std::size_t kept = 0;
    for (std::size_t i = 0; i < segments_.size(); ++i) {
      if (gone[i]) continue;
      if (kept != i) segments_[kept] = std::move(segments_[i]);
      ++kept;
    }
    segments_.erase(segments_.begin() + static_cast<std::ptrdiff_t>(kept), segments_.end());
    last_read_segment_ = 0;
  }
  if (!unlinked) return unlinked.error();
  if (deleted > 0) {
    Status s = internal::fsync_dir(ops_, dir_);
    if (!s) return s.error();
  }
  return deleted;
}

}  // namespace credit::store
