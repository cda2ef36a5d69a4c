// src/server/engine.cc
// The batch loop: take what is queued, apply it op by op, log the batch, sync, answer.
#include "server/engine.h"

#include <chrono>
#include <cstdio>

#include "base/assert.h"
#include "base/bytes.h"
#include "base/error_json.h"
#include "base/json_writer.h"
#include "ledger/codec.h"
#include "time/time.h"

namespace credit::server {
namespace {

// A batch record of the log:
//   version u8 (kEngineRecordVersion)
//   ledger  string: ledger/codec.h's encoding of the ledger commands of the batch
//   count   varint, then count engine ops: tag u8 ('K' key, 'X' revoke, 'C' cache put,
//           'T' rate limits) and their fields.
constexpr std::uint8_t kEngineRecordVersion = 1;

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

void encode_engine_op(ByteWriter& w, const Op& op) {
  if (auto* k = std::get_if<CreateKeyOp>(&op)) {
    w.u8('K');
    w.str(k->key.key_id);
    w.u8(static_cast<std::uint8_t>(k->key.role));
    w.str(k->key.account_id);
    w.str(k->key.label);
    w.str(k->key.hash_hex);
    w.sv(k->key.created_at_ms);
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
  }
}

std::optional<Op> decode_engine_op(ByteReader& r) {
  switch (r.u8()) {
    case 'K': {
      CreateKeyOp k;
      k.key.key_id = r.str();
      k.key.role = static_cast<Role>(r.u8());
      k.key.account_id = r.str();
      k.key.label = r.str();
      k.key.hash_hex = r.str();
      k.key.created_at_ms = r.sv();
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
  }
  return std::nullopt;
}

// The cached response replaces the `"response":null` that the ledger rendered.
void splice_response(std::string& body, std::string_view response_json) {
  constexpr std::string_view kNull = "\"response\":null";
  auto at = body.rfind(kNull);
  if (at == std::string::npos) return;
  body.replace(at, kNull.size(), std::string("\"response\":").append(response_json));
}

bool rate_limited_kind(pricing::Kind k) { return pricing::kind_is_rate_limited(k); }

}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kAdmin: return "admin";
    case Role::kService: return "service";
    case Role::kMeter: return "meter";
    case Role::kRead: return "read";
  }
  return "read";
}

Engine::Engine(const Clock& clock, pricing::Catalog catalog, std::vector<pricing::RateCard> cards,
               EngineOptions options)
    : clock_(clock),
      catalog_(catalog),
      cards_(std::move(cards)),
      options_(std::move(options)),
      ledger_(std::move(catalog), options_.ledger),
      cache_(options_.cache_bytes_max) {
  CREDIT_ASSERT(!cards_.empty());
}

Engine::~Engine() { stop(); }

const pricing::RateCard* Engine::rate_card(std::int64_t version) const {
  for (const auto& c : cards_) {
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
  std::sort(out.begin(), out.end(),
            [](const KeyInfo& a, const KeyInfo& b) { return a.created_at_ms < b.created_at_ms || (a.created_at_ms == b.created_at_ms && a.key_id < b.key_id); });
  return out;
}

void Engine::keep_events(std::vector<ledger::Event>& events) {
  for (auto& e : events) {
    if (events_.size() >= kEventsInMemoryMax) break;
    events_by_account_[e.account_id].push_back(static_cast<std::uint32_t>(events_.size()));
    events_.push_back(std::move(e));
  }
}

void Engine::apply_engine_op(const Op& op) {
  if (auto* k = std::get_if<CreateKeyOp>(&op)) {
    std::unique_lock lock(keys_mu_);
    keys_by_hash_[k->key.hash_hex] = k->key;
  } else if (auto* x = std::get_if<RevokeKeyOp>(&op)) {
    std::unique_lock lock(keys_mu_);
    std::erase_if(keys_by_hash_, [&](const auto& kv) {
      return kv.second.key_id == x->key_id && kv.second.account_id == x->account_id;
    });
  } else if (auto* c = std::get_if<CachePutOp>(&op)) {
    cache_.put(c->account_id, c->kind, c->cache_key, c->entry);
  } else if (auto* t = std::get_if<RateLimitsOp>(&op)) {
    rate_limits_[t->account_id] = t->limits;
  }
}

Status Engine::replay_record(std::string_view payload) {
  ByteReader r(payload);
  if (r.u8() != kEngineRecordVersion) {
    return Error(ErrorCode::kStorageFailed, "unknown engine record version");
  }
  std::string ledger_bytes = r.str();
  if (!r.ok()) return Error(ErrorCode::kStorageFailed, "bad engine record");
  if (!ledger_bytes.empty()) {
    auto batch = ledger::decode_batch(ledger_bytes);
    if (!batch.ok()) return batch.error();
    ledger_.begin_batch(batch->now_ms);
    std::vector<ledger::Event> events;
    for (auto& c : batch->commands) {
      ledger::Reply reply = ledger_.apply(c, events);
      // A logged command was logged because it changed the state; replaying it must
      // change it the same way.
      CREDIT_ASSERT(reply.logged);
    }
    last_logged_ms_.store(batch->now_ms);
    if (sink_) sink_(events);
    keep_events(events);
  }
  std::uint64_t n = r.uv();
  for (std::uint64_t i = 0; i < n && r.ok(); ++i) {
    std::optional<Op> op = decode_engine_op(r);
    if (!op) return Error(ErrorCode::kStorageFailed, "bad engine op");
    apply_engine_op(*op);
  }
  if (!r.ok() || !r.done()) return Error(ErrorCode::kStorageFailed, "bad engine record");
  return ok_status();
}

Status Engine::open() {
  store::WalOptions wo;
  wo.repair = options_.repair;
  wo.fsync = options_.fsync;
  auto wal = store::Wal::open(options_.data_dir + "/wal", wo,
                              [&](std::uint64_t, std::string_view payload) { return replay_record(payload); });
  if (!wal.ok()) return wal.error();
  wal_ = std::move(wal.value());
  if (const auto& torn = wal_->recovery().torn_tail) {
    std::fprintf(stderr, "creditd: cut a torn tail of the log at %s offset %llu (%s)\n",
                 torn->file.c_str(), static_cast<unsigned long long>(torn->offset),
                 torn->reason.c_str());
  }
  ledger_.check_invariants();
  return ok_status();
}

void Engine::start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Engine::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (wal_ && !wal_->failed()) (void)wal_->close();
  wal_.reset();
}

bool Engine::submit(std::vector<Op>&& ops, Done done) {
  std::size_t n = ops.size();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queued_ops_ + n > options_.queue_ops_max) return false;
    queued_ops_ += n;
    queue_.push_back(Job{std::move(ops), std::move(done), nullptr});
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

void Engine::run() {
  std::vector<Job> jobs;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      std::size_t ops = 0;
      while (!queue_.empty() && (jobs.empty() || ops + queue_.front().ops.size() <= options_.batch_ops_max)) {
        ops += queue_.front().ops.size();
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_ops_ -= ops;
    }
    apply_batch(jobs);
    jobs.clear();
  }
}

ledger::Reply Engine::apply_ledger(ledger::Command& c, std::vector<const ledger::Command*>& logged) {
  // API.md's order: 404, replay or 422, validation (the ledger's gate), then the cache
  // and the rate limit (here), then the business rules (the ledger).
  std::string_view kind_name;
  std::string cached_response;
  bool hit = false;
  auto policy = [&](auto& cmd) {
    if (c.precheck_error != ErrorCode::kOk) return;
    const ledger::Account* a = ledger_.find(cmd.account_id);
    if (a == nullptr || a->closed) return;
    if (!cmd.cache_key.empty()) {
      kind_name = pricing::kind_name(cmd.kind);
      if (const policy::CacheEntry* e = cache_.get(cmd.account_id, kind_name, cmd.cache_key, ledger_.now_ms())) {
        cmd.cache_hit = true;
        cmd.saved = cmd.amount;
        cached_response = e->response_json;
        hit = true;
        return;
      }
    }
    if (!rate_limited_kind(cmd.kind)) return;
    pricing::PlanRateLimits limits = a->plan.rate_limits;
    if (auto it = rate_limits_.find(cmd.account_id); it != rate_limits_.end()) limits = it->second;
    policy::RateDecision d = limiter_.take(cmd.account_id, cmd.user_id, limits, ledger_.now_ms());
    if (!d.allowed) {
      c.precheck_error = ErrorCode::kRateLimited;
      c.retry_after_ms = d.retry_after_ms;
    }
  };
  if (std::optional<ledger::Reply> gate = ledger_.gate(c)) return std::move(*gate);
  if (auto* ch = std::get_if<ledger::Charge>(&c.body)) policy(*ch);
  if (auto* h = std::get_if<ledger::Hold>(&c.body)) policy(*h);
  if (auto* cap = std::get_if<ledger::Capture>(&c.body)) price_capture(c, *cap);
  ledger::Reply reply = ledger_.apply(c, batch_events_);
  if (reply.logged) logged.push_back(&c);
  if (hit && !reply.replayed) {
    splice_response(reply.body, cached_response);
    stats_.cache_hits.fetch_add(1, std::memory_order_relaxed);
  }
  return reply;
}

// A capture's usage is priced with the rate card version of its hold.
void Engine::price_capture(ledger::Command& c, ledger::Capture& cap) {
  if (c.precheck_error != ErrorCode::kOk || !cap.usage || cap.amount) return;
  const ledger::Account* a = ledger_.find(cap.account_id);
  const ledger::HoldRecord& h = a->holds.at(cap.hold_id);  // gate() checked both
  const pricing::RateCard* card = rate_card(h.rate_card_version);
  if (card == nullptr) card = &cards_.back();
  auto price = card->price(h.kind, *cap.usage);
  if (!price.ok()) {
    c.precheck_error = price.error().code;
    c.precheck_message = price.error().message;
    std::string_view p = price.error().detail("param");
    if (p.size() >= 2) c.precheck_param = std::string(p.substr(1, p.size() - 2));
    return;
  }
  cap.amount = price->cost;
}

void Engine::apply_batch(std::vector<Job>& jobs) {
  std::int64_t now_ms = ledger_.begin_batch(clock_.now_ms());
  std::vector<const ledger::Command*> logged;
  std::vector<const Op*> engine_ops;
  std::vector<std::vector<ledger::Reply>> replies(jobs.size());
  batch_events_.clear();
  std::size_t op_count = 0;
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    Job& job = jobs[j];
    if (job.read) continue;
    replies[j].reserve(job.ops.size());
    for (Op& op : job.ops) {
      ++op_count;
      if (auto* c = std::get_if<ledger::Command>(&op)) {
        replies[j].push_back(apply_ledger(*c, logged));
        continue;
      }
      ledger::Reply r;
      r.logged = true;
      if (auto* k = std::get_if<CreateKeyOp>(&op)) {
        r.status = 201;
        json::Writer w(r.body);
        w.begin_object().key("key").string(k->plaintext).key("key_id").string(k->key.key_id);
        w.key("role").string(role_name(k->key.role)).end_object();
      } else if (std::holds_alternative<RevokeKeyOp>(op)) {
        r.status = 204;
      } else if (std::holds_alternative<CachePutOp>(op)) {
        r.status = 204;
      } else if (auto* t = std::get_if<RateLimitsOp>(&op)) {
        (void)t;
        r.status = 200;
      }
      apply_engine_op(op);
      engine_ops.push_back(&op);
      replies[j].push_back(std::move(r));
    }
  }
  bool durable = true;
  if (!logged.empty() || !engine_ops.empty()) {
    std::string payload;
    ByteWriter w(payload);
    w.u8(kEngineRecordVersion);
    std::string ledger_bytes;
    if (!logged.empty()) ledger::encode_batch(now_ms, logged, ledger_bytes);
    w.str(ledger_bytes);
    w.uv(engine_ops.size());
    for (const Op* op : engine_ops) encode_engine_op(w, *op);
    Status s = wal_->reserve(payload.size());
    if (s.ok()) {
      auto lsn = wal_->append(payload);
      s = lsn.ok() ? ok_status() : Status(lsn.error());
    }
    if (s.ok()) {
      auto t0 = std::chrono::steady_clock::now();
      s = wal_->sync();  // with --no-fsync (benchmarks) it writes without fdatasync
      stats_.fsync_ns_total.fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
    }
    if (!s.ok()) {
      durable = false;
      failed_.store(true);
      std::fprintf(stderr, "creditd: storage failed: %s; stopping\n", s.error().message.c_str());
    } else {
      if (!logged.empty()) last_logged_ms_.store(now_ms);
    }
  }
  if (durable) {
    if (sink_ && !batch_events_.empty()) sink_(batch_events_);
    keep_events(batch_events_);
  }
  stats_.batches.fetch_add(1, std::memory_order_relaxed);
  stats_.ops.fetch_add(op_count, std::memory_order_relaxed);
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    Job& job = jobs[j];
    if (job.read) continue;
    if (!durable) {
      for (auto& r : replies[j]) {
        if (r.logged) r = error_reply(ErrorCode::kStorageFailed, "outcome unknown: retry with the same key");
      }
    }
    job.done(std::move(replies[j]));
  }
  if (!durable) {
    // The state in memory is ahead of the disk: recovery from disk is the truth.
    std::fflush(stderr);
    std::_Exit(3);
  }
  EngineState st{ledger_, cache_, events_, events_by_account_, rate_limits_, ledger_.now_ms()};
  for (Job& job : jobs) {
    if (job.read) job.read(st);
  }
}

}  // namespace credit::server
