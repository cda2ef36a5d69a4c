// src/store/wal.cc
// Recovery, append, sync and rotation of the write-ahead log (rules in wal.h, bytes in
// wal_format.h).
// Owns: the decision torn tail versus damage, and the order of writes that keeps a crash
// from turning into damage. Does not: interpret payloads.
#include "store/wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>

#include "base/assert.h"
#include "store/wal_format.h"

namespace credit::store {
namespace {

using internal::all_zero;
using internal::damage_error;
using internal::io_error;

constexpr std::string_view kDamage = "wal damage in";
constexpr std::string_view kDamagedSuffix = ".damaged";

// Copies n bytes at offset; bytes past the end of the file read as zeros (wal.h).
void copy_padded(std::span<const unsigned char> file, std::uint64_t offset, unsigned char* out,
                 std::size_t n) {
  std::memset(out, 0, n);
  if (offset < file.size()) {
    std::memcpy(out, file.data() + offset,
                static_cast<std::size_t>(std::min<std::uint64_t>(n, file.size() - offset)));
  }
}

// Why the record at pos fails its check, or an empty string when it is intact.
std::string record_failure(std::span<const unsigned char> file, std::uint64_t pos,
                           const RecordHeader& header) {
  if (!is_known_record_type(header.type)) {
    return "unknown record type " + std::to_string(header.type);
  }
  if (pos + kRecordHeaderBytes + header.length > file.size()) {
    return "record length " + std::to_string(header.length) + " runs past the end of the file";
  }
  if (record_checksum(file.data() + pos + 8, header.length) != header.checksum) {
    return "record checksum mismatch";
  }
  return {};
}

Error to_error(const WalDamage& damage) {
  return damage_error(kDamage, damage.file, damage.offset, damage.reason);
}

bool intact_record_at(std::span<const unsigned char> file, std::uint64_t pos) {
  if (pos + kRecordHeaderBytes > file.size()) return false;
  const RecordHeader header = decode_record_header(file.data() + pos);
  return header.checksum != 0 && record_failure(file, pos, header).empty();
}

// Where the run of intact records that starts after the segment header ends.
std::uint64_t intact_records_end(std::span<const unsigned char> file) {
  std::uint64_t pos = kSegmentHeaderBytes;
  while (intact_record_at(file, pos)) {
    pos += kRecordHeaderBytes + decode_record_header(file.data() + pos).length;
  }
  return pos;
}

// The bytes of a segment file that are its segment (wal.h): its first segment_bytes, unless
// its records run past them (written while the segment size was larger) or the file is
// not longer. A writer never puts a record past the preallocated size, so what lies beyond
// it after the records' end was not written by creditd.
std::span<const unsigned char> segment_part(std::span<const unsigned char> file,
                                            std::uint64_t segment_bytes) {
  if (file.size() <= segment_bytes || intact_records_end(file) > segment_bytes) return file;
  return file.first(static_cast<std::size_t>(segment_bytes));
}

// The first non-zero byte at or after `from`, or nothing.
std::optional<std::uint64_t> first_non_zero(std::span<const unsigned char> file,
                                            std::uint64_t from) {
  if (from >= file.size()) return std::nullopt;
  // Skips whole zero blocks first: the tail of the last segment is megabytes of zeros.
  constexpr std::uint64_t kZeroBlockBytes = 4096;
  while (file.size() - from >= kZeroBlockBytes && all_zero(file.data() + from, kZeroBlockBytes)) {
    from += kZeroBlockBytes;
  }
  const auto it = std::find_if(file.begin() + static_cast<std::ptrdiff_t>(from), file.end(),
                               [](unsigned char b) { return b != 0; });
  if (it == file.end()) return std::nullopt;
  return static_cast<std::uint64_t>(it - file.begin());
}

// The segment numbers of the files in dir, in order.
Result<std::vector<std::uint64_t>> segment_numbers(const std::string& dir) {
  auto names = internal::list_dir(dir);
  if (!names) return names.error();
  std::vector<std::uint64_t> numbers;
  for (const std::string& name : *names) {
    if (auto number = parse_segment_file_name(name)) numbers.push_back(*number);
  }
  std::sort(numbers.begin(), numbers.end());
  return numbers;
}

// Decodes a segment header: true when it is one of this format version, checksum intact
// (recover() tells the failures apart instead).
bool decode_current_header(const unsigned char* bytes, SegmentHeader& h) {
  h = decode_segment_header(bytes);
  return h.magic == kSegmentMagic && h.version == kFormatVersion &&
         h.checksum == segment_header_checksum(bytes);
}

// The header of the segment file at path, when it can be read and is valid and current.
std::optional<SegmentHeader> valid_segment_header(const std::string& path) {
  internal::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  unsigned char bytes[kSegmentHeaderBytes] = {};
  if (!fd.valid() || ::pread(fd.get(), bytes, sizeof(bytes), 0) != sizeof(bytes)) return {};
  SegmentHeader h;
  if (!decode_current_header(bytes, h)) return {};
  return h;
}

}  // namespace

Wal::Wal(std::string dir, const WalOptions& options)
    : dir_(std::move(dir)),
      options_(options),
      ops_(options.file_ops != nullptr ? *options.file_ops : FileOps::real()) {}

Wal::~Wal() {
  if (preallocation_.thread.joinable()) preallocation_.thread.join();
}

std::string Wal::path_of(std::uint64_t number) const {
  return internal::join_path(dir_, segment_file_name(number));
}

std::uint64_t Wal::payload_bytes_max() const {
  return options_.segment_bytes - kSegmentHeaderBytes - kRecordHeaderBytes;
}

Result<std::unique_ptr<Wal>> Wal::open(const std::string& dir, const WalOptions& options,
                                       const WalRecordFn& on_record) {
  if (options.segment_bytes < kSegmentBytesMin || options.segment_bytes > kSegmentBytesMax) {
    return Error(ErrorCode::kInvalidRequest, "wal segment_bytes must be within [" +
                                                 std::to_string(kSegmentBytesMin) + ", " +
                                                 std::to_string(kSegmentBytesMax) + "]");
  }
  Status made = internal::make_dir(dir);
  if (!made) return made.error();
  std::unique_ptr<Wal> wal(new Wal(dir, options));
  Status recovered = wal->recover(on_record);
  if (!recovered) return recovered.error();
  return wal;
}

Result<std::optional<std::uint64_t>> Wal::first_lsn_on_disk(const std::string& dir) {
  if (::access(dir.c_str(), F_OK) != 0) return std::optional<std::uint64_t>();
  auto numbers = segment_numbers(dir);
  if (!numbers) return numbers.error();
  for (std::uint64_t number : *numbers) {
    const std::string path = internal::join_path(dir, segment_file_name(number));
    if (::access(path.c_str(), R_OK) != 0) return io_error("cannot open", path, errno);
    if (auto header = valid_segment_header(path))
      return std::optional<std::uint64_t>(header->first_lsn);
  }
  return std::optional<std::uint64_t>();
}

Result<std::optional<std::uint64_t>> Wal::oldest_segment_on_disk(const std::string& dir) {
  if (::access(dir.c_str(), F_OK) != 0) return std::optional<std::uint64_t>();
  auto numbers = segment_numbers(dir);
  if (!numbers) return numbers.error();
  if (numbers->empty()) return std::optional<std::uint64_t>();
  return std::optional<std::uint64_t>(numbers->front());
}

std::uint64_t Wal::bytes_on_disk(const std::string& dir) {
  auto names = internal::list_dir(dir);
  if (!names) return 0;
  std::uint64_t bytes = 0;
  for (const std::string& name : *names) {
    if (!parse_segment_file_name(name)) continue;
    struct stat st;
    const std::string path = internal::join_path(dir, name);
    if (::stat(path.c_str(), &st) == 0) bytes += static_cast<std::uint64_t>(st.st_size);
  }
  return bytes;
}

Status Wal::read_range(const std::string& dir, std::uint64_t from_lsn, std::uint64_t end_lsn,
                       const WalRecordFn& on_record) {
  CREDIT_ASSERT(from_lsn <= end_lsn);
  if (from_lsn == end_lsn) return ok_status();
  auto listed = segment_numbers(dir);
  if (!listed) return listed.error();
  const std::vector<std::uint64_t>& numbers = *listed;
  const auto path_of = [&](std::uint64_t number) {
    return internal::join_path(dir, segment_file_name(number));
  };
  const auto header_of = [&](std::uint64_t number) -> std::optional<SegmentHeader> {
    auto h = valid_segment_header(path_of(number));
    if (h && h->segment_number != number) return {};
    return h;
  };
  // The newest segment starting at or below from_lsn: the older ones may be deleted while
  // this reads, the later ones (a preallocated one without a header yet) are after it.
  std::size_t first = numbers.size();
  for (std::size_t k = numbers.size(); k-- > 0;) {
    const auto h = header_of(numbers[k]);
    if (h && h->first_lsn <= from_lsn) {
      first = k;
      break;
    }
  }
  if (first == numbers.size()) {
    return Error(ErrorCode::kStorageFailed,
                 "no log segment in " + dir + " holds LSN " + std::to_string(from_lsn));
  }
  std::uint64_t lsn = 0;
  internal::MappedFile mapped;
  for (std::size_t k = first; k < numbers.size(); ++k) {
    const std::string path = path_of(numbers[k]);
    if (k != first && numbers[k] != numbers[k - 1] + 1) {
      return damage_error(kDamage, path, 0, "missing segment before it");
    }
    if (k + 1 < numbers.size()) internal::prefetch_file(path_of(numbers[k + 1]));
    if (Status s = mapped.open(path); !s.ok()) return s;
    const std::span<const unsigned char> file = mapped.bytes();
    unsigned char header_bytes[kSegmentHeaderBytes];
    copy_padded(file, 0, header_bytes, sizeof(header_bytes));
    // A preallocated segment not yet begun: the log ends before it.
    if (k != first && all_zero(header_bytes, sizeof(header_bytes))) break;
    SegmentHeader header;
    if (!decode_current_header(header_bytes, header) || header.segment_number != numbers[k] ||
        (k != first && header.first_lsn != lsn)) {
      return damage_error(kDamage, path, 0,
                          "bad segment header while reading LSNs below " + std::to_string(end_lsn));
    }
    lsn = header.first_lsn;
    std::uint64_t pos = kSegmentHeaderBytes;
    while (true) {
      unsigned char record_bytes[kRecordHeaderBytes];
      copy_padded(file, pos, record_bytes, sizeof(record_bytes));
      if (all_zero(record_bytes, sizeof(record_bytes))) break;  // the segment's last record
      const RecordHeader record = decode_record_header(record_bytes);
      if (std::string failure = record_failure(file, pos, record); !failure.empty()) {
        return damage_error(kDamage, path, pos, failure);
      }
      if (record.type == static_cast<std::uint8_t>(RecordType::kVoidedBatch)) {
        if (lsn >= from_lsn) {
          return damage_error(kDamage, path, pos,
                              "a batch voided by a repair holds LSN " + std::to_string(lsn));
        }
        if (++lsn == end_lsn) return ok_status();
      } else if (record.type == static_cast<std::uint8_t>(RecordType::kBatch)) {
        if (lsn >= from_lsn) {
          const std::string_view payload(
              reinterpret_cast<const char*>(file.data() + pos + kRecordHeaderBytes), record.length);
          if (Status delivered = on_record(lsn, payload); !delivered) return delivered;
        }
        if (++lsn == end_lsn) return ok_status();
      }
      pos += kRecordHeaderBytes + record.length;
    }
  }
  return Error(ErrorCode::kStorageFailed, "the log in " + dir + " ends at LSN " +
                                              std::to_string(lsn) + ", before LSN " +
                                              std::to_string(end_lsn));
}

Status Wal::recover(const WalRecordFn& on_record) {
  auto listed = segment_numbers(dir_);
  if (!listed) return listed.error();
  const std::vector<std::uint64_t> numbers = std::move(*listed);

  // Segments [0, scan_end) are read; from a missing number on nothing can be trusted.
  std::size_t scan_end = numbers.size();
  std::optional<WalDamage> damage;  // the first damage, cut because repair = true
  for (std::size_t i = 1; i < numbers.size(); ++i) {
    if (numbers[i] != numbers[i - 1] + 1) {
      damage = WalDamage{path_of(numbers[i - 1] + 1), 0,
                         "missing segment: " + segment_file_name(numbers[i - 1]) +
                             " is followed by " + segment_file_name(numbers[i])};
      if (!options_.repair) return to_error(*damage);
      scan_end = i;
      break;
    }
  }

  std::vector<Segment> retained;          // segments with a valid header, in order
  std::uint64_t tail_offset = 0;          // end of the last intact record of retained.back()
  std::size_t set_aside_from = scan_end;  // [set_aside_from, size) renamed .damaged
  std::size_t remove_from = scan_end;     // [remove_from, scan_end) all zero: removed
  std::uint64_t lsn = 0;
  std::uint8_t last_type = 0;
  internal::MappedFile mapped;  // the segment being read
  std::span<const unsigned char> file;
  std::vector<unsigned char> later;
  // Segments with bytes past their segment_bytes (segment_part): cut after
  // before_write, unless the segment is removed or set aside.
  std::vector<std::pair<std::size_t, WalDamage>> past_segment;

  // Index of the first segment in [from, scan_end) holding a non-zero byte, or scan_end.
  auto first_used_segment = [&](std::size_t from) -> Result<std::size_t> {
    for (std::size_t j = from; j < scan_end; ++j) {
      Status read = internal::read_file(path_of(numbers[j]), later);
      if (!read) return read.error();
      const auto part = segment_part(later, options_.segment_bytes);
      if (!all_zero(part.data(), part.size())) return j;
    }
    return scan_end;
  };
  // Repair cuts segment k at offset and sets aside every later segment.
  auto cut_at_damage = [&](std::size_t k, std::uint64_t offset, std::string reason,
                           bool whole_segment) -> Status {
    WalDamage found{path_of(numbers[k]), offset, std::move(reason)};
    if (!options_.repair) return to_error(found);
    if (!damage) damage = std::move(found);
    if (whole_segment) {
      set_aside_from = std::min(set_aside_from, k);
      return ok_status();
    }
    if (::truncate(path_of(numbers[k]).c_str(), static_cast<off_t>(offset)) != 0) {
      return io_error("cannot truncate", path_of(numbers[k]), errno);
    }
    set_aside_from = std::min(set_aside_from, k + 1);
    tail_offset = offset;
    return ok_status();
  };

  // With repair, whether the failing record at pos (header as read) is one to void: a
  // batch a snapshot covers whose declared end is exactly the start of an intact record,
  // with none inside it.
  auto skippable_covered = [&](std::uint64_t pos, const RecordHeader& record,
                               std::uint64_t lsn_here) {
    if (!options_.repair || lsn_here >= options_.covered_below_lsn) return false;
    if (record.type != static_cast<std::uint8_t>(RecordType::kBatch)) return false;
    const std::uint64_t end = pos + kRecordHeaderBytes + std::uint64_t{record.length};
    if (end > file.size() || !intact_record_at(file, end)) return false;
    for (std::uint64_t q = pos + 1; q < end; ++q) {
      if (intact_record_at(file, q)) return false;
    }
    return true;
  };

  bool done = false;
  for (std::size_t k = 0; k < scan_end && !done; ++k) {
    const std::string path = path_of(numbers[k]);
    if (k + 1 < scan_end) internal::prefetch_file(path_of(numbers[k + 1]));
    Status read = mapped.open(path);
    if (!read) return read;
    file = segment_part(mapped.bytes(), options_.segment_bytes);
    if (file.size() < mapped.bytes().size()) {
      const auto past = first_non_zero(mapped.bytes(), file.size());
      past_segment.push_back(
          {k, WalDamage{path, file.size(),
                        std::to_string(mapped.bytes().size() - file.size()) +
                            " bytes past the segment's preallocated " +
                            std::to_string(file.size()) + " bytes (" +
                            (past ? "the first non-zero at offset " + std::to_string(*past)
                                  : std::string("all zero")) +
                            "), where creditd writes nothing"}});
    }

    if (all_zero(file.data(), file.size())) {
      // Preallocated and unused: fine when every later segment is unused too.
      auto used = first_used_segment(k + 1);
      if (!used) return used.error();
      if (*used == scan_end) {
        remove_from = k;
        break;
      }
      Status cut = cut_at_damage(k, 0,
                                 "segment has no header but a later segment, " +
                                     segment_file_name(numbers[*used]) + ", holds data",
                                 true);
      if (!cut) return cut;
      break;
    }

    unsigned char header_bytes[kSegmentHeaderBytes];
    copy_padded(file, 0, header_bytes, sizeof(header_bytes));
    const SegmentHeader header = decode_segment_header(header_bytes);
    std::string header_problem;
    std::uint64_t header_offset = 0;
    if (header.magic != kSegmentMagic) {
      header_problem = "bad segment magic";
    } else if (header.version != kFormatVersion) {
      // Not damage: a log written by another format version is never "repaired".
      Error error(ErrorCode::kStorageFailed,
                  "wal segment " + path + " has format version " + std::to_string(header.version) +
                      "; this build reads version " + std::to_string(kFormatVersion));
      error.with_string("file", path);
      error.with("offset", "8");
      return error;
    } else if (header.checksum != segment_header_checksum(header_bytes)) {
      header_problem = "segment header checksum mismatch";
      header_offset = 32;
    } else if (header.flags != 0) {
      header_problem = "segment header flags are not zero";
      header_offset = 12;
    } else if (header.segment_number != numbers[k]) {
      header_problem = "segment header holds number " + std::to_string(header.segment_number);
      header_offset = 16;
    } else if (k > 0 && header.first_lsn != lsn) {
      header_problem = "segment starts at LSN " + std::to_string(header.first_lsn) +
                       " but the previous segment ends at LSN " + std::to_string(lsn);
      header_offset = 24;
    }
    if (!header_problem.empty()) {
      if (k == 0 && options_.repair) {
        // Nothing would say at which LSN the log starts.
        Error error = damage_error(kDamage, path, header_offset, header_problem);
        error.message = "cannot repair: the oldest segment's header is damaged: " + error.message;
        return error;
      }
      Status cut = cut_at_damage(k, header_offset, header_problem, true);
      if (!cut) return cut;
      break;
    }
    if (k == 0) lsn = header.first_lsn;
    retained.push_back({numbers[k], header.first_lsn});

    std::uint64_t pos = kSegmentHeaderBytes;
    while (true) {
      unsigned char record_bytes[kRecordHeaderBytes];
      copy_padded(file, pos, record_bytes, sizeof(record_bytes));
      const RecordHeader record = decode_record_header(record_bytes);
      const bool zero_header = all_zero(record_bytes, sizeof(record_bytes));
      std::string failure = zero_header ? std::string() : record_failure(file, pos, record);
      if (!zero_header && failure.empty()) {
        const std::string_view payload(
            reinterpret_cast<const char*>(file.data() + pos + kRecordHeaderBytes), record.length);
        if (record.type == static_cast<std::uint8_t>(RecordType::kBatch)) {
          Status delivered = on_record(lsn, payload);
          if (!delivered) return delivered;
          ++lsn;
          ++recovery_.batches;
        } else if (record.type == static_cast<std::uint8_t>(RecordType::kVoidedBatch)) {
          if (lsn >= options_.covered_below_lsn) {
            return damage_error(kDamage, path, pos,
                                "a batch voided by a repair holds LSN " + std::to_string(lsn) +
                                    ", which no snapshot covers");
          }
          ++lsn;
        }
        last_type = record.type;
        pos += kRecordHeaderBytes + record.length;
        continue;
      }
      tail_offset = pos;
      const std::uint64_t declared_end = std::min<std::uint64_t>(
          pos + kRecordHeaderBytes + (zero_header ? 0 : record.length), file.size());
      const std::optional<std::uint64_t> non_zero = first_non_zero(file, declared_end);
      if (zero_header && !non_zero) break;  // the clean end of this segment's records
      if (zero_header) {
        Status cut = cut_at_damage(
            k, pos,
            "zero record header followed by a non-zero byte at offset " + std::to_string(*non_zero),
            false);
        if (!cut) return cut;
        done = true;
        break;
      }
      // A failing record: a torn tail only under all four conditions of wal.h.
      std::string why_not_torn;
      if (non_zero) {
        why_not_torn = "followed by a non-zero byte at offset " + std::to_string(*non_zero);
      } else if (last_type == static_cast<std::uint8_t>(RecordType::kShutdown)) {
        why_not_torn = "after a clean shutdown record";
      } else {
        for (std::uint64_t q = pos + 1; q < declared_end; ++q) {
          if (intact_record_at(file, q)) {
            why_not_torn = "followed by an intact record at offset " + std::to_string(q);
            break;
          }
        }
      }
      if (why_not_torn.empty()) {
        auto used = first_used_segment(k + 1);
        if (!used) return used.error();
        if (*used != scan_end) {
          why_not_torn = "a later segment, " + segment_file_name(numbers[*used]) + ", holds data";
        }
      }
      if (!why_not_torn.empty() && skippable_covered(pos, record, lsn)) {
        // Resealed in place as a voided batch (durably), so that the next start reads it
        // as one instead of as damage; it keeps its LSN.
        std::vector<unsigned char> resealed(
            file.begin() + static_cast<std::ptrdiff_t>(pos),
            file.begin() + static_cast<std::ptrdiff_t>(pos + kRecordHeaderBytes + record.length));
        seal_record(resealed.data(), static_cast<std::uint8_t>(RecordType::kVoidedBatch),
                    record.length);
        internal::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
        if (!fd.valid()) return io_error("cannot open", path, errno);
        if (ops_.pwrite(fd.get(), resealed.data(), kRecordHeaderBytes, static_cast<off_t>(pos)) !=
            static_cast<ssize_t>(kRecordHeaderBytes)) {
          return io_error("cannot write", path, errno);
        }
        if (ops_.fdatasync(fd.get()) != 0) return io_error("cannot fdatasync", path, errno);
        recovery_.voided.push_back(WalDamage{path, pos,
                                             failure + ", " + why_not_torn +
                                                 "; voided: a snapshot covers LSN " +
                                                 std::to_string(lsn)});
        ++lsn;
        last_type = static_cast<std::uint8_t>(RecordType::kVoidedBatch);
        pos += kRecordHeaderBytes + record.length;
        continue;
      }
      if (!why_not_torn.empty()) {
        Status cut = cut_at_damage(k, pos, failure + ", " + why_not_torn, false);
        if (!cut) return cut;
        done = true;
        break;
      }
      // Torn tail: zero its bytes durably before anything is appended after them.
      internal::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd.valid()) return io_error("cannot open", path, errno);
      Status zeroed = internal::write_zeros(ops_, fd.get(), pos, declared_end - pos, path);
      if (!zeroed) return zeroed;
      if (ops_.fdatasync(fd.get()) != 0) return io_error("cannot fdatasync", path, errno);
      recovery_.torn_tail = WalDamage{path, pos, failure};
      remove_from = k + 1;
      done = true;
      break;
    }
  }

  if (options_.before_write) {
    Status go_on = options_.before_write();
    if (!go_on) return go_on;
  }
  // With repair, a log that ends before the LSN the newest snapshot needs cannot continue
  // it: every segment file is set aside and the log restarts at that LSN, in a new segment
  // numbered after all of them. The state is the snapshot's.
  std::optional<std::uint64_t> restart_number;
  if (options_.repair && lsn < options_.covered_below_lsn) {
    recovery_.restarted_after_lsn = lsn;
    remove_from = scan_end;
    set_aside_from = 0;
    restart_number = numbers.empty() ? 0 : numbers.back() + 1;
    retained.clear();
    lsn = options_.covered_below_lsn;
    last_type = 0;
  }
  mapped.reset();  // nothing is read from here on, and a cut file must not stay mapped
  for (auto& [k, past] : past_segment) {
    if (k >= std::min(remove_from, set_aside_from)) continue;  // removed or kept whole
    auto cut = cut_past_segment(past.file);
    if (!cut) return cut.error();
    // (Not when a repair cut the file inside its segment already.)
    if (*cut) recovery_.cut_past_segment.push_back(std::move(past));
  }
  bool dir_changed = false;
  for (std::size_t j = remove_from; j < scan_end; ++j) {
    const std::string path = path_of(numbers[j]);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 &&
        static_cast<std::uint64_t>(st.st_size) > options_.segment_bytes) {
      recovery_.cut_past_segment.push_back(WalDamage{
          path, options_.segment_bytes,
          std::to_string(static_cast<std::uint64_t>(st.st_size) - options_.segment_bytes) +
              " bytes past the preallocated size of an unused segment, removed with it"});
    }
    if (::unlink(path.c_str()) != 0) return io_error("cannot remove unused segment", path, errno);
    dir_changed = true;
  }
  for (std::size_t j = set_aside_from; j < numbers.size(); ++j) {
    const std::string path = path_of(numbers[j]);
    auto unused = holds_no_record(numbers[j]);
    if (!unused) return unused.error();
    if (*unused) {
      // Preallocated (zeros, or a header and zeros): not damage, and nothing to inspect.
      if (::unlink(path.c_str()) != 0) return io_error("cannot remove unused segment", path, errno);
    } else {
      const std::string aside = path + std::string(kDamagedSuffix);
      if (::rename(path.c_str(), aside.c_str()) != 0) {
        return io_error("cannot set aside", path, errno);
      }
      recovery_.set_aside.push_back(aside);
    }
    dir_changed = true;
  }
  if (dir_changed) {
    Status synced = internal::fsync_dir(ops_, dir_);
    if (!synced) return synced;
  }
  recovery_.repaired = damage;

  next_lsn_ = lsn;
  durable_lsn_ = lsn;
  if (retained.empty()) {
    const std::uint64_t number = restart_number    ? *restart_number
                                 : numbers.empty() ? 0
                                                   : numbers.front();
    Status started = start_segment(number, lsn);
    if (!started) return started;
  } else {
    segments_.assign(retained.begin(), retained.end());
    Status resumed = resume_segment(retained.back().number, tail_offset);
    if (!resumed) return resumed;
  }
  recovery_.first_lsn = segments_.front().first_lsn;
  recovery_.next_lsn = next_lsn_;
  recovery_.ended_with_shutdown = last_type == static_cast<std::uint8_t>(RecordType::kShutdown);
  if (recovery_.ended_with_shutdown) {
    // Without this record a torn write after the restart would look like damage after a
    // clean shutdown.
    Status reserved = reserve(0);
    if (!reserved) return reserved;
    buffer_record(static_cast<std::uint8_t>(RecordType::kOpen), {});
  }
  Status synced = sync();
  if (!synced) return synced;
  start_preallocation(segments_.back().number + 1);
  return ok_status();
}

Result<bool> Wal::holds_no_record(std::uint64_t number) const {
  internal::MappedFile mapped;
  Status read = mapped.open(path_of(number));
  if (!read) return read.error();
  const auto part = segment_part(mapped.bytes(), options_.segment_bytes);
  if (all_zero(part.data(), part.size())) return true;
  SegmentHeader header;
  return part.size() >= kSegmentHeaderBytes && decode_current_header(part.data(), header) &&
         header.segment_number == number &&
         all_zero(part.data() + kSegmentHeaderBytes, part.size() - kSegmentHeaderBytes);
}

Result<bool> Wal::cut_past_segment(const std::string& path) {
  internal::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path, errno);
  if (static_cast<std::uint64_t>(st.st_size) <= options_.segment_bytes) return false;
  if (::ftruncate(fd.get(), static_cast<off_t>(options_.segment_bytes)) != 0) {
    return io_error("cannot truncate", path, errno);
  }
  if (ops_.fsync(fd.get()) != 0) return io_error("cannot fsync", path, errno);
  return true;
}

Status Wal::start_segment(std::uint64_t number, std::uint64_t first_lsn) {
  Status ready = finish_preallocation(number);
  if (!ready) return ready;
  const std::string path = path_of(number);
  internal::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  fd_ = std::move(fd);
  capacity_bytes_ = options_.segment_bytes;
  buffer_offset_ = 0;
  buffer_.resize(kSegmentHeaderBytes);
  SegmentHeader header;
  header.segment_number = number;
  header.first_lsn = first_lsn;
  encode_segment_header(header, buffer_.data());
  segments_.push_back({number, first_lsn});
  return ok_status();
}

Status Wal::resume_segment(std::uint64_t number, std::uint64_t tail_offset) {
  const std::string path = path_of(number);
  internal::Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path, errno);
  const auto size = static_cast<std::uint64_t>(st.st_size);
  capacity_bytes_ = std::max(options_.segment_bytes, size);
  if (size < capacity_bytes_) {
    // A file shortened by a crash or a repair gets its zeros back, so appends stay
    // within written blocks.
    Status zeroed = internal::write_zeros(ops_, fd.get(), size, capacity_bytes_ - size, path);
    if (!zeroed) return zeroed;
    if (ops_.fsync(fd.get()) != 0) return io_error("cannot fsync", path, errno);
  }
  fd_ = std::move(fd);
  buffer_offset_ = tail_offset;
  buffer_.clear();
  return ok_status();
}

void Wal::start_preallocation(std::uint64_t number) {
  if (preallocation_.thread.joinable()) preallocation_.thread.join();
  preallocation_.number = number;
  preallocation_.result.reset();
  preallocation_.failed.store(false, std::memory_order_release);
  auto work = [this, number] {
    set_preallocation_result(
        internal::create_zeroed_file(ops_, dir_, path_of(number), options_.segment_bytes));
  };
  if (options_.preallocate_in_background) {
    preallocation_.thread = std::thread(work);
  } else {
    work();
  }
}

void Wal::set_preallocation_result(Status s) {
  preallocation_.failed.store(!s.ok(), std::memory_order_release);
  preallocation_.result = std::move(s);
}

Status Wal::finish_preallocation(std::uint64_t number) {
  if (preallocation_.thread.joinable()) preallocation_.thread.join();
  if (preallocation_.number == number && preallocation_.result && preallocation_.result->ok()) {
    return ok_status();
  }
  // Not started, or failed (a full disk may have room again): try once more, here.
  preallocation_.number = number;
  set_preallocation_result(
      internal::create_zeroed_file(ops_, dir_, path_of(number), options_.segment_bytes));
  if (preallocation_.result->ok()) return ok_status();
  Error error = preallocation_.result->error();
  error.message = "cannot preallocate the next wal segment (nothing was written): " + error.message;
  return error;
}

Status Wal::prepare_next_segment() {
  if (Status usable = check_usable(); !usable) return usable;
  return finish_preallocation(segments_.back().number + 1);
}

Status Wal::check_usable() const {
  if (failure_) return *failure_;
  if (closed_) return Error(ErrorCode::kShuttingDown, "wal " + dir_ + " is closed");
  return ok_status();
}

Error Wal::fail(Error error) {
  error.message = "wal failed, restart to recover from disk: " + error.message;
  failure_ = error;
  return error;
}

Status Wal::rotate() {
  const std::uint64_t next = segments_.back().number + 1;
  Status ready = finish_preallocation(next);
  if (!ready) return ready;
  // Every record of this segment is made durable before the first of the next one:
  // otherwise a crash could leave a torn record followed by a segment holding data, which
  // recovery must call damage.
  Status synced = sync();
  if (!synced) return synced;
  fd_.reset();
  Status started = start_segment(next, next_lsn_);
  if (!started) return fail(started.error());
  start_preallocation(next + 1);
  return ok_status();
}

Status Wal::reserve(std::size_t payload_bytes) {
  Status usable = check_usable();
  if (!usable) return usable;
  if (payload_bytes > payload_bytes_max()) {
    return Error(ErrorCode::kInvalidRequest, "wal record of " + std::to_string(payload_bytes) +
                                                 " bytes exceeds the segment's payload_bytes_max " +
                                                 std::to_string(payload_bytes_max()));
  }
  const std::uint64_t tail = buffer_offset_ + buffer_.size();
  if (tail + kRecordHeaderBytes + payload_bytes <= capacity_bytes_) return ok_status();
  return rotate();
}

void Wal::buffer_record(std::uint8_t type, std::string_view payload) {
  const std::size_t start = buffer_.size();
  CREDIT_ASSERT(buffer_offset_ + start + kRecordHeaderBytes + payload.size() <= capacity_bytes_);
  buffer_.resize(start + kRecordHeaderBytes + payload.size());
  if (!payload.empty()) {
    std::memcpy(buffer_.data() + start + kRecordHeaderBytes, payload.data(), payload.size());
  }
  seal_record(buffer_.data() + start, type, static_cast<std::uint32_t>(payload.size()));
}

Result<std::uint64_t> Wal::append(std::string_view payload) {
  Status reserved = reserve(payload.size());
  if (!reserved) return reserved.error();
  buffer_record(static_cast<std::uint8_t>(RecordType::kBatch), payload);
  const std::uint64_t lsn = next_lsn_++;
  if (buffer_.size() >= options_.write_buffer_bytes_max) {
    Status flushed = flush();
    if (!flushed) return flushed.error();
  }
  return lsn;
}

Status Wal::flush() {
  if (buffer_.empty()) return ok_status();
  Status written =
      internal::write_all(ops_, fd_.get(), buffer_.data(), buffer_.size(),
                          static_cast<off_t>(buffer_offset_), path_of(segments_.back().number));
  if (!written) return fail(written.error());
  buffer_offset_ += buffer_.size();
  buffer_.clear();
  unsynced_ = true;
  return ok_status();
}

Status Wal::sync() {
  Status usable = check_usable();
  if (!usable) return usable;
  Status flushed = flush();
  if (!flushed) return flushed;
  if (unsynced_ && options_.fsync) {
    if (ops_.fdatasync(fd_.get()) != 0) {
      // Never retried: after a failed fdatasync the kernel may have dropped the pages.
      return fail(io_error("cannot fdatasync", path_of(segments_.back().number), errno));
    }
    unsynced_ = false;
  }
  durable_lsn_ = next_lsn_;
  return ok_status();
}

Result<std::size_t> Wal::truncate_before(std::uint64_t lsn) {
  auto released = release_before(lsn);
  if (!released) return released.error();
  Status deleted = delete_segments(*released, dir_, &ops_);
  if (!deleted) return deleted.error();
  return released->size();
}

Result<std::vector<std::string>> Wal::release_before(std::uint64_t lsn) {
  // The newest segment's header must be durable before an older segment goes away, or a
  // crash could leave no segment that says where the log starts.
  Status synced = sync();
  if (!synced) return synced.error();
  std::vector<std::string> paths;
  while (segments_.size() > 1 && segments_[1].first_lsn <= lsn) {
    paths.push_back(path_of(segments_.front().number));
    segments_.pop_front();
  }
  return paths;
}

Status Wal::delete_segments(const std::vector<std::string>& paths, const std::string& dir,
                            FileOps* ops_or_null) {
  if (paths.empty()) return ok_status();
  for (const std::string& path : paths) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return io_error("cannot delete", path, errno);
    }
  }
  FileOps& ops = ops_or_null != nullptr ? *ops_or_null : FileOps::real();
  return internal::fsync_dir(ops, dir);
}

Status Wal::close() {
  if (closed_) return ok_status();
  Status result = reserve(0);
  if (result) {
    buffer_record(static_cast<std::uint8_t>(RecordType::kShutdown), {});
    result = sync();
  }
  if (preallocation_.thread.joinable()) preallocation_.thread.join();
  fd_.reset();
  closed_ = true;
  return result;
}

}  // namespace credit::store
