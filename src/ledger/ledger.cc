// src/ledger/ledger.cc
// The rules of DESIGN.md section 1, applied one command at a time.
#include "ledger/ledger.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>

#include "base/assert.h"
#include "base/error_json.h"
#include "base/json_writer.h"
#include "ledger/render.h"
#include "time/cycle.h"
#include "time/time.h"

namespace credit::ledger {
namespace {

// Sets out to "c_<seq>" (a charge's id): written backwards into a buffer and assigned
// once, without a temporary string (to_chars and two appends cost three times as much).
void assign_charge_id(std::string& out, std::uint64_t seq) {
  char text[2 + 20];
  char* const end = text + sizeof text;
  char* at = end;
  do {
    *--at = static_cast<char>('0' + seq % 10);
    seq /= 10;
  } while (seq != 0);
  *--at = '_';
  *--at = 'c';
  out.assign(at, static_cast<std::size_t>(end - at));
}

PoolState make_pool(const std::string& name) {
  PoolState p;
  p.name = name;
  return p;
}

int bucket_rank(BucketKind k) {
  return static_cast<int>(k);
}

// Spending order: earliest expiry (allowance: its cycle end), then allowance, rollover,
// pack, adjustment, then grant (bucket) id.
bool spends_before(const Bucket& x, const Bucket& y) {
  if (x.expires_at_ms != y.expires_at_ms) return x.expires_at_ms < y.expires_at_ms;
  if (x.kind != y.kind) return bucket_rank(x.kind) < bucket_rank(y.kind);
  return x.bucket_id < y.bucket_id;
}

// A charge id that names one of the account's charges forgotten at a reset.
bool charge_forgotten(const Account& a, std::string_view charge_id) {
  std::optional<std::uint64_t> seq = ChargeTable::seq_of(charge_id);
  return seq.has_value() && a.forgotten_charges.contains(*seq);
}

// Buckets a pool's spending order keeps on the stack: a pool holds its allowance, a
// rollover and a few grants, so a charge sorts them without a heap allocation; a pool
// with more live buckets (up to kLiveGrantsPerPoolMaxDefault grants) uses the heap.
constexpr std::size_t kSpendOrderInlineBuckets = 32;

// The indexes of a pool's live buckets in spending order.
class SpendOrder {
 public:
  explicit SpendOrder(const PoolState& pool) {
    const std::size_t live = static_cast<std::size_t>(std::count_if(
        pool.buckets.begin(), pool.buckets.end(), [](const Bucket& b) { return !b.ended; }));
    if (live > kSpendOrderInlineBuckets) heap_.resize(live);
    std::uint32_t* out = data();
    for (std::size_t i = 0; i < pool.buckets.size(); ++i) {
      if (!pool.buckets[i].ended) out[size_++] = static_cast<std::uint32_t>(i);
    }
    CREDIT_ASSERT(size_ == live);
    std::sort(out, out + size_, [&](std::uint32_t a, std::uint32_t b) {
      return spends_before(pool.buckets[a], pool.buckets[b]);
    });
  }
  const std::uint32_t* begin() const { return data(); }
  const std::uint32_t* end() const { return data() + size_; }

 private:
  std::uint32_t* data() { return heap_.empty() ? inline_.data() : heap_.data(); }
  const std::uint32_t* data() const { return heap_.empty() ? inline_.data() : heap_.data(); }

  std::array<std::uint32_t, kSpendOrderInlineBuckets> inline_;
  std::vector<std::uint32_t> heap_;
  std::size_t size_ = 0;
};

Millicredits available_of(const PoolState& pool) {
  Millicredits sum;
  for (const auto& b : pool.buckets) {
    if (!b.ended) sum += b.free();
  }
  return sum;
}

Bucket* bucket_by_id(PoolState& pool, std::uint32_t id) {
  for (auto& b : pool.buckets) {
    if (b.bucket_id == id) return &b;
  }
  return nullptr;
}

// Appends a draw of `credits` from bucket b to a drawn_from list, its name ("allowance" or
// "grant:<id>") written in place: a recycled list's strings keep their capacity.
void append_drawn(std::vector<DrawnFrom>& drawn, const Bucket& b, Millicredits credits) {
  DrawnFrom& d = drawn.emplace_back();
  if (b.kind == BucketKind::kAllowance) {
    d.source.assign("allowance");
  } else {
    d.source.assign("grant:").append(b.grant_id);
  }
  d.credits = credits;
}

void check_bucket(const Bucket& b) {
  CREDIT_ASSERT(b.spent >= Millicredits::zero());
  CREDIT_ASSERT(b.held >= Millicredits::zero());
  CREDIT_ASSERT(b.free() >= Millicredits::zero());
  CREDIT_ASSERT(!b.ended || b.free().is_zero());
}

// Rolls the daily-cap day forward to the day of now_ms.
void touch_day(PoolState& pool, std::int64_t now_ms) {
  std::int64_t day = day_start_ms(now_ms);
  if (day != pool.day_start_ms) {
    pool.day_start_ms = day;
    pool.spent_today = Millicredits::zero();
    pool.held_today = Millicredits::zero();
  }
}

Millicredits cap_room(const PoolState& pool, const std::optional<Millicredits>& cap,
                      std::int64_t now_ms) {
  if (!cap) return Millicredits::from_mc(INT64_MAX / 4);
  bool today = day_start_ms(now_ms) == pool.day_start_ms;
  Millicredits used = today ? pool.spent_today + pool.held_today : Millicredits::zero();
  return max(Millicredits::zero(), *cap - used);
}

// DESIGN "Daily caps": a charge or hold of `cost` is allowed when spent today + held by
// holds placed today + its cost <= cap (always, without a cap). cap_room cannot decide
// it: clamped at 0, it lets a cost of 0 through when today is already over the cap.
// A sum beyond the int64 range is beyond any cap.
bool cap_allows(const PoolState& pool, const std::optional<Millicredits>& cap, std::int64_t now_ms,
                Millicredits cost) {
  if (!cap) return true;
  const bool today = day_start_ms(now_ms) == pool.day_start_ms;
  std::optional<Millicredits> total = cost;
  if (today) {
    total = total->checked_add(pool.spent_today);
    if (total) total = total->checked_add(pool.held_today);
  }
  return total && *total <= *cap;
}

// A charge's or hold's reply is about 200 bytes of JSON: rendered into this much room
// it takes one allocation instead of one per doubling.
constexpr std::size_t kChargeReplyBytesReserve = 256;

void release_reservation(Bucket& b, Millicredits credits) {
  b.held -= credits;
  if (b.ended) b.vanished += credits;
}

// The first live bucket in spending order that has free credits (nullptr: none), found
// without sorting the pool.
Bucket* first_with_free(PoolState& pool) {
  Bucket* first = nullptr;
  for (Bucket& b : pool.buckets) {
    if (b.ended || b.free() <= Millicredits::zero()) continue;
    if (first == nullptr || spends_before(b, *first)) first = &b;
  }
  return first;
}

// Moves `amount` of free credits, in spending order, into one tally of the buckets
// (`spent` for a charge, `held` for a hold, `taken` for a negative adjustment) and lists
// where they came from. The caller has checked that the pool holds them.
template <typename ReservedList>
void draw_free(PoolState& pool, Millicredits amount, Millicredits Bucket::*into,
               ReservedList* reserved, std::vector<DrawnFrom>& drawn) {
  const auto take_from = [&](Bucket& b, Millicredits take) {
    b.*into += take;
    if (reserved != nullptr) reserved->push_back({b.bucket_id, take});
    append_drawn(drawn, b, take);
  };
  // Nearly always the first bucket that has credits covers it all: one draw, the same as
  // the walk below would make (every bucket before it in the order has nothing free).
  if (Bucket* b = first_with_free(pool);
      b != nullptr && amount > Millicredits::zero() && b->free() >= amount) {
    take_from(*b, amount);
    return;
  }
  const SpendOrder order(pool);
  // The buckets drawn from, counted first so that each list is allocated once.
  std::size_t draws = 0;
  for (Millicredits rest = amount; std::size_t i : order) {
    if (rest.is_zero()) break;
    Millicredits take = min(pool.buckets[i].free(), rest);
    rest -= take;
    draws += take.is_zero() ? 0 : 1;
  }
  if (reserved != nullptr) reserved->reserve(reserved->size() + draws);
  drawn.reserve(drawn.size() + draws);
  Millicredits left = amount;
  for (std::size_t i : order) {
    if (left.is_zero()) break;
    Bucket& b = pool.buckets[i];
    Millicredits take = min(b.free(), left);
    if (take.is_zero()) continue;
    left -= take;
    take_from(b, take);
  }
  CREDIT_ASSERT(left.is_zero());
}

// Gives a hold's reserved credits back to their buckets (what returns to an ended
// bucket vanishes) and closes the hold in `state`.
void release_hold(Account& a, HoldRecord& h, HoldState state) {
  CREDIT_ASSERT(h.state == HoldState::kOpen && state != HoldState::kOpen);
  PoolState& pool = a.pools[h.pool_index];
  for (const auto& r : h.reserved) release_reservation(*bucket_by_id(pool, r.bucket_id), r.credits);
  if (h.day_start_ms == pool.day_start_ms) pool.held_today -= h.amount;
  h.state = state;
  --a.open_holds;
}

// The fields every event about a hold carries.
void describe_hold(Event& e, const HoldRecord& h, const PoolState& pool) {
  e.hold_id = h.hold_id;
  e.user_id = h.user_id;
  e.kind = h.kind;
  e.pool = pool.name;
  e.credits = h.amount;
  e.available_after = available_of(pool);
}

// What a refused charge or hold asked for, priced as it was: a `rejected` event says how
// the request was priced and keeps its usage and metadata for the analytics.
template <class ChargeOrHold>
void describe_refused(const ChargeOrHold& cmd, Event& e) {
  e.user_id = cmd.user_id;
  e.kind = cmd.kind;
  e.pool = cmd.pool;
  e.credits = cmd.amount;
  e.priced_by = cmd.priced_by_usage ? "usage" : "amount";
  e.rate_card_version = cmd.rate_card_version;
  e.usage = cmd.usage;
  e.metadata = cmd.metadata;
  e.cache_key = cmd.cache_key;
}

}  // namespace

std::string_view grant_source_name(GrantSource s) {
  switch (s) {
    case GrantSource::kRollover:
      return "rollover";
    case GrantSource::kPack:
      return "pack";
    case GrantSource::kAdjustment:
      return "adjustment";
  }
  return "adjustment";
}

std::string_view hold_state_name(HoldState s) {
  switch (s) {
    case HoldState::kOpen:
      return "open";
    case HoldState::kCaptured:
      return "captured";
    case HoldState::kVoided:
      return "voided";
    case HoldState::kExpired:
      return "expired";
  }
  return "open";
}

PoolState* Account::pool(std::string_view name) {
  for (auto& p : pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}
const PoolState* Account::pool(std::string_view name) const {
  for (const auto& p : pools) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Ledger::Ledger(pricing::Catalog catalog, LedgerOptions options)
    : catalog_(std::move(catalog)),
      options_(options),
      idempotency_(options.idempotency_keys_max, options.background),
      replies_(options.background) {}

std::int64_t Ledger::begin_batch(std::int64_t now_ms) {
  now_ms_ = std::max(now_ms_, now_ms);
  expire_keys(now_ms_);
  return now_ms_;
}

DeferredStore* Ledger::deferred(DeferredStore::Kind kind) {
  if (deferred_ == nullptr) return nullptr;
  DeferredStore& d = deferred_->push();
  d.kind = kind;
  return &d;
}

void Ledger::expire_keys(std::int64_t now_ms) {
  if (DeferredStore* d = deferred(DeferredStore::Kind::kExpire)) {
    d->ms = now_ms;
    return;
  }
  replies_.release_below(idempotency_.expire(now_ms));
}

std::string& Ledger::defer_store(DeferredStore::Kind kind, const IdempotencyRef& idem, int status,
                                 std::int64_t expires_at_ms) {
  DeferredStore* d = deferred(kind);
  CREDIT_ASSERT(d != nullptr);
  d->status = status;
  d->ms = expires_at_ms;
  d->key_hash = idem.scope_key_hash;
  d->request_hash = idem.request_hash;
  return deferred_->bytes();
}

void Ledger::reserve_idempotency_keys(std::size_t keys_more) {
  if (DeferredStore* d = deferred(DeferredStore::Kind::kReserve)) {
    d->keys = keys_more;
    return;
  }
  idempotency_.reserve(idempotency_.size() + keys_more);
}

Status Ledger::apply_deferred_stores(const DeferredStores& stores) {
  // The slots of the stores this far ahead are loaded first: the table is far larger than
  // the caches.
  constexpr std::size_t kPrefetchStoresAhead = 8;
  const std::span<const DeferredStore> items = stores.items();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i + kPrefetchStoresAhead < items.size()) {
      const DeferredStore& ahead = items[i + kPrefetchStoresAhead];
      if (ahead.kind == DeferredStore::Kind::kStoreBody ||
          ahead.kind == DeferredStore::Kind::kStorePacked) {
        idempotency_.prefetch(ahead.key_hash);
      }
    }
    const DeferredStore& d = items[i];
    switch (d.kind) {
      case DeferredStore::Kind::kExpire:
        replies_.release_below(idempotency_.expire(d.ms));
        break;
      case DeferredStore::Kind::kReserve:
        idempotency_.reserve(idempotency_.size() + d.keys);
        break;
      case DeferredStore::Kind::kStoreBody:
      case DeferredStore::Kind::kStorePacked: {
        // The lookup the applying thread skipped: the key was not live when stored.
        if (idempotency_.find(d.key_hash, d.ms - kIdempotencyTtlMs) != nullptr) {
          return Error(ErrorCode::kStorageFailed,
                       "the log stores a reply under an idempotency key that was live");
        }
        if (idempotency_.full()) {
          return Error(ErrorCode::kStorageFailed,
                       "the log stores more live idempotency keys than the table holds (" +
                           std::to_string(idempotency_.keys_max()) +
                           ", --idempotency-keys-max): start with a larger capacity, at least "
                           "what the last run had");
        }
        const std::uint64_t no =
            d.kind == DeferredStore::Kind::kStorePacked
                ? replies_.push_packed(d.status, stores.bytes_of(i), d.request_hash)
                : replies_.push(d.status, stores.bytes_of(i), d.request_hash);
        idempotency_.insert(d.key_hash, no, d.ms);
        break;
      }
    }
  }
  return ok_status();
}

const Account* Ledger::find(std::string_view account_id) const {
  return lookup(account_id);
}

Account* Ledger::lookup(std::string_view account_id) const {
  return account_index_.find(account_id);
}

std::uint64_t Ledger::next_instance() {
  static std::atomic<std::uint64_t> made{0};
  return made.fetch_add(1, std::memory_order_relaxed) + 1;
}

void Ledger::claim_pointers(const Command& c) const {
  if (c.pointers_ledger == instance_) return;
  c.found_account = nullptr;
  c.peeked_account = nullptr;
  c.pointers_ledger = instance_;
}

Account* Ledger::lookup(const Command& c) const {
  claim_pointers(c);
  if (c.found_account != nullptr) return static_cast<Account*>(c.found_account);
  const std::string* id = account_of(c);
  CREDIT_ASSERT(id != nullptr);
  // Accounts are never removed: once found, the pointer holds for the command's life.
  Account* found = account_index_.find(*id, account_hash(c, *id));
  c.found_account = found;
  return found;
}

const Account* Ledger::peek_account(const Command& c) const {
  claim_pointers(c);
  if (c.peeked_account != nullptr) return static_cast<const Account*>(c.peeked_account);
  const std::string* id = account_of(c);
  const Account* a = id == nullptr ? nullptr : account_index_.peek(account_hash(c, *id));
  c.peeked_account = a;
  return a;
}

std::uint64_t Ledger::account_hash(const Command& c, const std::string& account_id) {
  if (c.account_hash == 0) c.account_hash = AccountIndex::hash_of(account_id);
  return c.account_hash;
}

void Ledger::hash_ids(const Command& c) {
  if (const std::string* id = account_of(c)) account_hash(c, *id);
  if (const auto* ch = std::get_if<Charge>(&c.body)) user_hash(c, ch->user_id);
}

std::uint64_t Ledger::user_hash(const Command& c, const std::string& user_id) {
  if (c.user_hash == 0) c.user_hash = AccountIndex::hash_of(user_id);
  return c.user_hash;
}

void Ledger::index_account(const std::string& account_id, Account* account) {
  // Accounts are closed, never removed: the index only grows.
  CREDIT_ASSERT(account->account_id == account_id);
  bool inserted = account_index_.insert(account);
  CREDIT_ASSERT(inserted);
  CREDIT_ASSERT(account_index_.size() == accounts_.size());
  queue_due(*account, next_due_ms(*account));
}

std::vector<std::string> Ledger::list_accounts(std::string_view after, std::size_t limit) const {
  std::vector<std::string> ids;
  auto it = after.empty() ? accounts_.begin() : accounts_.upper_bound(std::string(after));
  for (; it != accounts_.end() && ids.size() < limit; ++it) ids.push_back(it->first);
  return ids;
}

Event& Ledger::push_event(std::vector<Event>& events, EventType type, const Account& a) {
  Event* e = nullptr;
  if (next_seq_ <= events_durable_through_) {
    // Already in the event log (a replay): filled and dropped. Its drawn_from list goes
    // back to the spares the next charge takes its list from.
    e = &quiet_event_;
    if (e->drawn_from.capacity() > 0 && spare_drawn_.size() < kRecycledEventPartsMax) {
      e->drawn_from.clear();
      spare_drawn_.push_back(std::move(e->drawn_from));
    }
    reset_keeping_capacity(*e);
  } else {
    e = &events.emplace_back();
  }
  e->seq = next_seq_++;
  e->at_ms = now_ms_;
  e->account_id = a.account_id;
  e->type = type;
  if (type == EventType::kRejected) rejected_pushed_ = true;
  return *e;
}

void Ledger::number_external(Event event, std::vector<Event>& events) {
  event.seq = next_seq_++;
  events.push_back(std::move(event));
}

std::string Ledger::new_id(char prefix) {
  // Ids are made from the sequence number of the event that creates the object, so a
  // replay of the log makes the same ids.
  std::string id(1, prefix);
  id += '_';
  id += std::to_string(next_seq_);
  return id;
}

// ---------------------------------------------------------------------------------
// Resets and expiries.

std::int64_t Ledger::next_due_ms(const Account& a) {
  // A closed account stays as it was closed: no reset, rollover or grant expiry renews it
  // afterwards, lazily or by the sweep (its events are kept; mutations get 409).
  if (a.closed) return INT64_MAX;
  std::int64_t t = a.cycle_end_ms;
  for (const auto& [id, h] : a.holds) {
    if (h.state == HoldState::kOpen) t = std::min(t, h.expires_at_ms);
  }
  for (const auto& p : a.pools) {
    for (const auto& b : p.buckets) {
      if (!b.ended && b.kind != BucketKind::kAllowance) t = std::min(t, b.expires_at_ms);
    }
  }
  return t;
}

bool Ledger::due_later(const DueEntry& x, const DueEntry& y) {
  if (x.due_ms != y.due_ms) return x.due_ms > y.due_ms;
  return x.account->account_id > y.account->account_id;
}

void Ledger::queue_due(Account& a, std::int64_t due_ms) {
  if (due_ms >= a.due_queued_ms) return;
  a.due_queued_ms = due_ms;
  due_queue_.push_back(DueEntry{due_ms, &a});
  std::push_heap(due_queue_.begin(), due_queue_.end(), due_later);
}

void Ledger::queue_due_after(const Command& c, Account& a) {
  if (const auto* h = std::get_if<Hold>(&c.body)) {
    queue_due(a, std::min(a.cycle_end_ms, now_ms_ + h->ttl_ms));
  } else if (std::holds_alternative<AddGrant>(c.body) ||
             std::holds_alternative<ChangePlan>(c.body)) {
    queue_due(a, next_due_ms(a));
  } else {
    queue_due(a, a.cycle_end_ms);
  }
}

std::int64_t Ledger::next_due_ms() {
  while (!due_queue_.empty()) {
    const DueEntry top = due_queue_.front();
    Account& a = *top.account;
    if (top.due_ms == a.due_queued_ms) {
      const std::int64_t due_ms = next_due_ms(a);
      if (due_ms == top.due_ms) return due_ms;
      a.due_queued_ms = INT64_MAX;
    }
    // Stale (superseded, or the account was advanced since): drop it, and queue the
    // account at its true instant.
    std::pop_heap(due_queue_.begin(), due_queue_.end(), due_later);
    due_queue_.pop_back();
    if (a.due_queued_ms == INT64_MAX) queue_due(a, next_due_ms(a));
  }
  return kNeverMs;
}

std::size_t Ledger::advance(Account& a, std::int64_t now_ms, std::vector<Event>* events,
                            std::size_t instants_max) const {
  std::size_t instants = 0;
  std::uint64_t local_seq = 0;  // projections number nothing
  auto emit = [&](EventType type, std::int64_t at_ms) -> Event* {
    if (events == nullptr) return nullptr;
    Event& e = events->emplace_back();
    e.seq = 0;  // numbered by the caller (apply) right after
    e.at_ms = at_ms;
    e.account_id = a.account_id;
    e.type = type;
    ++local_seq;
    return &e;
  };
  for (;; ++instants) {
    const std::int64_t t = next_due_ms(a);
    if (t > now_ms || instants == instants_max) break;
    // 1. hold expiries at t
    for (auto& [id, h] : a.holds) {
      if (h.state != HoldState::kOpen || h.expires_at_ms != t) continue;
      release_hold(a, h, HoldState::kExpired);
      if (Event* e = emit(EventType::kExpire, t)) {
        e->object = "hold";
        describe_hold(*e, h, a.pools[h.pool_index]);
      }
    }
    // 2. grant expiries at t
    for (auto& pool : a.pools) {
      for (auto& b : pool.buckets) {
        if (b.ended || b.kind == BucketKind::kAllowance || b.expires_at_ms != t) continue;
        Millicredits lost = b.free();
        b.vanished += lost;
        b.ended = true;
        if (Event* e = emit(EventType::kExpire, t)) {
          e->object = "grant";
          e->grant_id = b.grant_id;
          e->pool = pool.name;
          e->credits = lost;
          e->available_after = available_of(pool);
        }
      }
    }
    if (t != a.cycle_end_ms) continue;
    // 3. the boundary: rollover, pending plan, new allowance.
    const pricing::Plan old_plan = a.plan;
    std::vector<Millicredits> rollover(a.pools.size());
    std::vector<Millicredits> lost(a.pools.size());
    for (std::size_t i = 0; i < a.pools.size(); ++i) {
      PoolState& pool = a.pools[i];
      for (auto& b : pool.buckets) {
        if (b.ended || b.kind != BucketKind::kAllowance) continue;
        Millicredits free = b.free();
        if (old_plan.rollover_percent > 0) {
          rollover[i] = Millicredits::from_mc(free.mc() * old_plan.rollover_percent / 100);
        }
        lost[i] = free;
        b.vanished += free;
        b.ended = true;
      }
    }
    if (a.pending_plan) {
      if (const pricing::Plan* p = catalog_.find(*a.pending_plan)) a.plan = *p;
      a.pending_plan.reset();
    } else if (const pricing::Plan* p = catalog_.find(a.plan.id)) {
      a.plan = *p;  // a changed plan applies from the next cycle
    }
    ++a.cycle_index;
    ++a.cycle_serial;
    CycleBounds c = cycle_by_index(a.anchor_ms, a.cycle_index);
    CREDIT_ASSERT(c.start_ms == t);
    a.cycle_start_ms = c.start_ms;
    a.cycle_end_ms = c.end_ms;
    // Drop ended buckets that carry nothing, and grants spent in full that hold nothing:
    // nothing can come back to them (a refund is only of this cycle's charges, which never
    // drew from them), so they are no longer live and stop counting against
    // live_grants_per_pool_max. Start the cycle's tallies.
    for (auto& pool : a.pools) {
      std::erase_if(pool.buckets, [](const Bucket& b) {
        if (!b.held.is_zero()) return false;
        return b.ended || (b.kind != BucketKind::kAllowance && b.free().is_zero());
      });
      for (auto& b : pool.buckets) {
        b.base_spent = b.spent;
        b.base_vanished = b.vanished;
        b.base_taken = b.taken;
      }
      pool.refunded_this_cycle = Millicredits::zero();
    }
    for (const auto& pa : a.plan.pools) {
      if (a.pool(pa.pool) == nullptr) a.pools.push_back(make_pool(pa.pool));
    }
    for (std::size_t i = 0; i < a.pools.size(); ++i) {
      PoolState& pool = a.pools[i];
      const pricing::PoolAllowance* pa = a.plan.pool(pool.name);
      Bucket allowance;
      allowance.bucket_id = a.next_bucket_id++;
      allowance.kind = BucketKind::kAllowance;
      allowance.granted = pa ? pa->allowance : Millicredits::zero();
      allowance.credits_signed = allowance.granted;
      allowance.expires_at_ms = a.cycle_end_ms;
      allowance.created_at_ms = t;
      pool.buckets.push_back(allowance);
      Millicredits roll = i < rollover.size() ? rollover[i] : Millicredits::zero();
      if (roll > Millicredits::zero()) {
        Millicredits cap = old_plan.rollover_cap ? *old_plan.rollover_cap : allowance.granted;
        roll = min(roll, cap);
      }
      if (roll > Millicredits::zero()) {
        Bucket g;
        g.bucket_id = a.next_bucket_id++;
        g.kind = BucketKind::kRollover;
        g.grant_id = "g_rollover_" + std::to_string(a.cycle_serial + 1) + "_" + pool.name;
        g.granted = roll;
        g.credits_signed = roll;
        g.expires_at_ms = a.cycle_end_ms;
        g.created_at_ms = t;
        g.reason = "rollover";
        pool.buckets.push_back(g);
        if (Event* e = emit(EventType::kGrant, t)) {
          e->pool = pool.name;
          e->credits = roll;
          e->grant_id = g.grant_id;
          e->reason = "rollover";
          e->object = "rollover";
          e->available_after = available_of(pool);
        }
      }
      if (Event* e = emit(EventType::kReset, t)) {
        e->pool = pool.name;
        e->credits = i < lost.size() ? lost[i] : Millicredits::zero();
        e->plan = a.plan.id;
        e->previous_plan = old_plan.id != a.plan.id ? old_plan.id : std::string();
        e->available_after = available_of(pool);
      }
    }
    // A pending plan applied here is a change of its own (DESIGN.md: every change is an
    // event), as the request that scheduled it was: after the pools' resets.
    if (old_plan.id != a.plan.id) {
      if (Event* e = emit(EventType::kPlanChange, t)) {
        e->plan = a.plan.id;
        e->previous_plan = old_plan.id;
        e->object = "pending_applied";
        if (!a.pools.empty()) e->available_after = available_of(a.pools.front());
      }
    }
    // Closed holds of cycles before the previous one are forgotten (bounded memory).
    std::int64_t keep_from_ms = cycle_by_index(a.anchor_ms, a.cycle_index - 1).start_ms;
    std::erase_if(a.holds, [&](const auto& kv) {
      return kv.second.state != HoldState::kOpen && kv.second.placed_at_ms < keep_from_ms;
    });
    // Charges older than the previous cycle can no longer be refunded or shown; their
    // numbers are kept (bounded) so a refund of one is 409 charge_not_refundable.
    std::vector<std::uint64_t> forgotten;
    a.charges.erase_if([&](std::uint64_t seq, const ChargeRecord& ch) {
      const bool drop = ch.cycle_index() < a.cycle_serial - 1;
      if (drop) forgotten.push_back(seq);  // erase_if walks in sequence order
      return drop;
    });
    if (!forgotten.empty()) a.forgotten_charges.add(forgotten);
  }
  (void)local_seq;
  return instants;
}

const ChargeRecord* Ledger::charge_at(const Account& account, std::string_view charge_id,
                                      std::int64_t at_ms) const {
  const ChargeRecord* rec = account.charges.find_record(charge_id);
  if (rec == nullptr || at_ms < account.cycle_end_ms) return rec;
  // Boundaries passed since the last write: the first write applies them and forgets the
  // records older than the cycle before the new one (advance), so the read does too.
  const Account p = projected(account, at_ms);
  if (p.cycle_serial != account.cycle_serial && rec->cycle_index() < p.cycle_serial - 1) {
    return nullptr;
  }
  return rec;
}

Account Ledger::projected(const Account& account, std::int64_t at_ms) const {
  // Balances depend on the pools and the open holds only: the charge records and the
  // closed holds of a busy account (thousands a cycle) are not copied, so a read costs
  // the same whatever the account's history.
  Account copy;
  copy.account_id = account.account_id;
  copy.closed = account.closed;
  copy.plan = account.plan;
  copy.pending_plan = account.pending_plan;
  copy.signup_at_ms = account.signup_at_ms;
  copy.anchor_ms = account.anchor_ms;
  copy.cycle_index = account.cycle_index;
  copy.cycle_serial = account.cycle_serial;
  copy.cycle_start_ms = account.cycle_start_ms;
  copy.cycle_end_ms = account.cycle_end_ms;
  copy.next_bucket_id = account.next_bucket_id;
  copy.pools = account.pools;
  for (const auto& [id, h] : account.holds) {
    if (h.state == HoldState::kOpen) copy.holds.emplace(id, h);
  }
  copy.open_holds = account.open_holds;
  copy.created_at_ms = account.created_at_ms;
  advance(copy, at_ms, nullptr);
  for (auto& p : copy.pools) touch_day(p, at_ms);
  return copy;
}

PoolView Ledger::pool_view(const Account& a, const PoolState& pool, std::int64_t at_ms) {
  PoolView v;
  v.name = pool.name;
  for (const auto& b : pool.buckets) {
    bool current_allowance = b.kind == BucketKind::kAllowance && !b.ended;
    if (current_allowance) {
      v.allowance += b.cycle_base() - b.cycle_vanished();
    } else {
      v.extra += b.cycle_base() - b.cycle_vanished();
    }
    v.extra -= b.cycle_taken();
    v.used += b.cycle_spent();
    v.held += b.held;
    if (!b.ended) v.available += b.free();
  }
  const pricing::PoolAllowance* pa = a.plan.pool(pool.name);
  v.daily_cap = pa ? pa->daily_cap : std::nullopt;
  bool today = day_start_ms(at_ms) == pool.day_start_ms;
  v.used_today = today ? pool.spent_today : Millicredits::zero();
  v.available_now = v.available;
  if (v.daily_cap) v.available_now = min(v.available, cap_room(pool, v.daily_cap, at_ms));
  // allowance + extra = used + held + available, at every instant.
  CREDIT_ASSERT(v.allowance + v.extra == v.used + v.held + v.available);
  CREDIT_ASSERT(v.available >= Millicredits::zero());
  return v;
}

Result<AccountView> Ledger::view(std::string_view account_id, std::int64_t at_ms) const {
  const Account* a = find(account_id);
  if (a == nullptr) return Error(ErrorCode::kAccountNotFound, "no such account");
  at_ms = std::max(at_ms, now_ms_);
  Account p = projected(*a, at_ms);
  AccountView v;
  v.account_id = p.account_id;
  v.plan = p.plan.id;
  v.closed = p.closed;
  v.cycle_start_ms = p.cycle_start_ms;
  v.cycle_end_ms = p.cycle_end_ms;
  v.pending_plan = p.pending_plan;
  for (const auto& pool : p.pools) v.pools.push_back(pool_view(p, pool, at_ms));
  return v;
}

void Ledger::render_account(const AccountView& v, std::string& out) const {
  render_account_view(v, out);
}

void Ledger::check_invariants() const {
  for (const auto& [id, a] : accounts_) {
    for (const auto& pool : a->pools) {
      for (const auto& b : pool.buckets) check_bucket(b);
      (void)pool_view(*a, pool, now_ms_);
    }
    std::size_t open = 0;
    for (const auto& [hid, h] : a->holds) open += h.state == HoldState::kOpen ? 1 : 0;
    CREDIT_ASSERT(open == a->open_holds);
    // The sweep never comes late to an account.
    CREDIT_ASSERT(a->due_queued_ms <= next_due_ms(*a));
  }
}

// ---------------------------------------------------------------------------------
// Errors and idempotency.

const pricing::Plan* Ledger::cheapest_upgrade(const Account& a, std::string_view pool,
                                              Millicredits need) const {
  const pricing::Plan* best = nullptr;
  for (const auto& p : catalog_.plans) {
    if (p.price_usd_cents <= a.plan.price_usd_cents) continue;
    const pricing::PoolAllowance* pa = p.pool(pool);
    if (pa == nullptr || pa->allowance < need) continue;
    if (best == nullptr || p.price_usd_cents < best->price_usd_cents) best = &p;
  }
  return best;
}

Error Ledger::insufficient(const Account& a, const PoolState& pool, Millicredits required,
                           bool by_cap) const {
  PoolView v = pool_view(a, pool, now_ms_);
  Error e(ErrorCode::kInsufficientCredits,
          by_cap ? "the daily cap does not cover this operation"
                 : "the account's credits do not cover this operation");
  e.with("required", format_credits(required));
  e.with("available", format_credits(by_cap ? v.available_now : v.available));
  e.with_string("refused_by", by_cap ? "daily_cap" : "pool");
  e.with_string("pool", pool.name);
  if (by_cap) {
    e.with_string("resets_at", format_rfc3339(pool.day_start_ms + kMsPerDay));
  } else {
    e.with_string("cycle_end", format_rfc3339(a.cycle_end_ms));
    Millicredits need = v.used + v.held + required;
    const pricing::Plan* up = cheapest_upgrade(a, pool.name, need);
    if (up != nullptr) {
      e.with_string("upgrade_to", up->id);
    } else {
      e.with("upgrade_to", "null");
    }
  }
  return e;
}

namespace {
Reply error_reply(const Error& e) {
  Reply r;
  r.code = e.code;
  r.status = error_code_http_status(e.code);
  append_error_json(r.body, e);
  return r;
}
}  // namespace

Error account_closed_error() {
  return Error(ErrorCode::kAccountClosed, "the account is closed");
}

// The 400 of a command that failed validation (not stored: API.md), if it did.
std::optional<Reply> Ledger::precheck_reply(const Command& c) {
  if (c.precheck_error == ErrorCode::kOk || c.precheck_error == ErrorCode::kRateLimited) {
    return std::nullopt;
  }
  Error e(c.precheck_error, c.precheck_message);
  if (!c.precheck_param.empty()) e.with_string("param", c.precheck_param);
  return error_reply(e);
}

// Looks up the command's key. Returns the replayed or refused reply, or sets *proceed.
Reply Ledger::stored_or_new(Command& c, bool* proceed) {
  *proceed = false;
  // Deferred stores (a replay): no key is looked up here (defer_stores).
  const bool keyed = c.idem.has_key && deferred_ == nullptr;
  if (keyed) {
    if (std::optional<Reply> live = replay_if_live(c.idem)) return std::move(*live);
  }
  if (std::optional<Reply> invalid = precheck_reply(c)) return std::move(*invalid);
  if (keyed && idempotency_.full()) {
    return error_reply(
        Error(ErrorCode::kIdempotencyCapacity, "the idempotency table is full; retry later"));
  }
  *proceed = true;
  return {};
}

std::optional<Reply> Ledger::replay_if_live(const IdempotencyRef& idem) const {
  const IdempotencyTable::Entry* e = idempotency_.find(idem.scope_key_hash, now_ms_);
  if (e == nullptr) return std::nullopt;
  if (replies_.request_hash(e->reply_no) != idem.request_hash) {
    return error_reply(Error(ErrorCode::kIdempotencyKeyReused,
                             "this idempotency key was used with another request"));
  }
  Reply r;
  r.status = replies_.at(e->reply_no, r.body);
  r.replayed = true;
  return r;
}

std::optional<Reply> Ledger::gate_external(const IdempotencyRef& idem) const {
  CREDIT_ASSERT(idem.has_key);
  if (std::optional<Reply> live = replay_if_live(idem)) return live;
  if (idempotency_.full()) {
    return error_reply(
        Error(ErrorCode::kIdempotencyCapacity, "the idempotency table is full; retry later"));
  }
  return std::nullopt;
}

void Ledger::store_external(const IdempotencyRef& idem, int status, std::string_view body,
                            std::int64_t expires_at_ms) {
  CREDIT_ASSERT(idem.has_key);
  expire_keys(expires_at_ms - kIdempotencyTtlMs);
  if (deferred_ != nullptr) {
    defer_store(DeferredStore::Kind::kStoreBody, idem, status, expires_at_ms).append(body);
    return;
  }
  // gate_external checked the key live (or the log says it was stored): it is new here.
  CREDIT_ASSERT(idempotency_.find(idem.scope_key_hash, expires_at_ms - kIdempotencyTtlMs) ==
                    nullptr &&
                !idempotency_.full());
  std::uint64_t no = replies_.push(status, body, idem.request_hash);
  idempotency_.insert(idem.scope_key_hash, no, expires_at_ms);
}

// Stores the reply under the command's key and marks it logged. Only the answers the
// ledger produced are stored (2xx, 402, 403 purchase_not_allowed, 409); a 400 leaves the
// key free.
Reply Ledger::finish(Command& c, Reply reply) {
  store(c, reply);
  return reply;
}

void Ledger::answer_charge(Command& c, Reply& reply, const ChargeReplyParts& parts) {
  reply.body.clear();
  switch (reply_form_) {
    case ReplyForm::kRendered:
      reply.body.reserve(kChargeReplyBytesReserve);
      render_charge(parts.charge_id, parts.cost, parts.pool, parts.available_after, *parts.drawn,
                    false, Millicredits::zero(), parts.hold_id, reply.body);
      break;
    case ReplyForm::kPacked:
      // What the key stores, too (store() copies these bytes instead of packing again).
      pack_charge_reply(parts, reply.body);
      reply.packed = true;
      break;
    case ReplyForm::kNone:
      break;
  }
  store(c, reply, &parts);
}

void render_reply(Reply& reply) {
  if (!reply.packed) return;
  std::string body;
  body.reserve(kChargeReplyBytesReserve);
  unpack_reply(reply.body, body);
  reply.body.swap(body);
  reply.packed = false;
}

void Ledger::store(Command& c, Reply& reply, const ChargeReplyParts* charge) {
  reply.logged = true;
  bool stored = reply.status < 400 || reply.status == 402 || reply.status == 409 ||
                reply.code == ErrorCode::kPurchaseNotAllowed;
  if (c.idem.has_key && stored && deferred_ != nullptr) {
    const std::int64_t expires_at_ms = now_ms_ + kIdempotencyTtlMs;
    if (reply.packed) {
      defer_store(DeferredStore::Kind::kStorePacked, c.idem, reply.status, expires_at_ms)
          .append(reply.body);
    } else if (charge != nullptr) {
      pack_charge_reply(*charge, defer_store(DeferredStore::Kind::kStorePacked, c.idem,
                                             reply.status, expires_at_ms));
    } else {
      defer_store(DeferredStore::Kind::kStoreBody, c.idem, reply.status, expires_at_ms)
          .append(reply.body);
    }
    return;
  }
  if (c.idem.has_key && stored) {
    const Hash128& request = c.idem.request_hash;
    std::uint64_t no = reply.packed        ? replies_.push_packed(reply.status, reply.body, request)
                       : charge != nullptr ? replies_.push_charge(reply.status, *charge, request)
                                           : replies_.push(reply.status, reply.body, request);
    idempotency_.insert(c.idem.scope_key_hash, no, now_ms_ + kIdempotencyTtlMs);
  }
}

std::vector<DrawnFrom> Ledger::take_drawn_list() {
  if (spare_drawn_.empty()) return {};
  std::vector<DrawnFrom> list = std::move(spare_drawn_.back());
  spare_drawn_.pop_back();
  return list;  // emptied by recycle_events
}

// Copies into a recycled Metadata when there is one, so its strings keep their capacity.
void Ledger::copy_metadata(const Metadata& from, Metadata& to) {
  if (from.empty()) return;
  if (!spare_metadata_.empty()) {
    to = std::move(spare_metadata_.back());
    spare_metadata_.pop_back();
  }
  to = from;
}

void Ledger::recycle_events(std::vector<Event>& events) {
  for (Event& e : events) {
    if (e.drawn_from.capacity() > 0 && spare_drawn_.size() < kRecycledEventPartsMax) {
      e.drawn_from.clear();  // here, while the event is still in the cache
      spare_drawn_.push_back(std::move(e.drawn_from));
    }
    if (!e.metadata.empty() && spare_metadata_.size() < kRecycledEventPartsMax) {
      spare_metadata_.push_back(std::move(e.metadata));
    }
  }
  events.clear();
}

namespace {
// How many commands ahead of the one applied next each prefetch stage runs: far enough
// for a DRAM miss (~100-200 ns) to land before the next stage or the apply reads it.
constexpr std::size_t kPrefetchCommandAhead = 16;     // the command's own bytes
constexpr std::size_t kPrefetchSlotsAhead = 12;       // idempotency and account index slots
constexpr std::size_t kPrefetchAccountAhead = 8;      // the Account
constexpr std::size_t kPrefetchPoolsAhead = 6;        // its pools' array
constexpr std::size_t kPrefetchAccountDataAhead = 4;  // its pools' buckets, plan and charge table
constexpr std::size_t kPrefetchRecordAhead = 2;       // the charge record's place, the user
constexpr std::size_t kCacheLineBytes = 64;

void prefetch_bytes(const void* at, std::size_t bytes) {
  const char* p = static_cast<const char*>(at);
  for (std::size_t off = 0; off < bytes; off += kCacheLineBytes) __builtin_prefetch(p + off);
}
}  // namespace

template <class At>
void Ledger::prefetch_stages(std::size_t n, std::size_t next, At at) const {
  if (next + kPrefetchCommandAhead < n) {
    prefetch_bytes(&at(next + kPrefetchCommandAhead), sizeof(Command));
  }
  if (next + kPrefetchSlotsAhead < n) {
    const Command& c = at(next + kPrefetchSlotsAhead);
    if (c.idem.has_key && deferred_ == nullptr) idempotency_.prefetch(c.idem.scope_key_hash);
    if (const std::string* id = account_of(c)) account_index_.prefetch(account_hash(c, *id));
  }
  if (next + kPrefetchAccountAhead < n) {
    if (const Account* a = peek_account(at(next + kPrefetchAccountAhead))) {
      prefetch_bytes(a, sizeof(Account));
    }
  }
  if (next + kPrefetchPoolsAhead < n) {
    // The pools live in an array of their own, read by the next stage.
    if (const Account* a = peek_account(at(next + kPrefetchPoolsAhead))) {
      prefetch_bytes(a->pools.data(), a->pools.size() * sizeof(PoolState));
    }
  }
  if (next + kPrefetchAccountDataAhead < n) {
    const Command& c = at(next + kPrefetchAccountDataAhead);
    if (const Account* a = peek_account(c)) {
      for (const PoolState& p : a->pools) prefetch_bytes(p.buckets.data(), sizeof(Bucket));
      prefetch_bytes(a->plan.pools.data(), sizeof(pricing::PoolAllowance));
      if (const auto* ch = std::get_if<Charge>(&c.body)) {
        a->charges.prefetch_tables(user_hash(c, ch->user_id));
      }
    }
  }
  if (next + kPrefetchRecordAhead < n) {
    const Command& c = at(next + kPrefetchRecordAhead);
    const auto* ch = std::get_if<Charge>(&c.body);
    const Account* a = ch == nullptr ? nullptr : peek_account(c);
    if (a != nullptr) {
      a->charges.prefetch_append(user_hash(c, ch->user_id));
      // The id's bytes, which interning the user compares (inline in the command when
      // short, but on a line of their own, written by the thread that decoded it).
      __builtin_prefetch(ch->user_id.data());
    }
  }
}

void Ledger::prefetch(std::span<const Command> batch, std::size_t next) const {
  prefetch_stages(batch.size(), next, [&](std::size_t i) -> const Command& { return batch[i]; });
}

void Ledger::prefetch(std::span<Command* const> batch, std::size_t next) const {
  prefetch_stages(batch.size(), next, [&](std::size_t i) -> const Command& { return *batch[i]; });
}

// ---------------------------------------------------------------------------------
// Dispatch.

const std::string* Ledger::account_of(const Command& c) {
  return std::visit(
      [](const auto& b) -> const std::string* {
        if constexpr (requires { b.account_id; }) {
          return &b.account_id;
        } else {
          return nullptr;
        }
      },
      c.body);
}

std::optional<Reply> Ledger::gate(Command& c) {
  if (std::holds_alternative<Sweep>(c.body) || std::holds_alternative<LoadCatalog>(c.body) ||
      std::holds_alternative<LoadRateCard>(c.body)) {
    return std::nullopt;
  }
  if (auto* cmd = std::get_if<CreateAccount>(&c.body)) {
    if (c.precheck_error == ErrorCode::kOk && catalog_.find(cmd->plan_id) == nullptr) {
      c.precheck_error = ErrorCode::kInvalidRequest;
      c.precheck_message = "unknown plan";
      c.precheck_param = "plan";
    }
    if (c.precheck_error == ErrorCode::kOk && cmd->signup_at_ms && *cmd->signup_at_ms > now_ms_) {
      c.precheck_error = ErrorCode::kInvalidRequest;
      c.precheck_message = "signup_at must not be in the future";
      c.precheck_param = "signup_at";
    }
  } else {
    const Account* found = lookup(c);
    if (found == nullptr) {
      return error_reply(Error(ErrorCode::kAccountNotFound, "no such account"));
    }
    const Account& a = *found;
    // 404 for the object the command names.
    if (auto* cap = std::get_if<Capture>(&c.body); cap && !a.holds.contains(cap->hold_id)) {
      return error_reply(Error(ErrorCode::kHoldNotFound, "no such hold"));
    }
    if (auto* v = std::get_if<Void>(&c.body); v && !a.holds.contains(v->hold_id)) {
      return error_reply(Error(ErrorCode::kHoldNotFound, "no such hold"));
    }
    if (auto* rf = std::get_if<Refund>(&c.body);
        rf && !a.charges.contains(rf->charge_id) && !charge_forgotten(a, rf->charge_id)) {
      return error_reply(Error(ErrorCode::kChargeNotFound, "no such charge"));
    }
  }
  bool proceed = false;
  Reply early = stored_or_new(c, &proceed);
  if (!proceed) return early;
  c.gated = true;
  return std::nullopt;
}

Reply Ledger::apply(Command& c, std::vector<Event>& events) {
  Reply r;
  apply(c, events, r);
  return r;
}

void Ledger::apply(Command& c, std::vector<Event>& events, Reply& r) {
  // Every field is set; the body keeps its capacity.
  r.status = 200;
  r.code = ErrorCode::kOk;
  r.body.clear();
  r.packed = false;
  r.replayed = false;
  r.logged = false;
  r.retry_after_ms = 0;
  const std::size_t events_before = events.size();
  const std::uint64_t seq_before = next_seq_;
  rejected_pushed_ = false;
  auto number_events = [&]() {
    for (std::size_t i = events_before; i < events.size(); ++i) {
      if (events[i].seq == 0) events[i].seq = next_seq_++;
    }
    // The resets and expiries advance() made that the event log already holds (a replay,
    // set_events_durable_through): numbered in order, so they are the first ones.
    if (events_durable_through_ == 0) return;
    const auto from = events.begin() + static_cast<std::ptrdiff_t>(events_before);
    events.erase(from, std::find_if(from, events.end(), [&](const Event& e) {
                   return e.seq > events_durable_through_;
                 }));
  };
  // A command let through by gate() just before (the server's policy layer ran between)
  // is not checked again; gate() changes nothing, so the answer is the same.
  if (!std::exchange(c.gated, false)) {
    if (std::optional<Reply> stop = gate(c)) {
      r = std::move(*stop);
      return;
    }
  } else if (std::optional<Reply> invalid = precheck_reply(c)) {
    // Refused by the server's policy layer after gate() (a capture's usage that does not
    // price with its hold's rate card): nothing changes.
    r = std::move(*invalid);
    return;
  }
  if (std::holds_alternative<Sweep>(c.body)) {
    r = apply_sweep(events);
    number_events();
    return;
  }
  if (auto* cmd = std::get_if<LoadCatalog>(&c.body)) {
    r = apply_load_catalog(*cmd);
    return;
  }
  if (auto* cmd = std::get_if<LoadRateCard>(&c.body)) {
    r = apply_load_rate_card(*cmd);
    return;
  }
  if (auto* cmd = std::get_if<CreateAccount>(&c.body)) {
    r = apply_create(c, *cmd, events);
    number_events();
    return;
  }
  Account& a = *lookup(c);
  advance(a, now_ms_, &events);
  for (auto& p : a.pools) touch_day(p, now_ms_);
  number_events();
  if (c.precheck_error == ErrorCode::kRateLimited) {
    // DESIGN.md: a 429 is not stored, makes no event and leaves the key free. The
    // decision is logged with the command (so the resets applied above replay the same
    // way), and that is its only record.
    Error err(ErrorCode::kRateLimited, "too many requests; retry later");
    err.with("retry_after_ms", std::to_string(std::max<std::int64_t>(c.retry_after_ms, 1)));
    r = error_reply(err);
    r.retry_after_ms = c.retry_after_ms;
    r.logged = true;
    return;
  }
  if (auto* cmd = std::get_if<CloseAccount>(&c.body)) {
    (void)cmd;
    r = apply_close(c, a, events);
  } else if (a.closed) {
    r = finish(c, error_reply(account_closed_error()));
  } else if (auto* cmd = std::get_if<ChangePlan>(&c.body)) {
    r = apply_change_plan(c, a, *cmd, events);
  } else if (auto* cmd = std::get_if<AddGrant>(&c.body)) {
    r = apply_grant(c, a, *cmd, events);
  } else if (auto* cmd = std::get_if<Charge>(&c.body)) {
    apply_charge(c, a, *cmd, events, r);
  } else if (auto* cmd = std::get_if<Hold>(&c.body)) {
    r = apply_hold(c, a, *cmd, events);
  } else if (auto* cmd = std::get_if<Capture>(&c.body)) {
    r = apply_capture(c, a, *cmd, events);
  } else if (auto* cmd = std::get_if<Void>(&c.body)) {
    r = apply_void(c, a, *cmd, events);
  } else if (auto* cmd = std::get_if<Refund>(&c.body)) {
    r = apply_refund(c, a, *cmd, events);
  }
  for (const auto& pool : a.pools) {
    for (const auto& b : pool.buckets) check_bucket(b);
  }
  queue_due_after(c, a);
  record_refusal(c, a, r, events);
  // Resets and expiries applied on the way are changes even when the answer is an error.
  // (Every event made is numbered, whether appended to `events` or not.)
  if (next_seq_ > seq_before) r.logged = true;
}

// Every stored refusal is also a `rejected` event (DESIGN.md, Idempotency): the 402s of
// charges and holds record theirs where they are decided; the others (409s, 403
// purchase_not_allowed, the 402 of an adjustment or a capture's overage) here.
void Ledger::record_refusal(const Command& c, const Account& a, const Reply& r,
                            std::vector<Event>& events) {
  bool stored_refusal =
      r.status == 402 || r.status == 409 || r.code == ErrorCode::kPurchaseNotAllowed;
  if (!stored_refusal || r.replayed || rejected_pushed_) return;
  Event& e = push_event(events, EventType::kRejected, a);
  e.refused_by = r.status == 402 ? std::string("pool") : std::string(error_code_name(r.code));
  e.idempotency_key = c.idem.key;
  // A refusal about a hold names the hold's user, kind and pool, as its events do.
  const auto describe_refused_hold = [&](const std::string& hold_id) {
    e.hold_id = hold_id;
    auto it = a.holds.find(hold_id);
    if (it == a.holds.end()) return;
    const HoldRecord& h = it->second;
    e.user_id = h.user_id;
    e.kind = h.kind;
    e.pool = a.pools[h.pool_index].name;
    e.credits = h.amount;
    e.rate_card_version = h.rate_card_version;
  };
  if (auto* cap = std::get_if<Capture>(&c.body)) {
    describe_refused_hold(cap->hold_id);
    // The capture's own amount (the hold's when it gave none) is what was refused.
    if (cap->amount) e.credits = *cap->amount;
    e.priced_by = cap->priced_by_usage ? "usage" : "amount";
    e.usage = cap->usage;
  } else if (auto* v = std::get_if<Void>(&c.body)) {
    describe_refused_hold(v->hold_id);
  } else if (auto* rf = std::get_if<Refund>(&c.body)) {
    e.charge_id = rf->charge_id;
    // Named by its charge's user, kind and pool, as a refund's own event is (found by an
    // audit: a pool-filtered list left the refusal out).
    const ChargeRecord* rec = a.charges.find_record(rf->charge_id);
    if (rec != nullptr) {
      e.user_id = a.charges.user_id(*rec);
      e.kind = rec->kind;
      if (rec->pool_index < a.pools.size()) e.pool = a.pools[rec->pool_index].name;
    }
    // What was asked: the credits given, or (none given) all that was unrefunded.
    if (rf->credits) {
      e.credits = *rf->credits;
    } else if (rec != nullptr) {
      e.credits = rec->cost - min(rec->refunded(), rec->cost);
    }
  } else if (auto* g = std::get_if<AddGrant>(&c.body)) {
    e.pool = g->pool;
    e.credits = g->credits.is_negative() ? -g->credits : g->credits;
    // A negative adjustment refused for the pool's free credits (402) says what was free,
    // as a refused charge does.
    if (r.status == 402) {
      if (const PoolState* pool = a.pool(g->pool)) e.available_after = available_of(*pool);
    }
  } else if (auto* ch = std::get_if<Charge>(&c.body)) {
    describe_refused(*ch, e);
  } else if (auto* h = std::get_if<Hold>(&c.body)) {
    describe_refused(*h, e);
  }
}

// Advances the accounts with something due, earliest first (ties by account id), at most
// kSweepAccountsPerCommandMax of them and kSweepInstantsPerCommandMax instants in all (an
// account left with more due is advanced further by the next sweep, as a lazy reset
// would: the same steps in the same order). The order and the set depend on the state
// only, so a replay of the command advances the same accounts; the others are left as
// they are, as a full walk would leave them (advance changes nothing that is not due).
Reply Ledger::apply_sweep(std::vector<Event>& events) {
  std::size_t advanced = 0;
  std::size_t instants = 0;
  while (advanced < kSweepAccountsPerCommandMax && instants < kSweepInstantsPerCommandMax &&
         next_due_ms() <= now_ms_) {
    Account& a = *due_queue_.front().account;
    std::pop_heap(due_queue_.begin(), due_queue_.end(), due_later);
    due_queue_.pop_back();
    a.due_queued_ms = INT64_MAX;
    instants += advance(a, now_ms_, &events, kSweepInstantsPerCommandMax - instants);
    for (auto& p : a.pools) touch_day(p, now_ms_);
    queue_due(a, next_due_ms(a));
    ++advanced;
  }
  Reply r;
  r.logged = advanced > 0;
  r.body = "{}";
  return r;
}

Reply Ledger::apply_load_catalog(LoadCatalog& cmd) {
  auto parsed = pricing::parse_catalog(cmd.toml_text, "catalog");
  if (!parsed.ok()) return error_reply(parsed.error());
  catalog_ = std::move(parsed.value());
  Reply r;
  r.logged = true;
  r.body = "{}";
  return r;
}

Reply Ledger::apply_load_rate_card(const LoadRateCard& cmd) {
  // The text is kept as given (the engine parsed it before logging it; the command is
  // logged after it is applied, so it is copied); a changed card under a version already
  // known replaces it, as a changed catalog does.
  rate_cards_[cmd.version] = cmd.toml_text;
  Reply r;
  r.logged = true;
  r.body = "{}";
  return r;
}

void Ledger::set_capacities(const Capacities& c) {
  CREDIT_ASSERT(c.accounts_max > 0 && c.open_holds_per_account_max > 0 &&
                c.live_grants_per_pool_max > 0);
  options_.accounts_max = c.accounts_max;
  options_.open_holds_per_account_max = c.open_holds_per_account_max;
  options_.live_grants_per_pool_max = c.live_grants_per_pool_max;
}

const std::string* Ledger::rate_card_text(std::int64_t version) const {
  auto it = rate_cards_.find(version);
  return it == rate_cards_.end() ? nullptr : &it->second;
}

// ---------------------------------------------------------------------------------
// Accounts and plans.

namespace {
void start_cycle(Account& a, std::int64_t k, std::int64_t at_ms) {
  CycleBounds c = cycle_by_index(a.anchor_ms, k);
  a.cycle_index = k;
  ++a.cycle_serial;
  a.cycle_start_ms = c.start_ms;
  a.cycle_end_ms = c.end_ms;
  for (const auto& pa : a.plan.pools) {
    if (a.pool(pa.pool) == nullptr) a.pools.push_back(make_pool(pa.pool));
  }
  for (auto& pool : a.pools) {
    for (auto& b : pool.buckets) {
      b.base_spent = b.spent;
      b.base_vanished = b.vanished;
      b.base_taken = b.taken;
    }
    const pricing::PoolAllowance* pa = a.plan.pool(pool.name);
    Bucket allowance;
    allowance.bucket_id = a.next_bucket_id++;
    allowance.kind = BucketKind::kAllowance;
    allowance.granted = pa ? pa->allowance : Millicredits::zero();
    allowance.credits_signed = allowance.granted;
    allowance.expires_at_ms = a.cycle_end_ms;
    allowance.created_at_ms = at_ms;
    pool.buckets.push_back(allowance);
    pool.refunded_this_cycle = Millicredits::zero();
  }
}
}  // namespace

Reply Ledger::apply_create(Command& c, CreateAccount& cmd, std::vector<Event>& events) {
  const pricing::Plan* plan = catalog_.find(cmd.plan_id);
  CREDIT_ASSERT(plan != nullptr);  // gate() checked it
  if (accounts_.contains(cmd.account_id)) {
    return finish(c, error_reply(Error(ErrorCode::kAccountExists, "the account exists")));
  }
  if (accounts_.size() >= options_.accounts_max) {
    Error e(ErrorCode::kLimitReached, "the server holds its maximum number of accounts");
    e.with_string("limit", "accounts_max");
    return finish(c, error_reply(e));
  }
  auto a = std::make_unique<Account>();
  a->account_id = cmd.account_id;
  a->plan = *plan;
  a->signup_at_ms = cmd.signup_at_ms.value_or(now_ms_);
  a->created_at_ms = now_ms_;
  // A signup-anchored plan counts cycles from the signup; a paid account is anchored
  // at its creation.
  a->anchor_ms = plan->cycle_anchor == pricing::CycleAnchor::kSignup ? a->signup_at_ms : now_ms_;
  start_cycle(*a, cycle_at(a->anchor_ms, now_ms_).index, now_ms_);
  for (auto& p : a->pools) touch_day(p, now_ms_);
  Event& e = push_event(events, EventType::kAccountCreated, *a);
  e.plan = plan->id;
  e.idempotency_key = c.idem.key;
  Account& ref = *a;
  auto placed = accounts_.emplace(cmd.account_id, std::move(a)).first;
  index_account(placed->first, placed->second.get());
  Result<AccountView> v = view(ref.account_id, now_ms_);
  Reply r;
  r.status = 201;
  render_account_view(*v, r.body);
  return finish(c, std::move(r));
}

Reply Ledger::apply_close(Command& c, Account& a, std::vector<Event>& events) {
  if (a.closed) {
    return finish(c, error_reply(account_closed_error()));
  }
  for (auto& [id, h] : a.holds) {
    if (h.state != HoldState::kOpen) continue;
    release_hold(a, h, HoldState::kVoided);
    describe_hold(push_event(events, EventType::kVoid, a), h, a.pools[h.pool_index]);
  }
  a.closed = true;
  Event& e = push_event(events, EventType::kAccountClosed, a);
  e.idempotency_key = c.idem.key;
  Reply r;
  render_account_view(*view(a.account_id, now_ms_), r.body);
  return finish(c, std::move(r));
}

Reply Ledger::apply_change_plan(Command& c, Account& a, ChangePlan& cmd,
                                std::vector<Event>& events) {
  const pricing::Plan* next = catalog_.find(cmd.plan_id);
  if (next == nullptr) {
    Error e(ErrorCode::kInvalidRequest, "unknown plan");
    e.with_string("param", "plan");
    return error_reply(e);  // validation: not stored
  }
  const pricing::Plan old = a.plan;
  if (next->id == a.plan.id) {
    // Asking for the current plan clears a pending change: a change, so an event
    // (DESIGN.md: every change is an event) naming the plan kept and the one dropped.
    if (a.pending_plan) {
      Event& e = push_event(events, EventType::kPlanChange, a);
      e.plan = a.plan.id;
      e.previous_plan = *a.pending_plan;
      e.object = "pending_cleared";
      e.idempotency_key = c.idem.key;
      if (!a.pools.empty()) e.available_after = available_of(a.pools.front());
    }
    a.pending_plan.reset();
  } else if (next->price_usd_cents > old.price_usd_cents && old.price_usd_cents == 0) {
    // Free to paid: the free cycle ends now, a new cycle anchored now begins.
    const std::size_t first_reset = events.size();
    for (auto& pool : a.pools) {
      for (auto& b : pool.buckets) {
        if (b.ended || b.kind != BucketKind::kAllowance) continue;
        Millicredits lost = b.free();
        b.vanished += lost;
        b.ended = true;
        Event& e = push_event(events, EventType::kReset, a);
        e.pool = pool.name;
        e.credits = lost;
        e.plan = next->id;
        e.previous_plan = old.id;
      }
      std::erase_if(pool.buckets, [](const Bucket& b) { return b.ended && b.held.is_zero(); });
    }
    a.plan = *next;
    a.pending_plan.reset();
    a.anchor_ms = now_ms_;
    start_cycle(a, 0, now_ms_);
    // Each reset says what its pool holds once the new cycle began, as a boundary's does.
    for (std::size_t i = first_reset; i < events.size(); ++i) {
      if (events[i].type != EventType::kReset) continue;
      if (const PoolState* p = a.pool(events[i].pool)) events[i].available_after = available_of(*p);
    }
    Event& e = push_event(events, EventType::kPlanChange, a);
    e.plan = next->id;
    e.previous_plan = old.id;
    e.proration_usd_cents = next->price_usd_cents;
    e.idempotency_key = c.idem.key;
    // Every change says what is available after it: of the first pool (the plan's).
    if (!a.pools.empty()) e.available_after = available_of(a.pools.front());
  } else if (next->price_usd_cents > old.price_usd_cents) {
    // Paid upgrade: same cycle; each allowance becomes max(new, spent + held from it).
    std::int64_t remaining_ms = a.cycle_end_ms - now_ms_;
    std::int64_t cycle_ms = a.cycle_end_ms - a.cycle_start_ms;
    __int128 num =
        static_cast<__int128>(next->price_usd_cents - old.price_usd_cents) * remaining_ms;
    std::int64_t proration = static_cast<std::int64_t>((num + cycle_ms - 1) / cycle_ms);
    a.plan = *next;
    a.pending_plan.reset();
    for (const auto& pa : a.plan.pools) {
      if (a.pool(pa.pool) == nullptr) {
        PoolState ps = make_pool(pa.pool);
        touch_day(ps, now_ms_);
        a.pools.push_back(ps);
        Bucket allowance;
        allowance.bucket_id = a.next_bucket_id++;
        allowance.expires_at_ms = a.cycle_end_ms;
        allowance.created_at_ms = now_ms_;
        a.pools.back().buckets.push_back(allowance);
      }
    }
    for (auto& pool : a.pools) {
      const pricing::PoolAllowance* pa = a.plan.pool(pool.name);
      for (auto& b : pool.buckets) {
        if (b.ended || b.kind != BucketKind::kAllowance) continue;
        Millicredits floor_mc = b.spent + b.held + b.taken + b.vanished;
        Millicredits target = pa ? pa->allowance : Millicredits::zero();
        // The allowance is "granted" of a bucket made this cycle (base tallies are 0
        // unless it was carried; allowance buckets never are).
        b.granted = max(target + b.base_spent + b.base_vanished + b.base_taken, floor_mc);
        b.credits_signed = b.granted;
      }
    }
    Event& e = push_event(events, EventType::kPlanChange, a);
    e.plan = next->id;
    e.previous_plan = old.id;
    e.proration_usd_cents = proration;
    e.idempotency_key = c.idem.key;
    // Every change says what is available after it: of the first pool (the plan's).
    if (!a.pools.empty()) e.available_after = available_of(a.pools.front());
  } else {
    a.pending_plan = next->id;
    Event& e = push_event(events, EventType::kPlanChange, a);
    e.plan = next->id;
    e.previous_plan = old.id;
    e.object = "pending";
    e.idempotency_key = c.idem.key;
    // Every change says what is available after it: of the first pool (the plan's).
    if (!a.pools.empty()) e.available_after = available_of(a.pools.front());
  }
  Reply r;
  render_account_view(*view(a.account_id, now_ms_), r.body);
  return finish(c, std::move(r));
}

Reply Ledger::apply_grant(Command& c, Account& a, AddGrant& cmd, std::vector<Event>& events) {
  PoolState* pool = a.pool(cmd.pool);
  if (pool == nullptr) {
    Error e(ErrorCode::kInvalidRequest, "the account's plan has no such pool");
    e.with_string("param", "pool");
    return error_reply(e);
  }
  if (cmd.source == GrantSource::kPack && !a.plan.packs_allowed) {
    Error e(ErrorCode::kPurchaseNotAllowed, "this plan does not sell credit packs; upgrade");
    const pricing::Plan* best = nullptr;
    for (const auto& p : catalog_.plans) {
      if (p.packs_allowed && (best == nullptr || p.price_usd_cents < best->price_usd_cents))
        best = &p;
    }
    if (best) {
      e.with_string("upgrade_to", best->id);
    } else {
      e.with("upgrade_to", "null");
    }
    return finish(c, error_reply(e));
  }
  std::size_t live = 0;
  for (const auto& b : pool->buckets)
    live += (!b.ended && b.kind != BucketKind::kAllowance) ? 1 : 0;
  if (!cmd.credits.is_negative() && live >= options_.live_grants_per_pool_max) {
    Error e(ErrorCode::kLimitReached, "the pool holds its maximum number of live grants");
    e.with_string("limit", "live_grants_per_pool_max");
    return finish(c, error_reply(e));
  }
  Bucket g;
  g.bucket_id = a.next_bucket_id++;
  g.kind = cmd.source == GrantSource::kPack ? BucketKind::kPack : BucketKind::kAdjustment;
  g.grant_id = new_id('g');
  g.created_at_ms = now_ms_;
  g.reason = cmd.reason;
  g.credits_signed = cmd.credits;
  std::vector<DrawnFrom> drawn;
  std::int64_t price_cents = 0;
  if (cmd.credits.is_negative()) {
    Millicredits need = -cmd.credits;
    if (available_of(*pool) < need)
      return finish(c, error_reply(insufficient(a, *pool, need, false)));
    draw_free(*pool, need, &Bucket::taken, static_cast<std::vector<Reservation>*>(nullptr), drawn);
    g.ended = true;  // a record only: it holds nothing
    g.expires_at_ms = now_ms_;
  } else {
    g.granted = cmd.credits;
    if (cmd.source == GrantSource::kPack) {
      g.expires_at_ms = now_ms_ + a.plan.pack_expiry_days * kMsPerDay;
      // pack_price_usd_cents is per 1,000 credits; the price line is rounded up to a cent.
      constexpr std::int64_t kPackPriceUnitMc = 1'000'000;  // 1,000 credits
      __int128 cents = static_cast<__int128>(cmd.credits.mc()) * a.plan.pack_price_usd_cents;
      price_cents = static_cast<std::int64_t>((cents + kPackPriceUnitMc - 1) / kPackPriceUnitMc);
    } else {
      g.expires_at_ms = cmd.expires_at_ms.value_or(kNeverMs);
    }
  }
  pool->buckets.push_back(g);
  Event& e = push_event(events, EventType::kGrant, a);
  e.pool = pool->name;
  e.credits = cmd.credits.is_negative() ? -cmd.credits : cmd.credits;
  e.grant_id = g.grant_id;
  e.reason = cmd.reason;
  e.object = std::string(grant_source_name(cmd.source));
  e.drawn_from = drawn;
  e.proration_usd_cents = price_cents;
  e.idempotency_key = c.idem.key;
  e.available_after = available_of(*pool);
  Reply r;
  r.status = 201;
  render_grant(pool->name, g, r.body);
  return finish(c, std::move(r));
}

// ---------------------------------------------------------------------------------
// Metering.

// The 402 of a charge or hold that the pool (checked first) or the daily cap does not
// cover, stored under its key and recorded as a `rejected` event (the last event).
template <class ChargeOrHold>
std::optional<Reply> Ledger::refuse_if_short(Command& c, const Account& a, const PoolState& pool,
                                             const ChargeOrHold& cmd, Millicredits available,
                                             std::vector<Event>& events) {
  const Millicredits amount = cmd.amount;
  const pricing::PoolAllowance* pa = a.plan.pool(pool.name);
  std::optional<Millicredits> cap = pa ? pa->daily_cap : std::nullopt;
  bool pool_short = available < amount;
  bool cap_short = !pool_short && !cap_allows(pool, cap, now_ms_, amount);
  if (!pool_short && !cap_short) return std::nullopt;
  Error err = insufficient(a, pool, amount, cap_short);
  Event& e = push_event(events, EventType::kRejected, a);
  describe_refused(cmd, e);
  e.pool = pool.name;
  e.refused_by = cap_short ? "daily_cap" : "pool";
  e.available_after = available;
  e.idempotency_key = c.idem.key;
  return finish(c, error_reply(err));
}

void Ledger::describe_charge(const Command& c, const Charge& cmd, const std::string& pool,
                             Millicredits credits, Event& e) {
  e.user_id = cmd.user_id;
  e.kind = cmd.kind;
  e.pool = pool;
  e.credits = credits;
  e.priced_by = cmd.priced_by_usage ? "usage" : "amount";
  e.usage = cmd.usage;
  copy_metadata(cmd.metadata, e.metadata);
  e.cache_key = cmd.cache_key;
  e.idempotency_key = c.idem.key;
  e.rate_card_version = cmd.rate_card_version;
}

ChargeRecord Ledger::charge_record(const Command& c, Account& a, const Charge& cmd,
                                   const PoolState& pool, std::size_t pool_index) {
  ChargeRecord rec;
  rec.user = a.charges.intern_user(cmd.user_id, user_hash(c, cmd.user_id));
  rec.kind = cmd.kind;
  rec.pool_index = static_cast<std::uint16_t>(pool_index);
  // Both hold for any state the ledger reaches (cycles and days counted from 1970 in 32 bits).
  const bool compact =
      rec.set_cycle_index(a.cycle_serial) && rec.set_day_start_ms(pool.day_start_ms);
  CREDIT_ASSERT(compact);
  rec.at_ms = now_ms_;
  rec.rate_card_version = cmd.rate_card_version;
  return rec;
}

void Ledger::apply_charge(Command& c, Account& a, Charge& cmd, std::vector<Event>& events,
                          Reply& r) {
  PoolState* pool = a.pool(cmd.pool);
  if (pool == nullptr) {
    Error e(ErrorCode::kInvalidRequest, "the account's plan has no such pool");
    e.with_string("param", "kind");
    r = error_reply(e);
    return;
  }
  const std::size_t pool_index = static_cast<std::size_t>(pool - a.pools.data());
  if (cmd.cache_hit) {
    Event& e = push_event(events, EventType::kCacheHit, a);
    std::string charge_id = "c_" + std::to_string(e.seq);
    e.charge_id = charge_id;
    e.available_after = available_of(*pool);
    describe_charge(c, cmd, pool->name, cmd.saved, e);
    // A hit is kept as a charge of nothing, so that its id reads back (GET) and a refund of
    // it is 409, as for any charge with nothing left to refund.
    const bool added = a.charges.append(e.seq, charge_record(c, a, cmd, *pool, pool_index));
    CREDIT_ASSERT(added);
    r.status = 201;
    render_charge(charge_id, Millicredits::zero(), pool->name, *e.available_after, {}, true,
                  cmd.saved, "", r.body);
    append_cache_generation(cmd.cache_generation, r.body);
    store(c, r);
    return;
  }
  const Millicredits available = available_of(*pool);
  if (std::optional<Reply> refused = refuse_if_short(c, a, *pool, cmd, available, events)) {
    r = std::move(*refused);
    return;
  }
  ReservationList reserved;
  std::vector<DrawnFrom> drawn = take_drawn_list();
  draw_free(*pool, cmd.amount, &Bucket::spent, &reserved, drawn);
  pool->spent_today += cmd.amount;
  Event& e = push_event(events, EventType::kCharge, a);
  ChargeRecord rec = charge_record(c, a, cmd, *pool, pool_index);
  rec.cost = cmd.amount;
  rec.set_drawn(reserved);
  // The id as text, for the event log and the rendered answer. A replay keeps neither:
  // its stored answer is packed from the sequence number (reply_pack.h).
  if (event_kept(e) || reply_form_ == ReplyForm::kRendered) {
    assign_charge_id(e.charge_id, e.seq);
  }
  // Only live buckets' free credits moved, by exactly the amount.
  e.available_after = available - cmd.amount;
  CREDIT_ASSERT(*e.available_after >= Millicredits::zero());
  e.drawn_from = std::move(drawn);
  // The rest describes the charge to the event log only.
  if (event_kept(e)) describe_charge(c, cmd, pool->name, cmd.amount, e);
  r.status = 201;
  bool added = a.charges.append(e.seq, std::move(rec));
  CREDIT_ASSERT(added);
  answer_charge(c, r,
                ChargeReplyParts{e.charge_id, e.seq, cmd.amount, pool->name, *e.available_after,
                                 &e.drawn_from, "", 0});
}

Reply Ledger::apply_hold(Command& c, Account& a, Hold& cmd, std::vector<Event>& events) {
  PoolState* pool = a.pool(cmd.pool);
  if (pool == nullptr) {
    Error e(ErrorCode::kInvalidRequest, "the account's plan has no such pool");
    e.with_string("param", "kind");
    return error_reply(e);
  }
  if (cmd.cache_hit) {
    Event& e = push_event(events, EventType::kCacheHit, a);
    e.user_id = cmd.user_id;
    e.kind = cmd.kind;
    e.pool = pool->name;
    e.credits = cmd.saved;
    e.available_after = available_of(*pool);
    e.priced_by = cmd.priced_by_usage ? "usage" : "amount";
    e.usage = cmd.usage;
    e.metadata = cmd.metadata;
    e.cache_key = cmd.cache_key;
    e.idempotency_key = c.idem.key;
    e.rate_card_version = cmd.rate_card_version;
    Reply r;
    json::Writer w(r.body);
    w.begin_object().key("cached").boolean(true);
    w.key("saved").raw(format_credits(cmd.saved));
    w.key("response").null();
    w.end_object();
    append_cache_generation(cmd.cache_generation, r.body);
    return finish(c, std::move(r));
  }
  if (a.open_holds >= options_.open_holds_per_account_max) {
    Error e(ErrorCode::kLimitReached, "the account holds its maximum number of open holds");
    e.with_string("limit", "open_holds_per_account_max");
    return finish(c, error_reply(e));
  }
  if (std::optional<Reply> refused =
          refuse_if_short(c, a, *pool, cmd, available_of(*pool), events)) {
    return std::move(*refused);
  }
  HoldRecord h;
  std::vector<DrawnFrom> drawn;
  draw_free(*pool, cmd.amount, &Bucket::held, &h.reserved, drawn);
  pool->held_today += cmd.amount;
  Event& e = push_event(events, EventType::kHold, a);
  h.hold_id = "h_" + std::to_string(e.seq);
  h.user_id = cmd.user_id;
  h.kind = cmd.kind;
  h.pool_index = static_cast<std::size_t>(pool - a.pools.data());
  h.amount = cmd.amount;
  h.placed_at_ms = now_ms_;
  h.expires_at_ms = now_ms_ + cmd.ttl_ms;
  h.day_start_ms = pool->day_start_ms;
  h.rate_card_version = cmd.rate_card_version;
  h.cache_key = cmd.cache_key;
  h.metadata = cmd.metadata;
  e.hold_id = h.hold_id;
  e.user_id = cmd.user_id;
  e.kind = cmd.kind;
  e.pool = pool->name;
  e.credits = cmd.amount;
  e.available_after = available_of(*pool);
  e.drawn_from = std::move(drawn);
  e.priced_by = cmd.priced_by_usage ? "usage" : "amount";
  e.usage = cmd.usage;
  e.metadata = cmd.metadata;
  e.cache_key = cmd.cache_key;
  e.idempotency_key = c.idem.key;
  e.rate_card_version = cmd.rate_card_version;
  Reply r;
  r.status = 201;
  r.body.reserve(kChargeReplyBytesReserve);
  render_hold(h, *e.available_after, e.drawn_from, r.body);
  ++a.open_holds;
  a.holds.emplace(h.hold_id, std::move(h));
  return finish(c, std::move(r));
}

// The open hold a capture or void names, or nullptr and the reply that stops it: 404 when
// the resets just applied forgot it (closed holds older than the last cycle), 409
// hold_not_open with its state.
HoldRecord* Ledger::open_hold(Command& c, Account& a, const std::string& hold_id, Reply* stop) {
  auto found = a.holds.find(hold_id);
  if (found == a.holds.end()) {
    *stop = error_reply(Error(ErrorCode::kHoldNotFound, "no such hold"));
    return nullptr;
  }
  HoldRecord& h = found->second;
  if (h.state != HoldState::kOpen) {
    Error e(ErrorCode::kHoldNotOpen, "the hold is not open");
    e.with_string("state", hold_state_name(h.state));
    *stop = finish(c, error_reply(e));
    return nullptr;
  }
  return &h;
}

Reply Ledger::apply_capture(Command& c, Account& a, Capture& cmd, std::vector<Event>& events) {
  Reply stop;
  HoldRecord* open = open_hold(c, a, cmd.hold_id, &stop);
  if (open == nullptr) return stop;
  HoldRecord& h = *open;
  PoolState& pool = a.pools[h.pool_index];
  Millicredits cost = cmd.amount.value_or(h.amount);
  Millicredits overage = cost > h.amount ? cost - h.amount : Millicredits::zero();
  if (overage > Millicredits::zero() && !cmd.overage_charge) {
    Error e(ErrorCode::kCaptureExceedsHold, "the capture is larger than the hold");
    e.with("hold_amount", format_credits(h.amount));
    e.with("required", format_credits(cost));
    return finish(c, error_reply(e));
  }
  if (overage > Millicredits::zero() && available_of(pool) < overage) {
    return finish(c, error_reply(insufficient(a, pool, overage, false)));
  }
  ChargeRecord rec;
  ReservationList reserved;
  std::vector<DrawnFrom> drawn;
  Millicredits left = cost;
  for (const auto& res : h.reserved) {
    Bucket& b = *bucket_by_id(pool, res.bucket_id);
    Millicredits take = min(res.credits, left);
    b.held -= res.credits;
    b.spent += take;
    if (b.ended) b.vanished += res.credits - take;
    left -= take;
    if (!take.is_zero()) {
      reserved.push_back({b.bucket_id, take});
      append_drawn(drawn, b, take);
    }
  }
  // The overage is drawn like a charge; a bucket both parts drew from is listed once.
  if (!left.is_zero()) {
    ReservationList over;
    std::vector<DrawnFrom> over_drawn;
    draw_free(pool, left, &Bucket::spent, &over, over_drawn);
    for (std::size_t i = 0; i < over.size(); ++i) {
      const std::size_t at = reserved.add(over[i]);
      if (at < drawn.size()) {
        drawn[at].credits += over[i].credits;
      } else {
        drawn.push_back(std::move(over_drawn[i]));
      }
    }
  }
  // A capture counts on its hold's day and is never refused by the cap.
  if (h.day_start_ms == pool.day_start_ms) {
    pool.held_today -= h.amount;
    pool.spent_today += cost;
  }
  h.state = HoldState::kCaptured;
  --a.open_holds;
  Event& e = push_event(events, EventType::kCapture, a);
  rec.user = a.charges.intern_user(h.user_id);
  rec.kind = h.kind;
  rec.pool_index = static_cast<std::uint16_t>(h.pool_index);
  rec.cost = cost;
  rec.set_drawn(reserved);
  const bool compact = rec.set_cycle_index(a.cycle_serial) && rec.set_day_start_ms(h.day_start_ms);
  CREDIT_ASSERT(compact);
  rec.at_ms = now_ms_;
  rec.rate_card_version = h.rate_card_version;
  const std::uint64_t hold_seq = ChargeTable::seq_of(h.hold_id, 'h').value_or(0);
  CREDIT_ASSERT(hold_seq != 0);
  rec.hold_seq = hold_seq;
  assign_charge_id(e.charge_id, e.seq);
  e.hold_id = h.hold_id;
  e.user_id = h.user_id;
  e.kind = h.kind;
  e.pool = pool.name;
  e.credits = cost;
  e.available_after = available_of(pool);
  e.drawn_from = std::move(drawn);
  e.priced_by = cmd.priced_by_usage ? "usage" : "amount";
  e.usage = cmd.usage;
  e.metadata = cmd.metadata.empty() ? h.metadata : cmd.metadata;
  e.cache_key = h.cache_key;
  e.idempotency_key = c.idem.key;
  e.rate_card_version = h.rate_card_version;
  Reply r;
  r.status = 201;
  bool added = a.charges.append(e.seq, std::move(rec));
  CREDIT_ASSERT(added);
  answer_charge(c, r,
                ChargeReplyParts{e.charge_id, e.seq, cost, pool.name, *e.available_after,
                                 &e.drawn_from, h.hold_id, hold_seq});
  return r;
}

Reply Ledger::apply_void(Command& c, Account& a, Void& cmd, std::vector<Event>& events) {
  Reply stop;
  HoldRecord* open = open_hold(c, a, cmd.hold_id, &stop);
  if (open == nullptr) return stop;
  HoldRecord& h = *open;
  release_hold(a, h, HoldState::kVoided);
  Event& e = push_event(events, EventType::kVoid, a);
  describe_hold(e, h, a.pools[h.pool_index]);
  e.idempotency_key = c.idem.key;
  Reply r;
  json::Writer w(r.body);
  w.begin_object().key("hold_id").string(h.hold_id);
  w.key("released").raw(format_credits(h.amount));
  w.end_object();
  return finish(c, std::move(r));
}

Reply Ledger::apply_refund(Command& c, Account& a, Refund& cmd, std::vector<Event>& events) {
  ChargeRecord* found = a.charges.find_record(cmd.charge_id);
  if (found == nullptr) {
    // Forgotten at a reset (now or earlier): its cycle ended two or more cycles ago.
    // gate() let only such ids through, unless the cap dropped it since.
    if (!charge_forgotten(a, cmd.charge_id)) {
      return error_reply(Error(ErrorCode::kChargeNotFound, "no such charge"));
    }
    return finish(
        c, error_reply(Error(ErrorCode::kChargeNotRefundable, "the charge's cycle has ended")));
  }
  ChargeRecord& ch = *found;
  Millicredits unrefunded = ch.cost - ch.refunded();
  Millicredits want = cmd.credits.value_or(unrefunded);
  // Whatever it asks, a charge of an ended cycle or with nothing left is not refundable;
  // more than what is left is refused the same way (DESIGN.md: "never more than what is
  // unrefunded"), naming what is left. A 409: stored under its key, with its event.
  const bool cycle_ended = ch.cycle_index() != a.cycle_serial;
  if (cycle_ended || unrefunded.is_zero() || want > unrefunded) {
    Error e(ErrorCode::kChargeNotRefundable,
            ch.cost.is_zero()      ? "the charge cost nothing (a cache hit costs 0)"
            : unrefunded.is_zero() ? "the charge is fully refunded"
            : cycle_ended          ? "the charge's cycle has ended"
                                   : "a refund cannot exceed what is unrefunded");
    e.with("unrefunded", format_credits(unrefunded));
    return finish(c, error_reply(e));
  }
  PoolState& pool = a.pools[ch.pool_index];
  // Credits return to the drawn buckets in reverse order. Each draw keeps what was
  // already returned to it in `refunded` order: walk from the end, skipping that much.
  Millicredits skip = ch.refunded();
  Millicredits left = want;
  Millicredits forfeited;
  // Where the credits went back: to live buckets (restored_to) or to ended ones, where
  // they vanish (forfeited). The answer has API.md's fields; the event names every bucket,
  // in that walk's order, so that its credits are the sum of its drawn_from and a forfeit
  // is explained line by line (the ended bucket's own event says when it ended).
  std::vector<DrawnFrom> restored, returned;
  const ReservationList draws = ch.drawn();
  for (auto it = draws.rbegin(); it != draws.rend() && !left.is_zero(); ++it) {
    Millicredits room = it->credits;
    Millicredits skipped = min(room, skip);
    skip -= skipped;
    room -= skipped;
    Millicredits give = min(room, left);
    if (give.is_zero()) continue;
    left -= give;
    Bucket* b = bucket_by_id(pool, it->bucket_id);
    CREDIT_ASSERT(b != nullptr);
    b->spent -= give;
    if (b->ended) {
      b->vanished += give;
      forfeited += give;
    } else {
      append_drawn(restored, *b, give);
    }
    append_drawn(returned, *b, give);
  }
  CREDIT_ASSERT(left.is_zero());
  if (ch.day_start_ms() == pool.day_start_ms) pool.spent_today -= min(pool.spent_today, want);
  pool.refunded_this_cycle += want;
  Event& e = push_event(events, EventType::kRefund, a);
  std::string refund_id = "r_" + std::to_string(e.seq);
  ch.add_refund({refund_id, want, now_ms_, cmd.reason});
  e.refund_id = refund_id;
  e.charge_id = cmd.charge_id;  // the id the record was found by
  e.user_id = a.charges.user_id(ch);
  e.kind = ch.kind;
  e.pool = pool.name;
  e.credits = want;
  e.available_after = available_of(pool);
  e.drawn_from = std::move(returned);
  e.reason = cmd.reason;
  e.idempotency_key = c.idem.key;
  Reply r;
  r.status = 201;
  json::Writer w(r.body);
  w.begin_object().key("refund_id").string(refund_id);
  w.key("credits").raw(format_credits(want));
  w.key("restored_to").begin_array();
  for (const auto& d : restored) {
    w.begin_object().key("source").string(d.source).key("credits").raw(format_credits(d.credits));
    w.end_object();
  }
  w.end_array();
  w.key("forfeited").raw(format_credits(forfeited));
  w.end_object();
  return finish(c, std::move(r));
}

}  // namespace credit::ledger
