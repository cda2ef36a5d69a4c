// src/store/durable_file.h
// A small file written whole and durably, for the data dir's one-line secrets (admin.key,
// key.secret): either the old state (no file) or the whole new file survives a crash or a
// full disk, never an empty or partial one.
// Owns: the sequence tmp (created with `mode`), write, fsync, rename, directory fsync.
// Does not: read the file back or decide what it holds.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "base/status.h"

namespace credit::store {

// Writes `data` to `path` as described above. On failure `path` is untouched (the tmp file
// is removed) and the error names the file and the reason (kStorageFailed).
Status write_file_durably(const std::string& path, std::string_view data, mode_t mode);

}  // namespace credit::store
