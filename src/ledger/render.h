// src/ledger/render.h
// The JSON form of the ledger's answers, in API.md's shapes: the account object, a
// grant, a charge, a hold. Amounts as exact credits, instants as RFC 3339.
// Owns: those shapes. Does not: decide anything or know HTTP.
#pragma once

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
void render_hold(const HoldRecord& h, Millicredits available_after,
                 const std::vector<DrawnFrom>& drawn, std::string& out);
void render_drawn(const std::vector<DrawnFrom>& drawn, std::string& out);
std::string_view bucket_source_name(BucketKind kind);

}  // namespace credit::ledger
