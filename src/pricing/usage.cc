// src/pricing/usage.cc
// The names of the operation kinds and which kinds count as integrations.
#include "pricing/usage.h"

#include <array>

namespace credit::pricing {
namespace {

constexpr std::array<std::string_view, kKindCount> kKindNames = {
    "agent_prompt",           "discuss_turn",
    "integration.invoke_llm", "integration.generate_image",
    "integration.send_email", "backend_function",
};

}  // namespace

std::string_view kind_name(Kind kind) {
  auto index = static_cast<std::size_t>(kind);
  return index < kKindNames.size() ? kKindNames[index] : std::string_view("unknown");
}

std::optional<Kind> parse_kind(std::string_view name) {
  for (std::size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == name) return static_cast<Kind>(i);
  }
  return std::nullopt;
}

bool kind_is_integration(Kind kind) {
  return kind == Kind::kInvokeLlm || kind == Kind::kGenerateImage;
}

bool kind_is_integration_call(Kind kind) {
  return kind == Kind::kInvokeLlm || kind == Kind::kGenerateImage || kind == Kind::kSendEmail;
}

bool kind_is_rate_limited(Kind kind) {
  return kind == Kind::kAgentPrompt || kind == Kind::kDiscussTurn || kind_is_integration(kind);
}

}  // namespace credit::pricing
