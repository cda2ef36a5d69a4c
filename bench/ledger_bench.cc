// bench/ledger_bench.cc
// The ledger's in-memory apply rate: amount-only charges in batches of 4096 (one
// begin_batch each) across 10,000 enterprise accounts, each with a 16-byte idempotency
// key hash, with the idempotency table empty (the peer) or pre-filled with 10 million
// keys through the same path; and a "typical" charge that carries usage and metadata.
// A batch is applied as a server applies one: one reused Reply, Ledger::prefetch before
// each command (`prefetch`: 1; 0 for the peer without it), the batch's events handed
// back with recycle_events once consumed.
// BM_IdempotencyGrowth times the worst batch while a fresh table grows to 20 M keys, with
// the next array faulted in by the inserting thread or (background:1) another one.
// The 100-million-key case is measured on the idempotency table alone (see
// docs/benchmarks.md: a ledger holding 100 M live keys keeps their replies and charge
// records too, which does not fit in this machine's memory).
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "base/process_heap.h"
#include "ledger/idempotency.h"
#include "ledger/ledger.h"
#include "pricing/plan.h"

// Every heap allocation of the process, counted so that a benchmark can report the
// allocations per charge (the target is none).
namespace {
std::atomic<std::uint64_t> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  return ::operator new(size);
}
// GCC sees free() of what operator new returned; here operator new is malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace credit::ledger {
namespace {

constexpr int kAccounts = 10'000;
constexpr int kBatch = 4096;
constexpr std::int64_t kNow = 1'772'280'000'000;  // 2026-02-28T12:00:00Z
constexpr int kPrefetchAhead = 8;                 // keys, for the idempotency table alone
// Timed batches per benchmark on a pre-filled table: the three runs on the 10 M table
// add 2.5 M keys, which stays under the 12.58 M at which its 2^24 slots double (a 1.6 GB
// rehash inside a timed batch would measure the growth, not the charges).
constexpr int kPrefilledBatches = 200;

// Applies one batch the way a server does (see the top of the file).
std::int64_t apply_batch(Ledger& ledger, std::vector<Command>& batch, std::vector<Event>& events,
                         Reply& reply, bool prefetch) {
  std::int64_t ok = 0;
  const int n = static_cast<int>(batch.size());
  for (int i = 0; i < n; ++i) {
    if (prefetch) ledger.prefetch(batch, static_cast<std::size_t>(i));
    ledger.apply(batch[i], events, reply);
    ok += reply.status == 201;
  }
  ledger.recycle_events(events);
  return ok;
}

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Hash128 key_hash(std::uint64_t n) {
  Hash128 h{};
  std::uint64_t a = mix(n), b = mix(n ^ 0x5555555555555555ULL);
  for (int i = 0; i < 8; ++i) {
    h[i] = static_cast<std::uint8_t>(a >> (8 * i));
    h[8 + i] = static_cast<std::uint8_t>(b >> (8 * i));
  }
  return h;
}

double rss_gib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / (1024.0 * 1024.0);
  }
  return 0;
}

std::string account_id(int i) {
  return "acct-" + std::to_string(i);
}

// A batch of charges, one per account in turn; keys are filled in per batch.
std::vector<Command> make_batch(bool typical) {
  std::vector<Command> batch(kBatch);
  for (int i = 0; i < kBatch; ++i) {
    Charge c;
    c.account_id = account_id(i % kAccounts);
    c.user_id = "user-" + std::to_string(i % 7);
    c.pool = "credits";
    c.amount = Millicredits::from_mc(1 + i % 9);
    if (typical) {
      c.kind = pricing::Kind::kAgentPrompt;
      c.priced_by_usage = true;
      c.rate_card_version = 1;
      pricing::Usage u;
      u.model = "default";
      u.input_tokens = 10'000;
      u.output_tokens = 2'200;
      u.files_read = 5;
      u.lines_emitted = 200;
      u.lines_changed = 6;
      c.usage = u;
      c.metadata.file = "src/pages/Checkout.tsx";
      c.metadata.feature = "checkout";
      c.metadata.model = "default";
      c.metadata.snapshot_id = "snap-20260228-1200";
      c.metadata.intent = "fix";
      c.metadata.request_hash = "9f2c4e1a7b3d5f60";
    }
    batch[i].idem.has_key = true;
    batch[i].idem.key = "k";
    batch[i].body = std::move(c);
  }
  return batch;
}

// As the server runs the ledger: memory for the idempotency table's next doubling is
// faulted in on another thread (LedgerOptions::background), not between charges.
void on_another_thread(std::function<void()> job) {
  std::thread(std::move(job)).detach();
}

// One ledger per pre-fill size, kept across the benchmarks that use it.
struct World {
  std::unique_ptr<Ledger> ledger;
  std::size_t prefill = 0;
  std::uint64_t next_key = 0;
  std::vector<Event> events;
  double fill_seconds = 0;
};
World& the_world() {
  static World w;
  return w;
}
World& world(std::size_t prefill) {
  World& w = the_world();
  if (w.ledger && w.prefill == prefill) return w;
  w.ledger.reset();
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!catalog.ok()) std::abort();
  w.ledger = std::make_unique<Ledger>(
      std::move(catalog.value()),
      LedgerOptions{.idempotency_keys_max = prefill + 16'000'000, .background = on_another_thread});
  // As the server runs it: a charge's answer is packed here and rendered by another
  // thread (Engine's log thread, ledger::render_reply).
  w.ledger->set_reply_form(ReplyForm::kPacked);
  w.prefill = prefill;
  w.next_key = 0;
  w.ledger->begin_batch(kNow);
  for (int i = 0; i < kAccounts; ++i) {
    Command c;
    c.body = CreateAccount{account_id(i), "enterprise", std::nullopt};
    w.ledger->apply(c, w.events);
  }
  auto started = std::chrono::steady_clock::now();
  std::vector<Command> batch = make_batch(false);
  Reply reply;
  while (w.next_key < prefill) {
    w.ledger->begin_batch(kNow);
    for (auto& c : batch) c.idem.scope_key_hash = key_hash(w.next_key++);
    apply_batch(*w.ledger, batch, w.events, reply, true);
  }
  w.fill_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return w;
}

void BM_LedgerCharges(benchmark::State& state) {
  const std::size_t prefill = static_cast<std::size_t>(state.range(0));
  const bool typical = state.range(1) != 0;
  const bool prefetch = state.range(2) != 0;
  World& w = world(prefill);
  std::vector<Command> batch = make_batch(typical);
  Reply reply;
  std::int64_t ok = 0;
  const std::uint64_t allocations_before = g_allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    w.ledger->begin_batch(kNow);
    for (auto& c : batch) c.idem.scope_key_hash = key_hash(w.next_key++);
    ok += apply_batch(*w.ledger, batch, w.events, reply, prefetch);
  }
  if (ok != static_cast<std::int64_t>(state.iterations()) * kBatch) state.SkipWithError("refused");
  const std::uint64_t allocations =
      g_allocations.load(std::memory_order_relaxed) - allocations_before;
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["allocs_per_charge"] =
      static_cast<double>(allocations) / static_cast<double>(state.iterations() * kBatch);
  state.counters["prefill_s"] = w.fill_seconds;
  state.counters["rss_GiB"] = rss_gib();
}
BENCHMARK(BM_LedgerCharges)
    ->ArgNames({"prefilled_keys", "typical", "prefetch"})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);
BENCHMARK(BM_LedgerCharges)
    ->ArgNames({"prefilled_keys", "typical", "prefetch"})
    ->Args({10'000'000, 0, 1})
    ->Args({10'000'000, 1, 1})
    ->Args({10'000'000, 0, 0})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(kPrefilledBatches);

// The idempotency table alone, pre-filled with N keys: one find and one insert per
// charge, as the ledger does, with the batch's keys prefetched `prefetch_ahead` ahead.
struct Table {
  std::unique_ptr<IdempotencyTable> table;
  std::size_t prefill = 0;
  std::uint64_t next_key = 0;
  double fill_seconds = 0;
};
void BM_IdempotencyTable(benchmark::State& state) {
  const std::size_t prefill = static_cast<std::size_t>(state.range(0));
  const int prefetch_ahead = static_cast<int>(state.range(1));
  the_world().ledger.reset();  // the ledger benchmarks' memory
  static Table t;
  if (!t.table || t.prefill != prefill) {
    t.table.reset();
    // The two runs on one table add 2 x 100 batches of 4096 keys (0.82 M). The "100 M"
    // table is filled to 99.8 M so that it stays under 0.75 x 2^27 = 100.66 M keys, where
    // its array doubles to 12 GiB: a rehash inside a timed batch would measure growth.
    t.table = std::make_unique<IdempotencyTable>(prefill + 7'000'000);
    auto started = std::chrono::steady_clock::now();
    for (t.next_key = 0; t.next_key < prefill; ++t.next_key) {
      t.table->insert(key_hash(t.next_key), t.next_key, kNow + 86'400'000);
    }
    t.fill_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    t.prefill = prefill;
  }
  IdempotencyTable& table = *t.table;
  std::vector<Hash128> keys(kBatch);
  for (auto _ : state) {
    for (auto& k : keys) k = key_hash(t.next_key++);
    for (int i = 0; i < std::min(prefetch_ahead, kBatch); ++i) table.prefetch(keys[i]);
    for (int i = 0; i < kBatch; ++i) {
      if (prefetch_ahead > 0 && i + prefetch_ahead < kBatch)
        table.prefetch(keys[i + prefetch_ahead]);
      benchmark::DoNotOptimize(table.find(keys[i], kNow));
      table.insert(keys[i], t.next_key, kNow + 86'400'000);
    }
  }
  const double fill = t.fill_seconds;
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["prefill_s"] = fill;
  state.counters["rss_GiB"] = rss_gib();
}
BENCHMARK(BM_IdempotencyTable)
    ->ArgNames({"prefilled_keys", "prefetch_ahead"})
    ->Args({10'000'000, kPrefetchAhead})
    ->Args({10'000'000, 0})
    ->Args({99'800'000, kPrefetchAhead})
    ->Args({99'800'000, 0})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(100);

// Growth: 20 M keys into a fresh table in batches of 4096 with a find before each
// insert (as the ledger does), timing every batch in thread CPU time (user + kernel: the
// page faults count, being preempted on a shared machine does not). The worst batch is
// the longest the ledger thread stops for the table: with a doubling that rehashes at
// once it is the rehash of the whole array (and the zeroing of the new one); with
// incremental moving and pages faulted in ahead, a few slots and pages per batch.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

void BM_IdempotencyGrowth(benchmark::State& state) {
  the_world().ledger.reset();
  const std::uint64_t keys_total = static_cast<std::uint64_t>(state.range(0));
  const bool background = state.range(1) != 0;
  double worst_ms = 0, total_s = 0;
  for (auto _ : state) {
    IdempotencyTable table(keys_total + kBatch,
                           background ? Background(on_another_thread) : nullptr);
    std::uint64_t n = 0;
    const auto started = std::chrono::steady_clock::now();
    while (n < keys_total) {
      const double t0 = thread_cpu_ms();
      for (int i = 0; i < kBatch; ++i, ++n) {
        const Hash128 k = key_hash(n);
        benchmark::DoNotOptimize(table.find(k, kNow));
        table.insert(k, n, kNow + 86'400'000);
      }
      worst_ms = std::max(worst_ms, thread_cpu_ms() - t0);
    }
    total_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(keys_total));
  state.counters["worst_batch_ms"] = worst_ms;
  state.counters["fill_s"] = total_s / static_cast<double>(state.iterations());
}
BENCHMARK(BM_IdempotencyGrowth)
    ->ArgNames({"keys", "background"})
    ->Args({20'000'000, 0})
    ->Args({20'000'000, 1})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

// The sweep (Ledger::next_due_ms, Sweep): `accounts` starter accounts, each with a hold
// of 1 s, all due together, the worst case for one instant. Reports the check while
// nothing is due (the engine asks it every second), the longest Sweep command (at most
// kSweepAccountsPerCommandMax accounts: what a charge behind it waits) and the whole drain.
void BM_Sweep(benchmark::State& state) {
  const int accounts = static_cast<int>(state.range(0));
  auto catalog = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!catalog.ok()) std::abort();
  Ledger ledger(std::move(catalog.value()), LedgerOptions{.idempotency_keys_max = 16});
  std::vector<Event> events;
  ledger.begin_batch(kNow);
  for (int i = 0; i < accounts; ++i) {
    Command c;
    c.body = CreateAccount{account_id(i), "starter", std::nullopt};
    ledger.apply(c, events);
    Hold hold;
    hold.account_id = account_id(i);
    hold.user_id = "u";
    hold.pool = "credits";
    hold.amount = Millicredits::from_mc(1000);
    hold.ttl_ms = 1000;
    Command h;
    h.body = std::move(hold);
    ledger.apply(h, events);
    events.clear();
  }
  double worst_ms = 0;
  double drain_ms = 0;
  double check_ns = 0;
  std::int64_t sweeps = 0;
  for (auto _ : state) {
    constexpr int kChecks = 1'000'000;
    auto t0 = std::chrono::steady_clock::now();
    std::int64_t due = 0;
    for (int i = 0; i < kChecks; ++i) due += ledger.next_due_ms() <= kNow ? 1 : 0;
    check_ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
        kChecks;
    benchmark::DoNotOptimize(due);
    ledger.begin_batch(kNow + 5000);
    const auto drain_start = std::chrono::steady_clock::now();
    while (ledger.next_due_ms() <= ledger.now_ms()) {
      const auto t = std::chrono::steady_clock::now();
      Command c;
      c.body = Sweep{};
      ledger.apply(c, events);
      events.clear();
      worst_ms = std::max(
          worst_ms,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
      ++sweeps;
    }
    drain_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - drain_start)
            .count();
  }
  state.counters["check_nothing_due_ns"] = check_ns;
  state.counters["sweep_command_ms_max"] = worst_ms;
  state.counters["drain_ms"] = drain_ms;
  state.counters["sweeps"] = static_cast<double>(sweeps);
}
BENCHMARK(BM_Sweep)
    ->ArgNames({"accounts"})
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace credit::ledger

int main(int argc, char** argv) {
  (void)credit::tune_process_heap();  // as creditd does (base/process_heap.h)
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
