// src/server/main.cc
// creditd: flags (API.md "Running"), config loading, the admin key, recovery, the
// engine and the HTTP server; SIGTERM (SIGINT, SIGHUP) finishes the batch in flight, syncs and
// exits 0.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>

#include "analytics/live.h"
#include "base/decimal_option.h"
#include "base/process_heap.h"
#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/analytics_routes.h"
#include "server/api.h"
#include "server/audit_route.h"
#include "server/crypto.h"
#include "server/engine.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "store/durable_file.h"
#include "time/clock.h"
#include "time/time.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

int fail(const std::string& message) {
  std::fprintf(stderr, "creditd: %s\n", message.c_str());
  return 2;
}

// A secret file others may read or write (copied in with another umask, say) is named,
// not changed: the operator decides.
void warn_if_open_to_others(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::perms perms = fs::status(path, ec).permissions();
  if (!ec && (perms & (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none) {
    std::fprintf(stderr, "creditd: warning: %s is open to other users (mode %04o): chmod 600 it\n",
                 path.c_str(), static_cast<unsigned>(perms) & 0777u);
  }
}

// The admin key: created at the first start in DATA/admin.key (mode 0600).
credit::Result<std::string> admin_key_hash(const std::string& data_dir) {
  namespace fs = std::filesystem;
  std::string path = data_dir + "/admin.key";
  if (!fs::exists(path)) {
    // Whole and durable, or not at all (a full disk, a crash): the key is shown by its file.
    const std::string key = credit::server::random_key();
    if (credit::Status s = credit::store::write_file_durably(path, key + "\n", 0600); !s.ok()) {
      return s.error();
    }
  }
  warn_if_open_to_others(path);
  std::ifstream f(path);
  std::string key;
  std::getline(f, key);
  if (key.empty()) {
    return credit::Error(credit::ErrorCode::kStorageFailed,
                         path +
                             " is empty (written by a build that did not sync it, then a "
                             "crash?): delete it and a new admin key is made at the next start");
  }
  return credit::server::sha256_hex(key);
}

// The largest capacity flag: 2^32 idempotency keys already take ~250 GiB; a larger value
// is a typo, not a plan.
constexpr std::int64_t kCapacityFlagMax = std::int64_t{1} << 32;
constexpr std::int64_t kCacheBytesFlagMax = std::int64_t{1} << 40;  // 1 TiB
// A century of events; 0 or less would delete every day but the newest at the start.
constexpr std::int64_t kEventsRetainDaysFlagMax = 36'500;
constexpr int kIoThreadsFlagMax = 256;
// After SIGTERM, how long new requests are answered 503 shutting_down before the
// connections close.
constexpr std::int64_t kStopGraceMs = 250;

// The port of --listen: all digits, at most 65535 (0: any free port).
std::optional<unsigned short> parse_port(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [at, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || at != end || value > 65535) return std::nullopt;
  return static_cast<unsigned short>(value);
}

std::string source_dir_default(const char* argv0, const std::string& rel) {
  // Config files default to the repo's config/ (beside build/), then to the source tree
  // this binary was built from (a copy run from elsewhere), else the working dir.
  namespace fs = std::filesystem;
  fs::path exe = fs::weakly_canonical(fs::path(argv0));
  for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
    if (fs::exists(p / rel)) return (p / rel).string();
  }
  std::error_code ec;
  if (const fs::path built_from = fs::path(CREDITD_SOURCE_DIR) / rel; fs::exists(built_from, ec)) {
    return built_from.string();
  }
  return rel;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace credit;
  // From here on SIGTERM (or SIGINT, or SIGHUP: the terminal `make run` started in was
  // closed; creditd has no configuration to reload) ends in a clean stop and exit 0, also
  // when it comes during recovery: the start finishes first, then stops at once.
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGHUP, on_signal);
  // Everything creditd creates (the data dir, its logs, snapshots, keys) is its owner's
  // alone, whatever umask it was started with: the data holds balances and key hashes, and
  // whoever can write DATA/admin.key is admin at the next start (DESIGN.md section 5).
  ::umask(077);
  (void)tune_process_heap();  // before any thread: see base/process_heap.h
  CLI::App app{"creditd: credit metering and quota engine"};
  // Integer flags are read in decimal, exactly (base/decimal_option.h): CLI11 alone would
  // wrap "-1" in an unsigned flag, clamp a value past the type and read "010" as octal.
  std::string data_dir = "data";
  std::string listen = "127.0.0.1:8080";
  std::string clock_mode = "system";
  std::string plans_path = source_dir_default(argv[0], "config/plans.toml");
  std::string card_path = source_dir_default(argv[0], "config/rate_card.toml");
  std::string web_dir = source_dir_default(argv[0], "web/dist");
  std::string store_url;
  bool allow_local_webhooks = false;
  bool repair = false;
  bool no_fsync = false;
  // Signed, so that a negative value is refused rather than wrapped to a huge capacity.
  auto idem_max = static_cast<std::int64_t>(ledger::kIdempotencyKeysMaxDefault);
  auto accounts_max = static_cast<std::int64_t>(ledger::kAccountsMaxDefault);
  int io_threads = 1;
  std::size_t import_bytes_max = server::HttpServerOptions{}.import_body_bytes_max;
  app.add_option("--data", data_dir, "data directory");
  app.add_option("--listen", listen, "address:port to listen on");
  app.add_option("--clock", clock_mode, "system | manual")
      ->check(CLI::IsMember({"system", "manual"}));
  app.add_option("--plans", plans_path, "plans TOML file");
  app.add_option("--rate-card", card_path, "rate card TOML file");
  app.add_option("--web", web_dir, "dashboard directory served at /ui/");
  app.add_option("--store", store_url, "postgres://... (not available in this build)");
  app.add_flag("--allow-local-webhooks", allow_local_webhooks,
               "allow loopback/private webhook targets");
  app.add_flag("--repair", repair, "cut the log at damage instead of refusing to start");
  app.add_flag("--no-fsync", no_fsync, "benchmarks only: acknowledge without fdatasync");
  app.add_option("--idempotency-keys-max", idem_max, "capacity of the idempotency table")
      ->transform(decimal<std::int64_t>(1, kCapacityFlagMax));
  app.add_option("--accounts-max", accounts_max, "capacity of accounts")
      ->transform(decimal<std::int64_t>(1, kCapacityFlagMax));
  server::EngineOptions eo;
  app.add_option("--snapshot-wal-bytes", eo.snapshot_wal_bytes,
                 "take a snapshot after this many bytes of log (default 256 MiB)")
      ->transform(decimal<std::uint64_t>(1, std::numeric_limits<std::uint64_t>::max()));
  std::string snapshot_mode = "replay";
  app.add_option("--snapshot-mode", snapshot_mode,
                 "how a snapshot is taken: replay (a worker rebuilds it from the log; the "
                 "default), fork, or inline (docs/operations.md)")
      ->check(CLI::IsMember({"replay", "fork", "inline"}));
  bool no_heap_collapse = false;
  app.add_flag("--no-heap-collapse", no_heap_collapse,
               "do not fold the heap into huge pages between snapshots (docs/operations.md)");
  app.add_option("--events-retain-days", eo.events_retain_days,
                 "delete event log days older than this")
      ->transform(decimal<std::int64_t>(1, kEventsRetainDaysFlagMax))
      ->capture_default_str();
  app.add_option("--events-bytes-max", eo.events_bytes_max,
                 "delete the oldest event log days beyond this many bytes (0: no budget)")
      ->transform(decimal<std::uint64_t>());
  // Capacities (DESIGN.md section 3: "named flags with defaults"); reaching one is 409
  // limit_reached naming it (the cache and the rate buckets evict their least recent).
  auto open_holds_max = static_cast<std::int64_t>(ledger::kOpenHoldsPerAccountMaxDefault);
  auto live_grants_max = static_cast<std::int64_t>(ledger::kLiveGrantsPerPoolMaxDefault);
  auto rate_buckets_max = static_cast<std::int64_t>(policy::kRateBucketsMaxDefault);
  auto cache_bytes_max = static_cast<std::int64_t>(policy::kCacheBytesMaxDefault);
  std::int64_t cache_account_bytes_max = 0;
  app.add_option("--open-holds-per-account-max", open_holds_max, "open holds an account may have")
      ->transform(decimal<std::int64_t>(1, kCapacityFlagMax))
      ->capture_default_str();
  app.add_option("--live-grants-per-pool-max", live_grants_max, "live grants a pool may have")
      ->transform(decimal<std::int64_t>(1, kCapacityFlagMax))
      ->capture_default_str();
  app.add_option("--rate-buckets-max", rate_buckets_max,
                 "rate-limit buckets kept, least recent evicted (at least 2: a request "
                 "takes its account's and its user's)")
      ->transform(decimal<std::int64_t>(static_cast<std::int64_t>(policy::kRateBucketsMin),
                                        kCapacityFlagMax))
      ->capture_default_str();
  app.add_option("--cache-bytes-max", cache_bytes_max,
                 "integration cache budget in bytes, LRU (default 1 GiB)")
      ->transform(decimal<std::int64_t>(1, kCacheBytesFlagMax));
  app.add_option("--cache-account-bytes-max", cache_account_bytes_max,
                 "integration cache quota per account in bytes, LRU (default 0: none)")
      ->transform(decimal<std::int64_t>(0, kCacheBytesFlagMax));
  app.add_option("--io-threads", io_threads, "HTTP I/O threads")
      ->transform(decimal<int>(1, kIoThreadsFlagMax));
  app.add_option("--import-bytes-max", import_bytes_max,
                 "largest body of POST /v1/admin/import (streamed; default 64 GiB)")
      ->transform(decimal<std::size_t>(1, std::numeric_limits<std::size_t>::max()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Every bad flag or value exits 2, as every other refused start does.
    app.exit(e);
    return 2;
  }
  eo.snapshot_collapse = !no_heap_collapse;
  eo.snapshot_mode = snapshot_mode == "fork"     ? server::SnapshotMode::kFork
                     : snapshot_mode == "inline" ? server::SnapshotMode::kInline
                                                 : server::SnapshotMode::kReplay;

  if (app.count("--store") > 0)
    return fail("--store: only the embedded store is available in this build");
  auto catalog = pricing::load_catalog_file(plans_path);
  if (!catalog.ok()) return fail(catalog.error().message);
  auto card = pricing::RateCard::load_file(card_path);
  if (!card.ok()) return fail(card.error().message);
  if (Status s = pricing::check_rate_card_pools(*catalog, *card); !s.ok())
    return fail(card_path + " (with the plans of " + plans_path + "): " + s.error().message);
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) return fail("--listen must be address:port");
  auto port = parse_port(std::string_view(listen).substr(colon + 1));
  if (!port) return fail("--listen: the port must be a number from 0 to 65535: " + listen);
  server::HttpServerOptions http;
  http.address = listen.substr(0, colon);
  http.port = *port;
  // Before the recovery, which can take seconds: a port in use stops the start now.
  if (Status s = server::HttpServer::check_can_listen(http.address, http.port); !s.ok())
    return fail(s.error().message);
  http.io_threads = io_threads;
  http.import_body_bytes_max = import_bytes_max;
  // From here on the data dir is written to; nothing before it writes anything.
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return fail("cannot create " + data_dir + ": " + ec.message());

  SystemClock system_clock;
  std::unique_ptr<ManualClock> manual;
  if (clock_mode == "manual") manual = std::make_unique<ManualClock>(0);
  const Clock& clock = manual ? static_cast<const Clock&>(*manual) : system_clock;

  eo.data_dir = data_dir;
  eo.fsync = !no_fsync;
  eo.repair = repair;
  eo.ledger.idempotency_keys_max = static_cast<std::size_t>(idem_max);
  eo.ledger.accounts_max = static_cast<std::size_t>(accounts_max);
  eo.ledger.open_holds_per_account_max = static_cast<std::size_t>(open_holds_max);
  eo.ledger.live_grants_per_pool_max = static_cast<std::size_t>(live_grants_max);
  eo.rate_buckets_max = static_cast<std::size_t>(rate_buckets_max);
  eo.cache_bytes_max = static_cast<std::size_t>(cache_bytes_max);
  eo.cache_account_bytes_max = static_cast<std::size_t>(cache_account_bytes_max);
  std::vector<pricing::RateCard> cards;
  cards.push_back(std::move(*card));
  server::Engine engine(clock, *catalog, std::move(cards), eo);
  // The lock first: a second creditd on this dir is refused before it writes the admin
  // key or rewrites an analytics file (a torn last line) under the running one.
  if (Status s = engine.lock_data_dir(); !s.ok()) return fail(s.error().message);
  auto admin_hash = admin_key_hash(data_dir);
  if (!admin_hash.ok()) return fail(admin_hash.error().message);
  server::MetricsRegistry metrics;
  // Live analytics: the sink is set before recovery, which feeds it every kept event.
  auto analytics = analytics::Analytics::open(data_dir + "/analytics", repair);
  if (!analytics.ok()) return fail(analytics.error().message);
  server::attach_analytics(engine, **analytics);
  if (Status s = engine.open(); !s.ok()) {
    std::string where;
    for (const auto& d : s.error().details) where += " " + d.key + "=" + d.json_value;
    return fail("cannot recover " + data_dir + ": " + s.error().message + where);
  }
  // Anyone who can read it can rebuild every key (docs/api-notes.md, "Keys").
  warn_if_open_to_others(data_dir + "/" + server::kKeySecretFile);
  // A manual clock starts at the ledger's last logged instant (0 on a fresh data dir).
  if (manual) manual->set_ms(engine.last_logged_ms());
  // The answers of one group commit reach the I/O threads with one wake-up.
  engine.set_answer_scope([](const std::function<void()>& answer_all) {
    server::AnswerBatch batch;
    answer_all();
  });
  engine.start();

  server::ApiOptions ao;
  ao.manual_clock = manual.get();
  ao.admin_key_hash_hex = *admin_hash;
  ao.web_dir = web_dir;
  if (!std::filesystem::exists(web_dir + "/index.html")) {
    std::fprintf(stderr,
                 "creditd: warning: no dashboard in %s (no index.html): /ui/ answers 404 "
                 "(make build fills web/dist; --web names another directory)\n",
                 web_dir.c_str());
  }
  ao.allow_local_webhooks = allow_local_webhooks;
  // One wake-up of the ledger thread per run of requests read together.
  ao.defer_engine_wake = true;
  http.after_handling = [&engine] { engine.wake(); };
  server::Api api(engine, metrics, ao);
  api.set_analytics(server::make_analytics_routes(engine, **analytics, allow_local_webhooks));
  // Audits run on their own workers, declared before the server so they outlive it.
  server::AuditWorkers audit_workers;
  api.set_audit(server::make_audit_route(engine, audit_workers));
  server::ImportingHandler handler(api, engine, **analytics, clock, ao);
  (*analytics)->alerts().start(clock, server::make_webhook_sender(allow_local_webhooks));
  server::HttpServer server(http, handler);
  if (Status s = server.start(); !s.ok()) {
    (*analytics)->alerts().stop();
    engine.stop();
    return fail(s.error().message);  // it names the address
  }
  if (!g_stop) {
    std::printf("creditd ready on http://%s:%u (data %s, clock %s, admin key in %s/admin.key)\n",
                http.address.c_str(), server.port(), data_dir.c_str(), clock_mode.c_str(),
                data_dir.c_str());
    std::fflush(stdout);
  }
  while (!g_stop && !engine.failed()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  engine.refuse_waiting_reads();  // the connections close without waiting for the analytics
  // A grace in which new requests get 503 shutting_down instead of a reset, and the ones
  // already submitted get their answers, before the connections close.
  api.refuse_new_requests();
  std::this_thread::sleep_for(std::chrono::milliseconds(kStopGraceMs));
  server.stop();
  (*analytics)->alerts().stop();
  engine.stop();
  if (engine.failed()) return 3;
  std::printf("creditd stopped cleanly\n");
  return 0;
}
