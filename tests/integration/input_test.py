#!/usr/bin/env python3
"""Bad input, authentication, the check order, and the clock without --clock manual.

Runs one creditd with the system clock on a fresh data dir (API.md "Errors", DESIGN.md 5).
After every refusal the balance must be unchanged.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, eq, is_error, key  # noqa: E402

srv = h.start(manual_clock=False)
c = srv.client()
A = c.create_account("inp", "starter")
B = c.create_account("inp-b", "starter")
c.charge(A, amount=10)
PATH = f"/v1/accounts/{A}/charges"
READ_B = c.create_key(B, "read")
METER_A = c.create_key(A, "meter")


def unchanged(label):
    p = c.pool(A)
    check(f"{label}: balance unchanged (used 10, available 1990)", p["used"] == 10 and p["available"] == 1990, p)


def ok_body(extra=""):
    return '{"idempotency_key": "%s", "kind": "backend_function", "user_id": "u", "amount": 1%s}' % (key(), extra)


def clock_disabled():
    r = c.post("/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"})
    check("clock: without --clock manual: 403 clock_disabled", is_error(r, 403, "clock_disabled"), r)
    r = c.post("/v1/admin/clock", {"now": "1970-01-01T00:00:00Z"})
    check("clock: backwards without --clock manual is still 403 clock_disabled", is_error(r, 403, "clock_disabled"), r)
    r = c.with_key(METER_A).post("/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"})
    check("clock: a meter key: 403", r.status == 403, r)
    r = c.post("/v1/admin/clock", {"now": "2030-01-01T00:00:00Z"}, key=None)
    check("clock: no key: 401", is_error(r, 401, "unauthorized"), r)
    unchanged("clock")


def bad_input():
    cases = [
        ("malformed JSON", b'{"idempotency_key": "x", "kind": ', 400, "invalid_json"),
        ("not JSON at all", b"hello", 400, "invalid_json"),
        ("empty body", b"", 400, None),  # invalid_json, or a missing-field 400: both are refusals
        ("trailing garbage", ok_body().encode() + b" }", 400, "invalid_json"),
        ("a JSON array", b"[1, 2]", 400, None),
        ("a JSON string", b'"charge"', 400, None),
        ("nesting depth 40", ok_body(', "metadata": {"x": ' + "[" * 38 + "]" * 38 + "}").encode(), 400, "invalid_json"),
        ("nesting depth 40, plain", b"[" * 40 + b"]" * 40, 400, "invalid_json"),
        ("invalid UTF-8 in a string", ok_body().replace('"u"', '"\xff\xfe"').encode("latin-1"), 400, None),
        ("invalid UTF-8 in a key", ('{"\xc3\x28": 1}').encode("latin-1"), 400, None),
        ("a lone surrogate escape", ok_body().replace('"u"', '"\\ud800"').encode(), 400, None),
        ("NaN", ok_body().replace('"amount": 1', '"amount": NaN').encode(), 400, None),
        ("Infinity", ok_body().replace('"amount": 1', '"amount": Infinity').encode(), 400, None),
        ("duplicate amount field", ok_body(', "amount": 2').encode(), 400, None),
    ]
    for name, raw, status, code in cases:
        r = c.post(PATH, raw=raw)
        ok = r.status == status and (code is None or r.code == code) and isinstance(r.err.get("message"), str)
        check(f"bad input: {name}: {status} {code or ''}".rstrip(), ok, r)
    unchanged("bad input")

    big = b'{"idempotency_key": "big", "kind": "backend_function", "user_id": "u", "amount": 1, "metadata": {"x": "' \
        + b"a" * (2 * 1024 * 1024) + b'"}}'
    r = c.post(PATH, raw=big)
    check("bad input: a 2 MiB body: 413 body_too_large", is_error(r, 413, "body_too_large"), r)
    r = c.post(PATH, raw=big, key=None)
    check("check order: 2 MiB without a key: 401 first", is_error(r, 401, "unauthorized"), r)
    unchanged("413")
    # just over 1 MiB on a single route
    over = b'{"pad": "' + b"a" * (1024 * 1024) + b'"}'
    r = c.post(PATH, raw=over)
    check("bad input: 1 MiB + a few bytes: 413", is_error(r, 413, "body_too_large"), r)
    # a raw socket announcing a huge Content-Length is refused without reading it
    data = h.raw_exchange(
        srv.port, (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.admin_key}\r\n"
                   "Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n").encode(),
        timeout_s=10, head_only=True)
    check("bad input: Content-Length 100 MiB is answered 413 before the body arrives",
          data.startswith(b"HTTP/1.1 413"), data[:200])
    r = c.get("/healthz")
    check("server still healthy after the big bodies", r.status == 200 and r.doc == {"status": "ok"}, r)
    unchanged("big bodies")

    # authentication and the order of checks
    r = c.post(PATH, raw=ok_body(), key=None)
    check("auth: no key: 401 unauthorized", is_error(r, 401, "unauthorized"), r)
    r = c.post(PATH, raw=b"{broken", key=None)
    check("check order: malformed JSON without a key: 401 first", is_error(r, 401, "unauthorized"), r)
    r = c.post(PATH, raw=ok_body(), key="nope")
    check("auth: unknown key: 401", is_error(r, 401, "unauthorized"), r)
    r = c.post(PATH, raw=ok_body(), headers={"Authorization": "Bearer"}, key=None)
    check("auth: empty Bearer: 401", is_error(r, 401, "unauthorized"), r)
    # API.md's order starts with 401: a bad escape in the path or the query is answered
    # only to a valid key (found by an audit: 400 to anyone).
    for target, param in ((f"/v1/accounts/{A}%zz", "path"), (f"/v1/accounts/{A}%2Fx", "path"),
                          (f"/v1/accounts/{A}/events?user_id=%zz", "query")):
        r = c.get(target, key=None)
        check(f"auth: {target[-12:]} without a key: 401 first", is_error(r, 401, "unauthorized"), r)
        r = c.get(target)
        eq(f"auth: {target[-12:]} with a key: 400 naming the {param}", (r.status, r.code, r.err.get("param")),
           (400, "invalid_request", param))
    r = c.with_key(READ_B).post(PATH, raw=b"{broken")
    check("check order: invalid_json before 403 (key of another account, bad JSON)", is_error(r, 400, "invalid_json"), r)
    r = c.with_key(READ_B).post(PATH, raw=ok_body().replace('"amount": 1', '"amount": 1.0001'))
    check("check order: 403 before field validation", is_error(r, 403, "forbidden"), r)
    r = c.post("/v1/accounts/ghost/charges", raw=ok_body().replace('"amount": 1', '"amount": 1.0001'))
    check("check order: 404 account_not_found before field validation", is_error(r, 404, "account_not_found"), r)
    r = c.with_key(METER_A).post("/v1/accounts/ghost/charges", raw=ok_body())
    check("check order: an account key on a missing account: 403, not 404", is_error(r, 403, "forbidden"), r)
    unchanged("auth")

    # routes and methods
    r = c.get("/v1/nothing-here")
    check("unknown route: 404 not_found", is_error(r, 404, "not_found"), r)
    r = c.get("/healthz", key=None)
    eq("healthz without a key", (r.status, r.doc), (200, {"status": "ok"}))
    r = c.post("/v1/accounts", raw=b'{"account_id": "x\xff", "plan": "free", "idempotency_key": "k"}')
    check("create account with invalid UTF-8 in the id: 400", r.status == 400, r)
    check("create account with invalid UTF-8 made nothing", c.get("/v1/accounts?limit=1000").get("accounts") is not None
          and len(c.get("/v1/accounts?limit=1000")["accounts"]) == 2)

    # a 2 MiB body is fine on /v1/batch (16 MiB limit)
    ops = [{"op": "charge", "account_id": A, "idempotency_key": f"bb-{i}", "kind": "backend_function",
            "user_id": "u", "amount": 0.001, "metadata": {"feature": "f" * 200}} for i in range(7000)]
    raw = h.dumps({"ops": ops}).encode()
    check("batch body of more than 2 MiB built", len(raw) > 2 * 1024 * 1024, len(raw))
    r = c.post("/v1/batch", raw=raw)
    check("batch: a 2 MiB body is accepted (16 MiB limit)", r.status == 200 and len(r.get("results") or []) == 7000
          and all(x["status"] == 201 for x in r["results"]), str(r)[:300])
    eq("batch: 7000 x 0.001 charged", c.pool(A)["used"], 17)
    r = c.post("/v1/batch", raw=b'{"ops": [' + b"{}," * (6 * 1024 * 1024) + b"{}]}")
    check("batch: an 18 MiB body: 413 body_too_large", is_error(r, 413, "body_too_large"), r)
    eq("batch: nothing charged by the 413", c.pool(A)["used"], 17)


for section in (clock_disabled, bad_input):
    h.run_section(section)
h.finish()
