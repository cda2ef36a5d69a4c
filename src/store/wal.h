// src/store/wal.h
// The write-ahead log: opaque batches made durable in order, in preallocated segment files
// (format in wal_format.h), and their recovery after a crash.
// Owns: recovery (torn tail versus damage), append + sync for group commit, segment
// rotation and preallocation, deleting segments a snapshot covers, the sticky failed state.
// Does not: know what a payload means, or decide when to snapshot (the embedded store does).
//
// Recovery rules (DESIGN.md section 3, "The store"):
// - Segments must be numbered without gaps; a missing number is damage naming that file.
// - A zero record header ends a segment's records. Bytes past the end of a file that is
//   shorter than its segment read as zeros, so a preallocated segment that lost its tail,
//   or a file cut in the middle of a record, reads like a torn write.
// - A segment is the first segment_bytes of its file: a writer never puts a record past the
//   preallocated size. Bytes a file holds past them, after the end of its records, were
//   not written by creditd (something appended them): they are not part of the segment,
//   so they are neither damage nor "a non-zero byte after" a record. They are cut (the
//   file truncated to segment_bytes, made durable) and reported in
//   WalRecovery::cut_past_segment, like a torn tail. (A file whose intact records run past
//   segment_bytes was written with a larger segment size: all of it is its segment.)
// - A record that fails its check (checksum, type, or a length running past the file) is a
//   torn tail only if (1) every byte after its declared end (or after the end of the file,
//   whichever is first) to the end of its segment is zero, (2) no intact record starts
//   anywhere after its first byte, (3) every later segment is entirely zero, and (4) the
//   intact record before it is not a shutdown record. A torn tail is zeroed (made durable)
//   and reported in WalRecovery::torn_tail; all-zero segments after it are removed.
// - A zero record header followed by a non-zero byte in its segment is damage, as is any
//   failing record that is not a torn tail, and a bad segment header.
// - Damage stops the open with a kStorageFailed Error whose details name the "file" and the
//   "offset". With repair = true the log is instead cut at the damage: the damaged segment
//   is truncated at the offset and later segments are renamed to "<name>.damaged" (kept
//   for inspection, never read again), except those that hold no record (all zeros, or a
//   valid header and zeros: preallocated), which are deleted. A
//   damaged record that a snapshot covers is voided instead, when the records after it can
//   be found (WalOptions::covered_below_lsn). A repaired log that ends before
//   covered_below_lsn restarts there, every older segment set aside.
// - Without repair, a log that ends before covered_below_lsn is the caller's to refuse.
// - A segment header of an unknown format version is refused even with repair.
//
// Threading: one owner thread calls every method; a background thread only preallocates
// the next segment. Not copyable.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/status.h"
#include "store/file_ops.h"
#include "store/internal/fs.h"

namespace credit::store {

struct WalOptions {
  // Every segment file is preallocated to this size; a record never spans segments, so a
  // payload is at most segment_bytes - kSegmentHeaderBytes - kRecordHeaderBytes.
  std::uint64_t segment_bytes = 64ULL << 20;
  // Cut the log at the first damage instead of refusing to open.
  bool repair = false;
  // Batch records below this LSN are covered by a snapshot and never replayed. With
  // repair, a damaged batch record among them is voided instead of cut at, so the intact
  // records after it stay: when its declared length ends exactly where an intact record
  // begins and no intact record begins inside it (its length and type are then what was
  // written), it is resealed as RecordType::kVoidedBatch, keeping its LSN. A voided record
  // at or above this LSN is damage (the state needs it).
  std::uint64_t covered_below_lsn = 0;
  // Preallocate the next segment on a background thread right after a rotation (false:
  // on the owner thread, in the same call).
  bool preallocate_in_background = true;
  // Appends gather in memory and reach the file at sync() or when this many bytes wait.
  std::size_t write_buffer_bytes_max = 1 << 20;
  // nullptr: the real system calls.
  FileOps* file_ops = nullptr;
  // Benchmarks only (creditd --no-fsync): sync() writes but skips fdatasync, so an
  // acknowledged batch can be lost with the machine. Never for real use.
  bool fsync = true;
  // Called by open() once every record was handed over and before it writes anything
  // more (a torn tail's zeros come before): an error stops the open with it, so a start
  // the caller refuses leaves the log as it found it. Empty: nothing is called.
  std::function<Status()> before_write;
};

// Where the log was cut, or is damaged.
struct WalDamage {
  std::string file;
  std::uint64_t offset = 0;
  std::string reason;
};

struct WalRecovery {
  std::uint64_t first_lsn = 0;  // LSN of the oldest retained batch record
  std::uint64_t next_lsn = 0;   // LSN the next append gets
  std::uint64_t batches = 0;    // batch records delivered to the callback
  bool ended_with_shutdown = false;
  std::optional<WalDamage> torn_tail;  // a torn write cut off (not an error)
  std::optional<WalDamage> repaired;   // damage cut off because repair = true
  std::vector<WalDamage> voided;       // damaged records below covered_below_lsn, voided
  // With repair, the log ended at this LSN, before covered_below_lsn (segments lost, or cut
  // at damage below it): every segment was set aside and the log restarts at
  // covered_below_lsn in a new segment; the commands it held from there are lost.
  std::optional<std::uint64_t> restarted_after_lsn;
  // Bytes found past a segment's segment_bytes (wal.h): cut off at `offset`, or removed with
  // an unused segment. Not an error.
  std::vector<WalDamage> cut_past_segment;
  // With repair, the segment files renamed "<name>.damaged" (their new paths).
  std::vector<std::string> set_aside;
};

// Receives each intact batch record in LSN order. Returning an error stops the open with it.
// When open fails, records already delivered must be discarded.
using WalRecordFn = std::function<Status(std::uint64_t lsn, std::string_view payload)>;

class Wal {
 public:
  // Creates `dir` if missing, recovers every segment (delivering each batch to
  // `on_record`), and readies the log for appends after the last intact record.
  static Result<std::unique_ptr<Wal>> open(const std::string& dir, const WalOptions& options,
                                           const WalRecordFn& on_record);
  // The first LSN of the oldest segment with a valid header, without opening the log;
  // nothing when the directory holds no segment. Lets the caller choose a snapshot the
  // retained log still continues.
  static Result<std::optional<std::uint64_t>> first_lsn_on_disk(const std::string& dir);
  // The number of the oldest segment file (wal-<number>.log); nothing when there is none.
  // Segments are numbered from 0 and deleted only once a snapshot covers them.
  static Result<std::optional<std::uint64_t>> oldest_segment_on_disk(const std::string& dir);
  // Delivers the batch records with LSNs in [from_lsn, end_lsn), in order, without writing
  // anything: for a process that rebuilds the state beside the one that owns the log (a
  // snapshot writer), while that one goes on appending and deleting segments below
  // from_lsn. Those records are durable, so each must be intact: a failing or missing one
  // is an error naming the file and offset (no torn tail, no repair).
  static Status read_range(const std::string& dir, std::uint64_t from_lsn, std::uint64_t end_lsn,
                           const WalRecordFn& on_record);
  // The bytes of the segment files in `dir`, preallocated tails included (0 when there is
  // no directory or it cannot be listed): what a recovery will read at most.
  static std::uint64_t bytes_on_disk(const std::string& dir);

  // Releases the files without writing a shutdown record (call close() for a clean one).
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Makes room for a batch of payload_bytes: rotates to the preallocated next segment when
  // the current one is too full. Fails with kStorageFailed, before anything is written and
  // without failing the log, when the next segment cannot be preallocated (a full disk).
  Status reserve(std::size_t payload_bytes);
  // Buffers one batch record and returns its LSN. Durable only after sync().
  Result<std::uint64_t> append(std::string_view payload);
  // Writes what is buffered and fdatasyncs: every LSN below next_lsn() is then durable.
  Status sync();
  // Deletes, oldest first, every segment whose batches all have LSN < lsn (a snapshot
  // covers them). Never the segment being written. Returns how many were deleted.
  Result<std::size_t> truncate_before(std::uint64_t lsn);
  // The same in two steps, so that the deletions need not hold the caller: the log lets
  // go of those segments (after a sync) and returns their paths, oldest first, for
  // delete_segments on any thread. Segments left behind by a crash between the two are
  // older than the snapshot, still contiguous with the rest, and skipped at recovery.
  Result<std::vector<std::string>> release_before(std::uint64_t lsn);
  // Unlinks `paths` in order, then fsyncs the directory `dir`.
  static Status delete_segments(const std::vector<std::string>& paths, const std::string& dir,
                                FileOps* ops = nullptr);
  // Appends a shutdown record and syncs; later calls fail with kShuttingDown.
  Status close();

  bool failed() const { return failure_.has_value(); }
  std::uint64_t first_lsn() const { return segments_.front().first_lsn; }
  std::uint64_t next_lsn() const { return next_lsn_; }
  std::uint64_t durable_lsn() const { return durable_lsn_; }
  std::uint64_t payload_bytes_max() const;
  // Bytes the segment being written can still take (records and their headers).
  std::uint64_t room_bytes() const { return capacity_bytes_ - (buffer_offset_ + buffer_.size()); }
  // Makes sure the next segment is preallocated: waits for the background preallocation,
  // and tries again here when it failed (a full disk may have room again). Nothing is
  // written to the log; the error says why the next rotation would fail.
  Status prepare_next_segment();
  // Whether the background preallocation of the next segment has ended in failure (a full
  // disk): known without waiting. DESIGN.md section 3: new batches are then refused.
  bool next_segment_failed() const { return preallocation_.failed.load(std::memory_order_acquire); }
  std::size_t segment_count() const { return segments_.size(); }
  const WalRecovery& recovery() const { return recovery_; }

 private:
  struct Segment {
    std::uint64_t number = 0;
    std::uint64_t first_lsn = 0;
  };
  struct Preallocation {
    std::uint64_t number = 0;
    std::thread thread;
    std::optional<Status> result;     // set when done (read after join)
    std::atomic<bool> failed{false};  // set with a failed result, cleared by a new attempt
  };

  Wal(std::string dir, const WalOptions& options);

  Status recover(const WalRecordFn& on_record);
  Status start_segment(std::uint64_t number, std::uint64_t first_lsn);
  // Whether segment `number` holds no record: all zeros, or a valid header and zeros.
  Result<bool> holds_no_record(std::uint64_t number) const;
  // Truncates the file to segment_bytes (durably); false when it was no longer.
  Result<bool> cut_past_segment(const std::string& path);
  Status resume_segment(std::uint64_t number, std::uint64_t tail_offset);
  void start_preallocation(std::uint64_t number);
  Status finish_preallocation(std::uint64_t number);
  // Keeps a preallocation's outcome, and whether it failed for next_segment_failed().
  void set_preallocation_result(Status s);
  Status rotate();
  void buffer_record(std::uint8_t type, std::string_view payload);
  Status flush();
  Status check_usable() const;
  Error fail(Error error);
  std::string path_of(std::uint64_t number) const;

  std::string dir_;
  WalOptions options_;
  FileOps& ops_;

  std::deque<Segment> segments_;  // retained segments, oldest first; back() is written
  internal::Fd fd_;               // the segment being written
  std::uint64_t capacity_bytes_ = 0;
  std::uint64_t buffer_offset_ = 0;  // file offset of buffer_[0]
  std::vector<unsigned char> buffer_;
  bool unsynced_ = false;  // bytes written to fd_ since the last fdatasync

  std::uint64_t next_lsn_ = 0;
  std::uint64_t durable_lsn_ = 0;
  Preallocation preallocation_;
  std::optional<Error> failure_;
  bool closed_ = false;
  WalRecovery recovery_;
};

}  // namespace credit::store
