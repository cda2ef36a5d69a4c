// tests/fuzz/samples.cc
#include "samples.h"

#include <cstdio>
#include <cstdlib>
#include <string>

#include "pricing/plan.h"
#include "time/time.h"

namespace credit::fuzz {
namespace {

using ledger::Command;

pricing::Catalog shipped_catalog() {
  auto c = pricing::load_catalog_file(std::string(CREDITD_SOURCE_DIR) + "/config/plans.toml");
  if (!c.ok()) {
    std::fprintf(stderr, "fuzz: config/plans.toml: %s\n", c.error().message.c_str());
    std::abort();
  }
  return std::move(c.value());
}

ledger::Hash128 hash_of(const std::string& text) {
  ledger::Hash128 h{};
  std::uint64_t a = 1469598103934665603ull, b = 1099511628211ull;
  for (unsigned char ch : text) {
    a = (a ^ ch) * 1099511628211ull;
    b = (b ^ ch) * 6364136223846793005ull + 1;
  }
  for (int i = 0; i < 8; ++i) {
    h[i] = static_cast<std::uint8_t>(a >> (8 * i));
    h[8 + i] = static_cast<std::uint8_t>(b >> (8 * i));
  }
  return h;
}

Command keyed(ledger::CommandBody body, const std::string& key) {
  Command c;
  c.body = std::move(body);
  c.idem.has_key = true;
  c.idem.key = key;
  c.idem.scope_key_hash = hash_of("scope/" + key);
  c.idem.request_hash = hash_of("request/" + key);
  return c;
}

ledger::Charge charge_by_usage(const std::string& account, const std::string& user) {
  ledger::Charge c;
  c.account_id = account;
  c.user_id = user;
  c.kind = pricing::Kind::kAgentPrompt;
  c.pool = "credits";
  c.amount = Millicredits::from_mc(7250);
  c.priced_by_usage = true;
  c.rate_card_version = 1;
  pricing::Usage u;
  u.model = "default";
  u.input_tokens = 9800;
  u.output_tokens = 2100;
  u.files_read = 4;
  u.lines_emitted = 190;
  u.lines_changed = 8;
  c.usage = u;
  c.metadata.file = "src/pages/Checkout.jsx";
  c.metadata.feature = "checkout";
  c.metadata.snapshot_id = "snap-0193";
  c.metadata.intent = "fix";
  c.metadata.request_hash = "9f2c4e1a7b3d5f60";
  c.metadata.extra = {{"team", "growth"}, {"ticket", "CR-17"}};
  return c;
}

ledger::Charge charge_by_amount(const std::string& account, pricing::Kind kind, std::int64_t mc) {
  ledger::Charge c;
  c.account_id = account;
  c.user_id = "ops-bot";
  c.kind = kind;
  c.pool = "credits";
  c.amount = Millicredits::from_mc(mc);
  return c;
}

}  // namespace

std::unique_ptr<ledger::Ledger> fresh_ledger() {
  return std::make_unique<ledger::Ledger>(shipped_catalog());
}

const SampleRun& sample_run() {
  static const SampleRun run = [] {
    SampleRun r;
    r.ledger = fresh_ledger();
    std::int64_t now = parse_rfc3339("2026-03-02T09:00:00Z").value();
    std::vector<ledger::Event> events;
    auto apply = [&](Command c) {
      r.ledger->begin_batch(now);
      events.clear();
      r.ledger->apply(c, events);
      for (auto& e : events) r.events.push_back(e);
      r.commands.push_back(std::move(c));
      r.batch_now_ms.push_back(now);
      now += 61'000;
    };
    auto last_event_field = [&](std::string ledger::Event::*field) {
      for (auto it = r.events.rbegin(); it != r.events.rend(); ++it) {
        if (!((*it).*field).empty()) return (*it).*field;
      }
      return std::string();
    };
    apply(keyed(ledger::CreateAccount{"acme", "builder", std::nullopt}, "a1"));
    apply(keyed(ledger::CreateAccount{"big.co", "enterprise", now - 86'400'000}, "a2"));
    apply(keyed(charge_by_usage("acme", "dana"), "c1"));
    apply(keyed(charge_by_amount("acme", pricing::Kind::kBackendFunction, 1500), "c2"));
    {
      ledger::Charge hit = charge_by_amount("big.co", pricing::Kind::kInvokeLlm, 0);
      hit.cache_key = "prompt:42";
      hit.cache_hit = true;
      hit.saved = Millicredits::from_mc(2000);
      hit.metadata.call_site = "checkout.summary";
      apply(keyed(hit, "c3"));
    }
    ledger::AddGrant pack;
    pack.account_id = "big.co";
    pack.pool = "credits";
    pack.source = ledger::GrantSource::kPack;
    pack.credits = Millicredits::from_mc(500'000);
    pack.reason = "pack";
    apply(keyed(pack, "g1"));
    ledger::AddGrant adj = pack;
    adj.source = ledger::GrantSource::kAdjustment;
    adj.credits = Millicredits::from_mc(-1000);
    adj.expires_at_ms = now + 30LL * 86'400'000;
    adj.reason = "goodwill correction";
    apply(keyed(adj, "g2"));
    ledger::Hold h;
    h.account_id = "acme";
    h.user_id = "dana";
    h.kind = pricing::Kind::kDiscussTurn;
    h.pool = "credits";
    h.amount = Millicredits::from_mc(3000);
    h.ttl_ms = 120'000;
    apply(keyed(h, "h1"));
    ledger::Capture cap;
    cap.account_id = "acme";
    cap.hold_id = last_event_field(&ledger::Event::hold_id);
    cap.amount = Millicredits::from_mc(2500);
    cap.metadata.feature = "chat";
    apply(keyed(cap, "h1c"));
    apply(keyed(h, "h2"));
    apply(keyed(ledger::Void{"acme", last_event_field(&ledger::Event::hold_id)}, "h2v"));
    apply(keyed(ledger::Refund{"acme", last_event_field(&ledger::Event::charge_id),
                               Millicredits::from_mc(500), "wrong answer"},
                "r1"));
    apply(keyed(ledger::ChangePlan{"acme", "pro"}, "p1"));
    apply(keyed(h, "h3"));  // expires at the sweep below
    now += 10 * 60'000;
    {
      Command sweep;
      sweep.body = ledger::Sweep{};
      apply(std::move(sweep));
    }
    apply(keyed(ledger::CreateAccount{"gone", "free", std::nullopt}, "a3"));
    apply(keyed(ledger::CloseAccount{"gone"}, "x1"));
    // A refused command is logged too (its event is `rejected`).
    apply(keyed(charge_by_amount("acme", pricing::Kind::kSendEmail, 10'000'000'000), "c4"));
    return r;
  }();
  return run;
}

}  // namespace credit::fuzz
