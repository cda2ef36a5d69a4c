// tests/server/crypto_test.cc
// Known vectors for SHA-256 and HMAC-SHA256, and the shape of keys and ids.
#include "server/crypto.h"

#include <gtest/gtest.h>

namespace credit::server {
namespace {

TEST(Crypto, Sha256OfAbcIsTheFips180Vector) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const Sha256Digest d = sha256("abc");
  EXPECT_EQ(d[0], 0xba);
  EXPECT_EQ(d[31], 0xad);
}

TEST(Crypto, HmacSha256IsRfc4231Case2) {
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, HexDecodeReadsWhatHexEncodeWritesAndNothingElse) {
  const std::string bytes("\x00\x7f\xa5\xff", 4);
  const std::string hex = hex_encode(bytes.data(), bytes.size());
  EXPECT_EQ(hex, "007fa5ff");
  EXPECT_EQ(hex_decode(hex), bytes);
  EXPECT_EQ(hex_decode(""), std::string());
  EXPECT_EQ(hex_decode("0"), std::nullopt);   // odd length
  EXPECT_EQ(hex_decode("0A"), std::nullopt);  // uppercase is not what we write
  EXPECT_EQ(hex_decode("0g"), std::nullopt);
}

TEST(Crypto, ConstantTimeEqualComparesAllBytes) {
  EXPECT_TRUE(constant_time_equal("abcdef", "abcdef", 6));
  EXPECT_FALSE(constant_time_equal("abcdef", "abcdeg", 6));
  EXPECT_TRUE(constant_time_equal(std::string_view("key"), std::string_view("key")));
  EXPECT_FALSE(constant_time_equal(std::string_view("key"), std::string_view("key2")));
}

TEST(Crypto, KeysAreCk46CharsOfBase64url) {
  const std::string a = random_key();
  const std::string b = random_key();
  EXPECT_NE(a, b);
  ASSERT_EQ(a.size(), 46u);
  EXPECT_EQ(a.substr(0, 3), "ck_");
  for (char c : a.substr(3)) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << c;
  }
}

TEST(Crypto, DerivedKeyIsCkAndBase64urlOfTheHmacOfTheKeyId) {
  // RFC 4231 case 2's HMAC (5bdcc146...3843) in base64url: the same secret and key id
  // always give the same key, which is how a replayed key creation shows it again.
  EXPECT_EQ(derived_key("Jefe", "what do ya want for nothing?"),
            "ck_W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM");
  EXPECT_EQ(derived_key("secret", "key_1").size(), 46u);
  EXPECT_NE(derived_key("secret", "key_1"), derived_key("secret", "key_2"));
  EXPECT_NE(derived_key("secret", "key_1"), derived_key("secreT", "key_1"));
}

TEST(Crypto, IdsAreThePrefixAnd32HexDigits) {
  const std::string id = random_id("hold_");
  ASSERT_EQ(id.size(), 5u + 32u);
  EXPECT_EQ(id.substr(0, 5), "hold_");
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 5), std::string::npos);
}

TEST(Crypto, Base64urlMatchesRfc4648Vectors) {
  EXPECT_EQ(base64url_encode("f", 1), "Zg");
  EXPECT_EQ(base64url_encode("fo", 2), "Zm8");
  EXPECT_EQ(base64url_encode("foo", 3), "Zm9v");
  EXPECT_EQ(base64url_encode("\xfb\xff", 2), "-_8");
}

}  // namespace
}  // namespace credit::server
