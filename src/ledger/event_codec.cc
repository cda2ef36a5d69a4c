// src/ledger/event_codec.cc
// Events to bytes and back (format in event_codec.h); decoding assigns strings in place
// from views of the input, so a reused Event costs no allocation per short string.
#include "ledger/event_codec.h"

#include "ledger/internal/view_reader.h"
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

namespace {

// Reads what WireOut wrote, as views into the input: strings are assigned in place, so
// decoding into a reused Event allocates nothing for strings that fit its buffers. A short
// read or a bad varint makes ok() false and every later read return zero values.
class EventReader : public internal::ViewReader {
 public:
  using ViewReader::ViewReader;
  // clear + append: most event strings are empty or short, and std::string::assign goes
  // through the general (overlap-safe) replace path, which costs more than the copy.
  void str(std::string& out) {
    const std::string_view v = view();
    out.clear();
    if (!v.empty()) out.append(v.data(), v.size());
  }
  void opt_i(std::optional<std::int64_t>& out) {
    if (b()) {
      out = sv();
    } else {
      out.reset();
    }
  }
  void opt_s(std::optional<std::string>& out) {
    if (b()) {
      out.emplace(view());
    } else {
      out.reset();
    }
  }
  void opt_m(std::optional<Millicredits>& out) {
    if (b()) {
      out = money();
    } else {
      out.reset();
    }
  }
  void usage(std::optional<pricing::Usage>& out) {
    if (!b()) {
      out.reset();
      return;
    }
    pricing::Usage& u = out ? *out : out.emplace();
    opt_s(u.model);
    opt_i(u.input_tokens);
    opt_i(u.output_tokens);
    opt_i(u.files_read);
    opt_i(u.lines_emitted);
    opt_i(u.lines_changed);
    opt_s(u.size);
    opt_i(u.count);
    opt_i(u.duration_ms);
    opt_i(u.records);
  }
  void meta(Metadata& m) {
    m.extra.clear();
    if (!b()) {
      for (std::string* f : {&m.file, &m.feature, &m.model, &m.snapshot_id, &m.call_site, &m.intent,
                             &m.request_hash}) {
        f->clear();
      }
      return;
    }
    str(m.file);
    str(m.feature);
    str(m.model);
    str(m.snapshot_id);
    str(m.call_site);
    str(m.intent);
    str(m.request_hash);
    const std::uint64_t n = uv();
    if (n > internal::kMetadataExtraMax) {
      fail();
      return;
    }
    for (std::uint64_t i = 0; i < n && ok_; ++i) {
      std::string_view k = view();
      std::string_view v = view();
      m.extra.emplace_back(std::string(k), std::string(v));
    }
  }
};

// The encoding's first byte: its version (an unknown one is refused, not guessed).
Status check_version(EventReader& in) {
  const std::uint8_t version = in.u8();
  if (in.ok() && version != kEventCodecVersion) {
    return Error(ErrorCode::kStorageFailed, "event encoding version " + std::to_string(version) +
                                                "; this build reads " +
                                                std::to_string(kEventCodecVersion));
  }
  return ok_status();
}

}  // namespace

Status decode_event_into(std::string_view bytes, Event& e) {
  EventReader in(bytes);
  if (Status v = check_version(in); !v.ok()) return v;
  e.seq = in.uv();
  e.at_ms = in.sv();
  in.str(e.account_id);
  in.str(e.user_id);
  const std::uint8_t type = in.u8();
  if (type > kEventTypeMax) in.fail();
  e.type = static_cast<EventType>(type > kEventTypeMax ? 0 : type);
  const std::uint8_t kind = in.u8();
  if (kind == kNoKind) {
    e.kind.reset();
  } else {
    if (kind > kKindMax) in.fail();
    e.kind = static_cast<pricing::Kind>(kind > kKindMax ? 0 : kind);
  }
  in.str(e.pool);
  e.credits = in.money();
  in.opt_m(e.available_after);
  const std::uint64_t drawn = in.uv();
  if (drawn > kDrawnFromMax) in.fail();
  e.drawn_from.clear();
  for (std::uint64_t i = 0; i < drawn && in.ok(); ++i) {
    DrawnFrom& d = e.drawn_from.emplace_back();
    in.str(d.source);
    d.credits = in.money();
  }
  in.str(e.refused_by);
  in.str(e.priced_by);
  in.usage(e.usage);
  in.meta(e.metadata);
  in.str(e.cache_key);
  in.str(e.idempotency_key);
  e.rate_card_version = in.sv();
  e.imported = in.b();
  in.str(e.hold_id);
  in.str(e.charge_id);
  in.str(e.grant_id);
  in.str(e.refund_id);
  in.str(e.object);
  in.str(e.plan);
  in.str(e.previous_plan);
  e.proration_usd_cents = in.sv();
  in.str(e.reason);
  if (!in.ok() || !in.done()) {
    return Error(ErrorCode::kStorageFailed,
                 "bad event encoding at byte " + std::to_string(in.pos()));
  }
  return ok_status();
}

Status decode_event_head(std::string_view bytes, EventHead& head) {
  EventReader in(bytes);
  if (Status v = check_version(in); !v.ok()) return v;
  head.seq = in.uv();
  head.at_ms = in.sv();
  head.account_id = in.view();
  head.user_id = in.view();
  const std::uint8_t type = in.u8();
  if (type > kEventTypeMax) in.fail();
  head.type = static_cast<EventType>(type > kEventTypeMax ? 0 : type);
  const std::uint8_t kind = in.u8();
  if (kind == kNoKind) {
    head.kind.reset();
  } else {
    if (kind > kKindMax) in.fail();
    head.kind = static_cast<pricing::Kind>(kind > kKindMax ? 0 : kind);
  }
  if (!in.ok()) {
    return Error(ErrorCode::kStorageFailed,
                 "bad event encoding at byte " + std::to_string(in.pos()));
  }
  return ok_status();
}

Result<Event> decode_event(std::string_view bytes) {
  Result<Event> out{Event{}};
  Status s = decode_event_into(bytes, *out);
  if (!s.ok()) return s.error();
  return out;
}

}  // namespace credit::ledger
