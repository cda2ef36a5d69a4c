"""POST /v1/admin/import as a stream: a body far larger than what the server may hold, sent
with chunked transfer encoding in small pieces by a deliberately slow sender, with bad
lines scattered over the whole body (and so over the server's chunks) reported with their
exact line numbers; a line cut across pieces; mode=apply over several chunks with an
out-of-order line and a future line in a later chunk refused line by line; and a client
that leaves mid-body, after which the server still answers and imports.

    python3 tests/integration/import_stream_test.py --creditd BUILD/creditd [-v]
"""
import http.client
import json
import os
import random
import socket
import sys
import time
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

UTC = timezone.utc
START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = START + timedelta(days=1)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
LINE_BYTES_MAX = 1 << 20  # analytics::kEventLineBytesMax


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def stream_import(mode, body, cuts=(), piece_max=48 * 1024, pause_every=16, pause_s=0.001, seed=1,
                  server=None):
    """Sends `body` (bytes) with Transfer-Encoding: chunked, in pieces of random sizes up to
    piece_max that are also cut at every offset in `cuts`, sleeping pause_s every
    pause_every pieces, to `server` (the module's by default). Returns (status, document,
    pieces sent)."""
    server = server or srv
    rnd = random.Random(seed)
    cuts = sorted(set(c for c in cuts if 0 < c < len(body)))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.putrequest("POST", f"/v1/admin/import?mode={mode}")
    conn.putheader("Authorization", "Bearer " + server.admin_key)
    conn.putheader("Content-Type", "application/x-ndjson")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    view = memoryview(body)
    at, ci, pieces = 0, 0, 0
    while at < len(body):
        end = min(len(body), at + rnd.randint(1, piece_max))
        while ci < len(cuts) and cuts[ci] <= at:
            ci += 1
        if ci < len(cuts) and cuts[ci] < end:
            end = cuts[ci]
        conn.send(b"%x\r\n" % (end - at) + view[at:end] + b"\r\n")
        pieces += 1
        if pieces % pause_every == 0:
            time.sleep(pause_s)
        at = end
    try:
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # a server that stopped reading (over the limit) has answered already
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = {"text": text}
    return r.status, doc, pieces


srv = h.start(manual_clock=True)
admin = srv.client()


def setup():
    admin.set_clock(iso(START))
    for acct in ("big-a", "big-b", "apply-acct", "loop-acct"):
        admin.create_account(acct, plan="enterprise")
    # Live events of big-a (at START: mode=apply below starts there): their keys are
    # big-a's, so the large import refuses them.
    for key in ("live-a-1", "live-a-2"):
        r = admin.charge("big-a", amount=1, kind="agent_prompt", idem=key)
        h.eq(f"setup: live charge {key}", r.status, 201)
    admin.set_clock(iso(NOW))


# ------------------------------------------------------------------ a large body, analytics

N_BIG = 200_000
PAD = "p" * 1000  # an unknown top-level field (ignored on import) makes each line ~1.2 KB


def big_line(i):
    """Line i (1-based) of the large body: a good charge of February."""
    at = iso(FEB + timedelta(hours=i % 48, seconds=i % 3600))
    return (f'{{"at":"{at}","account_id":"big-{"ab"[i % 2]}","user_id":"u{i % 5}","type":"charge",'
            f'"kind":"agent_prompt","credits":0.5,"metadata":{{"file":"src/f{i % 10}.js",'
            f'"feature":"f{i % 3}","intent":"feature"}},"note":"{PAD}"}}')


def charge(at, account, extra=""):
    return (f'{{"at":"{at}","account_id":"{account}","user_id":"u","type":"charge",'
            f'"kind":"agent_prompt","credits":1{extra}}}')


# The server's first chunk is the first 16,384 parsed lines (kImportChunkLinesMax; these
# lines are far below its byte bound): lines 3..16,386, since line 1 does not parse and
# line 2 is blank. Lines of unknown accounts parse, so they count; their refusal, like a
# duplicate's, comes when their chunk is loaded.
FEB1 = "2026-02-01T00:00:00Z"
BAD = {  # line number -> (text, the start of the expected reason or None)
    1: ("{not json", None),
    16_386: (charge(FEB1, "nobody"), "unknown account nobody"),  # the first chunk's last line
    16_387: (charge(FEB1, "nobody2"), "unknown account nobody2"),  # the second chunk's first
    16_388: (charge(FEB1, "big-b", ',"idempotency_key":"edge-1"'),  # big-b's line 16,385's key
             "duplicate: this account already has an event with idempotency_key edge-1"),
    65_536: ('{"at":"2026-02-01T00:00:00Z","account_id":"big-a","user_id":"u","type":"charge",'
             '"kind":"agent_prompt"}', None),
    65_537: (charge(FEB1, "big-a").replace("agent_prompt", "no_such_kind"), None),
    100_000: ('{"at":"2026-02-01T00:00:00Z","note":"' + "x" * (LINE_BYTES_MAX + 100) + '"}',
              "the line is longer than 1 MiB"),
    120_000: (charge(FEB1, "big-b").replace('"credits":1', '"credits":-3'), None),
    150_000: (big_line(10)[:-1] + ',"idempotency_key":"dup-1"}',  # line 10's key
              "duplicate: this account already has an event with idempotency_key dup-1"),
    # A live charge's key, in a later chunk than the first line of its account.
    170_001: (charge(FEB1, "big-a", ',"idempotency_key":"live-a-1"'),
              "duplicate: this account already has an event with idempotency_key live-a-1"),
    199_999: ("[1,2,3]", None),
}
BLANK = {2, 77_777}  # blank lines: numbered, skipped, never errors
# Good lines with an idempotency key (line 170_003 is big-b's: big-a's live key is not big-b's).
KEYED = {10: "dup-1", 16_385: "edge-1", 170_003: "live-a-2"}


def build_big_body():
    lines, offsets = [], {}
    at = 0
    for i in range(1, N_BIG + 1):
        if i in BLANK:
            text = "   " if i == 2 else ""
        elif i in BAD:
            text = BAD[i][0]
        elif i in KEYED:
            text = big_line(i)[:-1] + f',"idempotency_key":"{KEYED[i]}"}}'
        else:
            text = big_line(i)
        offsets[i] = at
        lines.append(text)
        at += len(text) + 1
    # The last line has no newline; one line ends in CRLF.
    lines[41] += "\r"
    body = ("\n".join(lines)).encode()
    return body, offsets


def large_streamed_analytics_import():
    body, offsets = build_big_body()
    # Pieces also end inside the bad lines, inside the long line (several times) and in
    # the middle of a CRLF.
    cuts = [offsets[i] + 5 for i in BAD] + [offsets[100_000] + k * 300_000 for k in range(1, 4)]
    cuts += [offsets[43] - 1, offsets[150_000] + 20]
    pid = srv.proc.pid
    rss_before = vm_kib(pid, "VmRSS")
    t0 = time.time()
    status, doc, pieces = stream_import("analytics", body, cuts=cuts)
    secs = time.time() - t0
    hwm = vm_kib(pid, "VmHWM")
    growth_mib = (hwm - rss_before) / 1024
    body_mib = len(body) / (1 << 20)
    if h.VERBOSE:
        print(f"   {N_BIG} lines, {body_mib:.0f} MiB in {pieces} pieces, {secs:.1f} s; server RSS "
              f"{rss_before / 1024:.0f} MiB before, peak {hwm / 1024:.0f} MiB (+{growth_mib:.0f} MiB)")
    bad_lines = sorted(BAD)
    h.eq("stream: 200", status, 200)
    h.eq("stream: counts", (doc.get("imported"), doc.get("rejected")),
         (N_BIG - len(BAD) - len(BLANK), len(BAD)), expected_desc="every good line imported, each bad one refused")
    errors = doc.get("errors") or []
    h.eq("stream: every bad line by its number", [e["line"] for e in errors], bad_lines)
    reasons = {e["line"]: e["reason"] for e in errors}
    for line, (_, want) in BAD.items():
        if want is not None:
            h.check(f"stream: line {line}'s reason", reasons.get(line, "").startswith(want), reasons.get(line))
    h.check("stream: the server's peak RSS grew by far less than the body",
            growth_mib < body_mib / 2, f"+{growth_mib:.0f} MiB for a {body_mib:.0f} MiB body")
    # The lines are in the rollups: February, by account (good line i is big-a's when i is
    # even, big-b's when odd).
    for acct, parity in (("big-a", 0), ("big-b", 1)):
        want = sum(1 for i in range(1, N_BIG + 1) if i % 2 == parity and i not in BAD and i not in BLANK)
        r = admin.get(f"/v1/accounts/{acct}/usage?group_by=kind&from=2026-02-01T00:00:00Z"
                      f"&to=2026-03-01T00:00:00Z")
        h.eq(f"stream: {acct}'s imported lines are in usage", sum(row["count"] for row in r.get("rows") or []),
             want)


def line_split_across_pieces():
    lines = [big_line(i) for i in range(1, 4)]
    body = ("\n".join(lines) + "\n").encode()
    status, doc, pieces = stream_import("analytics", body, piece_max=1, pause_every=100)
    h.eq("one byte per piece: every line imported", (status, doc.get("imported"), doc.get("rejected")),
         (200, 3, 0))
    h.check("one byte per piece: as many pieces as bytes", pieces == len(body), pieces)


# ------------------------------------------------------------------ mode=apply, several chunks

N_APPLY = 72_000
PER_INSTANT = 2_000  # lines per instant (one ledger batch each)
OUT_OF_ORDER = 70_000  # at the first instant, chunks after it was applied (a chunk: 16,384 lines)
FUTURE = 71_000  # after the clock's now


def apply_line(i):
    minute = (i - 1) // PER_INSTANT + 1
    at = START + timedelta(minutes=minute)
    if i == OUT_OF_ORDER:
        at = START + timedelta(minutes=1)
    if i == FUTURE:
        at = NOW + timedelta(hours=1)
    return (f'{{"at":"{iso(at)}","account_id":"apply-acct","user_id":"u{i % 7}","type":"charge",'
            f'"kind":"backend_function","credits":0.01,"idempotency_key":"ap-{i}"}}')


def apply_over_several_chunks():
    body = ("\n".join(apply_line(i) for i in range(1, N_APPLY + 1)) + "\n").encode()
    t0 = time.time()
    status, doc, _ = stream_import("apply", body, piece_max=16 * 1024, pause_every=64, seed=2)
    if h.VERBOSE:
        print(f"   apply: {N_APPLY} lines in {time.time() - t0:.1f} s")
    h.eq("apply: 200 with the two late-chunk lines refused", (status, doc.get("imported"), doc.get("rejected")),
         (200, N_APPLY - 2, 2))
    errors = doc.get("errors") or []
    h.eq("apply: the refused lines", [e["line"] for e in errors], [OUT_OF_ORDER, FUTURE])
    h.check("apply: reasons are backfill_out_of_order",
            all(e["reason"].startswith("backfill_out_of_order: ") for e in errors), errors)
    h.check("apply: the out-of-order line names the instant already applied",
            "the last instant already applied" in (errors[0]["reason"] if errors else ""), errors)
    used = admin.pool("apply-acct")["used"]
    h.check("apply: used is the sum of the applied lines", h.num_eq(used, "719.98"), used)


def small_apply_is_still_one_answer():
    # A body of one chunk: a future line refuses the whole request, as before streaming.
    lines = [apply_line(1).replace('"ap-1"', '"small-1"'),
             apply_line(FUTURE).replace(f'"ap-{FUTURE}"', '"small-2"')]
    status, doc, _ = stream_import("apply", ("\n".join(lines) + "\n").encode(), piece_max=7)
    h.eq("small apply body: 409 backfill_out_of_order for the whole request",
         (status, doc.get("error", {}).get("code")), (409, "backfill_out_of_order"))


# ------------------------------------------------------------------ a body over the limit

def apply_over_the_limit():
    # API.md: a 413 changes no balance; an import applies its chunks as they come. A body
    # that goes over --import-bytes-max after a chunk was applied is answered 200 with what
    # was imported, the limit, and the first line not read: nothing applied goes unsaid.
    limit = 3_000_000
    small = h.start(manual_clock=True, extra_args=["--import-bytes-max", str(limit)])
    try:
        c = small.client()
        c.set_clock(iso(START))
        c.create_account("lim", plan="pro")
        c.set_clock(iso(NOW))
        lines = [(f'{{"at":"{iso(START + timedelta(hours=12))}","account_id":"lim","user_id":"u",'
                  f'"type":"charge","kind":"agent_prompt","credits":0.001,"idempotency_key":"lim-{i:06}"}}')
                 for i in range(1, 22_001)]
        body = ("\n".join(lines) + "\n").encode()
        h.check("over the limit: the body is larger than the limit", len(body) > limit, len(body))
        status, doc, _ = stream_import("apply", body, piece_max=64 * 1024, pause_every=40, pause_s=0.5,
                                       seed=3, server=small)
        imported = doc.get("imported")
        h.eq("over the limit: 200 with the limit named", (status, doc.get("limit_bytes")), (200, limit))
        h.check("over the limit: some lines were imported, not all", isinstance(imported, int) and
                0 <= imported < len(lines), doc)
        errors = doc.get("errors") or []
        last = errors[-1] if errors else {}
        h.eq("over the limit: the first line not read is the last error",
             (last.get("line"), "not read" in last.get("reason", "")), (imported + 1, True))
        used = c.pool("lim")["used"]
        h.check("over the limit: used is exactly what the answer says was imported",
                h.num_eq(used, f"{imported * 0.001:.3f}"), (used, imported))
        ok = c.get("/healthz")
        h.eq("over the limit: the server answers the next request", ok.status, 200)
        # Over the limit before any chunk was imported (fewer lines than a chunk): refused
        # whole, 413, and nothing applied.
        before = c.pool("lim")["used"]
        wide = [(f'{{"at":"{iso(START + timedelta(hours=13))}","account_id":"lim","user_id":"u",'
                 f'"type":"charge","kind":"agent_prompt","credits":0.001,"idempotency_key":"wide-{i:06}",'
                 f'"pad":"{PAD}"}}') for i in range(1, 3_001)]
        body = ("\n".join(wide) + "\n").encode()
        status, doc, _ = stream_import("apply", body, piece_max=64 * 1024, seed=4, server=small)
        h.eq("over the limit, no chunk imported: 413 body_too_large",
             (status, (doc.get("error") or {}).get("code")), (413, "body_too_large"))
        h.check("over the limit, no chunk imported: nothing applied",
                h.num_eq(c.pool("lim")["used"], before), (c.pool("lim")["used"], before))
    finally:
        small.stop()


# ------------------------------------------------------------------ a client that leaves

def client_leaves_mid_body():
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/admin/import?mode=analytics HTTP/1.1\r\nHost: x\r\n"
              b"Authorization: Bearer " + srv.admin_key.encode() + b"\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    body = "\n".join(big_line(i)[:-1] + f',"idempotency_key":"gone-{i}"}}' for i in range(1, 20_001)).encode()
    sent = 0
    while sent < len(body) - 100_000:
        piece = body[sent:sent + 30_000]
        s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        sent += len(piece)
    s.sendall(b"2000\r\n" + b"{" * 100)  # inside a chunk, inside a line
    s.close()
    time.sleep(0.3)
    h.check("disconnect: the server still runs", srv.proc.poll() is None)
    r = admin.get("/healthz")
    h.eq("disconnect: healthz", r.status, 200)
    # The aborted import released its turn: the next one is answered.
    line = big_line(7)[:-1] + ',"idempotency_key":"after-gone"}'
    t0 = time.time()
    r = admin.post("/v1/admin/import?mode=analytics", raw=line + "\n")
    h.eq("disconnect: the next import is answered", (r.status, r.get("imported")), (200, 1))
    h.check("disconnect: ... at once", time.time() - t0 < 5, time.time() - t0)
    # Lines of the aborted body either loaded with their chunk or not at all: sending one
    # again is a duplicate exactly when it was loaded, never an error of another kind.
    r = admin.post("/v1/admin/import?mode=analytics",
                   raw=big_line(1)[:-1] + ',"idempotency_key":"gone-1"}\n')
    h.check("disconnect: a line of the aborted body imports or is a duplicate",
            r.status == 200 and (r.get("imported"), r.get("rejected")) in ((1, 0), (0, 1)), r)


# ------------------------------------------------------------------ a loop sent newest first

def loop_lines_out_of_order():
    # Three agent turns on one file, two of them fixes, 36 credits: a regression loop
    # (DESIGN.md section 2) whose first turn is the 10:00 one. Sent newest first, they
    # reach the rollups in time order (each chunk is sorted), so the loop starts there.
    turns = [("2026-02-10T11:00:00Z", "fix", "snap-3"), ("2026-02-10T10:30:00Z", "fix", "snap-2"),
             ("2026-02-10T10:00:00Z", "feature", "snap-1")]
    body = "".join(
        f'{{"at":"{at}","account_id":"loop-acct","user_id":"u","type":"charge","kind":"agent_prompt",'
        f'"credits":12,"metadata":{{"file":"src/Loop.jsx","intent":"{intent}","snapshot_id":"{snap}"}}}}\n'
        for at, intent, snap in turns)
    status, doc, _ = stream_import("analytics", body.encode(), piece_max=50)
    h.eq("loop newest first: imported", (status, doc.get("imported"), doc.get("rejected")), (200, 3, 0))
    r = admin.get("/v1/accounts/loop-acct/regression-loops?from=2026-02-01T00:00:00Z&to=2026-03-01T00:00:00Z")
    h.eq("loop newest first: found from its first turn",
         [(l["file"], l["turns"], l["first_at"], l["last_at"], l["revert_to_snapshot"])
          for l in r.get("loops") or []],
         [("src/Loop.jsx", 3, "2026-02-10T10:00:00Z", "2026-02-10T11:00:00Z", "snap-1")])


# ------------------------------------------------------------------ history across a kill

def history_older_than_retention():
    # The event log keeps 400 days (--events-retain-days): a line from before the first
    # retained day would be deleted at the next retention pass, so it is refused.
    first_kept = NOW.replace(hour=0, minute=0, second=0) - timedelta(days=400)
    lines = [charge(iso(first_kept - timedelta(seconds=1)), "big-b", ',"idempotency_key":"old-1"'),
             charge(iso(first_kept), "big-b", ',"idempotency_key":"old-2"')]
    status, doc, _ = stream_import("analytics", ("\n".join(lines) + "\n").encode())
    h.eq("retention: the day before the first kept one is refused, that day is kept",
         (status, doc.get("imported"), [e["line"] for e in doc.get("errors") or []]), (200, 1, [1]))
    h.check("retention: the reason names it",
            (doc.get("errors") or [{}])[0].get("reason", "").startswith("older than the event retention of 400 days"),
            doc.get("errors"))


def history_survives_a_kill():
    # Imported history lives where every event does (the command log, then the event
    # log): listed by the events route, numbered once, in the rollups again after a
    # SIGKILL and a restart that rebuilds them.
    global admin
    routes = ["/v1/accounts/loop-acct/events?type=charge",
              "/v1/accounts/loop-acct/regression-loops?from=2026-02-01T00:00:00Z&to=2026-03-01T00:00:00Z",
              "/v1/accounts/big-a/usage?from=2026-02-01T00:00:00Z&to=2026-03-01T00:00:00Z&group_by=file"]
    before = [admin.get(r).doc for r in routes]
    events = before[0].get("events") or []
    h.eq("history: the loop's lines are listed, marked imported, numbered in time order",
         [(e["at"], e["imported"], e["metadata"].get("snapshot_id")) for e in events],
         [("2026-02-10T10:00:00Z", True, "snap-1"), ("2026-02-10T10:30:00Z", True, "snap-2"),
          ("2026-02-10T11:00:00Z", True, "snap-3")])
    srv.kill()
    srv.start()
    admin = srv.client()
    after = [admin.get(r).doc for r in routes]
    for route, b, a in zip(routes, before, after):
        h.eq(f"history after a kill: {route.split('?')[0].rsplit('/', 1)[-1]} unchanged", a, b)


for section in (setup, large_streamed_analytics_import, line_split_across_pieces,
                apply_over_several_chunks, small_apply_is_still_one_answer, apply_over_the_limit,
                client_leaves_mid_body,
                loop_lines_out_of_order, history_older_than_retention, history_survives_a_kill):
    h.run_section(section)
h.finish()
