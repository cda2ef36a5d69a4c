// src/server/crypto.h
// The few cryptographic primitives creditd needs, all from OpenSSL: random API keys and
// ids, SHA-256 (keys are stored only as their hash), HMAC-SHA256 (webhook signatures) and
// constant-time comparison (key checks must not leak how many bytes matched).
// Owns: encodings of keys and ids. Does not: store keys or decide roles (the routes do).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace credit::server {

// DESIGN.md section 5: keys are 32 random bytes.
constexpr std::size_t kKeyRandomBytes = 32;
// Ids (holds, charges, key ids) carry 16 random bytes: collisions are not a concern.
constexpr std::size_t kIdRandomBytes = 16;
constexpr std::size_t kSha256Bytes = 32;

using Sha256Digest = std::array<std::uint8_t, kSha256Bytes>;

// A new API key: "ck_" + base64url (no padding) of 32 random bytes, 46 characters.
std::string random_key();
// The API key of `key_id` under a server secret: "ck_" + base64url (no padding) of
// HMAC-SHA256(secret, key_id), the same 46-character shape as random_key(). With a random
// 32-byte secret and a random key id the key is as unguessable as a random one, and the
// server can show it again (an idempotent replay of its creation) without storing it.
std::string derived_key(std::string_view secret, std::string_view key_id);
// `prefix` + 32 lowercase hex digits of 16 random bytes, e.g. random_id("hold_").
std::string random_id(std::string_view prefix);
// Fills `out` with `size` bytes from OpenSSL's CSPRNG; aborts if it cannot (creditd never
// hands out a key from a weak source).
void random_bytes(void* out, std::size_t size);

Sha256Digest sha256(std::string_view data);
std::string sha256_hex(std::string_view data);
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

// Compares in time that depends only on `size` (CRYPTO_memcmp).
bool constant_time_equal(const void* a, const void* b, std::size_t size);
// As above for strings; the lengths themselves are not secret.
bool constant_time_equal(std::string_view a, std::string_view b);

std::string hex_encode(const void* data, std::size_t size);
// The bytes of lowercase hex as hex_encode writes it; nullopt for anything else (an odd
// length, another character).
std::optional<std::string> hex_decode(std::string_view hex);
std::string base64url_encode(const void* data, std::size_t size);

}  // namespace credit::server
