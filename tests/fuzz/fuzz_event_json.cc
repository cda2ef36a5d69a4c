// tests/fuzz/fuzz_event_json.cc
// The NDJSON event line reader (analytics/event_json.h): every line of an import and of
// the files creditctl reads. Properties: any line parses or is refused with an error
// code and a message, never crashes; a parsed event is written back as a line that parses
// to the same event (the canonical scanner and the simdjson path agree on it).
#include <string>
#include <string_view>

#include "analytics/event_json.h"
#include "fuzz_target.h"
#include "samples.h"

using credit::fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto parsed = credit::analytics::parse_event_json(line);
  if (!parsed.ok()) {
    check(parsed.error().code != credit::ErrorCode::kOk, "a refusal has a code");
    check(!parsed.error().message.empty(), "a refusal has a message");
    return 0;
  }
  const std::string written = credit::analytics::event_to_json(*parsed);
  auto again = credit::analytics::parse_event_json(written);
  check(again.ok(), "a written event parses");
  check(*again == *parsed, "an event survives writing and parsing");
  check(credit::analytics::event_to_json(*again) == written, "writing is a fixpoint");
  return 0;
}

namespace credit::fuzz {

std::vector<std::string> seeds() {
  std::vector<std::string> out;
  for (const ledger::Event& e : sample_run().events) {
    out.push_back(analytics::event_to_json(e));
  }
  out.push_back(
      R"({"at":"2026-03-02T09:14:05Z","account_id":"acme","user_id":"dana","type":"charge","kind":"agent_prompt","pool":"credits","credits":7.25,"usage":{"model":"default","input_tokens":9800,"output_tokens":2100,"files_read":4,"lines_emitted":190,"lines_changed":8},"metadata":{"file":"src/pages/Checkout.jsx","feature":"checkout","snapshot_id":"snap-0193","intent":"fix"}})");
  return out;
}

std::vector<std::string> dictionary() {
  std::vector<std::string> d = json_dictionary();
  d.insert(d.end(), {"\\\"", "1e3", "-1", "\"at\":", "\"type\":", "\"credits\":", "\"usage\":{",
                     "\"metadata\":{", "\"drawn_from\":[", "T00:00:00Z", "+01:00"});
  return d;
}

}  // namespace credit::fuzz
