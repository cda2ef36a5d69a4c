// tests/fuzz/fuzz_snapshot.cc
// The ledger snapshot decoder (ledger/snapshot_codec.h). A snapshot file is checked by
// its checksum before it is decoded, so these bytes model damage the checksum missed or
// a bug in the encoder. Properties: any bytes restore or fail with kStorageFailed naming
// an offset, never crash; a restored ledger keeps every invariant and encodes again to
// bytes that restore to the same encoding.
#include <string>
#include <string_view>

#include "fuzz_target.h"
#include "ledger/snapshot_codec.h"
#include "samples.h"

using credit::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto ledger = credit::fuzz::fresh_ledger();
  const credit::Status s = credit::ledger::decode_ledger_snapshot(bytes, *ledger);
  if (!s.ok()) {
    check(s.error().code == credit::ErrorCode::kStorageFailed, "a refusal is storage_failed");
    return 0;
  }
  ledger->check_invariants();
  std::string once;
  credit::ledger::encode_ledger_snapshot(*ledger, once);
  auto again = credit::fuzz::fresh_ledger();
  check(credit::ledger::decode_ledger_snapshot(once, *again).ok(), "an encoded snapshot restores");
  std::string twice;
  credit::ledger::encode_ledger_snapshot(*again, twice);
  check(once == twice, "encoding a restored ledger is a fixpoint");
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  std::vector<std::string> out(2);
  ledger::encode_ledger_snapshot(*sample_run().ledger, out[0]);
  ledger::encode_ledger_snapshot(*fresh_ledger(), out[1]);
  return out;
}

std::vector<std::string> dictionary() {
  return {};
}

}  // namespace credit::fuzz
