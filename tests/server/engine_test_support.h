// tests/server/engine_test_support.h
// What the engine tests share: a temporary data dir removed afterwards, the catalog and
// rate card of config/ (CREDITD_SOURCE_DIR is the repository, set by CMake), and the
// options every engine test starts from, and reading the state on the ledger thread.
// Owns: these helpers. Does not: run an engine (each test sets its own options).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <string>
#include <utility>
#include <vector>

#include "pricing/plan.h"
#include "pricing/rate_card.h"
#include "server/engine.h"

namespace credit::server::test_support {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "engine_test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + ".XXXXXX")).string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `fn` on the engine's ledger thread (Engine::read) and returns what it returns.
template <class Fn>
auto read_state(Engine& engine, Fn fn) -> decltype(fn(std::declval<EngineState&>())) {
  using T = decltype(fn(std::declval<EngineState&>()));
  std::promise<T> read;
  auto value = read.get_future();
  // A read refused (a stopped engine) would leave the future unset: the test stops here.
  if (!engine.read([&](EngineState& st) { read.set_value(fn(st)); })) {
    std::fprintf(stderr, "read_state: the engine refused the read\n");
    std::abort();
  }
  return value.get();
}

inline pricing::Catalog catalog() {
  auto c = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!c.ok()) std::abort();
  return *c;
}

inline std::vector<pricing::RateCard> cards() {
  auto c = pricing::RateCard::load_file(std::string(CREDITD_SOURCE_DIR) + "/config/rate_card.toml");
  if (!c.ok()) std::abort();
  std::vector<pricing::RateCard> v;
  v.push_back(std::move(*c));
  return v;
}

// Submits `ops` as one batch and waits for their replies.
inline std::vector<ledger::Reply> submit(Engine& engine, std::vector<Op> ops) {
  std::promise<std::vector<ledger::Reply>> answered;
  auto replies = answered.get_future();
  EXPECT_TRUE(engine.submit(
      std::move(ops), [&](std::vector<ledger::Reply>&& r) { answered.set_value(std::move(r)); }));
  return replies.get();
}

// The creation of `account` on the pro plan.
inline Op create_account(const std::string& account) {
  ledger::Command c;
  c.body = ledger::CreateAccount{account, "pro", std::nullopt};
  return Op(std::move(c));
}

// A charge of `mc` millicredits by user "u" of `account` (kind backend_function).
inline Op charge(const std::string& account, std::int64_t mc) {
  ledger::Command c;
  ledger::Charge ch;
  ch.account_id = account;
  ch.user_id = "u";
  ch.kind = pricing::Kind::kBackendFunction;
  ch.pool = "credits";
  ch.amount = Millicredits::from_mc(mc);
  c.body = std::move(ch);
  return Op(std::move(c));
}

// An engine on `dir` that acknowledges without fdatasync (tests, not durability).
inline EngineOptions engine_options(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.fsync = false;
  return o;
}

}  // namespace credit::server::test_support
