#!/usr/bin/env python3
"""The domain rules of DESIGN.md section 1 at their edges, black-box over HTTP (API.md):
cycle anchors clamped through February in leap and non-leap years without drift, signup
vs billing anchors, lazy resets over many boundaries, the spending order and its ties,
grants that end mid-cycle partly spent or reserved, holds that cross a reset, refunds in
reverse order over several partial refunds and to ended buckets, rollover (floor, cap,
which plan decides, holds expiring at the boundary, grants never rolling over), plan
changes (proration on the cycle's own length, allowance = max(new, spent + held), equal
price pending, the daily cap at once), daily caps at their exact edges, every operation
kind priced through the rate card (rounded once), the capture priced with its hold's rate
card version across a restart, a changed plan applying from the next cycle, idempotency
over path ids and batch ops, the integration cache's TTL and what it bypasses, rate
limits (captures and refunds never limited, the injected clock refills them) and the
event format.

Every expected value is worked out by hand from DESIGN.md and API.md. Runs creditd with
--clock manual on fresh data dirs, each server in time order.
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
AP = h.AGENT_PROMPT_USAGE  # 9.92
SCOPED = {"model": "default", "input_tokens": 2200, "output_tokens": 120, "files_read": 1,
          "lines_emitted": 8, "lines_changed": 6}  # 1.74
LLM = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}  # 1.29
EVENT_FIELDS = {"seq", "at", "account_id", "user_id", "type", "kind", "pool", "credits", "available_after",
                "drawn_from", "refused_by", "priced_by", "usage", "metadata", "cache_key", "idempotency_key",
                "rate_card_version", "imported"}


def events(c, acct):
    return c.get(f"/v1/accounts/{acct}/events?limit=1000").get("events") or []


def pool_of(c, acct, *fields):
    p = c.pool(acct)
    return {f: p.get(f) for f in fields}


def balanced(name, c, acct):
    p = c.pool(acct)
    check(f"{name}: allowance + extra = used + held + available",
          D(str(p["allowance"])) + D(str(p["extra"])) == D(str(p["used"])) + D(str(p["held"])) + D(str(p["available"])), p)


def adjust(c, acct, credits, expires_at=None, reason="test"):
    body = {"pool": "credits", "credits": credits, "reason": reason, "idempotency_key": key()}
    if expires_at is not None:
        body["expires_at"] = expires_at
    r = c.post(f"/v1/accounts/{acct}/adjustments", body)
    if r.status != 201:
        raise AssertionError(f"adjustment {acct} {credits}: {r}")
    return r["grant_id"]


def hold(c, acct, amount=None, usage=None, kind="backend_function", ttl_ms=None, user_id="u1", idem=None):
    body = {"idempotency_key": idem or key(), "kind": kind, "user_id": user_id}
    if amount is not None:
        body["amount"] = amount
    if usage is not None:
        body["usage"] = usage
    if ttl_ms is not None:
        body["ttl_ms"] = ttl_ms
    return c.post(f"/v1/accounts/{acct}/holds", body)


def capture(c, acct, hid, idem=None, **fields):
    body = {"idempotency_key": idem or key()}
    body.update(fields)
    return c.post(f"/v1/accounts/{acct}/holds/{hid}/capture", body)


def refund(c, acct, charge_id, credits=None, idem=None):
    body = {"idempotency_key": idem or key(), "reason": "test"}
    if credits is not None:
        body["credits"] = credits
    return c.post(f"/v1/accounts/{acct}/charges/{charge_id}/refunds", body)


def quote(c, acct, kind, usage):
    return c.post(f"/v1/accounts/{acct}/quote", {"kind": kind, "usage": usage})


def g(grant_id):
    return "grant:" + grant_id


def replayed(r):
    return r.headers.get("idempotent-replayed") == "true"


# ----------------------------------------------------------------------------- anchors

def anchors_2028():
    c = C
    c.set_clock("2028-01-31T10:00:00Z")
    c.create_account("an-31", "starter")
    eq("anchor: a paid account anchored at its creation on Jan 31 (leap year) runs to Feb 29",
       c.account("an-31")["cycle"], {"start": "2028-01-31T10:00:00Z", "end": "2028-02-29T10:00:00Z"})
    c.create_account("an-fs", "free", signup_at="2027-12-31T23:59:59Z")
    eq("anchor: free on signup Dec 31 23:59:59, seen on Jan 31 10:00: the cycle ends later that day",
       c.account("an-fs")["cycle"], {"start": "2027-12-31T23:59:59Z", "end": "2028-01-31T23:59:59Z"})
    c.create_account("an-f30", "free", signup_at="2027-11-30T12:00:00Z")
    eq("anchor: free on signup Nov 30 12:00: cycle [Jan 30 12:00, Feb 29 12:00)",
       c.account("an-f30")["cycle"], {"start": "2028-01-30T12:00:00Z", "end": "2028-02-29T12:00:00Z"})
    c.set_clock("2028-02-29T09:59:59.999Z")
    eq("anchor: 1 ms before Feb 29 10:00 the Jan 31 cycle runs on", c.account("an-31")["cycle"],
       {"start": "2028-01-31T10:00:00Z", "end": "2028-02-29T10:00:00Z"})
    eq("anchor: the 31st 23:59:59 clamps to Feb 29 23:59:59 in a leap year", c.account("an-fs")["cycle"],
       {"start": "2028-01-31T23:59:59Z", "end": "2028-02-29T23:59:59Z"})
    c.set_clock("2028-02-29T10:00:00Z")
    eq("anchor: at Feb 29 10:00 the new cycle runs back to the 31st (Mar 31)", c.account("an-31")["cycle"],
       {"start": "2028-02-29T10:00:00Z", "end": "2028-03-31T10:00:00Z"})
    c.create_account("an-leap", "starter")
    eq("anchor: created on Feb 29: [Feb 29, Mar 29)", c.account("an-leap")["cycle"],
       {"start": "2028-02-29T10:00:00Z", "end": "2028-03-29T10:00:00Z"})
    c.set_clock("2028-07-15T00:00:00Z")
    eq("anchor: a read five boundaries later projects [Jun 30, Jul 31)", c.account("an-31")["cycle"],
       {"start": "2028-06-30T10:00:00Z", "end": "2028-07-31T10:00:00Z"})
    eq("anchor: the Feb 29 anchor stays on the 29th (Jun 29 - Jul 29)", c.account("an-leap")["cycle"],
       {"start": "2028-06-29T10:00:00Z", "end": "2028-07-29T10:00:00Z"})
    r = c.charge("an-31", amount=1)
    check("lazy reset: the first mutation after five boundaries is a charge on a fresh allowance",
          r.status == 201 and r.get("available_after") == 1999, r)
    resets = [e for e in events(c, "an-31") if e.get("type") == "reset"]
    eq("lazy reset: one reset per boundary passed, each `at` the boundary, in time order",
       [e.get("at") for e in resets],
       ["2028-02-29T10:00:00Z", "2028-03-31T10:00:00Z", "2028-04-30T10:00:00Z", "2028-05-31T10:00:00Z",
        "2028-06-30T10:00:00Z"])
    seqs = [e.get("seq") for e in resets]
    check("lazy reset: the resets' seq increase with their boundaries", seqs == sorted(seqs) and len(set(seqs)) == 5,
          seqs)


def anchors_2029():
    c = C
    c.set_clock("2029-02-28T09:59:59.999Z")
    eq("anchor: the 29th in a non-leap year: [Jan 29, Feb 28 10:00) (clamped)", c.account("an-leap")["cycle"],
       {"start": "2029-01-29T10:00:00Z", "end": "2029-02-28T10:00:00Z"})
    c.set_clock("2029-02-28T10:00:00Z")
    eq("anchor: the 31st in a non-leap year: [Feb 28, Mar 31)", c.account("an-31")["cycle"],
       {"start": "2029-02-28T10:00:00Z", "end": "2029-03-31T10:00:00Z"})
    eq("anchor: the 29th: [Feb 28, Mar 29), back to the 29th", c.account("an-leap")["cycle"],
       {"start": "2029-02-28T10:00:00Z", "end": "2029-03-29T10:00:00Z"})
    eq("anchor: signup on the 31st at 23:59:59: [Jan 31 23:59:59, Feb 28 23:59:59)", c.account("an-fs")["cycle"],
       {"start": "2029-01-31T23:59:59Z", "end": "2029-02-28T23:59:59Z"})


# ----------------------------------------------------------------------------- plan change proration

def proration_february():
    c = C
    c.set_clock("2029-02-01T00:00:00Z")
    c.create_account("pr", "starter")  # [Feb 1, Mar 1): 28 days
    c.set_clock("2029-02-15T00:00:00Z")
    r = c.post("/v1/accounts/pr/plan", {"plan": "pro", "idempotency_key": key()})
    check("proration: starter -> pro mid-February is 200", r.status == 200 and r.get("plan") == "pro", r)
    pcs = [e for e in events(c, "pr") if e.get("type") == "plan_change"]
    eq("proration: on the cycle's own length: ceil(8000 x 14 / 28 days) = 4000 cents",
       [(e.get("plan"), e.get("proration_usd_cents")) for e in pcs], [("pro", 4000)])


# ----------------------------------------------------------------------------- daily caps

def daily_caps():
    c = C
    c.set_clock("2029-03-10T00:00:00Z")
    c.create_account("cp", "free")  # cap 25
    gid = adjust(c, "cp", 50, expires_at="2029-03-20T00:00:00Z")
    r = c.charge("cp", amount=15)
    eq("cap: a charge drawn from a grant (it expires first)", r.get("drawn_from"), [{"source": g(gid), "credits": 15}])
    c.set_clock("2029-03-10T23:30:00Z")
    hid = hold(c, "cp", amount=5, ttl_ms=3600000)["hold_id"]
    p = c.pool("cp")
    eq("cap: every bucket counts: used_today 15 (from the grant), available_now 25 - 15 - 5",
       (p["used_today"], p["available_now"]), (15, 5))
    r = c.charge("cp", amount=D("5.001"))
    check("cap: 0.001 over the cap is 402 refused_by daily_cap", is_error(r, 402, "insufficient_credits")
          and r.err.get("refused_by") == "daily_cap" and r.err.get("resets_at") == "2029-03-11T00:00:00Z", r)
    r = c.charge("cp", amount=5)
    check("cap: exactly up to the cap is 201", r.status == 201, r)
    c.set_clock("2029-03-10T23:59:59.999Z")
    r = c.charge("cp", amount=D("0.001"))
    check("cap: 1 ms before midnight still refused by the cap", is_error(r, 402, "insufficient_credits")
          and r.err.get("refused_by") == "daily_cap" and r.err.get("resets_at") == "2029-03-11T00:00:00Z", r)
    c.set_clock("2029-03-11T00:00:00Z")
    p = c.pool("cp")
    # 150 granted, 20 spent, 5 still held by yesterday's hold (it expires at 00:30).
    eq("cap: at midnight used_today 0; yesterday's open hold does not count today",
       (p["used_today"], p["held"], p["available"], p["available_now"]), (0, 5, 125, 25))
    r = c.charge("cp", amount=25)
    check("cap: the whole cap again at 00:00:00.000", r.status == 201 and r.get("available_after") == 100, r)
    r = c.charge("cp", amount=D("0.001"))
    check("cap: and then refused", r.status == 402 and r.err.get("refused_by") == "daily_cap", r)
    r = capture(c, "cp", hid, amount=5)
    check("cap: yesterday's hold captured today is not refused", r.status == 201 and r.get("cost") == 5, r)
    eq("cap: ... and counts on its hold's day", c.pool("cp")["used_today"], 25)
    c.set_clock("2029-03-12T00:00:00Z")
    hid = hold(c, "cp", amount=10)["hold_id"]
    eq("cap: a hold placed today counts", c.pool("cp")["available_now"], 15)
    c.post(f"/v1/accounts/cp/holds/{hid}/void", {"idempotency_key": key()})
    eq("cap: voided, it no longer counts", c.pool("cp")["available_now"], 25)
    r = c.charge("cp", amount=25)
    check("cap: the whole cap after the void", r.status == 201, r)
    rej = [e for e in events(c, "cp") if e.get("type") == "rejected"]
    eq("cap: the rejected events name the rule (refused_by daily_cap)", [e.get("refused_by") for e in rej],
       ["daily_cap"] * 3)


# ----------------------------------------------------------------------------- spending order, grants, refunds

def spending_order():
    c = C
    c.set_clock("2029-04-01T00:00:00Z")
    c.create_account("so", "enterprise")  # [Apr 1, May 1), allowance 100000
    r = c.post("/v1/accounts/so/packs", {"pool": "credits", "credits": 10, "idempotency_key": key()})
    eq("order: a pack expires after 365 days", r.get("expires_at"), "2030-04-01T00:00:00Z")
    pack = r["grant_id"]
    a1 = adjust(c, "so", 10, expires_at="2030-04-01T00:00:00Z")   # tie with the pack
    a2 = adjust(c, "so", 10, expires_at="2029-05-01T00:00:00Z")   # tie with the allowance (cycle end)
    a3 = adjust(c, "so", 10)                                      # never
    a4 = adjust(c, "so", 10)                                      # never, a later id
    a5 = adjust(c, "so", 10, expires_at="2029-04-15T00:00:00Z")   # the earliest
    r = c.charge("so", amount=100025)
    eq("order: earliest expiry first; at the cycle end the allowance before an adjustment; a pack before an adjustment",
       r.get("drawn_from"), [{"source": g(a5), "credits": 10}, {"source": "allowance", "credits": 100000},
                             {"source": g(a2), "credits": 10}, {"source": g(pack), "credits": 5}])
    r = c.charge("so", amount=30)
    never = [g(a3), g(a4)]
    if len(a3) == len(a4):
        never = sorted(never)
    eq("order: then the pack's rest, the adjustment of the same expiry, the never-expiring by grant id",
       r.get("drawn_from"), [{"source": g(pack), "credits": 5}, {"source": g(a1), "credits": 10},
                             {"source": never[0], "credits": 10}, {"source": never[1], "credits": 5}])
    eq("order: the pool", pool_of(c, "so", "allowance", "extra", "used", "held", "available"),
       {"allowance": 100000, "extra": 60, "used": 100055, "held": 0, "available": 5})


def grant_ends_mid_cycle():
    c = C
    c.create_account("gx", "starter")  # 2029-04-01T00:00Z
    gid = adjust(c, "gx", 100, expires_at="2029-04-01T00:30:00Z")
    ch1 = c.charge("gx", amount=30)
    eq("grant end: the charge drew from the grant", ch1.get("drawn_from"), [{"source": g(gid), "credits": 30}])
    r = hold(c, "gx", amount=20, ttl_ms=3600000)
    eq("grant end: the hold reserved in the grant", r.get("drawn_from"), [{"source": g(gid), "credits": 20}])
    hid = r["hold_id"]
    c.set_clock("2029-04-01T00:30:00Z")
    eq("grant end: at its expiry only the free part vanishes (extra 100 - 50), the held 20 stays with the hold",
       pool_of(c, "gx", "allowance", "extra", "used", "held", "available"),
       {"allowance": 2000, "extra": 50, "used": 30, "held": 20, "available": 2000})
    c.set_clock("2029-04-01T00:40:00Z")
    r = capture(c, "gx", hid, amount=15)
    check("grant end: capture of a hold in an ended grant spends its reserve", r.status == 201
          and r.get("cost") == 15 and r.get("drawn_from") == [{"source": g(gid), "credits": 15}]
          and r.get("available_after") == 2000, r)
    eq("grant end: the 5 released after its end vanish (extra 45)",
       pool_of(c, "gx", "extra", "used", "held", "available"), {"extra": 45, "used": 45, "held": 0, "available": 2000})
    exp = [e for e in events(c, "gx") if e.get("type") == "expire"]
    eq("grant end: one expire event, object grant, the 50 free credits, at its instant",
       [(e.get("object"), e.get("credits"), e.get("at")) for e in exp], [("grant", 50, "2029-04-01T00:30:00Z")])
    r = refund(c, "gx", r["charge_id"])
    eq("grant end: a refund to the ended grant is forfeited, nothing restored",
       (r.status, r.get("credits"), r.get("restored_to"), r.get("forfeited")), (201, 15, [], 15))
    r = refund(c, "gx", ch1["charge_id"], credits=10)
    eq("grant end: a partial refund of the first charge is forfeited too",
       (r.status, r.get("restored_to"), r.get("forfeited")), (201, [], 10))
    eq("grant end: used falls, available does not", pool_of(c, "gx", "used", "held", "available"),
       {"used": 20, "held": 0, "available": 2000})
    balanced("grant end", c, "gx")


def refunds_in_reverse():
    c = C
    c.create_account("rv", "starter")
    gid = adjust(c, "rv", 5, expires_at="2029-04-20T00:00:00Z")
    ch = c.charge("rv", amount=10)
    eq("refunds: the charge drew the grant then the allowance", ch.get("drawn_from"),
       [{"source": g(gid), "credits": 5}, {"source": "allowance", "credits": 5}])
    cid = ch["charge_id"]
    r = refund(c, "rv", cid, credits=3)
    eq("refunds: 3 back to the last bucket drawn", r.get("restored_to"), [{"source": "allowance", "credits": 3}])
    r = refund(c, "rv", cid, credits=4)
    eq("refunds: 4 more: the allowance's last 2, then 2 to the grant", r.get("restored_to"),
       [{"source": "allowance", "credits": 2}, {"source": g(gid), "credits": 2}])
    r = refund(c, "rv", cid)
    eq("refunds: no credits given: the 3 unrefunded, to the grant", (r.get("credits"), r.get("restored_to"),
                                                                      r.get("forfeited")),
       (3, [{"source": g(gid), "credits": 3}], 0))
    r = refund(c, "rv", cid, credits=D("0.001"))
    check("refunds: nothing left to refund is refused", r.status in (400, 409), r)
    eq("refunds: the pool is whole again", pool_of(c, "rv", "extra", "used", "available"),
       {"extra": 5, "used": 0, "available": 2005})
    r = c.get(f"/v1/accounts/rv/charges/{cid}")
    eq("refunds: GET charge lists its three refunds", [x.get("credits") for x in r.get("refunds") or []], [3, 4, 3])


def hold_across_reset():
    c = C
    c.create_account("hr", "starter")  # created 2029-04-01T00:40Z: [Apr 1 00:40, May 1 00:40)
    c.charge("hr", amount=1500)
    c.set_clock("2029-05-01T00:10:00Z")
    hid = hold(c, "hr", amount=300, ttl_ms=3600000)["hold_id"]  # open until 01:10
    c.set_clock("2029-05-01T00:40:00Z")
    a = c.account("hr")
    eq("reset with an open hold: a new cycle, the allowance whole, the hold still held",
       (a["cycle"], {k: a["pools"]["credits"][k] for k in ("allowance", "used", "held", "available")}),
       ({"start": "2029-05-01T00:40:00Z", "end": "2029-06-01T00:40:00Z"},
        {"allowance": 2000, "used": 0, "held": 300, "available": 2000}))
    balanced("reset with an open hold", c, "hr")
    c.set_clock("2029-05-01T00:50:00Z")
    r = capture(c, "hr", hid, amount=250)
    check("reset with an open hold: the capture spends the old allowance's reserve, not the new allowance",
          r.status == 201 and r.get("cost") == 250 and r.get("available_after") == 2000
          and r.get("drawn_from") == [{"source": "allowance", "credits": 250}], r)
    eq("reset with an open hold: used 250 this cycle, the other 50 vanished",
       pool_of(c, "hr", "used", "held", "available"), {"used": 250, "held": 0, "available": 2000})
    balanced("reset with an open hold, captured", c, "hr")
    r = refund(c, "hr", r["charge_id"])
    eq("reset with an open hold: its refund goes to the ended allowance: forfeited",
       (r.status, r.get("restored_to"), r.get("forfeited")), (201, [], 250))
    eq("reset with an open hold: used 0, available unchanged", pool_of(c, "hr", "used", "available"),
       {"used": 0, "available": 2000})


# ----------------------------------------------------------------------------- pricing

def pricing():
    c = C
    c.set_clock("2029-05-02T00:00:00Z")
    c.create_account("px", "pro")
    cases = [
        ("backend: 1 billable ms + 1 record, rounded once: ceil(0.1 + 0.5 mc)", "backend_function",
         {"duration_ms": 10001, "records": 1}, D("0.001")),
        ("backend: 15 s beyond the free 10 s", "backend_function", {"duration_ms": 25000, "records": 0}, D("1.5")),
        ("backend: within the free allowance", "backend_function", {"duration_ms": 9000, "records": 0}, 0),
        ("backend: 2500 records", "backend_function", {"duration_ms": 0, "records": 2500}, D("1.25")),
        ("agent: x0.3 rounded once up: ceil(500300 x 300 / 10^6) mc", "agent_prompt",
         {"model": "gpt-4o-mini", "input_tokens": 1, "output_tokens": 0, "files_read": 0, "lines_emitted": 0,
          "lines_changed": 0}, D("0.151")),
        ("agent: no model is the default model", "agent_prompt",
         {"input_tokens": 1000, "output_tokens": 0, "files_read": 0, "lines_emitted": 0, "lines_changed": 0},
         D("0.8")),
        ("discuss: its own constants times the model", "discuss_turn",
         {"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 1000}, D("0.63")),
        ("invokeLLM: gpt-4o-mini 1/1 rounds up to 0.902", "integration.invoke_llm",
         {"model": "gpt-4o-mini", "input_tokens": 1, "output_tokens": 1}, D("0.902")),
        ("image: three 512x512", "integration.generate_image", {"size": "512x512", "count": 3}, 15),
        ("image: two of the default size 1024x1024", "integration.generate_image", {"count": 2}, 16),
        ("email: three", "integration.send_email", {"count": 3}, 3),
    ]
    for name, kind, usage, cost in cases:
        r = quote(c, "px", kind, usage)
        eq("price: " + name, (r.status, r.get("cost"), r.get("rate_card_version")), (200, cost, 1))
    ranges = [
        ("unscoped prompt", "agent_prompt", AP, 5, 15),
        ("scoped prompt", "agent_prompt", SCOPED, 1, 3),
        ("discuss turn", "discuss_turn", {"model": "default", "input_tokens": 3000, "output_tokens": 300}, 1, 3),
        ("invokeLLM small", "integration.invoke_llm", LLM, 1, 3),
        ("invokeLLM large", "integration.invoke_llm", {"model": "gpt-4o", "input_tokens": 6000,
                                                        "output_tokens": 1500}, 5, 20),
        ("generateImage", "integration.generate_image", {"count": 1}, 5, 15),
        ("sendEmail", "integration.send_email", {"count": 1}, D("0.5"), 2),
    ]
    for name, kind, usage, lo, hi in ranges:
        r = quote(c, "px", kind, usage)
        check(f"published range: {name} costs {lo}-{hi}", r.status == 200 and lo <= r.get("cost") <= hi, r)
    r = quote(c, "px", "integration.generate_image", {"size": "256x256", "count": 1})
    check("price: an unknown size is 400 invalid_usage naming size", is_error(r, 400, "invalid_usage")
          and "size" in str(r.err.get("param")), r)
    r = quote(c, "px", "integration.invoke_llm", {"model": "gpt-5", "input_tokens": 1, "output_tokens": 1})
    check("price: an unknown model is 400 invalid_usage naming model", is_error(r, 400, "invalid_usage")
          and "model" in str(r.err.get("param")), r)
    r = quote(c, "px", "integration.send_email", {"count": 1, "colour": 2})
    check("price: an unknown dimension is 400 invalid_usage naming it", is_error(r, 400, "invalid_usage")
          and "colour" in str(r.err.get("param")), r)
    k1, k2 = key(), key()
    r = c.charge("px", usage={"duration_ms": 10001, "records": 1}, idem=k1)
    check("price: a charge by usage costs what the quote said", r.status == 201 and r.get("cost") == D("0.001"), r)
    r = c.charge("px", amount=2, usage={"duration_ms": 25000, "records": 0}, idem=k2)
    check("price: an explicit amount is charged as it is", r.status == 201 and r.get("cost") == 2, r)
    r = c.charge("px", amount=2, kind="integration.invoke_llm",
                 usage={"model": "nope", "input_tokens": 1, "output_tokens": 1})
    check("price: with an amount the usage is still validated (400 invalid_usage)",
          is_error(r, 400, "invalid_usage"), r)
    ev = {e.get("idempotency_key"): e for e in events(c, "px")}
    e1, e2 = ev.get(k1) or {}, ev.get(k2) or {}
    eq("price: the usage-priced charge event", (e1.get("type"), e1.get("credits"), e1.get("priced_by"),
                                                e1.get("rate_card_version"), e1.get("usage")),
       ("charge", D("0.001"), "usage", 1, {"duration_ms": 10001, "records": 1}))
    eq("price: the amount charge event keeps the usage for the analytics",
       (e2.get("credits"), e2.get("priced_by"), e2.get("usage")), (2, "amount", {"duration_ms": 25000, "records": 0}))
    eq("price: used 2.001", c.pool("px")["used"], D("2.001"))


# ----------------------------------------------------------------------------- holds

def holds():
    c = C
    c.set_clock("2029-05-03T00:00:00Z")
    c.create_account("hd", "starter")
    for ttl in (0, 3600001):
        r = hold(c, "hd", amount=1, ttl_ms=ttl)
        check(f"hold: ttl_ms {ttl} is 400 naming ttl_ms", r.status == 400 and r.err.get("param") == "ttl_ms", r)
    gid = adjust(c, "hd", 5, expires_at="2029-05-10T00:00:00Z")
    r = hold(c, "hd", amount=10)
    eq("hold: reserved in spending order", r.get("drawn_from"),
       [{"source": g(gid), "credits": 5}, {"source": "allowance", "credits": 5}])
    r = capture(c, "hd", r["hold_id"], amount=7)
    check("hold: capture less than held spends in spending order and releases the rest",
          r.status == 201 and r.get("cost") == 7 and r.get("available_after") == 1998 and r.get("drawn_from") ==
          [{"source": g(gid), "credits": 5}, {"source": "allowance", "credits": 2}], r)
    eq("hold: after the capture", pool_of(c, "hd", "used", "held", "available"),
       {"used": 7, "held": 0, "available": 1998})
    r = hold(c, "hd", usage=AP, kind="agent_prompt")
    check("hold: by a maximum usage: 9.92", r.status == 201 and r.get("amount") == D("9.92"), r)
    hid = r["hold_id"]
    big = dict(AP, output_tokens=3000)  # 500 + 3000 + 4500 + 1000 + 2000 + 120 mc
    r = capture(c, "hd", hid, usage=big)
    check("hold: a usage priced above the hold: 400 capture_exceeds_hold with hold_amount and required",
          is_error(r, 400, "capture_exceeds_hold") and r.err.get("hold_amount") == D("9.92")
          and r.err.get("required") == D("11.12"), r)
    r = capture(c, "hd", hid, usage=big, overage="charge")
    check("hold: with overage charge the excess is drawn in the same command", r.status == 201
          and r.get("cost") == D("11.12"), r)
    eq("hold: used 7 + 11.12", pool_of(c, "hd", "used", "held", "available"),
       {"used": D("18.12"), "held": 0, "available": D("1986.88")})


# ----------------------------------------------------------------------------- idempotency

def idempotency():
    c = C
    c.set_clock("2029-05-04T00:00:00Z")
    c.create_account("id", "starter")
    ha = hold(c, "id", amount=1)["hold_id"]
    hb = hold(c, "id", amount=2)["hold_id"]
    k = key()
    r = c.post(f"/v1/accounts/id/holds/{ha}/void", {"idempotency_key": k})
    check("idem: void A", r.status == 200, r)
    r = c.post(f"/v1/accounts/id/holds/{hb}/void", {"idempotency_key": k})
    check("idem: the same key on another hold id (path ids differ) is 422", is_error(r, 422, "idempotency_key_reused"),
          r)
    eq("idem: hold B is still open", [x.get("hold_id") for x in c.get("/v1/accounts/id/holds?status=open")["holds"]],
       [hb])
    c1 = c.charge("id", amount=1)["charge_id"]
    c2 = c.charge("id", amount=1)["charge_id"]
    k = key()
    r = refund(c, "id", c1, idem=k)
    check("idem: refund of charge 1", r.status == 201, r)
    r = refund(c, "id", c2, idem=k)
    check("idem: the same key and body on another charge id is 422", is_error(r, 422, "idempotency_key_reused"), r)
    k = key()
    body = {"idempotency_key": k, "kind": "backend_function", "user_id": "u1", "amount": 3}
    first = c.post("/v1/accounts/id/charges", body)
    r = c.post("/v1/batch", {"ops": [dict(body, op="charge", account_id="id")]})
    res = (r.get("results") or [{}])[0]
    check("idem: a batch op with a single request's key and body replays it",
          r.status == 200 and res.get("status") == 201 and res.get("replayed") is True
          and res.get("body") == first.doc, r)
    k = key()
    r = c.post("/v1/batch", {"ops": [{"op": "charge", "account_id": "id", "idempotency_key": k,
                                      "kind": "backend_function", "user_id": "u1", "amount": 4}]})
    first = (r.get("results") or [{}])[0]
    r = c.post("/v1/accounts/id/charges", {"idempotency_key": k, "kind": "backend_function", "user_id": "u1",
                                           "amount": 4})
    check("idem: a single request replays a batch op's answer", r.status == 201 and replayed(r)
          and r.doc == first.get("body"), r)
    eq("idem: charged 1 + 1 - 1 + 3 + 4 (hold B 2 held)", pool_of(c, "id", "used", "held"), {"used": 8, "held": 2})


# ----------------------------------------------------------------------------- cache

def cache():
    c = C
    c.set_clock("2029-05-05T00:00:00Z")
    c.create_account("ch", "starter")
    r = c.put("/v1/accounts/ch/cache/k60", {"kind": "integration.invoke_llm", "response": {"text": "hi"}, "ttl_s": 60})
    check("cache: PUT with ttl_s 60", r.status == 204, r)
    c.put("/v1/accounts/ch/cache/k7d", {"kind": "integration.invoke_llm", "response": "week"})
    c.set_clock("2029-05-05T00:00:59.999Z")
    r = c.charge("ch", kind="integration.invoke_llm", usage=LLM, cache_key="k60")
    eq("cache: 1 ms before the TTL a hit: cost 0, saved 1.29",
       (r.status, r.get("cost"), r.get("cached"), r.get("saved"), r.get("response"), r.get("drawn_from")),
       (201, 0, True, D("1.29"), {"text": "hi"}, []))
    c.set_clock("2029-05-05T00:01:01Z")
    r = c.charge("ch", kind="integration.invoke_llm", usage=LLM, cache_key="k60")
    eq("cache: after the TTL a miss, charged", (r.status, r.get("cost"), r.get("cached")), (201, D("1.29"), False))
    c.set_clock("2029-05-11T23:59:59.999Z")
    r = c.charge("ch", kind="integration.invoke_llm", usage=LLM, cache_key="k7d")
    eq("cache: the default TTL is 7 days (a hit 1 ms before)", (r.get("cost"), r.get("cached")), (0, True))
    c.set_clock("2029-05-12T00:00:01Z")
    r = c.charge("ch", kind="integration.invoke_llm", usage=LLM, cache_key="k7d")
    eq("cache: ... a miss after 7 days", (r.get("cost"), r.get("cached")), (D("1.29"), False))
    hits = [e for e in events(c, "ch") if e.get("type") == "cache_hit"]
    eq("cache: each hit is a cache_hit event with the credits saved",
       [(e.get("credits"), e.get("cache_key"), e.get("kind")) for e in hits],
       [(D("1.29"), "k60", "integration.invoke_llm"), (D("1.29"), "k7d", "integration.invoke_llm")])
    eq("cache: used = the two misses", c.pool("ch")["used"], D("2.58"))
    c.put("/v1/accounts/ch/cache/kh", {"kind": "integration.invoke_llm", "response": "held"})
    k = key()
    r = c.post("/v1/accounts/ch/holds", {"idempotency_key": k, "kind": "integration.invoke_llm", "user_id": "u1",
                                         "usage": LLM, "cache_key": "kh"})
    eq("cache: a hold that hits answers 200 {cached, saved, response}", (r.status, r.doc),
       (200, {"cached": True, "saved": D("1.29"), "response": "held"}))
    e = [x for x in events(c, "ch") if x.get("idempotency_key") == k]
    eq("cache: the hold's cache_hit event says it was priced by usage",
       [(x.get("type"), x.get("credits"), x.get("priced_by"), x.get("usage")) for x in e],
       [("cache_hit", D("1.29"), "usage", LLM)])
    # A hit bypasses credits and rate limits.
    c.create_account("ch0", "starter")
    c.charge("ch0", amount=2000)
    c.put("/v1/accounts/ch0/rate-limits", {"per_user": {"per_minute": 1, "burst": 1},
                                           "per_account": {"per_minute": 100, "burst": 100}})
    c.put("/v1/accounts/ch0/cache/img", {"kind": "integration.generate_image", "response": "url"})
    r = c.charge("ch0", kind="integration.generate_image", usage={"count": 1})
    check("cache: a miss on an empty account is 402 (it took the user's one token)", r.status == 402, r)
    r = c.charge("ch0", kind="integration.generate_image", usage={"count": 1}, cache_key="img")
    eq("cache: a hit bypasses credits and the rate limit", (r.status, r.get("cost"), r.get("cached"), r.get("saved")),
       (201, 0, True, 8))
    r = c.charge("ch0", kind="integration.generate_image", usage={"count": 1})
    check("cache: a miss after it is limited (429)", is_error(r, 429, "rate_limited"), r)


# ----------------------------------------------------------------------------- rate limits

def rate_limits():
    c = C
    c.set_clock("2029-05-20T00:00:00Z")
    c.create_account("rl", "starter")
    r = c.put("/v1/accounts/rl/rate-limits", {"per_user": {"per_minute": 1, "burst": 1},
                                              "per_account": {"per_minute": 100, "burst": 100}})
    check("rate: 1 a minute per user", r.status == 200, r)
    r = hold(c, "rl", amount=5, kind="integration.invoke_llm")
    check("rate: the hold takes the token", r.status == 201, r)
    hid = r["hold_id"]
    r = c.charge("rl", amount=1, kind="integration.invoke_llm")
    check("rate: the next charge is 429", is_error(r, 429, "rate_limited"), r)
    ms = r.err.get("retry_after_ms")
    check("rate: retry_after_ms within (0, 60000]", isinstance(ms, int) and 0 < ms <= 60000, r)
    r = capture(c, "rl", hid, amount=3)
    check("rate: a capture is never limited", r.status == 201, r)
    r = refund(c, "rl", r["charge_id"], credits=1)
    check("rate: a refund is never limited", r.status == 201, r)
    h2 = hold(c, "rl", amount=1, kind="integration.invoke_llm")
    check("rate: a hold is limited", is_error(h2, 429, "rate_limited"), h2)
    c.set_clock("2029-05-20T00:01:00Z")
    r = c.charge("rl", amount=1, kind="integration.invoke_llm")
    check("rate: a minute later on the injected clock the token is back", r.status == 201, r)
    c.create_account("rl2", "starter")
    c.put("/v1/accounts/rl2/rate-limits", {"per_user": {"per_minute": 100, "burst": 100},
                                           "per_account": {"per_minute": 1, "burst": 2}})
    ok = [c.charge("rl2", amount=1, kind="agent_prompt", user_id=u).status for u in ("u1", "u2", "u3")]
    eq("rate: per account across users: burst 2, the third user is 429", ok, [201, 201, 429])


# ----------------------------------------------------------------------------- events

def event_format():
    c = C
    accts = ["an-31", "cp", "so", "gx", "rv", "hr", "px", "hd", "id", "ch", "ch0", "rl", "pr"]
    everything = []
    for a in accts:
        ev = events(c, a)
        everything += ev
        seqs = [e.get("seq") for e in ev]
        check(f"events {a}: seq strictly increasing", all(isinstance(s, int) for s in seqs)
              and all(x < y for x, y in zip(seqs, seqs[1:])), seqs)
        missing = [(e.get("type"), sorted(EVENT_FIELDS - set(e))) for e in ev if not EVENT_FIELDS <= set(e)]
        eq(f"events {a}: every event has every field of the event format", missing, [])
        eq(f"events {a}: all of this account", {e.get("account_id") for e in ev}, {a})
    seqs = [e.get("seq") for e in everything]
    eq("events: sequence numbers are global (unique across accounts)", len(set(seqs)), len(seqs))
    eq("events: every type of change was recorded", {e.get("type") for e in everything},
       {"charge", "hold", "capture", "void", "expire", "grant", "reset", "plan_change", "refund", "cache_hit",
        "rejected"})
    for e in everything:
        if e.get("type") in ("charge", "capture"):
            ok = (e.get("user_id") and e.get("kind") and e.get("pool") == "credits" and e.get("priced_by") in
                  ("usage", "amount") and e.get("rate_card_version") == 1 and isinstance(e.get("drawn_from"), list)
                  and e.get("available_after") is not None and e.get("idempotency_key"))
            if not check(f"events: a {e.get('type')} names its user, kind, pool, pricing, buckets and key", ok, e):
                break
    bad = [e for e in everything if e.get("type") in ("charge", "capture")
           and sum(D(str(x["credits"])) for x in e.get("drawn_from") or []) != D(str(e.get("credits")))]
    eq("events: a charge's or capture's drawn_from adds up to its credits", bad, [])
    types = reimports_whole(c, accts, "pro", "events")
    eq("events: the re-imported export held every type", len(types), 11)


def reimports_whole(c, accts, plan, label):
    """API.md "Event format": one format for exports and imports. Each account's NDJSON
    export, every event type in it, imports back with no line refused (the import checks
    each enumerated field's values: found by an audit, it kept values outside them). The
    lines move to a fresh account each, so that their keys are no duplicates."""
    lines = []
    for a in accts:
        copy = "ri-" + a
        c.create_account(copy, plan)
        r = c.get(f"/v1/accounts/{a}/events?format=ndjson&limit=1000")
        for text in r.text.splitlines():
            if text.strip():
                lines.append(text.replace(f'"account_id":"{a}"', f'"account_id":"{copy}"', 1))
    types = {json.loads(x).get("type") for x in lines}
    r = c.post("/v1/admin/import?mode=analytics", raw="\n".join(lines) + "\n")
    eq(f"{label}: the export of {len(types)} event types imports back whole",
       (r.status, r.get("imported"), r.get("rejected"), (r.get("errors") or [])[:3]), (200, len(lines), 0, []))
    return types


# ----------------------------------------------------------------------------- rollover and plans (own catalog)

PLANS = """
[plans.free]
name = "Free"
price_usd_cents = 0
cycle_anchor = "signup"
rollover_percent = 50
[plans.free.pools.credits]
allowance = 100
daily_cap = 25

[plans.basic]
name = "Basic"
price_usd_cents = 1000
rollover_percent = 50
[plans.basic.pools.credits]
allowance = 1000

[plans.twin]
name = "Twin"
price_usd_cents = 1000
[plans.twin.pools.credits]
allowance = 300

[plans.capped]
name = "Capped"
price_usd_cents = 1500
rollover_percent = 30
rollover_cap = 100
[plans.capped.pools.credits]
allowance = 1000

[plans.small]
name = "Small"
price_usd_cents = 2000
[plans.small.pools.credits]
allowance = 500

[plans.capbig]
name = "CapBig"
price_usd_cents = 3000
[plans.capbig.pools.credits]
allowance = 2000
daily_cap = 100
"""


def grants_of(c, acct, source):
    return [(x.get("credits"), x.get("remaining"), x.get("expires_at"))
            for x in c.get(f"/v1/accounts/{acct}/grants").get("grants") or [] if x.get("source") == source]


def rollover():
    d = tempfile.mkdtemp(prefix="creditd-dom-")
    h._tmpdirs.append(d)
    plans = os.path.join(d, "plans.toml")
    with open(plans, "w") as f:
        f.write(PLANS)
    srv = h.start(manual_clock=True, extra_args=["--plans", plans])
    c = srv.client()
    c.set_clock("2030-01-01T00:00:00Z")
    for a, plan in (("ro", "basic"), ("rc", "capped"), ("rh", "capped"), ("rp", "capped"), ("rf", "free"),
                    ("ru", "basic"), ("rt", "basic"), ("rcap", "basic")):
        c.create_account(a, plan)
    adjust(c, "ro", 50)
    r = c.charge("ro", amount=300)
    eq("rollover: the allowance (ends Feb 1) before the never-expiring grant", r.get("drawn_from"),
       [{"source": "allowance", "credits": 300}])
    c.charge("rh", amount=700)
    c.charge("rp", amount=800)
    r = c.post("/v1/accounts/rp/plan", {"plan": "basic", "idempotency_key": key()})
    check("rollover: capped -> basic (cheaper) is pending", r.status == 200 and r.get("plan") == "capped"
          and r.get("pending_plan") == "basic", r)
    c.charge("rf", amount=10)
    c.charge("rt", amount=600)
    c.set_clock("2030-01-15T00:00:00Z")
    r = c.post("/v1/accounts/rf/plan", {"plan": "basic", "idempotency_key": key()})
    eq("free -> paid: a new cycle now with the full allowance", (r.status, r.get("cycle"),
                                                                 (r.get("pools") or {}).get("credits", {}).get("available")),
       (200, {"start": "2030-01-15T00:00:00Z", "end": "2030-02-15T00:00:00Z"}, 1000))
    eq("free -> paid: no rollover although the free plan has 50 %", grants_of(c, "rf", "rollover"), [])
    c.set_clock("2030-01-20T00:00:00Z")
    c.charge("ru", amount=700)
    hold(c, "ru", amount=100)
    r = c.post("/v1/accounts/ru/plan", {"plan": "small", "idempotency_key": key()})
    eq("upgrade: the allowance becomes max(new 500, spent 700 + held 100)",
       (r.status, r.get("plan"), {k: ((r.get("pools") or {}).get("credits") or {}).get(k)
                                  for k in ("allowance", "used", "held", "available")}),
       (200, "small", {"allowance": 800, "used": 700, "held": 100, "available": 0}))
    pcs = [e for e in events(c, "ru") if e.get("type") == "plan_change"]
    # [Jan 1, Feb 1) is 31 days, 12 left: 1000 x 12 / 31 = 387.09 -> 388
    eq("upgrade: proration ceil(1000 x 12 / 31) cents", [e.get("proration_usd_cents") for e in pcs], [388])
    r = c.post("/v1/accounts/rt/plan", {"plan": "twin", "idempotency_key": key()})
    eq("plan: an equal price is pending, not immediate", (r.status, r.get("plan"), r.get("pending_plan"),
                                                          ((r.get("pools") or {}).get("credits") or {}).get("allowance")),
       (200, "basic", "twin", 1000))
    c.charge("rcap", amount=50)
    r = c.post("/v1/accounts/rcap/plan", {"plan": "capbig", "idempotency_key": key()})
    p = (r.get("pools") or {}).get("credits") or {}
    eq("upgrade: the daily cap applies at once (100, 50 already used today)",
       (p.get("daily_cap"), p.get("used_today"), p.get("available_now")), (100, 50, 50))
    c.set_clock("2030-01-31T23:00:00Z")
    hold(c, "rh", amount=200, ttl_ms=3600000)  # expires exactly at the boundary
    c.set_clock("2030-01-31T23:30:00Z")
    hold(c, "ro", amount=100, ttl_ms=3600000)  # crosses the boundary
    c.set_clock("2030-02-01T00:00:00Z")
    eq("rollover: floor((1000 - 300 spent - 100 held) x 50 %) = 300, expiring at the new cycle's end",
       grants_of(c, "ro", "rollover"), [(300, 300, "2030-03-01T00:00:00Z")])
    eq("rollover: the pool (the adjustment carried, the hold still held)",
       pool_of(c, "ro", "allowance", "used", "held", "available"),
       {"allowance": 1000, "used": 0, "held": 100, "available": 1350})
    balanced("rollover", c, "ro")
    eq("rollover: 30 % of 1000 capped at rollover_cap 100", grants_of(c, "rc", "rollover"),
       [(100, 100, "2030-03-01T00:00:00Z")])
    eq("rollover: a hold expiring at the boundary is released first: 30 % of 300 = 90",
       grants_of(c, "rh", "rollover"), [(90, 90, "2030-03-01T00:00:00Z")])
    a = c.account("rp")
    eq("rollover: the ending plan decides (30 % of 200 = 60), then the pending plan applies",
       (a["plan"], a["pending_plan"], a["pools"]["credits"]["allowance"], grants_of(c, "rp", "rollover")),
       ("basic", None, 1000, [(60, 60, "2030-03-01T00:00:00Z")]))
    eq("rollover: the ending plan decides (basic 50 % of 400 = 200) though the next plan (twin) has none",
       (c.account("rt")["plan"], grants_of(c, "rt", "rollover")), ("twin", [(200, 200, "2030-03-01T00:00:00Z")]))
    roll = [x.get("grant_id") for x in c.get("/v1/accounts/rc/grants").get("grants") or []
            if x.get("source") == "rollover"]
    adj = adjust(c, "rc", 10, expires_at="2030-03-01T00:00:00Z")
    r = c.charge("rc", amount=1050)
    eq("order: at one expiry the allowance, then the rollover", r.get("drawn_from"),
       [{"source": "allowance", "credits": 1000}, {"source": g(roll[0]) if roll else None, "credits": 50}])
    r = c.charge("rc", amount=60)
    eq("order: ... then the rollover before an adjustment", r.get("drawn_from"),
       [{"source": g(roll[0]) if roll else None, "credits": 50}, {"source": g(adj), "credits": 10}])
    c.charge("rh", amount=1)
    ev = events(c, "rh")
    order = [(e.get("type"), e.get("object")) for e in ev if e.get("at") == "2030-02-01T00:00:00Z"]
    check("rollover: at the boundary the hold expires before the rollover grant is made",
          ("expire", "hold") in order and any(t == "grant" for t, _ in order)
          and order.index(("expire", "hold")) < [t for t, _ in order].index("grant"), order)
    c.set_clock("2030-03-01T00:00:00Z")
    eq("rollover: grants never roll over; the new rollover is 50 % of the unspent allowance",
       grants_of(c, "ro", "rollover")[-1:], [(500, 500, "2030-04-01T00:00:00Z")])
    eq("rollover: the old rollover grant ended unspent", pool_of(c, "ro", "available", "used"),
       {"available": 1550, "used": 0})
    r = c.charge("ro", amount=1)
    eq("rollover: the allowance before the rollover grant (same expiry)", r.get("drawn_from"),
       [{"source": "allowance", "credits": 1}])
    exp = [(e.get("object"), e.get("credits")) for e in events(c, "ro")
           if e.get("type") == "expire" and e.get("at") == "2030-03-01T00:00:00Z"]
    eq("rollover: the ended rollover grant's expire event (300 unspent)", exp, [("grant", 300)])
    reimports_whole(c, ["ro", "rc", "rh", "rp", "rf", "ru", "rt", "rcap"], "basic", "rollover")
    srv.stop()


# ----------------------------------------------------------------------------- versions across a restart

def versions_across_restart():
    """The plans and the rate card in force are logged values: a crash before any snapshot
    and a restart on changed files keep the acknowledged plan for the current cycle and
    price a capture with its hold's card; so does a restart from a snapshot."""
    d = tempfile.mkdtemp(prefix="creditd-dom-")
    h._tmpdirs.append(d)
    data = os.path.join(d, "data")
    os.mkdir(data)
    with open(os.path.join(ROOT, "config/rate_card.toml")) as f:
        card = f.read()
    with open(os.path.join(ROOT, "config/plans.toml")) as f:
        plans = f.read()
    card2 = card.replace("version = 1", "version = 2", 1).replace("base_mc = 500", "base_mc = 1500", 1)
    plans2 = plans.replace("allowance = 2000", "allowance = 2500", 1)
    assert card2 != card and plans2 != plans
    p2, c2f = os.path.join(d, "plans2.toml"), os.path.join(d, "card2.toml")
    with open(p2, "w") as f:
        f.write(plans2)
    with open(c2f, "w") as f:
        f.write(card2)
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    c.set_clock("2030-06-01T00:00:00Z")
    c.create_account("v", "starter")
    r = hold(c, "v", usage=AP, kind="agent_prompt", ttl_ms=3600000)
    check("versions: a hold priced with card 1 (9.92)", r.status == 201 and r.get("amount") == D("9.92"), r)
    hid = r["hold_id"]
    hid2 = hold(c, "v", usage=AP, kind="agent_prompt", ttl_ms=3600000)["hold_id"]
    eq("versions: SIGKILL before any snapshot", srv.kill(), -9)
    srv = h.start(manual_clock=True, data_dir=data, extra_args=["--plans", p2, "--rate-card", c2f])
    c = srv.client()
    eq("versions: after the crash, a changed plan does not change the current cycle", c.pool("v")["allowance"], 2000)
    r = quote(c, "v", "agent_prompt", SCOPED)
    eq("versions: the new card prices new work (scoped prompt 1.74 + 1)", (r.get("cost"), r.get("rate_card_version")),
       (D("2.74"), 2))
    r = capture(c, "v", hid, usage=SCOPED)
    check("versions: a capture's usage is priced with its hold's card version (1.74, not 2.74)",
          r.status == 201 and r.get("cost") == D("1.74"), r)
    caps = [e for e in events(c, "v") if e.get("type") == "capture"]
    eq("versions: the capture event records card 1", [(e.get("credits"), e.get("rate_card_version")) for e in caps],
       [(D("1.74"), 1)])
    eq("versions: stopped cleanly", srv.stop(), 0)
    srv = h.start(manual_clock=True, data_dir=data,
                  extra_args=["--plans", p2, "--rate-card", c2f, "--snapshot-wal-bytes", "1"])
    c = srv.client()
    c.charge("v", amount=1)  # a batch logged: a snapshot follows
    eq("versions: stopped cleanly after a snapshot", srv.stop(), 0)
    srv = h.start(manual_clock=True, data_dir=data, extra_args=["--plans", p2, "--rate-card", c2f])
    c = srv.client()
    r = capture(c, "v", hid2, usage=SCOPED)
    check("versions: from a snapshot too, the capture is priced with card 1", r.status == 201
          and r.get("cost") == D("1.74"), r)
    eq("versions: ... the changed plan still waits for the next cycle", c.pool("v")["allowance"], 2000)
    # The audit's advice and the forecast describe the plan in force too (found by an audit:
    # the report took the new file's allowance mid-cycle).
    r = c.get("/v1/accounts/v/audit?format=json")
    eq("versions: ... the audit's advice uses the allowance in force", (r.status, (r.get("advice") or {}).get("allowance")),
       (200, 2000))
    c.set_clock("2030-07-01T00:00:00Z")
    eq("versions: ... and applies from it", c.pool("v")["allowance"], 2500)
    srv.stop()


srv = h.start(manual_clock=True)
C = srv.client()
for section in (anchors_2028, proration_february, anchors_2029, daily_caps, spending_order, grant_ends_mid_cycle,
                refunds_in_reverse, hold_across_reset, pricing, holds, idempotency, cache, rate_limits, event_format):
    h.run_section(section)
srv.stop()
h.run_section(rollover)
h.run_section(versions_across_restart)
h.finish()
