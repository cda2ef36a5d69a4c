// src/store/event_log.h
// The event log: every event of every durable batch, kept apart from the command log in
// daily segment files, deleted by age and by a byte budget, never by snapshots.
// Owns: the segment files, their recovery (torn tail versus damage), buffered appends,
// sync, retention. Does not: know what an event means (payloads are opaque; the engine
// encodes them with ledger/event_codec.h), or keep an index (see "Reading" below).
//
// A log is a directory of files `events-YYYY-MM-DD.log`, one per UTC day of the events'
// `at`. All integers are little-endian. A segment starts with a header of
// kEventSegmentHeaderBytes:
//   magic         u64  kEventSegmentMagic
//   version       u32  kEventLogVersion; any other version is refused, never repaired
//   flags         u32  zero
//   day_start_ms  i64  the UTC day of the file name
//   checksum      u64  XXH3-64 of the 24 bytes above
// Then records, back to back, to the end of the file (nothing is preallocated):
//   checksum  u64  XXH3-64 of everything after it in the record (length, seq, at, payload)
//   length    u32  bytes of payload, at most kEventPayloadBytesMax
//   seq       u64  the event's sequence number; increasing within a segment
//   at_ms     i64  the event's instant, inside the segment's day
//   payload   length bytes, opaque to the store
//
// Durability (DESIGN.md section 3): events are written after their batch's WAL sync
// without a sync of their own; sync() makes them durable and the engine calls it before a
// snapshot lets the WAL be truncated. Events lost in a crash are therefore always still in
// the WAL, and the engine rebuilds every event with seq > last_seq() by replaying it.
//
// Recovery: a record that fails its check (checksum, length past the end, seq not
// increasing, at outside the day) is a torn tail when no intact record starts anywhere
// after its first byte in the file: the file is cut there (reported, not an error). A file
// shorter than a header, or with an all-zero header, is an unfinished creation and is
// removed. Anything else (a bad header, a failing record followed by an intact one) is
// damage: open fails with kStorageFailed naming the "file" and the "offset"; with repair
// the file is cut at the damage instead and the cut is reported.
//
// Reading: open() hands every retained record to the caller, oldest day first, with its
// place (segment number and offset); append() returns the place of the record it adds.
// read() gives a record's payload back by its place, from a read-only map of the segment
// (or from the write buffer while it is not yet flushed), so the engine's per-account
// index (server/event_index.h) holds 16 bytes per event and no copy of it. There is no
// on-disk index: a start reads every retained segment (docs/benchmarks.md, "Restart").
// Segments are numbered from 0 in the order this process found or created them; a place
// is only meaningful to the EventLog that gave it.
//
// Threading: one owner thread calls every method; sync_files() may run on any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/file_ops.h"
#include "store/internal/fs.h"

namespace credit::store {

constexpr std::uint64_t kEventSegmentMagic = 0x3154564554444352ULL;  // "RCDTEVT1" read as LE
constexpr std::uint32_t kEventLogVersion = 1;
constexpr std::size_t kEventSegmentHeaderBytes = 32;
constexpr std::size_t kEventRecordHeaderBytes = 28;
// An encoded event is a few hundred bytes; metadata is bounded by the API's body limit.
constexpr std::uint32_t kEventPayloadBytesMax = 1u << 20;
constexpr std::int64_t kEventRetainDaysDefault = 400;
// Appends gather in memory and reach the file at flush() or when this many bytes wait.
constexpr std::size_t kEventWriteBufferBytesMax = 1 << 20;
// sync_files hands a file's dirty pages to writeback in chunks of this size.
constexpr std::uint64_t kEventSyncChunkBytes = 1 << 20;

struct EventLogOptions {
  // Segments whose whole day is older than this before `now` are deleted.
  std::int64_t retain_days = kEventRetainDaysDefault;
  // Oldest segments are deleted while the log is larger; 0: no budget.
  std::uint64_t bytes_max = 0;
  // Cut at damage instead of refusing to open.
  bool repair = false;
  // nullptr: the real system calls.
  FileOps* file_ops = nullptr;
};

struct EventLogCut {
  std::string file;
  std::uint64_t offset = 0;
  std::string reason;
};

// A segment enforce_retention() deleted: its UTC day (every event with `at` in it is gone)
// and its number (the places pointing into it, EventPlace, no longer read).
struct EventLogDeleted {
  std::int64_t day_start_ms = 0;
  std::uint32_t number = 0;
};

struct EventLogRecovery {
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
  std::vector<EventLogCut> torn_tails;  // cut off, not an error
  std::vector<EventLogCut> repaired;    // damage cut off because repair = true
};

// Where a record lies: (segment number << kEventPlaceOffsetBits) | offset of its header.
using EventPlace = std::uint64_t;
constexpr unsigned kEventPlaceOffsetBits = 40;  // a segment of up to 1 TiB
constexpr std::uint64_t kEventSegmentNumbersMax = 1ULL << (64 - kEventPlaceOffsetBits);

// Receives each intact record, oldest day first and in file order within a day.
// Returning an error stops the open with it.
using EventRecordFn = std::function<Status(std::uint64_t seq, std::int64_t at_ms,
                                           std::string_view payload, EventPlace place)>;

class EventLog {
 public:
  static Result<std::unique_ptr<EventLog>> open(const std::string& dir,
                                                const EventLogOptions& options,
                                                const EventRecordFn& on_record);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Buffers one event for the segment of its day. seq must exceed last_seq(). Returns
  // the record's place.
  Result<EventPlace> append(std::uint64_t seq, std::int64_t at_ms, std::string_view payload);
  // The payload of the record at `place` if it is there and numbered `seq`; nothing when
  // its segment was deleted (retention) or the bytes there are not that record (the file
  // was changed under the log). The view is valid until the next call of any method.
  std::optional<std::string_view> read(EventPlace place, std::uint64_t seq) const;
  // Writes what is buffered (no sync).
  Status flush();
  // Flushes, then syncs every file written since the last sync, and the directory.
  Status sync();
  // Flushes and hands over the files written since the last sync, for sync_files() on
  // another thread (a background snapshot).
  Result<std::vector<std::string>> take_unsynced();
  // fsyncs each file and the directory `dir`; any thread. A file's dirty pages are written
  // back paced first (kEventSyncChunkBytes, at most two chunks in flight): the events since
  // the last sync (a gigabyte at millions of events) synced at once would queue ahead of the
  // command log's fdatasync on the same disk for seconds.
  static Status sync_files(const std::vector<std::string>& files, const std::string& dir,
                           FileOps* ops = nullptr);
  // Cuts every record numbered `seq` or above off its segment (records increase in seq
  // within a segment, so each segment is cut at its first such record) and syncs the
  // cut files. The start calls it for events that the recovered state does not have (a
  // torn or repaired command log lost their commands). Returns the cuts made.
  Result<std::vector<EventLogCut>> cut_from(std::uint64_t seq);
  // Deletes the segments older than retain_days before now_ms, then the oldest while the
  // log is over bytes_max; never the segment being written, nor the one holding the newest
  // event (last_seq()), so that a start can tell a log that lost its newest events from one
  // whose old days were let go (Engine::check_events_cover_snapshot). Returns how many it
  // deleted; `deleted`, when given, gets each of them (oldest day first), also when a
  // failed unlink ends the pass early, so that what the log no longer holds is never
  // counted elsewhere (the engine's event index and the analytics drop them).
  Result<std::size_t> enforce_retention(std::int64_t now_ms,
                                        std::vector<EventLogDeleted>* deleted = nullptr);

  std::uint64_t last_seq() const { return last_seq_; }
  std::uint64_t bytes() const;
  const std::string& dir() const { return dir_; }
  const EventLogRecovery& recovery() const { return recovery_; }

  // "events-2026-01-31.log" for the day containing at_ms.
  static std::string segment_name(std::int64_t at_ms);

 private:
  // A read-only map of a segment's first `length` bytes (read()).
  struct ReadMap {
    const unsigned char* base = nullptr;
    std::size_t length = 0;
  };
  struct Segment {
    std::int64_t day_start_ms = 0;
    std::string path;
    std::uint64_t bytes = 0;  // including what is buffered for it
    std::uint32_t number = 0;
    std::uint64_t seq_last = 0;  // its newest record's seq, 0 when it holds none
    // Made by the first read() of it and remade as it grows: read() is const for its
    // callers. Unmapped by unmap() only (when the segment goes, and with the log).
    mutable ReadMap map;
  };

  EventLog(std::string dir, const EventLogOptions& options);
  Status recover(const EventRecordFn& on_record);
  Status recover_segment(Segment& segment, const EventRecordFn& on_record);
  Status switch_to(std::int64_t day_start_ms);
  Segment* segment_of(std::int64_t day_start_ms);
  void mark_unsynced(const std::string& path);
  std::uint32_t take_segment_number();
  // A map of at least the segment's first `needed` bytes: the one held, or a new one of
  // its first `bytes` (what is written of it, >= needed).
  const ReadMap* map_for_read(const Segment& segment, std::uint64_t needed,
                              std::uint64_t bytes) const;
  static void unmap(const Segment& segment);

  std::string dir_;
  EventLogOptions options_;
  FileOps& ops_;
  std::vector<Segment> segments_;  // oldest day first
  std::uint32_t next_segment_number_ = 0;
  mutable std::size_t last_read_segment_ = 0;  // index into segments_: a guess for read()
  std::int64_t current_day_ms_ = -1;
  internal::Fd fd_;  // the segment of current_day_ms_
  std::string buffer_;
  std::uint64_t last_seq_ = 0;
  std::vector<std::string> unsynced_;
  bool dir_unsynced_ = false;
  EventLogRecovery recovery_;
};

}  // namespace credit::store
