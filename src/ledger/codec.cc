#include "ledger/codec.h"

#include <cstring>

#include "base/bytes.h"
#include "ledger/internal/wire.h"

namespace credit::ledger {
namespace {

// The shared field encodings (ledger/internal/wire.h), named for this file's use.
using Out = internal::WireOut;
using In = internal::WireIn;

// Charges and holds share their fields; a hold has its ttl_ms after priced_by_usage.
template <typename T>
void encode_metered(Out& o, const T& c) {
  o.str(c.account_id);
  o.str(c.user_id);
  o.u8(static_cast<std::uint8_t>(c.kind));
  o.str(c.pool);
  o.money(c.amount);
  o.b(c.priced_by_usage);
  if constexpr (std::is_same_v<T, Hold>) o.sv(c.ttl_ms);
  o.sv(c.rate_card_version);
  o.usage(c.usage);
  o.meta(c.metadata);
  o.str(c.cache_key);
  o.b(c.cache_hit);
  o.money(c.saved);
}

template <typename T>
T decode_metered(In& in) {
  T c;
  c.account_id = in.str();
  c.user_id = in.str();
  std::uint8_t k = in.u8();
  c.kind = static_cast<pricing::Kind>(k < pricing::kKindCount ? k : 0);
  c.pool = in.str();
  c.amount = in.money();
  c.priced_by_usage = in.b();
  if constexpr (std::is_same_v<T, Hold>) c.ttl_ms = in.sv();
  c.rate_card_version = in.sv();
  c.usage = in.usage();
  c.metadata = in.meta();
  c.cache_key = in.str();
  c.cache_hit = in.b();
  c.saved = in.money();
  return c;
}

void encode_body(Out& o, const CommandBody& body) {
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, CreateAccount>) {
          o.str(c.account_id);
          o.str(c.plan_id);
          o.opt_i(c.signup_at_ms);
        } else if constexpr (std::is_same_v<T, CloseAccount>) {
          o.str(c.account_id);
        } else if constexpr (std::is_same_v<T, ChangePlan>) {
          o.str(c.account_id);
          o.str(c.plan_id);
        } else if constexpr (std::is_same_v<T, AddGrant>) {
          o.str(c.account_id);
          o.str(c.pool);
          o.u8(static_cast<std::uint8_t>(c.source));
          o.money(c.credits);
          o.opt_i(c.expires_at_ms);
          o.str(c.reason);
        } else if constexpr (std::is_same_v<T, Charge> || std::is_same_v<T, Hold>) {
          encode_metered(o, c);
        } else if constexpr (std::is_same_v<T, Capture>) {
          o.str(c.account_id);
          o.str(c.hold_id);
          o.opt_m(c.amount);
          o.b(c.priced_by_usage);
          o.b(c.overage_charge);
          o.usage(c.usage);
          o.meta(c.metadata);
        } else if constexpr (std::is_same_v<T, Void>) {
          o.str(c.account_id);
          o.str(c.hold_id);
        } else if constexpr (std::is_same_v<T, Refund>) {
          o.str(c.account_id);
          o.str(c.charge_id);
          o.opt_m(c.credits);
          o.str(c.reason);
        } else if constexpr (std::is_same_v<T, Sweep>) {
        } else if constexpr (std::is_same_v<T, LoadCatalog>) {
          o.str(c.toml_text);
        }
      },
      body);
}

bool decode_body(In& in, std::uint8_t tag, CommandBody& body) {
  switch (tag) {
    case 0: {
      CreateAccount c;
      c.account_id = in.str();
      c.plan_id = in.str();
      c.signup_at_ms = in.opt_i();
      body = std::move(c);
      return true;
    }
    case 1:
      body = CloseAccount{in.str()};
      return true;
    case 2: {
      ChangePlan c;
      c.account_id = in.str();
      c.plan_id = in.str();
      body = std::move(c);
      return true;
    }
    case 3: {
      AddGrant c;
      c.account_id = in.str();
      c.pool = in.str();
      std::uint8_t src = in.u8();
      if (src > 2) return false;
      c.source = static_cast<GrantSource>(src);
      c.credits = in.money();
      c.expires_at_ms = in.opt_i();
      c.reason = in.str();
      body = std::move(c);
      return true;
    }
    case 4:
      body = decode_metered<Charge>(in);
      return true;
    case 5:
      body = decode_metered<Hold>(in);
      return true;
    case 6: {
      Capture c;
      c.account_id = in.str();
      c.hold_id = in.str();
      c.amount = in.opt_m();
      c.priced_by_usage = in.b();
      c.overage_charge = in.b();
      c.usage = in.usage();
      c.metadata = in.meta();
      body = std::move(c);
      return true;
    }
    case 7: {
      Void c;
      c.account_id = in.str();
      c.hold_id = in.str();
      body = std::move(c);
      return true;
    }
    case 8: {
      Refund c;
      c.account_id = in.str();
      c.charge_id = in.str();
      c.credits = in.opt_m();
      c.reason = in.str();
      body = std::move(c);
      return true;
    }
    case 9:
      body = Sweep{};
      return true;
    case 10:
      body = LoadCatalog{in.str()};
      return true;
  }
  return false;
}

}  // namespace

void encode_command_body(const CommandBody& body, std::string& out) {
  Out o(out);
  o.u8(static_cast<std::uint8_t>(body.index()));
  encode_body(o, body);
}

void encode_batch(std::int64_t now_ms, const std::vector<const Command*>& commands,
                  std::string& out) {
  Out o(out);
  o.u8(kCodecVersion);
  o.sv(now_ms);
  o.uv(commands.size());
  for (const Command* c : commands) {
    o.u8(static_cast<std::uint8_t>(c->body.index()));
    o.b(c->idem.has_key);
    if (c->idem.has_key) {
      o.hash(c->idem.scope_key_hash);
      o.hash(c->idem.request_hash);
      o.str(c->idem.key);
    }
    o.u8(static_cast<std::uint8_t>(c->precheck_error));
    if (c->precheck_error == ErrorCode::kRateLimited) o.sv(c->retry_after_ms);
    encode_body(o, c->body);
  }
}

Result<DecodedBatch> decode_batch(std::string_view bytes) {
  In in(bytes);
  std::uint8_t version = in.u8();
  if (!in.ok() || version != kCodecVersion) {
    return Error(ErrorCode::kStorageFailed,
                 "unknown command batch version " + std::to_string(version));
  }
  DecodedBatch batch;
  batch.now_ms = in.sv();
  std::uint64_t n = in.uv();
  if (!in.ok() || n > bytes.size()) return Error(ErrorCode::kStorageFailed, "bad batch header");
  batch.commands.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    Command c;
    std::uint8_t tag = in.u8();
    c.idem.has_key = in.b();
    if (c.idem.has_key) {
      c.idem.scope_key_hash = in.hash();
      c.idem.request_hash = in.hash();
      c.idem.key = in.str();
    }
    c.precheck_error = static_cast<ErrorCode>(in.u8());
    if (c.precheck_error == ErrorCode::kRateLimited) c.retry_after_ms = in.sv();
    if (!decode_body(in, tag, c.body) || !in.ok()) {
      return Error(ErrorCode::kStorageFailed, "bad command " + std::to_string(i) + " in batch");
    }
    batch.commands.push_back(std::move(c));
  }
  if (!in.done()) return Error(ErrorCode::kStorageFailed, "trailing bytes after batch");
  return batch;
}

}  // namespace credit::ledger
