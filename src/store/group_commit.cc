// src/store/group_commit.cc
// The non-template part of group commit: checking its options against the log.
// Owns: the limits of GroupCommitOptions. Does not: run anything (group_commit.h).
#include "store/group_commit.h"

namespace credit::store {

Status check_group_commit_options(const GroupCommitOptions& options,
                                  std::uint64_t payload_bytes_max) {
  if (options.queue_jobs_max == 0) {
    return Error(ErrorCode::kInvalidRequest, "group commit queue_jobs_max must be positive");
  }
  if (options.batch_jobs_max == 0) {
    return Error(ErrorCode::kInvalidRequest, "group commit batch_jobs_max must be positive");
  }
  // A group's record must fit one WAL segment: a record never spans segments.
  if (options.batch_bytes_max > payload_bytes_max) {
    return Error(ErrorCode::kInvalidRequest,
                 "group commit batch_bytes_max " + std::to_string(options.batch_bytes_max) +
                     " exceeds the wal payload_bytes_max " + std::to_string(payload_bytes_max));
  }
  return ok_status();
}

}  // namespace credit::store
