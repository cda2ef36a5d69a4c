#include "ledger/internal/reply_pack.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/assert.h"
#include "base/bytes.h"
#include "ledger/render.h"

namespace credit::ledger {
namespace {

// Byte i + 1 stands for kTokens[i]. Longer tokens that share a start come first: the
// packer takes the first that matches. At most 31 (0x01..0x1f).
constexpr std::array<std::string_view, 24> kTokens = {
    // charges and captures (render_charge)
    "{\"charge_id\":\"c_",
    "\",\"cost\":",
    ",\"pool\":\"credits\",\"available_after\":",
    ",\"pool\":\"",
    "\",\"available_after\":",
    ",\"drawn_from\":[{\"source\":\"allowance\",\"credits\":",
    ",\"drawn_from\":[]",
    ",\"drawn_from\":[",
    "{\"source\":\"allowance\",\"credits\":",
    "{\"source\":\"grant:g_",
    "\",\"credits\":",
    "}],\"cached\":false,\"saved\":null,\"response\":null}",
    ",\"cached\":false,\"saved\":null,\"response\":null",
    ",\"cached\":true,\"saved\":",
    ",\"response\":null",
    ",\"hold_id\":\"h_",
    // holds (render_hold)
    "{\"hold_id\":\"h_",
    "\",\"amount\":",
    ",\"expires_at\":\"",
    // refusals (append_error_json, Ledger::insufficient)
    "{\"error\":{\"code\":\"insufficient_credits\",\"message\":\"the account's credits do not "
    "cover this operation\",\"required\":",
    "{\"error\":{\"code\":\"",
    "\",\"message\":\"",
    ",\"refused_by\":\"pool\",\"pool\":\"credits\",\"cycle_end\":\"",
    "\",\"upgrade_to\":",
};
static_assert(kTokens.size() <= 0x1f);

constexpr char kRawMarker = '\0';
// Never the first byte of a packed body: not a token byte, and a body that starts with it
// is kept raw.
constexpr char kChargeMarker = '\x7f';

// Where a token may start: one of four characters, then, at a fixed offset, the first
// letter of its key. The packer looks up (start, letter) and tries those tokens only.
constexpr std::size_t kCandidatesMax = 4;
struct Candidates {
  std::array<std::uint8_t, kCandidatesMax> tokens{};  // indexes into kTokens
  std::uint8_t count = 0;
};
struct TokenIndex {
  std::array<std::array<Candidates, 26>, 4> by_start_letter{};
};

// The start kind of a character ('{', ',', '"', '}') and the offset of the key's letter.
constexpr int start_kind(char c) {
  return c == '{' ? 0 : c == ',' ? 1 : c == '"' ? 2 : c == '}' ? 3 : -1;
}
constexpr std::size_t kLetterOffset[4] = {2, 2, 3, 5};

TokenIndex build_index() {
  TokenIndex index;
  for (std::size_t t = 0; t < kTokens.size(); ++t) {
    const std::string_view token = kTokens[t];
    const int kind = start_kind(token[0]);
    CREDIT_ASSERT(kind >= 0 && token.size() > kLetterOffset[kind]);
    const char letter = token[kLetterOffset[kind]];
    CREDIT_ASSERT(letter >= 'a' && letter <= 'z');
    Candidates& c = index.by_start_letter[kind][letter - 'a'];
    CREDIT_ASSERT(c.count < kCandidatesMax);
    c.tokens[c.count++] = static_cast<std::uint8_t>(t);
  }
  return index;
}

const TokenIndex& token_index() {
  static const TokenIndex index = build_index();
  return index;
}

// The names in a charge's answer, each led by a byte that says how it is kept.
enum NameForm : std::uint8_t {
  kNameText = 0,       // uv(length) bytes
  kNameGrant = 1,      // "grant:g_<rest>": uv(length) rest
  kNameAllowance = 2,  // "allowance"
  kNameCredits = 3,    // "credits"
};
constexpr std::string_view kGrantPrefix = "grant:g_";

// Reads what put_name wrote into `text`.
void get_name(ByteReader& r, std::string& text) {
  switch (r.u8()) {
    case kNameText:
      text = r.str_view();
      return;
    case kNameGrant:
      text = kGrantPrefix;
      text += r.str_view();
      return;
    case kNameAllowance:
      text = "allowance";
      return;
    case kNameCredits:
      text = "credits";
      return;
    default:
      r.fail();
  }
}

// "<prefix>_<n>", or "" for 0.
std::string numbered_id(char prefix, std::uint64_t n) {
  return n == 0 ? std::string() : std::string{prefix, '_'} + std::to_string(n);
}

char* put_amount(char* out, Millicredits m) {
  CREDIT_ASSERT(!m.is_negative());
  return write_varint(out, static_cast<std::uint64_t>(m.mc()));
}

// A name as the parts form keeps it (NameForm), through a pointer with room for it
// (name_bytes_max).
char* put_name(char* out, std::string_view s) {
  if (s == "allowance") {
    *out++ = static_cast<char>(kNameAllowance);
    return out;
  }
  if (s == "credits") {
    *out++ = static_cast<char>(kNameCredits);
    return out;
  }
  const bool grant = s.starts_with(kGrantPrefix);
  *out++ = static_cast<char>(grant ? kNameGrant : kNameText);
  if (grant) s.remove_prefix(kGrantPrefix.size());
  out = write_varint(out, s.size());
  std::memcpy(out, s.data(), s.size());
  return out + s.size();
}

std::size_t name_bytes_max(std::string_view s) {
  return 1 + ByteWriter::kVarintBytesMax + s.size();
}

Millicredits get_amount(ByteReader& r) {
  const std::uint64_t mc = r.uv();
  if (mc > static_cast<std::uint64_t>(INT64_MAX)) r.fail();
  return Millicredits::from_mc(static_cast<std::int64_t>(mc & INT64_MAX));
}

// A charge's answer read back from its parts (pack_charge_reply's order).
struct ReadParts {
  std::uint64_t charge_seq = 0;
  Millicredits cost;
  std::string pool;
  Millicredits available_after;
  std::uint64_t hold_seq = 0;
  std::vector<DrawnFrom> drawn;
};

// Reads what pack_charge_reply wrote, and only that: false for anything else.
bool read_charge_parts(std::string_view parts, ReadParts& out) {
  ByteReader r(parts);
  out.charge_seq = r.uv();
  out.cost = get_amount(r);
  get_name(r, out.pool);
  out.available_after = get_amount(r);
  out.hold_seq = r.uv();
  const std::uint64_t n = r.uv();
  if (!r.ok() || n > parts.size()) return false;  // a draw takes at least two bytes
  out.drawn.resize(static_cast<std::size_t>(n));
  for (DrawnFrom& d : out.drawn) {
    get_name(r, d.source);
    d.credits = get_amount(r);
  }
  return r.ok() && r.done() && out.charge_seq != 0;
}

void unpack_charge_reply(std::string_view parts, std::string& out) {
  ReadParts p;
  // What pack_charge_reply wrote: these bytes were made in this process, or checked when
  // a snapshot brought them in (packed_reply_is_valid).
  const bool read = read_charge_parts(parts, p);
  CREDIT_ASSERT(read);
  render_charge(numbered_id('c', p.charge_seq), p.cost, p.pool, p.available_after, p.drawn, false,
                Millicredits::zero(), numbered_id('h', p.hold_seq), out);
}

}  // namespace

void pack_reply(std::string_view body, std::string& out) {
  // One pass: a byte below 0x20 (never in JSON we wrote) means the body is kept raw, so
  // what was packed so far is dropped.
  const std::size_t out_start = out.size();
  if (!body.empty() && body[0] == kChargeMarker) {
    out += kRawMarker;
    out.append(body);
    return;
  }
  const TokenIndex& index = token_index();
  std::size_t i = 0;
  std::size_t copied_to = 0;  // body[copied_to, i) is still to be copied
  while (i < body.size()) {
    if (static_cast<unsigned char>(body[i]) < 0x20) {
      out.resize(out_start);
      out += kRawMarker;
      out.append(body);
      return;
    }
    const int kind = start_kind(body[i]);
    std::size_t at = i + (kind >= 0 ? kLetterOffset[kind] : 0);
    if (kind < 0 || at >= body.size() || body[at] < 'a' || body[at] > 'z') {
      ++i;
      continue;
    }
    const Candidates& c = index.by_start_letter[kind][body[at] - 'a'];
    const std::string_view rest = body.substr(i);
    std::size_t found = kTokens.size();
    for (std::uint8_t k = 0; k < c.count; ++k) {
      if (rest.starts_with(kTokens[c.tokens[k]])) {
        found = c.tokens[k];
        break;
      }
    }
    if (found == kTokens.size()) {
      ++i;
      continue;
    }
    out.append(body.data() + copied_to, i - copied_to);
    out += static_cast<char>(found + 1);
    i += kTokens[found].size();  // a token holds no byte below 0x20
    copied_to = i;
  }
  out.append(body.data() + copied_to, body.size() - copied_to);
}

std::size_t charge_reply_packed_bytes_max(const ChargeReplyParts& parts) {
  CREDIT_ASSERT(parts.drawn != nullptr);
  // The marker; charge_seq, cost, available_after, hold_seq and the draw count as varints;
  // the pool's name; each draw's name and amount.
  std::size_t bytes = 1 + 5 * ByteWriter::kVarintBytesMax + name_bytes_max(parts.pool);
  for (const DrawnFrom& d : *parts.drawn) {
    bytes += name_bytes_max(d.source) + ByteWriter::kVarintBytesMax;
  }
  return bytes;
}

char* pack_charge_reply(const ChargeReplyParts& parts, char* out) {
  CREDIT_ASSERT(parts.drawn != nullptr && parts.charge_seq != 0);
  CREDIT_ASSERT(parts.hold_id.empty() == (parts.hold_seq == 0));
  *out++ = kChargeMarker;
  out = write_varint(out, parts.charge_seq);
  out = put_amount(out, parts.cost);
  out = put_name(out, parts.pool);
  out = put_amount(out, parts.available_after);
  out = write_varint(out, parts.hold_seq);
  out = write_varint(out, parts.drawn->size());
  for (const DrawnFrom& d : *parts.drawn) {
    out = put_name(out, d.source);
    out = put_amount(out, d.credits);
  }
  return out;
}

void pack_charge_reply(const ChargeReplyParts& parts, std::string& out) {
  // Sized once for the most it can take and written through a pointer: one capacity check
  // per answer, not one per byte (ByteWriter's), and then cut to what was written.
  const std::size_t at = out.size();
  out.resize(at + charge_reply_packed_bytes_max(parts));
  char* end = pack_charge_reply(parts, out.data() + at);
  out.resize(static_cast<std::size_t>(end - out.data()));
}

void unpack_reply(std::string_view packed, std::string& out) {
  if (!packed.empty() && packed[0] == kRawMarker) {
    out.append(packed.substr(1));
    return;
  }
  if (!packed.empty() && packed[0] == kChargeMarker) {
    unpack_charge_reply(packed.substr(1), out);
    return;
  }
  for (char c : packed) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20) {
      out += c;
      continue;
    }
    CREDIT_ASSERT(byte >= 1 && byte <= kTokens.size());
    out.append(kTokens[byte - 1]);
  }
}

bool packed_reply_is_valid(std::string_view packed) {
  if (packed.empty()) return true;
  if (packed[0] == kRawMarker) return true;
  if (packed[0] == kChargeMarker) {
    ReadParts parts;
    return read_charge_parts(packed.substr(1), parts);
  }
  for (char c : packed) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 && (byte < 1 || byte > kTokens.size())) return false;
  }
  return true;
}

}  // namespace credit::ledger
