// src/ledger/codec.cc
// Commands to bytes and back: the batch encoding of the log (version 2, interned ids;
// format in codec.h) and the canonical body bytes of the request hash (version 1 fields).
// Owns: both encodings. Does not: checksum or frame (store/wal_format.h).
#include "ledger/codec.h"

#include <array>
#include <cstring>
#include <functional>
#include <type_traits>

#include "base/bytes.h"
#include "ledger/internal/view_reader.h"
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
        } else if constexpr (std::is_same_v<T, LoadRateCard>) {
          o.sv(c.version);
          o.str(c.toml_text);
        }
      },
      body);
}

}  // namespace

void encode_command_body(const CommandBody& body, std::string& out) {
  Out o(out);
  o.u8(static_cast<std::uint8_t>(body.index()));
  encode_body(o, body);
}

// ---------------------------------------------------------------------------------------
// The batch encoding (version 2).
namespace {

constexpr std::uint8_t kHeadTagMask = 0x0f;
constexpr std::uint8_t kHeadHasKey = 0x10;
constexpr std::uint8_t kHeadPrecheck = 0x20;
constexpr std::uint8_t kTagMax = std::variant_size_v<CommandBody> - 1;
static_assert(kTagMax <= kHeadTagMask);
constexpr std::uint8_t kErrorCodeMax = static_cast<std::uint8_t>(ErrorCode::kIdempotencyCapacity);
constexpr std::uint8_t kKindMax = static_cast<std::uint8_t>(pricing::kKindCount - 1);
constexpr std::uint8_t kGrantSourceMax = static_cast<std::uint8_t>(GrantSource::kAdjustment);

// Metered (charge, hold) flags.
constexpr std::uint8_t kMPricedByUsage = 1 << 0;
constexpr std::uint8_t kMUsage = 1 << 1;
constexpr std::uint8_t kMMetadata = 1 << 2;
constexpr std::uint8_t kMCacheHit = 1 << 3;
constexpr std::uint8_t kMCacheKey = 1 << 4;
constexpr std::uint8_t kMSaved = 1 << 5;
constexpr std::uint8_t kMRateCard = 1 << 6;
constexpr std::uint8_t kMCacheGeneration = 1 << 7;
// Capture flags.
constexpr std::uint8_t kCAmount = 1 << 0;
constexpr std::uint8_t kCPricedByUsage = 1 << 1;
constexpr std::uint8_t kCOverage = 1 << 2;
constexpr std::uint8_t kCUsage = 1 << 3;
constexpr std::uint8_t kCMetadata = 1 << 4;
// Metadata mask: bits 0-6 the known strings, bit 7 the extra pairs.
constexpr std::uint8_t kMetaExtra = 1 << 7;
// Key modes (low two bits of the key header).
constexpr std::uint64_t kKeyPlain = 0;
constexpr std::uint64_t kKeyPrefixed = 1;
constexpr std::uint64_t kKeyUuidLower = 2;
constexpr std::uint64_t kKeyUuidUpper = 3;
constexpr std::size_t kUuidChars = 36;
constexpr std::size_t kUuidBytes = 16;
// A shared prefix shorter than this costs more (its length byte) than it saves.
constexpr std::size_t kKeyPrefixBytesMin = 2;

// Where the dashes of a canonical UUID are.
bool uuid_dash_at(std::size_t i) {
  return i == 8 || i == 13 || i == 18 || i == 23;
}

// Digit values of one case of hexadecimal, -1 for any other byte.
constexpr std::array<std::int8_t, 256> hex_digits(bool upper) {
  std::array<std::int8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = -1;
    if (c >= '0' && c <= '9') t[c] = static_cast<std::int8_t>(c - '0');
    const char a = upper ? 'A' : 'a';
    if (c >= a && c < a + 6) t[c] = static_cast<std::int8_t>(c - a + 10);
  }
  return t;
}
constexpr std::array<std::int8_t, 256> kHexLower = hex_digits(false);
constexpr std::array<std::int8_t, 256> kHexUpper = hex_digits(true);

// The 16 bytes of a canonical UUID spelled in one case, or false.
bool parse_uuid(std::string_view s, bool upper, unsigned char* out) {
  if (s.size() != kUuidChars) return false;
  const std::array<std::int8_t, 256>& hex = upper ? kHexUpper : kHexLower;
  std::size_t n = 0;
  for (std::size_t i = 0; i < kUuidChars;) {
    if (uuid_dash_at(i)) {
      if (s[i] != '-') return false;
      ++i;
      continue;
    }
    const int hi = hex[static_cast<unsigned char>(s[i])];
    const int lo = hex[static_cast<unsigned char>(s[i + 1])];
    if (hi < 0 || lo < 0) return false;
    out[n++] = static_cast<unsigned char>(hi << 4 | lo);
    i += 2;
  }
  return true;
}

void format_uuid(const unsigned char* in, bool upper, std::string& out) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  out.resize(kUuidChars);
  std::size_t n = 0;
  for (std::size_t i = 0; i < kUuidChars;) {
    if (uuid_dash_at(i)) {
      out[i++] = '-';
      continue;
    }
    out[i++] = digits[in[n] >> 4];
    out[i++] = digits[in[n] & 0x0f];
    ++n;
  }
}

// Appends to a string; the batch's strings are short, so this stays simple.
class Writer {
 public:
  explicit Writer(std::string& s) : s_(s) {}
  void u8(std::uint8_t v) { s_.push_back(static_cast<char>(v)); }
  void uv(std::uint64_t v) {
    char buf[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    s_.append(buf, n);
  }
  void sv(std::int64_t v) {
    uv((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void money(Millicredits m) { sv(m.mc()); }
  void raw(const void* p, std::size_t n) { s_.append(static_cast<const char*>(p), n); }
  void str(std::string_view v) {
    uv(v.size());
    s_.append(v);
  }

 private:
  std::string& s_;
};

// Reads what Writer wrote (views into the input; see internal/view_reader.h).
using Reader = internal::ViewReader;

// The per-batch string dictionary on the encoding side. Reused across batches by one
// thread: clearing costs nothing per slot (a generation number marks live slots).
class InternTable {
 public:
  // The index of `s` when already defined in this batch, else defines it and returns
  // nothing. `s` must outlive the batch (it points into the commands being encoded).
  std::optional<std::uint32_t> find_or_define(std::string_view s) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const std::size_t mask = slots_.size() - 1;
    const std::size_t h = std::hash<std::string_view>{}(s);
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      if (slot.generation != generation_) {
        slot = Slot{h, count_, generation_, s};
        ++count_;
        return std::nullopt;
      }
      if (slot.hash == h && slot.text == s) return slot.index;
    }
  }
  void clear() {
    count_ = 0;
    if (++generation_ == 0) {  // wrapped: every stale slot must read as free again
      for (Slot& slot : slots_) slot.generation = 0;
      generation_ = 1;
    }
  }

 private:
  struct Slot {
    std::size_t hash = 0;
    std::uint32_t index = 0;
    std::uint32_t generation = 0;
    std::string_view text;
  };
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(std::max<std::size_t>(64, old.size() * 2), Slot{});
    const std::size_t mask = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.generation != generation_) continue;
      std::size_t i = slot.hash & mask;
      while (slots_[i].generation == generation_) i = (i + 1) & mask;
      slots_[i] = slot;
    }
  }

  std::vector<Slot> slots_;
  std::uint32_t count_ = 0;
  std::uint32_t generation_ = 1;
};

class BatchEncoder {
 public:
  void encode(std::int64_t now_ms, const std::vector<const Command*>& commands, std::string& out) {
    table_.clear();
    previous_key_ = {};
    // Most commands take well under this: one reservation instead of a doubling series.
    constexpr std::size_t kReservedBytesPerCommand = 64;
    out.reserve(out.size() + commands.size() * kReservedBytesPerCommand);
    Writer w(out);
    w.u8(kCodecVersion);
    w.sv(now_ms);
    w.uv(commands.size());
    for (const Command* c : commands) command(w, *c);
  }

 private:
  void id(Writer& w, std::string_view s) {
    if (auto index = table_.find_or_define(s)) {
      w.uv(std::uint64_t{*index} + 1);
      return;
    }
    w.u8(0);
    w.str(s);
  }

  void key(Writer& w, std::string_view k) {
    unsigned char uuid[kUuidBytes];
    for (bool upper : {false, true}) {
      if (parse_uuid(k, upper, uuid)) {
        w.uv(upper ? kKeyUuidUpper : kKeyUuidLower);
        w.raw(uuid, sizeof(uuid));
        previous_key_ = k;
        return;
      }
    }
    std::size_t shared = 0;
    const std::size_t shared_max = std::min(k.size(), previous_key_.size());
    while (shared < shared_max && k[shared] == previous_key_[shared]) ++shared;
    if (shared >= kKeyPrefixBytesMin) {
      w.uv((std::uint64_t{k.size() - shared} << 2) | kKeyPrefixed);
      w.uv(shared);
    } else {
      shared = 0;
      w.uv((std::uint64_t{k.size()} << 2) | kKeyPlain);
    }
    w.raw(k.data() + shared, k.size() - shared);
    previous_key_ = k;
  }

  void usage(Writer& w, const pricing::Usage& u) {
    const std::optional<std::int64_t>* ints[] = {&u.input_tokens,  &u.output_tokens, &u.files_read,
                                                 &u.lines_emitted, &u.lines_changed, &u.count,
                                                 &u.duration_ms,   &u.records};
    // Bits in declaration order: model 0, the first five ints 1-5, size 6, the last three 7-9.
    std::uint64_t mask = 0;
    if (u.model) mask |= 1u << 0;
    for (int i = 0; i < 5; ++i) {
      if (*ints[i]) mask |= 1u << (1 + i);
    }
    if (u.size) mask |= 1u << 6;
    for (int i = 5; i < 8; ++i) {
      if (*ints[i]) mask |= 1u << (2 + i);
    }
    w.uv(mask);
    if (u.model) id(w, *u.model);
    for (int i = 0; i < 5; ++i) {
      if (*ints[i]) w.sv(**ints[i]);
    }
    if (u.size) id(w, *u.size);
    for (int i = 5; i < 8; ++i) {
      if (*ints[i]) w.sv(**ints[i]);
    }
  }

  void metadata(Writer& w, const Metadata& m) {
    const std::string* fields[] = {&m.file,      &m.feature, &m.model,       &m.snapshot_id,
                                   &m.call_site, &m.intent,  &m.request_hash};
    std::uint8_t mask = m.extra.empty() ? 0 : kMetaExtra;
    for (int i = 0; i < 7; ++i) {
      if (!fields[i]->empty()) mask |= static_cast<std::uint8_t>(1u << i);
    }
    w.u8(mask);
    for (int i = 0; i < 7; ++i) {
      if (fields[i]->empty()) continue;
      // snapshot_id and request_hash differ from one command to the next.
      if (i == 3 || i == 6) {
        w.str(*fields[i]);
      } else {
        id(w, *fields[i]);
      }
    }
    if (m.extra.empty()) return;
    w.uv(m.extra.size());
    for (const auto& [k, v] : m.extra) {
      id(w, k);
      id(w, v);
    }
  }

  template <typename T>
  void metered(Writer& w, const T& c) {
    std::uint8_t flags = 0;
    if (c.priced_by_usage) flags |= kMPricedByUsage;
    if (c.usage) flags |= kMUsage;
    if (!c.metadata.empty()) flags |= kMMetadata;
    if (c.cache_hit) flags |= kMCacheHit;
    if (!c.cache_key.empty()) flags |= kMCacheKey;
    if (!c.saved.is_zero()) flags |= kMSaved;
    if (c.rate_card_version != 0) flags |= kMRateCard;
    if (c.cache_generation != 0) flags |= kMCacheGeneration;
    w.u8(flags);
    id(w, c.account_id);
    id(w, c.user_id);
    w.u8(static_cast<std::uint8_t>(c.kind));
    id(w, c.pool);
    w.money(c.amount);
    if constexpr (std::is_same_v<T, Hold>) w.sv(c.ttl_ms);
    if (flags & kMRateCard) w.sv(c.rate_card_version);
    if (flags & kMUsage) usage(w, *c.usage);
    if (flags & kMMetadata) metadata(w, c.metadata);
    if (flags & kMCacheKey) w.str(c.cache_key);
    if (flags & kMSaved) w.money(c.saved);
    if (flags & kMCacheGeneration) w.uv(c.cache_generation);
  }

  void body(Writer& w, const CommandBody& b) {
    std::visit(
        [&](const auto& c) {
          using T = std::decay_t<decltype(c)>;
          if constexpr (std::is_same_v<T, CreateAccount>) {
            id(w, c.account_id);
            id(w, c.plan_id);
            w.u8(c.signup_at_ms.has_value());
            if (c.signup_at_ms) w.sv(*c.signup_at_ms);
          } else if constexpr (std::is_same_v<T, CloseAccount>) {
            id(w, c.account_id);
          } else if constexpr (std::is_same_v<T, ChangePlan>) {
            id(w, c.account_id);
            id(w, c.plan_id);
          } else if constexpr (std::is_same_v<T, AddGrant>) {
            id(w, c.account_id);
            id(w, c.pool);
            w.u8(static_cast<std::uint8_t>(c.source));
            w.money(c.credits);
            w.u8(c.expires_at_ms.has_value());
            if (c.expires_at_ms) w.sv(*c.expires_at_ms);
            w.str(c.reason);
          } else if constexpr (std::is_same_v<T, Charge> || std::is_same_v<T, Hold>) {
            metered(w, c);
          } else if constexpr (std::is_same_v<T, Capture>) {
            std::uint8_t flags = 0;
            if (c.amount) flags |= kCAmount;
            if (c.priced_by_usage) flags |= kCPricedByUsage;
            if (c.overage_charge) flags |= kCOverage;
            if (c.usage) flags |= kCUsage;
            if (!c.metadata.empty()) flags |= kCMetadata;
            w.u8(flags);
            id(w, c.account_id);
            w.str(c.hold_id);
            if (c.amount) w.money(*c.amount);
            if (c.usage) usage(w, *c.usage);
            if (flags & kCMetadata) metadata(w, c.metadata);
          } else if constexpr (std::is_same_v<T, Void>) {
            id(w, c.account_id);
            w.str(c.hold_id);
          } else if constexpr (std::is_same_v<T, Refund>) {
            id(w, c.account_id);
            w.str(c.charge_id);
            w.u8(c.credits.has_value());
            if (c.credits) w.money(*c.credits);
            w.str(c.reason);
          } else if constexpr (std::is_same_v<T, Sweep>) {
          } else if constexpr (std::is_same_v<T, LoadCatalog>) {
            w.str(c.toml_text);
          } else if constexpr (std::is_same_v<T, LoadRateCard>) {
            w.sv(c.version);
            w.str(c.toml_text);
          }
        },
        b);
  }

  void command(Writer& w, const Command& c) {
    std::uint8_t head = static_cast<std::uint8_t>(c.body.index());
    if (c.idem.has_key) head |= kHeadHasKey;
    if (c.precheck_error != ErrorCode::kOk) head |= kHeadPrecheck;
    w.u8(head);
    if (c.idem.has_key) {
      w.raw(c.idem.scope_key_hash.data(), c.idem.scope_key_hash.size());
      w.raw(c.idem.request_hash.data(), c.idem.request_hash.size());
      key(w, c.idem.key);
    }
    if (c.precheck_error != ErrorCode::kOk) {
      w.u8(static_cast<std::uint8_t>(c.precheck_error));
      if (c.precheck_error == ErrorCode::kRateLimited) w.sv(c.retry_after_ms);
    }
    body(w, c.body);
  }

  InternTable table_;
  std::string_view previous_key_;
};

// Decodes into existing commands, assigning every field, so that a reused DecodedBatch
// keeps its strings' storage.
// clear + append: cheaper than std::string::assign's general replace path for the short
// strings of a command.
void assign(std::string& out, std::string_view v) {
  out.clear();
  if (!v.empty()) out.append(v.data(), v.size());
}

class BatchDecoder {
 public:
  explicit BatchDecoder(std::string_view bytes) : in_(bytes) {}

  Status decode(DecodedBatch& out) {
    const std::uint8_t version = in_.u8();
    if (!in_.ok() || version != kCodecVersion) {
      return Error(ErrorCode::kStorageFailed, "unknown command batch version " +
                                                  std::to_string(version) + "; this build reads " +
                                                  std::to_string(kCodecVersion));
    }
    out.now_ms = in_.sv();
    const std::uint64_t n = in_.uv();
    // Every command takes at least its head byte.
    if (!in_.ok() || n > in_.remaining()) {
      return Error(ErrorCode::kStorageFailed, "bad batch header");
    }
    out.commands.resize(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      if (!command(out.commands[i]) || !in_.ok()) {
        return Error(ErrorCode::kStorageFailed, "bad command " + std::to_string(i) + " in batch");
      }
    }
    if (!in_.done()) return Error(ErrorCode::kStorageFailed, "trailing bytes after batch");
    return ok_status();
  }

 private:
  std::string_view id() {
    const std::uint64_t r = in_.uv();
    if (r == 0) {
      std::string_view s = in_.view();
      if (in_.ok()) dictionary_.push_back(s);
      return s;
    }
    if (r > dictionary_.size()) {
      in_.fail();
      return {};
    }
    return dictionary_[static_cast<std::size_t>(r - 1)];
  }
  void id(std::string& out) { assign(out, id()); }

  void key(std::string& out) {
    const std::uint64_t h = in_.uv();
    const std::uint64_t mode = h & 3;
    const std::uint64_t suffix = h >> 2;
    if (mode == kKeyUuidLower || mode == kKeyUuidUpper) {
      std::string_view b = in_.bytes(kUuidBytes);
      if (suffix != 0 || !in_.ok()) {
        in_.fail();
        return;
      }
      format_uuid(reinterpret_cast<const unsigned char*>(b.data()), mode == kKeyUuidUpper, out);
      assign(previous_key_, out);
      return;
    }
    std::uint64_t shared = 0;
    if (mode == kKeyPrefixed) {
      shared = in_.uv();
      if (shared > previous_key_.size()) {
        in_.fail();
        return;
      }
    }
    std::string_view tail = in_.bytes(suffix);
    if (!in_.ok()) return;
    // previous_key_ may be `out` itself (a reused command): build it aside first.
    scratch_.assign(previous_key_, 0, static_cast<std::size_t>(shared));
    scratch_.append(tail);
    assign(out, scratch_);
    assign(previous_key_, out);
  }

  void usage(std::optional<pricing::Usage>& out) {
    const std::uint64_t mask = in_.uv();
    if (mask >= (1u << 10)) in_.fail();
    pricing::Usage& u = out.emplace();
    std::optional<std::int64_t>* ints[] = {&u.input_tokens,  &u.output_tokens, &u.files_read,
                                           &u.lines_emitted, &u.lines_changed, &u.count,
                                           &u.duration_ms,   &u.records};
    if (mask & (1u << 0)) u.model = std::string(id());
    for (int i = 0; i < 5; ++i) {
      if (mask & (1u << (1 + i))) *ints[i] = in_.sv();
    }
    if (mask & (1u << 6)) u.size = std::string(id());
    for (int i = 5; i < 8; ++i) {
      if (mask & (1u << (2 + i))) *ints[i] = in_.sv();
    }
  }

  void metadata(Metadata& m) {
    const std::uint8_t mask = in_.u8();
    std::string* fields[] = {&m.file,      &m.feature, &m.model,       &m.snapshot_id,
                             &m.call_site, &m.intent,  &m.request_hash};
    for (int i = 0; i < 7; ++i) {
      if ((mask & (1u << i)) == 0) {
        fields[i]->clear();
      } else if (i == 3 || i == 6) {
        assign(*fields[i], in_.view());
      } else {
        id(*fields[i]);
      }
    }
    m.extra.clear();
    if ((mask & kMetaExtra) == 0) return;
    const std::uint64_t n = in_.uv();
    if (n == 0 || n > kCodecMetadataExtraMax) {
      in_.fail();
      return;
    }
    for (std::uint64_t i = 0; i < n && in_.ok(); ++i) {
      std::string_view k = id();
      std::string_view v = id();
      m.extra.emplace_back(std::string(k), std::string(v));
    }
  }

  template <typename T>
  void metered(T& c) {
    const std::uint8_t flags = in_.u8();
    id(c.account_id);
    id(c.user_id);
    const std::uint8_t kind = in_.u8();
    if (kind > kKindMax) in_.fail();
    c.kind = static_cast<pricing::Kind>(kind > kKindMax ? 0 : kind);
    id(c.pool);
    c.amount = in_.money();
    c.priced_by_usage = (flags & kMPricedByUsage) != 0;
    if constexpr (std::is_same_v<T, Hold>) c.ttl_ms = in_.sv();
    c.rate_card_version = (flags & kMRateCard) ? in_.sv() : 0;
    if (flags & kMUsage) {
      usage(c.usage);
    } else {
      c.usage.reset();
    }
    if (flags & kMMetadata) {
      metadata(c.metadata);
    } else {
      c.metadata = Metadata{};
    }
    if (flags & kMCacheKey) {
      assign(c.cache_key, in_.view());
    } else {
      c.cache_key.clear();
    }
    c.cache_hit = (flags & kMCacheHit) != 0;
    c.saved = (flags & kMSaved) ? in_.money() : Millicredits::zero();
    c.cache_generation = (flags & kMCacheGeneration) ? in_.uv() : 0;
  }

  // The body of `tag`, reusing `b` when it already holds that alternative.
  template <typename T>
  T& reuse(CommandBody& b) {
    if (auto* p = std::get_if<T>(&b)) return *p;
    return b.emplace<T>();
  }

  bool body(std::uint8_t tag, CommandBody& b) {
    switch (tag) {
      case 0: {
        auto& c = reuse<CreateAccount>(b);
        id(c.account_id);
        id(c.plan_id);
        c.signup_at_ms.reset();
        if (in_.u8() != 0) c.signup_at_ms = in_.sv();
        return true;
      }
      case 1:
        id(reuse<CloseAccount>(b).account_id);
        return true;
      case 2: {
        auto& c = reuse<ChangePlan>(b);
        id(c.account_id);
        id(c.plan_id);
        return true;
      }
      case 3: {
        auto& c = reuse<AddGrant>(b);
        id(c.account_id);
        id(c.pool);
        const std::uint8_t source = in_.u8();
        if (source > kGrantSourceMax) return false;
        c.source = static_cast<GrantSource>(source);
        c.credits = in_.money();
        c.expires_at_ms.reset();
        if (in_.u8() != 0) c.expires_at_ms = in_.sv();
        assign(c.reason, in_.view());
        return true;
      }
      case 4:
        metered(reuse<Charge>(b));
        return true;
      case 5:
        metered(reuse<Hold>(b));
        return true;
      case 6: {
        auto& c = reuse<Capture>(b);
        const std::uint8_t flags = in_.u8();
        if (flags >= (1u << 5)) return false;
        id(c.account_id);
        assign(c.hold_id, in_.view());
        c.amount.reset();
        if (flags & kCAmount) c.amount = in_.money();
        c.priced_by_usage = (flags & kCPricedByUsage) != 0;
        c.overage_charge = (flags & kCOverage) != 0;
        c.usage.reset();
        if (flags & kCUsage) usage(c.usage);
        c.metadata = Metadata{};
        if (flags & kCMetadata) metadata(c.metadata);
        return true;
      }
      case 7: {
        auto& c = reuse<Void>(b);
        id(c.account_id);
        assign(c.hold_id, in_.view());
        return true;
      }
      case 8: {
        auto& c = reuse<Refund>(b);
        id(c.account_id);
        assign(c.charge_id, in_.view());
        c.credits.reset();
        if (in_.u8() != 0) c.credits = in_.money();
        assign(c.reason, in_.view());
        return true;
      }
      case 9:
        reuse<Sweep>(b);
        return true;
      case 10:
        assign(reuse<LoadCatalog>(b).toml_text, in_.view());
        return true;
      case 11: {
        auto& c = reuse<LoadRateCard>(b);
        c.version = in_.sv();
        assign(c.toml_text, in_.view());
        return true;
      }
    }
    return false;
  }

  bool command(Command& c) {
    c.account_hash = 0;  // a reused command gets other ids
    c.user_hash = 0;
    c.found_account = nullptr;
    c.peeked_account = nullptr;
    c.pointers_ledger = 0;
    const std::uint8_t head = in_.u8();
    const std::uint8_t tag = head & kHeadTagMask;
    if (tag > kTagMax || (head & ~(kHeadTagMask | kHeadHasKey | kHeadPrecheck)) != 0) return false;
    c.idem.has_key = (head & kHeadHasKey) != 0;
    if (c.idem.has_key) {
      in_.hash(c.idem.scope_key_hash);
      in_.hash(c.idem.request_hash);
      key(c.idem.key);
    } else {
      c.idem.scope_key_hash = Hash128{};
      c.idem.request_hash = Hash128{};
      c.idem.key.clear();
    }
    c.precheck_error = ErrorCode::kOk;
    c.precheck_message.clear();
    c.precheck_param.clear();
    c.retry_after_ms = 0;
    if (head & kHeadPrecheck) {
      const std::uint8_t code = in_.u8();
      if (code == 0 || code > kErrorCodeMax) return false;
      c.precheck_error = static_cast<ErrorCode>(code);
      if (c.precheck_error == ErrorCode::kRateLimited) c.retry_after_ms = in_.sv();
    }
    return body(tag, c.body);
  }

  Reader in_;
  std::vector<std::string_view> dictionary_;  // views into the batch's bytes
  std::string previous_key_;
  std::string scratch_;
};

}  // namespace

void encode_batch(std::int64_t now_ms, const std::vector<const Command*>& commands,
                  std::string& out) {
  // One encoder per thread keeps its intern table's storage between batches.
  thread_local BatchEncoder encoder;
  encoder.encode(now_ms, commands, out);
}

Status decode_batch_into(std::string_view bytes, DecodedBatch& out) {
  BatchDecoder decoder(bytes);
  return decoder.decode(out);
}

Result<DecodedBatch> decode_batch(std::string_view bytes) {
  DecodedBatch batch;
  Status s = decode_batch_into(bytes, batch);
  if (!s.ok()) return s.error();
  return batch;
}

}  // namespace credit::ledger
