// src/store/durable_file.h
// Small files written durably, for the data dir's files outside the logs (admin.key,
// key.secret, the alert files): a file replaced whole, so that either the old one or the
// whole new one survives a crash or a full disk, never an empty or partial one; and a line
// appended and synced before it counts.
// Owns: the sequences tmp (created with `mode`), write, fsync, rename, directory fsync; and
// open for append, write, fdatasync (and the directory's fsync when it created the file).
// Does not: read the files back or decide what they hold.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/status.h"

namespace credit::store {

// Writes `data` to `path` as described above. On failure `path` is untouched (the tmp file
// is removed) and the error names the file and the reason (kStorageFailed).
Status write_file_durably(const std::string& path, std::string_view data, mode_t mode);

// Appends `data` to `path` (created with `mode` if missing) and syncs it. On failure the
// error names the file and the reason (kStorageFailed); a partial append may remain, which
// the reader must tell from a whole one (the alert files seal each line).
Status append_durably(const std::string& path, std::string_view data, mode_t mode);

}  // namespace credit::store
