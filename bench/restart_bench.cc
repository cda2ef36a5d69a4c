// bench/restart_bench.cc
// Restart and snapshot figures for docs/benchmarks.md ("Restart"):
//   restart_bench write DIR COMMANDS [ACCOUNTS]
//       creates ACCOUNTS pro accounts, stops cleanly (a snapshot), then logs COMMANDS keyed
//       charges without fsync and no snapshot, and exits without a shutdown (like kill -9):
//       every command is after the newest snapshot.
//   restart_bench open DIR
//       times Engine::open() (event log, snapshot, log replay) on DIR.
//   restart_bench write-raw DIR COMMANDS [ACCOUNTS]
//       writes the same kind of log and event log straight through the store (no engine,
//       no ledger, so no memory held per command): the input of `scan` at sizes the engine
//       cannot hold in memory today. Batches of 4096 commands, one charge event each.
//   restart_bench scan DIR
//       the store's share of a start, without the engine or the ledger: reads and decodes
//       every event of the event log and every command of the log (as Engine::open does
//       before it applies them), and prints wall and CPU time of each.
//   restart_bench encode ACCOUNTS CHARGES_PER_ACCOUNT
//       times the ledger snapshot encode (the ledger-thread pause before snapshots were
//       forked) and decode.
//   restart_bench pause DIR ACCOUNTS CHARGES_PER_ACCOUNT replay|fork|collapse|collapse-live|thread
//       the snapshot pause through the engine: logs ACCOUNTS accounts and as many keyed
//       charges per account (the state of `encode`) in DIR (emptied first), stops cleanly,
//       reopens and charges on, one submit of kPauseOpsPerSubmit at a time, until a
//       snapshot triggered by the log has been taken (replay: rebuilt from the log by a
//       worker of the engine's helper process, the default; fork: by a forked child; thread:
//       encoded on the ledger thread, the fallback; collapse: forked, with the heap folded
//       into huge pages after the start, ahead of each snapshot and after it, each pass let
//       finish before the next submit; collapse-live: the same with the submits going on
//       while the passes run, so that what a pass costs them is counted too).
//       Prints how long the snapshot held the ledger thread, its encode and write, and the
//       submits' round trips around it.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "base/bytes.h"
#include "base/process_heap.h"
#include "ledger/codec.h"
#include "ledger/event_codec.h"
#include "ledger/snapshot_codec.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/api.h"
#include "server/engine.h"
#include "store/event_log.h"
#include "store/wal.h"
#include "store/wal_format.h"
#include "time/clock.h"

namespace {

using namespace credit;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kStartMs = 1'772'000'000'000;  // 2026-02-25
constexpr std::size_t kOpsPerSubmit = 1'000;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double cpu_ms() {
  timespec ts;
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

pricing::Catalog catalog() {
  auto c = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!c.ok()) std::abort();
  return *c;
}

std::vector<pricing::RateCard> cards() {
  auto c = pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) + "/config/rate_card.toml");
  if (!c.ok()) std::abort();
  std::vector<pricing::RateCard> v;
  v.push_back(std::move(*c));
  return v;
}

ledger::Command charge_command(std::uint64_t i, std::size_t accounts) {
  ledger::Command c;
  c.idem.has_key = true;
  c.idem.key = "bench-" + std::to_string(i);
  ledger::Charge ch;
  ch.account_id = "acct_" + std::to_string(i % accounts);
  // Hashed as the server hashes a request's key and body (api.cc): spread over the
  // idempotency table as real keys are. (Until session 10 the key's number itself was the
  // hash: consecutive slots, one run of every key, cache-friendly inserts and a
  // migration that moved three quarters of the table in one insert.)
  c.idem.scope_key_hash = server::hash128(ch.account_id, c.idem.key);
  c.idem.request_hash = server::hash128("request", c.idem.key);
  ch.user_id = "u" + std::to_string(i % 7);
  ch.kind = pricing::Kind::kBackendFunction;
  ch.pool = "credits";
  ch.amount = Millicredits::from_mc(1);
  ch.metadata.file = "src/page" + std::to_string(i % 13) + ".tsx";
  c.body = std::move(ch);
  return c;
}

// Submits every op and waits for every answer.
void run_all(server::Engine& engine, std::uint64_t n, std::size_t accounts, bool create) {
  std::mutex mu;
  std::condition_variable cv;
  std::uint64_t answered = 0;
  std::uint64_t failed = 0;
  for (std::uint64_t i = 0; i < n;) {
    std::vector<server::Op> ops;
    for (std::size_t k = 0; k < kOpsPerSubmit && i < n; ++k, ++i) {
      if (create) {
        ledger::Command c;
        c.body = ledger::CreateAccount{"acct_" + std::to_string(i), "pro", std::nullopt};
        ops.emplace_back(std::move(c));
      } else {
        ops.emplace_back(charge_command(i, accounts));
      }
    }
    const std::size_t count = ops.size();
    auto done = [&, count](std::vector<ledger::Reply>&& replies) {
      std::lock_guard lock(mu);
      for (const auto& r : replies) failed += r.status >= 300;
      answered += count;
      cv.notify_all();
    };
    while (!engine.submit(std::move(ops), done))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return answered == n; });
  if (failed > 0)
    std::fprintf(stderr, "%llu ops failed\n", static_cast<unsigned long long>(failed));
}

server::EngineOptions options(const std::string& dir) {
  server::EngineOptions o;
  o.data_dir = dir;
  o.fsync = false;
  o.snapshot_wal_bytes = UINT64_MAX;
  return o;
}

int write(const std::string& dir, std::uint64_t commands, std::size_t accounts) {
  std::filesystem::create_directories(dir);
  ManualClock clock(kStartMs);
  {
    server::Engine engine(clock, catalog(), cards(), options(dir));
    if (!engine.open().ok()) return 1;
    engine.start();
    run_all(engine, accounts, accounts, true);
    engine.stop();  // a clean stop: the snapshot every later command comes after
  }
  server::Engine engine(clock, catalog(), cards(), options(dir));
  if (!engine.open().ok()) return 1;
  engine.start();
  auto t0 = Clock::now();
  run_all(engine, commands, accounts, false);
  std::printf("logged %llu charges in %.0f ms\n", static_cast<unsigned long long>(commands),
              ms_since(t0));
  std::fflush(stdout);
  std::_Exit(0);  // no shutdown snapshot: the next open replays every command
}

std::uint64_t rss_bytes();
std::uint64_t peak_rss_bytes();

int open(const std::string& dir) {
  ManualClock clock(kStartMs);
  server::Engine engine(clock, catalog(), cards(), options(dir));
  auto t0 = Clock::now();
  const double c0 = cpu_ms();
  Status s = engine.open();
  const double ms = ms_since(t0);
  const double cpu = cpu_ms() - c0;
  if (!s.ok()) {
    std::fprintf(stderr, "open failed: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("open (ready to serve) in %.0f ms (%.0f ms CPU), RSS %.2f GB (peak %.2f GB)\n", ms,
              cpu, static_cast<double>(rss_bytes()) / 1e9,
              static_cast<double>(peak_rss_bytes()) / 1e9);
  std::fflush(stdout);
  std::_Exit(0);  // leave the data dir as it is, for the next run
}

// A charge event as the ledger writes one for charge_command(i).
ledger::Event charge_event(const ledger::Command& c, std::uint64_t seq) {
  const auto& ch = std::get<ledger::Charge>(c.body);
  ledger::Event e;
  e.seq = seq;
  e.at_ms = kStartMs;
  e.account_id = ch.account_id;
  e.user_id = ch.user_id;
  e.kind = ch.kind;
  e.pool = ch.pool;
  e.credits = ch.amount;
  e.available_after = Millicredits::from_mc(1'000'000'000 - static_cast<std::int64_t>(seq));
  e.drawn_from.push_back({"allowance", ch.amount});
  e.priced_by = "amount";
  e.metadata = ch.metadata;
  e.idempotency_key = c.idem.key;
  e.charge_id = "c_" + std::to_string(seq);
  return e;
}

int write_raw(const std::string& dir, std::uint64_t commands, std::size_t accounts) {
  constexpr std::size_t kBatchCommands = 4096;
  std::filesystem::create_directories(dir);
  store::WalOptions wo;
  wo.fsync = false;
  auto wal = store::Wal::open(dir + "/wal", wo,
                              [](std::uint64_t, std::string_view) { return ok_status(); });
  auto events = store::EventLog::open(
      dir + "/events", store::EventLogOptions{},
      [](std::uint64_t, std::int64_t, std::string_view, store::EventPlace) { return ok_status(); });
  if (!wal.ok() || !events.ok()) return 1;
  auto t0 = Clock::now();
  std::vector<ledger::Command> batch;
  std::vector<const ledger::Command*> ptrs;
  std::string ledger_bytes, record, event_bytes;
  for (std::uint64_t i = 0; i < commands;) {
    batch.clear();
    ptrs.clear();
    for (std::size_t k = 0; k < kBatchCommands && i < commands; ++k, ++i) {
      batch.push_back(charge_command(i, accounts));
    }
    for (const auto& c : batch) ptrs.push_back(&c);
    ledger_bytes.clear();
    ledger::encode_batch(kStartMs, ptrs, ledger_bytes);
    record.clear();
    ByteWriter w(record);
    w.u8(1);  // the engine record's version (server/engine.cc)
    w.str(ledger_bytes);
    w.uv(0);
    if (!(*wal)->reserve(record.size()).ok() || !(*wal)->append(record).ok() ||
        !(*wal)->sync().ok()) {
      return 1;
    }
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const std::uint64_t seq = i - batch.size() + k + 1;
      event_bytes.clear();
      ledger::encode_event(charge_event(batch[k], seq), event_bytes);
      if (!(*events)->append(seq, kStartMs, event_bytes).ok()) return 1;
    }
  }
  if (!(*events)->sync().ok()) return 1;
  std::printf("wrote %llu commands and events in %.0f ms\n",
              static_cast<unsigned long long>(commands), ms_since(t0));
  return 0;
}

int scan(const std::string& dir) {
  // The event log, decoded into one reused Event.
  auto t0 = Clock::now();
  double c0 = cpu_ms();
  std::uint64_t events = 0;
  ledger::Event event;
  {
    auto log = store::EventLog::open(
        dir + "/events", store::EventLogOptions{},
        [&](std::uint64_t, std::int64_t, std::string_view payload, store::EventPlace) {
          ++events;
          return ledger::decode_event_into(payload, event);
        });
    if (!log.ok()) {
      std::fprintf(stderr, "event log: %s\n", log.error().message.c_str());
      return 1;
    }
  }
  std::printf(
      "event log: %llu events read and decoded in %.0f ms (%.0f ms CPU, %.2f us CPU each)\n",
      static_cast<unsigned long long>(events), ms_since(t0), cpu_ms() - c0,
      (cpu_ms() - c0) * 1e3 / static_cast<double>(events ? events : 1));
  // The command log: the engine record (version u8, ledger bytes str, engine ops) and the
  // ledger batch inside it, decoded into one reused batch.
  t0 = Clock::now();
  c0 = cpu_ms();
  std::uint64_t commands = 0, records = 0, bytes = 0;
  ledger::DecodedBatch batch;
  {
    store::WalOptions wo;
    wo.fsync = false;
    auto wal =
        store::Wal::open(dir + "/wal", wo, [&](std::uint64_t, std::string_view payload) -> Status {
          ++records;
          bytes += payload.size() + store::kRecordHeaderBytes;
          ByteReader r(payload);
          r.u8();
          const std::uint64_t n = r.uv();
          if (!r.ok() || n > payload.size() - r.pos()) {
            return Error(ErrorCode::kStorageFailed, "bad engine record");
          }
          if (n == 0) return ok_status();
          Status s = ledger::decode_batch_into(payload.substr(r.pos(), n), batch);
          commands += batch.commands.size();
          return s;
        });
    if (!wal.ok()) {
      std::fprintf(stderr, "wal: %s\n", wal.error().message.c_str());
      return 1;
    }
  }
  std::printf(
      "wal: %llu records, %llu commands, %llu bytes (%.1f per command) read and decoded in "
      "%.0f ms (%.0f ms CPU, %.3f us CPU each)\n",
      static_cast<unsigned long long>(records), static_cast<unsigned long long>(commands),
      static_cast<unsigned long long>(bytes),
      static_cast<double>(bytes) / static_cast<double>(commands ? commands : 1), ms_since(t0),
      cpu_ms() - c0, (cpu_ms() - c0) * 1e3 / static_cast<double>(commands ? commands : 1));
  return 0;
}

int encode(std::size_t accounts, std::size_t charges_per_account) {
  ledger::LedgerOptions lo;
  lo.idempotency_keys_max = accounts * charges_per_account + 1;
  ledger::Ledger l(catalog(), lo);
  std::vector<ledger::Event> events;
  l.begin_batch(kStartMs);
  for (std::size_t a = 0; a < accounts; ++a) {
    ledger::Command c;
    c.body = ledger::CreateAccount{"acct_" + std::to_string(a), "pro", std::nullopt};
    l.apply(c, events);
  }
  for (std::uint64_t i = 0; i < accounts * charges_per_account; ++i) {
    ledger::Command c = charge_command(i, accounts);
    l.apply(c, events);
    if (events.size() > 100'000) events.clear();
  }
  std::string bytes;
  auto t0 = Clock::now();
  ledger::encode_ledger_snapshot(l, bytes);
  const double enc = ms_since(t0);
  t0 = Clock::now();
  auto back = ledger::decode_ledger_snapshot(bytes, lo);
  const double dec = ms_since(t0);
  if (!back.ok()) return 1;
  std::printf(
      "%zu accounts x %zu charges (+ as many idempotency keys): %zu bytes, encode %.1f ms, "
      "decode %.1f ms\n",
      accounts, charges_per_account, bytes.size(), enc, dec);
  return 0;
}

// One "Name: N kB" field of a /proc/self file, in bytes (0 when missing).
std::uint64_t proc_kb_field(const char* file, const char* format) {
  std::FILE* f = std::fopen(file, "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, format, &kb) == 1) break;
  }
  std::fclose(f);
  return kb * 1024;
}

// Resident memory of this process, from /proc/self/status.
std::uint64_t rss_bytes() {
  return proc_kb_field("/proc/self/status", "VmRSS: %llu kB");
}

// The most it was, from /proc/self/status.
std::uint64_t peak_rss_bytes() {
  return proc_kb_field("/proc/self/status", "VmHWM: %llu kB");
}

// Of it, anonymous memory in transparent huge pages: a fork copies one page-table entry
// for each 2 MiB of it, one for each 4 KiB of the rest.
std::uint64_t huge_bytes() {
  return proc_kb_field("/proc/self/smaps_rollup", "AnonHugePages: %llu kB");
}

int snapshot_pause(const std::string& dir, std::size_t accounts, std::size_t charges_per_account,
                   server::SnapshotMode mode, bool collapse, bool wait_passes) {
  const bool fork = mode == server::SnapshotMode::kFork;
  // One snapshot after about 32 MiB of log, about 5,500 submits of 100 charges: more than
  // the log grows while one is written, so that snapshots are not back to back.
  constexpr std::uint64_t kPauseSnapshotWalBytes = 32 << 20;
  constexpr std::size_t kPauseOpsPerSubmit = 100;
  // Submits after the first snapshot is written.
  constexpr std::size_t kPauseSubmitsAfter = 100;
  // A submit slower than this is counted as stalled (each phase's summary).
  static constexpr double kPauseSlowSubmitMs = 10.0;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  ManualClock clock(kStartMs);
  const std::uint64_t charges = static_cast<std::uint64_t>(accounts) * charges_per_account;
  auto t0 = Clock::now();
  {
    server::Engine engine(clock, catalog(), cards(), options(dir));
    if (!engine.open().ok()) return 1;
    engine.start();
    run_all(engine, accounts, accounts, true);
    run_all(engine, charges, accounts, false);
    engine.stop();
  }
  std::printf("state: %zu accounts, %llu keyed charges, logged and snapshotted in %.0f ms\n",
              accounts, static_cast<unsigned long long>(charges), ms_since(t0));
  server::EngineOptions o = options(dir);
  o.snapshot_wal_bytes = kPauseSnapshotWalBytes;
  o.snapshot_mode = mode;
  o.snapshot_collapse = collapse;
  server::Engine engine(clock, catalog(), cards(), o);
  if (!engine.open().ok()) return 1;
  engine.start();
  const server::EngineStats& stats = engine.stats();
  // With collapse: each pass (after the start, after each snapshot) is let finish before
  // the next submit, as when snapshots are further apart than a pass takes.
  std::vector<double> collapse_ms;
  auto wait_for_collapse = [&](std::uint64_t passes) {
    if (!collapse || !wait_passes) return;
    const auto t = Clock::now();
    while (stats.collapses.load() < passes && ms_since(t) < 120'000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (stats.collapses.load() >= passes) {
      collapse_ms.push_back(static_cast<double>(stats.collapse_ms_last.load()));
    }
  };
  wait_for_collapse(1);
  const std::uint64_t rss = rss_bytes();
  const std::uint64_t huge = huge_bytes();
  // Round trips by phase: before the first snapshot starts, until it is written, after;
  // a submit that waited for a snapshot to start (its pause) is counted apart.
  std::vector<double> before_ms, during_ms, after_ms, held_ms;
  std::vector<double> pauses_ms;  // each snapshot's hold on the ledger thread, as seen
  std::uint64_t last_pause_ns = 0;
  bool written = false;                // the first snapshot is
  double encode_ms = 0, write_ms = 0;  // the first snapshot's
  double rebuild_ms = 0;               // idem, by a replaying worker
  std::uint64_t next = charges;
  // Where the slowest submit of the first snapshot fell: since its pause, and whether the
  // snapshot was found written (finish_snapshot ran) during that submit.
  const auto t_start = Clock::now();
  double first_pause_at_ms = -1, slowest_ms = 0, slowest_at_ms = 0, slowest_mono_s = 0;
  bool slowest_saw_written = false;
  while (after_ms.size() < kPauseSubmitsAfter || pauses_ms.size() < 2) {
    std::vector<server::Op> ops;
    for (std::size_t k = 0; k < kPauseOpsPerSubmit; ++k) {
      ops.emplace_back(charge_command(next++, accounts));
    }
    std::mutex mu;
    std::condition_variable cv;
    bool answered = false;
    const bool written_before = written;
    const auto t = Clock::now();
    while (!engine.submit(std::move(ops), [&](std::vector<ledger::Reply>&&) {
      std::lock_guard lock(mu);
      answered = true;
      cv.notify_all();
    })) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return answered; });
    }
    const double round_trip_ms = ms_since(t);
    // Every pass so far, those ahead of each snapshot included.
    const std::uint64_t passes = stats.snapshots_forked.load() + stats.precollapses.load() + 1;
    if (collapse && passes > collapse_ms.size()) wait_for_collapse(passes);
    // The answer goes out before the snapshot starts (drain): the pause falls on the next.
    const std::uint64_t pause_ns = stats.snapshot_pause_ns_last.load();
    const bool held = pause_ns != last_pause_ns;
    if (held) {
      if (first_pause_at_ms < 0) first_pause_at_ms = ms_since(t_start);
      pauses_ms.push_back(static_cast<double>(pause_ns) / 1e6);
      last_pause_ns = pause_ns;
    }
    if (!written && stats.snapshots.load() > 0) {
      written = true;
      encode_ms = mode != server::SnapshotMode::kInline
                      ? static_cast<double>(stats.snapshot_encode_ns_last.load()) / 1e6
                      : pauses_ms.front();
      rebuild_ms = static_cast<double>(stats.snapshot_rebuild_ns_last.load()) / 1e6;
      write_ms = static_cast<double>(stats.snapshot_write_ns_last.load()) / 1e6;
    }
    if (held) {
      held_ms.push_back(round_trip_ms);
    } else if (written_before) {
      after_ms.push_back(round_trip_ms);
    } else if (!pauses_ms.empty()) {
      during_ms.push_back(round_trip_ms);
      if (round_trip_ms > slowest_ms) {
        slowest_ms = round_trip_ms;
        slowest_at_ms = ms_since(t_start) - round_trip_ms - first_pause_at_ms;
        slowest_saw_written = written;
        slowest_mono_s = std::chrono::duration<double>(t.time_since_epoch()).count();
      }
    } else {
      before_ms.push_back(round_trip_ms);
    }
  }
  auto summary = [](std::vector<double> v) {
    char out[128];
    if (v.empty()) return std::string("none");
    std::sort(v.begin(), v.end());
    // Submits of 100 charges slower than kPauseSlowSubmitMs: how many a stall reached.
    const auto slow = v.end() - std::upper_bound(v.begin(), v.end(), kPauseSlowSubmitMs);
    std::snprintf(out, sizeof(out), "%zu, median %.2f, p99 %.2f, max %.2f, over %.0f ms %td",
                  v.size(), v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)],
                  v.back(), kPauseSlowSubmitMs, slow);
    return std::string(out);
  };
  auto list = [](const std::vector<double>& v) {
    std::string out;
    for (double x : v) {
      char one[32];
      std::snprintf(one, sizeof(one), "%s%.1f", out.empty() ? "" : ", ", x);
      out += one;
    }
    return out;
  };
  std::printf(
      "%s at RSS %.0f MB (%.0f MB of it in huge pages): ledger thread held %s ms (each snapshot "
      "seen); the first was "
      "rebuilt in %.1f ms, encoded in %.1f ms and written in %.1f ms\n"
      "round trips of %zu-charge submits, ms: before %s; during %s; after %s; that waited "
      "for a snapshot to start: %s\n"
      "collapse passes (ms each, let finish before the next submit): %s\n"
      "slowest submit during the first snapshot: %.1f ms, started %.0f ms after its pause "
      "(CLOCK_MONOTONIC %.3f s)%s\n"
      "longest since the start, ms: log write %.1f, log sync %.1f, event log write %.1f, "
      "batch apply %.1f, snapshot finish %.1f\n",
      mode == server::SnapshotMode::kReplay
          ? "snapshots rebuilt from the log"
          : (fork ? (collapse ? "forked snapshots, heap collapsed" : "forked snapshots")
                  : "unforked snapshots"),
      static_cast<double>(rss) / 1e6, static_cast<double>(huge) / 1e6, list(pauses_ms).c_str(),
      rebuild_ms, encode_ms, write_ms, kPauseOpsPerSubmit, summary(before_ms).c_str(),
      summary(during_ms).c_str(), summary(after_ms).c_str(), list(held_ms).c_str(),
      collapse ? list(collapse_ms).c_str() : "off", slowest_ms, slowest_at_ms, slowest_mono_s,
      slowest_saw_written ? ", the one that found it written" : "",
      stats.log_write_ns_max.load() / 1e6, stats.log_sync_ns_max.load() / 1e6,
      stats.event_write_ns_max.load() / 1e6, stats.batch_apply_ns_max.load() / 1e6,
      stats.snapshot_finish_ns_max.load() / 1e6);
  std::fflush(stdout);
  std::_Exit(0);  // no shutdown snapshot
}

}  // namespace

int main(int argc, char** argv) {
  (void)credit::tune_process_heap();  // as creditd does
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc >= 4) {
    return write(argv[2], std::stoull(argv[3]), argc > 4 ? std::stoull(argv[4]) : 1'000);
  }
  if (mode == "open" && argc == 3) return open(argv[2]);
  if (mode == "scan" && argc == 3) return scan(argv[2]);
  if (mode == "write-raw" && argc >= 4) {
    return write_raw(argv[2], std::stoull(argv[3]), argc > 4 ? std::stoull(argv[4]) : 1'000);
  }
  if (mode == "encode" && argc == 4) return encode(std::stoull(argv[2]), std::stoull(argv[3]));
  if (mode == "pause" && argc == 6) {
    const std::string how = argv[5];
    if (how == "replay" || how == "fork" || how == "collapse" || how == "collapse-live" ||
        how == "thread") {
      const server::SnapshotMode m = how == "replay"   ? server::SnapshotMode::kReplay
                                     : how == "thread" ? server::SnapshotMode::kInline
                                                       : server::SnapshotMode::kFork;
      return snapshot_pause(argv[2], std::stoull(argv[3]), std::stoull(argv[4]), m,
                            how == "collapse" || how == "collapse-live", how == "collapse");
    }
  }
  std::fprintf(
      stderr,
      "usage: restart_bench write DIR COMMANDS [ACCOUNTS] | open DIR | scan DIR | "
      "write-raw DIR COMMANDS [ACCOUNTS] | "
      "encode ACCOUNTS CHARGES_PER_ACCOUNT | "
      "pause DIR ACCOUNTS CHARGES_PER_ACCOUNT replay|fork|collapse|collapse-live|thread\n");
  return 2;
}
