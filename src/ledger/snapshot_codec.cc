// src/ledger/snapshot_codec.cc
// The ledger state to bytes and back (format in snapshot_codec.h). Decoding checks what
// the encoding alone cannot promise: enum ranges, counts against the capacities of the
// ledger it fills, idempotency entries in expiry order pointing at stored replies, and the
// ledger's own invariants on buckets and holds (a state that breaks them is refused).
#include "ledger/snapshot_codec.h"

#include <algorithm>
#include <climits>

#include "base/assert.h"
#include "ledger/internal/reply_pack.h"
#include "ledger/internal/wire.h"

namespace credit::ledger {

// The codec's access to the ledger's private state (declared a friend in ledger.h).
struct SnapshotAccess {
  static void encode(const Ledger& l, std::string& out, std::uint8_t version);
  static Status decode(std::string_view bytes, Ledger& l);
};

namespace {

using internal::WireIn;
using internal::WireOut;

constexpr std::uint8_t kBucketKindMax = static_cast<std::uint8_t>(BucketKind::kAdjustment);
constexpr std::uint8_t kHoldStateMax = static_cast<std::uint8_t>(HoldState::kExpired);
constexpr std::uint8_t kKindMax = static_cast<std::uint8_t>(pricing::kKindCount - 1);
constexpr std::uint8_t kAnchorMax = static_cast<std::uint8_t>(pricing::CycleAnchor::kBilling);
// Counts above these cannot come from a ledger this build wrote (the ledger's own
// capacities are lower); they stop a damaged count from allocating without bound.
constexpr std::uint64_t kPlansMax = 1 << 16;
constexpr std::uint64_t kRateCardsMax = 1 << 16;
constexpr std::uint64_t kPoolsPerPlanMax = 1 << 10;
constexpr std::uint64_t kBucketsPerPoolMax = 1 << 20;
constexpr std::uint64_t kReservationsMax = 1 << 20;
constexpr std::uint64_t kRefundsPerChargeMax = 1 << 20;

void encode_limit(WireOut& o, const std::optional<pricing::RateLimit>& l) {
  o.b(l.has_value());
  if (!l) return;
  o.sv(l->per_minute);
  o.sv(l->burst);
}

std::optional<pricing::RateLimit> decode_limit(WireIn& in) {
  if (!in.b()) return std::nullopt;
  pricing::RateLimit l;
  l.per_minute = in.sv();
  l.burst = in.sv();
  return l;
}

void encode_plan(WireOut& o, const pricing::Plan& p) {
  o.str(p.id);
  o.str(p.name);
  o.sv(p.price_usd_cents);
  o.uv(p.pools.size());
  for (const auto& pa : p.pools) {
    o.str(pa.pool);
    o.money(pa.allowance);
    o.opt_m(pa.daily_cap);
  }
  o.u8(static_cast<std::uint8_t>(p.cycle_anchor));
  o.b(p.packs_allowed);
  o.sv(p.rollover_percent);
  o.opt_m(p.rollover_cap);
  o.sv(p.pack_expiry_days);
  o.sv(p.pack_price_usd_cents);
  encode_limit(o, p.rate_limits.per_user);
  encode_limit(o, p.rate_limits.per_account);
}

pricing::Plan decode_plan(WireIn& in) {
  pricing::Plan p;
  p.id = in.str();
  p.name = in.str();
  p.price_usd_cents = in.sv();
  std::uint64_t pools = in.uv();
  if (pools > kPoolsPerPlanMax) in.fail();
  for (std::uint64_t i = 0; i < pools && in.ok(); ++i) {
    pricing::PoolAllowance pa;
    pa.pool = in.str();
    pa.allowance = in.money();
    pa.daily_cap = in.opt_m();
    p.pools.push_back(std::move(pa));
  }
  p.cycle_anchor = in.enum_u8<pricing::CycleAnchor>(kAnchorMax);
  p.packs_allowed = in.b();
  p.rollover_percent = in.sv();
  p.rollover_cap = in.opt_m();
  p.pack_expiry_days = in.sv();
  p.pack_price_usd_cents = in.sv();
  p.rate_limits.per_user = decode_limit(in);
  p.rate_limits.per_account = decode_limit(in);
  return p;
}

template <typename List>
void encode_reservations(WireOut& o, const List& rs) {
  o.uv(rs.size());
  for (const auto& r : rs) {
    o.uv(r.bucket_id);
    o.money(r.credits);
  }
}

template <typename List = std::vector<Reservation>>
List decode_reservations(WireIn& in) {
  List rs;
  std::uint64_t n = in.uv();
  if (n > kReservationsMax) in.fail();
  for (std::uint64_t i = 0; i < n && in.ok(); ++i) {
    Reservation r;
    r.bucket_id = static_cast<std::uint32_t>(in.uv());
    r.credits = in.money();
    rs.push_back(r);
  }
  return rs;
}

void encode_bucket(WireOut& o, const Bucket& b) {
  o.uv(b.bucket_id);
  o.u8(static_cast<std::uint8_t>(b.kind));
  o.str(b.grant_id);
  o.money(b.granted);
  o.money(b.spent);
  o.money(b.held);
  o.money(b.vanished);
  o.money(b.taken);
  o.sv(b.expires_at_ms);
  o.sv(b.created_at_ms);
  o.b(b.ended);
  o.money(b.base_spent);
  o.money(b.base_vanished);
  o.money(b.base_taken);
  o.str(b.reason);
  o.money(b.credits_signed);
}

// A bucket as the ledger keeps it (ledger.cc, check_bucket): no tally negative or past the
// API's limit, a cycle base within its tally, free credits >= 0, and none when ended. A
// snapshot that breaks this (damage the checksum missed, or an encoder bug) is refused
// here, naming the offset, instead of aborting at the first read of the pool.
bool bucket_is_sound(const Bucket& b) {
  for (Millicredits m : {b.granted, b.spent, b.held, b.vanished, b.taken, b.base_spent,
                         b.base_vanished, b.base_taken}) {
    if (m.mc() < 0 || m.mc() > Millicredits::kApiLimitMc) return false;
  }
  if (b.credits_signed.mc() < -Millicredits::kApiLimitMc ||
      b.credits_signed.mc() > Millicredits::kApiLimitMc) {
    return false;
  }
  if (b.base_spent > b.spent || b.base_vanished > b.vanished || b.base_taken > b.taken) {
    return false;
  }
  const __int128 free = static_cast<__int128>(b.granted.mc()) - b.spent.mc() - b.held.mc() -
                        b.vanished.mc() - b.taken.mc();
  return free >= 0 && (!b.ended || free == 0);
}

Bucket decode_bucket(WireIn& in) {
  Bucket b;
  b.bucket_id = static_cast<std::uint32_t>(in.uv());
  b.kind = in.enum_u8<BucketKind>(kBucketKindMax);
  b.grant_id = in.str();
  b.granted = in.money();
  b.spent = in.money();
  b.held = in.money();
  b.vanished = in.money();
  b.taken = in.money();
  b.expires_at_ms = in.sv();
  b.created_at_ms = in.sv();
  b.ended = in.b();
  b.base_spent = in.money();
  b.base_vanished = in.money();
  b.base_taken = in.money();
  b.reason = in.str();
  b.credits_signed = in.money();
  if (!bucket_is_sound(b)) in.fail();
  return b;
}

void encode_pool(WireOut& o, const PoolState& p) {
  o.str(p.name);
  o.sv(p.day_start_ms);
  o.money(p.spent_today);
  o.money(p.held_today);
  o.money(p.refunded_this_cycle);
  o.uv(p.buckets.size());
  for (const auto& b : p.buckets) encode_bucket(o, b);
}

PoolState decode_pool(WireIn& in) {
  PoolState p;
  p.name = in.str();
  p.day_start_ms = in.sv();
  p.spent_today = in.money();
  p.held_today = in.money();
  p.refunded_this_cycle = in.money();
  std::uint64_t n = in.uv();
  if (n > kBucketsPerPoolMax) in.fail();
  for (std::uint64_t i = 0; i < n && in.ok(); ++i) p.buckets.push_back(decode_bucket(in));
  // The pool's sums (Ledger::pool_view) stay within int64: at most half of it granted.
  __int128 granted = 0;
  for (const Bucket& b : p.buckets) granted += b.granted.mc();
  if (granted > INT64_MAX / 2) in.fail();
  // The day's and the cycle's tallies sum many charges, holds and refunds, each within the
  // API's limit, so they may pass it (two charges of 10^12 credits from two grants); the
  // ledger's checked arithmetic keeps them within int64. Only a negative one is damage.
  for (Millicredits m : {p.spent_today, p.held_today, p.refunded_this_cycle}) {
    if (m.is_negative()) in.fail();
  }
  return p;
}

void encode_hold(WireOut& o, const HoldRecord& h) {
  o.str(h.hold_id);
  o.str(h.user_id);
  o.u8(static_cast<std::uint8_t>(h.kind));
  o.uv(h.pool_index);
  o.money(h.amount);
  encode_reservations(o, h.reserved);
  o.sv(h.placed_at_ms);
  o.sv(h.expires_at_ms);
  o.sv(h.day_start_ms);
  o.sv(h.rate_card_version);
  o.u8(static_cast<std::uint8_t>(h.state));
  o.str(h.cache_key);
  o.meta(h.metadata);
}

// Every hold names a pool of its account and holds no more than it reserved; an open
// hold's reservations name buckets of that pool (a capture or an expiry draws on them);
// open_holds counts the open ones.
bool holds_are_sound(const Account& a) {
  std::size_t open = 0;
  for (const auto& [id, h] : a.holds) {
    if (h.pool_index >= a.pools.size()) return false;
    if (h.amount.mc() < 0 || h.amount.mc() > Millicredits::kApiLimitMc) return false;
    if (h.state != HoldState::kOpen) continue;
    ++open;
    const PoolState& pool = a.pools[h.pool_index];
    for (const Reservation& r : h.reserved) {
      const bool found = std::any_of(pool.buckets.begin(), pool.buckets.end(),
                                     [&](const Bucket& b) { return b.bucket_id == r.bucket_id; });
      if (!found || r.credits.mc() < 0 || r.credits.mc() > Millicredits::kApiLimitMc) return false;
    }
  }
  return open == a.open_holds;
}

HoldRecord decode_hold(WireIn& in) {
  HoldRecord h;
  h.hold_id = in.str();
  h.user_id = in.str();
  h.kind = in.enum_u8<pricing::Kind>(kKindMax);
  h.pool_index = static_cast<std::size_t>(in.uv());
  h.amount = in.money();
  h.reserved = decode_reservations(in);
  h.placed_at_ms = in.sv();
  h.expires_at_ms = in.sv();
  h.day_start_ms = in.sv();
  h.rate_card_version = in.sv();
  h.state = in.enum_u8<HoldState>(kHoldStateMax);
  h.cache_key = in.str();
  h.metadata = in.meta();
  return h;
}

void encode_charge(WireOut& o, const ChargeTable& table, std::size_t i) {
  const ChargeRecord& c = table.at(i);
  o.str(ChargeTable::charge_id_of(table.seq_at(i)));
  o.str(table.user_id(c));
  o.u8(static_cast<std::uint8_t>(c.kind));
  o.uv(c.pool_index);
  o.money(c.cost);
  encode_reservations(o, c.drawn());
  o.money(c.refunded());
  o.sv(c.cycle_index());
  o.sv(c.at_ms);
  o.sv(c.day_start_ms());
  o.sv(c.rate_card_version);
  o.str(c.hold_id());
  o.uv(c.refunds().size());
  for (const auto& r : c.refunds()) {
    o.str(r.refund_id);
    o.money(r.credits);
    o.sv(r.at_ms);
    o.str(r.reason);
  }
}

// The charge's sequence number (0 and `in` failed when its id is not "c_<seq>") and record.
std::pair<std::uint64_t, ChargeRecord> decode_charge(WireIn& in, ChargeTable& table) {
  ChargeRecord c;
  std::optional<std::uint64_t> seq = ChargeTable::seq_of(in.str());
  if (!seq) in.fail();
  c.user = table.intern_user(in.str());
  c.kind = in.enum_u8<pricing::Kind>(kKindMax);
  const std::uint64_t pool_index = in.uv();
  if (pool_index >= kPoolsPerPlanMax) in.fail();
  c.pool_index = static_cast<std::uint16_t>(pool_index);
  c.cost = in.money();
  const ReservationList drawn = decode_reservations<ReservationList>(in);
  c.set_drawn(drawn);
  const Millicredits refunded = in.money();
  if (!c.set_cycle_index(in.sv())) in.fail();
  c.at_ms = in.sv();
  if (!c.set_day_start_ms(in.sv())) in.fail();
  c.rate_card_version = in.sv();
  const std::string hold_id = in.str();
  if (!hold_id.empty()) {
    std::optional<std::uint64_t> hold_seq = ChargeTable::seq_of(hold_id, 'h');
    if (!hold_seq) in.fail();
    c.hold_seq = hold_seq.value_or(0);
  }
  std::uint64_t n = in.uv();
  if (n > kRefundsPerChargeMax) in.fail();
  std::vector<RefundRecord> refunds;
  for (std::uint64_t i = 0; i < n && in.ok(); ++i) {
    RefundRecord r;
    r.refund_id = in.str();
    r.credits = in.money();
    r.at_ms = in.sv();
    r.reason = in.str();
    refunds.push_back(std::move(r));
  }
  c.restore_refunds(refunded, std::move(refunds));
  return {seq.value_or(0), std::move(c)};
}

void encode_account(WireOut& o, const Account& a) {
  o.str(a.account_id);
  o.b(a.closed);
  encode_plan(o, a.plan);
  o.opt_s(a.pending_plan);
  o.sv(a.signup_at_ms);
  o.sv(a.anchor_ms);
  o.sv(a.cycle_index);
  o.sv(a.cycle_serial);
  o.sv(a.cycle_start_ms);
  o.sv(a.cycle_end_ms);
  o.uv(a.next_bucket_id);
  o.uv(a.pools.size());
  for (const auto& p : a.pools) encode_pool(o, p);
  o.uv(a.holds.size());
  for (const auto& [id, h] : a.holds) encode_hold(o, h);
  o.uv(a.open_holds);
  // In sequence order (the table's), so that equal states give equal bytes.
  o.uv(a.charges.size());
  for (std::size_t i = 0; i < a.charges.size(); ++i) {
    encode_charge(o, a.charges, i);
  }
  o.sv(a.created_at_ms);
  o.uv(a.forgotten_charges.size());
  if (!a.forgotten_charges.empty()) {
    o.uv(a.forgotten_charges.first());
    o.str(a.forgotten_charges.gaps());
  }
}

// nullptr when a count is out of range (the reader is then failed).
std::unique_ptr<Account> decode_account(WireIn& in, const LedgerOptions& options,
                                        std::uint8_t version) {
  auto a = std::make_unique<Account>();
  a->account_id = in.str();
  a->closed = in.b();
  a->plan = decode_plan(in);
  a->pending_plan = in.opt_s();
  a->signup_at_ms = in.sv();
  a->anchor_ms = in.sv();
  a->cycle_index = in.sv();
  a->cycle_serial = in.sv();
  a->cycle_start_ms = in.sv();
  a->cycle_end_ms = in.sv();
  a->next_bucket_id = static_cast<std::uint32_t>(in.uv());
  std::uint64_t pools = in.uv();
  if (pools > kPoolsPerPlanMax) in.fail();
  for (std::uint64_t i = 0; i < pools && in.ok(); ++i) a->pools.push_back(decode_pool(in));
  std::uint64_t holds = in.uv();
  // Closed holds stay in the table until their charge ages out, so the cap is not the
  // open-hold capacity; the size of the bytes bounds it.
  if (holds > in.remaining()) in.fail();
  for (std::uint64_t i = 0; i < holds && in.ok(); ++i) {
    HoldRecord h = decode_hold(in);
    std::string id = h.hold_id;
    if (!a->holds.emplace(std::move(id), std::move(h)).second) in.fail();
  }
  a->open_holds = static_cast<std::size_t>(in.uv());
  if (a->open_holds > options.open_holds_per_account_max) in.fail();
  if (in.ok() && !holds_are_sound(*a)) in.fail();
  std::uint64_t charges = in.uv();
  if (charges > in.remaining()) in.fail();
  // Written in sequence order (older snapshots: in id string order); kept in sequence order.
  std::vector<std::pair<std::uint64_t, ChargeRecord>> read;
  if (in.ok()) read.reserve(static_cast<std::size_t>(charges));
  for (std::uint64_t i = 0; i < charges && in.ok(); ++i) {
    read.push_back(decode_charge(in, a->charges));
  }
  const auto by_seq = [](const auto& x, const auto& y) { return x.first < y.first; };
  if (!std::is_sorted(read.begin(), read.end(), by_seq))
    std::sort(read.begin(), read.end(), by_seq);
  if (in.ok()) a->charges.reserve(read.size());
  for (auto& [seq, c] : read) {
    // A duplicate id fails here: append takes increasing sequence numbers only.
    if (in.ok() && !a->charges.append(seq, std::move(c))) in.fail();
  }
  a->created_at_ms = in.sv();
  if (version >= 2) {
    const std::uint64_t forgotten = in.uv();
    if (forgotten > 0 && in.ok()) {
      const std::uint64_t first = in.uv();
      std::string gaps = in.str();
      if (in.ok() && !a->forgotten_charges.restore(forgotten, first, std::move(gaps))) in.fail();
    }
  }
  if (!in.ok()) return nullptr;
  return a;
}

Error bad(const WireIn& in, std::string_view what) {
  Error e(ErrorCode::kStorageFailed,
          "ledger snapshot: " + std::string(what) + " at byte " + std::to_string(in.pos()));
  e.with("offset", std::to_string(in.pos()));
  return e;
}

}  // namespace

void SnapshotAccess::encode(const Ledger& l, std::string& out, std::uint8_t version) {
  // The sections are the same in versions 3 and 4 but for the replies.
  CREDIT_ASSERT(version == kLedgerSnapshotVersion || version == kLedgerSnapshotVersionRateCards);
  WireOut o(out);
  o.u8(version);
  o.sv(l.now_ms_);
  o.uv(l.next_seq_);
  o.str(l.catalog_.source_text);
  o.uv(l.catalog_.plans.size());
  for (const auto& p : l.catalog_.plans) encode_plan(o, p);
  o.uv(l.accounts_.size());
  for (const auto& [id, a] : l.accounts_) encode_account(o, *a);
  o.uv(l.idempotency_.size());
  std::size_t written = 0;
  l.idempotency_.for_each([&](const IdempotencyTable::Entry& e) {
    o.hash(e.key_hash);
    o.hash(l.replies_.request_hash(e.reply_no));
    o.uv(e.reply_no);
    o.sv(e.expires_at_ms);
    ++written;
  });
  // for_each yields each live entry once: the count written first must match.
  CREDIT_ASSERT(written == l.idempotency_.size());
  o.uv(l.replies_.base());
  o.uv(l.replies_.size());
  std::string_view packed;
  std::string body;
  for (std::uint64_t no = l.replies_.base(); no < l.replies_.next(); ++no) {
    if (version >= kLedgerSnapshotVersionPackedReplies) {
      o.uv(static_cast<std::uint64_t>(l.replies_.packed_at(no, packed)));
      o.str(packed);
    } else {
      o.uv(static_cast<std::uint64_t>(l.replies_.at(no, body)));
      o.str(body);
    }
  }
  o.uv(l.rate_cards_.size());
  for (const auto& [card_version, text] : l.rate_cards_) {
    o.sv(card_version);
    o.str(text);
  }
}

Status SnapshotAccess::decode(std::string_view bytes, Ledger& l) {
  CREDIT_ASSERT(l.accounts_.empty() && l.idempotency_.size() == 0 && l.replies_.size() == 0);
  WireIn in(bytes);
  std::uint8_t version = in.u8();
  if (!in.ok()) return bad(in, "empty");
  if (version < kLedgerSnapshotVersionMin || version > kLedgerSnapshotVersion) {
    Error e(ErrorCode::kStorageFailed, "ledger snapshot version " + std::to_string(version) +
                                           "; this build reads " +
                                           std::to_string(kLedgerSnapshotVersionMin) + " to " +
                                           std::to_string(kLedgerSnapshotVersion));
    e.with("offset", "0");
    return e;
  }
  l.now_ms_ = in.sv();
  l.next_seq_ = in.uv();
  l.batch_seq_start_ = l.next_seq_;
  pricing::Catalog catalog;
  catalog.source_text = in.str();
  std::uint64_t plans = in.uv();
  if (plans > kPlansMax) return bad(in, "plan count out of range");
  for (std::uint64_t i = 0; i < plans && in.ok(); ++i) catalog.plans.push_back(decode_plan(in));
  if (!in.ok()) return bad(in, "bad catalog");
  l.catalog_ = std::move(catalog);

  std::uint64_t accounts = in.uv();
  if (accounts > l.options_.accounts_max) {
    return bad(in, "snapshot holds " + std::to_string(accounts) +
                       " accounts, more than --accounts-max " +
                       std::to_string(l.options_.accounts_max));
  }
  std::string previous_id;
  for (std::uint64_t i = 0; i < accounts; ++i) {
    std::unique_ptr<Account> a = decode_account(in, l.options_, version);
    if (a == nullptr) return bad(in, "bad account");
    // Written in id order: anything else is damage, and a hint makes the insert O(1).
    if (i > 0 && !(previous_id < a->account_id)) return bad(in, "accounts out of order");
    previous_id = a->account_id;
    auto placed = l.accounts_.emplace_hint(l.accounts_.end(), a->account_id, std::move(a));
    l.index_account(placed->first, placed->second.get());
  }

  std::uint64_t entries = in.uv();
  if (entries > l.idempotency_.keys_max()) {
    // Not damage: a start with a smaller capacity than the keys still live (none is
    // dropped before its 24 hours). Said as the replay of the log says it.
    return Error(ErrorCode::kStorageFailed,
                 "the snapshot holds " + std::to_string(entries) +
                     " live idempotency keys, more than the table holds (" +
                     std::to_string(l.idempotency_.keys_max()) +
                     ", --idempotency-keys-max): start with a larger capacity, at least " +
                     std::to_string(entries));
  }
  struct Read {
    Hash128 key_hash, request_hash;
    std::uint64_t reply_no;
    std::int64_t expires_at_ms;
  };
  std::vector<Read> read;
  read.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(entries, in.remaining() / 34)));
  std::int64_t previous_expiry = 0;
  for (std::uint64_t i = 0; i < entries && in.ok(); ++i) {
    Read r;
    r.key_hash = in.hash();
    r.request_hash = in.hash();
    r.reply_no = in.uv();
    r.expires_at_ms = in.sv();
    if (r.expires_at_ms <= 0 || r.expires_at_ms < previous_expiry) {
      return bad(in, "idempotency entries out of expiry order");
    }
    previous_expiry = r.expires_at_ms;
    read.push_back(r);
  }
  l.replies_.reset(in.uv());
  std::uint64_t replies = in.uv();
  if (replies > in.remaining()) return bad(in, "reply count out of range");
  const bool packed = version >= kLedgerSnapshotVersionPackedReplies;
  for (std::uint64_t i = 0; i < replies && in.ok(); ++i) {
    int status = static_cast<int>(in.uv());
    std::string body = in.str();
    if (!in.ok()) break;
    // The entries below name their request hashes.
    if (!packed) {
      l.replies_.push(status, body, Hash128{});
    } else if (packed_reply_is_valid(body)) {
      l.replies_.push_packed(status, body, Hash128{});
    } else {
      return bad(in, "stored reply " + std::to_string(l.replies_.next()) + " is not packed");
    }
  }
  if (!in.ok()) return bad(in, "bad idempotency table");
  if (version >= kLedgerSnapshotVersionRateCards) {
    std::uint64_t cards = in.uv();
    if (cards > kRateCardsMax) return bad(in, "rate card count out of range");
    for (std::uint64_t i = 0; i < cards && in.ok(); ++i) {
      std::int64_t card_version = in.sv();
      l.rate_cards_[card_version] = in.str();
    }
    if (!in.ok()) return bad(in, "bad rate cards");
  }
  if (!in.done()) return bad(in, "bytes after the end");
  // The table is sized for every key at once, and the slots of the keys a few ahead are
  // loaded first: a snapshot of millions of keys is one cache miss per key otherwise.
  constexpr std::size_t kPrefetchKeysAhead = 8;
  l.idempotency_.reserve(read.size());
  for (std::size_t i = 0; i < read.size(); ++i) {
    if (i + kPrefetchKeysAhead < read.size()) {
      l.idempotency_.prefetch(read[i + kPrefetchKeysAhead].key_hash);
    }
    const Read& r = read[i];
    // Every key must answer with a stored reply, or a replay would read past the deque.
    if (!l.replies_.contains(r.reply_no)) {
      return bad(in, "idempotency entry names reply " + std::to_string(r.reply_no) +
                         " outside the stored replies");
    }
    if (l.idempotency_.find(r.key_hash, 0) != nullptr) return bad(in, "duplicate idempotency key");
    l.replies_.set_request_hash(r.reply_no, r.request_hash);
    l.idempotency_.insert(r.key_hash, r.reply_no, r.expires_at_ms);
  }
  return ok_status();
}

void encode_ledger_snapshot(const Ledger& ledger, std::string& out, std::uint8_t version) {
  SnapshotAccess::encode(ledger, out, version);
}

Status decode_ledger_snapshot(std::string_view bytes, Ledger& fresh) {
  return SnapshotAccess::decode(bytes, fresh);
}

Result<std::unique_ptr<Ledger>> decode_ledger_snapshot(std::string_view bytes,
                                                       LedgerOptions options) {
  auto ledger = std::make_unique<Ledger>(pricing::Catalog{}, options);
  Status s = SnapshotAccess::decode(bytes, *ledger);
  if (!s.ok()) return s.error();
  return ledger;
}

}  // namespace credit::ledger
