// src/store/read_ahead.cc
// The page-cache hint of a start's files (read_ahead.h).
#include "store/read_ahead.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>

#include "store/internal/fs.h"

namespace credit::store {

std::uint64_t read_ahead_dirs(const std::vector<std::string>& dirs, std::uint64_t bytes_max) {
  std::uint64_t hinted = 0;
  for (const std::string& dir : dirs) {
    auto names = internal::list_dir(dir);
    if (!names.ok()) continue;  // a dir not made yet (a fresh data dir)
    std::vector<std::string> sorted = std::move(*names);
    std::sort(sorted.begin(), sorted.end());
    for (const std::string& name : sorted) {
      if (hinted >= bytes_max) return hinted;
      internal::Fd fd(::open(internal::join_path(dir, name).c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) continue;
      struct stat st;
      if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) continue;
      const auto bytes =
          std::min<std::uint64_t>(static_cast<std::uint64_t>(st.st_size), bytes_max - hinted);
      (void)::posix_fadvise(fd.get(), 0, static_cast<off_t>(bytes), POSIX_FADV_WILLNEED);
      hinted += bytes;
    }
  }
  return hinted;
}

}  // namespace credit::store
