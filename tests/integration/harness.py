"""Integration-test harness for creditd (Python 3 standard library only).

Starts the real binary on a free loopback port with a fresh temporary data dir, talks
HTTP/JSON to it, and records checks. Each test file ends with `finish()`, which prints
"N passed, M failed" and exits non-zero when anything failed.

Usage in a test file:
    import harness as h
    srv = h.start(manual_clock=True)
    c = srv.client()                      # the admin key
    h.check("name", cond, detail)
    h.finish()

Checks that guard a server behaviour which API.md/DESIGN.md specify but the server
does not yet implement correctly are marked with `bug="..."`: they still run and still
fail (the suite fails honestly), and the summary lists them as suspected server bugs
with the request, the expected answer and the actual answer.
"""
import argparse
import hashlib
import hmac
import http.server
import http.client
import json
import re
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from decimal import Decimal

D = Decimal

_results = []          # (name, ok)
_failures = []         # dicts for the summary
_lock = threading.Lock()
_servers = []
_tmpdirs = []


def _parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--creditd", default=os.environ.get("CREDITD"), help="path to the creditd binary")
    ap.add_argument("--verbose", "-v", action="store_true")
    args, _ = ap.parse_known_args()
    if not args.creditd:
        here = os.path.dirname(os.path.abspath(__file__))
        root = os.path.dirname(os.path.dirname(here))
        for cand in ("build/creditd", "build-h7/creditd"):
            p = os.path.join(root, cand)
            if os.path.exists(p):
                args.creditd = p
                break
    if not args.creditd or not os.path.exists(args.creditd):
        print("creditd binary not found: pass --creditd PATH or set CREDITD", file=sys.stderr)
        sys.exit(2)
    return args


ARGS = _parse_args()


def charge_lines(path, account_id):
    """The charge events of an NDJSON event file (creditctl simulate's), moved to
    account_id, as NDJSON lines for POST /v1/admin/import."""
    lines = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            if d["type"] == "charge":
                d["account_id"] = account_id
                lines.append(json.dumps(d))
    return lines


def raw_exchange(port, request, timeout_s=5, head_only=False):
    """Sends `request` (bytes) on a new connection and returns the bytes that come back
    until the server closes it (with head_only: until the end of the response head) or
    timeout_s passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    s.sendall(request)
    data = b""
    try:
        while not (head_only and b"\r\n\r\n" in data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    return data


def creditctl_path():
    """The creditctl binary: --creditctl PATH, else the one beside --creditd (exits 2 when
    there is none)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--creditctl")
    args, _ = ap.parse_known_args()
    path = args.creditctl or os.path.join(os.path.dirname(os.path.abspath(ARGS.creditd)), "creditctl")
    if not os.path.exists(path):
        print("creditctl binary not found: pass --creditctl PATH", file=sys.stderr)
        sys.exit(2)
    return path
VERBOSE = ARGS.verbose


def key():
    """A fresh idempotency key."""
    return "k-" + uuid.uuid4().hex


# --------------------------------------------------------------------------- checks

def check(name, cond, detail="", bug=None, req=None, expected=None):
    """Record one assertion. `bug`: a short description of the spec rule, marking the
    check as guarding a suspected server bug when it fails. `req`/`expected` describe the
    request and the answer API.md calls for (for the failure report)."""
    ok = bool(cond)
    with _lock:
        _results.append((name, ok))
        if not ok:
            _failures.append({"name": name, "detail": detail, "bug": bug, "req": req, "expected": expected})
    if ok:
        if VERBOSE:
            print("ok   " + name)
    else:
        tag = "FAIL [server bug?] " if bug else "FAIL "
        print(tag + name + (": " + _short(detail) if detail != "" else ""), flush=True)
    return ok


def _short(x, n=600):
    s = x if isinstance(x, str) else repr(x)
    return s if len(s) <= n else s[:n] + "..."


def eq(name, actual, expected, **kw):
    """check(actual == expected) with both in the failure detail."""
    return check(name, actual == expected, f"expected {expected!r}, got {actual!r}",
                 expected=kw.pop("expected_desc", repr(expected)), **kw)


def finish():
    for s in list(_servers):
        try:
            s.stop()
        except Exception:
            pass
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)
    passed = sum(1 for _, ok in _results if ok)
    failed = len(_results) - passed
    bugs = [f for f in _failures if f["bug"]]
    if _failures:
        print("\n---- failures ----")
        for f in _failures:
            print(("[server bug?] " if f["bug"] else "") + f["name"])
            if f["bug"]:
                print("    rule:     " + f["bug"])
            if f["req"]:
                print("    request:  " + _short(f["req"], 400))
            if f["expected"]:
                print("    expected: " + _short(f["expected"], 400))
            print("    actual:   " + _short(f["detail"], 800))
    print(f"{passed} passed, {failed} failed" + (f" ({len(bugs)} marked as suspected server bugs)" if bugs else ""))
    sys.stdout.flush()
    sys.exit(0 if failed == 0 else 1)


def run_section(fn):
    """Run one test section; an unexpected exception is a failure, and the file goes on."""
    name = fn.__name__
    t0 = time.time()
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        check(f"{name}: raised no exception", False, f"{type(e).__name__}: {e}")
    if VERBOSE:
        print(f"-- {name} done in {time.time() - t0:.1f}s")


# --------------------------------------------------------------------------- HTTP

_DEC_MARK = "\u0000dec:"


def dumps(obj):
    """json.dumps that writes Decimal values as exact JSON numbers."""
    def conv(o):
        if isinstance(o, Decimal):
            return _DEC_MARK + format(o, "f")
        if isinstance(o, dict):
            return {k: conv(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [conv(v) for v in o]
        return o
    text = json.dumps(conv(obj))
    return re.sub(r'"\\u0000dec:([-0-9.]+)"', r"\1", text)

class Resp:
    def __init__(self, status, doc, headers, text, req):
        self.status = status
        self.doc = doc
        self.headers = headers  # lower-cased names
        self.text = text
        self.req = req

    @property
    def err(self):
        e = self.doc.get("error") if isinstance(self.doc, dict) else None
        return e if isinstance(e, dict) else {}

    @property
    def code(self):
        return self.err.get("code")

    def __getitem__(self, k):
        return (self.doc or {})[k] if isinstance(self.doc, dict) else None

    def get(self, k, d=None):
        return self.doc.get(k, d) if isinstance(self.doc, dict) else d

    def __repr__(self):
        return f"{self.status} {self.text[:500]}"


class Client:
    """One keep-alive connection (not thread-safe: one Client per thread)."""

    def __init__(self, port, api_key, timeout=30):
        self.port = port
        self.api_key = api_key
        self.timeout = timeout
        self.conn = None

    def with_key(self, api_key):
        return Client(self.port, api_key, self.timeout)

    def _connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def call(self, method, path, body=None, raw=None, headers=None, key="__default__"):
        k = self.api_key if key == "__default__" else key
        h = {}
        data = None
        if raw is not None:
            data = raw if isinstance(raw, (bytes, bytearray)) else raw.encode()
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = dumps(body).encode()
            h["Content-Type"] = "application/json"
        if k:
            h["Authorization"] = "Bearer " + k
        if headers:
            h.update(headers)
        desc = f"{method} {path}"
        if raw is not None:
            desc += f" raw[{len(data)} bytes]: {data[:120]!r}"
        elif body is not None:
            desc += " " + _short(dumps(body), 300)
        if headers:
            desc += f" headers={headers}"
        for attempt in range(2):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                text = r.read().decode("utf-8", "replace")
                hdrs = {kk.lower(): v for kk, v in r.getheaders()}
                if hdrs.get("connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                # A stale keep-alive connection: retry once on a new one.
                self.close()
                if attempt == 1:
                    raise
        try:
            doc = json.loads(text, parse_float=Decimal) if text else None
        except ValueError:
            doc = None
        return Resp(r.status, doc, hdrs, text, desc)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    # ---- helpers over the API
    def create_account(self, account_id=None, plan="starter", signup_at=None):
        account_id = account_id or ("acct-" + uuid.uuid4().hex[:10])
        body = {"account_id": account_id, "plan": plan, "idempotency_key": key()}
        if signup_at is not None:
            body["signup_at"] = signup_at
        r = self.post("/v1/accounts", body)
        if r.status != 201:
            raise AssertionError(f"create_account {account_id} {plan}: {r}")
        return account_id

    def create_key(self, account_id, role=None, label=None):
        body = {"idempotency_key": key()}
        if role:
            body["role"] = role
        if label:
            body["label"] = label
        r = self.post(f"/v1/accounts/{account_id}/keys", body)
        if r.status != 201:
            raise AssertionError(f"create_key {account_id} {role}: {r}")
        return r["key"]

    def create_service_key(self, label=None):
        body = {"idempotency_key": key(), "role": "service"}
        if label:
            body["label"] = label
        r = self.post("/v1/keys", body)
        if r.status != 201:
            raise AssertionError(f"create_service_key: {r}")
        return r["key"]

    def account(self, account_id):
        r = self.get(f"/v1/accounts/{account_id}")
        if r.status != 200:
            raise AssertionError(f"GET account {account_id}: {r}")
        return r.doc

    def pool(self, account_id, pool="credits"):
        return self.account(account_id)["pools"][pool]

    def available(self, account_id):
        return self.pool(account_id)["available"]

    def charge(self, account_id, amount=None, usage=None, kind="backend_function", user_id="u1",
               idem=None, **extra):
        body = {"idempotency_key": idem or key(), "kind": kind, "user_id": user_id}
        if amount is not None:
            body["amount"] = amount
        if usage is not None:
            body["usage"] = usage
        body.update(extra)
        return self.post(f"/v1/accounts/{account_id}/charges", body)

    def set_clock(self, now):
        r = self.post("/v1/admin/clock", {"now": now})
        if r.status != 200:
            raise AssertionError(f"set_clock {now}: {r}")
        return r.doc


# --------------------------------------------------------------------------- server

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, data_dir=None, manual_clock=False, extra_args=()):
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="creditd-it-")
            _tmpdirs.append(data_dir)
        self.data_dir = data_dir
        self.manual_clock = manual_clock
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.admin_key = None
        self.ready_line = None
        self._out = []
        self._pump = None

    def start(self, timeout=20):
        for attempt in range(5):
            self.port = free_port()
            cmd = [ARGS.creditd, "--data", self.data_dir, "--listen", f"127.0.0.1:{self.port}"]
            if self.manual_clock:
                cmd += ["--clock", "manual"]
            cmd += self.extra_args
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, bufsize=1)
            self._out = []
            ready = threading.Event()

            def pump(proc=self.proc, out=self._out):
                for line in proc.stdout:
                    out.append(line.rstrip("\n"))
                    if "creditd ready on" in line:
                        ready.set()
                ready.set()
            self._pump = threading.Thread(target=pump, daemon=True)
            self._pump.start()
            ready.wait(timeout)
            if self.proc.poll() is None and any("creditd ready on" in l for l in self._out):
                self.ready_line = next(l for l in self._out if "creditd ready on" in l)
                break
            # port race or start failure: retry a few times, then give up
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            if attempt == 4:
                raise RuntimeError("creditd did not start: " + "\n".join(self._out[-20:]))
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.admin_key = f.readline().strip()
        if self not in _servers:
            _servers.append(self)
        return self

    def output(self):
        return "\n".join(self._out)

    def client(self, api_key="__admin__"):
        return Client(self.port, self.admin_key if api_key == "__admin__" else api_key)

    def stop(self, timeout=20, sig=signal.SIGTERM):
        """SIGTERM (or `sig`); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self._pump.join(5)  # every line the process wrote is in output()
        if self in _servers:
            _servers.remove(self)
        return rc

    def kill(self):
        """SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        self.proc.kill()
        self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self._pump.join(5)
        if self in _servers:
            _servers.remove(self)
        return rc


def start(manual_clock=False, data_dir=None, extra_args=()):
    return Server(data_dir=data_dir, manual_clock=manual_clock, extra_args=extra_args).start()


# --------------------------------------------------------------------------- misc

AGENT_PROMPT_USAGE = {"model": "default", "input_tokens": 10000, "output_tokens": 2200,
                      "files_read": 5, "lines_emitted": 200, "lines_changed": 6}
AGENT_PROMPT_COST = 9.92  # 500 + 3000 + 3300 + 1000 + 2000 + 120 mc


def num_eq(a, b):
    """Exact comparison of credit numbers as the server writes them (JSON numbers)."""
    from decimal import Decimal
    try:
        return Decimal(str(a)) == Decimal(str(b))
    except Exception:  # noqa: BLE001
        return False


def is_error(r, status, code):
    return r.status == status and r.code == code and isinstance(r.err.get("message"), str)


class WebhookReceiver:
    """A webhook receiver on 127.0.0.1 (API.md, "Webhooks"). Each delivery's
    Creditd-Signature is checked (HMAC-SHA256 of "t.body" with `secret`) and
    on_delivery(delivery_id, body_dict, signature_ok, signature) answers the HTTP status
    to return. tls=(cert_file, key_file) serves https instead of http."""

    def __init__(self, secret, on_delivery, tls=None):
        self.hosts = []  # each delivery's Host header, in order
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                receiver.hosts.append(self.headers.get("Host"))
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                sig = self.headers.get("Creditd-Signature", "")
                parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
                want = hmac.new(secret.encode(), (parts.get("t", "") + ".").encode() + body,
                                hashlib.sha256).hexdigest()
                status = on_delivery(self.headers.get("Creditd-Delivery-Id"), json.loads(body),
                                     hmac.compare_digest(want, parts.get("v1", "")), sig)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def shutdown(self):
        self.server.shutdown()
