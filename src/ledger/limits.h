// src/ledger/limits.h
// Every static limit of the ledger, with its unit, in one place.
// Owns: the sizes and counts the ledger's commands and state may reach.
// Does not: check them (the ledger and the server's parsers do) or hold the capacities set
// by flags (LedgerOptions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace credit::ledger {

constexpr std::int64_t kHoldTtlMsDefault = 300'000;
constexpr std::int64_t kHoldTtlMsMax = 3'600'000;
constexpr std::int64_t kIdempotencyTtlMs = 24 * 3'600'000LL;
constexpr std::size_t kIdempotencyKeysMaxDefault = 50'000'000;
constexpr std::size_t kAccountsMaxDefault = 1'000'000;
constexpr std::size_t kOpenHoldsPerAccountMaxDefault = 10'000;
constexpr std::size_t kLiveGrantsPerPoolMaxDefault = 256;
constexpr std::size_t kIdBytesMax = 64;
constexpr std::size_t kUserIdBytesMax = 128;
constexpr std::size_t kIdempotencyKeyBytesMax = 128;
constexpr std::size_t kReasonBytesMax = 256;
// Charges forgotten at resets (older than the last cycle) whose ids an account still
// answers 409 charge_not_refundable for, instead of 404: about 3 bytes each, so at most
// ~200 KiB for the busiest account; past it the oldest ids read as unknown again.
constexpr std::size_t kForgottenChargesPerAccountMax = 65'536;
constexpr std::int64_t kPackExpiryDaysDefault = 365;
// Recycled event parts (drawn_from lists, metadata) kept for reuse: a batch's worth.
constexpr std::size_t kRecycledEventPartsMax = 16'384;
// Refused charges are kept for replays only as long as their key lives.
constexpr std::int64_t kNeverMs = INT64_MAX;
// Accounts one Sweep command advances at most: a sweep is one command of a batch, so
// this bounds how long it holds the charges behind it (about a millisecond per thousand
// accounts; docs/benchmarks.md). The engine sends the next Sweep while more are due.
constexpr std::size_t kSweepAccountsPerCommandMax = 1024;
// And the instants (each: its expiries, and a boundary if one falls on it) one Sweep
// applies at most: a clock moved by years leaves an account a reset per month passed, and
// each reset's events may open a new daily event segment (a file): at 4,096 a command
// held the requests behind it for seconds after a move of centuries (session 15 audit).
// At most as many as accounts, so that a sweep of many accounts with one instant each is
// bounded by the accounts.
constexpr std::size_t kSweepInstantsPerCommandMax = kSweepAccountsPerCommandMax;

}  // namespace credit::ledger
