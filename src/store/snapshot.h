// src/store/snapshot.h
// Snapshots: opaque state bytes and the LSN they cover, written atomically and checked on
// load, with the retention rule that keeps a fallback usable.
// Owns: the snapshot file format, atomic write (tmp, fsync, rename, fsync dir), choosing the
// newest valid snapshot, pruning old ones. Does not: know what the bytes mean, or delete
// log segments (the caller passes snapshot_retain_lsn() to Wal::truncate_before).
//
// A snapshot file `snap-<lsn, 16 lower-case hex>.snap` holds, little-endian:
//   magic     u64  kSnapshotMagic
//   version   u32  kSnapshotVersion; any other version is refused, never repaired
//   flags     u32  zero
//   lsn       u64  the snapshot covers every batch with LSN < lsn (replay starts at lsn)
//   length    u64  bytes of state
//   checksum  u64  XXH3-64 of the 32 bytes above
//   state     length bytes
//   blocks    u64 per kSnapshotBlockBytes of state (the last block may be shorter):
//                  XXH3-64 of the block seeded with its index, so a damaged block is named
//                  by its offset and a block in the wrong place fails too
// It is written as `snap-<lsn>.tmp` and renamed once durable, so a `.snap` file is either
// complete or damaged after it was written; `.tmp` files are leftovers of a crash.
//
// Retention: the newest two snapshots are kept and the log is kept back to the older of the
// two, so that with repair a damaged newest snapshot can fall back to the older one and
// replay the log after it. Only `.snap` files count: a damaged snapshot that a repair
// skipped is set aside as `snap-<lsn>.snap.damaged` (set_aside_snapshot), since kept as one
// of the two it would push out the intact older one, and the log back to it, at the next
// snapshot. A `.damaged` file is never read again; it is kept for inspection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "store/file_ops.h"

namespace credit::store {

constexpr std::uint64_t kSnapshotMagic = 0x31504e5354444352ULL;  // "RCDTSNP1" read as LE
constexpr std::uint32_t kSnapshotVersion = 1;
constexpr std::size_t kSnapshotHeaderBytes = 40;
// Damage is located to within one block; 1 MiB keeps the table 8 bytes per MiB.
constexpr std::uint64_t kSnapshotBlockBytes = 1 << 20;
constexpr std::size_t kSnapshotsKept = 2;

struct Snapshot {
  std::uint64_t lsn = 0;
  std::string bytes;
  std::string file;
};

struct SnapshotDamage {
  std::string file;
  std::uint64_t offset = 0;
  std::string reason;
};

struct SnapshotLoadOptions {
  // Skip damaged snapshots instead of refusing to start.
  bool repair = false;
  // The first LSN the log still holds (Wal::first_lsn_on_disk, or 0 for a log from the
  // start). A fallback snapshot is usable only if lsn >= log_first_lsn: the log after it
  // is then complete.
  std::uint64_t log_first_lsn = 0;
};

struct SnapshotLoad {
  std::optional<Snapshot> snapshot;     // nothing: replay the log from log_first_lsn
  std::vector<SnapshotDamage> skipped;  // damaged snapshots passed over (repair only)
};

std::string snapshot_file_name(std::uint64_t lsn);

// Writes `bytes` as the snapshot covering LSNs < lsn, durably and atomically.
Status write_snapshot(const std::string& dir, std::uint64_t lsn, std::string_view bytes,
                      FileOps* ops = nullptr);

// The newest snapshot, verified. A damaged newest snapshot is a kStorageFailed Error naming
// the "file" and the "offset"; with repair, the newest intact older snapshot the log still
// continues is loaded instead (or none, when the log starts at LSN 0).
Result<SnapshotLoad> load_newest_snapshot(const std::string& dir,
                                          const SnapshotLoadOptions& options);

// Verifies one snapshot file.
Result<Snapshot> read_snapshot(const std::string& path);

// The LSN the log must be kept from: the LSN of the older of the kSnapshotsKept newest
// snapshots, or 0 while there are fewer.
Result<std::uint64_t> snapshot_retain_lsn(const std::string& dir);

// Renames the snapshot file at `path` (one load_newest_snapshot skipped as damaged) to
// `<path>.damaged` and fsyncs its directory: it then no longer counts for retention.
Status set_aside_snapshot(const std::string& path, FileOps* ops = nullptr);

// Deletes every snapshot but the kSnapshotsKept newest, and leftover `.tmp` files.
// Returns how many files it deleted.
Result<std::size_t> prune_snapshots(const std::string& dir, FileOps* ops = nullptr);

}  // namespace credit::store
