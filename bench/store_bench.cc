// bench/store_bench.cc
// Throughput of the WAL's group commit (appends then one fdatasync) beside the raw
// fdatasync rate of the same disk, in one run so the two figures compare.
// Owns: store benchmarks. The log directory is $STORE_BENCH_DIR, or store_bench_data in the
// working directory (put it on the disk being measured; it is removed afterwards).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "store/internal/fs.h"
#include "store/wal.h"

namespace credit::store {
namespace {

constexpr std::size_t kRecordBytes = 48;
constexpr std::size_t kRecordsPerBatch = 4096;
constexpr std::uint64_t kBenchSegmentBytes = 64ULL << 20;

std::string bench_dir(const std::string& name) {
  const char* root = std::getenv("STORE_BENCH_DIR");
  const std::string dir = std::string(root != nullptr ? root : "store_bench_data") + "/" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::unique_ptr<Wal> open_or_die(const std::string& dir, benchmark::State& state) {
  WalOptions options;
  options.segment_bytes = kBenchSegmentBytes;
  auto wal = Wal::open(dir, options, [](std::uint64_t, std::string_view) { return ok_status(); });
  if (!wal) {
    state.SkipWithError(wal.error().message.c_str());
    return nullptr;
  }
  return std::move(*wal);
}

// 4096 records of 48 bytes appended one by one, then one fdatasync: a group of commands
// each logged as its own record.
void BM_WalAppend4096RecordsThenSync(benchmark::State& state) {
  const std::string dir = bench_dir("records");
  auto wal = open_or_die(dir, state);
  if (!wal) return;
  const std::string record(kRecordBytes, 'r');
  for (auto _ : state) {
    for (std::size_t i = 0; i < kRecordsPerBatch; ++i) {
      if (!wal->append(record)) state.SkipWithError("append failed");
    }
    if (!wal->sync()) state.SkipWithError("sync failed");
  }
  state.SetItemsProcessed(state.iterations() * kRecordsPerBatch);
  state.SetBytesProcessed(state.iterations() * kRecordsPerBatch * kRecordBytes);
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  wal.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_WalAppend4096RecordsThenSync)->UseRealTime()->MinTime(3.0);

// The same 4096 x 48 bytes as one batch record (what GroupCommitter logs), then one fdatasync.
void BM_WalAppendOneBatchOf4096ThenSync(benchmark::State& state) {
  const std::string dir = bench_dir("batches");
  auto wal = open_or_die(dir, state);
  if (!wal) return;
  const std::string batch(kRecordBytes * kRecordsPerBatch, 'b');
  for (auto _ : state) {
    if (!wal->append(batch)) state.SkipWithError("append failed");
    if (!wal->sync()) state.SkipWithError("sync failed");
  }
  state.SetItemsProcessed(state.iterations() * kRecordsPerBatch);
  state.SetBytesProcessed(state.iterations() * kRecordsPerBatch * kRecordBytes);
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  wal.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_WalAppendOneBatchOf4096ThenSync)->UseRealTime()->MinTime(3.0);

// The floor: a 48-byte pwrite into a preallocated, zero-filled file, then fdatasync.
void BM_RawFdatasync(benchmark::State& state) {
  const std::string dir = bench_dir("raw");
  const std::string path = dir + "/raw.dat";
  Status created = internal::create_zeroed_file(FileOps::real(), dir, path, kBenchSegmentBytes);
  if (!created) {
    state.SkipWithError(created.error().message.c_str());
    return;
  }
  internal::Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  const std::string record(kRecordBytes, 'f');
  off_t offset = 0;
  for (auto _ : state) {
    if (::pwrite(fd.get(), record.data(), record.size(), offset) !=
            static_cast<ssize_t>(record.size()) ||
        ::fdatasync(fd.get()) != 0) {
      state.SkipWithError("pwrite or fdatasync failed");
    }
    offset = (offset + static_cast<off_t>(kRecordBytes)) % static_cast<off_t>(kBenchSegmentBytes);
  }
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  fd.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_RawFdatasync)->UseRealTime()->MinTime(3.0);

}  // namespace
}  // namespace credit::store

BENCHMARK_MAIN();
