#!/usr/bin/env python3
"""Accounts, plan changes, packs, adjustments, grants, keys and scoping, the manual clock.

Runs one creditd with --clock manual on a fresh data dir (API.md, DESIGN.md sections 1, 5).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

srv = h.start(manual_clock=True)
c = srv.client()
T0 = "2026-03-10T12:00:00Z"


def invariant(acct, label):
    p = c.pool(acct)
    check(f"{label}: allowance + extra = used + held + available",
          p["allowance"] + p["extra"] == p["used"] + p["held"] + p["available"], p)


def clock():
    eq("clock: a fresh data dir starts at 1970-01-01T00:00:00Z",
       c.post("/v1/admin/clock", {"now": "1970-01-01T00:00:00Z"}).doc, {"now": "1970-01-01T00:00:00Z"})
    r = c.post("/v1/admin/clock", {"now": T0})
    eq("clock: set forward answers 200 {now}", (r.status, r.doc), (200, {"now": T0}))
    r = c.post("/v1/admin/clock", {"now": "2026-03-10T11:59:59Z"})
    check("clock: backwards is 409 clock_backwards", is_error(r, 409, "clock_backwards"), r)
    r = c.post("/v1/admin/clock", {"now": "2026-03-10T13:00:00+01:00"})  # same instant, an offset
    eq("clock: an RFC 3339 offset is accepted (same instant)", (r.status, r.doc), (200, {"now": T0}))
    r = c.post("/v1/admin/clock", {"now": "yesterday"})
    check("clock: a bad time is 400", r.status == 400, r)
    eq("clock: unchanged after the refusals", c.post("/v1/admin/clock", {"now": T0}).doc, {"now": T0})


def accounts():
    body = {"account_id": "acme", "plan": "starter", "idempotency_key": "create-acme"}
    r = c.post("/v1/accounts", body)
    check("create: 201", r.status == 201, r)
    expected = {"account_id": "acme", "plan": "starter", "status": "open",
                "cycle": {"start": T0, "end": "2026-04-10T12:00:00Z"},
                "pools": {"credits": {"allowance": 2000, "extra": 0, "used": 0, "held": 0, "available": 2000,
                                      "daily_cap": None, "used_today": 0, "available_now": 2000}},
                "pending_plan": None}
    eq("create: the account as API.md shapes it (paid plan anchored at creation)", r.doc, expected)
    r2 = c.post("/v1/accounts", body)
    check("create: replay gives the same 201 and Idempotent-Replayed: true",
          r2.status == 201 and r2.doc == r.doc and r2.headers.get("idempotent-replayed") == "true", (r2, r2.headers))
    check("create: the first answer is not marked replayed",
          r.headers.get("idempotent-replayed") in (None, "false"), r.headers)
    r = c.post("/v1/accounts", {"account_id": "acme", "plan": "starter", "idempotency_key": key()})
    check("create: same id, new key: 409 account_exists", is_error(r, 409, "account_exists"), r)
    r = c.post("/v1/accounts", {"account_id": "acme", "plan": "pro", "idempotency_key": "create-acme"})
    check("create: same key, another body: 422 idempotency_key_reused", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post("/v1/accounts", {"account_id": "nope-plan", "plan": "platinum", "idempotency_key": key()})
    check("create: unknown plan: 400 invalid_request param plan",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "plan", r)
    r = c.post("/v1/accounts", {"account_id": "future", "plan": "free", "signup_at": "2026-03-10T12:00:01Z",
                                "idempotency_key": key()})
    check("create: signup_at in the future: 400 param signup_at",
          r.status == 400 and r.err.get("param") == "signup_at", r)
    r = c.post("/v1/accounts", {"account_id": "bad id!", "plan": "free", "idempotency_key": key()})
    check("create: an id outside [A-Za-z0-9._:-]: 400", r.status == 400, r)
    r = c.post("/v1/accounts", {"account_id": "x" * 65, "plan": "free", "idempotency_key": key()})
    check("create: a 65-character id: 400", r.status == 400, r)
    for acct in ("nope-plan", "future", "x" * 65):
        r = c.get(f"/v1/accounts/{acct}")
        check(f"create: a refused create left no account ({acct[:10]})", is_error(r, 404, "account_not_found"), r)
    r = c.post("/v1/accounts", {"account_id": "acme2", "plan": "starter", "idempotency_key": key(), "color": 1})
    check("create: unknown field: 400 unknown_field param color",
          is_error(r, 400, "unknown_field") and r.err.get("param") == "color", r)

    # free plan: cycle anchored on signup_at (in the past)
    r = c.post("/v1/accounts", {"account_id": "early", "plan": "free", "signup_at": "2026-02-20T08:00:00Z",
                                "idempotency_key": key()})
    check("create: free with a past signup_at: 201", r.status == 201, r)
    eq("create: free plan cycle anchored on signup_at", (r.get("cycle") or {}),
       {"start": "2026-02-20T08:00:00Z", "end": "2026-03-20T08:00:00Z"})
    eq("create: free pool", (r.get("pools") or {}).get("credits"),
       {"allowance": 100, "extra": 0, "used": 0, "held": 0, "available": 100, "daily_cap": 25,
        "used_today": 0, "available_now": 25})
    r = c.post("/v1/accounts", {"account_id": "early31", "plan": "free", "signup_at": "2026-01-31T10:00:00Z",
                                "idempotency_key": key()})
    eq("create: anchor Jan 31 10:00 -> cycle [Feb 28 10:00, Mar 31 10:00)", (r.get("cycle") or {}),
       {"start": "2026-02-28T10:00:00Z", "end": "2026-03-31T10:00:00Z"})

    r = c.get("/v1/accounts/acme")
    eq("GET account", (r.status, r.doc), (200, expected))
    r = c.get("/v1/accounts/ghost")
    check("GET unknown account: 404 account_not_found", is_error(r, 404, "account_not_found"), r)

    # list with a cursor
    made = ["list-%02d" % i for i in range(7)]
    for a in made:
        c.create_account(a, "builder")
    allr = c.get("/v1/accounts?limit=1000")
    check("list: 200 {accounts, next: null}", allr.status == 200 and allr.get("next") is None, allr)
    all_ids = [a["account_id"] for a in allr.get("accounts", [])]
    check("list: every account is listed once", set(made + ["acme", "early", "early31"]) <= set(all_ids)
          and len(all_ids) == len(set(all_ids)), all_ids)
    check("list: entries are account objects", all("pools" in a and "plan" in a for a in allr.get("accounts", [])),
          allr.doc)
    seen, after, pages = [], None, 0
    while pages < 50:
        q = "/v1/accounts?limit=3" + (f"&after={after}" if after else "")
        r = c.get(q)
        if not check(f"list: page {pages} is 200 with at most 3", r.status == 200 and len(r.get("accounts", [])) <= 3, r):
            break
        seen += [a["account_id"] for a in r["accounts"]]
        pages += 1
        after = r.get("next")
        if after is None:
            break
        check("list: a page with next is full", len(r["accounts"]) == 3, r)
    eq("list: paging with limit=3 gives the same accounts in the same order", seen, all_ids)
    eq("list: number of pages", pages, (len(all_ids) + 2) // 3)
    r = c.get("/v1/accounts?limit=1")
    check("list: limit=1 gives one account and a next cursor", len(r.get("accounts", [])) == 1 and r.get("next"), r)


def close_account():
    a = c.create_account("closing", "starter")
    r = c.post(f"/v1/accounts/{a}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                           "amount": 50})
    check("close: setup hold 201", r.status == 201, r)
    hold_id = r.get("hold_id")
    c.charge(a, amount=10)
    eq("close: held before", c.pool(a)["held"], 50)
    r = c.post(f"/v1/accounts/{a}/close", {"idempotency_key": "close-1"})
    check("close: 200 account with status closed", r.status == 200 and r.get("status") == "closed", r)
    p = (r.get("pools") or {}).get("credits", {})
    check("close: open holds are voided (held 0, available 1990)", p.get("held") == 0 and p.get("available") == 1990, p)
    r2 = c.post(f"/v1/accounts/{a}/close", {"idempotency_key": "close-1"})
    check("close: replay is the same answer", r2.status == 200 and r2.doc == r.doc
          and r2.headers.get("idempotent-replayed") == "true", r2)
    r = c.get(f"/v1/accounts/{a}/holds?status=open")
    eq("close: no open holds left", r.get("holds"), [])
    r = c.get(f"/v1/accounts/{a}/holds")
    states = {x["hold_id"]: x["state"] for x in r.get("holds", [])}
    check("close: the hold is listed as voided", states.get(hold_id) in ("voided", "void"), r)
    r = c.charge(a, amount=1)
    check("close: a charge afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.post(f"/v1/accounts/{a}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                           "amount": 1})
    check("close: a hold afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": 5, "reason": "x",
                                                 "idempotency_key": key()})
    check("close: an adjustment afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.post(f"/v1/accounts/{a}/close", {"idempotency_key": key()})
    check("close: closing again: 409 account_closed", is_error(r, 409, "account_closed"), r)
    # The account's other settings are mutations too (API.md: later mutations get 409).
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "role": "read"})
    check("close: a new key afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.put(f"/v1/accounts/{a}/rate-limits", {"per_user": {"per_minute": 5, "burst": 5}})
    check("close: rate limits afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.put(f"/v1/accounts/{a}/cache/ck-closed", {"kind": "integration.invoke_llm", "response": {"t": 1}})
    check("close: a cache entry afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.put(f"/v1/accounts/{a}/alert-rules", {"thresholds": [50]})
    check("close: alert rules afterwards: 409 account_closed", is_error(r, 409, "account_closed"), r)
    r = c.put(f"/v1/accounts/{a}/alert-rules", {"thresholds": "x"})
    check("close: bad alert rules are still 400 first", r.status == 400, r)
    eq("close: no key was made", c.get(f"/v1/accounts/{a}/keys").get("keys"), [])
    r = c.get(f"/v1/accounts/{a}")
    check("close: GET still works and says closed", r.status == 200 and r.get("status") == "closed", r)
    eq("close: balance unchanged by the refused mutations", r["pools"]["credits"]["available"], 1990)


def closed_account_key_refusal_is_stored():
    """DESIGN.md, Idempotency: 409s are stored under their key and are `rejected` events.
    POST .../keys on a closed account too, as the plan route's 409 is (found by an audit:
    the key stayed free and no event was made), and after restarts (SIGTERM, SIGKILL)."""
    s2 = h.start(manual_clock=True)
    c2 = s2.client()
    c2.set_clock("2026-03-10T12:00:00Z")
    a = c2.create_account("kc", "pro")
    eq("key refusal: closed", c2.post(f"/v1/accounts/{a}/close", {"idempotency_key": "kc-close"}).status, 200)
    first = c2.post(f"/v1/accounts/{a}/keys", {"idempotency_key": "K1"})
    check("key refusal: 409 account_closed", is_error(first, 409, "account_closed"), first)
    for when in ("live", "after SIGTERM", "after SIGKILL"):
        if when == "after SIGTERM":
            eq("key refusal: SIGTERM exits 0", s2.stop(), 0)
            s2 = h.start(manual_clock=True, data_dir=s2.data_dir)
            c2 = s2.client()
        elif when == "after SIGKILL":
            s2.kill()
            s2 = h.start(manual_clock=True, data_dir=s2.data_dir)
            c2 = s2.client()
        r = c2.post(f"/v1/accounts/{a}/keys", {"idempotency_key": "K1"})
        eq(f"key refusal ({when}): the same body replays the 409",
           (r.status, r.code, r.headers.get("idempotent-replayed"), r.text), (409, "account_closed", "true", first.text))
        r = c2.post(f"/v1/accounts/{a}/keys", {"idempotency_key": "K1", "role": "meter"})
        check(f"key refusal ({when}): another body with the key is 422", is_error(r, 422, "idempotency_key_reused"), r)
        ev = c2.get(f"/v1/accounts/{a}/events?type=rejected").get("events") or []
        eq(f"key refusal ({when}): one rejected event names the key and the rule",
           [(e["idempotency_key"], e["refused_by"]) for e in ev], [("K1", "account_closed")])
        eq(f"key refusal ({when}): no key was made", c2.get(f"/v1/accounts/{a}/keys").get("keys"), [])
    s2.stop()


def plan_change():
    f = c.create_account("upgrader", "free")
    c.charge(f, amount=10)
    c.set_clock("2026-03-12T00:00:00Z")
    r = c.post(f"/v1/accounts/{f}/plan", {"plan": "pro", "idempotency_key": key()})
    check("plan: free -> pro is 200", r.status == 200, r)
    eq("plan: free -> pro: plan pro now", r.get("plan"), "pro")
    eq("plan: free -> pro: a new cycle starts now", r.get("cycle"),
       {"start": "2026-03-12T00:00:00Z", "end": "2026-04-12T00:00:00Z"})
    eq("plan: free -> pro: full allowance, nothing used, no cap", (r.get("pools") or {}).get("credits"),
       {"allowance": 10000, "extra": 0, "used": 0, "held": 0, "available": 10000, "daily_cap": None,
        "used_today": 0, "available_now": 10000})
    eq("plan: pending_plan null after an upgrade", r.get("pending_plan"), None)
    r = c.post(f"/v1/accounts/{f}/plan", {"plan": "starter", "idempotency_key": key()})
    check("plan: pro -> starter (downgrade) is 200, plan stays pro, pending_plan starter",
          r.status == 200 and r.get("plan") == "pro" and r.get("pending_plan") == "starter", r)
    eq("plan: downgrade keeps the allowance this cycle", r["pools"]["credits"]["allowance"], 10000)
    r = c.post(f"/v1/accounts/{f}/plan", {"plan": "builder", "idempotency_key": key()})
    check("plan: a new downgrade replaces the pending one", r.get("pending_plan") == "builder", r)
    r = c.post(f"/v1/accounts/{f}/plan", {"plan": "pro", "idempotency_key": key()})
    check("plan: asking for the current plan clears pending_plan",
          r.status == 200 and r.get("plan") == "pro" and r.get("pending_plan") is None, r)
    r = c.post(f"/v1/accounts/{f}/plan", {"plan": "platinum", "idempotency_key": key()})
    check("plan: unknown plan: 400", r.status == 400, r)
    # downgrade applied at the next boundary
    c.post(f"/v1/accounts/{f}/plan", {"plan": "starter", "idempotency_key": key()})
    c.set_clock("2026-04-12T00:00:00Z")
    r = c.get(f"/v1/accounts/{f}")
    check("plan: the pending downgrade applies at the boundary (read projects it)",
          r.get("plan") == "starter" and r.get("pending_plan") is None
          and r["pools"]["credits"]["allowance"] == 2000
          and r.get("cycle") == {"start": "2026-04-12T00:00:00Z", "end": "2026-05-12T00:00:00Z"}, r)
    # Every change is an event (DESIGN.md): the request, and the change at the boundary.
    evs = c.get(f"/v1/accounts/{f}/events?type=plan_change&limit=1000").get("events") or []
    eq("plan: the downgrade applied at the boundary is a plan_change event after the reset",
       [(e.get("at"), e.get("plan"), e.get("previous_plan"), e.get("object")) for e in evs[-2:]],
       [(evs[-2].get("at") if len(evs) > 1 else None, "starter", "pro", "pending"),
        ("2026-04-12T00:00:00Z", "starter", "pro", "pending_applied")])
    resets = [e for e in c.get(f"/v1/accounts/{f}/events?type=reset&limit=1000").get("events") or []
              if e.get("at") == "2026-04-12T00:00:00Z"]
    check("plan: ... numbered after the boundary's reset", resets and evs and evs[-1]["seq"] > resets[-1]["seq"],
          (resets, evs[-1:]))

    # paid upgrade inside the cycle: what was spent stays spent
    s = c.create_account("paidup", "starter")
    c.charge(s, amount=100)
    cyc = c.account(s)["cycle"]
    r = c.post(f"/v1/accounts/{s}/plan", {"plan": "builder", "idempotency_key": key()})
    check("plan: starter -> builder keeps the cycle", r.status == 200 and r.get("cycle") == cyc, r)
    eq("plan: starter -> builder: allowance 5000, used 100, available 4900",
       {k: r["pools"]["credits"][k] for k in ("allowance", "used", "available")} if r.status == 200 else r.doc,
       {"allowance": 5000, "used": 100, "available": 4900})


def packs_and_adjustments():
    c.set_clock("2026-04-20T00:00:00Z")
    p = c.create_account("pro-1", "pro")
    r = c.post(f"/v1/accounts/{p}/packs", {"pool": "credits", "credits": 1000, "idempotency_key": "pk1"})
    check("packs: on pro: 403 purchase_not_allowed upgrade_to enterprise",
          is_error(r, 403, "purchase_not_allowed") and r.err.get("upgrade_to") == "enterprise", r)
    r2 = c.post(f"/v1/accounts/{p}/packs", {"pool": "credits", "credits": 1000, "idempotency_key": "pk1"})
    check("packs: the 403 purchase_not_allowed is stored (replay says Idempotent-Replayed)",
          r2.status == 403 and r2.doc == r.doc and r2.headers.get("idempotent-replayed") == "true", (r2, r2.headers))
    eq("packs: no credits added on pro", c.pool(p)["available"], 10000)
    e = c.create_account("ent-1", "enterprise")
    r = c.post(f"/v1/accounts/{e}/packs", {"pool": "credits", "credits": 1000, "idempotency_key": key()})
    check("packs: on enterprise: 201", r.status == 201, r)
    gid = r.get("grant_id")
    eq("packs: the grant", {k: r.get(k) for k in ("pool", "source", "credits", "remaining", "expires_at", "created_at")},
       {"pool": "credits", "source": "pack", "credits": 1000, "remaining": 1000,
        "expires_at": "2027-04-20T00:00:00Z", "created_at": "2026-04-20T00:00:00Z"})
    pool = c.pool(e)
    check("packs: extra 1000, available 101000", pool["extra"] == 1000 and pool["available"] == 101000, pool)
    r = c.post(f"/v1/accounts/{e}/packs", {"pool": "credits", "credits": -5, "idempotency_key": key()})
    check("packs: negative credits: 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)
    r = c.post(f"/v1/accounts/{e}/packs", {"pool": "nopool", "credits": 5, "idempotency_key": key()})
    check("packs: unknown pool: 400", r.status == 400, r)
    r = c.get(f"/v1/accounts/{e}/grants")
    check("grants: lists the pack", r.status == 200 and [g["grant_id"] for g in r.get("grants", [])] == [gid], r)

    s = c.create_account("adj-1", "starter")
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": 50, "reason": "goodwill",
                                                 "idempotency_key": key()})
    check("adjust: +50 is 201", r.status == 201, r)
    eq("adjust: +50 grant", {k: r.get(k) for k in ("pool", "source", "credits", "remaining", "expires_at", "reason")},
       {"pool": "credits", "source": "adjustment", "credits": 50, "remaining": 50, "expires_at": None,
        "reason": "goodwill"})
    pool = c.pool(s)
    check("adjust: extra 50, available 2050", pool["extra"] == 50 and pool["available"] == 2050, pool)
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": -30, "reason": "clawback",
                                                 "idempotency_key": key()})
    check("adjust: -30 is 201", r.status == 201, r)
    eq("adjust: available 2020 after -30", c.pool(s)["available"], 2020)
    invariant(s, "adjust after -30")
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": -5000, "reason": "too much",
                                                 "idempotency_key": key()})
    check("adjust: -5000 > available: 402 insufficient_credits", is_error(r, 402, "insufficient_credits"), r)
    eq("adjust: 402 details required/available", (r.err.get("required"), r.err.get("available")), (5000, 2020))
    eq("adjust: available unchanged after the 402", c.pool(s)["available"], 2020)
    ev = c.get(f"/v1/accounts/{s}/events?type=rejected").get("events", [])
    eq("adjust: the 402's rejected event: the credits asked and the pool's available then",
       [(x.get("credits"), x.get("available_after")) for x in ev][-1:], [(5000, 2020)])
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": -5, "reason": "x",
                                                 "expires_at": "2999-01-01T00:00:00Z",
                                                 "idempotency_key": key()})
    check("adjust: a negative adjustment with expires_at: 400 naming expires_at",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "expires_at", r)
    eq("adjust: available unchanged after that 400", c.pool(s)["available"], 2020)
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": 0, "reason": "x",
                                                 "idempotency_key": key()})
    check("adjust: 0 credits: 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": 1.0005, "reason": "x",
                                                 "idempotency_key": key()})
    check("adjust: 1.0005 credits: 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)
    # spending order: a grant expiring before the cycle end is spent first
    r = c.post(f"/v1/accounts/{s}/adjustments", {"pool": "credits", "credits": 10, "reason": "promo",
                                                 "expires_at": "2026-04-25T00:00:00Z", "idempotency_key": key()})
    check("adjust: +10 expiring 2026-04-25 is 201", r.status == 201 and r.get("expires_at") == "2026-04-25T00:00:00Z", r)
    promo = r.get("grant_id")
    r = c.charge(s, amount=15)
    eq("spending order: the earlier-expiring grant first, then the allowance", r.get("drawn_from"),
       [{"source": f"grant:{promo}", "credits": 10}, {"source": "allowance", "credits": 5}])
    r = c.get(f"/v1/accounts/{s}/grants")
    grants = {g["grant_id"]: g for g in r.get("grants", [])}
    check("grants: GET lists the adjustments with their fields", r.status == 200 and promo in grants and all(
        set(g) >= {"grant_id", "pool", "source", "credits", "remaining", "expires_at", "reason", "created_at"}
        for g in grants.values()), r)
    eq("grants: the promo grant is spent", grants.get(promo, {}).get("remaining"), 0)
    invariant(s, "adjust after the charge")
    c.set_clock("2026-04-26T00:00:00Z")
    invariant(s, "after the promo grant expired")


def keys_and_scoping():
    a = c.create_account("scope-a", "starter")
    b = c.create_account("scope-b", "starter")
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "label": "dash"})
    check("keys: default role read, 201 {key, key_id, role}",
          r.status == 201 and r.get("role") == "read" and r.get("key") and r.get("key_id"), r)
    read_a, read_id = r.get("key"), r.get("key_id")
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "role": "meter"})
    check("keys: role meter", r.status == 201 and r.get("role") == "meter", r)
    meter_a, meter_id = r.get("key"), r.get("key_id")
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "role": "admin"})
    check("keys: role admin on an account key: 400", r.status == 400, r)
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "role": "service"})
    check("keys: role service on an account key: 400", r.status == 400, r)
    r = c.post("/v1/keys", {"idempotency_key": key(), "role": "service", "label": "backend"})
    check("keys: POST /v1/keys service is 201", r.status == 201 and r.get("role") == "service" and r.get("key"), r)
    svc = r.get("key")
    r = c.post("/v1/keys", {"idempotency_key": key(), "role": "read"})
    check("keys: POST /v1/keys with a role other than service: 400", r.status == 400, r)
    r = c.post("/v1/keys", {"idempotency_key": key()})
    check("keys: POST /v1/keys without its role: 400 invalid_request, param role",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "role", r)
    meter_b = c.create_key(b, "meter")

    r = c.get(f"/v1/accounts/{a}/keys")
    keys = r.get("keys", [])
    check("keys: GET lists both keys", r.status == 200 and {k["key_id"] for k in keys} == {read_id, meter_id}, r)
    check("keys: each has key_id, role, label, created_at and no secret",
          all(set(k) == {"key_id", "role", "label", "created_at"} for k in keys), keys)
    check("keys: the secrets appear nowhere in the listing", read_a not in r.text and meter_a not in r.text, r.text)
    lab = {k["key_id"]: k["label"] for k in keys}
    eq("keys: the label given", lab.get(read_id), "dash")
    check("keys: a label not given is null (API.md: optional values are null, never left out)",
          lab.get(meter_id) is None, f"label = {lab.get(meter_id)!r}",
          bug="API.md conventions: 'Optional values are null, never left out'",
          req=f"GET /v1/accounts/{a}/keys for a key created without a label",
          expected='"label": null')

    rd, mt, sv = c.with_key(read_a), c.with_key(meter_a), c.with_key(svc)
    charge_body = lambda: {"idempotency_key": key(), "kind": "backend_function", "user_id": "u", "amount": 1}
    # read key
    check("read key: GET own account 200", rd.get(f"/v1/accounts/{a}").status == 200)
    check("read key: GET /v1/plans 200", rd.get("/v1/plans").status == 200)
    r = rd.post(f"/v1/accounts/{a}/quote", {"kind": "agent_prompt", "usage": h.AGENT_PROMPT_USAGE})
    check("read key: quote own account 200, cost 9.92", r.status == 200 and r.get("cost") == D("9.92"), r)
    for path in (f"/v1/accounts/{b}", "/v1/accounts/does-not-exist"):
        r = rd.get(path)
        check(f"read key: GET {path}: 403 forbidden", is_error(r, 403, "forbidden"), r)
    r = rd.post(f"/v1/accounts/{a}/charges", charge_body())
    check("read key: cannot charge its own account: 403 forbidden", is_error(r, 403, "forbidden"), r)
    r = rd.get("/v1/accounts")
    check("read key: cannot list accounts: 403", is_error(r, 403, "forbidden"), r)
    r = rd.get(f"/v1/accounts/{a}/keys")
    check("read key: cannot list keys: 403", is_error(r, 403, "forbidden"), r)
    # meter key
    r = mt.post(f"/v1/accounts/{a}/charges", charge_body())
    check("meter key: charges its own account: 201", r.status == 201, r)
    for target in (b, "does-not-exist"):
        r = mt.post(f"/v1/accounts/{target}/charges", charge_body())
        check(f"meter key: charge {target}: 403 forbidden", is_error(r, 403, "forbidden"), r)
        r = mt.post(f"/v1/accounts/{target}/charges", {"idempotency_key": key(), "bogus": 1})
        check(f"meter key: bad body on {target}: still 403 forbidden (403 before 400 validation)",
              is_error(r, 403, "forbidden"), r)
    r = mt.post(f"/v1/accounts/{a}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                            "amount": 2})
    check("meter key: hold on its own account: 201", r.status == 201, r)
    r = mt.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key()})
    check("meter key: cannot create keys: 403", is_error(r, 403, "forbidden"), r)
    r = mt.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": 100, "reason": "x",
                                                  "idempotency_key": key()})
    check("meter key: cannot adjust: 403", is_error(r, 403, "forbidden"), r)
    r = mt.get(f"/v1/accounts/{a}")
    check("meter key: reads its own account", r.status == 200 and r["pools"]["credits"]["used"] == 1, r)
    r = mt.post("/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id=b)]})
    check("meter key: a batch op on another account: 403 inside the results",
          r.status == 200 and r["results"][0]["status"] == 403, r)
    # service key
    for acct in (a, b):
        r = sv.post(f"/v1/accounts/{acct}/charges", charge_body())
        check(f"service key: charges {acct}: 201", r.status == 201, r)
    r = sv.get("/v1/accounts?limit=5")
    check("service key: lists accounts 200", r.status == 200, r)
    r = sv.get("/v1/accounts/does-not-exist")
    check("service key: unknown account is 404 (not 403)", is_error(r, 404, "account_not_found"), r)
    for desc, (m, path, body) in {
        "create accounts": ("POST", "/v1/accounts", {"account_id": "svc-made", "plan": "free", "idempotency_key": key()}),
        "create account keys": ("POST", f"/v1/accounts/{a}/keys", {"idempotency_key": key()}),
        "create service keys": ("POST", "/v1/keys", {"idempotency_key": key(), "role": "service"}),
        "set the clock": ("POST", "/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"}),
        "change plans": ("POST", f"/v1/accounts/{a}/plan", {"plan": "pro", "idempotency_key": key()}),
        "grant adjustments": ("POST", f"/v1/accounts/{a}/adjustments",
                              {"pool": "credits", "credits": 5, "reason": "x", "idempotency_key": key()}),
        "close accounts": ("POST", f"/v1/accounts/{a}/close", {"idempotency_key": key()}),
        "list keys": ("GET", f"/v1/accounts/{a}/keys", None),
    }.items():
        r = sv.call(m, path, body)
        check(f"service key: cannot {desc}: 403 forbidden", is_error(r, 403, "forbidden"), r)
    r = c.post("/v1/admin/clock", {"now": "2026-04-26T00:00:01Z"})
    check("service key: the clock did not move to 2030 (admin can still set 2026-04-26)", r.status == 200, r)
    check("service key: did not create svc-made", c.get("/v1/accounts/svc-made").status == 404)
    eq("scoping: balances after the refused calls (a: 1 + 1 + hold 2)",
       {k: c.pool(a)[k] for k in ("used", "held")}, {"used": 2, "held": 2})
    eq("scoping: b charged once by the service key", c.pool(b)["used"], 1)

    # no key, wrong key, revoked key
    r = c.get(f"/v1/accounts/{a}", key=None)
    check("auth: no key: 401 unauthorized", is_error(r, 401, "unauthorized"), r)
    r = c.get(f"/v1/accounts/{a}", key="ck_not_a_real_key")
    check("auth: a wrong key: 401 unauthorized", is_error(r, 401, "unauthorized"), r)
    r = c.get(f"/v1/accounts/{a}", headers={"Authorization": "Basic Zm9vOmJhcg=="}, key=None)
    check("auth: a non-Bearer scheme: 401", r.status == 401, r)
    r = c.delete(f"/v1/accounts/{a}/keys/{meter_id}")
    check("keys: DELETE is 204", r.status == 204, r)
    r = mt.get(f"/v1/accounts/{a}")
    check("keys: the deleted key gets 401", is_error(r, 401, "unauthorized"), r)
    r = mt.post(f"/v1/accounts/{a}/charges", charge_body())
    check("keys: the deleted key cannot charge (401)", is_error(r, 401, "unauthorized"), r)
    r = c.delete(f"/v1/accounts/{a}/keys/{meter_id}")
    check("keys: DELETE again: 404 key_not_found", is_error(r, 404, "key_not_found"), r)
    r = c.delete(f"/v1/accounts/{b}/keys/{read_id}")
    check("keys: DELETE a key of another account: 404 key_not_found (and the key still works)",
          is_error(r, 404, "key_not_found") and rd.get(f"/v1/accounts/{a}").status == 200, r)
    r = c.get(f"/v1/accounts/{a}/keys")
    eq("keys: the listing no longer has the deleted key", [k["key_id"] for k in r.get("keys", [])], [read_id])
    r = c.with_key(meter_b).get(f"/v1/accounts/{b}")
    check("keys: b's meter key still works", r.status == 200, r)


def pages(client, path, limit):
    """Every item of a list, page by page; returns (items, the pages' sizes)."""
    items, sizes, after = [], [], None
    name = path.rsplit("/", 1)[1]
    for _ in range(100):
        q = f"?limit={limit}" + (f"&after={after}" if after else "")
        r = client.get(path + q)
        if r.status != 200:
            raise AssertionError(f"GET {path}{q}: {r}")
        items += r[name]
        sizes.append(len(r[name]))
        after = r["next"]
        if after is None:
            return items, sizes
    raise AssertionError(f"{path}: no end")


def lists():
    """The lists of keys, grants, alerts and holds page with limit/after/next as the other
    lists do; holds are listed in creation order."""
    srv2 = h.start(manual_clock=True)
    a = srv2.client()
    a.set_clock("2026-03-10T12:00:00Z")
    acct = a.create_account("lists", "starter")
    # holds first, on a fresh server: their ids cross from one digit to two (h_9, h_10)
    made = []
    for i in range(12):
        r = a.post(f"/v1/accounts/{acct}/holds", {"idempotency_key": key(), "kind": "backend_function",
                                                 "user_id": "u", "amount": 1})
        made.append(r.get("hold_id"))
    check("holds: ids of one and of two digits", any(len(x) == 3 for x in made) and any(len(x) == 4 for x in made), made)
    r = a.get(f"/v1/accounts/{acct}/holds")
    eq("holds: listed in creation order", [x["hold_id"] for x in r.get("holds", [])], made)
    items, sizes = pages(a, f"/v1/accounts/{acct}/holds", 5)
    eq("holds: pages of 5 follow creation", ([x["hold_id"] for x in items], sizes), (made, [5, 5, 2]))
    r = a.get(f"/v1/accounts/{acct}/holds?status=open&limit=3&after={made[7]}")
    eq("holds: after a hold id, the next ones made", ([x["hold_id"] for x in r.get("holds", [])], r.get("next")),
       (made[8:11], made[10]))
    for i in range(5):
        a.create_key(acct, label=f"k{i}")
    for i in range(4):
        a.post(f"/v1/accounts/{acct}/adjustments", {"pool": "credits", "credits": 5 + i, "reason": f"r{i}",
                                                    "idempotency_key": key()})
    a.put(f"/v1/accounts/{acct}/alert-rules", {"thresholds": [10, 20, 30]})
    a.charge(acct, amount=700)
    r_keys = a.get(f"/v1/accounts/{acct}/keys")
    r_grants = a.get(f"/v1/accounts/{acct}/grants")
    r_alerts = a.get(f"/v1/accounts/{acct}/alerts")
    for name, r, n in (("keys", r_keys, 5), ("grants", r_grants, 4), ("alerts", r_alerts, 3)):
        eq(f"{name}: the whole list, next null", (r.status, len(r.get(name) or []), r.get("next")), (200, n, None))
        eq(f"{name}: the fields are those API.md lists, then next", list(r.doc), [name, "next"])
        items, sizes = pages(a, f"/v1/accounts/{acct}/{name}", 2)
        eq(f"{name}: pages of 2 give the whole list in order", items, r[name])
        eq(f"{name}: page sizes", sizes, [2] * (n // 2) + ([n % 2] if n % 2 else []))
    # A revoked key between pages moves nothing.
    first = a.get(f"/v1/accounts/{acct}/keys?limit=2")
    a.delete(f"/v1/accounts/{acct}/keys/{first['keys'][0]['key_id']}")
    r = a.get(f"/v1/accounts/{acct}/keys?limit=2&after={first['next']}")
    eq("keys: a key revoked before the cursor moves no page",
       [k["key_id"] for k in r.get("keys", [])], [k["key_id"] for k in r_keys["keys"][2:4]])
    for bad in ("0", "1001", "abc", "2.5"):
        ev = a.get(f"/v1/accounts/{acct}/events?limit={bad}")
        for name in ("keys", "grants", "alerts", "holds"):
            r = a.get(f"/v1/accounts/{acct}/{name}?limit={bad}")
            eq(f"{name}?limit={bad}: the events list's 400", (r.status, r.code, r.err.get("param")),
               (ev.status, ev.code, ev.err.get("param")))
    ev = a.get(f"/v1/accounts/{acct}/events?after=garbage")
    check("events?after=garbage is 400 naming after", ev.status == 400 and ev.err.get("param") == "after", ev)
    for name in ("keys", "grants", "alerts", "holds"):
        r = a.get(f"/v1/accounts/{acct}/{name}?after=garbage")
        eq(f"{name}?after=garbage: the events list's 400", (r.status, r.code, r.err.get("param")),
           (ev.status, ev.code, ev.err.get("param")))
    r = a.get(f"/v1/accounts/{acct}/grants?after=0:x")
    eq("grants?after=0:x (the bucket part not a number): the events list's 400",
       (r.status, r.code, r.err.get("param")), (ev.status, ev.code, ev.err.get("param")))
    r = a.get("/v1/accounts/nobody/grants?limit=0")
    check("grants: 404 before a bad limit", is_error(r, 404, "account_not_found"), r)
    # The accounts list too (its cursor is an account id), and empty filter values, which
    # name nothing (found by an audit: they were taken as no filter, or any text as a place).
    for bad in ("garbage!", "", "x" * 65):
        r = a.get(f"/v1/accounts?after={bad}")
        eq(f"accounts?after={bad[:10]!r}: the events list's 400", (r.status, r.code, r.err.get("param")),
           (ev.status, ev.code, ev.err.get("param")))
    r = a.get(f"/v1/accounts?after={acct}")
    eq("accounts?after=<an id>: a place in the list", r.status, 200)
    for path, param in ((f"/v1/accounts/{acct}/holds?status=", "status"),
                        (f"/v1/accounts/{acct}/events?user_id=", "user_id"),
                        (f"/v1/accounts/{acct}/events?type=", "type"),
                        (f"/v1/accounts/{acct}/usage?pool=", "pool"),
                        (f"/v1/accounts/{acct}/burn?pool=", "pool"),
                        (f"/v1/accounts/{acct}/audit?pool=", "pool")):
        r = a.get(path)
        eq(f"{path.split('/')[-1]}: an empty value is 400 naming it", (r.status, r.code, r.err.get("param")),
           (400, "invalid_request", param))
    srv2.stop()


def service_keys():
    """A service key can be revoked (DELETE /v1/keys/{key_id}), and stays revoked after a
    restart (DESIGN.md section 5: keys are revocable)."""
    srv2 = h.start(manual_clock=True)
    a = srv2.client()
    a.set_clock("2026-03-10T12:00:00Z")
    acct = a.create_account("svc", "starter")
    a.create_key(acct)
    acct_key_id = a.get(f"/v1/accounts/{acct}/keys")["keys"][0]["key_id"]
    svc = a.create_service_key(label="backend")
    svc2 = a.create_service_key()
    s1 = a.with_key(svc)
    check("service key: works before revocation", s1.get("/v1/accounts").status == 200)
    r = a.post("/v1/keys", {"idempotency_key": key(), "role": "service", "label": "to-revoke"})
    revoke_key, revoke_id = r.get("key"), r.get("key_id")
    s3 = a.with_key(revoke_key)
    r = s3.delete(f"/v1/keys/{revoke_id}")
    check("DELETE /v1/keys/{id} by a service key: 403", is_error(r, 403, "forbidden"), r)
    # DESIGN.md: "PUT, DELETE, clock and import take none": a body field is 400, nothing revoked.
    r = a.call("DELETE", f"/v1/keys/{revoke_id}", {"idempotency_key": "x"})
    check("DELETE /v1/keys/{id} with an idempotency_key: 400 unknown_field",
          is_error(r, 400, "unknown_field") and r.get("error", {}).get("param") == "idempotency_key", r)
    r = a.call("DELETE", f"/v1/accounts/{acct}/keys/{acct_key_id}", {"foo": 1})
    check("DELETE of an account key with a body field: 400 unknown_field", is_error(r, 400, "unknown_field"), r)
    r = a.call("DELETE", f"/v1/accounts/nope/keys/{acct_key_id}", {"foo": 1})
    check("... and 404 first for a missing account", is_error(r, 404, "account_not_found"), r)
    check("... and neither key was revoked", s3.get("/v1/accounts").status == 200 and
          any(k["key_id"] == acct_key_id for k in a.get(f"/v1/accounts/{acct}/keys")["keys"]))
    r = a.delete(f"/v1/keys/{revoke_id}")
    eq("DELETE /v1/keys/{id}: 204", r.status, 204)
    r = s3.get("/v1/accounts")
    check("the revoked service key gets 401", is_error(r, 401, "unauthorized"), r)
    r = a.delete(f"/v1/keys/{revoke_id}")
    check("DELETE again: 404 key_not_found", is_error(r, 404, "key_not_found"), r)
    r = a.delete("/v1/keys/key_nosuch")
    check("DELETE of no such key: 404 key_not_found", is_error(r, 404, "key_not_found"), r)
    # 404 before 400: an unknown key with a bad body is still 404, on both routes.
    r = a.call("DELETE", "/v1/keys/key_nosuch", {"foo": 1})
    check("DELETE of no such service key with a body field: 404 first", is_error(r, 404, "key_not_found"), r)
    r = a.call("DELETE", f"/v1/accounts/{acct}/keys/key_nosuch", {"foo": 1})
    check("DELETE of no such account key with a body field: 404 first", is_error(r, 404, "key_not_found"), r)
    # A body of only whitespace reads as no body, as an empty one does.
    r = a.call("DELETE", "/v1/keys/key_nosuch", raw=b" \r\n\t ")
    check("DELETE with a whitespace body: read as none (404)", is_error(r, 404, "key_not_found"), r)
    r = a.call("POST", f"/v1/accounts/{acct}/quote", raw=b"  \n")
    r2 = a.call("POST", f"/v1/accounts/{acct}/quote", raw=b"")
    check("POST with a whitespace body: the same answer as an empty one",
          r.status == r2.status == 400 and r.get("error", {}).get("param") == r2.get("error", {}).get("param"), (r, r2))
    r = a.delete(f"/v1/keys/{acct_key_id}")
    check("DELETE /v1/keys/ of an account's key: 404 key_not_found",
          is_error(r, 404, "key_not_found") and any(k["key_id"] == acct_key_id for k in
                                                    a.get(f"/v1/accounts/{acct}/keys")["keys"]), r)
    check("the other service keys still work",
          s1.get("/v1/accounts").status == 200 and a.with_key(svc2).get("/v1/accounts").status == 200)
    srv2.stop()
    srv2 = h.start(manual_clock=True, data_dir=srv2.data_dir)
    a = srv2.client()
    r = a.with_key(revoke_key).get("/v1/accounts")
    check("after a restart: the revoked service key still gets 401", is_error(r, 401, "unauthorized"), r)
    check("after a restart: the others still work",
          a.with_key(svc).get("/v1/accounts").status == 200 and a.with_key(svc2).get("/v1/accounts").status == 200)
    r = a.delete(f"/v1/keys/{revoke_id}")
    check("after a restart: DELETE again is 404", is_error(r, 404, "key_not_found"), r)
    srv2.stop()


for section in (clock, accounts, close_account, closed_account_key_refusal_is_stored, plan_change, packs_and_adjustments, keys_and_scoping,
                lists, service_keys):
    h.run_section(section)
h.finish()
