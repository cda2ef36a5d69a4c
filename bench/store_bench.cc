// bench/store_bench.cc
// Durable charges per second through the store's batch API (GroupCommitter: a job of 4096
// charges is encoded with ledger/codec.h, appended to the WAL as one record and
// fdatasynced before it completes), with and without the ledger's apply, beside the raw
// fdatasync rate of the same disk, in one run so the figures compare. Also: log bytes per
// minimal and per typical charge, and the encode and decode cost per charge.
// Owns: store benchmarks. The log directory is $STORE_BENCH_DIR, or store_bench_data in the
// working directory (put it on the disk being measured; it is removed afterwards).
//
// Counters: charges/s (wall clock), cpu_us/charge (CPU time of the whole process, every
// thread, per charge), B/charge (WAL bytes, record headers included), syncs/s.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "ledger/codec.h"
#include "ledger/ledger.h"
#include "pricing/plan.h"
#include "store/group_commit.h"
#include "store/internal/fs.h"
#include "store/wal.h"
#include "store/wal_format.h"

namespace credit::store {
namespace {

constexpr std::size_t kChargesPerBatch = 4096;
constexpr std::size_t kAccounts = 1000;
constexpr std::uint64_t kBenchSegmentBytes = 64ULL << 20;
constexpr std::size_t kRawSyncBytes = 48;
constexpr std::int64_t kStartMs = 1'772'000'000'000;  // 2026-02-25
// Distinct batches encoded up front (keys differ from one batch to the next).
constexpr std::size_t kBatchesPrepared = 8;

double process_cpu_seconds() {
  timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

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
  options.write_buffer_bytes_max = 4 << 20;
  auto wal = Wal::open(dir, options, [](std::uint64_t, std::string_view) { return ok_status(); });
  if (!wal) {
    state.SkipWithError(wal.error().message.c_str());
    return nullptr;
  }
  return std::move(*wal);
}

// ---------------------------------------------------------------------------------------
// The charges.

std::string uuid(std::mt19937_64& rng) {
  const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 36; ++i) {
    s += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : hex[rng() & 15];
  }
  return s;
}

std::string account_id(std::size_t i) {
  return "acct_" + std::to_string(i);
}

void key_it(ledger::Command& c, std::mt19937_64& rng) {
  c.idem.has_key = true;
  c.idem.key = uuid(rng);
  for (auto& b : c.idem.scope_key_hash) b = static_cast<std::uint8_t>(rng());
  for (auto& b : c.idem.request_hash) b = static_cast<std::uint8_t>(rng());
}

// A charge of a stated amount: a UUID key (16-byte key hash and request hash), one of 1000
// accounts, a user, no usage or metadata.
ledger::Command minimal_charge(std::uint64_t i, std::mt19937_64& rng) {
  ledger::Command c;
  key_it(c, rng);
  ledger::Charge ch;
  ch.account_id = account_id(rng() % kAccounts);
  ch.user_id = "u" + std::to_string(i % 7);
  ch.kind = pricing::Kind::kBackendFunction;
  ch.pool = "credits";
  ch.amount = Millicredits::from_mc(1);
  c.body = std::move(ch);
  return c;
}

// An agent prompt priced by usage, with the metadata the dashboard reads.
ledger::Command typical_charge(std::uint64_t i, std::mt19937_64& rng) {
  ledger::Command c = minimal_charge(i, rng);
  auto& ch = std::get<ledger::Charge>(c.body);
  ch.user_id = "user-" + std::to_string(i % 40) + "@example.com";
  ch.kind = pricing::Kind::kAgentPrompt;
  ch.priced_by_usage = true;
  ch.rate_card_version = 3;
  ch.amount = Millicredits::from_mc(static_cast<std::int64_t>(1 + rng() % 40));
  pricing::Usage u;
  u.model = "claude-sonnet-4-5";
  u.input_tokens = static_cast<std::int64_t>(rng() % 200'000);
  u.output_tokens = static_cast<std::int64_t>(rng() % 20'000);
  u.files_read = static_cast<std::int64_t>(rng() % 40);
  u.lines_emitted = static_cast<std::int64_t>(rng() % 2'000);
  u.lines_changed = static_cast<std::int64_t>(rng() % 200);
  ch.usage = u;
  ch.metadata.file = "src/pages/Page" + std::to_string(rng() % 200) + ".jsx";
  ch.metadata.feature = "checkout";
  ch.metadata.call_site = "/agent/prompt";
  ch.metadata.intent = (i % 3 == 0) ? "fix" : "feature";
  ch.metadata.request_hash = "0123456789abcdef";
  return c;
}

using Batch = std::vector<ledger::Command>;

std::vector<Batch> prepare(bool typical, std::size_t batches = kBatchesPrepared) {
  std::mt19937_64 rng(typical ? 2 : 1);
  std::vector<Batch> out(batches);
  std::uint64_t i = 0;
  for (Batch& b : out) {
    b.reserve(kChargesPerBatch);
    for (std::size_t k = 0; k < kChargesPerBatch; ++k, ++i) {
      b.push_back(typical ? typical_charge(i, rng) : minimal_charge(i, rng));
    }
  }
  return out;
}

std::vector<const ledger::Command*> pointers(const Batch& b) {
  std::vector<const ledger::Command*> p;
  p.reserve(b.size());
  for (const auto& c : b) p.push_back(&c);
  return p;
}

void set_counters(benchmark::State& state, std::uint64_t charges, std::uint64_t log_bytes,
                  double cpu_seconds) {
  state.SetItemsProcessed(static_cast<std::int64_t>(charges));
  state.counters["charges/s"] =
      benchmark::Counter(static_cast<double>(charges), benchmark::Counter::kIsRate);
  state.counters["cpu_us/charge"] = cpu_seconds * 1e6 / static_cast<double>(charges);
  state.counters["charges/cpu_s"] = static_cast<double>(charges) / cpu_seconds;
  if (log_bytes > 0) {
    state.counters["B/charge"] = static_cast<double>(log_bytes) / static_cast<double>(charges);
  }
}

// ---------------------------------------------------------------------------------------
// CPU only: encode and decode of a batch of 4096 charges.

void BM_EncodeBatchOf4096(benchmark::State& state) {
  const std::vector<Batch> batches = prepare(state.range(0) != 0);
  std::vector<std::vector<const ledger::Command*>> ptrs;
  for (const Batch& b : batches) ptrs.push_back(pointers(b));
  std::string bytes;
  std::uint64_t n = 0, log_bytes = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    bytes.clear();
    ledger::encode_batch(kStartMs, ptrs[n % ptrs.size()], bytes);
    log_bytes += bytes.size() + kRecordHeaderBytes;
    ++n;
    benchmark::DoNotOptimize(bytes.data());
  }
  set_counters(state, n * kChargesPerBatch, log_bytes, process_cpu_seconds() - cpu0);
}
BENCHMARK(BM_EncodeBatchOf4096)->ArgName("typical")->Arg(0)->Arg(1)->UseRealTime();

void BM_DecodeBatchOf4096(benchmark::State& state) {
  const std::vector<Batch> batches = prepare(state.range(0) != 0);
  std::vector<std::string> encoded;
  for (const Batch& b : batches) {
    encoded.emplace_back();
    ledger::encode_batch(kStartMs, pointers(b), encoded.back());
  }
  ledger::DecodedBatch decoded;
  std::uint64_t n = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    if (!ledger::decode_batch_into(encoded[n % encoded.size()], decoded).ok()) {
      state.SkipWithError("decode failed");
    }
    ++n;
  }
  set_counters(state, n * kChargesPerBatch, 0, process_cpu_seconds() - cpu0);
}
BENCHMARK(BM_DecodeBatchOf4096)->ArgName("typical")->Arg(0)->Arg(1)->UseRealTime();

// ---------------------------------------------------------------------------------------
// Durable: GroupCommitter jobs of 4096 charges, encode + append + fdatasync per job.

struct Job {
  const Batch* charges = nullptr;
};

// Log bytes a job may add to its group's record: the encoded size of each prepared batch
// plus slack, measured once (GroupCommitter bounds a group by the sum of these).
std::size_t log_bytes_bound(const std::vector<Batch>& batches) {
  std::size_t most = 0;
  for (const Batch& b : batches) {
    std::string bytes;
    ledger::encode_batch(kStartMs, pointers(b), bytes);
    most = std::max(most, bytes.size());
  }
  return most + most / 8;
}

// Keeps `jobs_in_flight` client batches of 4096 submitted (as that many concurrent clients
// would) and counts completions until the benchmark ends. With one in flight, every
// fdatasync covers one client batch; with more, a group gathers the batches that arrived
// while the previous group was syncing, up to batch_bytes_max.
template <typename EncodeFn>
void run_durable(benchmark::State& state, const std::string& name, EncodeFn encode,
                 const std::vector<Batch>& batches, std::uint64_t jobs_in_flight) {
  const std::string dir = bench_dir(name);
  auto wal = open_or_die(dir, state);
  if (!wal) return;
  GroupCommitOptions gco;
  gco.batch_bytes_max = 4 << 20;
  const std::size_t job_bytes = log_bytes_bound(batches);
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t completed = 0;
  std::uint64_t groups = 0;
  bool failed = false;
  std::uint64_t log_bytes = 0;
  GroupCommitter<Job> committer(
      *wal, gco,
      [&](std::vector<Job>& jobs, std::string& record) {
        thread_local std::vector<const ledger::Command*> group;
        group.clear();
        for (Job& j : jobs) {
          for (const auto& c : *j.charges) group.push_back(&c);
        }
        encode(group, record);
        log_bytes += record.size() + kRecordHeaderBytes;
        ++groups;
      },
      [&](Job&, const Status& durable) {
        std::lock_guard lock(mu);
        failed |= !durable.ok();
        ++completed;
        cv.notify_all();
      });
  std::uint64_t submitted = 0;
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    while (submitted < completed + jobs_in_flight) {
      Status s = committer.submit(Job{&batches[submitted % batches.size()]}, job_bytes);
      if (!s.ok()) state.SkipWithError(s.error().message.c_str());
      ++submitted;
    }
    std::unique_lock lock(mu);
    const std::uint64_t want = completed + 1;
    cv.wait(lock, [&] { return completed >= want; });
    if (failed) state.SkipWithError("a group failed");
  }
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return completed == submitted; });
  }
  const double cpu = process_cpu_seconds() - cpu0;
  committer.stop();
  set_counters(state, completed * kChargesPerBatch, log_bytes, cpu);
  state.counters["syncs/s"] =
      benchmark::Counter(static_cast<double>(groups), benchmark::Counter::kIsRate);
  state.counters["batches/sync"] = static_cast<double>(completed) / static_cast<double>(groups);
  wal.reset();
  std::filesystem::remove_all(dir);
}

// Args: typical (0: minimal charges, 1: typical), client batches of 4096 in flight.
void BM_DurableBatchOf4096_EncodeAppendSync(benchmark::State& state) {
  const std::vector<Batch> batches = prepare(state.range(0) != 0);
  run_durable(
      state, "encode",
      [](const std::vector<const ledger::Command*>& group, std::string& record) {
        ledger::encode_batch(kStartMs, group, record);
      },
      batches, static_cast<std::uint64_t>(state.range(1)));
}
BENCHMARK(BM_DurableBatchOf4096_EncodeAppendSync)
    ->ArgNames({"typical", "in_flight"})
    ->Args({0, 1})
    ->Args({0, 4})
    ->Args({1, 1})
    ->Args({1, 4})
    ->UseRealTime()
    ->MinTime(3.0);

// The same with the ledger's apply of every charge first (what the engine does). The
// commands are copied before each apply (the ledger may take their strings) and get a
// new key hash per round (the prepared batches repeat).
void BM_DurableBatchOf4096_ApplyEncodeAppendSync(benchmark::State& state) {
  const std::vector<Batch> batches = prepare(false, 64);
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!catalog.ok()) {
    state.SkipWithError(catalog.error().message.c_str());
    return;
  }
  ledger::LedgerOptions lo;
  lo.idempotency_keys_max = 8 << 20;
  ledger::Ledger l(*catalog, lo);
  std::vector<ledger::Event> events;
  l.begin_batch(kStartMs);
  for (std::size_t a = 0; a < kAccounts; ++a) {
    ledger::Command c;
    c.body = ledger::CreateAccount{account_id(a), "pro", std::nullopt};
    l.apply(c, events);
  }
  std::uint64_t round = 0;
  std::uint64_t failed_applies = 0;
  run_durable(
      state, "apply",
      [&](const std::vector<const ledger::Command*>& group, std::string& record) {
        thread_local Batch work;
        thread_local std::vector<const ledger::Command*> logged;
        work.clear();
        for (const auto* c : group) work.push_back(*c);
        logged.clear();
        events.clear();
        ++round;
        std::int64_t now_ms = l.begin_batch(kStartMs + static_cast<std::int64_t>(round));
        for (auto& c : work) {
          c.idem.scope_key_hash[15] = static_cast<std::uint8_t>(round);
          c.idem.scope_key_hash[14] = static_cast<std::uint8_t>(round >> 8);
          c.idem.scope_key_hash[13] = static_cast<std::uint8_t>(round >> 16);
          ledger::Reply r = l.apply(c, events);
          if (r.logged) logged.push_back(&c);
          if (r.status >= 300) ++failed_applies;
        }
        ledger::encode_batch(now_ms, logged, record);
      },
      batches, static_cast<std::uint64_t>(state.range(0)));
  if (failed_applies > 0) state.SkipWithError("a charge was refused");
}
BENCHMARK(BM_DurableBatchOf4096_ApplyEncodeAppendSync)
    ->ArgName("in_flight")
    ->Arg(1)
    ->Arg(4)
    ->UseRealTime()
    ->MinTime(3.0);

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
  const std::string record(kRawSyncBytes, 'f');
  off_t offset = 0;
  for (auto _ : state) {
    if (::pwrite(fd.get(), record.data(), record.size(), offset) !=
            static_cast<ssize_t>(record.size()) ||
        ::fdatasync(fd.get()) != 0) {
      state.SkipWithError("pwrite or fdatasync failed");
    }
    offset = (offset + static_cast<off_t>(kRawSyncBytes)) % static_cast<off_t>(kBenchSegmentBytes);
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
