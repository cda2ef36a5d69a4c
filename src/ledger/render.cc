#include "ledger/render.h"

#include <cstring>

#include "base/assert.h"
#include "base/json_writer.h"
#include "time/time.h"

namespace credit::ledger {

std::string_view bucket_source_name(BucketKind kind) {
  switch (kind) {
    case BucketKind::kAllowance:
      return "allowance";
    case BucketKind::kRollover:
      return "rollover";
    case BucketKind::kPack:
      return "pack";
    case BucketKind::kAdjustment:
      return "adjustment";
  }
  return "adjustment";
}

void render_account_view(const AccountView& v, std::string& out) {
  json::Writer w(out);
  w.begin_object();
  w.key("account_id").string(v.account_id);
  w.key("plan").string(v.plan);
  w.key("status").string(v.closed ? "closed" : "open");
  w.key("cycle").begin_object();
  w.key("start").string(format_rfc3339(v.cycle_start_ms));
  w.key("end").string(format_rfc3339(v.cycle_end_ms));
  w.end_object();
  w.key("pools").begin_object();
  for (const auto& p : v.pools) {
    w.key(p.name).begin_object();
    w.key("allowance").raw(format_credits(p.allowance));
    w.key("extra").raw(format_credits(p.extra));
    w.key("used").raw(format_credits(p.used));
    w.key("held").raw(format_credits(p.held));
    w.key("available").raw(format_credits(p.available));
    if (p.daily_cap) {
      w.key("daily_cap").raw(format_credits(*p.daily_cap));
    } else {
      w.key("daily_cap").null();
    }
    w.key("used_today").raw(format_credits(p.used_today));
    w.key("available_now").raw(format_credits(p.available_now));
    w.end_object();
  }
  w.end_object();
  if (v.pending_plan) {
    w.key("pending_plan").string(*v.pending_plan);
  } else {
    w.key("pending_plan").null();
  }
  w.end_object();
}

void render_grant(std::string_view pool, const Bucket& g, std::string& out) {
  json::Writer w(out);
  w.begin_object();
  w.key("grant_id").string(g.grant_id);
  w.key("pool").string(pool);
  w.key("source").string(bucket_source_name(g.kind));
  w.key("credits").raw(format_credits(g.credits_signed));
  w.key("remaining").raw(format_credits(g.ended ? Millicredits::zero() : g.free()));
  if (g.expires_at_ms == INT64_MAX || g.credits_signed.is_negative()) {
    w.key("expires_at").null();
  } else {
    w.key("expires_at").string(format_rfc3339(g.expires_at_ms));
  }
  w.key("reason").string(g.reason);
  w.key("created_at").string(format_rfc3339(g.created_at_ms));
  w.end_object();
}

// The charge's answer is on the hot path: written through a pointer into room made at
// once, not through json::Writer (the keys need no escaping), the same bytes.
namespace {

template <std::size_t N>
char* put(char* out, const char (&text)[N]) {
  std::memcpy(out, text, N - 1);
  return out + N - 1;
}

// The most bytes write_drawn writes for `drawn`.
std::size_t drawn_bytes_max(const std::vector<DrawnFrom>& drawn) {
  std::size_t bytes = 2;
  for (const DrawnFrom& d : drawn) {
    bytes += sizeof(",{\"source\":,\"credits\":}") + json::quoted_bytes_max(d.source.size()) +
             kCreditsTextBytesMax;
  }
  return bytes;
}

char* write_drawn(char* out, const std::vector<DrawnFrom>& drawn) {
  *out++ = '[';
  for (std::size_t i = 0; i < drawn.size(); ++i) {
    out = i == 0 ? put(out, "{\"source\":") : put(out, ",{\"source\":");
    out = json::write_string(out, drawn[i].source);
    out = put(out, ",\"credits\":");
    out = write_credits(out, drawn[i].credits);
    *out++ = '}';
  }
  *out++ = ']';
  return out;
}

// Grows `out` by bytes_max, has `write` fill it from the old end (returning the end of
// what it wrote) and cuts `out` back to that.
template <class Write>
void append_bounded(std::string& out, std::size_t bytes_max, Write write) {
  const std::size_t at = out.size();
  out.resize(at + bytes_max);
  char* end = write(out.data() + at);
  CREDIT_ASSERT(end <= out.data() + out.size());
  out.resize(static_cast<std::size_t>(end - out.data()));
}

}  // namespace

void render_drawn(const std::vector<DrawnFrom>& drawn, std::string& out) {
  append_bounded(out, drawn_bytes_max(drawn), [&](char* at) { return write_drawn(at, drawn); });
}

void render_charge(std::string_view charge_id, Millicredits cost, std::string_view pool,
                   Millicredits available_after, const std::vector<DrawnFrom>& drawn, bool cached,
                   Millicredits saved, std::string_view hold_id, std::string& out) {
  constexpr char kFixed[] =
      "{\"charge_id\":,\"cost\":,\"pool\":,\"available_after\":,\"drawn_from\":,\"cached\":false,"
      "\"saved\":,\"response\":null,\"hold_id\":}";
  const std::size_t bytes_max = sizeof(kFixed) + json::quoted_bytes_max(charge_id.size()) +
                                json::quoted_bytes_max(pool.size()) +
                                json::quoted_bytes_max(hold_id.size()) + 3 * kCreditsTextBytesMax +
                                drawn_bytes_max(drawn);
  append_bounded(out, bytes_max, [&](char* at) {
    at = put(at, "{\"charge_id\":");
    at = json::write_string(at, charge_id);
    at = put(at, ",\"cost\":");
    at = write_credits(at, cost);
    at = put(at, ",\"pool\":");
    at = json::write_string(at, pool);
    at = put(at, ",\"available_after\":");
    at = write_credits(at, available_after);
    at = put(at, ",\"drawn_from\":");
    at = write_drawn(at, drawn);
    if (cached) {
      at = put(at, ",\"cached\":true,\"saved\":");
      at = write_credits(at, saved);
    } else {
      at = put(at, ",\"cached\":false,\"saved\":null");
    }
    at = put(at, ",\"response\":null");
    if (!hold_id.empty()) {
      at = put(at, ",\"hold_id\":");
      at = json::write_string(at, hold_id);
    }
    *at++ = '}';
    return at;
  });
}

void append_cache_generation(std::uint64_t generation, std::string& body) {
  if (generation == 0 || body.empty() || body.back() != '}') return;
  body.pop_back();
  body.append(kCacheGenerationField).append(std::to_string(generation)).push_back('}');
}

void render_hold(const HoldRecord& h, Millicredits available_after,
                 const std::vector<DrawnFrom>& drawn, std::string& out) {
  json::Writer w(out);
  w.begin_object();
  w.key("hold_id").string(h.hold_id);
  w.key("amount").raw(format_credits(h.amount));
  w.key("expires_at").string(format_rfc3339(h.expires_at_ms));
  w.key("available_after").raw(format_credits(available_after));
  w.key("drawn_from").raw("");  // the array below is this key's value
  render_drawn(drawn, out);
  w.end_object();
}

}  // namespace credit::ledger
