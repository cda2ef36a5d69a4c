// src/ledger/render.h
// The JSON form of the ledger's answers, in API.md's shapes: the account object, a
// grant, a charge, a hold. Amounts as exact credits, instants as RFC 3339.
// Owns: those shapes. Does not: decide anything or know HTTP.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/state.h"

namespace credit::ledger {

void render_account_view(const AccountView& v, std::string& out);
void render_grant(std::string_view pool, const Bucket& g, std::string& out);
void render_charge(std::string_view charge_id, Millicredits cost, std::string_view pool,
                   Millicredits available_after, const std::vector<DrawnFrom>& drawn, bool cached,
                   Millicredits saved, std::string_view hold_id, std::string& out);
// A cache hit's stored answer ends with `,"cache_generation":N` (N > 0): the generation of
// the entry that answered, which the engine takes out of every answer it sends and checks
// on a replay (policy/cache.h). Appended before the body's closing brace; nothing for 0.
inline constexpr std::string_view kCacheGenerationField = ",\"cache_generation\":";
void append_cache_generation(std::uint64_t generation, std::string& body);
void render_hold(const HoldRecord& h, Millicredits available_after,
                 const std::vector<DrawnFrom>& drawn, std::string& out);
void render_drawn(const std::vector<DrawnFrom>& drawn, std::string& out);
std::string_view bucket_source_name(BucketKind kind);

}  // namespace credit::ledger
