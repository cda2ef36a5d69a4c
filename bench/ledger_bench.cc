// bench/ledger_bench.cc
// The ledger's in-memory apply rate: amount-only charges in batches of 4096 (one
// begin_batch each) across 10,000 enterprise accounts, each with a 16-byte idempotency
// key hash, with the idempotency table empty (the peer) or pre-filled with 10 million
// keys through the same path; and a "typical" charge that carries usage and metadata.
// The 100-million-key case is measured on the idempotency table alone (see
// docs/benchmarks.md: a ledger holding 100 M live keys keeps their replies and charge
// records too, which does not fit in this machine's memory).
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

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
void* operator new[](std::size_t size) { return ::operator new(size); }
// GCC sees free() of what operator new returned; here operator new is malloc.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace credit::ledger {
namespace {

constexpr int kAccounts = 10'000;
constexpr int kBatch = 4096;
constexpr std::int64_t kNow = 1'772'280'000'000;  // 2026-02-28T12:00:00Z

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
  w.ledger = std::make_unique<Ledger>(std::move(catalog.value()),
                                      LedgerOptions{.idempotency_keys_max = prefill + 16'000'000});
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
  while (w.next_key < prefill) {
    w.ledger->begin_batch(kNow);
    for (auto& c : batch) {
      c.idem.scope_key_hash = key_hash(w.next_key++);
      w.ledger->apply(c, w.events);
    }
    w.events.clear();
  }
  w.fill_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return w;
}

void BM_LedgerCharges(benchmark::State& state) {
  const std::size_t prefill = static_cast<std::size_t>(state.range(0));
  const bool typical = state.range(1) != 0;
  World& w = world(prefill);
  std::vector<Command> batch = make_batch(typical);
  std::int64_t ok = 0;
  const std::uint64_t allocations_before = g_allocations.load(std::memory_order_relaxed);
  for (auto _ : state) {
    w.ledger->begin_batch(kNow);
    for (auto& c : batch) {
      c.idem.scope_key_hash = key_hash(w.next_key++);
      Reply r = w.ledger->apply(c, w.events);
      ok += r.status == 201;
    }
    w.events.clear();
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
    ->ArgNames({"prefilled_keys", "typical"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({10'000'000, 0})
    ->Args({10'000'000, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

// The idempotency table alone, pre-filled with N keys: one find and one insert per
// charge, as the ledger does.
void BM_IdempotencyTable(benchmark::State& state) {
  const std::size_t prefill = static_cast<std::size_t>(state.range(0));
  the_world().ledger.reset();  // the ledger benchmarks' memory
  // 1000 iterations of 4096 inserts fit in the headroom; 107 M keys is the most a
  // 2^27-slot table takes at its 0.8 load factor.
  auto table = std::make_unique<IdempotencyTable>(prefill + 7'000'000);
  auto started = std::chrono::steady_clock::now();
  Hash128 req{};
  std::uint64_t n = 0;
  for (; n < prefill; ++n) table->insert(key_hash(n), req, n, kNow + 86'400'000);
  double fill = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      Hash128 k = key_hash(n);
      benchmark::DoNotOptimize(table->find(k, kNow));
      table->insert(k, req, n, kNow + 86'400'000);
      ++n;
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["prefill_s"] = fill;
  state.counters["rss_GiB"] = rss_gib();
}
BENCHMARK(BM_IdempotencyTable)
    ->ArgName("prefilled_keys")
    ->Arg(10'000'000)
    ->Arg(100'000'000)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1000);

}  // namespace
}  // namespace credit::ledger

BENCHMARK_MAIN();
