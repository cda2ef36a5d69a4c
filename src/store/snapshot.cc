// src/store/snapshot.cc
// Writing, verifying, choosing and pruning snapshot files (format in snapshot.h).
// Owns: the bytes of a snapshot file. Does not: interpret the state.
#include "store/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/bytes.h"
#include "store/internal/fs.h"

namespace credit::store {
namespace {

using internal::damage_error;
using internal::io_error;
using internal::join_path;

constexpr std::string_view kDamage = "snapshot damage in";
constexpr std::string_view kPrefix = "snap-";
constexpr std::string_view kFinalSuffix = ".snap";
constexpr std::string_view kTmpSuffix = ".tmp";
constexpr std::string_view kDamagedSuffix = ".damaged";
constexpr std::size_t kLsnHexDigits = 16;
// A snapshot body is written and handed to writeback in chunks of this size (paced).
constexpr std::size_t kSnapshotWriteChunkBytes = std::size_t{1} << 20;

std::uint64_t block_count(std::uint64_t length) {
  return (length + kSnapshotBlockBytes - 1) / kSnapshotBlockBytes;
}

std::uint64_t block_checksum(const char* data, std::uint64_t length, std::uint64_t index) {
  const std::uint64_t start = index * kSnapshotBlockBytes;
  const std::uint64_t bytes = std::min(kSnapshotBlockBytes, length - start);
  return XXH3_64bits_withSeed(data + start, static_cast<std::size_t>(bytes), index);
}

// The LSN of "snap-<16 hex>" + suffix, or nothing.
std::optional<std::uint64_t> parse_name(std::string_view name, std::string_view suffix) {
  if (name.size() != kPrefix.size() + kLsnHexDigits + suffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(suffix)) {
    return std::nullopt;
  }
  std::uint64_t lsn = 0;
  for (char c : name.substr(kPrefix.size(), kLsnHexDigits)) {
    if (c >= '0' && c <= '9') {
      lsn = (lsn << 4) | static_cast<std::uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      lsn = (lsn << 4) | static_cast<std::uint64_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
  }
  return lsn;
}

// LSNs of the `.snap` files of dir, newest first.
Result<std::vector<std::uint64_t>> list_snapshots(const std::string& dir) {
  if (::access(dir.c_str(), F_OK) != 0) return std::vector<std::uint64_t>();
  auto names = internal::list_dir(dir);
  if (!names) return names.error();
  std::vector<std::uint64_t> lsns;
  for (const std::string& name : *names) {
    if (auto lsn = parse_name(name, kFinalSuffix)) lsns.push_back(*lsn);
  }
  std::sort(lsns.rbegin(), lsns.rend());
  return lsns;
}

Status pread_exact(int fd, char* out, std::uint64_t bytes, std::uint64_t offset,
                   const std::string& path) {
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, out, static_cast<std::size_t>(bytes), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("cannot read", path, errno);
    if (n == 0) return damage_error(kDamage, path, offset, "file ends early");
    out += n;
    bytes -= static_cast<std::uint64_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return ok_status();
}

}  // namespace

std::string snapshot_file_name(std::uint64_t lsn) {
  char name[40];
  std::snprintf(name, sizeof(name), "snap-%016llx.snap", static_cast<unsigned long long>(lsn));
  return name;
}

Status write_snapshot(const std::string& dir, std::uint64_t lsn, std::string_view bytes,
                      FileOps* ops_or_null) {
  FileOps& ops = ops_or_null != nullptr ? *ops_or_null : FileOps::real();
  Status made = internal::make_dir(dir);
  if (!made) return made;
  const std::string final_path = join_path(dir, snapshot_file_name(lsn));
  const std::string tmp_path =
      final_path.substr(0, final_path.size() - kFinalSuffix.size()) + std::string(kTmpSuffix);

  unsigned char header[kSnapshotHeaderBytes];
  put_fixed(header, 0, kSnapshotMagic);
  put_fixed(header, 8, kSnapshotVersion);
  put_fixed(header, 12, std::uint32_t{0});
  put_fixed(header, 16, lsn);
  put_fixed(header, 24, static_cast<std::uint64_t>(bytes.size()));
  put_fixed(header, 32, XXH3_64bits(header, 32));
  std::vector<std::uint64_t> blocks(block_count(bytes.size()));
  for (std::uint64_t i = 0; i < blocks.size(); ++i) {
    blocks[i] = block_checksum(bytes.data(), bytes.size(), i);
  }

  Status written = [&]() -> Status {
    internal::Fd fd(::open(tmp_path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd.valid()) return io_error("cannot create", tmp_path, errno);
    Status s = internal::write_all(ops, fd.get(), header, sizeof(header), 0, tmp_path);
    // The body goes out paced: each chunk's writeback starts once it is written and the
    // one before is waited for, so that at most two chunks are in flight. A snapshot of
    // hundreds of MB synced at once would queue ahead of the log's fdatasync on the same
    // disk for as long as it takes to write (150-200 ms measured here for 278 MB); paced,
    // a log sync waits for a chunk or two. sync_file_range is advice: the fsync below is
    // what makes the file durable (internal::write_back_step).
    for (std::size_t done = 0; s && done < bytes.size();) {
      const std::size_t n = std::min(kSnapshotWriteChunkBytes, bytes.size() - done);
      const auto at = static_cast<off_t>(sizeof(header) + done);
      s = internal::write_all(ops, fd.get(), bytes.data() + done, n, at, tmp_path);
      if (!s) break;
      internal::write_back_step(fd.get(), sizeof(header), static_cast<std::uint64_t>(at), n,
                                kSnapshotWriteChunkBytes);
      done += n;
    }
    if (s)
      s = internal::write_all(ops, fd.get(), blocks.data(), blocks.size() * sizeof(std::uint64_t),
                              static_cast<off_t>(sizeof(header) + bytes.size()), tmp_path);
    if (!s) return s;
    if (ops.fsync(fd.get()) != 0) return io_error("cannot fsync", tmp_path, errno);
    return ok_status();
  }();
  if (!written) {
    ::unlink(tmp_path.c_str());
    return written;
  }
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    return io_error("cannot rename snapshot to", final_path, errno);
  }
  return internal::fsync_dir(ops, dir);
}

Result<Snapshot> read_snapshot(const std::string& path) {
  internal::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io_error("cannot stat", path, errno);
  const auto file_bytes = static_cast<std::uint64_t>(st.st_size);

  unsigned char header[kSnapshotHeaderBytes];
  if (file_bytes < sizeof(header)) {
    return damage_error(kDamage, path, file_bytes, "file ends inside the header");
  }
  Status read = pread_exact(fd.get(), reinterpret_cast<char*>(header), sizeof(header), 0, path);
  if (!read) return read.error();
  if (get_fixed<std::uint64_t>(header, 0) != kSnapshotMagic) {
    return damage_error(kDamage, path, 0, "bad snapshot magic");
  }
  const auto version = get_fixed<std::uint32_t>(header, 8);
  if (version != kSnapshotVersion) {
    Error error(ErrorCode::kStorageFailed,
                "snapshot " + path + " has format version " + std::to_string(version) +
                    "; this build reads version " + std::to_string(kSnapshotVersion));
    error.with_string("file", path);
    error.with("offset", "8");
    return error;
  }
  if (get_fixed<std::uint64_t>(header, 32) != XXH3_64bits(header, 32)) {
    return damage_error(kDamage, path, 32, "snapshot header checksum mismatch");
  }
  if (get_fixed<std::uint32_t>(header, 12) != 0) {
    return damage_error(kDamage, path, 12, "snapshot header flags are not zero");
  }
  Snapshot snapshot;
  snapshot.file = path;
  snapshot.lsn = get_fixed<std::uint64_t>(header, 16);
  const std::string name = path.substr(path.find_last_of('/') + 1);
  if (auto named = parse_name(name, kFinalSuffix); named && *named != snapshot.lsn) {
    return damage_error(kDamage, path, 16,
                        "header holds LSN " + std::to_string(snapshot.lsn) + ", name another");
  }
  const auto length = get_fixed<std::uint64_t>(header, 24);
  const std::uint64_t blocks = block_count(length);
  const std::uint64_t expected_bytes = sizeof(header) + length + blocks * sizeof(std::uint64_t);
  if (length > file_bytes || file_bytes != expected_bytes) {
    return damage_error(kDamage, path, std::min(file_bytes, expected_bytes),
                        "file is " + std::to_string(file_bytes) + " bytes, header says " +
                            std::to_string(expected_bytes));
  }
  snapshot.bytes.resize(static_cast<std::size_t>(length));
  read = pread_exact(fd.get(), snapshot.bytes.data(), length, sizeof(header), path);
  if (!read) return read.error();
  std::vector<std::uint64_t> table(blocks);
  read = pread_exact(fd.get(), reinterpret_cast<char*>(table.data()),
                     blocks * sizeof(std::uint64_t), sizeof(header) + length, path);
  if (!read) return read.error();
  for (std::uint64_t i = 0; i < blocks; ++i) {
    if (table[i] != block_checksum(snapshot.bytes.data(), length, i)) {
      return damage_error(kDamage, path, sizeof(header) + i * kSnapshotBlockBytes,
                          "block " + std::to_string(i) + " checksum mismatch");
    }
  }
  return snapshot;
}

Result<SnapshotLoad> load_newest_snapshot(const std::string& dir,
                                          const SnapshotLoadOptions& options) {
  auto lsns = list_snapshots(dir);
  if (!lsns) return lsns.error();
  SnapshotLoad load;
  for (std::uint64_t lsn : *lsns) {
    const std::string path = join_path(dir, snapshot_file_name(lsn));
    auto snapshot = read_snapshot(path);
    if (!snapshot) {
      const Error& error = snapshot.error();
      const bool damaged = !error.detail("offset").empty() && error.message.starts_with(kDamage);
      if (!options.repair || !damaged) return error;
      load.skipped.push_back(
          {path, std::stoull(std::string(error.detail("offset"))), error.message});
      continue;
    }
    if (!load.skipped.empty() && snapshot->lsn < options.log_first_lsn) {
      Error error(ErrorCode::kStorageFailed,
                  "cannot repair: snapshot " + path + " covers LSNs below " +
                      std::to_string(snapshot->lsn) + " but the log starts at LSN " +
                      std::to_string(options.log_first_lsn));
      error.with_string("file", path);
      return error;
    }
    load.snapshot = std::move(*snapshot);
    return load;
  }
  if (!load.skipped.empty() && options.log_first_lsn != 0) {
    return Error(ErrorCode::kStorageFailed,
                 "cannot repair: no intact snapshot and the log starts at LSN " +
                     std::to_string(options.log_first_lsn));
  }
  return load;
}

Result<std::uint64_t> snapshot_retain_lsn(const std::string& dir) {
  auto lsns = list_snapshots(dir);
  if (!lsns) return lsns.error();
  if (lsns->size() < kSnapshotsKept) return std::uint64_t{0};
  return (*lsns)[kSnapshotsKept - 1];
}

Status set_aside_snapshot(const std::string& path, FileOps* ops_or_null) {
  FileOps& ops = ops_or_null != nullptr ? *ops_or_null : FileOps::real();
  const std::string aside = path + std::string(kDamagedSuffix);
  if (::rename(path.c_str(), aside.c_str()) != 0) {
    return io_error("cannot set aside damaged snapshot", path, errno);
  }
  const std::size_t slash = path.find_last_of('/');
  return internal::fsync_dir(ops, slash == std::string::npos ? "." : path.substr(0, slash));
}

Result<std::size_t> prune_snapshots(const std::string& dir, FileOps* ops_or_null) {
  FileOps& ops = ops_or_null != nullptr ? *ops_or_null : FileOps::real();
  auto names = internal::list_dir(dir);
  if (!names) return names.error();
  auto lsns = list_snapshots(dir);
  if (!lsns) return lsns.error();
  std::vector<std::string> doomed;
  for (const std::string& name : *names) {
    if (parse_name(name, kTmpSuffix)) doomed.push_back(name);
  }
  for (std::size_t i = kSnapshotsKept; i < lsns->size(); ++i) {
    doomed.push_back(snapshot_file_name((*lsns)[i]));
  }
  for (const std::string& name : doomed) {
    const std::string path = join_path(dir, name);
    if (::unlink(path.c_str()) != 0) return io_error("cannot delete", path, errno);
  }
  if (!doomed.empty()) {
    Status synced = internal::fsync_dir(ops, dir);
    if (!synced) return synced.error();
  }
  return doomed.size();
}

}  // namespace credit::store
