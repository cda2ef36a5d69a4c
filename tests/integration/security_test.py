#!/usr/bin/env python3
"""DESIGN.md section 5 ("Security") against the running server, beyond what
accounts_test, input_test and contract_test already check: key format and one-time
display, revocation on a live connection, every route of every role, an account key on
any other account id (403 on each route), limits at their exact edges, JSON errors for
refusals made before a route runs, webhook address rules with and without
--allow-local-webhooks, and keys and secrets kept out of logs, /metrics and error bodies.

Runs two creditd processes on fresh data dirs (one with --allow-local-webhooks).
"""
import http.client
import json
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import check, eq, is_error, key  # noqa: E402

SECRET = "whsec-" + "s3cr3t" * 6
srv = h.start(manual_clock=True)
c = srv.client()
c.set_clock("2026-03-01T10:00:00Z")
A, B = "sec-a", "sec-b"
c.create_account(A, "pro")
c.create_account(B, "pro")
created = {}  # every key the server gave out: none may appear in logs, metrics or errors


def new_key(account, role=None):
    body = {"idempotency_key": key()}
    if role:
        body["role"] = role
    r = c.post(f"/v1/accounts/{account}/keys", body)
    created[r["key"]] = r["key_id"]
    return r


def json_error(r, status):
    return r.status == status and isinstance(r.doc, dict) and set(r.doc) == {"error"} \
        and isinstance(r.err.get("code"), str) and isinstance(r.err.get("message"), str)


def charge_body(**extra):
    b = {"idempotency_key": key(), "kind": "backend_function", "user_id": "u", "amount": 1}
    b.update(extra)
    return b


def keys_shown_once():
    r = new_key(A, "read")
    k = r["key"]
    check("key: at least 32 random bytes (hex 64 or base64url 43+ characters after any prefix)",
          isinstance(k, str) and (re.search(r"[0-9a-f]{64}", k) or re.search(r"[A-Za-z0-9_-]{43,}", k)), k)
    check("key: the key_id is not the key and not a prefix of it",
          r["key_id"] not in k and k not in r["key_id"], r)
    others = {new_key(A, "read")["key"] for _ in range(3)}
    check("key: four keys are four different values", len(others | {k}) == 4, others)
    lst = c.get(f"/v1/accounts/{A}/keys")
    check("key: the listing shows none of the keys", lst.status == 200 and not any(x in lst.text for x in created), lst)
    # The SHA-256 of a key is what is stored; it is no more shown than the key.
    import hashlib
    digest = hashlib.sha256(k.encode()).hexdigest()
    check("key: the listing does not show the key's hash either", digest not in lst.text, lst)
    mode = os.stat(os.path.join(srv.data_dir, "admin.key")).st_mode & 0o777
    eq("admin.key is mode 0600", oct(mode), oct(0o600))


def revocation_at_once():
    r = new_key(A, "meter")
    live = c.with_key(r["key"])
    check("revoke: the meter key works on its keep-alive connection", live.charge(A, amount=1).status == 201)
    check("revoke: DELETE 204", c.delete(f"/v1/accounts/{A}/keys/{r['key_id']}").status == 204)
    r2 = live.charge(A, amount=1)
    check("revoke: the very next request on the same connection is 401", is_error(r2, 401, "unauthorized"), r2)
    r2 = live.get(f"/v1/accounts/{A}")
    check("revoke: reads too are 401 at once", is_error(r2, 401, "unauthorized"), r2)
    eq("a 401 names the scheme it takes (RFC 9110: WWW-Authenticate)", r2.headers.get("www-authenticate"), "Bearer")
    r2 = live.post("/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id=A)]})
    check("revoke: batch with the revoked key is 401", is_error(r2, 401, "unauthorized"), r2)


def roles():
    rd = c.with_key(new_key(A, "read")["key"])
    mt = c.with_key(new_key(A, "meter")["key"])
    rsv = c.post("/v1/keys", {"idempotency_key": key(), "role": "service"})
    created[rsv["key"]] = rsv["key_id"]
    sv = c.with_key(rsv["key"])
    # A hold and a charge on A to address.
    hold = c.post(f"/v1/accounts/{A}/holds", {"idempotency_key": key(), "kind": "backend_function",
                                               "user_id": "u", "amount": 5})
    ch = c.charge(A, amount=2)
    hid, cid = hold["hold_id"], ch["charge_id"]
    c.put(f"/v1/accounts/{A}/cache/ck1", {"kind": "integration.send_email", "response": {"x": 1}})
    p = f"/v1/accounts/{A}"
    reads = ["", "/grants", f"/charges/{cid}", "/holds?status=open", "/events", "/usage?group_by=kind",
             "/hot-files", "/burn", "/forecast", "/regression-loops", "/cache-stats", "/alerts"]
    for who, cl in (("read", rd), ("meter", mt), ("service", sv)):
        for sub in reads:
            r = cl.get(p + sub)
            check(f"{who} key: GET {sub or '/'} on its account is 200", r.status == 200, r)
        r = cl.post(p + "/quote", {"kind": "agent_prompt", "usage": h.AGENT_PROMPT_USAGE})
        check(f"{who} key: quote is 200", r.status == 200, r)
        r = cl.put(p + "/alert-rules", {"thresholds": [50, 80]})
        check(f"{who} key: PUT its alert rules is 200", r.status == 200, r)
        check(f"{who} key: GET /v1/plans is 200", cl.get("/v1/plans").status == 200)
    # Read: no metering routes at all.
    for desc, (m, path, body) in {
        "hold": ("POST", p + "/holds", {"idempotency_key": key(), "kind": "backend_function", "user_id": "u",
                                        "amount": 1}),
        "capture": ("POST", p + f"/holds/{hid}/capture", {"idempotency_key": key(), "amount": 1}),
        "void": ("POST", p + f"/holds/{hid}/void", {"idempotency_key": key()}),
        "cache PUT": ("PUT", p + "/cache/ck2", {"kind": "integration.send_email", "response": 1}),
        "cache GET": ("GET", p + "/cache/ck1?kind=integration.send_email", None),
        "refund": ("POST", p + f"/charges/{cid}/refunds", {"idempotency_key": key(), "reason": "x"}),
        "batch": ("POST", "/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id=A)]}),
        "import": ("POST", "/v1/admin/import?mode=analytics", None),
        "rate-limits": ("PUT", p + "/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}}),
        "packs": ("POST", p + "/packs", {"pool": "credits", "credits": 1, "idempotency_key": key()}),
        "delete a key": ("DELETE", p + f"/keys/{rsv['key_id']}", None),
        "list accounts": ("GET", "/v1/accounts", None),
    }.items():
        r = rd.call(m, path, body)
        check(f"read key: {desc}: 403 forbidden", is_error(r, 403, "forbidden"), r)
        if desc in ("hold", "capture", "void", "cache PUT", "batch"):
            continue  # the meter key may
        r = mt.call(m, path, body)
        check(f"meter key: {desc}: 403 forbidden", is_error(r, 403, "forbidden"), r)
    # Meter: its own account's metering routes.
    r = mt.post(p + f"/holds/{hid}/capture", {"idempotency_key": key(), "amount": 1})
    check("meter key: capture on its account is 201", r.status == 201, r)
    r = mt.put(p + "/cache/ck3", {"kind": "integration.send_email", "response": {"y": 2}})
    check("meter key: cache PUT on its account is 204", r.status == 204, r)
    r = mt.post("/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id=A)]})
    check("meter key: batch on its account is 200/201", r.status == 200 and r["results"][0]["status"] == 201, r)
    # Service: refunds and cache on every account; no plans, grants, keys, imports, rate limits.
    r = sv.post(p + f"/charges/{cid}/refunds", {"idempotency_key": key(), "reason": "x", "credits": 1})
    check("service key: refund is 201", r.status == 201, r)
    r = sv.get(p + "/cache/ck1?kind=integration.send_email")
    check("service key: cache GET is 200", r.status == 200, r)
    r = sv.put(f"/v1/accounts/{B}/cache/ck1", {"kind": "integration.send_email", "response": 1})
    check("service key: cache PUT on another account is 204", r.status == 204, r)
    for desc, (m, path, body) in {
        "packs": ("POST", p + "/packs", {"pool": "credits", "credits": 1, "idempotency_key": key()}),
        "import": ("POST", "/v1/admin/import?mode=analytics", None),
        "rate-limits": ("PUT", p + "/rate-limits", {"per_user": {"per_minute": 1, "burst": 1}}),
        "delete a key": ("DELETE", p + f"/keys/{rsv['key_id']}", None),
    }.items():
        r = sv.call(m, path, body)
        check(f"service key: {desc}: 403 forbidden", is_error(r, 403, "forbidden"), r)
    check("service key: still works (it did not delete itself)", sv.get("/v1/plans").status == 200)


def other_accounts():
    rd = c.with_key(new_key(A, "read")["key"])
    mt = c.with_key(new_key(A, "meter")["key"])
    routes = [("GET", "", None), ("GET", "/grants", None), ("GET", "/charges/x", None), ("GET", "/holds", None),
              ("GET", "/events", None), ("GET", "/usage", None), ("GET", "/hot-files", None),
              ("GET", "/burn", None), ("GET", "/forecast", None), ("GET", "/regression-loops", None),
              ("GET", "/cache-stats", None), ("GET", "/alerts", None), ("GET", "/audit", None),
              ("GET", "/alert-rules", None), ("PUT", "/alert-rules", {"thresholds": [50]}),
              ("POST", "/quote", {"kind": "backend_function", "usage": {}}),
              ("POST", "/charges", charge_body()), ("POST", "/holds/h1/void", {"idempotency_key": key()}),
              ("PUT", "/cache/k1", {"kind": "integration.send_email", "response": 1}),
              ("GET", "/nonexistent-route", None)]
    for target in (B, "no-such-acct", "SEC-A", "sec-a.", "x" * 65, "bad%20id"):
        for who, cl in (("read", rd), ("meter", mt)):
            bad = [(m, sub, r.status, r.code) for m, sub, body in routes
                   for r in [cl.call(m, f"/v1/accounts/{target}{sub}", body)]
                   if not is_error(r, 403, "forbidden")]
            check(f"{who} key on account {target[:12]!r}: every route is 403 forbidden", bad == [], bad)
    # Another account's hold or charge id through its own account's path is not found.
    hb = c.post(f"/v1/accounts/{B}/holds", {"idempotency_key": key(), "kind": "backend_function",
                                            "user_id": "u", "amount": 1})["hold_id"]
    cb = c.charge(B, amount=1)["charge_id"]
    r = mt.post(f"/v1/accounts/{A}/holds/{hb}/capture", {"idempotency_key": key(), "amount": 1})
    check("meter key: B's hold through A's path is 404 hold_not_found", is_error(r, 404, "hold_not_found"), r)
    r = mt.get(f"/v1/accounts/{A}/charges/{cb}")
    check("meter key: B's charge through A's path is 404 charge_not_found", is_error(r, 404, "charge_not_found"), r)
    r = mt.post("/v1/batch", {"ops": [{"op": "void", "account_id": B, "hold_id": hb, "idempotency_key": key()}]})
    check("meter key: batch void of B's hold is 403", r.status == 200 and r["results"][0]["status"] == 403, r)
    eq("B's hold is still held", c.pool(B)["held"], 1)
    r = mt.post("/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id="no-such-acct")]})
    check("meter key: batch op on a missing account is 403 inside the results",
          r.status == 200 and r["results"][0]["status"] == 403
          and (r["results"][0]["body"] or {}).get("error", {}).get("code") == "forbidden", r)
    # The answers for an existing and a missing account are the same bytes.
    r1, r2 = rd.get(f"/v1/accounts/{B}/usage"), rd.get("/v1/accounts/zz-none/usage")
    eq("an existing and a missing account answer the same body", r1.text, r2.text)


def limits():
    p = f"/v1/accounts/{A}/charges"
    base = h.dumps(charge_body()).encode()
    raw = base + b" " * ((1 << 20) - len(base))
    r = c.post(p, raw=raw)
    check("body: exactly 1 MiB is accepted", len(raw) == 1 << 20 and r.status == 201, r)
    r = c.post(p, raw=raw + b" ")
    check("body: 1 MiB + 1 byte is 413 body_too_large", is_error(r, 413, "body_too_large"), r)
    big = h.dumps({"ops": [dict(charge_body(), op="charge", account_id=A)]}).encode()
    r = c.post("/v1/batch", raw=big + b" " * ((16 << 20) - len(big)))
    check("batch: exactly 16 MiB is accepted", r.status == 200, r)
    r = c.post("/v1/batch", raw=big + b" " * ((16 << 20) - len(big) + 1))
    check("batch: 16 MiB + 1 is 413 body_too_large", is_error(r, 413, "body_too_large"), r)
    r = c.post("/v1/batch?x=1", raw=big + b" " * ((1 << 20) + 10))
    check("batch: a query string does not change its 16 MiB limit", r.status == 200, r)
    # Headers: 16 KiB in all; API.md's table gives invalid_request the status 400.
    r = c.get("/v1/plans", headers={"X-Pad": "a" * 15000})
    check("header: 15 KB of headers are accepted", r.status == 200, r)
    hc = c.with_key(srv.admin_key)
    r = hc.get("/v1/plans", headers={"X-Pad": "a" * (17 * 1024)})
    check("header: 17 KiB of headers: 400 invalid_request naming param headers (API.md's table)",
          is_error(r, 400, "invalid_request") and r.err.get("param") == "headers", r)
    # Exactly: a head (request line and headers, with its blank line) of 16,384 bytes is
    # read, one of 16,385 is 400, however the headers are split.
    for count in (1, 200):
        for total, ok in ((16384, True), (16385, False)):
            base = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            pad = total - len(base) - 2
            per = pad // count
            hdrs = ""
            for i in range(count):
                name = f"X-P{i}: "
                n = per if i < count - 1 else pad - per * (count - 1)
                hdrs += name + "a" * (n - len(name) - 2) + "\r\n"
            req = (base + hdrs + "\r\n").encode()
            assert len(req) == total
            first = h.raw_exchange(srv.port, req).split(b"\r\n", 1)[0]
            check(f"header: a head of {total} bytes in {count} header(s) is {'read' if ok else '400'}",
                  first.startswith(b"HTTP/1.1 200" if ok else b"HTTP/1.1 400"), first)
    k = srv.admin_key
    data = h.raw_exchange(srv.port, (f"GET /v1/plans HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\n"
                                     f"Authorization: Bearer {k}\r\nConnection: close\r\n\r\n").encode())
    head, _, body = data.partition(b"\r\n\r\n")
    check("header: two Authorization headers: 400 invalid_request naming param Authorization",
          head.startswith(b"HTTP/1.1 400") and b'"invalid_request"' in body
          and b'"param":"Authorization"' in body, data[:300])
    check("server healthy after the big header", c.get("/healthz").status == 200)
    # JSON depth: 32 levels accepted, 33 refused (the body object is level 1).
    cp = f"/v1/accounts/{A}/cache/depth"

    def nest(levels):
        return '{"kind": "integration.send_email", "response": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
    r = c.put(cp, raw=nest(32))
    check("depth: 32 levels are accepted", r.status == 204, r)
    r = c.put(cp, raw=nest(33))
    check("depth: 33 levels: 400 invalid_json", is_error(r, 400, "invalid_json"), r)
    # String sizes.
    cases = [
        ("user_id of 129 characters", charge_body(user_id="u" * 129), 400),
        ("user_id of 128 characters", charge_body(user_id="u" * 128), 201),
        ("idempotency_key of 129 characters", dict(charge_body(), idempotency_key="k" * 129), 400),
        ("metadata value of 257 characters", charge_body(metadata={"mine": "v" * 257}), 400),
        ("metadata value of 256 characters", charge_body(metadata={"mine": "v" * 256}), 201),
        ("17 metadata keys of the client's own", charge_body(metadata={f"m{i}": "v" for i in range(17)}), 400),
        ("16 metadata keys of the client's own plus the named ones",
         charge_body(metadata=dict({f"m{i}": "v" for i in range(16)}, file="f", feature="x")), 201),
        ("a metadata value that is a number", charge_body(metadata={"mine": 1}), 400),
        ("a metadata value that is an object", charge_body(metadata={"mine": {"a": "b"}}), 400),
        ("a named metadata value of 257 characters", charge_body(metadata={"file": "f" * 257}), 400),
        # Characters, not bytes (API.md: "256 chars each"): 256 of 2 bytes, 256 of 3 and 4.
        ("a metadata value of 256 two-byte characters", charge_body(metadata={"mine": "é" * 256}), 201),
        ("a metadata value of 257 two-byte characters", charge_body(metadata={"mine": "é" * 257}), 400),
        ("a named metadata value of 256 three-byte characters", charge_body(metadata={"file": "日" * 256}), 201),
        ("a metadata value of 256 four-byte characters", charge_body(metadata={"mine": "😀" * 256}), 201),
    ]
    for name, body, status in cases:
        r = c.post(p, body)
        ok = r.status == status if status != 400 else json_error(r, 400)
        check(f"size: {name}: {status}", ok, r)
    r = c.put(f"/v1/accounts/{A}/cache/cs", {"kind": "integration.send_email", "response": 1, "call_site": "c" * 257})
    check("size: a cache call_site of 257 characters is 400 (a metadata value, 256 at most)",
          json_error(r, 400) and r.err.get("param") == "call_site", r)
    r = c.put(f"/v1/accounts/{A}/cache/cs", {"kind": "integration.send_email", "response": 1, "call_site": "c" * 256})
    check("size: a cache call_site of 256 characters is 204", r.status == 204, r)
    r = c.post(f"/v1/accounts/{A}/keys", {"idempotency_key": key(), "label": "l" * 10000})
    check("size: a 10,000-character key label is 400", json_error(r, 400), r)
    r = c.put(f"/v1/accounts/{A}/cache/big", {"kind": "integration.send_email", "response": "r" * ((1 << 20) - 100)})
    check("size: a cache response near 1 MiB is refused or stored, with a JSON answer",
          r.status == 204 or (400 <= r.status < 500 and json_error(r, r.status)), r)


def rejections_are_json():
    r = c.call("DELETE", "/v1/plans")
    check("an unknown method on a route: a JSON error", json_error(r, r.status) and r.status in (404, 405), r)
    r = c.get("/nothing-here")
    check("a path outside /v1: 404 JSON", json_error(r, 404), r)
    r = c.get("/v1/accounts/" + "%ff" * 3)
    check("a percent-escaped invalid id: a JSON error", json_error(r, r.status) and 400 <= r.status < 500, r)
    # A raw request that is not HTTP.
    data = h.raw_exchange(srv.port, b"GARBAGE / HTTP/9.9\r\nfoo\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    check("a request that is not HTTP: 400 with a JSON error body naming param request",
          head.startswith(b"HTTP/1.1 400") and b'"error"' in body and b'"code"' in body
          and b'"param":"request"' in body, data[:300])
    # An over-long Content-Length with no key: 401 before 413, in JSON.
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.putrequest("POST", f"/v1/accounts/{A}/charges")
    conn.putheader("Content-Length", str(100 << 20))
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    check("no key, 100 MiB Content-Length: 401 JSON", resp.status == 401 and b'"unauthorized"' in body, body)
    conn.close()
    # ... and past every route's limit (the import's 64 GiB) too: 401 first, whatever the length.
    for path in (f"/v1/accounts/{A}/charges", "/v1/admin/import"):
        data = h.raw_exchange(srv.port, (f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                                         "Content-Length: 107374182400\r\n\r\n").encode(), head_only=True)
        check(f"no key, 100 GiB Content-Length on {path}: 401", data.startswith(b"HTTP/1.1 401"), data[:200])
    # RFC 9112 3.2: an HTTP/1.1 request has exactly one Host header; HTTP/1.0 may have none,
    # but no request of any version has two.
    for desc, head, want in (("no Host", b"GET /healthz HTTP/1.1\r\n\r\n", b"HTTP/1.1 400"),
                             ("two Host headers", b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                              b"HTTP/1.1 400"),
                             ("HTTP/1.0 with two Host headers",
                              b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", b"HTTP/1.1 400"),
                             ("HTTP/1.0 with one Host", b"GET /healthz HTTP/1.0\r\nHost: a\r\n\r\n",
                              b"HTTP/1.1 200"),
                             ("HTTP/1.0 without Host", b"GET /healthz HTTP/1.0\r\n\r\n", b"HTTP/1.1 200")):
        data = h.raw_exchange(srv.port, head, head_only=True)
        check(f"{desc}: {want.decode()[9:]}", data.startswith(want) and
              (want.endswith(b"200") or b'"param":"Host"' in data), data[:240])
    # An HTTP/1.0 request's Expect: 100-continue is ignored: no 100, the answer after the body.
    import socket
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    body = json.dumps(charge_body()).encode()
    sock.sendall((f"POST /v1/accounts/{A}/charges HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {c.api_key}\r\n"
                  f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    sock.settimeout(0.5)
    try:
        early = sock.recv(100)
    except socket.timeout:
        early = b""
    sock.settimeout(5)
    sock.sendall(body)
    rest = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    sock.close()
    check("HTTP/1.0 with Expect: 100-continue: no 100, a 201 after the body",
          early == b"" and (early + rest).startswith(b"HTTP/1.1 201"), (early, rest[:120]))
    # Two Idempotency-Key headers are a 400 of field validation: 401, invalid_json, 403 and
    # 404 come first (API.md's order).
    other_meter = new_key(B, "meter")["key"]
    for desc, auth, path, body, want, code in (
            ("no key", None, f"/v1/accounts/{A}/charges", b"{}", 401, "unauthorized"),
            ("a bad body", c.api_key, f"/v1/accounts/{A}/charges", b"{bad", 400, "invalid_json"),
            ("another account's key", other_meter, f"/v1/accounts/{A}/charges", b"{}", 403, "forbidden"),
            ("no such account", c.api_key, "/v1/accounts/no-such/charges", b"{}", 404, "account_not_found"),
            ("a valid request", c.api_key, f"/v1/accounts/{A}/charges",
             json.dumps({k: v for k, v in charge_body().items() if k != "idempotency_key"}).encode(),
             400, "invalid_request")):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.putrequest("POST", path)
        conn.putheader("Idempotency-Key", "dup-a")
        conn.putheader("Idempotency-Key", "dup-b")
        if auth:
            conn.putheader("Authorization", f"Bearer {auth}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        text = resp.read()
        check(f"two Idempotency-Key headers, {desc}: {want} {code}",
              resp.status == want and f'"code":"{code}"'.encode() in text
              and (code != "invalid_request" or b'"param":"Idempotency-Key"' in text), text)
        conn.close()


def webhooks():
    path = f"/v1/accounts/{A}/alert-rules"
    refused = ["http://example.com/hook", "ftp://example.com/hook", "https://127.0.0.1/hook",
               "https://localhost:8443/hook", "https://10.1.2.3/hook", "https://172.16.0.1/hook",
               "https://192.168.1.1/hook", "https://169.254.169.254/latest", "https://[::1]/hook",
               "https://[fe80::1]/hook", "https://[fc00::1]/hook", "https://0.0.0.0/hook",
               "https://[::ffff:127.0.0.1]/hook", "https://user:pw@example.com/hook", "hook",
               "http://127.0.0.1:9/hook",
               # The resolver reads these as 127.0.0.1, 0.0.0.0 and loopback too.
               "https://127.1/hook", "https://2130706433/hook", "https://0x7f.0.0.1/hook",
               "https://017700000001/hook", "https://0/hook", "https://localhost./hook",
               "https://[::127.0.0.1]/hook",
               # IPv6 forms that reach an embedded IPv4 address (NAT64, 6to4), and ports
               # outside 1-65535.
               "https://[64:ff9b::127.0.0.1]/hook", "https://[64:ff9b::a00:1]/hook",
               "https://[2002:7f00:1::]/hook", "https://[64:ff9b:1::1]/hook",
               "https://example.com:99999/hook", "https://example.com:0/hook",
               # Hosts this sender would not reach as written: a space, %-escapes, other dots.
               "https://exa mple.com/hook", "https://%31%32%37.0.0.1/hook",
               "https://127\u30020\u30020\u30021/hook",
               # Brackets hold an IPv6 address, nothing else.
               "https://[example.com]/hook", "https://[1.2.3.4]/hook", "https://[fe80::1%25eth0]/hook"]
    for url in refused:
        r = c.put(path, {"webhook_url": url, "webhook_secret": SECRET})
        check(f"webhook without --allow-local-webhooks: {url} is 400",
              json_error(r, 400) and r.code == "invalid_request" and r.err.get("param") == "webhook_url", r)
        check(f"webhook: the refusal of {url} does not echo the secret", SECRET not in r.text, r)
    r = c.put(path, {"webhook_url": "https://[2001:4860:4860::8888]:8443/hook", "webhook_secret": SECRET})
    check("webhook: https to a public IPv6 address in brackets is 200", r.status == 200, r)
    r = c.put(path, {"webhook_url": "https://example.com/hook", "webhook_secret": SECRET})
    check("webhook: https to a public name is 200", r.status == 200, r)
    check("webhook: the answer does not carry the secret", SECRET not in r.text, r)
    r = c.get(path)
    check("webhook: GET alert-rules does not carry the secret", SECRET not in r.text, r)
    r = c.put(path, {"webhook_url": "https://example.com/hook", "webhook_secret": SECRET + "x" * 300})
    check("webhook: a too-long secret is 400 and not echoed", json_error(r, 400) and SECRET not in r.text, r)
    r = c.put(path, {"webhook_url": "https://example.com/hook"})
    check("webhook: a URL kept, the stored secret still not shown", SECRET not in r.text, r)
    # With --allow-local-webhooks.
    s2 = h.start(extra_args=["--allow-local-webhooks"])
    c2 = s2.client()
    c2.create_account(A, "pro")
    for url in ("https://127.0.0.1:8443/hook", "https://localhost/hook", "https://10.0.0.1/hook",
                "https://[::1]:9/hook"):
        r = c2.put(path, {"webhook_url": url, "webhook_secret": SECRET})
        check(f"webhook with --allow-local-webhooks: {url} is 200", r.status == 200 and SECRET not in r.text, r)
    r = c2.put(path, {"webhook_url": "http://example.com/hook", "webhook_secret": SECRET})
    check("webhook with --allow-local-webhooks: plain http to a public name is still 400", json_error(r, 400), r)
    s2.stop()
    check("second server: no secret in its output", SECRET not in s2.output(), s2.output()[-500:])


def nothing_leaks():
    bad_key_text = "Bearer " + "z" * 64
    r = c.get(f"/v1/accounts/{A}", key="z" * 64)
    check("401 with a wrong key does not echo it", "z" * 64 not in r.text, r)
    some = next(iter(created))
    r = c.post(f"/v1/accounts/{A}/charges", raw=b'{"idempotency_key": "' + some.encode() + b'", bad')
    check("a malformed body holding a key: the error does not echo the body", some not in r.text, r)
    r = c.get(f"/v1/accounts/{some}", key=some)
    check("a path holding a revoked or account key: 401/403 without echoing it",
          some not in r.text and r.status in (401, 403), r)
    # A key pasted into a path (a client's mistake) must not become a metric label.
    rd = c.with_key(some)
    for path in (f"/v1/{some}", f"/v1/accounts/{A}/{some}", f"/{some}", f"/v1/accounts/{A}/charges/x/{some}"):
        c.get(path)
        rd.get(path)
    m = c.get("/metrics")
    check("/metrics is served on loopback", m.status == 200, m)
    everything = list(created) + [srv.admin_key, SECRET]
    leaked = [k[:8] for k in everything if k in m.text]
    eq("/metrics shows no key or secret", leaked, [])
    del bad_key_text
    data = srv.data_dir
    eq("SIGTERM exits 0", srv.stop(), 0)
    out = srv.output()
    leaked = [k[:8] for k in everything if k in out]
    eq("the server's output (stdout + stderr) shows no key or secret", leaked, [])
    files = []
    for root, _, names in os.walk(data):
        for n in names:
            if n == "admin.key":
                continue
            blob = open(os.path.join(root, n), "rb").read()
            files += [(n, k[:8]) for k in list(created) + [srv.admin_key] if k.encode() in blob]
    eq("no raw key in any data dir file but admin.key", files, [])


def files_and_links():
    # Started with umask 000, creditd still makes its data its owner's alone.
    base = tempfile.mkdtemp(prefix="creditd-umask-")
    data = os.path.join(base, "data")
    old = os.umask(0)
    try:
        s2 = h.start(data_dir=data)
    finally:
        os.umask(old)
    c2 = s2.client()
    c2.create_account(A, "pro")
    c2.charge(A, amount=1)
    open_to_others = []
    for root, dirs, names in os.walk(data):
        for n in dirs + names + ([""] if root == data else []):
            p = os.path.join(root, n) if n else root
            if os.stat(p).st_mode & 0o077:
                open_to_others.append((os.path.relpath(p, base), oct(os.stat(p).st_mode & 0o777)))
    eq("under umask 000: no file or directory of the data dir is open to others", open_to_others, [])
    # A dashboard directory holding a link out (to admin.key) does not serve it; a link to a
    # file inside does.
    web = os.path.join(base, "web")
    os.mkdir(web)
    with open(os.path.join(web, "index.html"), "w") as f:
        f.write("<!doctype html><title>x</title>")
    os.symlink(os.path.join(data, "admin.key"), os.path.join(web, "leak.txt"))
    os.symlink("index.html", os.path.join(web, "home.html"))
    os.mkdir(os.path.join(web, "sub"))
    eq("SIGTERM exits 0", s2.stop(), 0)
    # admin.key opened to others is named at the start (not changed).
    os.chmod(os.path.join(data, "admin.key"), 0o644)
    os.chmod(os.path.join(data, "key.secret"), 0o640)
    s2.extra_args = ["--web", web]
    s2.start()
    check("admin.key open to others: a warning at the start",
          any("admin.key is open to other users (mode 0644)" in l for l in s2.output().splitlines()),
          s2.output()[-800:])
    check("key.secret open to others: a warning too (it rebuilds every key)",
          any("key.secret is open to other users (mode 0640)" in l for l in s2.output().splitlines()),
          s2.output()[-800:])
    c2 = s2.client()
    r = c2.get("/ui/leak.txt", key=None)
    check("/ui/: a link out of the directory is 404, the key not shown",
          r.status == 404 and s2.admin_key not in r.text, r)
    eq("/ui/: the index", c2.get("/ui/", key=None).status, 200)
    eq("/ui/: a link inside the directory", c2.get("/ui/home.html", key=None).status, 200)
    eq("/ui/: a directory is 404", c2.get("/ui/sub", key=None).status, 404)
    eq("/ui//home.html is /ui/home.html", c2.get("/ui//home.html", key=None).status, 200)
    s2.stop()
    os.chmod(os.path.join(data, "admin.key"), 0o600)


def batch_forbidden_reads_as_single():
    other = new_key(B, "meter")["key"]
    rs = c.with_key(other).post(f"/v1/accounts/{A}/charges", charge_body())
    rb = c.with_key(other).post("/v1/batch", {"ops": [dict(charge_body(), op="charge", account_id=A)]})
    results = rb.get("results") or [{}]
    eq("a batch op refused for another account reads as its single request",
       (results[0].get("status"), results[0].get("body")), (rs.status, rs.doc))
    # 403 before the op's own 400s: a bad op naming an account the key cannot reach.
    rb = c.with_key(other).post("/v1/batch", {"ops": [
        {"op": "refund", "account_id": A, "idempotency_key": "w1"}, {"account_id": A},
        {"op": "charge", "account_id": A}, {"op": "teleport", "account_id": B}]})
    eq("batch ops with a bad op for an account the key cannot reach: 403 first; its own account: 400 op",
       [(x.get("status"), x.get("body", {}).get("error", {}).get("code")) for x in rb.get("results") or []],
       [(403, "forbidden")] * 3 + [(400, "invalid_request")])


for section in (keys_shown_once, revocation_at_once, roles, other_accounts, limits, rejections_are_json,
                webhooks, batch_forbidden_reads_as_single, nothing_leaks, files_and_links):
    h.run_section(section)
h.finish()
