// tests/pricing/usage_test.cc
// Kind names round-trip and the integration / rate-limit classification of kinds.
#include "pricing/usage.h"

#include <gtest/gtest.h>

namespace credit::pricing {
namespace {

TEST(Kind, NamesRoundTrip) {
  for (int i = 0; i < kKindCount; ++i) {
    Kind kind = static_cast<Kind>(i);
    EXPECT_EQ(parse_kind(kind_name(kind)), kind);
  }
  EXPECT_EQ(kind_name(Kind::kInvokeLlm), "integration.invoke_llm");
  EXPECT_EQ(kind_name(Kind::kBackendFunction), "backend_function");
  EXPECT_EQ(parse_kind("invoke_llm"), std::nullopt);
  EXPECT_EQ(parse_kind(""), std::nullopt);
}

TEST(Kind, InvokeLlmAndGenerateImageAreIntegrations) {
  EXPECT_TRUE(kind_is_integration(Kind::kInvokeLlm));
  EXPECT_TRUE(kind_is_integration(Kind::kGenerateImage));
  EXPECT_FALSE(kind_is_integration(Kind::kAgentPrompt));
  EXPECT_FALSE(kind_is_integration(Kind::kBackendFunction));
}

TEST(Kind, RateLimitsApplyToAiWorkOnly) {
  EXPECT_TRUE(kind_is_rate_limited(Kind::kAgentPrompt));
  EXPECT_TRUE(kind_is_rate_limited(Kind::kDiscussTurn));
  EXPECT_TRUE(kind_is_rate_limited(Kind::kInvokeLlm));
  EXPECT_TRUE(kind_is_rate_limited(Kind::kGenerateImage));
  EXPECT_FALSE(kind_is_rate_limited(Kind::kSendEmail));
  EXPECT_FALSE(kind_is_rate_limited(Kind::kBackendFunction));
}

}  // namespace
}  // namespace credit::pricing
