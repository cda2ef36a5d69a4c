// src/server/crypto.cc
// OpenSSL calls behind crypto.h.
#include "server/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <limits>

#include "base/assert.h"

namespace credit::server {

namespace {
constexpr std::string_view kKeyPrefix = "ck_";
}  // namespace

void random_bytes(void* out, std::size_t size) {
  CREDIT_ASSERT(size <= static_cast<std::size_t>(std::numeric_limits<int>::max()));
  const int rc = RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(size));
  CREDIT_ASSERT(rc == 1);
}

std::string hex_encode(const void* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::string out(size * 2, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 0x0f];
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string base64url_encode(const void* data, std::size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const auto* p = static_cast<const std::uint8_t*>(data);
  std::string out;
  out.reserve((size * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    const std::uint32_t v = p[i] << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
  } else if (size - i == 2) {
    const std::uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

std::string random_key() {
  std::array<std::uint8_t, kKeyRandomBytes> bytes;
  random_bytes(bytes.data(), bytes.size());
  std::string key(kKeyPrefix);
  key += base64url_encode(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::string random_id(std::string_view prefix) {
  std::array<std::uint8_t, kIdRandomBytes> bytes;
  random_bytes(bytes.data(), bytes.size());
  std::string id(prefix);
  id += hex_encode(bytes.data(), bytes.size());
  return id;
}

Sha256Digest sha256(std::string_view data) {
  Sha256Digest out;
  unsigned int size = 0;
  const int rc = EVP_Digest(data.data(), data.size(), out.data(), &size, EVP_sha256(), nullptr);
  CREDIT_ASSERT(rc == 1 && size == out.size());
  return out;
}

std::string sha256_hex(std::string_view data) {
  const Sha256Digest d = sha256(data);
  return hex_encode(d.data(), d.size());
}

namespace {
// HMAC-SHA256 into `out` (EVP_MAX_MD_SIZE bytes); returns the digest's size.
unsigned int hmac_sha256_into(std::string_view key, std::string_view message,
                              std::array<std::uint8_t, EVP_MAX_MD_SIZE>& out) {
  unsigned int size = 0;
  CREDIT_ASSERT(key.size() <= static_cast<std::size_t>(std::numeric_limits<int>::max()));
  const unsigned char* rc = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                                 reinterpret_cast<const unsigned char*>(message.data()),
                                 message.size(), out.data(), &size);
  CREDIT_ASSERT(rc != nullptr && size == kSha256Bytes);
  return size;
}
}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> out;
  const unsigned int size = hmac_sha256_into(key, message, out);
  return hex_encode(out.data(), size);
}

std::string derived_key(std::string_view secret, std::string_view key_id) {
  std::array<std::uint8_t, EVP_MAX_MD_SIZE> out;
  const unsigned int size = hmac_sha256_into(secret, key_id, out);
  static_assert(kSha256Bytes == kKeyRandomBytes);
  std::string key(kKeyPrefix);
  key += base64url_encode(out.data(), size);
  OPENSSL_cleanse(out.data(), out.size());
  return key;
}

bool constant_time_equal(const void* a, const void* b, std::size_t size) {
  return CRYPTO_memcmp(a, b, size) == 0;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return constant_time_equal(a.data(), b.data(), a.size());
}

}  // namespace credit::server
