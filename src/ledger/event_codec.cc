// src/ledger/event_codec.cc
// Events to bytes and back (format in event_codec.h).
#include "ledger/event_codec.h"

#include "ledger/internal/wire.h"

namespace credit::ledger {
namespace {

constexpr std::uint8_t kNoKind = 0xff;
constexpr std::uint8_t kEventTypeMax = static_cast<std::uint8_t>(EventType::kAccountClosed);
constexpr std::uint8_t kKindMax = static_cast<std::uint8_t>(pricing::kKindCount - 1);
// A charge draws from at most every live grant of a pool and the allowance; more entries
// read back mean the bytes are not what was written.
constexpr std::uint64_t kDrawnFromMax = 1 << 16;

}  // namespace

void encode_event(const Event& e, std::string& out) {
  internal::WireOut o(out);
  o.u8(kEventCodecVersion);
  o.uv(e.seq);
  o.sv(e.at_ms);
  o.str(e.account_id);
  o.str(e.user_id);
  o.u8(static_cast<std::uint8_t>(e.type));
  o.u8(e.kind ? static_cast<std::uint8_t>(*e.kind) : kNoKind);
  o.str(e.pool);
  o.money(e.credits);
  o.opt_m(e.available_after);
  o.uv(e.drawn_from.size());
  for (const DrawnFrom& d : e.drawn_from) {
    o.str(d.source);
    o.money(d.credits);
  }
  o.str(e.refused_by);
  o.str(e.priced_by);
  o.usage(e.usage);
  o.meta(e.metadata);
  o.str(e.cache_key);
  o.str(e.idempotency_key);
  o.sv(e.rate_card_version);
  o.b(e.imported);
  o.str(e.hold_id);
  o.str(e.charge_id);
  o.str(e.grant_id);
  o.str(e.refund_id);
  o.str(e.object);
  o.str(e.plan);
  o.str(e.previous_plan);
  o.sv(e.proration_usd_cents);
  o.str(e.reason);
}

Result<Event> decode_event(std::string_view bytes) {
  internal::WireIn in(bytes);
  std::uint8_t version = in.u8();
  if (in.ok() && version != kEventCodecVersion) {
    return Error(ErrorCode::kStorageFailed, "event encoding version " + std::to_string(version) +
                                                "; this build reads " +
                                                std::to_string(kEventCodecVersion));
  }
  Event e;
  e.seq = in.uv();
  e.at_ms = in.sv();
  e.account_id = in.str();
  e.user_id = in.str();
  e.type = in.enum_u8<EventType>(kEventTypeMax);
  std::uint8_t kind = in.u8();
  if (kind != kNoKind) {
    if (kind > kKindMax) in.fail();
    e.kind = static_cast<pricing::Kind>(kind > kKindMax ? 0 : kind);
  }
  e.pool = in.str();
  e.credits = in.money();
  e.available_after = in.opt_m();
  std::uint64_t drawn = in.uv();
  if (drawn > kDrawnFromMax) in.fail();
  for (std::uint64_t i = 0; i < drawn && in.ok(); ++i) {
    DrawnFrom d;
    d.source = in.str();
    d.credits = in.money();
    e.drawn_from.push_back(std::move(d));
  }
  e.refused_by = in.str();
  e.priced_by = in.str();
  e.usage = in.usage();
  e.metadata = in.meta();
  e.cache_key = in.str();
  e.idempotency_key = in.str();
  e.rate_card_version = in.sv();
  e.imported = in.b();
  e.hold_id = in.str();
  e.charge_id = in.str();
  e.grant_id = in.str();
  e.refund_id = in.str();
  e.object = in.str();
  e.plan = in.str();
  e.previous_plan = in.str();
  e.proration_usd_cents = in.sv();
  e.reason = in.str();
  if (!in.ok() || !in.done()) {
    return Error(ErrorCode::kStorageFailed,
                 "bad event encoding at byte " + std::to_string(in.pos()));
  }
  return e;
}

}  // namespace credit::ledger
