// src/ledger/internal/wire.h
// The field encodings shared by the ledger's snapshot and event codecs, on top of
// base/bytes.h: money as signed varint millicredits, optionals as a presence byte and the
// value, usage and metadata in declaration order, 16-byte hashes raw.
// Owns: WireOut and WireIn. Does not: frame, version or checksum anything (the codecs
// version their bytes; store/ frames and checksums them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.h"
#include "ledger/command.h"
#include "ledger/event.h"
#include "money/money.h"
#include "pricing/usage.h"

namespace credit::ledger::internal {

// Extra metadata pairs beyond this are refused on read: the API accepts 16, and a larger
// count read back means the bytes are not what was written.
constexpr std::uint64_t kMetadataExtraMax = 64;

class WireOut : public ByteWriter {
 public:
  using ByteWriter::ByteWriter;
  void money(Millicredits m) { sv(m.mc()); }
  void hash(const Hash128& h) { raw(h.data(), h.size()); }
  void opt_i(const std::optional<std::int64_t>& v) {
    b(v.has_value());
    if (v) sv(*v);
  }
  void opt_s(const std::optional<std::string>& v) {
    b(v.has_value());
    if (v) str(*v);
  }
  void opt_m(const std::optional<Millicredits>& v) {
    b(v.has_value());
    if (v) money(*v);
  }
  void usage(const std::optional<pricing::Usage>& u) {
    b(u.has_value());
    if (!u) return;
    opt_s(u->model);
    opt_i(u->input_tokens);
    opt_i(u->output_tokens);
    opt_i(u->files_read);
    opt_i(u->lines_emitted);
    opt_i(u->lines_changed);
    opt_s(u->size);
    opt_i(u->count);
    opt_i(u->duration_ms);
    opt_i(u->records);
  }
  void meta(const Metadata& m) {
    b(!m.empty());
    if (m.empty()) return;
    str(m.file);
    str(m.feature);
    str(m.model);
    str(m.snapshot_id);
    str(m.call_site);
    str(m.intent);
    str(m.request_hash);
    uv(m.extra.size());
    for (const auto& [k, v] : m.extra) {
      str(k);
      str(v);
    }
  }
};

class WireIn : public ByteReader {
 public:
  explicit WireIn(std::string_view s) : ByteReader(s), size_(s.size()) {}
  // Bytes not read yet: an upper bound for any count of non-empty items that follow.
  std::size_t remaining() const { return size_ - pos(); }
  Millicredits money() { return Millicredits::from_mc(sv()); }
  Hash128 hash() {
    Hash128 h{};
    raw(h.data(), h.size());
    return h;
  }
  std::optional<std::int64_t> opt_i() {
    if (!b()) return std::nullopt;
    return sv();
  }
  std::optional<std::string> opt_s() {
    if (!b()) return std::nullopt;
    return str();
  }
  std::optional<Millicredits> opt_m() {
    if (!b()) return std::nullopt;
    return money();
  }
  std::optional<pricing::Usage> usage() {
    if (!b()) return std::nullopt;
    pricing::Usage u;
    u.model = opt_s();
    u.input_tokens = opt_i();
    u.output_tokens = opt_i();
    u.files_read = opt_i();
    u.lines_emitted = opt_i();
    u.lines_changed = opt_i();
    u.size = opt_s();
    u.count = opt_i();
    u.duration_ms = opt_i();
    u.records = opt_i();
    return u;
  }
  Metadata meta() {
    Metadata m;
    if (!b()) return m;
    m.file = str();
    m.feature = str();
    m.model = str();
    m.snapshot_id = str();
    m.call_site = str();
    m.intent = str();
    m.request_hash = str();
    std::uint64_t n = uv();
    if (n > kMetadataExtraMax) {
      fail();
      return m;
    }
    for (std::uint64_t i = 0; i < n && ok(); ++i) {
      std::string k = str();
      std::string v = str();
      m.extra.emplace_back(std::move(k), std::move(v));
    }
    return m;
  }
  // A one-byte enum whose values run 0..max.
  template <typename E>
  E enum_u8(std::uint8_t max) {
    std::uint8_t v = u8();
    if (v > max) fail();
    return static_cast<E>(v > max ? 0 : v);
  }

 private:
  std::size_t size_;
};

}  // namespace credit::ledger::internal
