// src/pricing/usage.h
// What an operation used: its kind and the dimensions the rate card prices.
// Owns: Kind, Usage, their names. Does not: price anything (rate_card.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace credit::pricing {

enum class Kind : std::uint8_t {
  kAgentPrompt = 0,
  kDiscussTurn = 1,
  kInvokeLlm = 2,
  kGenerateImage = 3,
  kSendEmail = 4,
  kBackendFunction = 5,
};
constexpr int kKindCount = 6;

// "agent_prompt", "discuss_turn", "integration.invoke_llm", "integration.generate_image",
// "integration.send_email", "backend_function".
std::string_view kind_name(Kind kind);
std::optional<Kind> parse_kind(std::string_view name);
// invokeLLM and generateImage trigger AI work: rate limits and the cache apply to them
// (agent prompts and discuss turns too).
bool kind_is_integration(Kind kind);
// One of the "integration.*" kinds (invokeLLM, generateImage, sendEmail): the integration
// cache serves these and no other (DESIGN.md, "Integration cache").
bool kind_is_integration_call(Kind kind);
// The kinds DESIGN.md's rate limits apply to: agent_prompt, discuss_turn,
// integration.invoke_llm and integration.generate_image.
bool kind_is_rate_limited(Kind kind);

// Every dimension a kind may carry; which ones a kind accepts is the rate card's rule.
// An absent dimension is nullopt.
struct Usage {
  std::optional<std::string> model;  // agent_prompt, discuss_turn, invoke_llm
  std::optional<std::int64_t> input_tokens;
  std::optional<std::int64_t> output_tokens;
  std::optional<std::int64_t> files_read;     // agent_prompt
  std::optional<std::int64_t> lines_emitted;  // agent_prompt
  std::optional<std::int64_t> lines_changed;  // agent_prompt
  std::optional<std::string> size;            // generate_image ("512x512", "1024x1024")
  std::optional<std::int64_t> count;          // generate_image, send_email
  std::optional<std::int64_t> duration_ms;    // backend_function
  std::optional<std::int64_t> records;        // backend_function

  bool empty() const {
    return !model && !input_tokens && !output_tokens && !files_read && !lines_emitted &&
           !lines_changed && !size && !count && !duration_ms && !records;
  }
  bool operator==(const Usage&) const = default;
};

// The largest value of any integer dimension; larger is invalid_usage.
constexpr std::int64_t kUsageDimensionMax = 1'000'000'000'000LL;

}  // namespace credit::pricing
