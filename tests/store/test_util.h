// tests/store/test_util.h
// Helpers of the store tests: a temporary directory, reading a whole log back, and the
// file surgery that simulates crashes and damage.
// Owns: test scaffolding only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "store/wal.h"

namespace credit::store::testing {

// Real writes, no syncs: for tests that open a log hundreds of times and check only what
// recovery reads back.
class NoSyncFileOps : public FileOps {
 public:
  int fdatasync(int) override { return 0; }
  int fsync(int) override { return 0; }
};

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "store_test.XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct Replayed {
  std::vector<std::pair<std::uint64_t, std::string>> records;
  std::unique_ptr<Wal> wal;
};

inline Result<Replayed> open_wal(const std::string& dir, const WalOptions& options) {
  Replayed out;
  auto wal = Wal::open(dir, options, [&](std::uint64_t lsn, std::string_view payload) {
    out.records.emplace_back(lsn, std::string(payload));
    return ok_status();
  });
  if (!wal) return wal.error();
  out.wal = std::move(*wal);
  return out;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void flip_byte(const std::string& path, std::uint64_t offset) {
  std::string bytes = read_bytes(path);
  bytes.at(offset) = static_cast<char>(bytes.at(offset) ^ 0x5a);
  write_bytes(path, bytes);
}

inline void copy_dir(const std::string& from, const std::string& to) {
  std::filesystem::remove_all(to);
  std::filesystem::copy(from, to);
}

// The payload of record i of the tests: i repeated, of a length that varies with i.
inline std::string payload_of(std::uint64_t i) {
  return std::string(20 + (i * 7) % 50, static_cast<char>('a' + i % 26)) + std::to_string(i);
}

}  // namespace credit::store::testing
