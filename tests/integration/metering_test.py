#!/usr/bin/env python3
"""Charges, exact money, 402 details, daily caps, validation, idempotency, holds, refunds,
rate limits, the integration cache and batches.

Runs one creditd with --clock manual on a fresh data dir (API.md "Metering", DESIGN.md 1).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

srv = h.start(manual_clock=True)
c = srv.client()
T0 = "2026-03-10T12:00:00Z"
c.set_clock(T0)
AP = h.AGENT_PROMPT_USAGE
SCOPED = {"model": "default", "input_tokens": 2200, "output_tokens": 120, "files_read": 1,
          "lines_emitted": 8, "lines_changed": 6}  # 500+660+180+200+80+120 = 1740 mc
LLM = {"model": "gpt-4o-mini", "input_tokens": 500, "output_tokens": 200}  # (3000+500+800)*0.3 = 1.29


def cpath(a):
    return f"/v1/accounts/{a}/charges"


def raw_charge(a, amount_text, idem=None):
    idem = idem or key()
    return c.post(cpath(a), raw='{"idempotency_key": "%s", "kind": "backend_function", "user_id": "u1", '
                                '"amount": %s}' % (idem, amount_text))


def invariant(a, label):
    p = c.pool(a)
    check(f"{label}: allowance + extra = used + held + available",
          p["allowance"] + p["extra"] == p["used"] + p["held"] + p["available"], p)


def charges():
    a = c.create_account("ch", "starter")
    r = c.charge(a, kind="agent_prompt", usage=AP)
    check("charge by usage: 201", r.status == 201, r)
    cid = r.get("charge_id")
    eq("charge by usage: the body",
       {k: v for k, v in (r.doc or {}).items() if k != "charge_id"},
       {"cost": D("9.92"), "pool": "credits", "available_after": D("1990.08"),
        "drawn_from": [{"source": "allowance", "credits": D("9.92")}],
        "cached": False, "saved": None, "response": None})
    check("charge by usage: a charge_id", isinstance(cid, str) and cid, r)
    check("charge: money out is the shortest exact decimal", '"cost":9.92' in r.text.replace(" ", "")
          and '"available_after":1990.08' in r.text.replace(" ", ""), r.text)
    r = c.post(f"/v1/accounts/{a}/quote", {"kind": "agent_prompt", "usage": AP})
    eq("quote: 9.92 on the credits pool, rate card 1", r.doc, {"cost": D("9.92"), "pool": "credits",
                                                              "rate_card_version": 1})
    r = c.post(f"/v1/accounts/{a}/quote", {"kind": "agent_prompt", "usage": SCOPED})
    eq("quote: the scoped prompt is 1.74", r.get("cost"), D("1.74"))
    r = c.post(f"/v1/accounts/{a}/quote", {"kind": "integration.invoke_llm", "usage": LLM})
    eq("quote: invokeLLM gpt-4o-mini 500/200 is 1.29", r.get("cost"), D("1.29"))
    r = c.post(f"/v1/accounts/{a}/quote", {"kind": "integration.generate_image", "usage": {"count": 1}})
    eq("quote: one 1024x1024 image is 8", r.get("cost"), 8)
    eq("quote: charges nothing", c.pool(a)["used"], D("9.92"))
    r = c.get(f"/v1/accounts/{a}/charges/{cid}")
    check("GET charge: 200 with cost, kind and an empty refunds list",
          r.status == 200 and r.get("charge_id") == cid and r.get("cost") == D("9.92")
          and r.get("kind") == "agent_prompt" and r.get("refunds") == [], r)
    r = c.get(f"/v1/accounts/{a}/charges/c_nope")
    check("GET unknown charge: 404 charge_not_found", is_error(r, 404, "charge_not_found"), r)

    # exact money in
    for text in ("1.5", "1.500", "15e-1", "0.15E1", "1500e-3"):
        r = raw_charge(a, text)
        check(f"money in: amount {text} is charged as 1.5", r.status == 201 and r.get("cost") == D("1.5")
              and '"cost":1.5,' in r.text.replace(" ", ""), r)
    r = raw_charge(a, "0.125")
    check("money out: 0.125", '"cost":0.125' in r.text.replace(" ", ""), r)
    r = raw_charge(a, "2.000")
    check("money out: 2.000 is written 2", '"cost":2,' in r.text.replace(" ", ""), r)
    used = c.pool(a)["used"]
    eq("money: used = 9.92 + 5 x 1.5 + 0.125 + 2", used, D("9.92") + D("7.5") + D("0.125") + 2)
    for text, why in (("1.0001", "not a multiple of 0.001"), ("-1", "negative"), ("-0.001", "negative"),
                      ("1000000000001", "over 10^12"), ("1e13", "over 10^12"), ("1e400", "huge exponent"),
                      ("0.0000000000000000000001", "tiny")):
        r = raw_charge(a, text)
        check(f"money in: amount {text} ({why}) is 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)
    r = c.post(cpath(a), {"idempotency_key": key(), "kind": "backend_function", "user_id": "u1", "amount": "1.5"})
    check("money in: amount as a string is 400", r.status == 400, r)
    r = raw_charge(a, "1000000000000")
    check("money in: exactly 10^12 is a valid amount (402 here, not 400)", is_error(r, 402, "insufficient_credits"), r)
    eq("money: nothing changed by the refusals", c.pool(a)["used"], used)

    # 402 from the pool
    avail = c.pool(a)["available"]
    r = c.charge(a, amount=5000)
    check("402: insufficient_credits", is_error(r, 402, "insufficient_credits"), r)
    e = r.err
    eq("402: details", {k: e.get(k) for k in ("required", "available", "refused_by", "cycle_end", "upgrade_to")},
       {"required": 5000, "available": avail, "refused_by": "pool", "cycle_end": "2026-04-10T12:00:00Z",
        "upgrade_to": "pro"})  # used + 5000 > 5000 (builder), <= 10000 (pro)
    r = c.charge(a, amount=4000)
    eq("402: upgrade_to builder when used + held + required fits in 5000", r.err.get("upgrade_to"), "builder")
    r = c.charge(a, amount=30000)
    eq("402: upgrade_to enterprise for 30000", r.err.get("upgrade_to"), "enterprise")
    eq("402: nothing charged", c.pool(a)["available"], avail)
    r = c.charge(a, amount=avail)
    check("charge: exactly the available amount is 201, available_after 0",
          r.status == 201 and r.get("available_after") == 0, r)
    r = c.charge(a, amount=0.001)
    check("charge: 0.001 on an empty account is 402 with available 0",
          is_error(r, 402, "insufficient_credits") and r.err.get("available") == 0, r)
    invariant(a, "charges")

    # validation
    b = c.create_account("val", "starter")
    cases = [
        ("unknown field", {"kind": "backend_function", "user_id": "u", "amount": 1, "colour": "red"},
         "unknown_field", "colour"),
        ("unknown usage dimension", {"kind": "agent_prompt", "user_id": "u", "usage": dict(AP, bogus_dim=1)},
         "invalid_usage", "usage.bogus_dim"),
        ("unknown model", {"kind": "agent_prompt", "user_id": "u", "usage": dict(AP, model="gpt-9")},
         "invalid_usage", "usage.model"),
        ("a dimension of another kind", {"kind": "integration.send_email", "user_id": "u",
                                          "usage": {"count": 1, "input_tokens": 5}}, "invalid_usage",
         "usage.input_tokens"),
        ("unknown image size", {"kind": "integration.generate_image", "user_id": "u",
                                "usage": {"count": 1, "size": "7x7"}}, "invalid_usage", "usage.size"),
        ("negative tokens", {"kind": "agent_prompt", "user_id": "u", "usage": dict(AP, input_tokens=-1)},
         "invalid_usage", "usage.input_tokens"),
        ("usage with amount still validated", {"kind": "agent_prompt", "user_id": "u", "amount": 1,
                                               "usage": {"model": "gpt-9"}}, "invalid_usage", "usage.model"),
        ("unknown kind", {"kind": "teleport", "user_id": "u", "amount": 1}, "invalid_request", "kind"),
        ("neither usage nor amount", {"kind": "backend_function", "user_id": "u"}, "invalid_request", None),
        ("missing user_id", {"kind": "backend_function", "amount": 1}, "invalid_request", "user_id"),
        ("user_id of 129 chars", {"kind": "backend_function", "user_id": "u" * 129, "amount": 1},
         "invalid_request", "user_id"),
        ("metadata with a non-string", {"kind": "backend_function", "user_id": "u", "amount": 1,
                                        "metadata": {"file": 5}}, "invalid_request", None),
        ("metadata value of 257 chars", {"kind": "backend_function", "user_id": "u", "amount": 1,
                                         "metadata": {"file": "f" * 257}}, "invalid_request", None),
        ("17 custom metadata keys", {"kind": "backend_function", "user_id": "u", "amount": 1,
                                     "metadata": {f"k{i}": "v" for i in range(17)}}, "invalid_request", None),
    ]
    for name, body, code, param in cases:
        r = c.post(cpath(b), dict(body, idempotency_key=key()))
        ok = r.status == 400 and r.code == code and (param is None or r.err.get("param") == param)
        check(f"validation: {name}: 400 {code}" + (f" param {param}" if param else ""), ok, r)
    r = c.post(cpath(b), {"idempotency_key": key(), "kind": "backend_function", "user_id": "u", "amount": 1,
                          "metadata": {f"k{i}": "v" for i in range(16)} | {"file": "a.js", "feature": "x"}})
    check("validation: 16 custom metadata keys plus known ones are accepted", r.status == 201, r)
    eq("validation: only the accepted charge changed the balance", c.pool(b)["used"], 1)


def daily_cap():
    f = c.create_account("capped", "free")  # signup now (2026-03-10T12:00Z)
    r = c.charge(f, amount=20)
    check("cap: 20 of 25 is 201", r.status == 201, r)
    r = c.charge(f, amount=6)
    check("cap: 6 more is 402 insufficient_credits", is_error(r, 402, "insufficient_credits"), r)
    eq("cap: details", {k: r.err.get(k) for k in ("required", "available", "refused_by", "resets_at")},
       {"required": 6, "available": 5, "refused_by": "daily_cap", "resets_at": "2026-03-11T00:00:00Z"})
    r = c.post(f"/v1/accounts/{f}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                           "amount": 6})
    check("cap: a hold of 6 is refused by the cap too", is_error(r, 402, "insufficient_credits")
          and r.err.get("refused_by") == "daily_cap", r)
    r = c.post(f"/v1/accounts/{f}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                           "amount": 4})
    check("cap: a hold of 4 fits", r.status == 201, r)
    r = c.charge(f, amount=1)
    check("cap: spent 20 + held 4 + 1 = 25 fits", r.status == 201, r)
    p = c.pool(f)
    eq("cap: account view", {k: p[k] for k in ("used", "held", "available", "daily_cap", "used_today", "available_now")},
       {"used": 21, "held": 4, "available": 75, "daily_cap": 25, "used_today": 21, "available_now": 0})
    r = c.charge(f, amount=0.001)
    check("cap: 0.001 more is refused by the cap", r.err.get("refused_by") == "daily_cap", r)
    c.set_clock("2026-03-11T00:00:00Z")
    p = c.pool(f)
    check("cap: a new UTC day: used_today 0, available_now 25 (the 4 held expired long ago: available 79)",
          p["used_today"] == 0 and p["available_now"] == 25 and p["available"] == 79 and p["held"] == 0, p)
    r = c.charge(f, amount=25)
    check("cap: 25 on the new day is 201", r.status == 201 and r.get("available_after") == 54, r)
    r = c.charge(f, amount=60)
    eq("cap: over the pool: pool refusal comes with cycle_end and upgrade_to",
       {k: r.err.get(k) for k in ("refused_by", "cycle_end", "upgrade_to")} if r.status == 402 else r.doc,
       {"refused_by": "pool", "cycle_end": "2026-04-10T12:00:00Z", "upgrade_to": "starter"})


def idempotency():
    a = c.create_account("idem", "starter")
    body = {"idempotency_key": "same-1", "kind": "agent_prompt", "user_id": "u", "usage": AP,
            "metadata": {"file": "src/a.js"}}
    r1 = c.post(cpath(a), body)
    check("idem: first answer 201 without Idempotent-Replayed",
          r1.status == 201 and r1.headers.get("idempotent-replayed") in (None, "false"), (r1, r1.headers))
    r2 = c.post(cpath(a), body)
    check("idem: identical replay: same status and body, Idempotent-Replayed: true",
          r2.status == 201 and r2.doc == r1.doc and r2.headers.get("idempotent-replayed") == "true", (r2, r2.headers))
    reordered = '{"usage": {"lines_changed": 6, "lines_emitted": 200, "files_read": 5, "output_tokens": 2200, ' \
                '"input_tokens": 10000, "model": "default"},\n  "metadata": {"file": "src/a.js"}, "user_id": "u", ' \
                '"kind": "agent_prompt", "idempotency_key": "same-1"}'
    rw = c.post(cpath(a), raw=h.dumps(body).replace(", ", ",\n   "))
    check("idem: whitespace alone does not matter (replayed)",
          rw.status == 201 and rw.doc == r1.doc and rw.headers.get("idempotent-replayed") == "true", rw)
    r3 = c.post(cpath(a), raw=reordered)
    check("idem: key order (and whitespace) do not matter (replayed)",
          r3.status == 201 and r3.doc == r1.doc and r3.headers.get("idempotent-replayed") == "true", r3,
          bug="DESIGN.md 1 Idempotency: 'the same body' means the same parsed fields: key order, whitespace "
              "and number spelling do not matter",
          req=f"POST {cpath(a)} {json.dumps(body)} then the same fields in another key order",
          expected="201, the first body, Idempotent-Replayed: true")
    eq("idem: charged once", c.pool(a)["used"], D("9.92"))
    r = c.post(cpath(a), dict(body, user_id="v"))
    check("idem: same key, another body: 422 idempotency_key_reused", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(cpath(a), {k: v for k, v in body.items() if k != "metadata"})
    check("idem: an absent field is not the same body: 422", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(f"/v1/accounts/{a}/holds", body)
    check("idem: same key on another route: 422", is_error(r, 422, "idempotency_key_reused"), r)
    # number spelling of amounts
    r1 = raw_charge(a, "1.5", idem="amt-1")
    r2 = raw_charge(a, "15e-1", idem="amt-1")
    check("idem: 1.5 and 15e-1 are the same body (replayed)",
          r1.status == 201 and r2.status == 201 and r2.doc == r1.doc
          and r2.headers.get("idempotent-replayed") == "true", (r1, r2),
          bug="DESIGN.md 1 Idempotency: number spelling does not matter (amounts compare in millicredits)",
          req=f'POST {cpath(a)} {{"idempotency_key":"amt-1",...,"amount":1.5}} then the same with "amount":15e-1',
          expected="201, the first body, Idempotent-Replayed: true")
    r = raw_charge(a, "1.501", idem="amt-1")
    check("idem: 1.501 is another body: 422", is_error(r, 422, "idempotency_key_reused"), r)
    # the header
    hb = {"kind": "backend_function", "user_id": "u", "amount": 2}
    r1 = c.post(cpath(a), hb, headers={"Idempotency-Key": "hdr-1"})
    check("idem: Idempotency-Key header accepted: 201", r1.status == 201, r1)
    r2 = c.post(cpath(a), hb, headers={"Idempotency-Key": "hdr-1"})
    check("idem: header replay: same body, Idempotent-Replayed: true",
          r2.status == 201 and r2.doc == r1.doc and r2.headers.get("idempotent-replayed") == "true", r2)
    r3 = c.post(cpath(a), dict(hb, idempotency_key="hdr-1"))
    check("idem: the same key in the body replays the header's request", r3.doc == r1.doc
          and r3.headers.get("idempotent-replayed") == "true", r3,
          bug="DESIGN.md 1 Idempotency: the key may come in the body or the header, and idempotency_key itself "
              "is left out of 'the same body'",
          req=f'POST {cpath(a)} {json.dumps(hb)} with header Idempotency-Key: hdr-1, then the same fields '
              'with "idempotency_key":"hdr-1" in the body and no header',
          expected="201, the first body, Idempotent-Replayed: true")
    r = c.post(cpath(a), dict(hb, idempotency_key="body-x"), headers={"Idempotency-Key": "hdr-x"})
    check("idem: header and body keys differ: 400", r.status == 400, r)
    r = c.post(cpath(a), dict(hb, idempotency_key="both-1"), headers={"Idempotency-Key": "both-1"})
    check("idem: header and body keys equal: 201", r.status == 201, r)
    r = c.post(cpath(a), hb)
    check("idem: no key at all: 400", r.status == 400, r)
    r = c.post(cpath(a), dict(hb, idempotency_key="k" * 129))
    check("idem: a 129-character key: 400", r.status == 400, r)
    eq("idem: used = 9.92 + 1.5 + 2 + 2", c.pool(a)["used"], D("15.42"))
    # what is stored, what is not
    r1 = c.charge(a, amount=5000, idem="k402")
    r2 = c.charge(a, amount=5000, idem="k402")
    check("idem: a 402 is stored and replayed", r1.status == 402 and r2.status == 402 and r2.doc == r1.doc
          and r2.headers.get("idempotent-replayed") == "true", (r1, r2))
    c.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": 5000, "reason": "top up",
                                             "idempotency_key": key()})
    r3 = c.charge(a, amount=5000, idem="k402")
    check("idem: the stored 402 replays even after credits arrive", r3.status == 402 and r3.doc == r1.doc, r3)
    r = c.post(cpath(a), {"idempotency_key": "k400", "kind": "backend_function", "user_id": "u", "amount": 1.0001})
    check("idem: a 400 first", r.status == 400, r)
    r = c.charge(a, amount=3, idem="k400")
    check("idem: a 400 is not stored: the key is free for another body (201)",
          r.status == 201 and r.headers.get("idempotent-replayed") in (None, "false"), r)
    r = c.charge("idem-other", amount=3, idem="k404")
    check("idem: 404 on an unknown account", is_error(r, 404, "account_not_found"), r)
    b = c.create_account("idem-b", "starter")
    r1 = c.charge(b, amount=1, idem="same-1")
    check("idem: keys are scoped per account (same key elsewhere is a new 201)",
          r1.status == 201 and r1.headers.get("idempotent-replayed") in (None, "false"), r1)


def holds():
    a = c.create_account("ho", "starter")
    hp = f"/v1/accounts/{a}/holds"

    def hold(amount=None, usage=None, ttl=None, idem=None, kind="agent_prompt"):
        b = {"idempotency_key": idem or key(), "kind": kind, "user_id": "u"}
        if amount is not None:
            b["amount"] = amount
        if usage is not None:
            b["usage"] = usage
        if ttl is not None:
            b["ttl_ms"] = ttl
        return c.post(hp, b)

    def act(hid, what, body=None):
        return c.post(f"{hp}/{hid}/{what}", dict(body or {}, idempotency_key=key()))

    r = hold(100)
    check("hold: 201", r.status == 201, r)
    h1 = r.get("hold_id")
    eq("hold: body", {k: v for k, v in (r.doc or {}).items() if k != "hold_id"},
       {"amount": 100, "expires_at": "2026-03-11T00:05:00Z", "available_after": 1900,
        "drawn_from": [{"source": "allowance", "credits": 100}]})
    p = c.pool(a)
    check("hold: held 100, available 1900", p["held"] == 100 and p["available"] == 1900 and p["used"] == 0, p)
    r = c.get(f"{hp}?status=open")
    eq("hold: listed as open", r.get("holds"), [{"hold_id": h1, "kind": "agent_prompt", "user_id": "u",
                                                "amount": 100, "state": "open",
                                                "expires_at": "2026-03-11T00:05:00Z"}])
    r = act(h1, "capture", {"amount": 60})
    check("capture amount 60: 201 charge with cost 60", r.status == 201 and r.get("cost") == 60
          and r.get("charge_id"), r)
    p = c.pool(a)
    eq("capture: used 60, held 0, available 1940", (p["used"], p["held"], p["available"]), (60, 0, 1940))
    r = act(h1, "capture", {"amount": 1})
    check("capture twice: 409 hold_not_open state captured",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "captured", r)
    r = act(h1, "void")
    check("void a captured hold: 409 hold_not_open state captured",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "captured", r)
    eq("capture: open list is empty", c.get(f"{hp}?status=open").get("holds"), [])

    h2 = hold(50).get("hold_id")
    r = act(h2, "capture")
    check("capture with nothing: the whole hold (50)", r.status == 201 and r.get("cost") == 50, r)
    h3 = hold(usage=AP).get("hold_id")
    eq("hold by usage: held 9.92", c.pool(a)["held"], D("9.92"))
    r = act(h3, "capture", {"usage": SCOPED})
    check("capture by usage: priced 1.74", r.status == 201 and r.get("cost") == D("1.74"), r)
    eq("capture by usage: the rest is released", c.pool(a)["held"], 0)
    h0 = hold(5).get("hold_id")
    r = act(h0, "capture", {"amount": 0})
    check("capture amount 0: 201 cost 0", r.status == 201 and r.get("cost") == 0, r)
    used = c.pool(a)["used"]
    eq("holds: used = 60 + 50 + 1.74", used, D("111.74"))

    h4 = hold(10).get("hold_id")
    r = act(h4, "capture", {"amount": 15})
    check("capture above the hold: 400 capture_exceeds_hold", is_error(r, 400, "capture_exceeds_hold"), r)
    eq("capture above: hold_amount and required", (r.err.get("hold_amount"), r.err.get("required")), (10, 15))
    r = c.get(f"{hp}?status=open")
    check("capture above: the hold stays open", [x["hold_id"] for x in r.get("holds", [])] == [h4], r)
    eq("capture above: balances unchanged", (c.pool(a)["used"], c.pool(a)["held"]), (used, 10))
    r = act(h4, "capture", {"usage": AP})
    check("capture above by usage (9.92 <= 10) is fine", r.status == 201 and r.get("cost") == D("9.92"), r)
    h4b = hold(10).get("hold_id")
    r = act(h4b, "capture", {"amount": 15, "overage": "charge"})
    check("capture with overage charge: 201 cost 15", r.status == 201 and r.get("cost") == 15, r)
    p = c.pool(a)
    eq("overage: used +24.92, held 0", (p["used"], p["held"]), (used + D("24.92"), 0))
    h4c = hold(10).get("hold_id")
    r = act(h4c, "capture", {"amount": 100000, "overage": "charge"})
    check("overage that does not fit: 402", is_error(r, 402, "insufficient_credits"), r)
    r = act(h4c, "capture", {"amount": 1, "overage": "sometimes"})
    check("overage with a bad value: 400", r.status == 400, r)
    act(h4c, "void")

    h5 = hold(10).get("hold_id")
    r = act(h5, "void")
    eq("void: 200 {hold_id, released}", (r.status, r.doc), (200, {"hold_id": h5, "released": 10}))
    r = act(h5, "void")
    check("void twice: 409 hold_not_open state voided",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "voided", r)
    r = act(h5, "capture")
    check("capture a voided hold: 409 state voided",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "voided", r)
    for what in ("capture", "void"):
        r = act("h_nope", what)
        check(f"{what} of an unknown hold: 404 hold_not_found", is_error(r, 404, "hold_not_found"), r)
    r = hold(1e6)
    check("hold larger than available: 402", is_error(r, 402, "insufficient_credits"), r)
    for ttl in (0, 3600001, -5):
        r = hold(1, ttl=ttl)
        check(f"hold ttl_ms {ttl}: 400", r.status == 400, r)
    r = hold(1, ttl=3600000)
    check("hold ttl_ms 3600000 is allowed", r.status == 201 and r.get("expires_at") == "2026-03-11T01:00:00Z", r)
    act(r.get("hold_id"), "void")
    r = hold(1, ttl=60000.0)
    check("hold ttl_ms 60000.0 (a whole number written with a point) is allowed",
          r.status == 201 and r.get("expires_at") == "2026-03-11T00:01:00Z", r)
    act(r.get("hold_id"), "void")
    r = hold(1, ttl=60000.5)
    check("hold ttl_ms 60000.5: 400", is_error(r, 400, "invalid_request") and r.err.get("param") == "ttl_ms", r)

    # expiry through the manual clock
    r = hold(10, ttl=60000)
    h6 = r.get("hold_id")
    eq("expiry: expires_at = now + 60 s", r.get("expires_at"), "2026-03-11T00:01:00Z")
    before = c.pool(a)
    c.set_clock("2026-03-11T00:00:59.999Z")
    r = c.get(f"{hp}?status=open")
    check("expiry: still open 1 ms before", [x["hold_id"] for x in r.get("holds", [])] == [h6], r)
    c.set_clock("2026-03-11T00:01:00Z")
    p = c.pool(a)
    check("expiry: at expires_at the held credits are free again",
          p["held"] == 0 and p["available"] == before["available"] + 10, p)
    eq("expiry: no open holds", c.get(f"{hp}?status=open").get("holds"), [])
    r = act(h6, "capture")
    check("expiry: capture after expiry: 409 hold_not_open state expired",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "expired", r)
    r = act(h6, "void")
    check("expiry: void after expiry: 409 state expired",
          is_error(r, 409, "hold_not_open") and r.err.get("state") == "expired", r)
    invariant(a, "holds")


def refunds():
    a = c.create_account("rf", "starter")
    svc = c.with_key(c.create_service_key())
    meter = c.with_key(c.create_key(a, "meter"))
    rp = lambda cid: f"/v1/accounts/{a}/charges/{cid}/refunds"
    c1 = c.charge(a, amount=30)["charge_id"]
    r = svc.post(rp(c1), {"idempotency_key": key(), "reason": "bad output"})
    check("refund full (service key): 201", r.status == 201, r)
    eq("refund full: credits 30, restored to the allowance, nothing forfeited",
       {k: r.get(k) for k in ("credits", "restored_to", "forfeited")},
       {"credits": 30, "restored_to": [{"source": "allowance", "credits": 30}], "forfeited": 0})
    check("refund: a refund_id", isinstance(r.get("refund_id"), str), r)
    eq("refund full: used back to 0", c.pool(a)["used"], 0)
    r = svc.post(rp(c1), {"idempotency_key": key(), "reason": "again", "credits": 1})
    check("refund more than unrefunded (nothing left): 409 charge_not_refundable",
          is_error(r, 409, "charge_not_refundable"), r)
    c2 = c.charge(a, amount=40)["charge_id"]
    r = c.post(rp(c2), {"idempotency_key": key(), "reason": "partial", "credits": 15})
    check("refund partial 15 (admin): 201 credits 15", r.status == 201 and r.get("credits") == 15, r)
    r = c.post(rp(c2), {"idempotency_key": key(), "reason": "too much", "credits": 30})
    check("refund 30 of 25 unrefunded: 409 charge_not_refundable with unrefunded 25",
          is_error(r, 409, "charge_not_refundable") and r.err.get("unrefunded") == 25, r)
    eq("refund: nothing changed by the refusal", c.pool(a)["used"], 25)
    ev = c.get(f"/v1/accounts/{a}/events?type=rejected").get("events", [])
    eq("refund 30 of 25: its rejected event keeps the 30 asked, with no available_after",
       [(x.get("refused_by"), x.get("charge_id"), x.get("credits"), x.get("available_after")) for x in ev][-1:],
       [("charge_not_refundable", c2, 30, None)])
    r = c.post(rp(c2), {"idempotency_key": key(), "reason": "rest", "credits": 25})
    check("refund the remaining 25: 201", r.status == 201 and r.get("credits") == 25, r)
    r = c.post(rp(c2), {"idempotency_key": key(), "reason": "rest", "credits": 1.0001})
    check("refund 1.0001: 400 invalid_amount", is_error(r, 400, "invalid_amount"), r)
    r = c.get(f"/v1/accounts/{a}/charges/{c2}")
    refs = r.get("refunds") or []
    check("GET charge shows its two refunds", r.status == 200 and [x.get("credits") for x in refs] == [15, 25], r)
    eq("refunds: used 0 again, available 2000", (c.pool(a)["used"], c.pool(a)["available"]), (0, 2000))
    r = c.post(rp("c_999999"), {"idempotency_key": key(), "reason": "x"})
    check("refund an unknown charge: 404 charge_not_found", is_error(r, 404, "charge_not_found"), r)
    r = meter.post(rp(c2), {"idempotency_key": key(), "reason": "x", "credits": 1})
    check("refund with a meter key: 403 forbidden", is_error(r, 403, "forbidden"), r)
    b = c.create_account("rf-b", "starter")
    cb = c.charge(b, amount=5)["charge_id"]
    r = c.post(rp(cb), {"idempotency_key": key(), "reason": "x"})
    check("refund another account's charge under this account: 404 charge_not_found",
          is_error(r, 404, "charge_not_found"), r)
    # a refund restores into the buckets it was drawn from, in reverse order
    g = c.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": 10, "reason": "p",
                                                 "expires_at": "2026-03-20T00:00:00Z", "idempotency_key": key()})
    gid = g.get("grant_id")
    r = c.charge(a, amount=15)
    check("refund setup: drawn from the grant then the allowance",
          r.get("drawn_from") == [{"source": f"grant:{gid}", "credits": 10}, {"source": "allowance", "credits": 5}], r)
    r = c.post(rp(r.get("charge_id")), {"idempotency_key": key(), "reason": "x", "credits": 8})
    eq("refund 8: restored in reverse order (allowance 5, then the grant 3)", r.get("restored_to"),
       [{"source": "allowance", "credits": 5}, {"source": f"grant:{gid}", "credits": 3}])
    invariant(a, "refunds")


def rate_limits():
    a = c.create_account("rl", "starter")
    r = c.put(f"/v1/accounts/{a}/rate-limits", {"per_user": {"per_minute": 1, "burst": 2}})
    check("rate limits: PUT is 200 with per_user in force", r.status == 200
          and r.get("per_user") == {"per_minute": 1, "burst": 2}, r)
    meter = c.with_key(c.create_key(a, "meter"))
    r = meter.put(f"/v1/accounts/{a}/rate-limits", {"per_user": {"per_minute": 100, "burst": 100}})
    check("rate limits: a meter key cannot PUT them (403)", is_error(r, 403, "forbidden"), r)
    body = lambda k, user="u1": {"idempotency_key": k, "kind": "agent_prompt", "user_id": user, "usage": AP}
    r1 = c.post(cpath(a), body(key()))
    r2 = c.post(cpath(a), body(key()))
    check("rate limits: the first two (burst 2) are 201", r1.status == 201 and r2.status == 201, (r1, r2))
    r3 = c.post(cpath(a), body("rl-3"))
    check("rate limits: the third is 429 rate_limited", is_error(r3, 429, "rate_limited"), r3)
    ra = r3.headers.get("retry-after", "")
    ms = r3.err.get("retry_after_ms")
    check("rate limits: retry_after_ms in (0, 60000]", isinstance(ms, int) and 0 < ms <= 60000, r3)
    check("rate limits: Retry-After whole seconds >= 1 matching retry_after_ms",
          ra.isdigit() and int(ra) >= 1 and isinstance(ms, int) and int(ra) == max(1, -(-ms // 1000)), (ra, ms))
    eq("rate limits: the 429 charged nothing", c.pool(a)["used"], D("19.84"))
    r = c.post(f"/v1/accounts/{a}/holds", body(key()))
    check("rate limits: holds are limited too (429)", is_error(r, 429, "rate_limited"), r)
    r = c.post(cpath(a), body(key(), user="u2"))
    check("rate limits: another user is not limited (per_user)", r.status == 201, r)
    r = c.post(cpath(a), {"idempotency_key": key(), "kind": "backend_function", "user_id": "u1", "amount": 1})
    check("rate limits: backend_function is not a limited kind", r.status == 201, r)
    r = c.post(cpath(a), body("rl-3"))
    check("rate limits: the key of a 429 is not stored (still 429, not a replay)",
          r.status == 429 and r.headers.get("idempotent-replayed") in (None, "false"), r)
    c.set_clock("2026-03-11T00:03:00Z")
    r = c.post(cpath(a), body("rl-3"))
    check("rate limits: the same key after the clock moved: 201, not replayed",
          r.status == 201 and r.headers.get("idempotent-replayed") in (None, "false")
          and r.get("cost") == D("9.92"), r)
    r = c.put(f"/v1/accounts/{a}/rate-limits", {"per_user": {"per_minute": 0, "burst": 2}})
    check("rate limits: per_minute 0 is 400", r.status == 400, r)


def cache():
    a = c.create_account("ca", "starter")
    svc = c.with_key(c.create_service_key())
    meter = c.with_key(c.create_key(a, "meter"))
    resp = {"text": "hello", "tokens": [1, 2, 3], "nested": {"ok": True}}
    r = meter.put(f"/v1/accounts/{a}/cache/ck1", {"kind": "integration.invoke_llm", "response": resp})
    check("cache: PUT is 204", r.status == 204 and r.text == "", r)
    body = {"kind": "integration.invoke_llm", "user_id": "u", "usage": LLM, "cache_key": "ck1",
            "metadata": {"call_site": "page/home"}}
    r = c.post(cpath(a), dict(body, idempotency_key="ch-hit"))
    check("cache hit: 201", r.status == 201, r)
    d = dict(r.doc or {})
    d.pop("charge_id", None)
    eq("cache hit: cost 0, cached, saved 1.29, the response, drawn_from []", d,
       {"cost": 0, "pool": "credits", "available_after": 2000, "drawn_from": [], "cached": True,
        "saved": D("1.29"), "response": resp})
    eq("cache hit: no credits spent", c.pool(a)["used"], 0)
    r2 = c.post(cpath(a), dict(body, idempotency_key="ch-hit"))
    check("cache hit: replay gives the same answer", r2.doc == r.doc and r2.headers.get("idempotent-replayed") == "true",
          r2, bug="DESIGN.md 1 Integration cache: 'the hit decision is logged with the command, so a replay gives "
                  "the same answer' (response null only after eviction, then with response_evicted: true)",
          req=f"PUT /v1/accounts/{a}/cache/ck1 then POST {cpath(a)} with cache_key ck1 twice (same key)",
          expected=f"replay: 201 {r.text}")
    r = c.post(cpath(a), dict(body, idempotency_key=key(), amount=4))
    check("cache hit with an amount: saved is the amount", r.status == 201 and r.get("cached") is True
          and r.get("saved") == 4, r)
    r = c.post(cpath(a), dict(body, idempotency_key=key(), cache_key="ck-miss"))
    check("cache miss: charged 1.29, cached false", r.status == 201 and r.get("cost") == D("1.29")
          and r.get("cached") is False and r.get("response") is None, r)
    r = c.post(cpath(a), dict(body, idempotency_key=key(), kind="integration.generate_image", usage={"count": 1}))
    check("cache: entries are per kind (ck1 under generate_image misses: cost 8)",
          r.status == 201 and r.get("cached") is False and r.get("cost") == 8, r)
    r = c.post(f"/v1/accounts/{a}/holds", dict(body, idempotency_key=key()))
    eq("cache hit on a hold: 200 {cached, saved, response}", (r.status, r.doc),
       (200, {"cached": True, "saved": D("1.29"), "response": resp}))
    eq("cache hit on a hold: no hold", c.get(f"/v1/accounts/{a}/holds?status=open").get("holds"), [])
    r = svc.get(f"/v1/accounts/{a}/cache/ck1?kind=integration.invoke_llm")
    eq("cache GET (service): 200 {response}", (r.status, r.doc), (200, {"response": resp}))
    r = svc.get(f"/v1/accounts/{a}/cache/ck1?kind=integration.generate_image")
    check("cache GET another kind: 404", r.status == 404, r)
    r = svc.get(f"/v1/accounts/{a}/cache/nope?kind=integration.invoke_llm")
    check("cache GET unknown key: 404", r.status == 404, r)
    r = meter.get(f"/v1/accounts/{a}/cache/ck1?kind=integration.invoke_llm")
    check("cache GET with a meter key: 403", is_error(r, 403, "forbidden"), r)
    r = meter.put(f"/v1/accounts/{a}/cache/ck2", {"kind": "integration.invoke_llm"})
    check("cache PUT without response: 400", r.status == 400, r)
    r = meter.put(f"/v1/accounts/{a}/cache/bad%20key", {"kind": "integration.invoke_llm", "response": 1})
    check("cache PUT with an invalid cache key: 400", r.status == 400, r)
    eq("cache: used = 1.29 + 8", c.pool(a)["used"], D("9.29"))
    # a hit bypasses rate limits and the daily cap
    f = c.create_account("ca-free", "free")
    c.put(f"/v1/accounts/{f}/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    c.put(f"/v1/accounts/{f}/cache/ck1", {"kind": "integration.invoke_llm", "response": resp})
    c.charge(f, amount=25)  # the day's cap is used up
    for i in range(3):
        r = c.post(cpath(f), dict(body, idempotency_key=key()))
        check(f"cache hit #{i + 1} on a capped, rate-limited account: 201 cached",
              r.status == 201 and r.get("cached") is True and r.get("cost") == 0, r)
    r = c.post(cpath(f), dict(body, idempotency_key=key(), cache_key="ck-miss"))
    check("cache miss on that account: refused (429 or 402)", r.status in (402, 429), r)
    eq("cache: the capped account spent only the 25", c.pool(f)["used"], 25)


def batch():
    a = c.create_account("ba", "starter")
    b = c.create_account("bb", "starter")
    hid = c.post(f"/v1/accounts/{a}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                             "amount": 20}).get("hold_id")
    hid2 = c.post(f"/v1/accounts/{a}/holds", {"idempotency_key": key(), "kind": "agent_prompt", "user_id": "u",
                                              "amount": 5}).get("hold_id")
    ops = [
        {"op": "charge", "account_id": a, "idempotency_key": "b1", "kind": "agent_prompt", "user_id": "u", "usage": AP},
        {"op": "charge", "account_id": b, "idempotency_key": "b2", "kind": "backend_function", "user_id": "u",
         "amount": 3},
        {"op": "charge", "account_id": a, "idempotency_key": "b3", "kind": "backend_function", "user_id": "u",
         "amount": 99999},
        {"op": "charge", "account_id": a, "idempotency_key": "b4", "kind": "backend_function", "user_id": "u",
         "amount": 1.0001},
        {"op": "hold", "account_id": b, "idempotency_key": "b5", "kind": "agent_prompt", "user_id": "u", "amount": 7},
        {"op": "capture", "account_id": a, "hold_id": hid, "idempotency_key": "b6", "amount": 12},
        {"op": "void", "account_id": a, "hold_id": hid2, "idempotency_key": "b7"},
        {"op": "charge", "account_id": "ghost", "idempotency_key": "b8", "kind": "backend_function", "user_id": "u",
         "amount": 1},
    ]
    r = c.post("/v1/batch", {"ops": ops})
    check("batch: 200", r.status == 200, r)
    res = r.get("results") or []
    eq("batch: one result per op, in order (statuses)", [x.get("status") for x in res],
       [201, 201, 402, 400, 201, 201, 200, 404])
    check("batch: results carry status, body, replayed", all(set(x) >= {"status", "body", "replayed"} for x in res), res)
    if len(res) == 8:
        check("batch: op 1 priced 9.92", res[0]["body"].get("cost") == D("9.92"), res[0])
        check("batch: op 3 is insufficient_credits", res[2]["body"]["error"]["code"] == "insufficient_credits", res[2])
        check("batch: op 4 is invalid_amount", res[3]["body"]["error"]["code"] == "invalid_amount", res[3])
        check("batch: op 6 captured 12", res[5]["body"].get("cost") == 12, res[5])
        eq("batch: op 7 released 5", res[6]["body"], {"hold_id": hid2, "released": 5})
        check("batch: op 8 account_not_found", res[7]["body"]["error"]["code"] == "account_not_found", res[7])
        check("batch: none replayed the first time", all(x["replayed"] is False for x in res), res)
    pa, pb = c.pool(a), c.pool(b)
    eq("batch: a used 9.92 + 12, held 0", (pa["used"], pa["held"]), (D("21.92"), 0))
    eq("batch: b used 3, held 7", (pb["used"], pb["held"]), (3, 7))
    r2 = c.post("/v1/batch", {"ops": ops})
    res2 = r2.get("results") or []
    eq("batch: replay: stored answers replayed, the 400 and 404 not",
       [(x.get("status"), x.get("replayed")) for x in res2],
       [(201, True), (201, True), (402, True), (400, False), (201, True), (201, True), (200, True), (404, False)])
    check("batch: replay bodies equal", [x.get("body") for x in res2] == [x.get("body") for x in res], res2)
    r = c.post(cpath(a), {k: v for k, v in ops[0].items() if k not in ("op", "account_id")})
    check("batch: a single request with a batch op's key replays it",
          r.status == 201 and r.doc == res[0]["body"] and r.headers.get("idempotent-replayed") == "true", r,
          bug="API.md /v1/batch: 'each op is authorised, keyed and applied alone, exactly as its single request "
              "would be' (DESIGN.md: batch ops are treated exactly like single requests); the op/account_id "
              "fields of the op enter the request hash",
          req=f"batch op charge b1 on {a}, then POST {cpath(a)} with the same fields and key b1",
          expected="201, the batch op's body, Idempotent-Replayed: true")
    eq("batch: the replays charged nothing more", (c.pool(a)["used"], c.pool(b)["used"]), (D("21.92"), 3))
    r = c.post("/v1/batch", {"ops": []})
    check("batch: empty ops: 200 with no results (or 400)",
          (r.status == 200 and r.get("results") == []) or r.status == 400, r)
    r = c.post("/v1/batch", {"ops": [{"op": "refund", "account_id": a}]})
    check("batch: an unknown op answers 400 (whole batch or inside the results)",
          r.status == 400 or (r.status == 200 and r["results"][0]["status"] == 400), r)
    big = [{"op": "charge", "account_id": a, "idempotency_key": f"big-{i}", "kind": "backend_function",
            "user_id": "u", "amount": 0.001} for i in range(8193)]
    r = c.post("/v1/batch", {"ops": big})
    check("batch: 8193 ops: 400 too_many_ops", is_error(r, 400, "too_many_ops"), r)
    eq("batch: too_many_ops charged nothing", c.pool(a)["used"], D("21.92"))
    r = c.post("/v1/batch", {"ops": big[:8192]})
    check("batch: 8192 ops: 200 and all 201", r.status == 200 and len(r.get("results") or []) == 8192
          and all(x["status"] == 201 for x in r["results"]), str(r)[:300])
    eq("batch: 8192 x 0.001 charged", c.pool(a)["used"], D("21.92") + D("8.192"))


def late_refund():
    """Last: moves the clock past a cycle end."""
    a = c.create_account("rf-late", "starter")
    cyc = c.account(a)["cycle"]
    cid = c.charge(a, amount=10)["charge_id"]
    c.set_clock(cyc["end"])
    r = c.post(f"/v1/accounts/{a}/charges/{cid}/refunds", {"idempotency_key": key(), "reason": "late"})
    check("refund after the charge's cycle ended: 409 charge_not_refundable",
          is_error(r, 409, "charge_not_refundable"), r)
    p = c.pool(a)
    eq("new cycle: used 0, available 2000", (p["used"], p["available"]), (0, 2000))


for section in (charges, daily_cap, idempotency, holds, refunds, rate_limits, cache, batch, late_refund):
    h.run_section(section)
h.finish()
