// src/server/engine.cc
// The batch loop: take what is queued, apply it op by op, log the batch, sync, answer.
#include "server/engine.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>

#include "base/assert.h"
#include "base/bytes.h"
#include "base/error_json.h"
#include "base/json_writer.h"
#include "base/process_heap.h"
#include "base/thread_priority.h"
#include "ledger/codec.h"
#include "ledger/event_codec.h"
#include "ledger/render.h"
#include "ledger/snapshot_codec.h"
#include "server/crypto.h"
#include "server/huge_collapse.h"
#include "server/json_reader.h"
#include "server/replay_estimate.h"
#include "server/replay_pipe.h"
#include "server/replay_storer.h"
#include "store/durable_file.h"
#include "store/read_ahead.h"
#include "store/snapshot.h"
#include "store/wal_format.h"
#include "time/time.h"

namespace credit::server {
namespace {

// A batch record of the log:
//   version u8 (kEngineRecordVersion)
//   ledger  string: ledger/codec.h's encoding of the ledger commands of the batch
//   count   varint, then count engine ops: tag u8 ('k' key, 'X' revoke, 'C' cache put,
//           'T' rate limits, 'I' imported events) and their fields. A key ('k') ends
//           with its idempotency record: has_key u8, then when set the scope-and-key
//           hash and the request hash (16 bytes each) and expires_at_ms; records written
//           before keys were idempotent have tag 'K' and end before it. A key refused
//           because its account is closed ('c'): account_id, idempotency key strings, the
//           two hashes, expires_at_ms and the refusal's instant (its stored 409 and its
//           `rejected` event are made again from them).
constexpr std::uint8_t kEngineRecordVersion = 1;
constexpr int kKeyCreatedStatus = 201;
// Emptied event lists the ledger thread keeps for its next batches (Engine::take_durable),
// and the largest capacity kept: a list grown by an import of a million lines is let go.
constexpr std::size_t kSpareEventListsMax = 4;
constexpr std::size_t kSpareEventListCapacityMax = 16'384;  // events, about 17 MB

// The account a settings op (a cache entry, rate limits) changes; "" for the other ops.
const std::string& settings_account(const Op& op) {
  static const std::string kNone;
  if (const auto* c = std::get_if<CachePutOp>(&op)) return c->account_id;
  if (const auto* t = std::get_if<RateLimitsOp>(&op)) return t->account_id;
  return kNone;
}

ledger::Reply error_reply(ErrorCode code, std::string message) {
  ledger::Reply r;
  r.code = code;
  r.status = error_code_http_status(code);
  append_error_json(r.body, Error(code, std::move(message)));
  return r;
}

void encode_limits(ByteWriter& w, const pricing::PlanRateLimits& l) {
  w.b(l.per_user.has_value());
  if (l.per_user) {
    w.sv(l.per_user->per_minute);
    w.sv(l.per_user->burst);
  }
  w.b(l.per_account.has_value());
  if (l.per_account) {
    w.sv(l.per_account->per_minute);
    w.sv(l.per_account->burst);
  }
}

pricing::PlanRateLimits decode_limits(ByteReader& r) {
  pricing::PlanRateLimits l;
  if (r.b()) l.per_user = pricing::RateLimit{r.sv(), r.sv()};
  if (r.b()) l.per_account = pricing::RateLimit{r.sv(), r.sv()};
  return l;
}

// The capacities in force, as an engine op and a snapshot write them (three varints).
void encode_capacities(ByteWriter& w, const ledger::Capacities& c) {
  w.uv(c.accounts_max);
  w.uv(c.open_holds_per_account_max);
  w.uv(c.live_grants_per_pool_max);
}

// Nothing when a value is zero (no capacity is) or the bytes end; the reader is then failed.
std::optional<ledger::Capacities> decode_capacities(ByteReader& r) {
  ledger::Capacities c;
  c.accounts_max = r.uv();
  c.open_holds_per_account_max = r.uv();
  c.live_grants_per_pool_max = r.uv();
  if (c.accounts_max == 0 || c.open_holds_per_account_max == 0 || c.live_grants_per_pool_max == 0) {
    r.fail();
  }
  if (!r.ok()) return std::nullopt;
  return c;
}

void encode_engine_op(ByteWriter& w, const Op& op) {
  if (auto* k = std::get_if<CreateKeyOp>(&op); k && k->refused_closed) {
    w.u8('c');
    w.str(k->key.account_id);
    w.str(k->idem.key);
    w.raw(k->idem.scope_key_hash.data(), k->idem.scope_key_hash.size());
    w.raw(k->idem.request_hash.data(), k->idem.request_hash.size());
    w.sv(k->idem_expires_at_ms);
    w.sv(k->refused_at_ms);
  } else if (auto* k = std::get_if<CreateKeyOp>(&op)) {
    w.u8('k');
    w.str(k->key.key_id);
    w.u8(static_cast<std::uint8_t>(k->key.role));
    w.str(k->key.account_id);
    w.str(k->key.label);
    w.str(k->key.hash_hex);
    w.sv(k->key.created_at_ms);
    w.b(k->idem.has_key);
    if (k->idem.has_key) {
      w.raw(k->idem.scope_key_hash.data(), k->idem.scope_key_hash.size());
      w.raw(k->idem.request_hash.data(), k->idem.request_hash.size());
      w.sv(k->idem_expires_at_ms);
    }
  } else if (auto* x = std::get_if<RevokeKeyOp>(&op)) {
    w.u8('X');
    w.str(x->account_id);
    w.str(x->key_id);
  } else if (auto* c = std::get_if<CachePutOp>(&op)) {
    w.u8('C');
    w.str(c->account_id);
    w.str(c->kind);
    w.str(c->cache_key);
    w.str(c->entry.response_json);
    w.str(c->entry.call_site);
    w.sv(c->entry.expires_at_ms);
  } else if (auto* t = std::get_if<RateLimitsOp>(&op)) {
    w.u8('T');
    w.str(t->account_id);
    encode_limits(w, t->limits);
  } else if (auto* cap = std::get_if<CapacitiesOp>(&op)) {
    w.u8('L');
    encode_capacities(w, cap->capacities);
  } else if (auto* im = std::get_if<ImportEventsOp>(&op)) {
    CREDIT_ASSERT(im->events.size() <= kImportEventsPerOpMax);
    w.u8('I');
    w.uv(im->events.size());
    std::string bytes;
    for (const ledger::Event& e : im->events) {
      bytes.clear();
      ledger::encode_event(e, bytes);
      w.str(bytes);
    }
  }
}

std::optional<Op> decode_engine_op(ByteReader& r) {
  const std::uint8_t tag = r.u8();
  switch (tag) {
    case 'c': {
      CreateKeyOp k;
      k.refused_closed = true;
      k.idem.has_key = true;
      k.key.account_id = r.str();
      k.idem.key = r.str();
      r.raw(k.idem.scope_key_hash.data(), k.idem.scope_key_hash.size());
      r.raw(k.idem.request_hash.data(), k.idem.request_hash.size());
      k.idem_expires_at_ms = r.sv();
      k.refused_at_ms = r.sv();
      if (k.idem_expires_at_ms <= 0 || k.key.account_id.empty()) return std::nullopt;
      return Op(std::move(k));
    }
    case 'K':
    case 'k': {
      CreateKeyOp k;
      k.key.key_id = r.str();
      k.key.role = static_cast<Role>(r.u8());
      k.key.account_id = r.str();
      k.key.label = r.str();
      k.key.hash_hex = r.str();
      k.key.created_at_ms = r.sv();
      if (tag == 'k' && r.b()) {
        k.idem.has_key = true;
        r.raw(k.idem.scope_key_hash.data(), k.idem.scope_key_hash.size());
        r.raw(k.idem.request_hash.data(), k.idem.request_hash.size());
        k.idem_expires_at_ms = r.sv();
        if (k.idem_expires_at_ms <= 0) return std::nullopt;
      }
      if (k.key.role > Role::kRead) return std::nullopt;
      return Op(std::move(k));
    }
    case 'X': {
      RevokeKeyOp x;
      x.account_id = r.str();
      x.key_id = r.str();
      return Op(std::move(x));
    }
    case 'C': {
      CachePutOp c;
      c.account_id = r.str();
      c.kind = r.str();
      c.cache_key = r.str();
      c.entry.response_json = r.str();
      c.entry.call_site = r.str();
      c.entry.expires_at_ms = r.sv();
      return Op(std::move(c));
    }
    case 'T': {
      RateLimitsOp t;
      t.account_id = r.str();
      t.limits = decode_limits(r);
      return Op(std::move(t));
    }
    case 'L': {
      const std::optional<ledger::Capacities> c = decode_capacities(r);
      if (!c) return std::nullopt;
      return Op(CapacitiesOp{*c});
    }
    case 'I': {
      ImportEventsOp im;
      const std::uint64_t n = r.uv();
      if (!r.ok() || n > kImportEventsPerOpMax) return std::nullopt;
      im.events.resize(n);
      for (ledger::Event& e : im.events) {
        std::string_view bytes = r.str_view();
        if (!r.ok() || !ledger::decode_event_into(bytes, e).ok()) return std::nullopt;
      }
      return Op(std::move(im));
    }
  }
  return std::nullopt;
}

// Takes the `,"cache_generation":N` that the ledger ends a cache hit's answer with out of
// the body (ledger/render.h); returns N, or 0 when there is none.
std::uint64_t take_cache_generation(std::string& body) {
  const std::size_t at = body.rfind(ledger::kCacheGenerationField);
  if (at == std::string::npos) return 0;
  const std::size_t digits = at + ledger::kCacheGenerationField.size();
  std::size_t end = digits;
  std::uint64_t generation = 0;
  while (end < body.size() && body[end] >= '0' && body[end] <= '9') {
    generation = generation * 10 + static_cast<std::uint64_t>(body[end] - '0');
    ++end;
  }
  body.erase(at, end - at);
  return generation;
}

// The cached response replaces the `"response":null` that the ledger rendered.
void splice_response(std::string& body, std::string_view response_json) {
  constexpr std::string_view kNull = "\"response\":null";
  auto at = body.rfind(kNull);
  if (at == std::string::npos) return;
  body.replace(at, kNull.size(), std::string("\"response\":").append(response_json));
}

bool rate_limited_kind(pricing::Kind k) {
  return pricing::kind_is_rate_limited(k);
}

}  // namespace

namespace {
std::uint64_t elapsed_ns(std::chrono::steady_clock::time_point since) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since)
          .count());
}

// Raises `max` to `value` if it is larger (one writer per field, readers anywhere).
void raise_max(std::atomic<std::uint64_t>& max, std::uint64_t value) {
  if (value > max.load(std::memory_order_relaxed)) max.store(value, std::memory_order_relaxed);
}

// The calling thread's time on a core and waiting for one (runnable) so far, from
// /proc/thread-self/schedstat (zeros where the kernel does not keep it).
struct ThreadSchedStat {
  unsigned long long run_ns = 0;
  unsigned long long wait_ns = 0;
};
ThreadSchedStat thread_sched_stat() {
  ThreadSchedStat st;
  if (std::FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
    if (std::fscanf(f, "%llu %llu", &st.run_ns, &st.wait_ns) != 2) st = {};
    std::fclose(f);
  }
  return st;
}

// The ledger prepares memory (faulting in the next idempotency array, hundreds of MB at
// millions of keys) on a thread of its own, not on the ledger thread between charges, and
// below its priority.
EngineOptions with_memory_thread(EngineOptions o) {
  if (!o.ledger.background) {
    o.ledger.background = [](std::function<void()> job) {
      std::thread([job = std::move(job)] {
        run_in_background();
        job();
      }).detach();
    };
  }
  return o;
}
}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kAdmin:
      return "admin";
    case Role::kService:
      return "service";
    case Role::kMeter:
      return "meter";
    case Role::kRead:
      return "read";
  }
  return "read";
}

namespace {

// The reply stored under a key creation's idempotency key: what a replay needs to give
// the same answer, never the key itself (CreateKeyOp, engine.h).
std::string stored_key_reply(const KeyInfo& k) {
  std::string out;
  json::Writer w(out);
  w.begin_object().key("key_id").string(k.key_id).key("role").string(role_name(k.role));
  w.key("key_sha256").string(k.hash_hex).end_object();
  return out;
}

// The fields of a stored_key_reply body ("" for one that is missing or not a string).
struct StoredKey {
  std::string key_id, role, key_sha256;
};
StoredKey parse_stored_key(std::string_view body) {
  StoredKey k;
  auto doc = thread_json_parser().parse_object(body);
  if (!doc.ok()) return k;
  auto field = [&](std::string_view name) {
    std::optional<JsonValue> v = doc->find(name);
    return v && v->is_string() ? std::string(v->string_value()) : std::string();
  };
  k.key_id = field("key_id");
  k.role = field("role");
  k.key_sha256 = field("key_sha256");
  return k;
}

void render_key_answer(std::string_view key, std::string_view key_id, std::string_view role,
                       std::string& out) {
  json::Writer w(out);
  w.begin_object().key("key").string(key).key("key_id").string(key_id);
  w.key("role").string(role).end_object();
}

}  // namespace

Engine::Engine(const Clock& clock, pricing::Catalog catalog, std::vector<pricing::RateCard> cards,
               EngineOptions options)
    : clock_(clock),
      catalog_(catalog),
      cards_(std::move(cards)),
      options_(with_memory_thread(std::move(options))),
      ledger_(std::move(catalog), options_.ledger),
      cache_(options_.cache_bytes_max, options_.cache_account_bytes_max),
      limiter_(options_.rate_buckets_max) {
  CREDIT_ASSERT(!cards_.empty());
}

Engine::~Engine() {
  stop();
}

Status Engine::lock_data_dir() {
  // One process per data dir: a second creditd (or creditctl writing) on the same dir
  // would interleave two logs. flock belongs to the open file, so the lock goes with the
  // process however it ends; a snapshot child closes its copy at once.
  if (lock_fd_ >= 0) return ok_status();  // taken before open()
  const std::string path = options_.data_dir + "/" + kDataDirLockFile;
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    Error e(ErrorCode::kStorageFailed, "cannot open " + path + ": " + std::strerror(errno));
    e.with_string("file", path);
    return e;
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    Error e(ErrorCode::kStorageFailed,
            err == EWOULDBLOCK ? "the data dir " + options_.data_dir +
                                     " is in use by another creditd (it holds " + path + ")"
                               : "cannot lock " + path + ": " + std::strerror(err));
    e.with_string("file", path);
    return e;
  }
  lock_fd_ = fd;
  return ok_status();
}

Status Engine::load_key_secret() {
  // The secret must be durable before the first key derived from it is answered: a key
  // shown once and then replayed after a crash must be the same key. Written once (tmp,
  // fsync, rename, directory fsync), never changed; hex on one line like admin.key.
  const std::string path = options_.data_dir + "/" + kKeySecretFile;
  auto failed = [&](const std::string& what) {
    Error e(ErrorCode::kStorageFailed, what + " " + path + ": " + std::strerror(errno));
    e.with_string("file", path);
    return e;
  };
  if (::access(path.c_str(), F_OK) != 0) {
    std::array<std::uint8_t, kKeySecretBytes> bytes;
    random_bytes(bytes.data(), bytes.size());
    const std::string text = hex_encode(bytes.data(), bytes.size()) + "\n";
    if (Status s = store::write_file_durably(path, text, 0600); !s.ok()) return s;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return failed("cannot open");
  char text[2 * kKeySecretBytes + 2] = {};
  const ssize_t n = ::read(fd, text, sizeof(text));
  ::close(fd);
  const bool one_line =
      n == static_cast<ssize_t>(2 * kKeySecretBytes + 1) && text[2 * kKeySecretBytes] == '\n';
  std::optional<std::string> secret =
      one_line ? hex_decode(std::string_view(text, 2 * kKeySecretBytes)) : std::nullopt;
  if (!secret) {
    Error e(ErrorCode::kStorageFailed, path + " is damaged: it must hold " +
                                           std::to_string(kKeySecretBytes) +
                                           " bytes in lowercase hex on one line");
    e.with_string("file", path);
    return e;
  }
  key_secret_ = std::move(*secret);
  return ok_status();
}

const pricing::RateCard* Engine::rate_card(std::int64_t version) const {
  for (const auto& c : cards_) {
    if (c.version() == version) return &c;
  }
  for (const auto& c : past_cards_) {
    if (c.version() == version) return &c;
  }
  return nullptr;
}

std::optional<KeyInfo> Engine::find_key(std::string_view hash_hex) const {
  std::shared_lock lock(keys_mu_);
  auto it = keys_by_hash_.find(std::string(hash_hex));
  if (it == keys_by_hash_.end()) return std::nullopt;
  return it->second;
}

std::vector<KeyInfo> Engine::keys_of(std::string_view account_id) const {
  std::shared_lock lock(keys_mu_);
  std::vector<KeyInfo> out;
  for (const auto& [h, k] : keys_by_hash_) {
    if (k.account_id == account_id) out.push_back(k);
  }
  std::sort(out.begin(), out.end(), [](const KeyInfo& a, const KeyInfo& b) {
    return a.created_at_ms < b.created_at_ms ||
           (a.created_at_ms == b.created_at_ms && a.key_id < b.key_id);
  });
  return out;
}

void Engine::apply_engine_op(const Op& op) {
  if (auto* k = std::get_if<CreateKeyOp>(&op); k && k->refused_closed) {
    return;  // no key was made (its answer: apply_create_key; its event: number_key_refusal)
  } else if (auto* k = std::get_if<CreateKeyOp>(&op)) {
    std::unique_lock lock(keys_mu_);
    keys_by_hash_[k->key.hash_hex] = k->key;
    keys_generation_.fetch_add(1, std::memory_order_release);
  } else if (auto* x = std::get_if<RevokeKeyOp>(&op)) {
    std::unique_lock lock(keys_mu_);
    keys_generation_.fetch_add(1, std::memory_order_release);
    std::erase_if(keys_by_hash_, [&](const auto& kv) {
      return kv.second.key_id == x->key_id && kv.second.account_id == x->account_id;
    });
  } else if (auto* c = std::get_if<CachePutOp>(&op)) {
    // Numbered in the order puts are applied, live and on replay of the log alike.
    policy::CacheEntry entry = c->entry;
    entry.generation = ++cache_generation_last_;
    cache_.put(c->account_id, c->kind, c->cache_key, std::move(entry));
  } else if (auto* t = std::get_if<RateLimitsOp>(&op)) {
    rate_limits_[t->account_id] = t->limits;
  } else if (auto* cap = std::get_if<CapacitiesOp>(&op)) {
    ledger_.set_capacities(cap->capacities);
  }
}

std::optional<ledger::Reply> Engine::refuse_if_closed(const std::string& account_id) const {
  const ledger::Account* a = account_id.empty() ? nullptr : ledger_.find(account_id);
  if (a == nullptr || !a->closed) return std::nullopt;
  Error closed = ledger::account_closed_error();
  return error_reply(closed.code, std::move(closed.message));
}

ledger::Reply Engine::apply_create_key(CreateKeyOp& k, std::int64_t now_ms, bool* log) {
  *log = false;
  // API.md's order: the account's 404 was answered before submitting; then replay or
  // 422; then validation.
  if (k.idem.has_key) {
    if (std::optional<ledger::Reply> stop = ledger_.gate_external(k.idem)) {
      // A 422, or a stored refusal (409 account_closed) answered again as it was.
      if (!stop->replayed || stop->status != kKeyCreatedStatus) return std::move(*stop);
      // The first answer again: the key derived from its id, checked against its hash.
      const StoredKey stored = parse_stored_key(stop->body);
      const std::string key = derived_key(key_secret_, stored.key_id);
      if (stored.key_id.empty() || sha256_hex(key) != stored.key_sha256) {
        return error_reply(ErrorCode::kStorageFailed,
                           "this key cannot be shown again: " + std::string(kKeySecretFile) +
                               " changed since it was created");
      }
      ledger::Reply r;
      r.status = stop->status;
      r.replayed = true;
      render_key_answer(key, stored.key_id, stored.role, r.body);
      return r;
    }
  }
  if (k.precheck) {
    ledger::Reply r;
    r.code = k.precheck->code;
    r.status = error_code_http_status(r.code);
    append_error_json(r.body, *k.precheck);
    return r;
  }
  // A closed account takes no new key (API.md: later mutations get 409). The 409 is an
  // answer of the state, stored under the key with its `rejected` event (DESIGN.md,
  // Idempotency), as the ledger's 409s are.
  if (std::optional<ledger::Reply> closed = refuse_if_closed(k.key.account_id)) {
    if (k.idem.has_key) {
      k.refused_closed = true;
      k.refused_at_ms = now_ms;
      k.idem_expires_at_ms = now_ms + ledger::kIdempotencyTtlMs;
      ledger_.store_external(k.idem, closed->status, closed->body, k.idem_expires_at_ms);
      closed->logged = true;
      *log = true;
    }
    return std::move(*closed);
  }
  k.plaintext = derived_key(key_secret_, k.key.key_id);
  k.key.hash_hex = sha256_hex(k.plaintext);
  ledger::Reply r;
  r.status = kKeyCreatedStatus;
  r.logged = true;
  render_key_answer(k.plaintext, k.key.key_id, role_name(k.key.role), r.body);
  if (k.idem.has_key) {
    k.idem_expires_at_ms = now_ms + ledger::kIdempotencyTtlMs;
    ledger_.store_external(k.idem, kKeyCreatedStatus, stored_key_reply(k.key),
                           k.idem_expires_at_ms);
  }
  *log = true;
  return r;
}

void Engine::number_imported(ImportEventsOp& op, std::vector<ledger::Event>& out) {
  // Both a live batch and its replay call this after the batch's commands, in op order:
  // the same events get the same numbers.
  for (ledger::Event& e : op.events) ledger_.number_external(std::move(e), out);
  op.events.clear();
}

void Engine::number_key_refusal(const CreateKeyOp& k, std::vector<ledger::Event>& out) {
  // As number_imported: after the batch's commands, in op order, live and on replay.
  ledger::Event e;
  e.at_ms = k.refused_at_ms;
  e.account_id = k.key.account_id;
  e.type = ledger::EventType::kRejected;
  e.refused_by = std::string(error_code_name(ErrorCode::kAccountClosed));
  e.idempotency_key = k.idem.key;
  ledger_.number_external(std::move(e), out);
}

void Engine::number_after_commands(Op& op, std::vector<ledger::Event>& out) {
  if (auto* im = std::get_if<ImportEventsOp>(&op)) number_imported(*im, out);
  if (auto* k = std::get_if<CreateKeyOp>(&op); k && k->refused_closed) number_key_refusal(*k, out);
}

Status Engine::decode_replay_record(std::string_view payload, ReplayRecord& out) {
  out.payload_bytes = payload.size();
  out.keyed_commands = 0;
  out.ops.clear();
  ByteReader r(payload);
  if (r.u8() != kEngineRecordVersion) {
    return Error(ErrorCode::kStorageFailed, "unknown engine record version");
  }
  std::string_view ledger_bytes = r.str_view();
  if (!r.ok()) return Error(ErrorCode::kStorageFailed, "bad engine record");
  out.has_batch = !ledger_bytes.empty();
  // Decoded into storage reused across records: a replay decodes millions of batches.
  if (out.has_batch) {
    if (Status s = ledger::decode_batch_into(ledger_bytes, out.batch); !s.ok()) return s;
    // Here rather than on the thread that applies, which the replay's time is.
    for (const ledger::Command& c : out.batch.commands) {
      ledger::Ledger::hash_ids(c);
      out.keyed_commands += c.idem.has_key ? 1 : 0;
    }
  }
  std::uint64_t n = r.uv();
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::optional<Op> op = decode_engine_op(r);
    if (!op) return Error(ErrorCode::kStorageFailed, "bad engine op");
    out.ops.push_back(std::move(*op));
  }
  if (!r.ok() || !r.done()) return Error(ErrorCode::kStorageFailed, "bad engine record");
  return ok_status();
}

Status Engine::apply_replay_record(ReplayRecord& record) {
  wal_bytes_since_snapshot_ += record.payload_bytes + store::kRecordHeaderBytes;
  wal_bytes_total_ += record.payload_bytes + store::kRecordHeaderBytes;
  if (record.keys_expected > 0) ledger_.reserve_idempotency_keys(record.keys_expected);
  if (record.has_batch) {
    ledger::DecodedBatch& batch = record.batch;
    ledger_.begin_batch(batch.now_ms);
    std::vector<ledger::Event>& events = replay_events_;
    ledger_.recycle_events(events);  // their strings and lists are reused
    // Events the event log holds already (the loader has read up to `durable_seq`) are not
    // built at all (Ledger::set_events_durable_through): a record holds up to tens of
    // thousands of commands, and their events (about 1 KiB each) would be written out to
    // memory only for rebuild_events to drop them. `events` gets the others only.
    // A replaying snapshot worker builds none: the server logged them all.
    const std::uint64_t durable_seq =
        replay_without_events_
            ? UINT64_MAX
            : (event_load_ ? event_load_->seq_max.load(std::memory_order_relaxed) : 0);
    ledger_.set_events_durable_through(durable_seq);
    const std::span<const ledger::Command> commands(batch.commands);
    for (std::size_t i = 0; i < commands.size(); ++i) {
      ledger_.prefetch(commands, i);  // the accounts and slots of the commands ahead
      ledger::Command& c = batch.commands[i];
      ledger_.apply(c, events, replay_reply_);
      // A logged command was logged because it changed the state; replaying it must
      // change it the same way.
      CREDIT_ASSERT(replay_reply_.logged);
      CREDIT_ASSERT(events.empty() || events.front().seq > durable_seq);
    }
    last_logged_ms_.store(batch.now_ms);
    if (!replay_without_events_) {
      Status rebuilt = rebuild_events(events);
      if (!rebuilt.ok()) return rebuilt;
    }
  }
  for (Op& op : record.ops) {
    const auto* refused = std::get_if<CreateKeyOp>(&op);
    const bool key_refusal = refused != nullptr && refused->refused_closed;
    if (key_refusal) {
      // The account was closed when the refusal was logged, and a close is for ever: the
      // same answer is stored again.
      const std::optional<ledger::Reply> closed = refuse_if_closed(refused->key.account_id);
      CREDIT_ASSERT(closed.has_value());
      ledger_.store_external(refused->idem, closed->status, closed->body,
                             refused->idem_expires_at_ms);
    }
    if (key_refusal || std::holds_alternative<ImportEventsOp>(op)) {
      replay_events_.clear();
      number_after_commands(op, replay_events_);
      if (replay_without_events_) continue;
      if (Status rebuilt = rebuild_events(replay_events_); !rebuilt.ok()) return rebuilt;
      continue;
    }
    if (auto* k = std::get_if<CreateKeyOp>(&op); k && k->idem.has_key) {
      ledger_.store_external(k->idem, kKeyCreatedStatus, stored_key_reply(k->key),
                             k->idem_expires_at_ms);
    }
    apply_engine_op(op);
  }
  if (record.has_batch) {
    for (const ledger::Command& c : record.batch.commands) touch_cache_hit(c);
  }
  return ok_status();
}

void Engine::touch_cache_hit(const ledger::Command& c) {
  if (const auto* ch = std::get_if<ledger::Charge>(&c.body); ch && ch->cache_hit) {
    cache_.touch(ch->account_id, pricing::kind_name(ch->kind), ch->cache_key);
  } else if (const auto* h = std::get_if<ledger::Hold>(&c.body); h && h->cache_hit) {
    cache_.touch(h->account_id, pricing::kind_name(h->kind), h->cache_key);
  }
}

Status Engine::open() {
  // The state a start rebuilds grows the heap by gigabytes: in large steps (base/process_heap.h).
  const BulkHeapGrowth bulk_growth;
  if (Status s = lock_data_dir(); !s.ok()) return s;
  // The helper that forks snapshot workers, made while the heap is small (engine.h).
  if (options_.snapshot_mode == SnapshotMode::kReplay && !snapshot_workers_) {
    auto helper = ForkServer::start([this](std::string_view request, int report_fd) {
      return run_snapshot_worker(request, report_fd);
    });
    if (helper.ok()) {
      snapshot_workers_ = std::move(*helper);
      stats_.snapshot_helper_pid.store(snapshot_workers_->helper_pid());
    } else {
      std::fprintf(stderr, "creditd: %s; snapshots will be forked instead\n",
                   helper.error().message.c_str());
    }
  }
  if (Status s = load_key_secret(); !s.ok()) return s;
  struct JoinOnExit {
    std::thread& t;
    ~JoinOnExit() {
      if (t.joinable()) t.join();
    }
  };
  // The log and the event log are read through maps: the disk reads ahead of both
  // (store/read_ahead.h), the log first.
  std::thread read_ahead(
      [dirs = std::vector<std::string>{options_.data_dir + "/wal", options_.data_dir + "/events"}] {
        run_in_background();
        (void)store::read_ahead_dirs(dirs);
      });
  JoinOnExit join_read_ahead{read_ahead};
  // The event log (events already durable) loads on a thread of its own while the newest
  // snapshot and then the log records after it are replayed here; the replayed events
  // that the event log lacks are rebuilt once it is loaded. The two share nothing but
  // EventLoad: the loader owns event_log_, events_ and the sink until it is joined.
  const auto t_events = std::chrono::steady_clock::now();
  event_load_ = std::make_unique<EventLoad>();
  std::thread loader([this] {
    // The replay sets the pace and this only has to keep ahead of it (the sink is fed
    // after the start: set_event_sink).
    run_in_background();
    Status s = open_event_log();
    // Events a --repair start let go of count as held (kEventsLostThroughFile).
    std::uint64_t lost = 0;
    if (s.ok()) {
      auto read = read_events_lost_through();
      if (read.ok()) {
        lost = read->value_or(0);
      } else {
        s = read.error();
      }
    }
    std::lock_guard lock(event_load_->mu);
    if (s.ok()) event_load_->log_last_seq = std::max(event_log_->last_seq(), lost);
    event_load_->status = std::move(s);
    event_load_->loaded_at = std::chrono::steady_clock::now();
    event_load_->run_ns = thread_sched_stat().run_ns;
    event_load_->done = true;
    event_load_->cv.notify_all();
  });
  JoinOnExit join_loader{loader};
  const auto t_snapshot = std::chrono::steady_clock::now();
  // Growth the rebuilt state will need later is prepared after the start, not during it.
  ledger_.defer_growth(true);
  if (Status s = load_snapshot(); !s.ok()) return s;
  // The log continues the snapshot: its oldest segment starts at or before the first LSN
  // the snapshot does not cover (0 without one). A later start means deleted segments:
  // their commands are lost, and replaying the rest would apply them to the wrong state.
  const std::string log_dir = options_.data_dir + "/wal";
  auto log_first = store::Wal::first_lsn_on_disk(log_dir);
  if (!log_first.ok()) return log_first.error();
  auto oldest = store::Wal::oldest_segment_on_disk(log_dir);
  if (!oldest.ok()) return oldest.error();
  if (snapshot_lsn_ == 0 && oldest->value_or(0) > 0) {
    // Without a snapshot the state is built from the log's first record. No repair gets
    // past this: the records left would be applied to an empty state (which is not the
    // state they were logged against), and an empty start over them would cut the event
    // log to nothing. Refused the same way with --repair, writing nothing.
    const std::string missing =
        store::segment_file_name(0) +
        (**oldest > 1 ? " to " + store::segment_file_name(**oldest - 1) : std::string());
    const std::string left = log_first->has_value() ? "the segments left hold the log from LSN " +
                                                          std::to_string(**log_first)
                                                    : "no segment left holds a record";
    Error e(ErrorCode::kStorageFailed,
            std::string(options_.repair ? "cannot repair: " : "") +
                "log records are missing: there is no snapshot, but the oldest log segment is " +
                store::segment_file_name(**oldest) + ", not the first (" + missing + " missing; " +
                left +
                "). The commands logged before it are lost and the state cannot be rebuilt "
                "without them; --repair cannot help (it never applies the later records to an "
                "empty state). Put the missing segments back (from a backup) and start again, or "
                "start over with a new data dir");
    e.with_string("file", log_dir + "/" + store::segment_file_name(0));
    e.with("offset", "0");
    return e;
  }
  if (log_first->has_value() && **log_first > snapshot_lsn_) {
    Error e(ErrorCode::kStorageFailed,
            "log records are missing: the oldest log segment starts at LSN " +
                std::to_string(**log_first) + " but the state needs the log from LSN " +
                std::to_string(snapshot_lsn_) +
                (snapshot_lsn_ == 0 ? " (there is no snapshot)" : " (the newest snapshot's)"));
    e.with_string("file", log_dir);
    e.with("offset", "0");
    return e;
  }
  // A snapshot, but no segment with a header: the log after it was deleted (a start would
  // write a new segment at LSN 0). Refused here, before anything is written.
  if (snapshot_lsn_ > 0 && !log_first->has_value() && !options_.repair) {
    const std::string file =
        log_dir + "/" +
        store::segment_file_name(oldest->has_value() && **oldest > 0 ? **oldest - 1 : 0);
    Error e(ErrorCode::kStorageFailed,
            "log records are missing: the newest snapshot covers LSNs below " +
                std::to_string(snapshot_lsn_) + ", but no log segment holds a record (" + file +
                " or the segments with the log from there are missing)");
    e.with_string("file", file);
    e.with("offset", "0");
    return e;
  }
  const auto t_log = std::chrono::steady_clock::now();
  const ThreadSchedStat sched_from = thread_sched_stat();
  store::WalOptions wo;
  wo.repair = options_.repair;
  wo.covered_below_lsn = snapshot_lsn_;
  wo.fsync = options_.fsync;
  wo.file_ops = options_.wal_file_ops;
  if (options_.wal_segment_bytes != 0) wo.segment_bytes = options_.wal_segment_bytes;
  wo.before_write = [this] { return events_cover_snapshot_when_loaded(); };
  const std::string wal_dir = options_.data_dir + "/wal";
  Result<std::unique_ptr<store::Wal>> wal = Error(ErrorCode::kStorageFailed, "log not read");
  Status applied = replay_log(
      [&](const store::WalRecordFn& on_record) { wal = store::Wal::open(wal_dir, wo, on_record); },
      store::Wal::bytes_on_disk(wal_dir), wo.segment_bytes);
  ledger_.defer_growth(false);  // the idempotency table's next array, if it is due
  if (!applied.ok()) return applied;
  // Serving: the ledger thread packs a charge's answer and the log thread renders it
  // (answer_all), off the thread every command waits for.
  ledger_.set_reply_form(ledger::ReplyForm::kPacked);
  loader.join();
  ledger_.set_events_durable_through(0);  // from here on every event is built and logged
  const auto t_events_loaded = event_load_->loaded_at;
  const unsigned long long events_run_ns = event_load_->run_ns;
  Status loaded = std::move(event_load_->status);
  const std::uint64_t events_loaded_last_seq = event_load_->log_last_seq;
  event_load_.reset();  // rebuild_events appends to the loaded log from here on
  if (!loaded.ok()) return loaded;
  if (!wal.ok()) return wal.error();
  wal_ = std::move(wal.value());
  if (const auto& torn = wal_->recovery().torn_tail) {
    std::fprintf(stderr, "creditd: cut a torn tail of the log at %s offset %llu (%s)\n",
                 torn->file.c_str(), static_cast<unsigned long long>(torn->offset),
                 torn->reason.c_str());
  }
  for (const store::WalDamage& past : wal_->recovery().cut_past_segment) {
    std::fprintf(
        stderr, "creditd: cut bytes past the end of a log segment at %s offset %llu (%s)\n",
        past.file.c_str(), static_cast<unsigned long long>(past.offset), past.reason.c_str());
  }
  for (const store::WalDamage& voided : wal_->recovery().voided) {
    std::fprintf(stderr, "creditd: --repair: voided a damaged log record at %s offset %llu (%s)\n",
                 voided.file.c_str(), static_cast<unsigned long long>(voided.offset),
                 voided.reason.c_str());
  }
  if (const auto& cut = wal_->recovery().repaired) {
    std::fprintf(stderr,
                 "creditd: --repair: cut the log at %s offset %llu (%s); later segments holding "
                 "records, if any, were renamed *.damaged, unused ones deleted\n",
                 cut->file.c_str(), static_cast<unsigned long long>(cut->offset),
                 cut->reason.c_str());
  }
  if (const auto& ended = wal_->recovery().restarted_after_lsn) {
    std::fprintf(stderr,
                 "creditd: --repair: the log ended at LSN %llu, before the newest snapshot's LSN "
                 "%llu: its segments holding records were renamed *.damaged (unused ones deleted) "
                 "and it restarts at %llu (the snapshot's state; commands logged after it are "
                 "lost)\n",
                 static_cast<unsigned long long>(*ended),
                 static_cast<unsigned long long>(snapshot_lsn_),
                 static_cast<unsigned long long>(snapshot_lsn_));
  }
  for (const std::string& aside : wal_->recovery().set_aside) {
    std::fprintf(stderr,
                 "creditd: --repair: kept %s for inspection (never read again; it may be "
                 "deleted)\n",
                 aside.c_str());
  }
  // Before the event log is cut to the state: a refused start changes nothing more.
  if (wal_->recovery().first_lsn > snapshot_lsn_ || wal_->next_lsn() < snapshot_lsn_) {
    Error e(ErrorCode::kStorageFailed,
            "the log holds LSNs " + std::to_string(wal_->recovery().first_lsn) + ".." +
                std::to_string(wal_->next_lsn()) + " but the newest snapshot covers LSNs below " +
                std::to_string(snapshot_lsn_) + ": log records are missing");
    e.with_string("file", wal_dir);
    e.with("offset", "0");
    return e;
  }
  // A damaged snapshot kept as one of the two newest would push the intact one loaded
  // instead, and the log back to it, out at the next snapshot (store/snapshot.h).
  for (const std::string& file : snapshots_skipped_) {
    if (Status s = store::set_aside_snapshot(file); !s.ok()) return s;
    std::fprintf(stderr,
                 "creditd: --repair: set the damaged snapshot %s aside as %s.damaged (kept for "
                 "inspection; it may be deleted)\n",
                 file.c_str(), file.c_str());
  }
  snapshots_skipped_.clear();
  // With repair, the start went on past events the snapshot counted (events_cover_snapshot);
  // the loss is written down, so the next start does not refuse it again.
  if (auto missing = events_missing(events_loaded_last_seq)) {
    std::fprintf(stderr, "creditd: --repair: %s; they are lost, the start goes on\n",
                 missing->c_str());
    if (Status s = write_events_lost_through(snapshot_seq_next_ - 1); !s.ok()) return s;
  }
  if (Status s = cut_events_past_state(); !s.ok()) return s;
  std::vector<ledger::Event> none;
  if (Status s = rebuild_events(none); !s.ok()) return s;  // what is still pending
  replay_pending_ = {};
  ledger_.check_invariants();
  // Rebuilt events are durable before anything new is acknowledged.
  if (Status s = event_log_->sync(); !s.ok()) return s;
  CREDIT_ASSERT(event_log_->last_seq() < ledger_.next_seq());
  if (auto r = retain_events(); !r.ok()) return r.error();
  const auto ms = [](auto from, auto to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
  };
  const auto t_done = std::chrono::steady_clock::now();
  const ThreadSchedStat replay_sched = thread_sched_stat();
  std::fprintf(
      stderr,
      "creditd: recovered in %.0f ms: %llu events loaded in %.0f ms (%.0f ms on a core, "
      "beside the replay), snapshot LSN %llu loaded in %.0f ms, %llu log records replayed in %.0f "
      "ms (the replaying thread ran %.0f ms and waited %.0f ms for a core)\n",
      ms(t_events, t_done), static_cast<unsigned long long>(events_.size()),
      ms(t_events, t_events_loaded), static_cast<double>(events_run_ns) / 1e6,
      static_cast<unsigned long long>(snapshot_lsn_), ms(t_snapshot, t_log),
      static_cast<unsigned long long>(wal_->next_lsn() - snapshot_lsn_), ms(t_log, t_done),
      static_cast<double>(replay_sched.run_ns - sched_from.run_ns) / 1e6,
      static_cast<double>(replay_sched.wait_ns - sched_from.wait_ns) / 1e6);
  // A fresh data dir logs the catalog it starts with: a replay from the log alone builds
  // its ledger from the plans file of that later start, which may have changed.
  const bool fresh = snapshot_lsn_ == 0 && wal_->next_lsn() == 0;
  if (Status s = log_catalog_if_changed(fresh); !s.ok()) return s;
  if (Status s = log_rate_card_if_changed(); !s.ok()) return s;
  return log_capacities_if_changed(fresh);
}

Status Engine::replay_log(const std::function<void(const store::WalRecordFn&)>& read_log,
                          std::uint64_t log_bytes, std::uint64_t segment_bytes) {
  // The replay's answers are discarded: charges store theirs without rendering them.
  ledger_.set_reply_form(ledger::ReplyForm::kNone);
  // The log is read and each record decoded on a thread of its own, and applied here in
  // log order (replay_pipe.h): the decode is about an eighth of a record's replay.
  Status applied = ok_status();
  {
    ReplayPipe<ReplayRecord> pipe;
    // The idempotency table is sized once for the keys the log holds (replay_estimate.h),
    // and it and the stored replies are kept on a thread of their own (replay_storer.h), a
    // third of a record's replay.
    ReplayKeyEstimate keys(log_bytes, segment_bytes);
    std::thread decoder([&] {
      // Below the replaying thread, as the stores' thread is: on two cores the replay sets
      // the pace, and at the same priority it waited 0.4-0.7 s of a 10 M start for a core
      // (its schedstat); below it, 0.1 s (docs/benchmarks.md, "Restart", session 11).
      run_in_background();
      read_log([&](std::uint64_t lsn, std::string_view payload) {
        const std::uint64_t bytes = payload.size() + store::kRecordHeaderBytes;
        if (lsn < snapshot_lsn_) {  // covered
          keys.skip(bytes);
          return ok_status();
        }
        ReplayRecord* slot = pipe.acquire();
        if (slot == nullptr) return Status(Error(ErrorCode::kStorageFailed, "replay stopped"));
        if (Status s = decode_replay_record(payload, *slot); !s.ok()) return s;
        slot->keys_expected = keys.add(bytes, slot->keyed_commands).value_or(0);
        pipe.publish();
        return ok_status();
      });
      pipe.close();
    });
    ReplayStorer storer(ledger_);
    while (ReplayRecord* record = pipe.next()) {
      if (applied.ok()) applied = apply_replay_record(*record);
      if (applied.ok() && !storer.hand_over()) {
        applied = Error(ErrorCode::kStorageFailed, "the replay's stores stopped");
      }
      if (!applied.ok()) pipe.stop();  // the decoder's next record ends the read
      pipe.release();
    }
    decoder.join();
    if (Status stored = storer.finish(); !stored.ok()) applied = std::move(stored);  // the cause
  }
  ledger_.set_reply_form(ledger::ReplyForm::kRendered);
  return applied;
}

// Plans are versioned values inside the ledger's state: a changed plans file is itself a
// logged command (it applies to each account from its next cycle).
Status Engine::log_catalog_if_changed(bool fresh) {
  if (!fresh && ledger_.catalog().source_text == catalog_.source_text) return ok_status();
  ledger::Command c;
  c.body = ledger::LoadCatalog{catalog_.source_text};
  if (Status s = log_startup_command(c); !s.ok()) return s;
  if (!fresh) std::fprintf(stderr, "creditd: the plans file changed; logged the new catalog\n");
  return ok_status();
}

Status Engine::log_rate_card_if_changed() {
  const pricing::RateCard& current = cards_.back();
  const std::string* logged = ledger_.rate_card_text(current.version());
  if (logged == nullptr || *logged != current.source_text()) {
    // A version is meant to name one set of prices: a changed text under a version the
    // state holds replaces it (a hold of that version is captured at the new prices), so
    // the start says so.
    if (logged != nullptr) {
      std::fprintf(stderr,
                   "creditd: warning: the rate card's text changed under version %lld, which "
                   "the state already holds; it replaces that version (open holds priced with "
                   "it are captured at the new prices): give a changed card a new version\n",
                   static_cast<long long>(current.version()));
    }
    ledger::Command c;
    c.body = ledger::LoadRateCard{current.version(), current.source_text()};
    if (Status s = log_startup_command(c); !s.ok()) return s;
  }
  past_cards_.clear();
  for (const auto& [version, text] : ledger_.rate_cards()) {
    if (rate_card(version) != nullptr) continue;
    auto card = pricing::RateCard::parse(text, "rate card version " + std::to_string(version));
    // A card the ledger holds was parsed before it was logged: it parses again.
    if (!card.ok()) return card.error();
    past_cards_.push_back(std::move(*card));
  }
  return ok_status();
}

Status Engine::log_capacities_if_changed(bool fresh) {
  const ledger::Capacities flags{options_.ledger.accounts_max,
                                 options_.ledger.open_holds_per_account_max,
                                 options_.ledger.live_grants_per_pool_max};
  if (!fresh && ledger_.capacities() == flags) return ok_status();
  const Op op = CapacitiesOp{flags};
  std::string payload;
  ByteWriter w(payload);
  w.u8(kEngineRecordVersion);
  w.str(std::string_view());  // no ledger batch: the ledger's now does not move
  w.uv(1);
  encode_engine_op(w, op);
  if (Status s = wal_->reserve(payload.size()); !s.ok()) return s;
  if (auto lsn = wal_->append(payload); !lsn.ok()) return lsn.error();
  if (Status s = wal_->sync(); !s.ok()) return s;
  apply_engine_op(op);
  if (!fresh) std::fprintf(stderr, "creditd: the capacity flags changed; logged them\n");
  return ok_status();
}

Status Engine::log_startup_command(ledger::Command& c) {
  // At the ledger's own now: loading a file reads no clock, so it never moves the ledger
  // forward (an import with mode=apply may still start from an earlier instant).
  std::int64_t now_ms = ledger_.begin_batch(ledger_.now_ms());
  std::vector<ledger::Event> events;
  ledger::Reply r = ledger_.apply(c, events);
  if (r.status != 200) {
    return Error(ErrorCode::kStorageFailed, "the configuration cannot be loaded: " + r.body);
  }
  std::string payload;
  ByteWriter w(payload);
  w.u8(kEngineRecordVersion);
  std::string ledger_bytes;
  ledger::encode_batch(now_ms, {&c}, ledger_bytes);
  w.str(ledger_bytes);
  w.uv(0);
  if (Status s = wal_->reserve(payload.size()); !s.ok()) return s;
  if (auto lsn = wal_->append(payload); !lsn.ok()) return lsn.error();
  if (Status s = wal_->sync(); !s.ok()) return s;
  last_logged_ms_.store(now_ms);
  return ok_status();
}

void Engine::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  log_stopping_ = false;
  collapse_off_.store(false);
  start_collapse();  // the state just rebuilt, before the first snapshot's fork
  ready_at_ = std::chrono::steady_clock::now();
  stats_.sink_backlog_events.store(sink_backlog_.size() - sink_backlog_next_);
  const bool catch_up = sink_ && catching_up();
  log_thread_ = std::thread([this] { log_run(); });
  thread_ = std::thread([this] { run(); });
  if (catch_up) {
    sink_catch_up_stop_.store(false);
    sink_catch_up_thread_ = std::thread([this] { run_sink_catch_up(); });
  }
}

void Engine::run_sink_catch_up() {
  constexpr auto kPoll = std::chrono::milliseconds(1);
  while (!sink_catch_up_stop_.load()) {
    if (sink_ready_ && !sink_ready_()) {  // the sink is still busy with the last slices
      std::this_thread::sleep_for(kPoll);
      continue;
    }
    auto fed = std::make_shared<std::promise<bool>>();
    std::future<bool> caught_up = fed->get_future();
    if (!read([this, fed](EngineState& st) { fed->set_value(feed_sink_backlog(st)); })) {
      std::this_thread::sleep_for(kPoll);  // the queue is full, or the engine stops
      continue;
    }
    if (caught_up.get()) return;  // a queued read always runs, even at a stop
  }
}

bool Engine::feed_sink_backlog(EngineState& st) {
  if (!catching_up()) return true;
  const std::size_t end =
      std::min(sink_backlog_.size(), sink_backlog_next_ + kSinkCatchUpSliceEvents);
  if (sink_slice_.size() < end - sink_backlog_next_) sink_slice_.resize(end - sink_backlog_next_);
  std::size_t used = 0;
  for (std::size_t i = sink_backlog_next_; i < end; ++i) {
    // An event no longer in the log (its day deleted by retention since) is skipped.
    if (events_.decode(sink_backlog_[i], sink_slice_[used])) ++used;
  }
  sink_backlog_next_ = end;
  if (used < sink_slice_.size()) sink_slice_.resize(used);  // a short slice: rare
  // The last slice goes even when empty: the sink learns that the catch-up is over.
  if (!sink_slice_.empty() || !catching_up()) sink_(sink_slice_, catching_up());
  stats_.sink_backlog_events.store(sink_backlog_.size() - sink_backlog_next_);
  if (catching_up()) return false;
  const std::uint64_t fed = sink_backlog_.size();
  std::vector<EventIndex::Entry>().swap(sink_backlog_);
  sink_backlog_next_ = 0;
  std::vector<ledger::Event>().swap(sink_slice_);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - ready_at_)
                      .count();
  stats_.sink_catch_up_ms_last.store(static_cast<std::uint64_t>(ms));
  std::fprintf(
      stderr,
      "creditd: the event sink (analytics) caught up: %llu events fed in %lld ms after the start\n",
      static_cast<unsigned long long>(fed), static_cast<long long>(ms));
  std::vector<ParkedRead> parked;
  parked.swap(parked_reads_);
  for (ParkedRead& p : parked) p.fn(st);
  return true;
}

bool Engine::read_caught_up(ReadFn fn, std::function<void()> refused) {
  return read([this, fn = std::move(fn), refused = std::move(refused)](EngineState& st) mutable {
    if (!catching_up()) return fn(st);
    if (parked_reads_.size() >= options_.parked_reads_max || refuse_waiting_reads_.load()) {
      return refused();
    }
    parked_reads_.push_back(ParkedRead{std::move(fn), std::move(refused)});
  });
}

void Engine::refuse_waiting_reads() {
  refuse_waiting_reads_.store(true);
  (void)read([this](EngineState&) { refuse_parked_reads(); });
}

void Engine::refuse_parked_reads() {
  std::vector<ParkedRead> parked;
  parked.swap(parked_reads_);
  for (ParkedRead& p : parked) p.refused();
}

bool Engine::snapshot_due() const {
  if (wal_bytes_since_snapshot_ < options_.snapshot_wal_bytes) return false;
  // A collapse pass still folding the heap (after the start or the last snapshot) makes
  // the fork cheap: it may finish first, unless the log has grown twice as long.
  const bool collapsing = !collapse_done_.load();  // true while no pass runs
  return !collapsing || wal_bytes_since_snapshot_ >= 2 * options_.snapshot_wal_bytes;
}

bool Engine::start_collapse() {
  // From start() and the ledger thread; stop() and start_snapshot stop it: one at a time.
  std::lock_guard lock(collapse_mu_);
  if (options_.snapshot_mode != SnapshotMode::kFork || !options_.snapshot_collapse ||
      collapse_off_.load()) {
    return false;
  }
  if (collapse_thread_.joinable()) {
    if (!collapse_done_.load()) return false;  // still folding the last snapshot's pages
    collapse_thread_.join();
  }
  collapse_stop_.store(false);
  collapse_done_.store(false);
  collapse_thread_ = std::thread([this] {
    const CollapseResult r = collapse_anonymous_memory(collapse_stop_);
    if (r.supported) {
      stats_.collapses.fetch_add(1, std::memory_order_relaxed);
      stats_.collapse_ms_last.store(static_cast<std::uint64_t>(r.ms), std::memory_order_relaxed);
      stats_.collapse_bytes_last.store(r.bytes_tried - r.bytes_failed, std::memory_order_relaxed);
    }
    collapse_done_.store(true);
  });
  return true;
}

void Engine::stop_collapse() {
  std::lock_guard lock(collapse_mu_);
  if (!collapse_thread_.joinable()) return;
  collapse_stop_.store(true);  // seen within one step (kCollapseStepBytes)
  collapse_thread_.join();
}

void Engine::stop() {
  collapse_off_.store(true);
  stop_collapse();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  sink_catch_up_stop_.store(true);
  // The ledger thread drains the pipeline before it returns; then the log thread is idle.
  if (thread_.joinable()) thread_.join();
  if (sink_catch_up_thread_.joinable()) sink_catch_up_thread_.join();
  {
    std::lock_guard lock(mu_);
    log_stopping_ = true;
  }
  log_cv_.notify_all();
  if (log_thread_.joinable()) log_thread_.join();
  if (wal_ && !wal_->failed()) {
    // A clean stop snapshots what the last snapshot written does not cover (log since
    // the last one started, or the last one failed or was cancelled), so the next start
    // replays nothing.
    finish_snapshot(true);
    if (wal_bytes_since_snapshot_ > 0 || snapshot_lsn_ > snapshot_written_lsn_) {
      start_snapshot(true);
    }
    if (event_log_) (void)event_log_->sync();
  }
  join_log_cleanup();
  // No snapshot is in flight: the helper (and its socket) can go.
  if (!snapshot_thread_.joinable()) {
    snapshot_workers_.reset();
    stats_.snapshot_helper_pid.store(0);
  }
  if (wal_ && !wal_->failed()) (void)wal_->close();
  wal_.reset();
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // the data dir is free for the next engine
    lock_fd_ = -1;
  }
}

bool Engine::submit(std::vector<Op>&& ops, Done done, bool wake) {
  std::size_t n = ops.size();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queued_ops_ + n > options_.queue_ops_max) return false;
    queued_ops_ += n;
    queue_.push_back(Job{std::move(ops), std::move(done), nullptr});
  }
  if (wake) cv_.notify_one();
  return true;
}

void Engine::wake() {
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) return;
  }
  cv_.notify_one();
}

bool Engine::submit_at(std::int64_t at_ms, std::vector<Op>&& ops, Done done) {
  std::size_t n = ops.size();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queued_ops_ + n > options_.queue_ops_max) return false;
    queued_ops_ += n;
    queue_.push_back(Job{std::move(ops), std::move(done), nullptr, at_ms});
  }
  cv_.notify_one();
  return true;
}

bool Engine::read(ReadFn fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= options_.queue_ops_max) return false;
    queue_.push_back(Job{{}, nullptr, std::move(fn)});
  }
  cv_.notify_one();
  return true;
}

void Engine::check_sweep(bool tick) {
  // Once stopping, nothing new is queued (submit refuses it).
  const std::int64_t now_ms = std::max(clock_.now_ms(), ledger_.now_ms());
  if (!sweep_queued_ && ledger_.next_due_ms() <= now_ms) {
    std::vector<Op> ops;
    ledger::Command& c = std::get<ledger::Command>(ops.emplace_back(ledger::Command{}));
    c.body = ledger::Sweep{};
    sweep_queued_ = submit(std::move(ops), [](std::vector<ledger::Reply>&&) {});
  }
  if (tick && tick_) read(tick_);
}

bool Engine::sweep_then_read(ReadFn fn) {
  return read([this, fn = std::make_shared<ReadFn>(std::move(fn))](EngineState& st) {
    check_sweep(true);
    // Queued behind the sweep: it runs once the sweep is durable (or now, without the
    // sweep's events, when the queue is full).
    if (!read([fn](EngineState& later) { (*fn)(later); })) (*fn)(st);
  });
}

void Engine::run() {
  std::vector<Job> jobs;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // A snapshot that ended is finished here too, not only after the next batch: with no
      // traffic after it, its log truncation and its counts would wait for the next write.
      // Woken at the next sweep check at the latest.
      cv_.wait_until(lock, sweep_check_at_, [&] {
        return stopping_ || !queue_.empty() || !durable_events_.empty() ||
               (snapshot_thread_.joinable() && snapshot_done_.load());
      });
      if (!durable_events_.empty()) take_durable(lock);
      if (queue_.empty() && stopping_) break;
      std::size_t ops = 0;
      while (!queue_.empty() &&
             (jobs.empty() || ops + queue_.front().ops.size() <= options_.batch_ops_max)) {
        // A job at an instant (submit_at) is a batch of its own: its instant is its now.
        if (queue_.front().at_ms && !jobs.empty()) break;
        ops += queue_.front().ops.size();
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
        if (jobs.back().at_ms) break;
      }
      queued_ops_ -= ops;
    }
    if (!jobs.empty()) {
      const auto t_apply = std::chrono::steady_clock::now();
      apply_batch(jobs);
      raise_max(stats_.batch_apply_ns_max, elapsed_ns(t_apply));
      jobs.clear();
    }
    if (std::exchange(sweep_applied_, false)) check_sweep(false);
    if (std::chrono::steady_clock::now() >= sweep_check_at_) {
      sweep_check_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(kSweepCheckMs);
      check_sweep(true);
    }
    // The heap grown since the last pass is folded before the fork (engine.h); tried after
    // each batch until a pass starts (one may still be running).
    if (!precollapse_started_ && !snapshot_thread_.joinable() &&
        wal_bytes_since_snapshot_ >= snapshot_precollapse_wal_bytes(options_.snapshot_wal_bytes) &&
        start_collapse()) {
      precollapse_started_ = true;
      stats_.precollapses.fetch_add(1, std::memory_order_relaxed);
    }
    // The snapshot uses the log (its LSN, truncation): only while the log thread is idle.
    const bool snapshot_written = snapshot_thread_.joinable() && snapshot_done_.load();
    if (snapshot_written || (!snapshot_thread_.joinable() && snapshot_due())) {
      drain();
      finish_snapshot(false);
      if (snapshot_due()) start_snapshot(false);
    }
  }
  drain();
  // A clean stop takes a snapshot of its own: a worker still rebuilding the state is
  // cancelled rather than waited for (at 10 M commands it may have half a minute left).
  if (snapshot_taken_by_ == SnapshotMode::kReplay && snapshot_thread_.joinable() &&
      !snapshot_done_.load()) {
    snapshot_cancelled_ = true;
    snapshot_workers_->cancel();
  }
  // A snapshot child forked from this thread is killed when the thread ends
  // (PR_SET_PDEATHSIG follows the forking thread, not the process): a clean stop keeps it.
  finish_snapshot(true);
  // Reads still waiting for the sink's catch-up are not answered from part of it.
  refuse_parked_reads();
}

void Engine::take_durable(std::unique_lock<std::mutex>& lock) {
  std::vector<std::vector<ledger::Event>> batches;
  batches.swap(durable_events_);
  lock.unlock();
  for (auto& events : batches) {
    // Events go to their own log after the batch is durable, without a sync of their
    // own (a crash loses only events that the log after the snapshot rebuilds).
    const auto t0 = std::chrono::steady_clock::now();
    Status written = log_and_keep_events(events);
    raise_max(stats_.event_write_ns_max, elapsed_ns(t0));
    if (!written.ok()) {
      // The batch is durable and answered; its events are rebuilt from the log at start.
      std::fprintf(stderr, "creditd: event log failed: %s; stopping\n",
                   written.error().message.c_str());
      std::fflush(stderr);
      failed_.store(true);
      answer_until_exit(true);
      std::_Exit(3);
    }
    if (sink_ && !events.empty() && !catching_up()) sink_(events, false);
    // Their drawn_from lists and metadata go back to the ledger for the next events.
    ledger_.recycle_events(events);
    if (spare_event_lists_.size() < kSpareEventListsMax &&
        events.capacity() <= kSpareEventListCapacityMax) {
      spare_event_lists_.push_back(std::move(events));
    }
  }
  enforce_event_retention();
  lock.lock();
}

void Engine::enforce_event_retention() {
  // While running, not only at start and after snapshots (DESIGN.md: events are deleted by
  // age and by a byte budget): at each new UTC day of the ledger's now, and whenever the
  // log is over its budget.
  const std::int64_t today_ms = day_start_ms(ledger_.now_ms());
  const bool over_budget =
      options_.events_bytes_max != 0 && event_log_->bytes() > options_.events_bytes_max;
  if (today_ms == retention_day_ms_ && !over_budget) return;
  retention_day_ms_ = today_ms;
  if (auto r = retain_events(); !r.ok()) {
    std::fprintf(stderr, "creditd: event retention failed: %s\n", r.error().message.c_str());
  }
}

Result<std::size_t> Engine::retain_events() {
  std::vector<store::EventLogDeleted> deleted;
  Result<std::size_t> r = event_log_->enforce_retention(ledger_.now_ms(), &deleted);
  // Also after a failed pass: the segments it did delete are gone.
  if (deleted.empty()) return r;
  std::vector<std::uint32_t> numbers;
  std::vector<std::int64_t> days;
  for (const store::EventLogDeleted& d : deleted) {
    numbers.push_back(d.number);
    days.push_back(d.day_start_ms);
  }
  std::sort(numbers.begin(), numbers.end());
  std::sort(days.begin(), days.end());
  days.erase(std::unique(days.begin(), days.end()), days.end());
  events_.drop_segments(numbers);
  // The sink's catch-up skips the backlog's events of these days (decode finds nothing),
  // and everything fed before is ahead of this in the consumer's order.
  if (retention_sink_) retention_sink_(days);
  return r;
}

void Engine::drain() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return in_flight_ == 0; });
  if (!durable_events_.empty()) take_durable(lock);
}

void Engine::hand_to_log(Pending&& p) {
  if (!p.payload.empty()) {
    wal_bytes_since_snapshot_ += p.payload.size() + store::kRecordHeaderBytes;
    wal_bytes_total_ += p.payload.size() + store::kRecordHeaderBytes;
  }
  {
    std::lock_guard lock(mu_);
    ++in_flight_;
    log_queue_.push_back(std::move(p));
  }
  log_cv_.notify_one();
}

void Engine::check_log_room() {
  // Without room, the preallocation is tried again at most twice each kLogRoomRetryMs.
  const auto now = std::chrono::steady_clock::now();
  if (!log_room_.load(std::memory_order_relaxed) &&
      now - log_room_tried_at_ < std::chrono::milliseconds(kLogRoomRetryMs / 2)) {
    return;
  }
  log_room_tried_at_ = now;
  // DESIGN.md section 3: the next segment is preallocated ahead, and when that fails new
  // batches are refused before anything is applied (the preallocation is tried again
  // here). While it is still being made, half a segment is room enough for the batches
  // the ledger thread may apply before it sees the answer (a group commit is at most a few
  // MiB); past it, the next segment must exist.
  const bool room =
      (!wal_->next_segment_failed() && wal_->room_bytes() >= wal_->payload_bytes_max() / 2) ||
      wal_->prepare_next_segment().ok();
  const bool had = log_room_.exchange(room, std::memory_order_acq_rel);
  if (had && !room) {
    std::fprintf(stderr,
                 "creditd: the next log segment cannot be preallocated; new writes get 503 "
                 "storage_failed until it can\n");
  } else if (!had && room) {
    std::fprintf(stderr, "creditd: the next log segment is ready; writes are taken again\n");
  }
}

void Engine::log_run() {
  std::deque<Pending> work;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      // Without room for more, the next segment's preallocation is tried again each
      // kLogRoomRetryMs (a full disk may have room again).
      while (!log_stopping_ && log_queue_.empty()) {
        if (log_room_.load(std::memory_order_relaxed)) {
          log_cv_.wait(lock);
          continue;
        }
        log_cv_.wait_for(lock, std::chrono::milliseconds(kLogRoomRetryMs));
        if (!log_queue_.empty() || log_stopping_) break;
        lock.unlock();
        check_log_room();
        lock.lock();
      }
      if (log_queue_.empty()) return;  // stopping, and everything is answered
      work.swap(log_queue_);
    }
    // Everything gathered since the last sync goes to the disk with one fdatasync.
    Status s = ok_status();
    bool wrote = false;
    const auto t_write = std::chrono::steady_clock::now();
    for (Pending& p : work) {
      if (p.payload.empty() || !s.ok()) continue;
      s = wal_->reserve(p.payload.size());
      if (s.ok()) {
        auto lsn = wal_->append(p.payload);
        s = lsn.ok() ? ok_status() : Status(lsn.error());
      }
      wrote = true;
    }
    if (wrote && s.ok()) {
      raise_max(stats_.log_write_ns_max, elapsed_ns(t_write));
      auto t0 = std::chrono::steady_clock::now();
      s = wal_->sync();  // with --no-fsync (benchmarks) it writes without fdatasync
      const std::uint64_t sync_ns = elapsed_ns(t0);
      raise_max(stats_.log_sync_ns_max, sync_ns);
      // The fsync metrics count fdatasyncs: none with --no-fsync.
      if (options_.fsync) {
        stats_.fsync_ns_total.fetch_add(sync_ns);
        stats_.fsyncs.fetch_add(1, std::memory_order_relaxed);
        if (Histogram* h = fsync_hist_.load(std::memory_order_acquire)) h->observe_ns(sync_ns);
      }
    }
    const bool durable = s.ok();
    if (!durable) {
      failed_.store(true);
      std::fprintf(stderr, "creditd: storage failed: %s; stopping\n", s.error().message.c_str());
    }
    std::vector<std::vector<ledger::Event>> events;
    events.reserve(work.size());
    auto answer_all = [&] {
      for (Pending& p : work) {
        for (std::size_t j = 0; j < p.jobs.size(); ++j) {
          if (!durable) {
            // What the batch changed, and its replays (one may answer a command of this
            // same batch, which is lost with it).
            for (auto& r : p.replies[j]) {
              if (r.logged || r.replayed)
                r = error_reply(ErrorCode::kStorageFailed,
                                "outcome unknown: retry with the same key");
            }
          }
          for (auto& r : p.replies[j]) ledger::render_reply(r);
          p.jobs[j].done(std::move(p.replies[j]));
        }
      }
    };
    for (Pending& p : work) {
      if (durable && p.logged_ledger) last_logged_ms_.store(p.now_ms);
      if (!p.events.empty()) events.push_back(std::move(p.events));
    }
    if (durable && !events.empty()) {
      // Handed to the ledger thread before the answers go out: a job queued by whoever
      // got an answer runs after these events reached the event log and the sink (the
      // import waits for its chunk's events to be in the rollups that way).
      std::lock_guard lock(mu_);
      for (auto& e : events) durable_events_.push_back(std::move(e));
    }
    if (answer_scope_) {
      answer_scope_(answer_all);
    } else {
      answer_all();
    }
    if (durable) check_log_room();
    if (!durable) {
      // The state in memory is ahead of the disk: recovery from disk is the truth. The
      // I/O threads get a moment to send the batch's 503s (new requests get 503 too:
      // failed()), then the process exits.
      std::fflush(stderr);
      answer_until_exit(false);
      std::_Exit(3);
    }
    {
      std::lock_guard lock(mu_);
      in_flight_ -= work.size();
    }
    cv_.notify_all();
    work.clear();
  }
}

void Engine::answer_until_exit(bool from_ledger_thread) {
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kStorageFailedAnswerGraceMs);
  // Every answer of a batch applied after the failure is refused: a replay there may
  // answer a command that was lost with the failing batch.
  const auto refuse = [](std::vector<ledger::Reply>& replies, std::string_view why) {
    for (auto& r : replies) r = error_reply(ErrorCode::kStorageFailed, std::string(why));
  };
  while (std::chrono::steady_clock::now() < until) {
    std::deque<Pending> late;
    std::deque<Job> waiting;
    {
      std::lock_guard lock(mu_);
      waiting.swap(queue_);
      // After an event log failure the command log still works: its batches are durable
      // and the log thread answers them.
      if (!from_ledger_thread) late.swap(log_queue_);
    }
    // Applied in memory after the failing batch, never logged: lost with the process.
    for (Pending& p : late) {
      for (std::size_t j = 0; j < p.jobs.size(); ++j) {
        refuse(p.replies[j], "outcome unknown: retry with the same key");
        p.jobs[j].done(std::move(p.replies[j]));
      }
    }
    // Never applied.
    for (Job& job : waiting) {
      if (!job.done) continue;
      std::vector<ledger::Reply> replies(
          job.ops.size(), error_reply(ErrorCode::kStorageFailed,
                                      "the store failed and nothing was applied: retry with "
                                      "the same key after the server's restart"));
      job.done(std::move(replies));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

ledger::Reply Engine::apply_ledger(ledger::Command& c,
                                   std::vector<const ledger::Command*>& logged) {
  // API.md's order: 404, replay or 422, validation (the ledger's gate), then the cache
  // and the rate limit (here), then the business rules (the ledger).
  std::string_view kind_name;
  std::string cached_response;
  bool hit = false;
  auto policy = [&](auto& cmd) {
    if (c.precheck_error != ErrorCode::kOk || c.imported) return;
    const ledger::Account* a = ledger_.find(cmd.account_id);
    if (a == nullptr) return;
    // A closed account still passes the limiter (API.md: 429 before 409), but a cache
    // hit would answer a request that the ledger refuses with 409.
    // Only integration calls are cached (DESIGN.md, "Integration cache"); another kind's
    // cache_key is kept with its event and looks nothing up.
    if (!a->closed && !cmd.cache_key.empty() && pricing::kind_is_integration_call(cmd.kind)) {
      kind_name = pricing::kind_name(cmd.kind);
      if (const policy::CacheEntry* e =
              cache_.peek(cmd.account_id, kind_name, cmd.cache_key, ledger_.now_ms())) {
        cmd.cache_hit = true;
        cmd.saved = cmd.amount;
        cmd.cache_generation = e->generation;
        cached_response = e->response_json;
        // The hit counts for the call site the entry was stored for when the request names
        // none (cache-stats by call site); logged with the command, so a replay agrees.
        if (cmd.metadata.call_site.empty()) cmd.metadata.call_site = e->call_site;
        hit = true;
        return;
      }
    }
    if (!rate_limited_kind(cmd.kind)) return;
    pricing::PlanRateLimits limits = a->plan.rate_limits;
    if (auto it = rate_limits_.find(cmd.account_id); it != rate_limits_.end()) {
      limits = in_force(it->second, limits);
    }
    policy::RateDecision d = limiter_.take(cmd.account_id, cmd.user_id, limits, ledger_.now_ms());
    if (!d.allowed) {
      c.precheck_error = ErrorCode::kRateLimited;
      c.retry_after_ms = d.retry_after_ms;
    }
  };
  if (std::optional<ledger::Reply> gate = ledger_.gate(c)) {
    if (gate->replayed && gate->body.find("\"cached\":true") != std::string::npos) {
      // A replayed cache hit answers with the cached response again, or says it is gone.
      replay_cached_response(c, gate->body);
    }
    return std::move(*gate);
  }
  if (auto* ch = std::get_if<ledger::Charge>(&c.body)) policy(*ch);
  if (auto* h = std::get_if<ledger::Hold>(&c.body)) policy(*h);
  if (auto* cap = std::get_if<ledger::Capture>(&c.body)) price_capture(c, *cap);
  ledger::Reply reply = ledger_.apply(c, batch_events_);
  // Counted once per batch (apply_batch), not with an atomic per charge.
  batch_charges_ += reply.status == 201 && std::holds_alternative<ledger::Charge>(c.body);
  if (reply.logged) logged.push_back(&c);
  if (hit && reply.logged && !reply.replayed) {
    // A use of the entry, marked after the batch's puts (touch_cache_hit), as a replay of
    // the log marks it.
    cache_hits_to_touch_.push_back(&c);
  }
  if (hit && !reply.replayed) {
    take_cache_generation(reply.body);
    splice_response(reply.body, cached_response);
    stats_.cache_hits.fetch_add(1, std::memory_order_relaxed);
  }
  return reply;
}

void Engine::replay_cached_response(const ledger::Command& c, std::string& body) {
  const std::uint64_t generation = take_cache_generation(body);
  const std::string* account_id = nullptr;
  const std::string* cache_key = nullptr;
  pricing::Kind kind = pricing::Kind::kAgentPrompt;
  if (auto* ch = std::get_if<ledger::Charge>(&c.body)) {
    account_id = &ch->account_id;
    cache_key = &ch->cache_key;
    kind = ch->kind;
  } else if (auto* h = std::get_if<ledger::Hold>(&c.body)) {
    account_id = &h->account_id;
    cache_key = &h->cache_key;
    kind = h->kind;
  }
  if (account_id == nullptr || cache_key->empty()) return;
  const policy::CacheEntry* e =
      cache_.peek(*account_id, pricing::kind_name(kind), *cache_key, ledger_.now_ms());
  // Generation 0: a hit logged before generations; the entry's response is all there is.
  const bool same_entry = e != nullptr && (generation == 0 || e->generation == generation);
  if (same_entry) {
    splice_response(body, e->response_json);
  } else {
    splice_response(body, "null,\"response_evicted\":true");
  }
}

// A capture's usage is priced with the rate card version of its hold; with an amount it
// is only validated (API.md: "the usage, if any, is validated and kept").
void Engine::price_capture(ledger::Command& c, ledger::Capture& cap) {
  if (c.precheck_error != ErrorCode::kOk || !cap.usage) return;
  const ledger::Account* a = ledger_.find(cap.account_id);
  const ledger::HoldRecord& h = a->holds.at(cap.hold_id);  // gate() checked both
  const pricing::RateCard* card = rate_card(h.rate_card_version);
  if (card == nullptr) card = &cards_.back();
  const auto refuse = [&](const Error& e) {
    c.precheck_error = e.code;
    c.precheck_message = e.message;
    std::string_view p = e.detail("param");
    if (p.size() >= 2) c.precheck_param = std::string(p.substr(1, p.size() - 2));
  };
  if (cap.amount) {
    if (Status valid = card->validate(h.kind, *cap.usage); !valid.ok()) refuse(valid.error());
    return;
  }
  auto price = card->price(h.kind, *cap.usage);
  if (!price.ok()) {
    refuse(price.error());
    return;
  }
  cap.amount = price->cost;
}

void Engine::apply_batch(std::vector<Job>& jobs) {
  Pending p;
  // submit_at: the batch's instant is the job's, when it is neither before the ledger's
  // now nor after the clock's; otherwise nothing is applied.
  if (jobs.size() == 1 && jobs[0].at_ms &&
      (*jobs[0].at_ms < ledger_.now_ms() || *jobs[0].at_ms > clock_.now_ms())) {
    std::vector<ledger::Reply> replies;
    for (std::size_t i = 0; i < jobs[0].ops.size(); ++i) {
      replies.push_back(error_reply(ErrorCode::kBackfillOutOfOrder,
                                    "the instant is before the ledger's last instant or after "
                                    "the clock's now"));
    }
    // Answered in order with the batches before it (it read their state).
    p.replies.push_back(std::move(replies));
    p.jobs.push_back(std::move(jobs[0]));
    hand_to_log(std::move(p));
    return;
  }
  // A batch of reads only does not begin a ledger batch: it would move the ledger's now
  // to the clock without logging anything, and a later submit_at between the last
  // logged instant and that now would be refused.
  bool reads_only =
      std::all_of(jobs.begin(), jobs.end(), [](const Job& j) { return static_cast<bool>(j.read); });
  bool has_reads =
      std::any_of(jobs.begin(), jobs.end(), [](const Job& j) { return static_cast<bool>(j.read); });
  std::int64_t now_ms = 0;
  if (!reads_only) {
    // A batch of imported history only does not move the ledger's now either: a backfill
    // with mode=apply may still start at the last logged instant after it.
    const bool imports_only = std::all_of(jobs.begin(), jobs.end(), [](const Job& j) {
      return j.read || std::all_of(j.ops.begin(), j.ops.end(), [](const Op& op) {
               return std::holds_alternative<ImportEventsOp>(op);
             });
    });
    std::int64_t batch_at_ms = jobs[0].at_ms ? *jobs[0].at_ms : clock_.now_ms();
    now_ms = imports_only ? ledger_.now_ms() : ledger_.begin_batch(batch_at_ms);
    std::vector<const ledger::Command*> logged;
    std::vector<const Op*> engine_ops;
    // The ops that number events after the batch's commands (imports, refused keys).
    std::vector<Op*> numbered_after;
    batch_events_.clear();
    if (batch_events_.capacity() == 0 && !spare_event_lists_.empty()) {
      batch_events_.swap(spare_event_lists_.back());
      spare_event_lists_.pop_back();
    }
    batch_commands_.clear();
    for (Job& job : jobs) {
      if (job.read) continue;
      for (Op& op : job.ops) {
        if (auto* c = std::get_if<ledger::Command>(&op)) batch_commands_.push_back(c);
      }
    }
    batch_events_.reserve(batch_commands_.size());
    // The next log segment could not be preallocated and the one being written is nearly
    // full (log_run): this batch's writes are refused.
    const bool refuse_writes = !log_room_.load(std::memory_order_acquire);
    std::size_t command_no = 0;
    std::size_t op_count = 0;
    p.jobs.reserve(jobs.size());
    p.replies.reserve(jobs.size());
    for (Job& job : jobs) {
      if (job.read) continue;
      std::vector<ledger::Reply>& replies = p.replies.emplace_back();
      replies.reserve(job.ops.size());
      for (Op& op : job.ops) {
        ++op_count;
        if (const auto* c = std::get_if<ledger::Command>(&op);
            c && std::holds_alternative<ledger::Sweep>(c->body)) {
          sweep_queued_ = false;
          sweep_applied_ = !refuse_writes;
        }
        if (refuse_writes) {
          // The log has no room for it (DESIGN.md section 3): refused before anything is
          // applied, and nothing of it is logged.
          replies.push_back(error_reply(ErrorCode::kStorageFailed, kNoLogRoomMessage));
          continue;
        }
        if (auto* c = std::get_if<ledger::Command>(&op)) {
          ledger_.prefetch(std::span<ledger::Command* const>(batch_commands_), command_no++);
          replies.push_back(apply_ledger(*c, logged));
          continue;
        }
        if (auto* k = std::get_if<CreateKeyOp>(&op)) {
          bool log = false;
          replies.push_back(apply_create_key(*k, now_ms, &log));
          if (log) {
            apply_engine_op(op);
            engine_ops.push_back(&op);
            if (k->refused_closed) numbered_after.push_back(&op);
          }
          continue;
        }
        // A closed account's cache and rate limits change no more (API.md: 409).
        if (std::optional<ledger::Reply> closed = refuse_if_closed(settings_account(op))) {
          replies.push_back(std::move(*closed));
          continue;
        }
        ledger::Reply r;
        r.logged = true;
        if (std::holds_alternative<RevokeKeyOp>(op)) {
          r.status = 204;
        } else if (std::holds_alternative<CachePutOp>(op)) {
          r.status = 204;
        } else if (std::holds_alternative<RateLimitsOp>(op)) {
          r.status = 200;
        } else if (std::holds_alternative<ImportEventsOp>(op)) {
          r.status = 200;
          numbered_after.push_back(&op);
        }
        apply_engine_op(op);
        engine_ops.push_back(&op);
        replies.push_back(std::move(r));
      }
    }

    for (const ledger::Command* c : cache_hits_to_touch_) touch_cache_hit(*c);
    cache_hits_to_touch_.clear();
    if (!logged.empty() || !engine_ops.empty()) {
      ByteWriter w(p.payload);
      w.u8(kEngineRecordVersion);
      std::string ledger_bytes;
      // The batch's now goes with its engine ops too (a ledger batch of no command) when
      // it moved the ledger's now: a replay moves it the same way, so the ledger's last
      // instant (the backfill check of an import, the manual clock's start) is the same
      // after a restart as before it.
      if (!logged.empty() || !imports_only) ledger::encode_batch(now_ms, logged, ledger_bytes);
      w.str(ledger_bytes);
      w.uv(engine_ops.size());
      for (const Op* op : engine_ops) encode_engine_op(w, *op);
      p.logged_ledger = !ledger_bytes.empty();
    }
    // Logged above, imported events move on with the batch's events.
    for (Op* op : numbered_after) number_after_commands(*op, batch_events_);
    // The ops are encoded; they are freed on the log thread, off this one.
    for (Job& job : jobs) {
      if (!job.read) p.jobs.push_back(std::move(job));
    }
    p.events.swap(batch_events_);
    p.now_ms = now_ms;
    stats_.batches.fetch_add(1, std::memory_order_relaxed);
    stats_.ops.fetch_add(op_count, std::memory_order_relaxed);
    if (Histogram* h = batch_ops_hist_.load(std::memory_order_acquire)) {
      h->observe(static_cast<double>(op_count));
    }
    if (Counter* n = charges_counter_.load(std::memory_order_acquire); n && batch_charges_ > 0) {
      n->inc(batch_charges_);
    }
    batch_charges_ = 0;
    hand_to_log(std::move(p));
  } else {
    now_ms = std::max(clock_.now_ms(), ledger_.now_ms());
  }
  if (!has_reads) return;
  // Reads see durable state only: every batch applied so far (this one included) first
  // reaches the disk.
  drain();
  // For a batch of reads only, now_ms is the clock's (the ledger's now did not move).
  const std::int64_t read_now_ms = std::max(now_ms, ledger_.now_ms());
  EngineState st{ledger_, cache_, events_, rate_limits_, read_now_ms};
  for (Job& job : jobs) {
    if (job.read) job.read(st);
  }
}

// ---------------------------------------------------------------------------------
// Snapshots and the event log.
//
// A snapshot's state bytes (store/snapshot.h frames and checksums them):
//   version         u8      kEngineSnapshotVersion; any other value is refused
//   last_logged_ms  varint zigzag
//   keys            count varint, then each key: key_id, role u8, account_id, label,
//                   hash_hex strings, created_at_ms varint zigzag
//   cache_generation_last  varint (version 2 on; version 1 numbers the entries it loads)
//   cache           count varint, then each entry, least recently used first: account_id,
//                   kind, cache_key, response_json, call_site strings, expires_at_ms,
//                   generation varint (version 2 on)
//   rate limits     count varint, then (account_id string, limits as in a batch record)
//   capacities      version 3 on: accounts_max, open_holds_per_account_max,
//                   live_grants_per_pool_max varints (ledger::Capacities in force; older
//                   snapshots take the flags)
//   ledger          every byte left: ledger/snapshot_codec.h's encoding
// The ledger's bytes go last so they are written in place, not copied.

namespace {

constexpr std::uint8_t kEngineSnapshotVersion = 3;
constexpr std::uint8_t kEngineSnapshotVersionCapacities = 3;
// Version 1 (no cache generations) and 2 (no capacities) still load.
constexpr std::uint8_t kEngineSnapshotVersionOldest = 1;
constexpr char kCacheKeySeparator = '\x1f';  // policy/cache.cc joins its key parts with it
// Replayed events held while the event log is still loading (Engine::hold_until_loaded).
constexpr std::size_t kReplayPendingEventsMax = 65536;

std::string snapshot_dir(const EngineOptions& o) {
  return o.data_dir + "/snapshots";
}
std::string events_dir(const EngineOptions& o) {
  return o.data_dir + "/events";
}

// What a snapshot child tells the server, in one pipe write when it is done.
constexpr std::size_t kSnapshotChildErrorBytesMax = 1024;  // the message, cut to fit
struct SnapshotChildReport {
  std::uint64_t bytes = 0;
  std::uint64_t rebuild_ns = 0;  // a replaying worker's: the snapshot and the log read
  std::uint64_t encode_ns = 0;
  std::uint64_t write_ns = 0;
  char error[kSnapshotChildErrorBytesMax] = {};  // NUL-terminated; empty when written
};
// A pipe write of at most PIPE_BUF bytes is never split or interleaved.
static_assert(sizeof(SnapshotChildReport) <= PIPE_BUF);
static_assert(sizeof(SnapshotChildReport) <= kForkReportBytesMax);

// Exit statuses of a snapshot child.
constexpr int kSnapshotChildExitOk = 0;
constexpr int kSnapshotChildExitWriteFailed = 3;  // the report names the error
constexpr int kSnapshotChildExitOrphaned = 4;     // the server was gone before the child began
constexpr int kSnapshotChildExitUnreported = 5;   // written, but the report did not reach the pipe

// Sends a snapshot child's or worker's report (with the error of `s`, if any) in one
// write of at most PIPE_BUF bytes into an empty pipe (whole, never blocking), and returns
// the exit status that goes with it.
int send_report(SnapshotChildReport& r, const Status& s, int report_fd) {
  if (!s.ok()) {
    const std::string& m = s.error().message;
    std::memcpy(r.error, m.data(), std::min(m.size(), sizeof(r.error) - 1));
  }
  const bool reported = ::write(report_fd, &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r));
  if (!s.ok()) return kSnapshotChildExitWriteFailed;
  return reported ? kSnapshotChildExitOk : kSnapshotChildExitUnreported;
}

// What the child's wait status and report say about its snapshot.
Status snapshot_child_outcome(pid_t pid, int wait_status, const SnapshotChildReport* report) {
  const std::string child = "snapshot child " + std::to_string(pid);
  if (WIFSIGNALED(wait_status)) {
    return Error(ErrorCode::kStorageFailed,
                 child + " was killed by signal " + std::to_string(WTERMSIG(wait_status)));
  }
  const int code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  if (code == kSnapshotChildExitOk && report != nullptr) return ok_status();
  if (code == kSnapshotChildExitWriteFailed && report != nullptr) {
    return Error(ErrorCode::kStorageFailed, std::string(report->error));
  }
  // An unreported snapshot may be on disk: harmless, the next one prunes or supersedes it
  // and the log is kept back to the last one known to be written.
  return Error(ErrorCode::kStorageFailed, child + " exited with status " + std::to_string(code) +
                                              (report == nullptr ? " without a report" : ""));
}

// A snapshot's buffer is reserved at once: grown by doubling to a gigabyte, it was copied
// and faulted in twice over (encoding 10 M charges took 6.3 s that way, 3.8 s reserved;
// docs/benchmarks.md, "Snapshot pause", session 12). The last snapshot's size and at most
// two bytes per log byte since, within a quarter of the memory: reserved but untouched
// pages cost nothing, and a short guess only grows as before.
std::uint64_t snapshot_reserve_bytes(std::uint64_t last_bytes, std::uint64_t log_bytes) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  const std::uint64_t cap = pages > 0 && page > 0 ? static_cast<std::uint64_t>(pages) *
                                                        static_cast<std::uint64_t>(page) / 4
                                                  : std::uint64_t{1} << 30;
  return std::min(cap, last_bytes + std::min(log_bytes, cap) * 2);
}

// The snapshot's event files first, so the log it lets go of is never needed to rebuild
// their events; then the snapshot itself (tmp, fsync, rename, directory fsync).
Status write_snapshot_files(const std::vector<std::string>& event_files,
                            const std::string& events_dir, const std::string& dir,
                            std::uint64_t lsn, std::string_view bytes) {
  Status s = store::EventLog::sync_files(event_files, events_dir);
  if (s.ok()) s = store::write_snapshot(dir, lsn, bytes);
  return s;
}

}  // namespace

Status Engine::cut_events_past_state() {
  // The recovered state is the truth (DESIGN.md section 3): events numbered from its next
  // sequence number on describe commands the log no longer holds (a torn tail cut off, or
  // damage cut by --repair). They go, reported; otherwise the next command would reuse
  // their numbers and ids.
  const std::uint64_t next = ledger_.next_seq();
  if (event_log_->last_seq() < next) return ok_status();
  const std::uint64_t last = event_log_->last_seq();
  auto cuts = event_log_->cut_from(next);
  if (!cuts.ok()) return cuts.error();
  const std::uint64_t dropped = events_.drop_from(next);
  std::erase_if(sink_backlog_, [next](const EventIndex::Entry& e) { return e.seq >= next; });
  for (const auto& cut : *cuts) {
    std::fprintf(stderr, "creditd: cut the event log at %s offset %llu (%s)\n", cut.file.c_str(),
                 static_cast<unsigned long long>(cut.offset), cut.reason.c_str());
  }
  std::fprintf(stderr,
               "creditd: the event log held events up to %llu but the recovered state ends "
               "before %llu: %llu indexed events past it were cut\n",
               static_cast<unsigned long long>(last), static_cast<unsigned long long>(next),
               static_cast<unsigned long long>(dropped));
  return ok_status();
}

Result<std::optional<std::uint64_t>> Engine::read_events_lost_through() const {
  const std::string path = events_dir(options_) + "/" + kEventsLostThroughFile;
  std::ifstream f(path);
  if (!f.is_open()) return std::optional<std::uint64_t>();
  std::string line;
  std::getline(f, line);
  std::uint64_t seq = 0;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), seq);
  if (line.empty() || ec != std::errc() || end != line.data() + line.size()) {
    Error e(ErrorCode::kStorageFailed, path + " must hold one sequence number");
    e.with_string("file", path);
    e.with("offset", "0");
    return e;
  }
  return std::optional<std::uint64_t>(seq);
}

Status Engine::write_events_lost_through(std::uint64_t seq) const {
  return store::write_file_durably(events_dir(options_) + "/" + kEventsLostThroughFile,
                                   std::to_string(seq) + "\n", 0644);
}

std::optional<std::string> Engine::events_missing(std::uint64_t log_last_seq) const {
  if (snapshot_seq_next_ <= 1 || log_last_seq + 1 >= snapshot_seq_next_) return std::nullopt;
  return "the event log ends at event " + std::to_string(log_last_seq) +
         " but the newest snapshot (LSN " + std::to_string(snapshot_lsn_) +
         ") counts events through " + std::to_string(snapshot_seq_next_ - 1) + ": events " +
         std::to_string(log_last_seq + 1) + ".." + std::to_string(snapshot_seq_next_ - 1) +
         " are missing (a segment under " + events_dir(options_) +
         " was deleted or cut after they were written), and the command log no longer holds "
         "them";
}

Status Engine::events_cover_snapshot(std::uint64_t log_last_seq) const {
  const std::optional<std::string> missing = events_missing(log_last_seq);
  if (!missing || options_.repair) return ok_status();
  Error e(ErrorCode::kStorageFailed, *missing);
  e.with_string("file", events_dir(options_));
  e.with("offset", "0");
  return e;
}

Status Engine::events_cover_snapshot_when_loaded() const {
  std::unique_lock lock(event_load_->mu);
  event_load_->cv.wait(lock, [&] { return event_load_->done; });
  // A failed load is the start's error, reported once the loader is joined.
  if (!event_load_->status.ok()) return ok_status();
  return events_cover_snapshot(event_load_->log_last_seq);
}

Status Engine::open_event_log() {
  store::EventLogOptions eo;
  eo.retain_days = options_.events_retain_days;
  eo.bytes_max = options_.events_bytes_max;
  eo.repair = options_.repair;
  // Each event is indexed by its place in the log: no re-encoding, no copy of its bytes,
  // no Event per event held, only its head decoded (its account). With a sink, the index
  // hands over the places in log order: the sink's backlog, fed after the start
  // (set_event_sink; past the index's memory bound neither holds more).
  ledger::EventHead head;
  events_.begin_load();
  auto log = store::EventLog::open(
      events_dir(options_), eo,
      [&](std::uint64_t seq, std::int64_t, std::string_view payload, store::EventPlace place) {
        if (Status s = ledger::decode_event_head(payload, head); !s.ok()) return s;
        if (head.seq != seq) return Status(Error(ErrorCode::kStorageFailed, "event seq mismatch"));
        events_.append(head.account_id, seq, place);
        if (event_load_ && seq > event_load_->seq_max.load(std::memory_order_relaxed)) {
          event_load_->seq_max.store(seq, std::memory_order_relaxed);
        }
        return ok_status();
      });
  if (!log.ok()) return log.error();
  events_.finish_load(sink_ ? &sink_backlog_ : nullptr);
  event_log_ = std::move(*log);
  events_.attach(event_log_.get());
  for (const auto& cut : event_log_->recovery().torn_tails) {
    std::fprintf(stderr, "creditd: cut a torn tail of the event log at %s offset %llu (%s)\n",
                 cut.file.c_str(), static_cast<unsigned long long>(cut.offset), cut.reason.c_str());
  }
  for (const auto& cut : event_log_->recovery().repaired) {
    std::fprintf(stderr, "creditd: --repair: cut the event log at %s offset %llu (%s)\n",
                 cut.file.c_str(), static_cast<unsigned long long>(cut.offset), cut.reason.c_str());
  }
  return ok_status();
}

Status Engine::load_snapshot(std::optional<std::uint64_t> log_first_lsn) {
  if (!log_first_lsn) {
    auto first_lsn = store::Wal::first_lsn_on_disk(options_.data_dir + "/wal");
    if (!first_lsn.ok()) return first_lsn.error();
    log_first_lsn = first_lsn->value_or(0);
  }
  store::SnapshotLoadOptions so;
  so.repair = options_.repair;
  so.log_first_lsn = *log_first_lsn;
  auto load = store::load_newest_snapshot(snapshot_dir(options_), so);
  if (!load.ok()) return load.error();
  for (const auto& d : load->skipped) {
    std::fprintf(stderr, "creditd: --repair: skipped damaged snapshot %s at offset %llu (%s)\n",
                 d.file.c_str(), static_cast<unsigned long long>(d.offset), d.reason.c_str());
    snapshots_skipped_.push_back(d.file);
  }
  if (!load->snapshot) return ok_status();
  Status s = decode_snapshot(load->snapshot->bytes);
  if (!s.ok()) {
    Error e = s.error();
    e.message = load->snapshot->file + ": " + e.message;
    e.with_string("file", load->snapshot->file);
    return e;
  }
  snapshot_lsn_ = load->snapshot->lsn;
  snapshot_seq_next_ = ledger_.next_seq();
  snapshot_written_lsn_ = snapshot_lsn_;
  snapshot_bytes_last_.store(load->snapshot->bytes.size());
  return ok_status();
}

void Engine::encode_snapshot(std::string& out) const {
  ByteWriter w(out);
  w.u8(kEngineSnapshotVersion);
  w.sv(last_logged_ms_.load());
  // No lock on keys_mu_: only the ledger thread writes the keys, and a forked child must
  // not take a lock another thread may have held at the fork.
  w.uv(keys_by_hash_.size());
  for (const auto& [hash, k] : keys_by_hash_) {
    w.str(k.key_id);
    w.u8(static_cast<std::uint8_t>(k.role));
    w.str(k.account_id);
    w.str(k.label);
    w.str(k.hash_hex);
    w.sv(k.created_at_ms);
  }
  w.uv(cache_generation_last_);
  w.uv(cache_.size());
  cache_.for_each([&](const std::string& key, const policy::CacheEntry& e) {
    const std::size_t a = key.find(kCacheKeySeparator);
    const std::size_t k = key.find(kCacheKeySeparator, a + 1);
    w.str(std::string_view(key).substr(0, a));
    w.str(std::string_view(key).substr(a + 1, k - a - 1));
    w.str(std::string_view(key).substr(k + 1));
    w.str(e.response_json);
    w.str(e.call_site);
    w.sv(e.expires_at_ms);
    w.uv(e.generation);
  });
  std::vector<const std::pair<const std::string, pricing::PlanRateLimits>*> limits;
  for (const auto& kv : rate_limits_) limits.push_back(&kv);
  std::sort(limits.begin(), limits.end(), [](auto* x, auto* y) { return x->first < y->first; });
  w.uv(limits.size());
  for (const auto* kv : limits) {
    w.str(kv->first);
    encode_limits(w, kv->second);
  }
  encode_capacities(w, ledger_.capacities());
  ledger::encode_ledger_snapshot(ledger_, out);
}

Status Engine::decode_snapshot(std::string_view bytes) {
  ByteReader r(bytes);
  const std::uint8_t version = r.u8();
  if (version < kEngineSnapshotVersionOldest || version > kEngineSnapshotVersion) {
    Error e(ErrorCode::kStorageFailed, "engine snapshot version " + std::to_string(version) +
                                           "; this build reads " +
                                           std::to_string(kEngineSnapshotVersion));
    e.with("offset", "0");
    return e;
  }
  last_logged_ms_.store(r.sv());
  std::uint64_t keys = r.uv();
  for (std::uint64_t i = 0; i < keys && r.ok(); ++i) {
    KeyInfo k;
    k.key_id = r.str();
    k.role = static_cast<Role>(r.u8());
    k.account_id = r.str();
    k.label = r.str();
    k.hash_hex = r.str();
    k.created_at_ms = r.sv();
    if (k.role > Role::kRead) r.fail();
    std::unique_lock lock(keys_mu_);
    keys_generation_.fetch_add(1, std::memory_order_release);
    keys_by_hash_[k.hash_hex] = std::move(k);
  }
  const bool has_generations = version >= 2;
  if (has_generations) cache_generation_last_ = r.uv();
  std::uint64_t entries = r.uv();
  for (std::uint64_t i = 0; i < entries && r.ok(); ++i) {
    std::string account = r.str();
    std::string kind = r.str();
    std::string key = r.str();
    policy::CacheEntry e;
    e.response_json = r.str();
    e.call_site = r.str();
    e.expires_at_ms = r.sv();
    e.generation = has_generations ? r.uv() : ++cache_generation_last_;
    cache_.put(account, kind, key, std::move(e));
  }
  std::uint64_t limits = r.uv();
  for (std::uint64_t i = 0; i < limits && r.ok(); ++i) {
    std::string account = r.str();
    rate_limits_[account] = decode_limits(r);
  }
  if (version >= kEngineSnapshotVersionCapacities) {
    if (const std::optional<ledger::Capacities> c = decode_capacities(r))
      ledger_.set_capacities(*c);
  }
  if (!r.ok()) {
    Error e(ErrorCode::kStorageFailed,
            "bad engine snapshot before byte " + std::to_string(r.pos()));
    e.with("offset", std::to_string(r.pos()));
    return e;
  }
  return ledger::decode_ledger_snapshot(bytes.substr(r.pos()), ledger_);
}

Status Engine::rebuild_events(std::vector<ledger::Event>& events) {
  if (event_load_) {
    std::unique_lock lock(event_load_->mu);
    if (!event_load_->done) {
      lock.unlock();
      return hold_until_loaded(events);
    }
    // Loaded: the loader is finished with event_log_, events_ and the sink.
    if (!event_load_->status.ok()) return event_load_->status;
    // Before the first event is appended (a gap would hide what is missing).
    if (Status s = events_cover_snapshot(event_load_->log_last_seq); !s.ok()) return s;
  }
  if (!replay_pending_.empty()) {
    std::vector<ledger::Event> pending = std::move(replay_pending_);
    replay_pending_.clear();
    if (Status s = log_missing_events(pending); !s.ok()) return s;
  }
  return log_missing_events(events);
}

namespace {
// The first of the events (in seq order) numbered above `seq`.
std::vector<ledger::Event>::iterator first_after(std::vector<ledger::Event>& events,
                                                 std::uint64_t seq) {
  return std::find_if(events.begin(), events.end(),
                      [&](const ledger::Event& e) { return e.seq > seq; });
}
}  // namespace

Status Engine::log_missing_events(std::vector<ledger::Event>& events) {
  // Events up to the event log's last one were loaded from it already.
  auto first_new = first_after(events, event_log_->last_seq());
  if (first_new == events.end()) return ok_status();  // kept whole for recycle_events
  events.erase(events.begin(), first_new);
  Status s = log_and_keep_events(events);
  if (!s.ok()) return s;
  if (sink_ && !catching_up()) sink_(events, false);
  return ok_status();
}

Status Engine::hold_until_loaded(std::vector<ledger::Event>& events) {
  // While the event log loads, a replayed event at or below the highest sequence number it
  // has read is in it (the log holds every event up to its last one); the others wait in
  // replay_pending_, bounded: past the bound the replay waits for the loader to catch up.
  const auto drop_loaded = [&] {
    replay_pending_.erase(
        replay_pending_.begin(),
        first_after(replay_pending_, event_load_->seq_max.load(std::memory_order_relaxed)));
  };
  const std::uint64_t loaded = event_load_->seq_max.load(std::memory_order_relaxed);
  for (ledger::Event& e : events) {
    if (e.seq > loaded) replay_pending_.push_back(std::move(e));
  }
  if (replay_pending_.size() <= kReplayPendingEventsMax) return ok_status();
  drop_loaded();
  std::unique_lock lock(event_load_->mu);
  while (replay_pending_.size() > kReplayPendingEventsMax && !event_load_->done) {
    event_load_->cv.wait_for(lock, std::chrono::milliseconds(1));
    drop_loaded();
  }
  // A loader that failed ends the start: no need to replay the rest of the log first.
  if (event_load_->done && !event_load_->status.ok()) return event_load_->status;
  return ok_status();  // once loaded, the next rebuild_events logs what is still pending
}

Status Engine::log_and_keep_events(const std::vector<ledger::Event>& events) {
  const bool behind = catching_up();
  for (const ledger::Event& e : events) {
    event_bytes_.clear();
    ledger::encode_event(e, event_bytes_);
    Result<store::EventPlace> place = event_log_->append(e.seq, e.at_ms, event_bytes_);
    if (!place.ok()) return place.error();
    // Past its memory bound the index takes no more; the event log still has them.
    events_.append(e.account_id, e.seq, *place);
    // Behind the sink's backlog, in the order they are logged (set_event_sink).
    if (behind) sink_backlog_.push_back(EventIndex::Entry{e.seq, *place});
  }
  return event_log_->flush();
}

void Engine::start_snapshot(bool wait) {
  if (snapshot_thread_.joinable()) return;  // one at a time; the next batch retries
  const auto t0 = std::chrono::steady_clock::now();
  // Every event of a batch the snapshot covers reaches the disk before the snapshot does,
  // so the log it lets go of is never needed to rebuild them.
  auto files = event_log_->take_unsynced();
  if (!files.ok()) {
    std::fprintf(stderr, "creditd: snapshot skipped: %s\n", files.error().message.c_str());
    return;
  }
  SnapshotJob job;
  job.lsn = wal_->next_lsn();
  job.event_files = std::move(*files);
  job.events_dir = event_log_->dir();
  job.dir = snapshot_dir(options_);
  job.log_first_lsn = wal_->first_lsn();
  job.log_bytes = wal_bytes_since_snapshot_;
  job.wal_bytes_total = wal_bytes_total_;
  job.reserve_bytes = snapshot_reserve_bytes(snapshot_bytes_last_.load(),
                                             wal_bytes_total_ - snapshot_wal_total_last_.load());
  wal_bytes_since_snapshot_ = 0;
  precollapse_started_ = false;
  snapshot_done_.store(false);
  const std::uint64_t lsn = job.lsn;
  // A clean stop's snapshot (wait) is encoded here: nothing is left to pause, and a
  // worker would replay the whole log since the last snapshot first. After a worker
  // failed (killed for want of memory, say), one snapshot is forked, so that the log is
  // still cut.
  SnapshotMode how = options_.snapshot_mode;
  if (how == SnapshotMode::kReplay && wait) how = SnapshotMode::kInline;
  if (how == SnapshotMode::kReplay && fork_after_failed_replay_) how = SnapshotMode::kFork;
  fork_after_failed_replay_ = false;
  bool started = false;
  if (how == SnapshotMode::kReplay) {
    Status s = replay_snapshot(job);
    started = s.ok();
    if (!started) {
      std::fprintf(stderr, "creditd: %s; forking the snapshot instead\n",
                   s.error().message.c_str());
      how = SnapshotMode::kFork;
    }
  }
  if (how == SnapshotMode::kFork) {
    stop_collapse();  // its madvise holds the memory map the fork copies
    Status s = fork_snapshot(job);
    started = s.ok();
    if (!started) {
      std::fprintf(stderr, "creditd: %s; encoding the snapshot on the ledger thread instead\n",
                   s.error().message.c_str());
    }
  }
  if (!started) encode_snapshot_here(std::move(job));
  record_snapshot_pause(elapsed_ns(t0));
  snapshot_lsn_ = lsn;
  if (wait) finish_snapshot(true);
}

void Engine::record_snapshot_pause(std::uint64_t pause_ns) {
  stats_.snapshot_pause_ns_last.store(pause_ns);
  if (pause_ns > stats_.snapshot_pause_ns_max.load()) stats_.snapshot_pause_ns_max.store(pause_ns);
}

Status Engine::fork_snapshot(const SnapshotJob& job) {
  CREDIT_ASSERT(!snapshot_thread_.joinable() && stats_.snapshot_child_pid.load() == 0);
  // The child reports through a pipe; non-blocking so that a child that died without a
  // report reads as nothing, never as a wait.
  int report[2];
  if (::pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) {
    return Error(
        ErrorCode::kStorageFailed,
        std::string("cannot create a pipe for the snapshot child: ") + std::strerror(errno));
  }
  // Initialised here, not for the first time in the child.
  (void)store::FileOps::real();
  const pid_t parent = ::getpid();
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  const int fork_errno = errno;
  if (pid == 0) {
    ::close(report[0]);
    run_snapshot_child(job, parent, report[1]);
  }
  const std::uint64_t fork_ns = elapsed_ns(t0);
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return Error(ErrorCode::kStorageFailed,
                 std::string("cannot fork a snapshot child: ") + std::strerror(fork_errno));
  }
  stats_.snapshot_child_pid.store(pid);
  snapshot_taken_by_ = SnapshotMode::kFork;
  snapshot_thread_ = std::thread([this, pid, report_fd = report[0], job, fork_ns] {
    const auto t0 = std::chrono::steady_clock::now();
    int wait_status = 0;
    pid_t waited = 0;
    do {
      waited = ::waitpid(pid, &wait_status, 0);
    } while (waited < 0 && errno == EINTR);
    const int wait_errno = errno;
    SnapshotChildReport r;
    const bool reported = ::read(report_fd, &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r));
    ::close(report_fd);
    stats_.snapshot_child_pid.store(0);
    Status s = ok_status();
    if (waited < 0) {
      s = Error(ErrorCode::kStorageFailed, "cannot wait for snapshot child " + std::to_string(pid) +
                                               ": " + std::strerror(wait_errno));
    } else {
      s = snapshot_child_outcome(pid, wait_status, reported ? &r : nullptr);
    }
    after_snapshot_written(s, job, r.bytes);
    if (reported) {
      stats_.snapshot_encode_ns_last.store(r.encode_ns);
      stats_.snapshot_write_ns_last.store(r.write_ns);
    }
    std::fprintf(stderr,
                 "creditd: snapshot at LSN %llu: %llu bytes, state forked in %.1f ms; child %d "
                 "encoded it in %.1f ms and wrote it in %.1f ms (%.1f ms after the fork)%s\n",
                 static_cast<unsigned long long>(job.lsn), static_cast<unsigned long long>(r.bytes),
                 fork_ns / 1e6, static_cast<int>(pid), r.encode_ns / 1e6, r.write_ns / 1e6,
                 elapsed_ns(t0) / 1e6, snapshot_error_ ? " (failed)" : "");
    mark_snapshot_done();
  });
  return ok_status();
}

// The child shares the server's memory as of the fork (copy-on-write) but none of its
// other threads: it uses no lock another thread could have held (glibc's malloc is
// fork-safe; the engine's mutexes, stdio and the rate limiter are not touched) and leaves
// with _exit, so no atexit handler runs and no inherited stdio buffer is flushed twice.
// It inherits every descriptor (the listening socket, the log segments): they are released
// when it exits, which PR_SET_PDEATHSIG makes no later than the server's end; the data
// dir's lock it closes at once.
void Engine::run_snapshot_child(const SnapshotJob& job, pid_t parent, int report_fd) const {
  // A server SIGKILLed before this line would leave the child to its own devices: the
  // check after arming catches that.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) {
    ::_exit(kSnapshotChildExitOrphaned);
  }
  // The server holds the data dir's lock: a restart right after it died must not wait
  // for this child to go.
  if (lock_fd_ >= 0) ::close(lock_fd_);
  // The fork was made on the ledger thread: below it, so the server's threads come first.
  run_in_background();
  SnapshotChildReport r;
  // An invariant broken while encoding aborts the child (its message is the one use of
  // stdio left here): the server reports the snapshot failed and keeps the log.
  const Status s = encode_and_write(job, r.bytes, r.encode_ns, r.write_ns);
  ::_exit(send_report(r, s, report_fd));
}

Status Engine::encode_and_write(const SnapshotJob& job, std::uint64_t& bytes_written,
                                std::uint64_t& encode_ns, std::uint64_t& write_ns) const {
  const auto t0 = std::chrono::steady_clock::now();
  std::string bytes;
  bytes.reserve(job.reserve_bytes);
  encode_snapshot(bytes);
  encode_ns = elapsed_ns(t0);
  bytes_written = bytes.size();
  if (options_.snapshot_child_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.snapshot_child_delay_ms));
  }
  const auto t1 = std::chrono::steady_clock::now();
  Status s = write_snapshot_files(job.event_files, job.events_dir, job.dir, job.lsn, bytes);
  write_ns = elapsed_ns(t1);
  return s;
}

std::string Engine::SnapshotJob::encode() const {
  std::string out;
  ByteWriter w(out);
  w.uv(lsn);
  w.uv(event_files.size());
  for (const std::string& f : event_files) w.str(f);
  w.str(events_dir);
  w.str(dir);
  w.uv(log_first_lsn);
  w.uv(log_bytes);
  w.uv(reserve_bytes);
  return out;
}

std::optional<Engine::SnapshotJob> Engine::SnapshotJob::decode(std::string_view bytes) {
  ByteReader r(bytes);
  SnapshotJob job;
  job.lsn = r.uv();
  const std::uint64_t files = r.uv();
  for (std::uint64_t i = 0; i < files && r.ok(); ++i) job.event_files.push_back(r.str());
  job.events_dir = r.str();
  job.dir = r.str();
  job.log_first_lsn = r.uv();
  job.log_bytes = r.uv();
  job.reserve_bytes = r.uv();
  if (!r.ok() || !r.done()) return std::nullopt;
  return job;
}

Status Engine::replay_snapshot(const SnapshotJob& job) {
  CREDIT_ASSERT(!snapshot_thread_.joinable() && stats_.snapshot_child_pid.load() == 0);
  if (!snapshot_workers_) {
    return Error(ErrorCode::kStorageFailed, "no helper process for snapshot workers");
  }
  snapshot_taken_by_ = SnapshotMode::kReplay;
  // Even the request waits on the snapshot thread: the helper runs at background priority
  // and may take milliseconds to answer on a busy machine.
  snapshot_thread_ = std::thread([this, job] {
    const auto t0 = std::chrono::steady_clock::now();
    Result<pid_t> begun = snapshot_workers_->begin(job.encode());
    if (!begun.ok()) {
      snapshot_helper_gone_ = true;  // finish_snapshot lets it go: the next ones fork
      after_snapshot_written(begun.error(), job, 0);
      mark_snapshot_done();
      return;
    }
    const pid_t pid = *begun;
    stats_.snapshot_child_pid.store(pid);
    Result<ForkServer::Outcome> outcome = snapshot_workers_->wait();
    stats_.snapshot_child_pid.store(0);
    SnapshotChildReport r;
    bool reported = false;
    Status s = ok_status();
    if (!outcome.ok()) {
      s = outcome.error();
    } else {
      reported = outcome->report.size() == sizeof(r);
      if (reported) std::memcpy(&r, outcome->report.data(), sizeof(r));
      s = snapshot_child_outcome(pid, outcome->wait_status, reported ? &r : nullptr);
    }
    after_snapshot_written(s, job, r.bytes);
    if (reported) {
      stats_.snapshot_rebuild_ns_last.store(r.rebuild_ns);
      stats_.snapshot_encode_ns_last.store(r.encode_ns);
      stats_.snapshot_write_ns_last.store(r.write_ns);
    }
    std::fprintf(stderr,
                 "creditd: snapshot at LSN %llu: %llu bytes; worker %d rebuilt the state from "
                 "the log in %.1f ms, encoded it in %.1f ms and wrote it in %.1f ms (%.1f ms in "
                 "all)%s\n",
                 static_cast<unsigned long long>(job.lsn), static_cast<unsigned long long>(r.bytes),
                 static_cast<int>(pid), r.rebuild_ns / 1e6, r.encode_ns / 1e6, r.write_ns / 1e6,
                 elapsed_ns(t0) / 1e6, snapshot_error_ ? " (failed)" : "");
    mark_snapshot_done();
  });
  return ok_status();
}

int Engine::run_snapshot_worker(std::string_view request, int report_fd) const {
  SnapshotChildReport r;
  const std::optional<SnapshotJob> job = SnapshotJob::decode(request);
  if (!job)
    return send_report(r, Error(ErrorCode::kStorageFailed, "bad snapshot request"), report_fd);
  // This process is a copy of the helper, itself a copy of the server as open() began: an
  // engine of its own, as a start makes one. Never destroyed (the worker ends in _exit).
  EngineOptions o = options_;
  o.snapshot_mode = SnapshotMode::kInline;
  auto* engine = new Engine(clock_, catalog_, cards_, std::move(o));
  const auto t0 = std::chrono::steady_clock::now();
  Status s = engine->rebuild_to(*job);
  r.rebuild_ns = elapsed_ns(t0);
  if (s.ok()) s = engine->encode_and_write(*job, r.bytes, r.encode_ns, r.write_ns);
  return send_report(r, s, report_fd);
}

Status Engine::rebuild_to(const SnapshotJob& job) {
  // The state grows the heap by gigabytes, as at a start (base/process_heap.h).
  const BulkHeapGrowth bulk_growth;
  ledger_.defer_growth(true);
  if (Status s = load_snapshot(job.log_first_lsn); !s.ok()) return s;
  if (snapshot_lsn_ > job.lsn) {
    return Error(ErrorCode::kStorageFailed, "the newest snapshot covers LSNs below " +
                                                std::to_string(snapshot_lsn_) +
                                                ", past the requested " + std::to_string(job.lsn));
  }
  replay_without_events_ = true;
  const std::string wal_dir = options_.data_dir + "/wal";
  Status read = ok_status();
  Status applied = replay_log(
      [&](const store::WalRecordFn& on_record) {
        read = store::Wal::read_range(wal_dir, snapshot_lsn_, job.lsn, on_record);
      },
      job.log_bytes, store::WalOptions{}.segment_bytes);
  if (!applied.ok()) return applied;
  if (!read.ok()) return read;
  ledger_.check_invariants();
  return ok_status();
}

void Engine::encode_snapshot_here(SnapshotJob&& job) {
  const auto t0 = std::chrono::steady_clock::now();
  auto bytes = std::make_shared<std::string>();
  bytes->reserve(job.reserve_bytes);
  encode_snapshot(*bytes);
  const std::uint64_t encode_ns = elapsed_ns(t0);
  stats_.snapshot_encode_ns_last.store(encode_ns);
  snapshot_taken_by_ = SnapshotMode::kInline;
  snapshot_thread_ = std::thread([this, job = std::move(job), bytes, encode_ns] {
    const auto t1 = std::chrono::steady_clock::now();
    Status s = write_snapshot_files(job.event_files, job.events_dir, job.dir, job.lsn, *bytes);
    const std::uint64_t write_ns = elapsed_ns(t1);
    after_snapshot_written(s, job, bytes->size());
    stats_.snapshot_write_ns_last.store(write_ns);
    std::fprintf(stderr,
                 "creditd: snapshot at LSN %llu: %zu bytes, state encoded in %.1f ms on the "
                 "ledger thread (not forked), written in %.1f ms%s\n",
                 static_cast<unsigned long long>(job.lsn), bytes->size(), encode_ns / 1e6,
                 write_ns / 1e6, snapshot_error_ ? " (failed)" : "");
    mark_snapshot_done();
  });
}

void Engine::after_snapshot_written(Status written, const SnapshotJob& job, std::uint64_t bytes) {
  const std::string& dir = job.dir;
  Status s = std::move(written);
  if (s.ok()) {
    // What the next snapshot's buffer is sized from (snapshot_reserve_bytes).
    snapshot_bytes_last_.store(bytes);
    snapshot_wal_total_last_.store(job.wal_bytes_total);
    auto pruned = store::prune_snapshots(dir);
    if (!pruned.ok()) s = pruned.error();
  }
  std::uint64_t retain = 0;
  if (s.ok()) {
    auto r = store::snapshot_retain_lsn(dir);
    if (r.ok())
      retain = *r;
    else
      s = r.error();
  }
  snapshot_error_ = s.ok() ? std::nullopt : std::optional<Error>(s.error());
  snapshot_retain_lsn_ = retain;
}

void Engine::mark_snapshot_done() {
  {
    std::lock_guard lock(mu_);  // the ledger thread's wait reads it under the lock
    snapshot_done_.store(true);
  }
  cv_.notify_all();
}

void Engine::finish_snapshot(bool wait) {
  if (!snapshot_thread_.joinable() || (!wait && !snapshot_done_.load())) return;
  snapshot_thread_.join();
  if (snapshot_helper_gone_) {
    snapshot_workers_.reset();
    stats_.snapshot_helper_pid.store(0);
    snapshot_helper_gone_ = false;
  }
  // The waiter reaped its child before it finished.
  CREDIT_ASSERT(stats_.snapshot_child_pid.load() == 0);
  if (snapshot_error_ && snapshot_cancelled_) {
    // Its log is covered by the stop's own snapshot instead.
    std::fprintf(stderr, "creditd: the snapshot in flight was cancelled by the stop\n");
    snapshot_cancelled_ = false;
    return;
  }
  if (snapshot_error_) {
    // The log still holds everything: nothing is lost, the log only grows until the
    // next snapshot succeeds.
    std::fprintf(stderr, "creditd: snapshot failed: %s\n", snapshot_error_->message.c_str());
    fork_after_failed_replay_ = snapshot_taken_by_ == SnapshotMode::kReplay;
    return;
  }
  snapshot_cancelled_ = false;  // it ended before the cancel
  snapshot_written_lsn_ = snapshot_lsn_;
  const auto t_finish = std::chrono::steady_clock::now();
  stats_.snapshots.fetch_add(1, std::memory_order_relaxed);
  if (snapshot_taken_by_ == SnapshotMode::kReplay) {
    stats_.snapshots_replayed.fetch_add(1, std::memory_order_relaxed);
  }
  if (snapshot_taken_by_ == SnapshotMode::kFork) {
    stats_.snapshots_forked.fetch_add(1, std::memory_order_relaxed);
    start_collapse();  // the child is gone: fold what its copy-on-write split
  }
  if (snapshot_retain_lsn_ > 0) {
    auto released = wal_->release_before(snapshot_retain_lsn_);
    if (!released.ok()) {
      std::fprintf(stderr, "creditd: log truncation failed: %s\n",
                   released.error().message.c_str());
    } else if (!released->empty()) {
      join_log_cleanup();
      log_cleanup_thread_ = std::thread([paths = std::move(*released), dir = options_.data_dir] {
        run_in_background();
        Status s = store::Wal::delete_segments(paths, dir + "/wal");
        if (!s.ok()) {
          std::fprintf(stderr, "creditd: log truncation failed: %s\n", s.error().message.c_str());
        }
      });
    }
  }
  if (auto r = retain_events(); !r.ok()) {
    std::fprintf(stderr, "creditd: event retention failed: %s\n", r.error().message.c_str());
  }
  raise_max(stats_.snapshot_finish_ns_max, elapsed_ns(t_finish));
}

}  // namespace credit::server
