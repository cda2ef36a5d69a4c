#!/usr/bin/env python3
"""Contract rules an audit found broken (API.md, DESIGN.md), one section each:
idempotent key creation (across restarts, never storing a key), an absent field is not
its default, 429 before 409 and without an event, refunds of forgotten charges, usage
shares within [0, 1], only API.md's event types listed, and RFC 3339 fractions finer
than a millisecond.

Runs creditd with --clock manual on fresh data dirs.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

API_TYPES = {"charge", "hold", "capture", "void", "expire", "grant", "reset", "plan_change",
             "refund", "cache_hit", "rejected"}
AP = h.AGENT_PROMPT_USAGE


def replayed(r):
    return r.headers.get("idempotent-replayed") == "true"


def fresh(r):
    return r.headers.get("idempotent-replayed") in (None, "false")


def data_files(data_dir):
    for root, _, files in os.walk(data_dir):
        for f in files:
            if f != "admin.key":
                yield os.path.join(root, f)


def keys_idempotent():
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-01-31T10:00:00Z")
    c.create_account("acme", "pro")
    path = "/v1/accounts/acme/keys"
    r1 = c.post(path, {"idempotency_key": "key-1", "role": "meter", "label": "ci"})
    check("keys: the first create is 201 and not replayed", r1.status == 201 and fresh(r1), r1)
    check("keys: the answer is {key, key_id, role}", set(r1.doc or {}) == {"key", "key_id", "role"}, r1)
    r2 = c.post(path, {"role": "meter", "label": "ci", "idempotency_key": "key-1"})
    check("keys: the same key and body replays the first answer exactly (201, Idempotent-Replayed)",
          r2.status == 201 and replayed(r2) and r2.text == r1.text, (r1, r2),
          bug="DESIGN.md section 1: keys take an idempotency key")
    r = c.post(path, {"idempotency_key": "key-1", "role": "read", "label": "ci"})
    check("keys: the same key with another body is 422", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(path, {"idempotency_key": "key-1", "role": "meter"})
    check("keys: a label left out is another body (422)", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(path, {"idempotency_key": "key-1", "role": "admin", "label": "ci"})
    check("keys: a used key with an invalid body is 422, before validation",
          is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(path, {"idempotency_key": "key-2"})
    r_again = c.post(path, {"idempotency_key": "key-2", "role": "read"})
    check("keys: role left out is not the same body as its default (422)",
          r.status == 201 and is_error(r_again, 422, "idempotency_key_reused"), (r, r_again))
    r = c.post(path, {"idempotency_key": "key-3", "role": "admin"})
    check("keys: a bad role is still 400 for a new key", is_error(r, 400, "invalid_request"), r)
    r = c.post(path, {"idempotency_key": "key-3", "role": "read"})
    check("keys: ... and leaves the key free", r.status == 201 and fresh(r), r)
    # One key across routes, both ways.
    r = c.charge("acme", amount=1, idem="key-1")
    check("keys: a key creation's key on a charge is 422", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.charge("acme", amount=1, idem="charge-1")
    check("keys: a fresh charge", r.status == 201, r)
    r = c.post(path, {"idempotency_key": "charge-1", "role": "read"})
    check("keys: a charge's key on a key creation is 422", is_error(r, 422, "idempotency_key_reused"), r)
    # Service keys: scope admin, shared with POST /v1/accounts.
    s1 = c.post("/v1/keys", {"idempotency_key": "svc-1", "role": "service"})
    s2 = c.post("/v1/keys", {"idempotency_key": "svc-1", "role": "service"})
    check("service keys: the same key replays the first answer",
          s1.status == 201 and s2.status == 201 and replayed(s2) and s2.text == s1.text, (s1, s2))
    r = c.post("/v1/keys", {"idempotency_key": "svc-1"})
    check("service keys: role left out is another body (422)", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post("/v1/accounts", {"account_id": "other", "plan": "pro", "idempotency_key": "svc-1"})
    check("service keys: the key on POST /v1/accounts is 422", is_error(r, 422, "idempotency_key_reused"), r)
    ids = [k["key_id"] for k in c.get(path).get("keys", [])]
    eq("keys: one key per idempotency key (key-1, key-2, key-3)", sorted(ids),
       sorted([r1["key_id"], c.post(path, {"idempotency_key": "key-2"})["key_id"],
               c.post(path, {"idempotency_key": "key-3", "role": "read"})["key_id"]]))
    meter = c.with_key(r1["key"])
    check("keys: the replayed key is the live key (it meters acme)",
          meter.charge("acme", amount=1).status == 201)
    # Revoked: the creation still replays its answer; the key stays revoked.
    k4 = c.post(path, {"idempotency_key": "key-4", "role": "read"})
    check("keys: DELETE is 204", c.delete(f"{path}/{k4['key_id']}").status == 204)
    r = c.post(path, {"idempotency_key": "key-4", "role": "read"})
    check("keys: a revoked key's creation replays its first answer",
          r.status == 201 and replayed(r) and r.text == k4.text, r)
    check("keys: ... and the key stays revoked (401)",
          is_error(c.with_key(k4["key"]).get("/v1/accounts/acme"), 401, "unauthorized"))
    check("keys: ... and is not listed again",
          k4["key_id"] not in [k["key_id"] for k in c.get(path).get("keys", [])])

    # Across a clean restart (snapshot) and a kill (log replay).
    data = srv.data_dir
    eq("restart: SIGTERM exits 0", srv.stop(), 0)
    secret = os.path.join(data, "key.secret")
    check("the key secret file is mode 0600", os.path.exists(secret) and
          (os.stat(secret).st_mode & 0o777) == 0o600, secret)
    plain = [r1["key"], s1["key"], k4["key"]]
    leaked = [f for f in data_files(data) for p in plain if p.encode() in open(f, "rb").read()]
    eq("no created key is written to any file (WAL, snapshots, events)", leaked, [])
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    r = c.post(path, {"idempotency_key": "key-1", "role": "meter", "label": "ci"})
    check("restart: the replay is the same answer", r.status == 201 and replayed(r) and r.text == r1.text, r)
    r = c.post(path, {"idempotency_key": "key-1", "role": "read", "label": "ci"})
    check("restart: another body is still 422", is_error(r, 422, "idempotency_key_reused"), r)
    k5 = c.post(path, {"idempotency_key": "key-5", "role": "meter"})
    eq("kill: SIGKILL", srv.kill() is not None, True)
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    r = c.post(path, {"idempotency_key": "key-5", "role": "meter"})
    check("kill: a key created after the last snapshot replays from the log",
          r.status == 201 and replayed(r) and r.text == k5.text, (k5, r))
    r = c.post("/v1/keys", {"idempotency_key": "svc-1", "role": "service"})
    check("kill: the service key replays too", r.status == 201 and replayed(r) and r.text == s1.text, r)
    # 24 hours by the ledger's clock: then the key is a new request.
    c.set_clock("2026-02-01T09:59:59Z")
    r = c.post(path, {"idempotency_key": "key-1", "role": "meter", "label": "ci"})
    check("24 h: just before, still a replay", r.status == 201 and replayed(r), r)
    c.set_clock("2026-02-01T10:00:00Z")
    r = c.post(path, {"idempotency_key": "key-1", "role": "read"})
    check("24 h: at 24 hours the key is free: a new key", r.status == 201 and fresh(r)
          and r.get("key_id") != r1["key_id"] and r.get("role") == "read", r)
    srv.stop()


def absent_is_not_default():
    c = C
    c.create_account("abs", "pro")
    hp = "/v1/accounts/abs/holds"
    body = {"idempotency_key": "h-1", "kind": "integration.send_email", "user_id": "u", "amount": 5}
    r = c.post(hp, body)
    check("holds: 201", r.status == 201, r)
    r = c.post(hp, dict(body, ttl_ms=300000))
    check("holds: ttl_ms given (its default) after it was left out is 422",
          is_error(r, 422, "idempotency_key_reused"), r, bug="DESIGN.md: an absent field is not its default")
    r = c.post(hp, body)
    check("holds: the same body still replays", r.status == 201 and replayed(r), r)
    r = c.post(hp, dict(body, idempotency_key="h-2", ttl_ms=300000))
    r2 = c.post(hp, dict(body, idempotency_key="h-2"))
    check("holds: and the other way round (given, then left out): 422",
          r.status == 201 and is_error(r2, 422, "idempotency_key_reused"), (r, r2))
    hold = c.post(hp, dict(body, idempotency_key="h-3"))["hold_id"]
    cp = f"/v1/accounts/abs/holds/{hold}/capture"
    r = c.post(cp, {"idempotency_key": "cap-1", "amount": 1})
    check("capture: 201", r.status == 201, r)
    r = c.post(cp, {"idempotency_key": "cap-1", "amount": 1, "overage": "refuse"})
    check("capture: overage given (its default) after it was left out is 422",
          is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(cp, {"idempotency_key": "cap-1", "amount": 1})
    check("capture: the same body still replays", r.status == 201 and replayed(r), r)
    # metadata {} given (what an absent one reads as) is not the same body either; null is
    # absent (API.md: optional values are null).
    chp = "/v1/accounts/abs/charges"
    ch = {"idempotency_key": "ch-1", "kind": "integration.send_email", "user_id": "u", "amount": 1}
    r = c.post(chp, ch)
    check("charge: 201", r.status == 201, r)
    r = c.post(chp, dict(ch, metadata={}))
    check("charge: metadata {} after it was left out is 422", is_error(r, 422, "idempotency_key_reused"), r)
    r = c.post(chp, dict(ch, metadata=None))
    check("charge: metadata null reads as left out: a replay", r.status == 201 and replayed(r), r)
    r = c.post(hp, dict(body, idempotency_key="h-4", metadata={}, ttl_ms=300000))
    r2 = c.post(hp, dict(body, idempotency_key="h-4", ttl_ms=300000))
    r3 = c.post(hp, dict(body, idempotency_key="h-4", metadata={}))
    check("hold: metadata {} and ttl_ms given, then either left out: 422 each",
          r.status == 201 and is_error(r2, 422, "idempotency_key_reused")
          and is_error(r3, 422, "idempotency_key_reused"), (r, r2, r3))
    hold = c.post(hp, dict(body, idempotency_key="h-5"))["hold_id"]
    cp = f"/v1/accounts/abs/holds/{hold}/capture"
    r = c.post(cp, {"idempotency_key": "cap-2", "amount": 1, "metadata": {}})
    r2 = c.post(cp, {"idempotency_key": "cap-2", "amount": 1})
    check("capture: metadata {} then left out: 422", r.status == 201 and is_error(r2, 422, "idempotency_key_reused"),
          (r, r2))
    r = c.post("/v1/batch", {"ops": [dict(ch, op="charge", account_id="abs", metadata={})]})
    res = (r.get("results") or [{}])[0]
    eq("batch: the op's metadata {} after the single request without it is 422, as alone",
       (res.get("status"), (res.get("body") or {}).get("error", {}).get("code")), (422, "idempotency_key_reused"))


def retry_after_expires_at_passed():
    # A retry whose adjustment's expires_at has passed since is the same request: a replay
    # (the past instant is refused only for a new request).
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-01T00:00:00Z")
    c.create_account("adj", "starter")
    adj = {"pool": "credits", "credits": 5, "reason": "adj", "expires_at": "2026-03-01T01:00:00Z",
           "idempotency_key": "adj-1"}
    r = c.post("/v1/accounts/adj/adjustments", adj)
    check("adjustment: 201", r.status == 201, r)
    c.set_clock("2026-03-01T01:00:00Z")
    r2 = c.post("/v1/accounts/adj/adjustments", adj)
    check("adjustment: retried once its expires_at has passed: a replay, not a 422",
          r2.status == 201 and replayed(r2) and r2.text == r.text, r2)
    r3 = c.post("/v1/accounts/adj/adjustments", dict(adj, idempotency_key="adj-2"))
    check("adjustment: a new request with that expires_at is 400", is_error(r3, 400, "invalid_request"), r3)
    srv.stop()


def rate_limits():
    c = C
    c.create_account("rl", "starter")
    c.put("/v1/accounts/rl/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}})
    body = lambda k: {"idempotency_key": k, "kind": "discuss_turn", "user_id": "u", "amount": 1}
    r = c.post("/v1/accounts/rl/charges", body("c-1"))
    check("rate limit: the first is 201", r.status == 201, r)
    before = c.get("/v1/accounts/rl/events?limit=1000").get("events", [])
    r = c.post("/v1/accounts/rl/charges", body("c-2"))
    check("rate limit: the second is 429", is_error(r, 429, "rate_limited"), r)
    after = c.get("/v1/accounts/rl/events?limit=1000").get("events", [])
    eq("rate limit: a 429 makes no event", [e.get("type") for e in after[len(before):]], [],
       bug="DESIGN.md: 429 is not stored, no event")
    eq("rate limit: no rejected event at all", c.get("/v1/accounts/rl/events?type=rejected").get("events"), [])
    r = c.post("/v1/accounts/rl/close", {"idempotency_key": "close-1"})
    check("close: 200", r.status == 200, r)
    r = c.post("/v1/accounts/rl/charges", body("c-3"))
    check("rate limit: on a closed account the limiter still answers first (429, not 409)",
          is_error(r, 429, "rate_limited") and r.headers.get("retry-after"), r,
          bug="API.md: checks in the order 429, then 409")
    r = c.post("/v1/accounts/rl/charges", body("c-2"))
    check("rate limit: the key of the 429 stayed free", r.status in (409, 429) and fresh(r), r)


def forgotten_charges():
    c = C
    c.set_clock("2026-01-31T10:00:00Z")
    c.create_account("old", "pro")
    ch = c.charge("old", amount=5, kind="integration.send_email", idem="ch-old")
    cid = ch["charge_id"]
    prev = c.charge("old", amount=1, kind="integration.send_email")
    c.set_clock("2026-03-01T00:00:00Z")  # one boundary (Feb 28 10:00) later
    c.charge("old", amount=1, kind="integration.send_email")
    r = c.post(f"/v1/accounts/old/charges/{prev['charge_id']}/refunds", {"idempotency_key": key(), "reason": "r"})
    check("refund: last cycle's charge is 409", is_error(r, 409, "charge_not_refundable"), r)
    c.set_clock("2026-04-01T00:00:00Z")  # two boundaries later (Mar 31 10:00)
    g1 = c.get(f"/v1/accounts/old/charges/{cid}")
    rp = f"/v1/accounts/old/charges/{cid}/refunds"
    r = c.post(rp, {"idempotency_key": "rf-old", "reason": "late"})
    check("refund: a charge two cycles old is 409 charge_not_refundable, not 404",
          is_error(r, 409, "charge_not_refundable"), r, bug="DESIGN.md: refunds later are 409")
    r2 = c.post(rp, {"idempotency_key": "rf-old", "reason": "late"})
    check("refund: the 409 is stored under its key", r2.status == 409 and replayed(r2) and r2.text == r.text, r2)
    g2 = c.get(f"/v1/accounts/old/charges/{cid}")
    check("GET: the forgotten charge is 404 before the write applied the resets ...",
          is_error(g1, 404, "charge_not_found"), g1)
    check("GET: ... and after it", is_error(g2, 404, "charge_not_found"), g2)
    r = c.post("/v1/accounts/old/charges/c_999999/refunds", {"idempotency_key": key(), "reason": "r"})
    check("refund: an id the account never had is still 404", is_error(r, 404, "charge_not_found"), r)


def shares():
    c = C
    c.set_clock("2026-04-01T00:00:00Z")
    c.create_account("sh", "pro")
    big = c.charge("sh", amount=10, kind="integration.send_email", idem="sh-1")
    c.set_clock("2026-04-02T00:00:00Z")
    c.charge("sh", amount=1, kind="integration.send_email", idem="sh-2")
    r = c.post(f"/v1/accounts/sh/charges/{big['charge_id']}/refunds", {"idempotency_key": "sh-r", "reason": "r"})
    check("shares: the refund is 201", r.status == 201, r)
    u = c.get("/v1/accounts/sh/usage?group_by=day")
    rows = {row["key"]: row for row in u.get("rows", [])}
    eq("shares: total is net (10 + 1 - 10)", u.get("total"), 1)
    eq("shares: rows keep their net credits", {k: v["credits"] for k, v in rows.items()},
       {"2026-04-01": 10, "2026-04-02": -9})
    check("shares: every share is within [0, 1]",
          all(0 <= row["share"] <= 1 for row in rows.values()), u, bug="API.md: ratios are 0 to 1")
    eq("shares: a net negative group has share 0, the positive ones share what is positive",
       {k: v["share"] for k, v in rows.items()}, {"2026-04-01": 1, "2026-04-02": 0})


def event_types():
    c = C
    c.create_account("ev", "pro")
    c.charge("ev", amount=1)
    c.post("/v1/accounts/ev/close", {"idempotency_key": key()})
    r = c.get("/v1/accounts/ev/events?limit=1000")
    types = [e.get("type") for e in r.get("events", [])]
    check("events: only API.md's types are listed (no account, no close)",
          types and set(types) <= API_TYPES, types, bug="API.md: the event types")
    r = c.get("/v1/accounts/ev/events?format=ndjson&limit=1000")
    types = [json.loads(l)["type"] for l in r.text.splitlines() if l]
    check("events: NDJSON export too", types and set(types) <= API_TYPES, types)
    r = c.get("/v1/accounts/ev/events?format=csv&limit=1000")
    lines = r.text.splitlines()
    col = lines[0].split(",").index("type") if lines else -1
    types = [l.split(",")[col] for l in lines[1:]]
    check("events: CSV export too", types and set(types) <= API_TYPES, types)
    for t in ("account", "close"):
        r = c.get(f"/v1/accounts/ev/events?type={t}")
        check(f"events: type={t} is not a type (400 param type)",
              r.status == 400 and r.err.get("param") == "type", r)


def fractions():
    c = C
    r = c.post("/v1/admin/clock", {"now": "2026-07-10T22:00:32.123456Z"})
    check("RFC 3339: microseconds are accepted, truncated to milliseconds",
          r.status == 200 and r.get("now") == "2026-07-10T22:00:32.123Z", r,
          bug="RFC 3339 allows any number of fractional digits")
    r = c.post("/v1/admin/clock", {"now": "2026-07-10T22:00:32.999999999+00:00"})
    check("RFC 3339: nanoseconds with an offset, never rounded up",
          r.status == 200 and r.get("now") == "2026-07-10T22:00:32.999Z", r)
    r = c.get("/v1/accounts/sh/events?from=2026-04-01T00:00:00.0000001Z&to=2026-04-02T00:00:00.5Z")
    check("RFC 3339: query ranges take them too", r.status == 200, r)


h.run_section(keys_idempotent)
SRV = h.start(manual_clock=True)
C = SRV.client()  # one server for the other sections, in time order
C.set_clock("2026-01-31T10:00:00Z")
for section in (absent_is_not_default, retry_after_expires_at_passed, rate_limits, forgotten_charges, shares,
                event_types, fractions):
    h.run_section(section)
h.finish()
