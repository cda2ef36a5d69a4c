// bench/restart_bench.cc
// Restart and snapshot figures for docs/benchmarks.md ("Restart"):
//   restart_bench write DIR COMMANDS [ACCOUNTS]
//       creates ACCOUNTS pro accounts, stops cleanly (a snapshot), then logs COMMANDS keyed
//       charges without fsync and no snapshot, and exits without a shutdown (like kill -9):
//       every command is after the newest snapshot.
//   restart_bench open DIR
//       times Engine::open() (event log, snapshot, log replay) on DIR.
//   restart_bench encode ACCOUNTS CHARGES_PER_ACCOUNT
//       times the ledger snapshot encode (the ledger-thread pause) and decode.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "ledger/snapshot_codec.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/engine.h"
#include "time/clock.h"

namespace {

using namespace credit;
using Clock = std::chrono::steady_clock;

constexpr std::int64_t kStartMs = 1'772'000'000'000;  // 2026-02-25
constexpr std::size_t kOpsPerSubmit = 1'000;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
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

ledger::Hash128 hash_of(std::uint64_t v, std::uint8_t salt) {
  ledger::Hash128 h{};
  for (int i = 0; i < 8; ++i) h[i] = static_cast<std::uint8_t>(v >> (8 * i));
  h[8] = salt;
  return h;
}

ledger::Command charge_command(std::uint64_t i, std::size_t accounts) {
  ledger::Command c;
  c.idem.has_key = true;
  c.idem.key = "bench-" + std::to_string(i);
  c.idem.scope_key_hash = hash_of(i, 1);
  c.idem.request_hash = hash_of(i, 2);
  ledger::Charge ch;
  ch.account_id = "acct_" + std::to_string(i % accounts);
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

int open(const std::string& dir) {
  ManualClock clock(kStartMs);
  server::Engine engine(clock, catalog(), cards(), options(dir));
  auto t0 = Clock::now();
  Status s = engine.open();
  const double ms = ms_since(t0);
  if (!s.ok()) {
    std::fprintf(stderr, "open failed: %s\n", s.error().message.c_str());
    return 1;
  }
  std::printf("open (ready to serve) in %.0f ms\n", ms);
  std::fflush(stdout);
  std::_Exit(0);  // leave the data dir as it is, for the next run
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

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc >= 4) {
    return write(argv[2], std::stoull(argv[3]), argc > 4 ? std::stoull(argv[4]) : 1'000);
  }
  if (mode == "open" && argc == 3) return open(argv[2]);
  if (mode == "encode" && argc == 4) return encode(std::stoull(argv[2]), std::stoull(argv[3]));
  std::fprintf(stderr,
               "usage: restart_bench write DIR COMMANDS [ACCOUNTS] | open DIR | "
               "encode ACCOUNTS CHARGES_PER_ACCOUNT\n");
  return 2;
}
