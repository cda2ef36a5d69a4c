#include "ledger/internal/reply_pack.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "base/assert.h"

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

}  // namespace

void pack_reply(std::string_view body, std::string& out) {
  // One pass: a byte below 0x20 (never in JSON we wrote) means the body is kept raw, so
  // what was packed so far is dropped.
  const std::size_t out_start = out.size();
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

void unpack_reply(std::string_view packed, std::string& out) {
  if (!packed.empty() && packed[0] == kRawMarker) {
    out.append(packed.substr(1));
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

}  // namespace credit::ledger
