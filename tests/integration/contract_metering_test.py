#!/usr/bin/env python3
"""Contract of the write side (API.md "Errors", "Plans, accounts and keys", "Metering";
DESIGN.md section 1): the answer shapes (every field API.md names, money as JSON numbers),
the error body, the documented order of checks, the headers, the limits API.md names,
refused requests that change nothing (balance and events), billing cycles and resets,
plan changes, daily caps, hold expiry, packs, idempotency for 24 hours and the batch
route's per-op answers.

Runs creditd with --clock manual on a fresh data dir, in time order.
"""
import os
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

AP = h.AGENT_PROMPT_USAGE
LLM = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}  # 1.29
ACCOUNT = {"account_id", "plan", "status", "cycle", "pools", "pending_plan"}
POOL = {"allowance", "extra", "used", "held", "available", "daily_cap", "used_today", "available_now"}
CHARGE = {"charge_id", "cost", "pool", "available_after", "drawn_from", "cached", "saved", "response"}
HOLD = {"hold_id", "amount", "expires_at", "available_after", "drawn_from"}
GRANT = {"grant_id", "pool", "source", "credits", "remaining", "expires_at", "reason", "created_at"}
REFUND = {"refund_id", "credits", "restored_to", "forfeited"}


def is_num(v):
    """Money and counts are JSON numbers (never strings, never booleans)."""
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def replayed(r):
    return r.headers.get("idempotent-replayed") == "true"


def fresh(r):
    return r.headers.get("idempotent-replayed") in (None, "false")


def bad_param(r, code, param):
    return is_error(r, 400, code) and r.err.get("param") == param


def events(c, acct):
    return c.get(f"/v1/accounts/{acct}/events?limit=1000").get("events") or []


def state(c, acct):
    return c.pool(acct), len(events(c, acct))


def unchanged(label, c, acct, before, new_types=()):
    """A refused request changed no balance; its only event is the `rejected` record of a
    stored refusal (DESIGN.md: 402, 403 purchase_not_allowed and 409 are stored)."""
    pool, n = before
    eq(f"{label}: the balance is unchanged", c.pool(acct), pool)
    eq(f"{label}: events added", [e.get("type") for e in events(c, acct)[n:]], list(new_types))


# ----------------------------------------------------------------------------- errors

def errors():
    c = C
    c.create_account("err", "starter")
    c.charge("err", amount=1, idem="err-1")
    before = state(c, "err")
    hp = "/v1/accounts/err/holds"
    cases = [
        ("no key", lambda: c.post("/v1/accounts/err/charges", {}, key=None), 401, "unauthorized", None),
        ("bad JSON", lambda: c.post("/v1/accounts/err/charges", raw="{"), 400, "invalid_json", None),
        ("unknown account", lambda: c.charge("nobody", amount=1), 404, "account_not_found", None),
        ("unknown hold", lambda: c.post(hp + "/nohold/void", {"idempotency_key": key()}), 404,
         "hold_not_found", None),
        ("unknown charge", lambda: c.get("/v1/accounts/err/charges/nocharge"), 404, "charge_not_found", None),
        ("unknown route", lambda: c.get("/v1/nothing-here"), 404, "not_found", None),
        ("used key, other body", lambda: c.charge("err", amount=2, idem="err-1"), 422,
         "idempotency_key_reused", None),
        ("no user_id", lambda: c.post("/v1/accounts/err/charges", {"idempotency_key": key(), "kind": "backend_function", "amount": 1}),
         400, "invalid_request", "user_id"),
        ("unknown kind", lambda: c.charge("err", amount=1, kind="nope"), 400, "invalid_request", "kind"),
        ("unknown field", lambda: c.charge("err", amount=1, colour="red"), 400, "unknown_field", "colour"),
        ("unknown model", lambda: c.charge("err", kind="agent_prompt", usage={"model": "zz"}), 400,
         "invalid_usage", "usage.model"),
        ("unknown dimension", lambda: c.charge("err", kind="agent_prompt", usage={"tokens": 1}), 400,
         "invalid_usage", "usage.tokens"),
        ("amount 1.0001", lambda: c.charge("err", amount=D("1.0001")), 400, "invalid_amount", None),
        ("amount -1", lambda: c.charge("err", amount=-1), 400, "invalid_amount", None),
        ("neither usage nor amount", lambda: c.post("/v1/accounts/err/charges", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u"}),
         400, "invalid_request", None),
        ("ttl_ms 3600001", lambda: c.post(hp, {"idempotency_key": key(), "kind": "backend_function", "user_id": "u", "amount": 1, "ttl_ms": 3600001}),
         400, "invalid_request", "ttl_ms"),
        ("user_id of 129", lambda: c.charge("err", amount=1, user_id="u" * 129), 400, "invalid_request", "user_id"),
        ("user_id with a tab", lambda: c.charge("err", amount=1, user_id="a\tb"), 400, "invalid_request", "user_id"),
        ("idempotency key not ASCII", lambda: c.charge("err", amount=1, idem="cl\u00e9"), 400, "invalid_request",
         "idempotency_key"),
        ("cache_key of 65", lambda: c.charge("err", amount=1, kind="integration.invoke_llm", cache_key="c" * 65),
         400, "invalid_request", "cache_key"),
        ("metadata value not a string", lambda: c.charge("err", amount=1, metadata={"file": 1}), 400,
         "invalid_request", "metadata.file"),
        ("list limit 1001", lambda: c.get("/v1/accounts/err/holds?limit=1001"), 400, "invalid_request", "limit"),
        ("list limit 0", lambda: c.get("/v1/accounts?limit=0"), 400, "invalid_request", "limit"),
    ]
    for name, call, status, code, param in cases:
        r = call()
        ok = is_error(r, status, code) and set(r.doc) == {"error"} and r.err.get("message")
        if param:
            ok = ok and r.err.get("param") == param
        check(f"errors: {name}: {status} {code}" + (f" param {param}" if param else "")
              + ", the body is {error: {code, message, ...}}", ok, r)
        check(f"errors: {name}: JSON content type", "application/json" in r.headers.get("content-type", ""), r.headers)
    unchanged("errors: after the refusals", c, "err", before)
    r = c.get("/v1/accounts/err/holds?limit=1000")
    check("limits: list limit 1000 is allowed", r.status == 200 and r.get("next") is None, r)
    r = c.charge("err", amount=1, user_id="u" * 128)
    check("limits: a 128-character user id is allowed", r.status == 201, r)
    r = c.charge("err", amount=1, kind="integration.invoke_llm", cache_key="c" * 64)
    check("limits: a 64-character cache key is allowed", r.status == 201 and r.get("cached") is False, r)


def input_rules():
    c = C
    c.create_account("inp", "starter")
    c.create_account("inp2", "starter")
    svc = c.with_key(c.create_service_key())
    before = state(c, "inp")
    path = "/v1/accounts/inp/charges"
    body = '{"idempotency_key": "%s", "kind": "backend_function", "user_id": "u", "amount": %s}'
    r = c.post(path, raw='{"idempotency_key": "dup", "kind": "backend_function", "user_id": "u", "amount": 1, "amount": 900}')
    check("input: a key named twice in an object is 400 invalid_json", is_error(r, 400, "invalid_json"), r)
    for text in ("1.5e-3", "1e-400", "1e400", "1000000000000.001"):
        r = c.post(path, raw=body % (key(), text))
        check(f"input: amount {text} is 400 invalid_amount param amount", bad_param(r, "invalid_amount", "amount"), r)
    r = c.charge("inp", kind="agent_prompt", usage={"input_tokens": D("1.5")})
    check("input: a fractional token count is 400 invalid_usage", bad_param(r, "invalid_usage", "usage.input_tokens"), r)
    r = c.charge("inp", kind="agent_prompt", usage="many")
    check("input: usage not an object is 400 invalid_usage param usage", bad_param(r, "invalid_usage", "usage"), r)
    hid = c.post("/v1/accounts/inp2/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                             "amount": 5})["hold_id"]
    r = c.post(f"/v1/accounts/inp/holds/{hid}/capture", {"idempotency_key": key()})
    check("input: another account's hold is 404 hold_not_found", is_error(r, 404, "hold_not_found"), r)
    r = c.post(f"/v1/accounts/inp2/holds/{hid}/capture", {"idempotency_key": key(), "kind": "agent_prompt"})
    check("input: capture takes no kind (unknown_field)", bad_param(r, "unknown_field", "kind"), r)
    r = svc.put("/v1/accounts/inp/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    check("input: rate limits are admin only (service: 403)", is_error(r, 403, "forbidden"), r)
    r = svc.post("/v1/accounts/inp/adjustments", {"pool": "credits", "credits": 5, "reason": "x", "idempotency_key": key()})
    check("input: adjustments are admin only (service: 403)", is_error(r, 403, "forbidden"), r)
    unchanged("input: the refusals", c, "inp", before)
    r = c.post(path, raw=body % (key(), "1E3"))
    check("input: 1E3 is 1000 credits", r.status == 201 and r.get("cost") == 1000, r)


# ----------------------------------------------------------------------------- shapes

def shapes():
    c = C
    r = c.get("/v1/plans")
    plans = r.get("plans") or []
    check("plans: 200 with the six default plans in order",
          r.status == 200 and [p.get("id") for p in plans] == ["free", "starter", "builder", "pro", "elite", "enterprise"], r)
    for p in plans:
        check(f"plans: {p.get('id')} has exactly API.md's fields",
              set(p) == {"id", "name", "price_usd_cents", "pools", "cycle_anchor", "packs_allowed", "rollover_percent"}
              and set(p["pools"]) == {"credits"} and set(p["pools"]["credits"]) == {"allowance", "daily_cap"}, p)
    free = plans[0] if plans else {}
    eq("plans: free as DESIGN.md's table says",
       (free.get("name"), free.get("price_usd_cents"), free.get("pools"), free.get("cycle_anchor"),
        free.get("packs_allowed"), free.get("rollover_percent")),
       ("Free", 0, {"credits": {"allowance": 100, "daily_cap": 25}}, "signup", False, 0))
    eq("plans: prices in cents, allowances, anchors and packs of the others",
       [(p.get("price_usd_cents"), p["pools"]["credits"]["allowance"], p["pools"]["credits"]["daily_cap"],
         p.get("cycle_anchor"), p.get("packs_allowed")) for p in plans[1:]],
       [(2000, 2000, None, "billing", False), (5000, 5000, None, "billing", False),
        (10000, 10000, None, "billing", False), (20000, 25000, None, "billing", False),
        (100000, 100000, None, "billing", True)])

    r = c.post("/v1/accounts", {"account_id": "shape", "plan": "starter", "idempotency_key": key()})
    check("account: 201 with exactly API.md's fields", r.status == 201 and set(r.doc) == ACCOUNT
          and set(r["cycle"]) == {"start", "end"} and set(r["pools"]) == {"credits"}
          and set(r["pools"]["credits"]) == POOL, r)
    eq("account: a new starter account", r.doc, {
        "account_id": "shape", "plan": "starter", "status": "open",
        "cycle": {"start": "2026-01-31T10:00:00Z", "end": "2026-02-28T10:00:00Z"},
        "pools": {"credits": {"allowance": 2000, "extra": 0, "used": 0, "held": 0, "available": 2000,
                              "daily_cap": None, "used_today": 0, "available_now": 2000}},
        "pending_plan": None})

    r = c.post("/v1/accounts/shape/quote", {"kind": "agent_prompt", "usage": AP})
    eq("quote: exactly {cost, pool, rate_card_version}", r.doc, {"cost": D("9.92"), "pool": "credits", "rate_card_version": 1})
    r = c.post("/v1/accounts/shape/quote", {"kind": "agent_prompt", "usage": AP, "idempotency_key": key()})
    check("quote: takes no idempotency key (unknown_field)", bad_param(r, "unknown_field", "idempotency_key"), r)
    r = c.post("/v1/accounts/nobody/quote", {"kind": "agent_prompt", "usage": AP})
    check("quote: unknown account is 404", is_error(r, 404, "account_not_found"), r)

    r = c.charge("shape", usage=AP, kind="agent_prompt", idem="shape-c1")
    check("charge: 201 with exactly API.md's fields", r.status == 201 and set(r.doc) == CHARGE, r)
    check("charge: money is JSON numbers", all(is_num(r.get(k)) for k in ("cost", "available_after"))
          and all(is_num(d.get("credits")) for d in r.get("drawn_from") or []), r.text)
    eq("charge: the values", {k: r.get(k) for k in CHARGE - {"charge_id"}},
       {"cost": D("9.92"), "pool": "credits", "available_after": D("1990.08"),
        "drawn_from": [{"source": "allowance", "credits": D("9.92")}], "cached": False, "saved": None, "response": None})
    check("charge: a first answer has no Idempotent-Replayed: true", fresh(r), r.headers)
    cid = r.get("charge_id")
    g = c.get(f"/v1/accounts/shape/charges/{cid}")
    check("GET charge: 200 with the charge and its refunds", g.status == 200 and g.get("charge_id") == cid
          and g.get("cost") == D("9.92") and g.get("refunds") == [], g)

    r = c.post("/v1/accounts/shape/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                             "usage": AP})
    check("hold: 201 with exactly API.md's fields", r.status == 201 and set(r.doc) == HOLD, r)
    eq("hold: by usage, the default ttl is 300 s", {k: r.get(k) for k in HOLD - {"hold_id"}},
       {"amount": D("9.92"), "expires_at": "2026-01-31T10:05:00Z", "available_after": D("1980.16"),
        "drawn_from": [{"source": "allowance", "credits": D("9.92")}]})
    hid = r.get("hold_id")
    r = c.get("/v1/accounts/shape/holds?status=open")
    eq("holds list: {holds: [{hold_id, kind, user_id, amount, state, expires_at}], next}", r.doc,
       {"holds": [{"hold_id": hid, "kind": "agent_prompt", "user_id": "u", "amount": D("9.92"), "state": "open",
                   "expires_at": "2026-01-31T10:05:00Z"}], "next": None})
    r = c.post(f"/v1/accounts/shape/holds/{hid}/capture", {"idempotency_key": key(), "usage": dict(AP, output_tokens=1000)})
    check("capture: 201 charge (the charge's fields)", r.status == 201 and CHARGE <= set(r.doc)
          and r.get("cost") == D("8.12") and r.get("cached") is False, r)
    g = c.get(f"/v1/accounts/shape/charges/{r.get('charge_id')}")
    check("capture: its charge can be read", g.status == 200 and g.get("cost") == D("8.12"), g)
    r = c.post("/v1/accounts/shape/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                             "amount": D("2.5")})
    r = c.post(f"/v1/accounts/shape/holds/{r.get('hold_id')}/void", {"idempotency_key": key()})
    check("void: 200 exactly {hold_id, released}", r.status == 200 and set(r.doc) == {"hold_id", "released"}
          and r.get("released") == D("2.5"), r)

    r = c.post(f"/v1/accounts/shape/charges/{cid}/refunds", {"idempotency_key": key(), "credits": D("0.92"), "reason": "x"})
    check("refund: 201 with exactly API.md's fields", r.status == 201 and set(r.doc) == REFUND, r,
          bug="API.md: 201 {refund_id, credits, restored_to, forfeited}")
    eq("refund: the values", {k: r.get(k) for k in REFUND - {"refund_id"}},
       {"credits": D("0.92"), "restored_to": [{"source": "allowance", "credits": D("0.92")}], "forfeited": 0})
    before = state(c, "shape")
    r = c.post(f"/v1/accounts/shape/charges/{cid}/refunds", {"idempotency_key": key(), "credits": 1})
    check("refund: reason is required (400 invalid_request param reason)",
          bad_param(r, "invalid_request", "reason"), r, bug="API.md: refunds take {idempotency_key, credits?, reason}")
    unchanged("refund without a reason", c, "shape", before)

    r = c.post("/v1/accounts/shape/adjustments", {"pool": "credits", "credits": 5, "reason": "gift",
                                                   "idempotency_key": key()})
    check("adjustment: 201 grant with exactly API.md's fields", r.status == 201 and set(r.doc) == GRANT, r)
    eq("adjustment: the grant", {k: r.get(k) for k in GRANT - {"grant_id"}},
       {"pool": "credits", "source": "adjustment", "credits": 5, "remaining": 5, "expires_at": None,
        "reason": "gift", "created_at": "2026-01-31T10:00:00Z"})
    gr = c.get("/v1/accounts/shape/grants")
    check("grants: {grants: [grant], next}", gr.status == 200 and set(gr.doc) == {"grants", "next"}
          and [set(x) for x in gr["grants"]] == [GRANT] and gr["grants"][0] == r.doc, gr)

    r = c.put("/v1/accounts/shape/rate-limits", {"per_user": {"per_minute": 60, "burst": 5},
                                                  "per_account": {"per_minute": 600, "burst": 50}})
    eq("rate limits: 200 the limits in force", (r.status, r.doc),
       (200, {"per_user": {"per_minute": 60, "burst": 5}, "per_account": {"per_minute": 600, "burst": 50}}))
    r = c.put("/v1/accounts/shape/rate-limits", {"per_user": {"per_minute": 60, "burst": 5, "rate": 1}})
    check("rate limits: an unknown nested field is 400 unknown_field", is_error(r, 400, "unknown_field"), r)
    r = c.put("/v1/accounts/nobody/rate-limits", {"per_user": {"per_minute": 60, "burst": 5}})
    check("rate limits: unknown account is 404", is_error(r, 404, "account_not_found"), r)

    r = c.put("/v1/accounts/shape/cache/q1", {"kind": "integration.invoke_llm", "response": {"text": "hi"}})
    check("cache PUT: 204 with no body", r.status == 204 and r.text == "", r)
    r = c.put("/v1/accounts/shape/cache/q1", {"kind": "integration.invoke_llm", "response": 1, "ttl": 5})
    check("cache PUT: an unknown field is 400 unknown_field", bad_param(r, "unknown_field", "ttl"), r)
    r = c.put("/v1/accounts/shape/cache/q1", {"kind": "integration.invoke_llm", "response": 1, "ttl_s": 0})
    check("cache PUT: ttl_s 0 is 400 param ttl_s", bad_param(r, "invalid_request", "ttl_s"), r)
    r = c.charge("shape", usage=LLM, kind="integration.invoke_llm", cache_key="q1")
    check("cache hit: 201 with the charge's fields", r.status == 201 and set(r.doc) == CHARGE, r)
    eq("cache hit: cost 0, cached, saved, response, drawn_from []", {k: r.get(k) for k in CHARGE - {"charge_id"}},
       {"cost": 0, "pool": "credits", "available_after": D("1987.88"), "drawn_from": [], "cached": True,
        "saved": D("1.29"), "response": {"text": "hi"}})
    r = c.post("/v1/accounts/shape/holds", {"idempotency_key": key(), "kind": "integration.invoke_llm",
                                             "user_id": "u", "usage": LLM, "cache_key": "q1"})
    eq("cache hit on a hold: 200 exactly {cached, saved, response}", (r.status, r.doc),
       (200, {"cached": True, "saved": D("1.29"), "response": {"text": "hi"}}))
    r = c.get("/v1/accounts/shape/cache/q1?kind=integration.invoke_llm")
    eq("cache GET: 200 exactly {response}", (r.status, r.doc), (200, {"response": {"text": "hi"}}))


# ----------------------------------------------------------------------------- order of checks

def order():
    c = C
    c.create_account("ord", "starter")
    meter = c.with_key(c.create_key("ord", "meter"))
    c.charge("ord", amount=1, idem="ord-1")
    hid = c.post("/v1/accounts/ord/holds", {"idempotency_key": "ord-h", "kind": "backend_function", "user_id": "u",
                                            "amount": 5})["hold_id"]
    before = state(c, "ord")
    r = c.post("/v1/accounts/ord/charges", raw=b"{" * 10, key="nope")
    check("order: 401 before invalid_json", is_error(r, 401, "unauthorized"), r)
    r = meter.post("/v1/accounts/other/charges", raw=b"{")
    check("order: invalid_json before 403", is_error(r, 400, "invalid_json"), r)
    r = c.post("/v1/accounts/ord/holds/nohold/capture", {"idempotency_key": "ord-1", "amount": -1})
    check("order: 404 hold_not_found before 422 and 400", is_error(r, 404, "hold_not_found"), r)
    r = c.post("/v1/accounts/ord/charges/nocharge/refunds", {"idempotency_key": "ord-1", "credits": -1, "reason": "x"})
    check("order: 404 charge_not_found before 422 and 400", is_error(r, 404, "charge_not_found"), r)
    r = c.charge("ord", amount=-1, idem="ord-1")
    check("order: 422 before 400 validation", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(f"/v1/accounts/ord/holds/{hid}/capture", {"idempotency_key": "ord-1", "amount": 1})
    check("order: a charge's key on a capture is 422", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(f"/v1/accounts/ord/holds/{hid}/capture", {"idempotency_key": key(), "amount": 6})
    check("order: capture above the hold: 400 capture_exceeds_hold with hold_amount, required",
          is_error(r, 400, "capture_exceeds_hold") and r.err.get("hold_amount") == 5 and r.err.get("required") == 6, r)
    r = c.post(f"/v1/accounts/ord/holds/{hid}/capture", {"idempotency_key": key(), "amount": 1, "overage": "maybe"})
    check("order: a bad overage is 400 param overage", bad_param(r, "invalid_request", "overage"), r)
    unchanged("order: 401/400/404/422 and capture_exceeds_hold", c, "ord", before)
    check("order: the hold stayed open", [x["hold_id"] for x in c.get("/v1/accounts/ord/holds?status=open")["holds"]] == [hid])

    # 404 before a missing or bad idempotency key (a field error), on every keyed route.
    for path, code in (("/v1/accounts/nope/charges", "account_not_found"),
                       ("/v1/accounts/nope/holds", "account_not_found"),
                       ("/v1/accounts/ord/holds/h_nope/capture", "hold_not_found"),
                       ("/v1/accounts/ord/holds/h_nope/void", "hold_not_found"),
                       ("/v1/accounts/ord/charges/c_nope/refunds", "charge_not_found"),
                       ("/v1/accounts/nope/adjustments", "account_not_found"),
                       ("/v1/accounts/nope/close", "account_not_found"),
                       ("/v1/accounts/nope/keys", "account_not_found")):
        r = c.post(path, {})
        check(f"order: 404 {code} before the missing key: POST {path}", is_error(r, 404, code), r)
    r = c.post("/v1/accounts/ord/charges", {"kind": "discuss_turn", "user_id": "u", "amount": 1})
    check("order: an existing account without a key: 400 param idempotency_key",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "idempotency_key", r)
    r = c.post("/v1/accounts/ord/charges", {"kind": "discuss_turn", "user_id": "u", "amount": 1,
                                            "idempotency_key": "\t"})
    check("order: a bad key: 400 param idempotency_key",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "idempotency_key", r)
    unchanged("order: 404s and 400s without a key", c, "ord", before)

    # 400 before 429, 429 before 402, replay before 429.
    c.put("/v1/accounts/ord/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    r = c.charge("ord", amount=1, kind="discuss_turn", idem="ord-rl")
    check("order: the limited user's first charge is 201", r.status == 201, r)
    before = state(c, "ord")
    r = c.charge("ord", amount=-1, kind="discuss_turn")
    check("order: 400 before 429", is_error(r, 400, "invalid_amount"), r)
    r = c.charge("ord", amount=10 ** 6, kind="discuss_turn")
    check("order: 429 before 402, with retry_after_ms and Retry-After",
          is_error(r, 429, "rate_limited") and is_num(r.err.get("retry_after_ms")) and r.headers.get("retry-after"), r)
    r = c.charge("ord", amount=1, kind="discuss_turn", idem="ord-rl")
    check("order: a replay is answered before the rate limit", r.status == 201 and replayed(r), r)
    unchanged("order: 400, 429 and a replay", c, "ord", before)

    # 409 before 402; replay before 409; the 409 is stored with a rejected event.
    c.post("/v1/accounts/ord/close", {"idempotency_key": key()})
    before = state(c, "ord")
    r = c.charge("ord", amount=10 ** 6, idem="ord-big")
    check("order: 409 account_closed before 402", is_error(r, 409, "account_closed"), r)
    r2 = c.charge("ord", amount=10 ** 6, idem="ord-big")
    check("order: the 409 is stored (replay, Idempotent-Replayed)", r2.status == 409 and replayed(r2)
          and r2.text == r.text, r2)
    r = c.post("/v1/accounts/ord/adjustments", {"pool": "credits", "credits": -10 ** 6, "reason": "x",
                                                "idempotency_key": key()})
    check("order: a negative adjustment on a closed account: 409 before 402", is_error(r, 409, "account_closed"), r)
    r = c.charge("ord", amount=-1)
    check("order: 400 before 409", is_error(r, 400, "invalid_amount"), r)
    r = c.charge("ord", amount=1, idem="ord-1")
    check("order: a replay is answered on a closed account", r.status == 201 and replayed(r), r)
    r = c.post(f"/v1/accounts/ord/holds/{hid}/void", {"idempotency_key": key()})
    check("order: a void on a closed account: 409 account_closed", is_error(r, 409, "account_closed"), r)
    unchanged("order: refusals on a closed account", c, "ord", before, ["rejected"] * 3)


# ----------------------------------------------------------------------------- refusals change nothing

def refusals():
    c = C
    c.create_account("ref", "starter")
    c.charge("ref", amount=1990)
    before = state(c, "ref")
    r = c.charge("ref", amount=11, idem="ref-402")
    check("402: insufficient_credits with required, available, refused_by pool, cycle_end, upgrade_to",
          is_error(r, 402, "insufficient_credits") and r.err.get("required") == 11 and r.err.get("available") == 10
          and r.err.get("refused_by") == "pool" and r.err.get("cycle_end") == "2026-02-28T10:00:00Z"
          and r.err.get("upgrade_to") == "builder" and "resets_at" not in r.err, r)
    r = c.charge("ref", amount=10 ** 9)
    check("402: no plan covers it: upgrade_to null", is_error(r, 402, "insufficient_credits")
          and "upgrade_to" in r.err and r.err["upgrade_to"] is None, r)
    r = c.post("/v1/accounts/ref/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                          "amount": 11})
    check("402: a hold too", is_error(r, 402, "insufficient_credits") and r.err.get("refused_by") == "pool", r)
    r = c.post("/v1/accounts/ref/packs", {"pool": "credits", "credits": 100, "idempotency_key": key()})
    check("403 purchase_not_allowed with upgrade_to enterprise",
          is_error(r, 403, "purchase_not_allowed") and r.err.get("upgrade_to") == "enterprise", r)
    r = c.post("/v1/accounts/ref/adjustments", {"pool": "credits", "credits": -11, "reason": "x", "idempotency_key": key()})
    check("402: a negative adjustment beyond available", is_error(r, 402, "insufficient_credits")
          and r.err.get("required") == 11 and r.err.get("available") == 10, r)
    unchanged("402/403: stored refusals", c, "ref", before, ["rejected"] * 5)
    rej = [e for e in events(c, "ref") if e.get("type") == "rejected"]
    check("402: the rejected event names the rule (refused_by pool)", rej and rej[0].get("refused_by") == "pool"
          and rej[0].get("idempotency_key") == "ref-402", rej[:1])
    before = state(c, "ref")
    r = c.charge("ref", amount=11, idem="ref-402")
    check("402: the replay is the stored answer", r.status == 402 and replayed(r), r)
    r = c.post("/v1/accounts/ref/packs", {"pool": "credits", "credits": 100, "reason": "promo", "idempotency_key": key()})
    check("packs: reason is not a field of the route (400 unknown_field)", bad_param(r, "unknown_field", "reason"), r,
          bug="API.md: packs take {pool, credits, idempotency_key}; unknown_field for any other")
    r = c.post("/v1/accounts/ref/packs", {"pool": "credits", "credits": 100, "expires_at": "2027-01-01T00:00:00Z",
                                          "idempotency_key": key()})
    check("packs: expires_at is not a field of the route", bad_param(r, "unknown_field", "expires_at"), r)
    r = c.post("/v1/accounts/ref/adjustments", {"pool": "credits", "credits": 5, "idempotency_key": key()})
    check("adjustments: reason is required", bad_param(r, "invalid_request", "reason"), r)
    r = c.post("/v1/accounts/ref/adjustments", {"pool": "credits", "credits": 5, "reason": "x",
                                                "expires_at": "2026-01-31T10:00:00Z", "idempotency_key": key()})
    check("adjustments: expires_at not after now is 400 param expires_at", bad_param(r, "invalid_request", "expires_at"), r)
    r = c.post("/v1/accounts/ref/adjustments", {"pool": "message", "credits": 5, "reason": "x", "idempotency_key": key()})
    check("adjustments: a pool the plan lacks is 400 param pool", bad_param(r, "invalid_request", "pool"), r)
    r = c.post("/v1/accounts/ref/plan", {"plan": "gold", "idempotency_key": key()})
    check("plan: an unknown plan is 400 param plan", bad_param(r, "invalid_request", "plan"), r)
    r = c.post("/v1/accounts", {"account_id": "ref", "plan": "pro", "idempotency_key": key()})
    check("accounts: an existing id is 409 account_exists", is_error(r, 409, "account_exists"), r)
    unchanged("400/409: the refusals", c, "ref", before)
    eq("accounts: the plan did not change", c.account("ref")["plan"], "starter")


# ----------------------------------------------------------------------------- limits

def limits():
    c = C
    c.create_account("lim", "starter")
    codes = []
    for i in range(256):
        r = c.post("/v1/accounts/lim/adjustments", {"pool": "credits", "credits": D("0.001"), "reason": f"g{i}",
                                                    "idempotency_key": f"lim-{i}"})
        codes.append(r.status)
    eq("limits: 256 live grants in a pool", set(codes), {201})
    before = state(c, "lim")
    r = c.post("/v1/accounts/lim/adjustments", {"pool": "credits", "credits": 1, "reason": "one more",
                                                "idempotency_key": key()})
    check("limits: the 257th grant is 409 limit_reached with limit", is_error(r, 409, "limit_reached")
          and isinstance(r.err.get("limit"), str), r)
    unchanged("limits: limit_reached", c, "lim", before, ["rejected"])
    eq("limits: extra is 256 x 0.001", c.pool("lim")["extra"], D("0.256"))
    r = c.post("/v1/batch", {"ops": [{"op": "hold", "account_id": "lim", "idempotency_key": f"lim-h{i}",
                                      "kind": "backend_function", "user_id": "u", "amount": D("0.001")}
                                     for i in range(101)]})
    check("limits: 101 holds in one batch", r.status == 200 and {x["status"] for x in r["results"]} == {201}, r)
    r = c.get("/v1/accounts/lim/holds?status=open")
    check("limits: a list's default limit is 100, with a next cursor",
          r.status == 200 and len(r.get("holds") or []) == 100 and isinstance(r.get("next"), str), r)
    r2 = c.get(f"/v1/accounts/lim/holds?status=open&after={r.get('next')}")
    check("limits: the next page has the last one", r2.status == 200 and len(r2.get("holds") or []) == 1
          and r2.get("next") is None, r2)
    r = c.charge("lim", amount=1, metadata={"intent": "refactor"})
    check("limits: metadata intent is feature, fix or question", bad_param(r, "invalid_request", "metadata.intent"), r)


# ----------------------------------------------------------------------------- cycles, caps, plans

def cycles():
    c = C
    # A paid account anchored at its creation on Jan 31 10:00; signup_at does not move it.
    r = c.post("/v1/accounts", {"account_id": "cyc", "plan": "starter", "signup_at": "2026-01-15T00:00:00Z",
                                "idempotency_key": key()})
    eq("cycle: a paid account is anchored at its creation", r.get("cycle"),
       {"start": "2026-01-31T10:00:00Z", "end": "2026-02-28T10:00:00Z"})
    c.post("/v1/accounts/cyc/adjustments", {"pool": "credits", "credits": 40, "reason": "gift", "idempotency_key": key()})
    c.post("/v1/accounts/cyc/adjustments", {"pool": "credits", "credits": 30, "reason": "promo",
                                            "expires_at": "2026-02-20T00:00:00Z", "idempotency_key": key()})
    r = c.charge("cyc", amount=50)
    eq("spending order: the expiring grant, then the allowance (expires at the cycle end), then the never-expiring",
       r.get("drawn_from"), [{"source": r["drawn_from"][0]["source"], "credits": 30}, {"source": "allowance", "credits": 20}])
    check("spending order: the first bucket is a grant", str(r["drawn_from"][0]["source"]).startswith("grant:"), r)
    c.charge("cyc", amount=1980)
    eq("cycle: allowance spent, the gift left", {k: c.pool("cyc")[k] for k in ("used", "extra", "available")},
       {"used": 2030, "extra": 70, "available": 40})
    c.set_clock("2026-02-28T09:59:59.999Z")
    eq("cycle: 1 ms before the boundary, the same cycle", c.account("cyc")["cycle"]["end"], "2026-02-28T10:00:00Z")
    c.set_clock("2026-02-28T10:00:00Z")
    a = c.account("cyc")
    eq("cycle: at the boundary (Feb 28, clamped) the new cycle runs to Mar 31 10:00", a["cycle"],
       {"start": "2026-02-28T10:00:00Z", "end": "2026-03-31T10:00:00Z"})
    eq("reset: nothing rolls over; the grant alive carries its balance",
       {k: a["pools"]["credits"][k] for k in ("allowance", "extra", "used", "held", "available")},
       {"allowance": 2000, "extra": 40, "used": 0, "held": 0, "available": 2040})
    r = c.charge("cyc", amount=1)
    check("reset: a charge after the boundary", r.status == 201 and r.get("available_after") == 2039, r)
    ev = events(c, "cyc")
    resets = [e for e in ev if e.get("type") == "reset"]
    eq("reset: one reset event at the boundary", [e.get("at") for e in resets], ["2026-02-28T10:00:00Z"])
    expiries = [e for e in ev if e.get("type") == "expire"]
    eq("expire: the promo grant's expiry at its instant", [(e.get("at"), e.get("object")) for e in expiries],
       [("2026-02-20T00:00:00Z", "grant")])
    c.set_clock("2026-03-31T10:00:00Z")
    eq("cycle: no drift (Mar 31 10:00 -> Apr 30 10:00)", c.account("cyc")["cycle"],
       {"start": "2026-03-31T10:00:00Z", "end": "2026-04-30T10:00:00Z"})


def plan_changes():
    c = C
    c.set_clock("2026-04-01T00:00:00Z")
    c.create_account("pc", "starter")  # cycle [Apr 1, May 1): 30 days
    c.charge("pc", amount=1500)
    c.set_clock("2026-04-08T12:00:00Z")  # 22.5 days left
    r = c.post("/v1/accounts/pc/plan", {"plan": "builder", "idempotency_key": key()})
    check("upgrade: 200 account, same cycle, spent stays spent", r.status == 200 and set(r.doc) == ACCOUNT
          and r["plan"] == "builder" and r["cycle"] == {"start": "2026-04-01T00:00:00Z", "end": "2026-05-01T00:00:00Z"}
          and r["pools"]["credits"]["used"] == 1500 and r["pools"]["credits"]["available"] == 3500, r)
    pcs = [e for e in events(c, "pc") if e.get("type") == "plan_change"]
    eq("upgrade: proration = ceil(3000 x 22.5 / 30) cents", [e.get("proration_usd_cents") for e in pcs], [2250])
    c.set_clock("2026-04-08T12:00:00.001Z")
    c.post("/v1/accounts/pc/plan", {"plan": "pro", "idempotency_key": key()})
    pcs = [e for e in events(c, "pc") if e.get("type") == "plan_change"]
    # 5000 x (1944000000 - 1) / 2592000000 = 3749.99999807 -> 3750
    eq("upgrade: proration rounds up", [e.get("proration_usd_cents") for e in pcs][-1:], [3750])
    r = c.post("/v1/accounts/pc/plan", {"plan": "free", "idempotency_key": key()})
    check("downgrade: 200, plan unchanged, pending_plan free", r.status == 200 and r["plan"] == "pro"
          and r["pending_plan"] == "free" and r["pools"]["credits"]["allowance"] == 10000, r)
    c.set_clock("2026-05-01T00:00:00Z")
    a = c.account("pc")
    eq("downgrade: applied at the boundary, anchor unchanged, the cap at once",
       (a["plan"], a["pending_plan"], a["cycle"], a["pools"]["credits"]["allowance"],
        a["pools"]["credits"]["daily_cap"], a["pools"]["credits"]["available_now"]),
       ("free", None, {"start": "2026-05-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}, 100, 25, 25))
    # Free to paid: the free cycle ends now and a new one starts, anchored now, no cap.
    c.set_clock("2026-05-03T07:30:00Z")
    c.charge("pc", amount=20)
    r = c.post("/v1/accounts/pc/plan", {"plan": "starter", "idempotency_key": key()})
    eq("free -> paid: a new cycle anchored now, full allowance, no cap",
       (r.status, r.get("cycle"), r["pools"]["credits"] if r.status == 200 else None),
       (200, {"start": "2026-05-03T07:30:00Z", "end": "2026-06-03T07:30:00Z"},
        {"allowance": 2000, "extra": 0, "used": 0, "held": 0, "available": 2000, "daily_cap": None,
         "used_today": 20, "available_now": 2000}))
    ev = events(c, "pc")
    eq("free -> paid: a reset at that instant", [e.get("at") for e in ev if e.get("type") == "reset"][-1:],
       ["2026-05-03T07:30:00Z"])


def daily_caps():
    c = C
    c.set_clock("2026-05-10T23:30:00Z")
    c.create_account("cap", "free", signup_at="2026-04-11T23:00:00Z")  # cycle boundary on the 11th, 23:00
    r = c.charge("cap", amount=20)
    check("cap: 20 of 25", r.status == 201, r)
    hid = c.post("/v1/accounts/cap/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                            "amount": 3, "ttl_ms": 3600000})["hold_id"]
    p = c.pool("cap")
    eq("cap: available_now = min(available, cap - used_today - held_today)",
       (p["used_today"], p["held"], p["available"], p["available_now"]), (20, 3, 77, 2))
    before = state(c, "cap")
    r = c.charge("cap", amount=D("2.001"))
    check("cap: 402 refused_by daily_cap with resets_at (next UTC midnight), no cycle_end",
          is_error(r, 402, "insufficient_credits") and r.err.get("refused_by") == "daily_cap"
          and r.err.get("resets_at") == "2026-05-11T00:00:00Z" and r.err.get("required") == D("2.001")
          and "cycle_end" not in r.err, r)
    unchanged("cap: the refusal", c, "cap", before, ["rejected"])
    c.set_clock("2026-05-11T00:00:00Z")
    r = c.post(f"/v1/accounts/cap/holds/{hid}/capture", {"idempotency_key": key()})
    check("cap: a capture after midnight is not refused", r.status == 201 and r.get("cost") == 3, r)
    p = c.pool("cap")
    eq("cap: the capture counts on its hold's day (used_today 0 on the new day)", (p["used_today"], p["available_now"]),
       (0, 25))
    c.set_clock("2026-05-11T22:59:00Z")
    c.charge("cap", amount=24)
    c.set_clock("2026-05-11T23:00:00Z")  # the cycle boundary, same UTC day
    p = c.pool("cap")
    eq("cap: does not reset with the cycle (used 0, used_today 24, available_now 1)",
       (p["used"], p["used_today"], p["available"], p["available_now"]), (0, 24, 100, 1))
    r = c.charge("cap", amount=2)
    check("cap: still refused by the cap after the reset", is_error(r, 402, "insufficient_credits")
          and r.err.get("refused_by") == "daily_cap", r)
    c.put("/v1/accounts/cap/cache/img", {"kind": "integration.generate_image", "response": "u"})
    r = c.charge("cap", kind="integration.generate_image", usage={"count": 1}, cache_key="img")
    check("cap: a cache hit counts 0", r.status == 201 and r.get("cached") is True and r.get("saved") == 8, r)


def holds_expiry():
    c = C
    c.set_clock("2026-06-01T00:00:00Z")
    c.create_account("hx", "starter")
    hid = c.post("/v1/accounts/hx/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                           "amount": 7, "ttl_ms": 1})["hold_id"]
    c.set_clock("2026-06-01T00:00:00.001Z")
    eq("expiry: at expires_at the hold is expired", [x.get("state") for x in
                                                     c.get("/v1/accounts/hx/holds?status=expired")["holds"]], ["expired"])
    eq("expiry: held 0, available 2000", (c.pool("hx")["held"], c.pool("hx")["available"]), (0, 2000))
    r = c.post(f"/v1/accounts/hx/holds/{hid}/capture", {"idempotency_key": key(), "amount": 1})
    check("expiry: capture is 409 hold_not_open state expired", is_error(r, 409, "hold_not_open")
          and r.err.get("state") == "expired", r)
    exp = [e for e in events(c, "hx") if e.get("type") == "expire"]
    eq("expiry: an expire event of object hold at expires_at", [(e.get("at"), e.get("object"), e.get("credits")) for e in exp],
       [("2026-06-01T00:00:00.001Z", "hold", 7)])


def idempotency_24h():
    c = C
    c.set_clock("2026-06-10T08:00:00Z")
    c.create_account("idem", "starter")
    r1 = c.charge("idem", amount=3, idem="day-key")
    c.set_clock("2026-06-11T07:59:59.999Z")
    r = c.charge("idem", amount=3, idem="day-key")
    check("24 h: 1 ms before, a replay", r.status == 201 and replayed(r) and r.text == r1.text, r)
    r = c.charge("idem", amount=4, idem="day-key")
    check("24 h: 1 ms before, another body is 422", is_error(r, 422, "idempotency_key_reused"), r)
    c.set_clock("2026-06-11T08:00:00Z")
    r = c.charge("idem", amount=4, idem="day-key")
    check("24 h: at 24 hours the key is a new request", r.status == 201 and fresh(r)
          and r.get("charge_id") != r1.get("charge_id") and r.get("cost") == 4, r)
    eq("24 h: charged 3 + 4", c.pool("idem")["used"], 7)


def packs():
    c = C
    c.set_clock("2026-06-20T12:00:00Z")
    c.create_account("ent", "enterprise")
    r = c.post("/v1/accounts/ent/packs", {"pool": "credits", "credits": D("500.5"), "idempotency_key": "pk"})
    eq("packs: 201 grant of source pack, expiring after 365 days", (r.status, {k: r.get(k) for k in GRANT - {"grant_id", "reason"}}),
       (201, {"pool": "credits", "source": "pack", "credits": D("500.5"), "remaining": D("500.5"),
              "expires_at": "2027-06-20T12:00:00Z", "created_at": "2026-06-20T12:00:00Z"}))
    check("packs: the grant lists every field", set(r.doc or {}) == GRANT, r)
    r2 = c.post("/v1/accounts/ent/packs", {"pool": "credits", "credits": D("500.500"), "idempotency_key": "pk"})
    check("packs: replay", r2.status == 201 and replayed(r2) and r2.text == r.text, r2)
    eq("packs: extra 500.5 once", c.pool("ent")["extra"], D("500.5"))
    r = c.post("/v1/accounts/ent/packs", {"pool": "credits", "credits": 0, "idempotency_key": key()})
    check("packs: 0 credits is 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)


def grants_and_refunds():
    c = C
    c.set_clock("2026-06-25T00:00:00Z")
    c.create_account("gr", "starter")  # cycle [Jun 25, Jul 25)
    late = c.post("/v1/accounts/gr/adjustments", {"pool": "credits", "credits": 10, "reason": "late", "idempotency_key": key(),
                                                  "expires_at": "2026-07-10T00:00:00Z"})["grant_id"]
    soon = c.post("/v1/accounts/gr/adjustments", {"pool": "credits", "credits": 10, "reason": "soon", "idempotency_key": key(),
                                                  "expires_at": "2026-07-05T00:00:00Z"})["grant_id"]
    r = c.post("/v1/accounts/gr/adjustments", {"pool": "credits", "credits": -4, "reason": "claw", "idempotency_key": key()})
    check("negative adjustment: 201", r.status == 201, r)
    eq("negative adjustment: takes free credits earliest-expiring first",
       {g["grant_id"]: g["remaining"] for g in c.get("/v1/accounts/gr/grants")["grants"] if g["grant_id"] in (late, soon)},
       {late: 10, soon: 6})
    r = c.charge("gr", amount=20)
    eq("spending order: soon, late, then the allowance", r.get("drawn_from"),
       [{"source": f"grant:{soon}", "credits": 6}, {"source": f"grant:{late}", "credits": 10},
        {"source": "allowance", "credits": 4}])
    c.set_clock("2026-07-06T00:00:00Z")
    r = c.post(f"/v1/accounts/gr/charges/{r.get('charge_id')}/refunds", {"idempotency_key": key(), "reason": "bad"})
    eq("refund: reverse order, the ended grant forfeited", (r.status, r.get("restored_to"), r.get("forfeited"), r.get("credits")),
       (201, [{"source": "allowance", "credits": 4}, {"source": f"grant:{late}", "credits": 10}], 6, 20))
    p = c.pool("gr")
    check("refund: allowance + extra = used + held + available, used back to 0",
          p["allowance"] + p["extra"] == p["used"] + p["held"] + p["available"] and p["used"] == 0
          and p["available"] == 2010, p)
    # The cache's TTL: a hit before it, a miss (charged) at it.
    c.put("/v1/accounts/gr/cache/e1", {"kind": "integration.send_email", "response": "sent", "ttl_s": 60})
    r = c.charge("gr", kind="integration.send_email", usage={"count": 1}, cache_key="e1")
    check("cache: a hit within ttl_s", r.status == 201 and r.get("cached") is True, r)
    c.set_clock("2026-07-06T00:01:00Z")
    r = c.charge("gr", kind="integration.send_email", usage={"count": 1}, cache_key="e1")
    check("cache: a miss at ttl_s (charged)", r.status == 201 and r.get("cached") is False and r.get("cost") > 0, r)
    r = c.put("/v1/accounts/nobody/cache/e1", {"kind": "integration.send_email", "response": "sent"})
    check("cache: PUT on an unknown account is 404", is_error(r, 404, "account_not_found"), r)
    # Free to paid: the price line is the full price.
    c.create_account("gr-free", "free", signup_at="2026-07-01T00:00:00Z")
    c.post("/v1/accounts/gr-free/plan", {"plan": "builder", "idempotency_key": key()})
    pcs = [e for e in events(c, "gr-free") if e.get("type") == "plan_change"]
    eq("free -> paid: the plan_change's price line is the full price", [e.get("proration_usd_cents") for e in pcs], [5000])
    # Hold lists page with limit and after.
    for _ in range(3):
        c.post("/v1/accounts/gr/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u", "amount": 1})
    seen, after = [], ""
    for _ in range(5):
        r = c.get(f"/v1/accounts/gr/holds?status=open&limit=2{after}")
        seen += [x["hold_id"] for x in r.get("holds") or []]
        if not r.get("next"):
            break
        after = "&after=" + r["next"]
    eq("holds: limit 2 pages through 3 open holds once each", len(seen) == 3 and len(set(seen)) == 3, True)


# ----------------------------------------------------------------------------- batch

def batch():
    c = C
    c.set_clock("2026-07-20T00:00:00Z")
    c.create_account("ba", "starter")
    c.create_account("bb", "free")
    meter = c.with_key(c.create_key("ba", "meter"))
    c.put("/v1/accounts/ba/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    hid = c.post("/v1/accounts/ba/holds", {"idempotency_key": "ba-h", "kind": "backend_function", "user_id": "u",
                                           "amount": 10})["hold_id"]
    single = c.charge("ba", amount=2, idem="ba-single")
    before = state(c, "ba")
    ops = [
        {"op": "charge", "account_id": "ba", "idempotency_key": "b-1", "kind": "backend_function", "user_id": "u", "amount": 1},
        {"op": "charge", "account_id": "ba", "idempotency_key": "ba-single", "kind": "backend_function", "user_id": "u1", "amount": 2},
        {"op": "charge", "account_id": "ba", "idempotency_key": "ba-single", "kind": "backend_function", "user_id": "u1", "amount": 3},
        {"op": "charge", "account_id": "ba", "idempotency_key": "b-4", "kind": "discuss_turn", "user_id": "v", "amount": 1},
        {"op": "charge", "account_id": "ba", "idempotency_key": "b-5", "kind": "discuss_turn", "user_id": "v", "amount": 1},
        {"op": "capture", "account_id": "ba", "hold_id": hid, "idempotency_key": "b-6", "amount": 11},
        {"op": "capture", "account_id": "ba", "hold_id": "nohold", "idempotency_key": "b-7"},
        {"op": "void", "account_id": "ba", "hold_id": hid, "idempotency_key": "b-8"},
        {"op": "void", "account_id": "ba", "hold_id": hid, "idempotency_key": "b-9"},
        {"op": "charge", "account_id": "ba", "idempotency_key": "b-10", "kind": "backend_function", "user_id": "u", "amount": 1, "colour": 1},
        {"op": "refund", "account_id": "ba", "idempotency_key": "b-11"},
        {"op": "charge", "account_id": "bb", "idempotency_key": "b-12", "kind": "backend_function", "user_id": "u", "amount": 1},
        {"op": "charge", "account_id": "ba", "idempotency_key": "b-13", "kind": "backend_function", "user_id": "u", "amount": 10 ** 6},
        {"op": "hold", "account_id": "ba", "idempotency_key": "b-14", "kind": "backend_function", "user_id": "u", "amount": 1, "ttl_ms": 0},
    ]
    r = meter.post("/v1/batch", {"ops": ops})
    res = r.get("results") or []
    check("batch: 200 {results}, one per op", r.status == 200 and set(r.doc) == {"results"} and len(res) == len(ops), r)
    check("batch: each result is exactly {status, body, replayed}",
          all(set(x) == {"status", "body", "replayed"} for x in res), res)
    st = [x.get("status") for x in res]
    eq("batch: the statuses in order", st, [201, 201, 422, 201, 429, 400, 404, 200, 409, 400, 400, 403, 402, 400])
    codes = [((x.get("body") or {}).get("error") or {}).get("code") for x in res]
    eq("batch: the error codes", codes, [None, None, "idempotency_key_reused", None, "rate_limited",
                                         "capture_exceeds_hold", "hold_not_found", None, "hold_not_open",
                                         "unknown_field", "invalid_request", "forbidden", "insufficient_credits",
                                         "invalid_request"])
    eq("batch: replayed only for the single request's key", [x.get("replayed") for x in res],
       [False, True] + [False] * 12)
    if len(res) == len(ops):
        eq("batch: the replayed op's body is the single request's answer", res[1]["body"], single.doc)
        check("batch: the 429 carries retry_after_ms", is_num(res[4]["body"]["error"].get("retry_after_ms")), res[4])
        eq("batch: capture_exceeds_hold details", {k: res[5]["body"]["error"].get(k) for k in ("hold_amount", "required")},
           {"hold_amount": 10, "required": 11})
        eq("batch: void answers {hold_id, released}", res[7]["body"], {"hold_id": hid, "released": 10})
        eq("batch: hold_not_open names the state", res[8]["body"]["error"].get("state"), "voided")
        eq("batch: the params", [res[i]["body"]["error"].get("param") for i in (9, 10, 13)], ["colour", "op", "ttl_ms"])
        check("batch: the 402 has its details", res[12]["body"]["error"].get("refused_by") == "pool"
              and res[12]["body"]["error"].get("required") == 10 ** 6, res[12])
    p = c.pool("ba")
    eq("batch: ba charged 1 + 1 (discuss), the hold voided", (p["used"] - before[0]["used"], p["held"]), (2, 0))
    eq("batch: bb untouched", c.pool("bb")["used"], 0)
    types = [e.get("type") for e in events(c, "ba")[before[1]:]]
    eq("batch: events: 2 charges, a void, the stored 409 and 402 as rejected",
       sorted(types), sorted(["charge", "charge", "void", "rejected", "rejected"]))
    r = c.charge("ba", amount=1, idem="b-6")
    check("batch: the 400 op's key stayed free", r.status == 201 and fresh(r), r)
    r = c.charge("ba", amount=1, idem="b-5", kind="discuss_turn", user_id="v")
    check("batch: the 429 op's key was not stored (still limited, not replayed)",
          is_error(r, 429, "rate_limited") and fresh(r), r)
    r = meter.post("/v1/batch", {"ops": ops[:1]})
    check("batch: a replayed op says replayed, with no header on the batch",
          r.status == 200 and r["results"][0]["replayed"] is True and r["results"][0]["status"] == 201
          and r.headers.get("idempotent-replayed") != "true", r)
    op = {"op": "charge", "account_id": "ba", "idempotency_key": "b-dup", "kind": "backend_function", "user_id": "u",
          "amount": D("0.5")}
    before = state(c, "ba")
    r = meter.post("/v1/batch", {"ops": [op, op, dict(op, amount=1)]})
    res = r.get("results") or []
    eq("batch: one key twice in a batch: the second waits and replays, another body is 422",
       [(x.get("status"), x.get("replayed")) for x in res], [(201, False), (201, True), (422, False)])
    check("batch: ... with the same answer", len(res) == 3 and res[0]["body"] == res[1]["body"], res)
    unchanged("batch: charged once", c, "ba", (dict(before[0], used=before[0]["used"] + D("0.5"),
                                                   used_today=before[0]["used_today"] + D("0.5"),
                                                   available=before[0]["available"] - D("0.5"),
                                                   available_now=before[0]["available_now"] - D("0.5")),
                                              before[1]), ["charge"])
    r = meter.post("/v1/batch", {"ops": [dict(op, account_id="b a", idempotency_key=key()),
                                         {"op": "void", "idempotency_key": key()}]})
    res = r.get("results") or []
    # API.md: each op is authorised "exactly as its single request would be": a meter key's
    # request to /v1/accounts/b a/charges is 403 (another account), so is the op.
    check("batch: an invalid account_id is answered as its own request: 403 for a meter key",
          len(res) == 2 and res[0]["status"] == 403 and res[0]["body"]["error"].get("code") == "forbidden", res)
    check("batch: a missing account_id is 400 param account_id",
          len(res) == 2 and res[1]["status"] == 400 and res[1]["body"]["error"].get("param") == "account_id", res)
    r = meter.post("/v1/batch", {"ops": [5]})
    check("batch: an op that is not an object is 400 in its result (or for the batch)",
          r.status == 400 or (r.status == 200 and r["results"][0]["status"] == 400), r)
    r = meter.post("/v1/batch", {})
    check("batch: ops is required", bad_param(r, "invalid_request", "ops"), r)
    r = meter.post("/v1/batch", {"ops": [], "mode": "x"})
    check("batch: an unknown top-level field is 400 unknown_field", bad_param(r, "unknown_field", "mode"), r)
    r = c.with_key(c.create_key("ba", "read")).post("/v1/batch", {"ops": ops[:1]})
    check("batch: a read key is 403 forbidden", is_error(r, 403, "forbidden"), r)


def retry_after():
    c = C
    c.create_account("ra", "starter")
    c.put("/v1/accounts/ra/rate-limits", {"per_account": {"per_minute": 6000, "burst": 1}})
    c.charge("ra", amount=1, kind="agent_prompt")
    r = c.charge("ra", amount=1, kind="agent_prompt")
    check("Retry-After: a 10 ms wait is still at least 1 whole second",
          is_error(r, 429, "rate_limited") and r.headers.get("retry-after") == "1"
          and 0 < r.err.get("retry_after_ms", 0) <= 10, r)
    c.set_clock("2026-07-20T00:00:00.010Z")
    r = c.charge("ra", amount=1, kind="agent_prompt")
    check("Retry-After: after retry_after_ms the request passes", r.status == 201, r)


def capture_and_cache():
    """Captures validate a given usage; an overage capture lists each bucket once; refusals
    name what was asked and how it was priced; only integrations are cached, and a hit's
    charge id reads back."""
    c = C
    c.create_account("cu", "pro")
    r = c.post("/v1/accounts/cu/holds", {"idempotency_key": key(), "kind": "integration.invoke_llm",
                                         "user_id": "u", "amount": 5})
    hid = r["hold_id"]
    for usage, param in (({"model": "nope", "input_tokens": 5}, "usage.model"),
                         ({"files_read": 5}, "usage.files_read")):
        r = c.post(f"/v1/accounts/cu/holds/{hid}/capture", {"idempotency_key": key(), "amount": 2, "usage": usage})
        check(f"capture with amount: a bad usage ({param}) is 400 invalid_usage", bad_param(r, "invalid_usage", param), r)
    r = c.post(f"/v1/accounts/cu/holds/{hid}/capture", {"idempotency_key": key(), "usage": {"model": "nope"}})
    check("capture priced by usage: an unknown model is 400 invalid_usage (not the whole hold)",
          bad_param(r, "invalid_usage", "usage.model"), r)
    r = c.get("/v1/accounts/cu/holds?status=open")
    eq("capture refused for its usage: the hold is still open", [x["hold_id"] for x in r.get("holds", [])], [hid])
    r = c.post(f"/v1/accounts/cu/holds/{hid}/capture", {"idempotency_key": key(), "amount": 2, "usage": LLM})
    check("capture with amount and a valid usage: 201 at the amount", r.status == 201 and r.get("cost") == 2, r)
    e = [x for x in events(c, "cu") if x["type"] == "capture"]
    eq("capture with amount: the usage is kept with the event", [x.get("usage") for x in e], [LLM])

    # An overage capture draws the hold's bucket and then the same bucket again: one entry.
    c.create_account("f4", "starter")
    r = c.post("/v1/accounts/f4/holds", {"idempotency_key": key(), "kind": "backend_function",
                                         "user_id": "u", "amount": 20})
    r = c.post(f"/v1/accounts/f4/holds/{r['hold_id']}/capture",
               {"idempotency_key": key(), "amount": 22, "overage": "charge"})
    eq("overage capture: drawn_from lists the allowance once", (r.status, r.get("drawn_from")),
       (201, [{"source": "allowance", "credits": 22}]))
    g = c.get(f"/v1/accounts/f4/charges/{r['charge_id']}")
    eq("overage capture: the charge reads back with one draw", g.get("drawn_from"), [{"source": "allowance", "credits": 22}])
    rf = c.post(f"/v1/accounts/f4/charges/{r['charge_id']}/refunds", {"idempotency_key": key(), "reason": "x"})
    eq("overage capture: a full refund restores 22 to the allowance", (rf.status, rf.get("restored_to")),
       (201, [{"source": "allowance", "credits": 22}]))

    # A capture refused for credits is a `rejected` event naming the hold's user, kind, pool.
    c.create_account("ov2", "starter")
    r = c.post("/v1/accounts/ov2/holds", {"idempotency_key": key(), "kind": "integration.send_email",
                                          "user_id": "u7", "amount": 1})
    hid = r["hold_id"]
    c.charge("ov2", amount=c.available("ov2"))
    r = c.post(f"/v1/accounts/ov2/holds/{hid}/capture", {"idempotency_key": key(), "amount": 101, "overage": "charge"})
    check("overage capture without room: 402", is_error(r, 402, "insufficient_credits"), r)
    rej = [x for x in events(c, "ov2") if x["type"] == "rejected"]
    eq("capture 402: the rejected event names the hold's user, kind, pool and the credits asked",
       [(x.get("user_id"), x.get("kind"), x.get("pool"), x.get("credits"), x.get("hold_id"), x.get("priced_by"))
        for x in rej], [("u7", "integration.send_email", "credits", 101, hid, "amount")])

    # A refused charge says how it was priced, with its usage and rate card version.
    r = c.charge("ov2", usage=LLM, kind="integration.invoke_llm", metadata={"call_site": "page/x"})
    check("a usage-priced charge without room: 402", r.status == 402, r)
    r = c.charge("ov2", amount=3)
    check("an amount charge without room: 402", r.status == 402, r)
    version = c.post("/v1/accounts/ov2/quote", {"kind": "integration.invoke_llm", "usage": LLM}).get("rate_card_version")
    rej = [x for x in events(c, "ov2") if x["type"] == "rejected"][1:]
    eq("402 of charges: rejected events keep priced_by, rate_card_version, usage and metadata",
       [(x.get("priced_by"), x.get("rate_card_version"), x.get("usage"), (x.get("metadata") or {}).get("call_site"),
         x.get("credits")) for x in rej],
       [("usage", version, LLM, "page/x", D("1.29")), ("amount", version, None, None, 3)])

    # Only integration calls are cached (DESIGN.md, "Integration cache").
    c.create_account("ck", "pro")
    r = c.put("/v1/accounts/ck/cache/a1", {"kind": "agent_prompt", "response": "x"})
    check("cache PUT for an agent prompt: 400 invalid_request naming kind", bad_param(r, "invalid_request", "kind"), r)
    r = c.put("/v1/accounts/ck/cache/a1", {"kind": "backend_function", "response": "x"})
    check("cache PUT for a backend function: 400 naming kind", bad_param(r, "invalid_request", "kind"), r)
    stats0 = c.get("/v1/accounts/ck/cache-stats").doc
    r = c.charge("ck", amount=5, kind="agent_prompt", cache_key="a1")
    eq("an agent prompt with a cache_key is charged in full", (r.status, r.get("cost"), r.get("cached")), (201, 5, False))
    eq("... and is no cache miss", c.get("/v1/accounts/ck/cache-stats").doc, stats0)
    e = events(c, "ck")[-1]
    eq("... its event keeps the cache_key", (e.get("type"), e.get("cache_key")), ("charge", "a1"))

    # A hit's charge id reads back as a charge of nothing; a refund of it is 409.
    r = c.put("/v1/accounts/ck/cache/q1", {"kind": "integration.invoke_llm", "response": {"text": "hi"}})
    check("cache PUT for an integration: 204", r.status == 204, r)
    r = c.charge("ck", usage=LLM, kind="integration.invoke_llm", cache_key="q1")
    check("a cache hit", r.status == 201 and r.get("cached") is True, r)
    g = c.get(f"/v1/accounts/ck/charges/{r['charge_id']}")
    eq("a hit's charge reads back: cost 0, nothing drawn", (g.status, g.get("cost"), g.get("drawn_from"), g.get("refunds"),
                                                            g.get("kind")),
       (200, 0, [], [], "integration.invoke_llm"))
    rf = c.post(f"/v1/accounts/ck/charges/{r['charge_id']}/refunds", {"idempotency_key": key(), "reason": "x"})
    check("a refund of a hit: 409 charge_not_refundable", is_error(rf, 409, "charge_not_refundable"), rf)

    # A whole number may be spelled 1.0 or 10E0; a dimension given as null is absent.
    q = lambda u, kind="integration.send_email": c.post("/v1/accounts/ck/quote", {"kind": kind, "usage": u})
    eq("usage: 1.0 is the whole number 1", q({"count": Decimal("1.0")}).get("cost"), q({"count": 1}).get("cost"))
    eq("usage: 10E0 is 10", q({"count": 10.0}).get("cost"), q({"count": 10}).get("cost"))
    r = q({"count": Decimal("1.5")})
    check("usage: 1.5 is not whole: 400 invalid_usage", bad_param(r, "invalid_usage", "usage.count"), r)
    eq("usage: a null model is the default model", q(dict(AP, model=None), "agent_prompt").get("cost"),
       q(AP, "agent_prompt").get("cost"))

    # Rate-limit overrides replace the plan's limits they name; the others stay the plan's.
    c.create_account("rz", "free")
    r = c.put("/v1/accounts/rz/rate-limits", {})
    eq("rate limits {}: the plan's limits are in force", (r.status, r.doc),
       (200, {"per_user": {"per_minute": 20, "burst": 20}, "per_account": {"per_minute": 60, "burst": 60}}))
    statuses = [c.charge("rz", amount=D("0.001"), kind="agent_prompt").status for _ in range(21)]
    eq("rate limits {}: the plan's per-user burst of 20 still applies", statuses, [201] * 20 + [429])
    r = c.put("/v1/accounts/rz/rate-limits", {"per_user": {"per_minute": 5, "burst": 5}})
    eq("rate limits: per_user overridden, per_account the plan's", r.doc,
       {"per_user": {"per_minute": 5, "burst": 5}, "per_account": {"per_minute": 60, "burst": 60}})

    # A free-to-paid upgrade's reset says what the pool holds in the new cycle.
    c.create_account("up1", "free")
    c.charge("up1", amount=10)
    r = c.post("/v1/accounts/up1/plan", {"idempotency_key": key(), "plan": "starter"})
    check("free to starter", r.status == 200, r)
    resets = [x for x in events(c, "up1") if x["type"] == "reset"]
    eq("upgrade: the reset's available_after is the new cycle's", [x.get("available_after") for x in resets],
       [c.available("up1")])


def request_rules():
    """404 before 400 on every account route; one admin scope that no account shares; ids
    reached percent-encoded; the bearer scheme in any case; PUT and the clock take no key."""
    c = C
    for label, r in (
            ("quote, bad kind", c.post("/v1/accounts/nope/quote", {"kind": "bogus", "usage": {}})),
            ("rate limits, bad value", c.put("/v1/accounts/nope/rate-limits", {"per_user": {"per_minute": 0, "burst": 1}})),
            ("rate limits, unknown field", c.put("/v1/accounts/nope/rate-limits", {"x": 1})),
            ("cache PUT, unknown field", c.put("/v1/accounts/nope/cache/ck",
                                               {"kind": "integration.send_email", "response": {}, "bogus": 1})),
            ("cache GET, bad kind", c.get("/v1/accounts/nope/cache/ck?kind=bad")),
            ("holds, bad status", c.get("/v1/accounts/nope/holds?status=bad")),
            ("holds, limit 0", c.get("/v1/accounts/nope/holds?limit=0")),
            ("quote, no usage", c.post("/v1/accounts/nope/quote", {"kind": "agent_prompt"})),
            ("cache PUT, no response", c.put("/v1/accounts/nope/cache/ck", {"kind": "integration.send_email"})),
            ("cache PUT, bad cache key", c.put("/v1/accounts/nope/cache/bad!key",
                                               {"kind": "integration.send_email", "response": {}})),
            ("cache GET, bad cache key", c.get("/v1/accounts/nope/cache/bad!key?kind=integration.send_email"))):
        check(f"404 before 400: {label}", is_error(r, 404, "account_not_found"), r)
    c.create_account("rr", "starter")
    check("an existing account still gets the 400", is_error(c.get("/v1/accounts/rr/holds?status=bad"), 400, "invalid_request"))
    r = c.put("/v1/accounts/rr/cache/bad!key", {"kind": "integration.send_email", "response": {}})
    check("... and a bad cache key of an existing account is 400 naming cache_key",
          is_error(r, 400, "invalid_request") and r.get("error", {}).get("param") == "cache_key", r)
    r = c.post("/v1/accounts/rr/quote", {"kind": "agent_prompt"})
    check("... and a quote without usage is 400 naming usage",
          is_error(r, 400, "invalid_request") and r.get("error", {}).get("param") == "usage", r)
    meter = c.with_key(c.create_key("rr", "meter"))
    op = {"op": "charge", "account_id": "bad!id", "idempotency_key": key(), "kind": "backend_function",
          "user_id": "u", "amount": 1}
    r = c.post("/v1/batch", {"ops": [op]})
    eq("batch: a malformed account id is 404 for the admin, as alone", [x["status"] for x in r.get("results", [])], [404])
    r = meter.post("/v1/batch", {"ops": [op]})
    eq("batch: ... and 403 for another account's meter key", [x["status"] for x in r.get("results", [])], [403])

    # (admin, key) and (account "admin", key) are different scopes.
    k = key()
    r = c.post("/v1/accounts", {"account_id": "admin", "plan": "enterprise", "idempotency_key": k})
    check("an account named admin", r.status == 201, r)
    r = c.post("/v1/accounts/admin/adjustments", {"idempotency_key": k, "pool": "credits", "credits": 1, "reason": "x"})
    check("the account admin's scope is not the admin routes' scope", r.status == 201, r)
    k2 = key()
    r = c.post("/v1/accounts/admin/keys", {"idempotency_key": k2, "role": "read"})
    check("a key of the account admin", r.status == 201, r)
    r = c.post("/v1/keys", {"idempotency_key": k2, "role": "service"})
    check("... and a service key with the same idempotency key", r.status == 201 and not replayed(r), r)

    c.create_account("a:b.c", "starter")
    r = c.get("/v1/accounts/a%3Ab.c")
    eq("a percent-encoded id reaches its account", (r.status, r.get("account_id")), (200, "a:b.c"))
    r = c.get("/v1/accounts/a%3zb.c")
    check("a bad percent escape in the path: 400", is_error(r, 400, "invalid_request"), r)
    r = c.get("/v1/accounts/rr", headers={"Authorization": "bearer " + c.api_key})
    check("the bearer scheme is case-insensitive", r.status == 200, r)
    r = c.call("HEAD", "/healthz", key=None)
    check("HEAD /healthz: 200 without a body, like GET", r.status == 200 and r.text == "", r)
    r = c.call("HEAD", "/v1/accounts/rr")
    check("HEAD of an account: 200 without a body", r.status == 200 and r.text == "", r)

    r = c.put("/v1/accounts/rr/rate-limits", {"idempotency_key": "k"})
    check("PUT rate-limits takes no idempotency_key: 400 unknown_field",
          bad_param(r, "unknown_field", "idempotency_key"), r)
    r = c.put("/v1/accounts/rr/cache/z", {"kind": "integration.send_email", "response": 1, "idempotency_key": "k"})
    check("PUT cache takes no idempotency_key", bad_param(r, "unknown_field", "idempotency_key"), r)
    r = c.post("/v1/admin/clock", {"now": "2026-07-21T00:00:00Z", "idempotency_key": "k"})
    check("the clock takes no idempotency_key", bad_param(r, "unknown_field", "idempotency_key"), r)
    r = c.post("/v1/admin/clock", {"now": "9999-12-31T00:00:00Z"})
    check("the clock stops short of the year 10000 (cycle ends stay RFC 3339): 400 naming now",
          bad_param(r, "invalid_request", "now"), r)
    r = c.post("/v1/admin/clock", {"now": "8999-12-31T23:59:59Z"})
    check("... and takes an instant just before 9000-01-01", r.status == 200, r)


def at_ms(base, ms):
    """The instant `ms` milliseconds after `base` (a datetime), as the clock takes it."""
    import datetime
    t = base + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def rate_limit_refill():
    """A bucket refills at exactly per_minute per 60 s: a refused request, or one looked at
    a moment later, throws no fraction of a token away (DESIGN.md "Rate limits")."""
    import datetime
    srv = h.start(manual_clock=True)
    c = srv.client()
    base = datetime.datetime(2026, 3, 1, tzinfo=datetime.timezone.utc)
    c.set_clock(at_ms(base, 0))
    c.create_account("rlf", "free")  # per_user 20/min, burst 20
    ok = [c.charge("rlf", amount=D("0.01"), kind="discuss_turn", user_id="u").status for _ in range(20)]
    eq("free plan: 20 discuss_turn charges in a burst pass", ok, [201] * 20)
    r = c.charge("rlf", amount=D("0.01"), kind="discuss_turn", user_id="u")
    check("... the 21st is 429 with retry_after_ms 3000 (60 s / 20)",
          is_error(r, 429, "rate_limited") and r.err.get("retry_after_ms") == 3000, r)
    waits, granted_at = [], None
    for ms in range(2, 3002, 2):
        c.set_clock(at_ms(base, ms))
        r = c.charge("rlf", amount=D("0.01"), kind="discuss_turn", user_id="u")
        if r.status == 201:
            granted_at = ms
            break
        waits.append((ms, r.err.get("retry_after_ms")))
    eq("polling every 2 ms: the token arrives at exactly 3000 ms", granted_at, 3000)
    eq("... and each refusal's retry_after_ms is exact (3000 - elapsed)",
       [w for w in waits if w[1] != 3000 - w[0]], [])

    c.create_account("rla", "enterprise")
    c.put("/v1/accounts/rla/rate-limits", {"per_user": {"per_minute": 1000000, "burst": 1000000},
                                           "per_account": {"per_minute": 100, "burst": 1}})
    start = 10_000
    allowed = []
    for ms in range(0, 1300):
        c.set_clock(at_ms(base, start + ms))
        if c.charge("rla", amount=D("0.001"), kind="agent_prompt", user_id=f"u{ms}").status == 201:
            allowed.append(ms)
    eq("per_account 100/min burst 1, a charge each ms: one passes every 600 ms",
       allowed, [0, 600, 1200])
    srv.stop()


def cache_replay_after_overwrite():
    """A replayed cache hit answers the response it answered first, or says it is gone
    once the entry was replaced (DESIGN.md "Integration cache")."""
    snapshot_args = ["--snapshot-wal-bytes", "20000"]
    srv = h.start(manual_clock=True, extra_args=snapshot_args)
    c = srv.client()
    c.set_clock("2026-03-01T00:00:00Z")
    c.create_account("ow", "pro")
    email = "integration.send_email"
    c.put("/v1/accounts/ow/cache/ow", {"kind": email, "response": "first"})
    c.put("/v1/accounts/ow/cache/keep", {"kind": email, "response": {"kept": 1}})
    charge = {"idempotency_key": "OW", "kind": email, "user_id": "u", "amount": 1, "cache_key": "ow"}
    hold = {"idempotency_key": "OWH", "kind": email, "user_id": "u", "amount": 1, "cache_key": "ow"}
    kept = {"idempotency_key": "KEEP", "kind": email, "user_id": "u", "amount": 1, "cache_key": "keep"}
    r = c.post("/v1/accounts/ow/charges", charge)
    eq("a hit answers the entry's response", (r.status, r.get("cached"), r.get("response")), (201, True, "first"))
    check("... with no field API.md does not name", set(r.doc) == CHARGE, r)
    r = c.post("/v1/accounts/ow/holds", hold)
    eq("a hold's hit too", (r.status, r.doc), (200, {"cached": True, "saved": 1, "response": "first"}))
    first_kept = c.post("/v1/accounts/ow/charges", kept)
    r = c.post("/v1/accounts/ow/charges", charge)
    eq("a replay before the entry changes: the same response",
       (r.status, replayed(r), r.get("response"), "response_evicted" in r.doc), (201, True, "first", False))
    c.put("/v1/accounts/ow/cache/ow", {"kind": email, "response": "SECOND"})
    r = c.post("/v1/accounts/ow/charges", charge)
    eq("a replay after the entry was replaced: response null, response_evicted true",
       (r.status, replayed(r), r.get("response"), r.get("response_evicted")), (201, True, None, True))
    r = c.post("/v1/accounts/ow/holds", hold)
    eq("... a hold's replay too",
       (r.status, replayed(r), r.get("response"), r.get("response_evicted")), (200, True, None, True))
    r = c.post("/v1/accounts/ow/charges", dict(charge, idempotency_key="OW2"))
    eq("a new hit answers the new response", (r.status, r.get("response")), (201, "SECOND"))
    # Enough log for a snapshot: the restart loads the entries' generations from it.
    for i in range(3):
        c.put(f"/v1/accounts/ow/cache/big{i}", {"kind": email, "response": "x" * 30000})
    snaps = os.path.join(srv.data_dir, "snapshots")
    deadline = time.time() + 60
    while time.time() < deadline and not (os.path.isdir(snaps) and any(f.endswith(".snap") for f in os.listdir(snaps))):
        time.sleep(0.1)
    check("a snapshot was taken", os.path.isdir(snaps) and any(f.endswith(".snap") for f in os.listdir(snaps)))
    for label in ("after a restart", "after a second restart"):
        srv.stop()
        srv = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=snapshot_args)
        c = srv.client()
        r = c.post("/v1/accounts/ow/charges", charge)
        eq(f"{label}: the replaced entry's hit still says evicted",
           (r.status, r.get("response"), r.get("response_evicted")), (201, None, True))
        r = c.post("/v1/accounts/ow/charges", dict(charge, idempotency_key="OW2"))
        eq(f"{label}: the new entry's hit answers it again", (r.status, r.get("response")), (201, "SECOND"))
        r = c.post("/v1/accounts/ow/charges", kept)
        eq(f"{label}: an unchanged entry's hit answers the same bytes", r.text, first_kept.text)
    r = c.put("/v1/accounts/ow/cache/ow", {"kind": email, "response": "THIRD"})
    r = c.post("/v1/accounts/ow/charges", dict(charge, idempotency_key="OW2"))
    eq("a put after the restart replaces the entry again: evicted",
       (r.status, r.get("response"), r.get("response_evicted")), (201, None, True))
    r = c.post("/v1/accounts/ow/charges", dict(charge, idempotency_key="OW3"))
    eq("... and a new hit answers the third response", (r.status, r.get("response")), (201, "THIRD"))
    srv.stop()



def cache_budget():
    """An entry larger than the cache's budget (or the account's quota) cannot be kept: the
    PUT is a clear 400 and changes nothing, the entry it would have replaced stays (found by
    an audit: 204, and the old entry gone)."""
    for flags, label in ((["--cache-bytes-max", "300"], "budget"),
                         (["--cache-account-bytes-max", "200"], "quota")):
        srv = h.start(manual_clock=True, extra_args=flags)
        c = srv.client()
        c.set_clock("2026-03-01T00:00:00Z")
        c.create_account("cb", "pro")
        llm = "integration.invoke_llm"
        r = c.put("/v1/accounts/cb/cache/k", {"kind": llm, "response": "small"})
        eq(f"{label}: a small entry is kept", r.status, 204)
        r = c.put("/v1/accounts/cb/cache/k", {"kind": llm, "response": "y" * 400})
        eq(f"{label}: an entry past the {label} is 400 invalid_request, param response",
           (r.status, r.code, r.err.get("param")), (400, "invalid_request", "response"))
        r = c.get(f"/v1/accounts/cb/cache/k?kind={llm}")
        eq(f"{label}: the entry it would have replaced stays", (r.status, r.get("response")), (200, "small"))
        r = c.post("/v1/accounts/cb/charges", {"idempotency_key": "cb1", "kind": llm, "user_id": "u",
                                                "amount": 1, "cache_key": "k"})
        eq(f"{label}: and still answers a hit", (r.status, r.get("cached"), r.get("response")),
           (201, True, "small"))
        srv.stop()



def cache_order_survives_a_crash():
    """The integration cache "survives a restart" with the same entries: its LRU order
    follows the log (puts and hits), not reads, so a crash brings back the cache the
    server had (found by an audit: after SIGKILL an evicted entry came back and the one
    just used was gone, and later charges were priced differently)."""
    llm = "integration.invoke_llm"
    srv = h.start(manual_clock=True, extra_args=["--cache-bytes-max", "300"])
    c = srv.client()
    c.set_clock("2026-03-01T00:00:00Z")
    c.create_account("a", "pro")
    for k in ("e1", "e2", "e3"):  # 100 bytes each with the key: the budget is full
        eq(f"cache order: put {k}", c.put(f"/v1/accounts/a/cache/{k}", {"kind": llm, "response": "x" * 71}).status,
           204)
    r = c.post("/v1/accounts/a/charges", {"idempotency_key": "h1", "kind": llm, "user_id": "u", "amount": 5,
                                           "cache_key": "e1"})
    eq("cache order: a hit on e1 (now the most recent)", (r.status, r.get("cached")), (201, True))
    eq("cache order: a read of e2 moves nothing", c.get(f"/v1/accounts/a/cache/e2?kind={llm}").status, 200)
    eq("cache order: put e4", c.put("/v1/accounts/a/cache/e4", {"kind": llm, "response": "x" * 71}).status, 204)

    def kept():
        return [k for k in ("e1", "e2", "e3", "e4")
                if c.get(f"/v1/accounts/a/cache/{k}?kind={llm}").status == 200]

    eq("cache order: e4 evicted e2, the least recently used (a read is no use)", kept(), ["e1", "e3", "e4"])
    srv.kill()
    srv = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=["--cache-bytes-max", "300"])
    c = srv.client()
    eq("cache order: after SIGKILL the same entries", kept(), ["e1", "e3", "e4"])
    r = c.post("/v1/accounts/a/charges", {"idempotency_key": "h1", "kind": llm, "user_id": "u", "amount": 5,
                                           "cache_key": "e1"})
    eq("cache order: the hit replays with its response", (r.status, r.get("response")), (201, "x" * 71))
    srv.stop()


SRV = h.start(manual_clock=True)
C = SRV.client()  # one server, the sections in time order
C.set_clock("2026-01-31T10:00:00Z")
for section in (errors, input_rules, shapes, order, refusals, limits, cycles, plan_changes, daily_caps, holds_expiry,
                idempotency_24h, packs, grants_and_refunds, batch, retry_after, capture_and_cache, request_rules,
                rate_limit_refill, cache_replay_after_overwrite, cache_budget, cache_order_survives_a_crash):
    h.run_section(section)
h.finish()
