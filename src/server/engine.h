// src/server/engine.h
// The engine: the one thread that owns the ledger and the policy state, applies
// commands in batches and hands each batch's log record to the log thread, which writes
// and fdatasyncs whatever batches have gathered (group commit) and only then answers
// them. The two overlap: the ledger thread applies batch N+1 while batch N is being
// synced, and the replies of N+1 never go out before N+1 (so N) is durable. Reads run on
// the ledger thread once every applied batch is durable, so they see durable state only
// and need no lock.
// Owns: the command queue, the ledger thread, the log thread (the only user of the
//   write-ahead log while running), the policy decisions (cache, rate limits)
// taken between the idempotency check and the apply, the key table, the retained
// events in memory (an EventIndex, event_index.h), recovery from the log, snapshots
// (by default written by a process that rebuilds the state from the newest snapshot and
// the log, so charges do not stop at all: SnapshotMode).
// Does not: parse HTTP or JSON (routes.cc), price usage (the routes price before
// submitting, with the rate card version they name).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <variant>
#include <vector>

#include "ledger/codec.h"
#include "ledger/command.h"
#include "ledger/ledger.h"
#include "policy/cache.h"
#include "policy/rate_limiter.h"
#include "pricing/rate_card.h"
#include "server/event_index.h"
#include "server/fork_server.h"
#include "server/metrics.h"
#include "store/event_log.h"
#include "store/wal.h"
#include "time/clock.h"

namespace credit::server {

constexpr std::size_t kQueueOpsMaxDefault = 1 << 18;
// After a write or sync failure, how long the answers already handed to the I/O threads
// (503 storage_failed) get to go out before the process exits.
constexpr std::int64_t kStorageFailedAnswerGraceMs = 250;
// While the next log segment cannot be preallocated, how often it is tried again.
constexpr std::int64_t kLogRoomRetryMs = 1000;
constexpr const char* kNoLogRoomMessage =
    "the log has no room: its next segment cannot be preallocated (is the disk full?); "
    "nothing was applied, retry later";
constexpr std::size_t kBatchOpsMaxDefault = 1 << 15;
// The sweep (DESIGN.md section 1, "Cycles and resets"): how often, in wall time, the
// ledger thread asks the ledger whether a hold expiry, a grant expiry or a cycle boundary
// is due (an O(1) question while nothing is), and then logs a Sweep command if one is.
// The same check runs the tick (Engine::set_tick).
constexpr std::int64_t kSweepCheckMs = 1000;
// The sink's catch-up after a start (Engine::set_event_sink): events fed per read job (a
// few milliseconds of the ledger thread), and reads that may wait for its end (each is a
// request holding a connection).
constexpr std::size_t kSinkCatchUpSliceEvents = 4096;
constexpr std::size_t kParkedReadsMaxDefault = 4096;
// A snapshot is taken after this many bytes of log records (and at a clean stop), so a
// restart replays at most about this much log.
constexpr std::uint64_t kSnapshotWalBytesDefault = 256ULL << 20;
// With snapshot_collapse, a collapse pass starts once the log since the last snapshot
// reaches three quarters of snapshot_wal_bytes: the heap grown since the last pass (new
// charge records, 4 KiB pages) is folded before the fork, which then copies one page-table
// entry per 2 MiB of it instead of 512 (docs/benchmarks.md, "Snapshot pause", session 10).
constexpr std::uint64_t snapshot_precollapse_wal_bytes(std::uint64_t snapshot_wal_bytes) {
  return snapshot_wal_bytes - snapshot_wal_bytes / 4;
}

enum class Role : std::uint8_t { kAdmin = 0, kService = 1, kMeter = 2, kRead = 3 };
std::string_view role_name(Role r);

struct KeyInfo {
  std::string key_id;
  Role role = Role::kRead;
  std::string account_id;  // empty for admin and service keys
  std::string label;
  std::string hash_hex;  // SHA-256 of the key
  std::int64_t created_at_ms = 0;
};

// Engine-level commands (logged beside the ledger's).
//
// Key creation is idempotent (DESIGN.md section 1) although keys are stored only as
// SHA-256 hashes, so the answer cannot be stored as it was sent. Instead a key is derived,
// not drawn: key = derived_key(server secret, key_id) (crypto.h: "ck_" + base64url of
// HMAC-SHA256), where the secret is 32 random bytes created at the first start in
// DATA/key.secret (mode 0600, beside admin.key) and key_id is random. The idempotency
// record is an entry of the ledger's own table (Ledger::gate_external/store_external):
// the scope and key hash, the request hash (route, role and label as given), and as its
// stored reply {"key_id", "role", "key_sha256"}, never the key; it expires 24 hours
// after the batch's now, an instant logged with the op, and is kept in snapshots with
// the rest of the table. A replay derives the key again from key_id, checks it against
// key_sha256 (a changed secret file refuses the replay instead of showing a wrong key)
// and answers the first answer again with Idempotent-Replayed: true. Sharing the table
// makes the same key on another route 422 in both directions. A revoked key's creation
// still replays within its 24 hours (the same answer; the key stays revoked).
struct CreateKeyOp {
  ledger::IdempotencyRef idem;
  KeyInfo key;  // the engine sets hash_hex (from the derived key)
  // A request that failed validation: answered after the idempotency check (API.md's
  // order), never applied or logged.
  // (Held by pointer: an Error inline makes GCC 12 warn maybe-uninitialized wherever an
  // Op is moved.)
  std::shared_ptr<const Error> precheck;
  // Set by the engine when applied: the key (never logged; answered once, or re-derived
  // for a replay) and when its idempotency record expires (logged).
  std::string plaintext;
  std::int64_t idem_expires_at_ms = 0;
  // Refused because the account is closed (API.md: 409): no key is made, but the answer
  // is stored under the request's key and a `rejected` event records it, as for the
  // ledger's 409s (DESIGN.md, Idempotency). Logged (tag 'c') with the instant, so a
  // replay stores and numbers the same.
  bool refused_closed = false;
  std::int64_t refused_at_ms = 0;
};
// The server secret keys are derived from (Engine::open creates it; mode 0600).
constexpr const char* kKeySecretFile = "key.secret";
constexpr std::size_t kKeySecretBytes = 32;
struct RevokeKeyOp {
  std::string account_id;
  std::string key_id;
};
struct CachePutOp {
  std::string account_id;
  std::string kind;
  std::string cache_key;
  policy::CacheEntry entry;
  std::int64_t ttl_s = 0;
};
// Events imported with mode=analytics (imported = true): logged whole, numbered by the
// ledger after the batch's commands (so a replay numbers them the same way), then listed,
// kept and fed to the analytics like every other event; they change no balance.
struct ImportEventsOp {
  std::vector<ledger::Event> events;
};
// In DATA/events: the newest event number a --repair start let go of (one line, decimal):
// written when a start goes on without events the snapshot counted, so that later starts
// take the log as ending there (Engine::events_missing).
constexpr const char* kEventsLostThroughFile = "lost-through";
// The data dir's lock file (Engine::open takes it; one process per data dir).
constexpr const char* kDataDirLockFile = "LOCK";
// The most events one ImportEventsOp carries (an import chunk is at most 16,384 lines).
constexpr std::size_t kImportEventsPerOpMax = 65'536;
struct RateLimitsOp {
  std::string account_id;
  pricing::PlanRateLimits limits;
};
// The capacity flags in force (ledger::Capacities): logged at a fresh start and whenever a
// start's flags differ from the state's, so a replay refuses what was refused.
struct CapacitiesOp {
  ledger::Capacities capacities;
};
using Op = std::variant<ledger::Command, CreateKeyOp, RevokeKeyOp, CachePutOp, RateLimitsOp,
                        ImportEventsOp, CapacitiesOp>;

// How a snapshot of the running state is taken.
enum class SnapshotMode : std::uint8_t {
  // A worker process rebuilds the state as of the snapshot's LSN from the newest snapshot
  // and the log after it (as a restart does), then encodes and writes it: the ledger
  // thread only sends it the LSN. The worker is forked from a helper made at open() while
  // the heap was small (fork_server.h), so no fork copies the server's page tables. It
  // costs a restart's CPU per snapshot, at background priority, and a second copy of the
  // state while it runs. When the helper is gone, or after a worker failed (the next
  // snapshot only), a snapshot is forked as in kFork.
  kReplay,
  // A child forked from the ledger thread encodes the state it shares copy-on-write: the
  // ledger thread stops for the fork, which copies a page-table entry per 4 KiB of heap
  // (tens of milliseconds at 10 M commands of state). Falls back to kInline when fork()
  // fails.
  kFork,
  // Encoded on the ledger thread, written on a thread (tests cover this path).
  kInline,
};

struct EngineOptions {
  std::string data_dir;
  bool fsync = true;  // bench-only switch (creditd --no-fsync)
  bool repair = false;
  ledger::LedgerOptions ledger;
  std::size_t queue_ops_max = kQueueOpsMaxDefault;
  std::size_t batch_ops_max = kBatchOpsMaxDefault;
  std::size_t cache_bytes_max = policy::kCacheBytesMaxDefault;
  std::size_t cache_account_bytes_max = 0;  // 0: no per-account quota
  // Tests only: the log's system calls (nullptr: the real ones) and segment size (0: the
  // default).
  store::FileOps* wal_file_ops = nullptr;
  std::uint64_t wal_segment_bytes = 0;
  std::size_t rate_buckets_max = policy::kRateBucketsMaxDefault;
  // Snapshots and the event log (DATA/snapshots, DATA/events).
  std::uint64_t snapshot_wal_bytes = kSnapshotWalBytesDefault;
  std::int64_t events_retain_days = store::kEventRetainDaysDefault;
  std::uint64_t events_bytes_max = 0;  // 0: no budget
  SnapshotMode snapshot_mode = SnapshotMode::kReplay;
  // With SnapshotMode::kFork: the heap is folded into huge pages on a thread after the
  // start and after each snapshot (huge_collapse.h), so that the next fork copies few
  // page-table entries. No effect on a kernel without MADV_COLLAPSE.
  bool snapshot_collapse = true;
  // Tests only: a snapshot child (forked or replaying) waits this long before it writes
  // (a long snapshot to stop or kill the server during).
  std::int64_t snapshot_child_delay_ms = 0;
  // Reads waiting for the sink's catch-up after a start (read_caught_up); past this many
  // the next one is refused.
  std::size_t parked_reads_max = kParkedReadsMaxDefault;
};

// What reads see (on the ledger thread).
struct EngineState {
  const ledger::Ledger& ledger;
  policy::IntegrationCache& cache;
  // The retained events, as encodings; readers decode the ones they return.
  const EventIndex& events;
  const std::unordered_map<std::string, pricing::PlanRateLimits>& rate_limits;
  std::int64_t now_ms;
};

struct EngineStats {
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> ops{0};
  std::atomic<std::uint64_t> fsync_ns_total{0};
  std::atomic<std::uint64_t> fsyncs{0};  // log writes with one fdatasync (group commits)
  std::atomic<std::uint64_t> cache_hits{0};
  std::atomic<std::uint64_t> snapshots{0};
  std::atomic<std::uint64_t> snapshots_forked{0};    // of `snapshots`, written by a forked child
  std::atomic<std::uint64_t> snapshots_replayed{0};  // of `snapshots`, rebuilt from the log
  // How long the last snapshot held the ledger thread (start_snapshot: a request to the
  // replaying worker, the fork, or encoding the state), and the longest such pause since
  // the start.
  std::atomic<std::uint64_t> snapshot_pause_ns_last{0};
  std::atomic<std::uint64_t> collapses{0};  // passes of huge_collapse.h finished
  // Passes started ahead of a snapshot (snapshot_precollapse_wal_bytes).
  std::atomic<std::uint64_t> precollapses{0};
  std::atomic<std::uint64_t> collapse_ms_last{0};
  std::atomic<std::uint64_t> collapse_bytes_last{0};
  std::atomic<std::uint64_t> snapshot_pause_ns_max{0};
  // The last snapshot's encoding (in the child, or the pause) and writing (syncing the
  // event files it depends on, then the file: tmp, fsync, rename, directory fsync).
  std::atomic<std::uint64_t> snapshot_encode_ns_last{0};
  // The replaying worker's rebuild of the state (snapshot and log) before its encoding.
  std::atomic<std::uint64_t> snapshot_rebuild_ns_last{0};
  std::atomic<std::uint64_t> snapshot_write_ns_last{0};
  // The longest since the start, for finding stalls: the log thread's writes of a group
  // (with a segment rotation, when one falls in it) and its sync; the ledger thread's
  // writes to the event log after a batch.
  std::atomic<std::uint64_t> log_write_ns_max{0};
  std::atomic<std::uint64_t> log_sync_ns_max{0};
  std::atomic<std::uint64_t> event_write_ns_max{0};
  std::atomic<std::uint64_t> batch_apply_ns_max{0};  // the ledger thread's apply_batch
  // finish_snapshot on the ledger thread: the log's truncation, the event log's retention.
  std::atomic<std::uint64_t> snapshot_finish_ns_max{0};
  // The process writing a snapshot now, 0 when none.
  std::atomic<std::int64_t> snapshot_child_pid{0};
  // The helper forking the replaying workers (SnapshotMode::kReplay), 0 when none.
  std::atomic<std::int64_t> snapshot_helper_pid{0};
  // The sink's catch-up after a start: events of the event log not yet fed to it, and
  // how long the last catch-up took (0 until one finished).
  std::atomic<std::uint64_t> sink_backlog_events{0};
  std::atomic<std::uint64_t> sink_catch_up_ms_last{0};
};

class Engine {
 public:
  using Done = std::function<void(std::vector<ledger::Reply>&&)>;
  using ReadFn = std::function<void(EngineState&)>;
  // Runs the done callbacks of one group commit on the log thread (lets the HTTP layer
  // send their answers together).
  using AnswerScope = std::function<void(const std::function<void()>& answer_all)>;
  // Called on the ledger thread with each durable batch's events (analytics, alerts), in
  // log order. `more_behind`: a slice of the catch-up after a start (set_event_sink)
  // with more slices still to come, so work that is due once per state (alert
  // evaluation) can wait for the last one.
  using EventSink = std::function<void(const std::vector<ledger::Event>&, bool more_behind)>;

  Engine(const Clock& clock, pricing::Catalog catalog, std::vector<pricing::RateCard> cards,
         EngineOptions options);
  ~Engine();

  // Takes DATA/LOCK (flock, exclusive) until stop(); refuses a dir in use. open() takes it
  // too; a caller that writes to the data dir before open() (creditd's main: the admin
  // key, the analytics files) takes it first, so that a refused start writes nothing.
  Status lock_data_dir();
  // Recovers the state from the log; the ledger's now is the last logged instant.
  Status open();
  void start();
  // Finishes the batch in flight, writes a shutdown record, joins the thread.
  void stop();

  // Applies ops in order in one batch; `done` gets one reply per op after the batch is
  // durable (or 503 storage_failed replies), on the log thread. false: the queue is full
  // (503 overloaded). With wake = false the ledger thread is not woken: the caller calls
  // wake() once after a run of submits (one wake-up per run instead of one per request).
  bool submit(std::vector<Op>&& ops, Done done, bool wake = true);
  // Wakes the ledger thread if anything is queued.
  void wake();
  bool read(ReadFn fn);
  // After a move of the manual clock: a Sweep of whatever became due (logged as any
  // command), then the tick, then `fn` as a read, so that it sees the sweep's events.
  bool sweep_then_read(ReadFn fn);
  // Time-driven work (the alerts of a new UTC day): run as a read on the ledger thread
  // after each sweep check (every kSweepCheckMs, and after a clock move). Set before
  // start().
  void set_tick(ReadFn tick) { tick_ = std::move(tick); }
  // Ledger thread: the sink has been fed every event of the event log (set_event_sink).
  bool sink_caught_up() const { return !catching_up(); }
  // --- submit at an instant (import mode=apply; added for the analytics import) ---
  // As submit(), in a batch of its own whose now is exactly at_ms. When at_ms is before
  // the ledger's now or after the clock's now, nothing is applied and every op answers
  // 409 backfill_out_of_order.
  bool submit_at(std::int64_t at_ms, std::vector<Op>&& ops, Done done);

  // Any thread: the key with this SHA-256 hex hash, if alive.
  std::optional<KeyInfo> find_key(std::string_view hash_hex) const;
  // Changes whenever a key is created or revoked (lets callers cache lookups).
  std::uint64_t keys_generation() const { return keys_generation_.load(std::memory_order_acquire); }
  std::vector<KeyInfo> keys_of(std::string_view account_id) const;
  const pricing::RateCard& rate_card() const { return cards_.back(); }
  const pricing::RateCard* rate_card(std::int64_t version) const;
  const pricing::Catalog& catalog() const { return catalog_; }
  std::int64_t last_logged_ms() const { return last_logged_ms_.load(); }
  // How long the event log keeps events (--events-retain-days).
  std::int64_t events_retain_days() const { return options_.events_retain_days; }
  bool failed() const { return failed_.load(); }
  EngineStats& stats() { return stats_; }
  // Distributions the engine observes into once given (registered by the API's registry,
  // which outlives the engine's threads): ops per applied batch, the log's fdatasync
  // latency, and charges applied (201, replays not counted). Any may be null.
  struct Metrics {
    Histogram* batch_ops = nullptr;
    Histogram* fsync_seconds = nullptr;
    Counter* charges = nullptr;
  };
  void set_metrics(const Metrics& m) {
    batch_ops_hist_.store(m.batch_ops, std::memory_order_release);
    fsync_hist_.store(m.fsync_seconds, std::memory_order_release);
    charges_counter_.store(m.charges, std::memory_order_release);
  }
  // Whether a pass folding the heap into huge pages (huge_collapse.h) is running.
  bool collapse_running() const { return !collapse_done_.load(); }
  // --- the sink's catch-up after a start ---
  // A start does not feed the sink the events already in the event log: the engine serves
  // as soon as the ledger is rebuilt. After start() a thread of its own feeds them to the
  // sink in log order, kSinkCatchUpSliceEvents at a time in read jobs between batches,
  // whenever `sink_ready` (if set) says the sink has room; the events of new batches wait
  // behind them (their places in the event log join the backlog), so the sink still sees
  // every event once, in log order. Before open().
  void set_event_sink(EventSink sink, std::function<bool()> sink_ready = nullptr) {
    sink_ = std::move(sink);
    sink_ready_ = std::move(sink_ready);
  }
  // Called on the ledger thread whenever event retention (age or byte budget) deleted days
  // of the event log, with those UTC days (day starts, sorted), after the sink got every
  // event logged before the deletion: the sink's consumer forgets what it counted of those
  // days, so that its answers are those a restart (which rebuilds them from the days left)
  // would give. Also at open(), before the catch-up. Before open().
  using RetentionSink = std::function<void(const std::vector<std::int64_t>& day_starts_ms)>;
  void set_retention_sink(RetentionSink sink) { retention_sink_ = std::move(sink); }
  // As read(), but `fn` runs only once the sink has been fed every event logged before
  // it ran (at once when nothing is behind). While the catch-up lasts it waits, and
  // with EngineOptions::parked_reads_max waiting `refused` runs instead (on the ledger
  // thread; so does it for every read still waiting when the engine stops).
  bool read_caught_up(ReadFn fn, std::function<void()> refused);
  // A stop is coming: the reads waiting for the catch-up, and those that would wait from
  // now on, are refused, so that the HTTP server's stop need not wait for its end.
  void refuse_waiting_reads();
  // Before start().
  void set_answer_scope(AnswerScope scope) { answer_scope_ = std::move(scope); }

 private:
  struct Job {
    std::vector<Op> ops;
    Done done;
    ReadFn read;
    std::optional<std::int64_t> at_ms = std::nullopt;  // submit_at: the batch's instant
  };
  // A batch applied on the ledger thread and on its way to the disk (log thread).
  struct Pending {
    std::string payload;    // the log record; empty when the batch logged nothing
    std::vector<Job> jobs;  // the write jobs; jobs[j].done gets replies[j]
    std::vector<std::vector<ledger::Reply>> replies;
    std::vector<ledger::Event> events;  // kept and logged once durable (ledger thread)
    std::int64_t now_ms = 0;
    bool logged_ledger = false;  // last_logged_ms_ moves to now_ms once durable
  };
  void run();
  void apply_batch(std::vector<Job>& jobs);
  // Log thread: writes and syncs the pending batches, answers them, passes their events
  // back to the ledger thread.
  void log_run();
  void hand_to_log(Pending&& p);
  // Ledger thread: keeps and logs the events of batches the log thread made durable.
  void take_durable(std::unique_lock<std::mutex>& lock);
  // After a storage failure, for kStorageFailedAnswerGraceMs before the process exits:
  // answers 503 storage_failed to the write jobs that would otherwise never be answered
  // (DESIGN.md section 3: the requests get 503, none a closed connection): the jobs not
  // applied yet (queue_; reads are left to the closing connection) and, after a failure
  // of the command log (not from the ledger thread), the batches applied after the failing
  // one (log_queue_).
  void answer_until_exit(bool from_ledger_thread);
  // Ledger thread: waits until every applied batch is durable (and its events kept).
  void drain();
  ledger::Reply apply_ledger(ledger::Command& c, std::vector<const ledger::Command*>& logged);
  void apply_engine_op(const Op& op);
  // A key creation at the batch's now: the idempotent replay, 422 or precheck error
  // (nothing to log), or the new key (*log set: apply and log the op).
  ledger::Reply apply_create_key(CreateKeyOp& k, std::int64_t now_ms, bool* log);
  // Numbers the events of an op that makes them after the batch's commands (an import's
  // lines, a refused key's `rejected` event) into `out`, live and on replay alike.
  void number_after_commands(Op& op, std::vector<ledger::Event>& out);
  void number_key_refusal(const CreateKeyOp& k, std::vector<ledger::Event>& out);
  // Marks a cache hit (a charge or hold with cache_hit) as a use of its entry; nothing for
  // another command. A batch's hits are marked after its puts, in order, live and on replay
  // of the log (where the ledger's commands come before the engine ops), so the cache's
  // order is the same after a restart: the LRU order follows the log only.
  void touch_cache_hit(const ledger::Command& c);
  // 409 account_closed when the account is closed.
  std::optional<ledger::Reply> refuse_if_closed(const std::string& account_id) const;
  // Reads DATA/key.secret, creating it on the first start.
  Status load_key_secret();
  // Numbers an import op's events into `out` (moving them out of the op).
  void number_imported(ImportEventsOp& op, std::vector<ledger::Event>& out);
  void price_capture(ledger::Command& c, ledger::Capture& cap);
  void replay_cached_response(const ledger::Command& c, std::string& body);
  // Logs the plans file's catalog when it differs from the ledger's, or always on a fresh
  // data dir (`fresh`: no snapshot and no log record).
  Status log_catalog_if_changed(bool fresh);
  // Logs the rate card in force when the ledger does not hold it as it is, and parses
  // the earlier versions the ledger holds (a hold is captured with its own version).
  Status log_rate_card_if_changed();
  // Logs the capacity flags when they differ from the state's, or always on a fresh data
  // dir (CapacitiesOp).
  Status log_capacities_if_changed(bool fresh);
  // Applies a configuration command at start-up and logs it alone, synced.
  Status log_startup_command(ledger::Command& c);
  // A command-log record decoded for the replay: its ledger batch and its engine ops.
  // Decoded on a thread of its own (Engine::open), applied on the replay thread.
  struct ReplayRecord {
    std::uint64_t payload_bytes = 0;
    // On one record of a long log: the idempotency keys expected from it to the log's end
    // (replay_estimate.h); 0 on the others.
    std::uint64_t keys_expected = 0;
    std::uint64_t keyed_commands = 0;  // of the batch, counted by the decode
    bool has_batch = false;
    ledger::DecodedBatch batch;  // reused: decode_batch_into keeps its storage
    std::vector<Op> ops;
  };
  static Status decode_replay_record(std::string_view payload, ReplayRecord& out);
  Status apply_replay_record(ReplayRecord& record);

  // --- Snapshots and the event log (engine.cc, "Snapshots and the event log") ---
  Status open_event_log();
  // After the replay: cuts the events numbered past the recovered state (engine.cc).
  Status cut_events_past_state();
  // Whether an event log ending at log_last_seq holds the newest event the loaded snapshot
  // counted (its events were synced before it was written, and the command log they could
  // be rebuilt from is gone): nothing when it does, else what is missing. Checked once
  // the event log is loaded, before anything is appended to it or written to the command
  // log (events_cover_snapshot: an error unless repair).
  std::optional<std::string> events_missing(std::uint64_t log_last_seq) const;
  // The newest event a --repair start let go of (kEventsLostThroughFile), if one did, and
  // its record.
  Result<std::optional<std::uint64_t>> read_events_lost_through() const;
  Status write_events_lost_through(std::uint64_t seq) const;
  Status events_cover_snapshot(std::uint64_t log_last_seq) const;
  // Waits for the event log's load and checks it (the command log's before_write).
  Status events_cover_snapshot_when_loaded() const;
  std::uint64_t snapshot_seq_next_ = 0;  // the loaded snapshot's ledger next_seq, 0: none
  // Deletes event log days past their age or the byte budget (take_durable, each batch).
  void enforce_event_retention();
  // The event log's retention pass, followed by what it deleted leaving the event index
  // and reaching the retention sink (every caller goes through here).
  Result<std::size_t> retain_events();
  RetentionSink retention_sink_;
  std::int64_t retention_day_ms_ = -1;  // the day retention last ran for
  // The newest snapshot that the log, whose oldest record is log_first_lsn, continues
  // (read from the log's directory when not given).
  Status load_snapshot(std::optional<std::uint64_t> log_first_lsn = std::nullopt);
  // The damaged snapshots load_snapshot skipped (--repair): set aside by open() once the
  // start has got past the log, so that they do not count for snapshot retention.
  std::vector<std::string> snapshots_skipped_;
  // Replays log records (read_log, on a thread of its own, hands each to the callback) on
  // this thread. The stores go to a thread of their own and the idempotency table is sized
  // from log_bytes ahead (replay_estimate.h).
  Status replay_log(const std::function<void(const store::WalRecordFn&)>& read_log,
                    std::uint64_t log_bytes, std::uint64_t segment_bytes);
  // Reads the ledger thread's state without a lock: it runs on the ledger thread (or on
  // the thread that stopped it), or in a child forked from it, where no other thread is.
  void encode_snapshot(std::string& out) const;
  Status decode_snapshot(std::string_view bytes);
  // Events of a replayed batch: those the event log lacks are appended to it (rebuilt
  // with their sequence numbers), kept and handed to the sink.
  Status rebuild_events(std::vector<ledger::Event>& events);
  // rebuild_events while the event log is still loading (open): keeps the events it may
  // lack in replay_pending_.
  Status hold_until_loaded(std::vector<ledger::Event>& events);
  // Appends the events the loaded event log lacks, keeps them and hands them to the sink.
  Status log_missing_events(std::vector<ledger::Event>& events);
  // Appends the events to the event log and keeps them in memory (one encoding each).
  Status log_and_keep_events(const std::vector<ledger::Event>& events);
  // What a snapshot writes and where.
  struct SnapshotJob {
    std::uint64_t lsn = 0;                 // it covers LSNs below this
    std::vector<std::string> event_files;  // event files to sync before it is visible
    std::string events_dir;
    std::string dir;
    // For a replaying worker: the oldest LSN the log keeps, and its bytes since the last
    // snapshot (what the worker replays).
    std::uint64_t log_first_lsn = 0;
    std::uint64_t log_bytes = 0;
    // The encode's buffer, reserved at once (snapshot_reserve_bytes in engine.cc).
    std::uint64_t reserve_bytes = 0;
    // The server's wal_bytes_total_ when it began (not sent to a worker).
    std::uint64_t wal_bytes_total = 0;
    std::string encode() const;
    static std::optional<SnapshotJob> decode(std::string_view bytes);
  };
  // Takes a snapshot of the state as of now (the log thread idle): forks a child that
  // encodes and writes it while a thread waits for the child, or, unforked, encodes it
  // here and writes it on a thread. With `wait`, returns once it is written and the log
  // truncated.
  void start_snapshot(bool wait);
  // The fork path; an Error when it could not fork (nothing started).
  Status fork_snapshot(const SnapshotJob& job);
  // The forked child: encodes, syncs the job's event files, writes the snapshot, reports
  // through report_fd and exits. Never returns.
  [[noreturn]] void run_snapshot_child(const SnapshotJob& job, pid_t parent, int report_fd) const;
  // The replay path: a thread asks the helper for a worker and waits for it; an Error
  // when there is no helper (nothing started).
  Status replay_snapshot(const SnapshotJob& job);
  // In a worker of the helper (a copy of this engine as open() began): rebuilds the state
  // of `request` (an encoded SnapshotJob) in an engine of its own, writes it, reports
  // through report_fd. Returns the exit status.
  int run_snapshot_worker(std::string_view request, int report_fd) const;
  // That engine's rebuild: the newest snapshot, then the log up to job.lsn, read only.
  Status rebuild_to(const SnapshotJob& job);
  // A child's or worker's part after the state is in place: encodes it, waits
  // snapshot_child_delay_ms (tests), writes the snapshot; the sizes and times go out.
  Status encode_and_write(const SnapshotJob& job, std::uint64_t& bytes_written,
                          std::uint64_t& encode_ns, std::uint64_t& write_ns) const;
  // The unforked path.
  void encode_snapshot_here(SnapshotJob&& job);
  void record_snapshot_pause(std::uint64_t pause_ns);
  // Snapshot thread, once the file (of `bytes`) is written or has failed: prunes old
  // snapshots and finds the LSN the log is kept from, for finish_snapshot.
  void after_snapshot_written(Status written, const SnapshotJob& job, std::uint64_t bytes);
  // Joins a finished (or, when `wait`, any) background snapshot and truncates the log.
  void finish_snapshot(bool wait);
  // Called by the snapshot thread as it ends: wakes the ledger thread to finish it.
  void mark_snapshot_done();
  std::unique_ptr<store::EventLog> event_log_;
  std::uint64_t snapshot_lsn_ = 0;          // the newest snapshot started covers LSNs below this
  std::uint64_t snapshot_written_lsn_ = 0;  // and the newest one written
  std::uint64_t wal_bytes_since_snapshot_ = 0;
  // Writes the snapshot (unforked), or waits for the child that does.
  std::thread snapshot_thread_;
  // Folds the heap into huge pages (start_collapse); stopped before each fork.
  // Starts a pass unless one runs or passes are off; true when it started one.
  bool start_collapse();
  // The log has grown enough since the last snapshot (and no collapse pass is worth
  // waiting for).
  bool snapshot_due() const;
  void stop_collapse();
  std::mutex collapse_mu_;  // guards collapse_thread_
  std::thread collapse_thread_;
  // Deletes the log segments a snapshot covers (Wal::delete_segments), off the ledger
  // thread: at tens of 64 MiB segments the unlinks held it 50-90 ms. One at a time.
  std::thread log_cleanup_thread_;
  void join_log_cleanup() {
    if (log_cleanup_thread_.joinable()) log_cleanup_thread_.join();
  }
  std::atomic<bool> collapse_done_{true};
  std::atomic<bool> collapse_stop_{false};
  std::atomic<bool> collapse_off_{true};  // until start(), and from stop()
  // A pass was started ahead of the next snapshot (snapshot_precollapse_wal_bytes): one
  // per snapshot interval.
  bool precollapse_started_ = false;
  // How the snapshot in flight (or the last one) is taken: set by the path that started it.
  SnapshotMode snapshot_taken_by_ = SnapshotMode::kInline;
  // The helper that forks replaying workers (SnapshotMode::kReplay), from open() to stop().
  std::unique_ptr<ForkServer> snapshot_workers_;
  // The last snapshot's worker failed: the next snapshot is forked.
  bool fork_after_failed_replay_ = false;
  // A clean stop cancelled the worker in flight (run).
  bool snapshot_cancelled_ = false;
  // The helper did not answer a request (written by the snapshot thread before done).
  bool snapshot_helper_gone_ = false;
  // In a replaying worker: no event is built or logged (the server logged them).
  bool replay_without_events_ = false;
  std::atomic<bool> snapshot_done_{false};
  std::optional<Error> snapshot_error_;    // written by the snapshot thread before done
  std::uint64_t snapshot_retain_lsn_ = 0;  // idem
  std::string event_bytes_;                // reused encoding buffer
  // --- end snapshots and the event log ---

  const Clock& clock_;
  pricing::Catalog catalog_;
  std::vector<pricing::RateCard> cards_;
  // Earlier rate card versions from the ledger's state, parsed at start (then read only).
  std::vector<pricing::RateCard> past_cards_;
  EngineOptions options_;
  ledger::Ledger ledger_;
  // Replay storage reused across log records (Engine::open).
  std::vector<ledger::Event> replay_events_;
  ledger::Reply replay_reply_;
  // The event log's load on its own thread, during open() only.
  struct EventLoad {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status = ok_status();
    std::chrono::steady_clock::time_point loaded_at;
    unsigned long long run_ns = 0;          // the loading thread's time on a core
    std::atomic<std::uint64_t> seq_max{0};  // the highest sequence number read so far
    std::uint64_t log_last_seq = 0;         // once done: the loaded log's last_seq()
  };
  std::unique_ptr<EventLoad> event_load_;
  std::vector<ledger::Event> replay_pending_;  // replayed events it may lack
  // The sink's catch-up (set_event_sink). Ledger thread (open() before start()): the
  // places of the events not yet fed, in log order, from sink_backlog_next_ on, and the
  // reads waiting for the end of it.
  bool catching_up() const { return sink_backlog_next_ < sink_backlog_.size(); }
  // Feeds the next slice of the backlog; at its end runs the waiting reads and returns
  // true.
  bool feed_sink_backlog(EngineState& st);
  void run_sink_catch_up();
  void refuse_parked_reads();
  struct ParkedRead {
    ReadFn fn;
    std::function<void()> refused;
  };
  std::vector<EventIndex::Entry> sink_backlog_;
  std::size_t sink_backlog_next_ = 0;
  std::vector<ledger::Event> sink_slice_;  // reused across slices
  std::vector<ParkedRead> parked_reads_;
  std::chrono::steady_clock::time_point ready_at_;
  std::function<bool()> sink_ready_;
  std::thread sink_catch_up_thread_;
  std::atomic<bool> sink_catch_up_stop_{false};
  std::atomic<bool> refuse_waiting_reads_{false};
  // The size of the newest snapshot loaded or written, and wal_bytes_total_ when it was
  // taken (the next one's buffer is sized from them); set by the snapshot thread, read by
  // the ledger thread.
  std::atomic<std::uint64_t> snapshot_bytes_last_{0};
  std::atomic<std::uint64_t> snapshot_wal_total_last_{0};
  std::uint64_t wal_bytes_total_ = 0;  // log bytes replayed and appended by this engine
  policy::IntegrationCache cache_;
  std::uint64_t cache_generation_last_ = 0;  // the last put's CacheEntry::generation
  policy::RateLimiter limiter_;
  std::unordered_map<std::string, pricing::PlanRateLimits> rate_limits_;
  std::unique_ptr<store::Wal> wal_;

  std::string key_secret_;  // kKeySecretBytes; keys are derived from it (CreateKeyOp)
  mutable std::shared_mutex keys_mu_;
  std::atomic<std::uint64_t> keys_generation_{0};
  std::unordered_map<std::string, KeyInfo> keys_by_hash_;

  EventIndex events_;
  EventSink sink_;
  AnswerScope answer_scope_;
  // The sweep (ledger thread only): when it is next checked, whether a Sweep command is
  // queued and not yet applied, and whether the last batch applied one (then the check
  // runs again at once: a sweep advances at most kSweepAccountsPerCommandMax accounts).
  // Queues a Sweep when something is due at the clock's now; then the tick.
  void check_sweep(bool tick);
  std::chrono::steady_clock::time_point sweep_check_at_{};
  bool sweep_queued_ = false;
  bool sweep_applied_ = false;
  ReadFn tick_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::size_t queued_ops_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<std::int64_t> last_logged_ms_{0};
  std::atomic<bool> failed_{false};
  // Whether the log can take more: the segment being written has room, or the next one is
  // preallocated (log thread: check_log_room; ledger thread: apply_batch).
  std::atomic<bool> log_room_{true};
  std::chrono::steady_clock::time_point log_room_tried_at_{};  // log thread
  void check_log_room();
  EngineStats stats_;
  std::atomic<Histogram*> batch_ops_hist_{nullptr};  // set_metrics
  std::atomic<Histogram*> fsync_hist_{nullptr};
  std::atomic<Counter*> charges_counter_{nullptr};
  std::uint64_t batch_charges_ = 0;  // charges applied in the batch being applied (201)
  int lock_fd_ = -1;                 // DATA/LOCK, held from open() to stop()
  std::vector<ledger::Event> batch_events_;
  // The batch's logged cache hits, marked as uses after its puts (touch_cache_hit).
  std::vector<const ledger::Command*> cache_hits_to_touch_;
  // The ledger thread's own: the commands of the batch being applied, in order (for
  // Ledger::prefetch), and emptied event lists of batches the log and the sink are done
  // with, kept with their capacity for the next batches (a batch's list holds a
  // thousand-odd events of a kilobyte each: growing one anew per batch cost ~4 % of a
  // batched charge).
  std::vector<ledger::Command*> batch_commands_;
  std::vector<std::vector<ledger::Event>> spare_event_lists_;

  // The log thread's queue (under mu_) and the batches it made durable, whose events the
  // ledger thread has not taken yet (under mu_).
  std::condition_variable log_cv_;
  std::deque<Pending> log_queue_;
  std::vector<std::vector<ledger::Event>> durable_events_;
  std::size_t in_flight_ = 0;  // batches handed to the log thread, not yet durable
  bool log_stopping_ = false;
  std::thread log_thread_;
};

}  // namespace credit::server
