#!/usr/bin/env python3
"""Concurrency and durability: a 1,000-charge race for exactly 100 credits, concurrent
duplicates of one idempotency key, SIGKILL and SIGTERM restarts on the same data dir,
SIGTERM while the log is replayed at start.
"""
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq, is_error, key  # noqa: E402

THREADS = 48


def pooled(srv, api_key, jobs, fn):
    """Run fn(client, job) for every job on THREADS threads, one keep-alive client each."""
    local = threading.local()

    def run(job):
        if not hasattr(local, "c"):
            local.c = srv.client(api_key)
        return fn(local.c, job)
    with ThreadPoolExecutor(THREADS) as ex:
        return list(ex.map(run, jobs))


def race():
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-10T12:00:00Z")
    a = c.create_account("race", "starter")
    r = c.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": -1900, "reason": "leave 100",
                                                 "idempotency_key": key()})
    check("race setup: -1900 adjustment", r.status == 201, r)
    eq("race setup: exactly 100 available", c.available(a), 100)
    meter = c.create_key(a, "meter")

    def one(cl, i):
        r = cl.post(f"/v1/accounts/{a}/charges", {"idempotency_key": f"race-{i}", "kind": "backend_function",
                                                  "user_id": f"u{i % 7}", "amount": 1})
        return r.status, r.code, r.get("available_after")
    res = pooled(srv, meter, range(1000), one)
    statuses = [s for s, _, _ in res]
    ok = statuses.count(201)
    refused = [x for x in res if x[0] == 402 and x[1] == "insufficient_credits"]
    eq("race: exactly 100 of 1000 charges succeed", ok, 100)
    eq("race: the other 900 are 402 insufficient_credits", len(refused), 900)
    eq("race: no other status", sorted(set(statuses)), [201, 402])
    afters = sorted(x[2] for x in res if x[0] == 201)
    eq("race: the successes saw available_after 99..0, each once", afters, list(range(100)))
    p = c.pool(a)
    eq("race: balance exactly 0 (used 100 + the -1900, held 0)", (p["available"], p["used"], p["held"]),
       (0, 100, 0))

    # concurrent duplicates of one key: one charge, one answer
    b = c.create_account("dup", "starter")
    body = {"idempotency_key": "dup-1", "kind": "backend_function", "user_id": "u", "amount": 7}
    res = pooled(srv, srv.admin_key, range(64),
                 lambda cl, i: cl.post(f"/v1/accounts/{b}/charges", body))
    eq("duplicates: all 64 answers are 201", sorted({r.status for r in res}), [201])
    check("duplicates: all 64 bodies are the same", len({r.text for r in res}) == 1, {r.text for r in res})
    eq("duplicates: exactly one was not a replay",
       sum(1 for r in res if r.headers.get("idempotent-replayed") != "true"), 1)
    eq("duplicates: charged once", c.pool(b)["used"], 7)

    # a racing hold/capture mix keeps the invariant
    e = c.create_account("mix", "starter")

    def mix(cl, i):
        hp = f"/v1/accounts/{e}/holds"
        r = cl.post(hp, {"idempotency_key": f"mh-{i}", "kind": "backend_function", "user_id": "u", "amount": 3})
        if r.status != 201:
            return r.status
        act = "capture" if i % 2 else "void"
        r2 = cl.post(f"{hp}/{r['hold_id']}/{act}", {"idempotency_key": f"mc-{i}"})
        return r2.status
    res = pooled(srv, srv.admin_key, range(400), mix)
    eq("mix: 200 captures 201 and 200 voids 200", (res.count(201), res.count(200)), (200, 200))
    p = c.pool(e)
    eq("mix: used 600, held 0, available 1400", (p["used"], p["held"], p["available"]), (600, 0, 1400))
    srv.stop()


def restart():
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-10T12:00:00Z")
    a = c.create_account("dur-a", "starter")
    b = c.create_account("dur-b", "free")
    meter = c.create_key(a, "meter")
    revoked_id = None
    r = c.post(f"/v1/accounts/{a}/keys", {"idempotency_key": key(), "role": "meter"})
    revoked, revoked_id = r["key"], r["key_id"]
    c.delete(f"/v1/accounts/{a}/keys/{revoked_id}")
    body = {"idempotency_key": "ack-1", "kind": "agent_prompt", "user_id": "u", "usage": h.AGENT_PROMPT_USAGE}
    first = c.post(f"/v1/accounts/{a}/charges", body)
    check("restart setup: charge 201", first.status == 201, first)
    c.charge(b, amount=12.5)
    hold = c.post(f"/v1/accounts/{a}/holds", {"idempotency_key": "hold-1", "kind": "agent_prompt", "user_id": "u",
                                              "amount": 40, "ttl_ms": 3600000})
    refused = c.charge(a, amount=99999, idem="ack-402")
    c.post(f"/v1/accounts/{a}/adjustments", {"pool": "credits", "credits": 25, "reason": "g",
                                             "idempotency_key": key()})
    c.set_clock("2026-03-10T12:30:00Z")
    c.charge(a, amount=0.5)
    r = c.put(f"/v1/accounts/{a}/cache/ck-dur", {"kind": "integration.send_email", "response": {"id": "m-1"}})
    check("restart setup: cache PUT 204", r.status == 204, r)
    views = {x: c.get(f"/v1/accounts/{x}").doc for x in (a, b)}
    listing = c.get("/v1/accounts?limit=1000").doc
    grants = c.get(f"/v1/accounts/{a}/grants").doc
    admin_key = srv.admin_key
    data = srv.data_dir

    rc = srv.kill()
    eq("SIGKILL: killed by signal 9", rc, -signal.SIGKILL)
    srv2 = h.start(manual_clock=True, data_dir=data)
    c2 = srv2.client()
    eq("restart after SIGKILL: the admin key is kept", srv2.admin_key, admin_key)
    for x in (a, b):
        r = c2.get(f"/v1/accounts/{x}")
        eq(f"restart after SIGKILL: account {x} identical", r.doc, views[x])
    eq("restart after SIGKILL: account list identical", c2.get("/v1/accounts?limit=1000").doc, listing)
    eq("restart after SIGKILL: grants identical", c2.get(f"/v1/accounts/{a}/grants").doc, grants)
    r = c2.post(f"/v1/accounts/{a}/charges", body)
    check("restart after SIGKILL: replay of an acknowledged key: same body, Idempotent-Replayed: true",
          r.status == 201 and r.doc == first.doc and r.headers.get("idempotent-replayed") == "true", (r, r.headers))
    r = c2.charge(a, amount=99999, idem="ack-402")
    check("restart after SIGKILL: the stored 402 replays", r.status == 402 and r.doc == refused.doc
          and r.headers.get("idempotent-replayed") == "true", r)
    r = c2.post(f"/v1/accounts/{a}/charges", dict(body, user_id="other"))
    check("restart after SIGKILL: the key still guards its body (422)", is_error(r, 422, "idempotency_key_reused"), r)
    r = c2.post("/v1/admin/clock", {"now": "2026-03-10T12:29:59Z"})
    check("restart: the manual clock starts at the last logged instant (earlier is 409 clock_backwards)",
          is_error(r, 409, "clock_backwards"), r)
    r = c2.with_key(meter).post(f"/v1/accounts/{a}/charges", {"idempotency_key": key(), "kind": "backend_function",
                                                              "user_id": "u", "amount": 1})
    check("restart: the meter key still works", r.status == 201, r)
    r = c2.get(f"/v1/accounts/{a}/cache/ck-dur?kind=integration.send_email")
    eq("restart: the cache survives", (r.status, r.doc), (200, {"response": {"id": "m-1"}}))
    r = c2.with_key(revoked).get(f"/v1/accounts/{a}")
    check("restart: the revoked key stays revoked (401)", is_error(r, 401, "unauthorized"), r)
    r = c2.get(f"/v1/accounts/{a}/holds?status=open")
    check("restart: the open hold is still open", [x["hold_id"] for x in r.get("holds", [])] == [hold.get("hold_id")], r)
    r = c2.post(f"/v1/accounts/{a}/holds/{hold.get('hold_id')}/capture", {"idempotency_key": key(), "amount": 30})
    check("restart: the hold captures after the restart", r.status == 201 and r.get("cost") == 30, r)
    views2 = {x: c2.get(f"/v1/accounts/{x}").doc for x in (a, b)}
    eq("restart: a used 9.92 + 0.5 + 1 + 30", views2[a]["pools"]["credits"]["used"], D("41.42"))

    rc = srv2.stop()
    eq("SIGTERM: exits 0", rc, 0)
    check("SIGTERM: says it stopped cleanly", "creditd stopped cleanly" in srv2.output(), srv2.output()[-500:])
    srv3 = h.start(manual_clock=True, data_dir=data)
    c3 = srv3.client()
    check("restart after SIGTERM: a clean start (one ready line)", srv3.ready_line is not None, srv3.output())
    for x in (a, b):
        eq(f"restart after SIGTERM: account {x} identical", c3.get(f"/v1/accounts/{x}").doc, views2[x])
    r = c3.post(f"/v1/accounts/{a}/charges", body)
    check("restart after SIGTERM: the replay still answers the same body",
          r.status == 201 and r.doc == first.doc and r.headers.get("idempotent-replayed") == "true", r)
    r = c3.charge(a, amount=2)
    check("restart after SIGTERM: new charges work", r.status == 201, r)
    rc = srv3.stop(sig=signal.SIGHUP)
    eq("SIGHUP (a closed terminal): a clean stop too, exit 0", rc, 0)
    check("SIGHUP: says it stopped cleanly", "creditd stopped cleanly" in srv3.output(), srv3.output()[-500:])

    # the race again across a crash: acknowledged charges survive SIGKILL mid-load
    srv4 = h.start(manual_clock=True, data_dir=data)
    c4 = srv4.client()
    d = c4.create_account("dur-load", "enterprise")
    acked = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(cl, i):
        if stop.is_set():
            return None
        try:
            r = cl.post(f"/v1/accounts/{d}/charges", {"idempotency_key": f"ld-{i}", "kind": "backend_function",
                                                      "user_id": "u", "amount": 1})
        except Exception:  # noqa: BLE001 (the server died under us)
            return None
        if r.status == 201:
            with lock:
                acked.append(i)
        return r.status

    def killer():
        while len(acked) < 300:
            if stop.wait(0.005):
                return
        srv4.kill()
        stop.set()
    kt = threading.Thread(target=killer)
    kt.start()
    pooled(srv4, srv4.admin_key, range(3000), load)
    stop.set()
    kt.join()
    if srv4.proc is not None:
        srv4.kill()
    srv5 = h.start(manual_clock=True, data_dir=data)
    c5 = srv5.client()
    used = c5.pool(d)["used"]
    check(f"crash under load: every acknowledged charge survived ({len(acked)} acked, used {used})",
          used >= len(acked), (used, len(acked)))
    missing = []
    for i in acked:
        r = c5.post(f"/v1/accounts/{d}/charges", {"idempotency_key": f"ld-{i}", "kind": "backend_function",
                                                  "user_id": "u", "amount": 1})
        if not (r.status == 201 and r.headers.get("idempotent-replayed") == "true"):
            missing.append((i, r.status))
    eq("crash under load: every acknowledged key replays", missing, [])
    eq("crash under load: replays charged nothing", c5.pool(d)["used"], used)
    eq("final SIGTERM exits 0", srv5.stop(), 0)


def sigterm_during_recovery():
    """API.md "Running": SIGTERM shuts down cleanly and exits 0, also when it comes while
    the log is still being replayed at start (before the ready line)."""
    import subprocess
    import time
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-10T12:00:00Z")
    a = c.create_account("rec", "enterprise")
    ops_per_batch, batches = 8192, 16
    for b in range(batches):
        ops = [{"op": "charge", "account_id": a, "idempotency_key": f"rec-{b}-{i}",
                "kind": "backend_function", "user_id": f"u{i % 5}", "amount": 0.001}
               for i in range(ops_per_batch)]
        r = c.post("/v1/batch", {"ops": ops})
        check(f"recovery setup: batch {b} answered 200", r.status == 200, r)
    used = c.pool(a)["used"]
    eq("recovery setup: every op charged", used, D("0.001") * ops_per_batch * batches)
    data = srv.data_dir
    srv.kill()  # no snapshot: the next start replays the whole log

    proc = subprocess.Popen([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                             "--clock", "manual"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The replay maps the log's segments: seen in the process's maps, it is under way.
    in_recovery = False
    deadline = time.time() + 20
    while time.time() < deadline and proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/maps") as f:
                if "/wal/" in f.read():
                    in_recovery = True
                    break
        except OSError:
            pass
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    eq("SIGTERM during recovery: exits 0", proc.returncode, 0)
    check("SIGTERM during recovery: says it stopped cleanly", "creditd stopped cleanly" in out, out[-500:])
    if in_recovery:
        check("SIGTERM during recovery: no ready line", "creditd ready on" not in out, out[-500:])
    srv2 = h.start(manual_clock=True, data_dir=data)
    eq("restart after SIGTERM during recovery: every charge is there", srv2.client().pool(a)["used"], used)
    eq("restart after SIGTERM during recovery: a final SIGTERM exits 0", srv2.stop(), 0)


def sigterm_grace():
    """After SIGTERM, a request on an open connection is answered 503 shutting_down (not
    reset) and changes nothing; the server still exits 0."""
    import time
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-10T12:00:00Z")
    a = c.create_account("grace", "enterprise")
    r = c.charge(a, amount=1, idem="grace-1")
    check("grace: a charge before the stop", r.status == 201, r)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.05)  # inside the 250 ms grace
    r = c.charge(a, amount=1, idem="grace-2")
    check("grace: a request after SIGTERM is 503 shutting_down", is_error(r, 503, "shutting_down"), r)
    eq("grace: a 503 says when to retry (Retry-After)", r.headers.get("retry-after"), "1")
    eq("grace: SIGTERM exits 0", srv.stop(), 0)
    srv = h.start(manual_clock=True, data_dir=srv.data_dir)
    c = srv.client()
    eq("grace: only the charge before the stop was applied", c.pool(a)["used"], 1)
    srv.stop()


def events_of(c, acct, typ):
    return c.get(f"/v1/accounts/{acct}/events?type={typ}").get("events") or []


def torn_last_record():
    """DESIGN.md section 3: a record that fails its checksum with only zeros after it is a
    torn tail, cut off and reported, and the server starts. The events of the commands it
    held go with it (the recovered state is the truth): ids and sequence numbers are not
    reused, and later writes work."""
    import glob
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-11T12:00:00Z")
    a = c.create_account("torn", "starter")
    for i in range(5):
        r = c.charge(a, amount=1, idem=f"torn-{i}")
        check(f"torn setup: charge {i}", r.status == 201, r)
    # The events reach the event log after their batch is answered: wait for all six.
    eq("torn setup: the charges' events are listed", len(events_of(c, a, "charge")), 5)
    data = srv.data_dir
    srv.kill()
    wal = sorted(glob.glob(os.path.join(data, "wal", "wal-*.log")))
    with open(wal[0], "r+b") as f:
        buf = bytearray(f.read())
        last = len(buf.rstrip(b"\0"))  # the log's end: the segment is zero-filled after it
        buf[last - 8:last] = b"\0" * 8  # the last record's final bytes: its checksum fails
        f.seek(0)
        f.write(buf)
    srv2 = h.start(manual_clock=True, data_dir=data)
    out = srv2.output()
    check("torn last record: the start cuts the tail and reports it", "cut a torn tail" in out, out[-800:])
    check("torn last record: the event log's events past the state are cut, reported",
          "past the recovered state" in out, out[-800:])
    c2 = srv2.client()
    eq("torn last record: the state has the first four charges", c2.pool(a)["used"], 4)
    evs = events_of(c2, a, "charge")
    eq("torn last record: the events agree with the state", [e["idempotency_key"] for e in evs],
       [f"torn-{i}" for i in range(4)])
    r1, r2 = c2.charge(a, amount=1, idem="torn-new-1"), c2.charge(a, amount=1, idem="torn-new-2")
    check("torn last record: later charges succeed", r1.status == 201 and r2.status == 201, (r1, r2))
    ids = [e["charge_id"] for e in events_of(c2, a, "charge")]
    eq("torn last record: no charge id is used twice", len(ids), len(set(ids)))
    eq("torn last record: SIGTERM exits 0", srv2.stop(), 0)
    srv3 = h.start(manual_clock=True, data_dir=data)
    eq("torn last record: the next start has all six charges", srv3.client().pool(a)["used"], 6)
    srv3.stop()


def missing_first_segment():
    """DESIGN.md section 3: a missing segment stops the start with an error naming the file
    and the offset (also the oldest one: the log no longer continues the state). Without a
    snapshot nothing can rebuild the state past it: the records left would be applied to an
    empty state. --repair is refused too, saying so and what to do, and changes no file
    (found by an audit: it failed with the plain start's message, as if it had not been
    asked)."""
    import glob
    import subprocess
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-12T12:00:00Z")
    a = c.create_account("gone", "starter")
    c.charge(a, amount=1, idem="gone-1")
    data = srv.data_dir
    srv.kill()
    wal = sorted(glob.glob(os.path.join(data, "wal", "wal-*.log")))
    check("missing segment setup: the log and its preallocated next segment", len(wal) >= 2, wal)
    with open(wal[0], "rb") as fh:
        kept = fh.read()
    os.unlink(wal[0])
    before = tree_bytes(data)
    for extra in ([], ["--repair"]):
        label = f"missing first segment {' '.join(extra)}".strip()
        proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                               "--clock", "manual"] + extra, capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        check(f"{label}: the start fails, naming the missing file and offset",
              proc.returncode not in (0, None) and proc.returncode > 0 and "log records are missing" in out
              and os.path.basename(wal[0]) in out and "offset" in out, (proc.returncode, out[-600:]))
        check(f"{label}: the message says --repair cannot help and what to do",
              "--repair cannot help" in out and "Put the missing segments back" in out
              and "new data dir" in out, out[-900:])
        after = tree_bytes(data)
        eq(f"{label}: the refused start changed no file",
           sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)), [])
    proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                           "--clock", "manual", "--repair"], capture_output=True, text=True, timeout=60)
    check("missing first segment --repair: said to be a repair refused",
          proc.returncode > 0 and "cannot repair: log records are missing" in proc.stderr + proc.stdout,
          (proc.stdout + proc.stderr)[-600:])
    with open(wal[0], "wb") as fh:
        fh.write(kept)
    srv2 = h.start(manual_clock=True, data_dir=data)
    eq("missing first segment: put back, the state is whole", srv2.client().pool(a)["used"], 1)
    srv2.stop()


def tree_bytes(root):
    """Every file under root with its bytes (a refused start must change none of them)."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f == "LOCK":
                continue
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def charged_then_stopped(account, at, charges):
    """A server with `account` (starter) charged 1 credit `charges` times at `at` (keys
    <account>-<i>), stopped with SIGTERM (so a snapshot covers it): its data dir."""
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock(at)
    a = c.create_account(account, "starter")
    for i in range(charges):
        c.charge(a, amount=1, idem=f"{account}-{i}")
    eq(f"{account} setup: SIGTERM (a snapshot)", srv.stop(), 0)
    return srv.data_dir, a


def missing_segment_after_snapshot():
    """A refused start writes nothing: with a snapshot and the log after it deleted, the
    start stops (naming a file and an offset) before it would write a new segment or cut
    the event log (found by an audit: it did both, and the data dir no longer started
    when the segment was put back)."""
    import glob
    import subprocess
    data, a = charged_then_stopped("gone2", "2026-03-12T12:00:00Z", 3)
    wal = sorted(glob.glob(os.path.join(data, "wal", "wal-*.log")))
    with open(wal[0], "rb") as fh:
        kept = fh.read()
    os.unlink(wal[0])
    before = tree_bytes(data)
    proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                           "--clock", "manual"], capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    check("missing after snapshot: the start fails, naming a log file and an offset",
          proc.returncode > 0 and "log records are missing" in out and "wal-" in out and "offset" in out,
          (proc.returncode, out[-600:]))
    after = tree_bytes(data)
    eq("missing after snapshot: the refused start changed no file",
       sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)), [])
    with open(wal[0], "wb") as fh:
        fh.write(kept)
    srv2 = h.start(manual_clock=True, data_dir=data)
    eq("missing after snapshot: with the segment back, the state is whole", srv2.client().pool(a)["used"], 3)
    srv2.stop()
    # Without it, --repair starts from the snapshot, and the log goes on after it.
    wal = sorted(glob.glob(os.path.join(data, "wal", "wal-*.log")))
    for path in wal:
        os.unlink(path)
    srv3 = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    check("missing after snapshot, --repair: the log restarts at the snapshot's LSN, said",
          "restarts at" in srv3.output(), srv3.output()[-600:])
    c3 = srv3.client()
    eq("missing after snapshot, --repair: the snapshot's state", c3.pool(a)["used"], 3)
    r = c3.charge(a, amount=1, idem="gone2-after")
    check("missing after snapshot, --repair: a new charge", r.status == 201, r)
    eq("missing after snapshot, --repair: SIGTERM exits 0", srv3.stop(), 0)
    srv4 = h.start(manual_clock=True, data_dir=data)
    eq("missing after snapshot: the next plain start has the new charge too", srv4.client().pool(a)["used"], 4)
    srv4.stop()


def repair_skips_covered_damage():
    """--repair past damage in a log record a snapshot covers keeps every acknowledged record
    after it (it used to cut the log there, losing them, and the data dir then never
    started again: found by an audit)."""
    import glob
    import struct
    import subprocess
    data, a = charged_then_stopped("cov", "2026-03-13T12:00:00Z", 4)
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    for i in range(4, 7):
        r = c.charge(a, amount=1, idem=f"cov-{i}")
        check(f"covered damage setup: charge {i} after the snapshot", r.status == 201, r)
    srv.kill()
    wal = sorted(glob.glob(os.path.join(data, "wal", "wal-*.log")))
    with open(wal[0], "r+b") as fh:
        buf = bytearray(fh.read())
        length = struct.unpack_from("<I", buf, 40 + 8)[0]  # the first record: covered
        at = 40 + 13 + length // 2
        buf[at] ^= 0x40
        fh.seek(0)
        fh.write(buf)
    args = [h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}", "--clock", "manual"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    check("covered damage: a plain start refuses, naming the file and offset",
          proc.returncode > 0 and "offset" in proc.stdout + proc.stderr, (proc.returncode, proc.stderr[-400:]))
    srv2 = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    out = srv2.output()
    check("covered damage: --repair voids the record and says so", "voided a damaged log record" in out,
          out[-800:])
    c2 = srv2.client()
    eq("covered damage: every acknowledged charge is there", c2.pool(a)["used"], 7)
    r = c2.charge(a, amount=1, idem="cov-6")
    check("covered damage: the last charge's key replays", r.headers.get("idempotent-replayed") == "true", r)
    eq("covered damage: SIGTERM exits 0", srv2.stop(), 0)
    srv3 = h.start(manual_clock=True, data_dir=data)
    eq("covered damage: the next plain start has every charge", srv3.client().pool(a)["used"], 7)
    srv3.stop()


def snapshot_files(data):
    return sorted(os.listdir(os.path.join(data, "snapshots")))


def damage_snapshot(path):
    with open(path, "r+b") as fh:
        fh.seek(40 + 16)  # inside the state: a block checksum fails
        b = fh.read(1)
        fh.seek(40 + 16)
        fh.write(bytes([b[0] ^ 0x40]))


def repair_sets_a_damaged_snapshot_aside():
    """snapshot.h: the newest two snapshots are kept so that a damaged newest one can fall
    back to the older. A damaged one that --repair skipped must not count as one of the two:
    kept, it made the next snapshot delete the intact older one (and the log back to it),
    so that one more damaged snapshot left nothing to start from (found by an audit)."""
    import subprocess
    data, a = charged_then_stopped("snapd", "2026-03-14T12:00:00Z", 3)
    srv = h.start(manual_clock=True, data_dir=data)
    c = srv.client()
    for i in range(3, 5):
        check(f"snapshot aside setup: charge {i}", c.charge(a, amount=1, idem=f"snapd-{i}").status == 201)
    eq("snapshot aside setup: SIGTERM (a second snapshot)", srv.stop(), 0)
    snaps = snapshot_files(data)
    eq("snapshot aside setup: two snapshots", len(snaps), 2)
    older, newer = snaps
    damage_snapshot(os.path.join(data, "snapshots", newer))
    proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                           "--clock", "manual"], capture_output=True, text=True, timeout=60)
    check("damaged newest snapshot: a plain start refuses, naming it",
          proc.returncode > 0 and newer in proc.stdout + proc.stderr, (proc.returncode, proc.stderr[-400:]))
    srv2 = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    out = srv2.output()
    check("damaged newest snapshot, --repair: skipped and set aside, said",
          "skipped damaged snapshot" in out and "aside as" in out and newer + ".damaged" in out, out[-900:])
    c2 = srv2.client()
    eq("damaged newest snapshot, --repair: the older one and the log after it", c2.pool(a)["used"], 5)
    check("damaged newest snapshot, --repair: a new charge",
          c2.charge(a, amount=1, idem="snapd-5").status == 201)
    eq("damaged newest snapshot, --repair: SIGTERM (a new snapshot)", srv2.stop(), 0)
    snaps = snapshot_files(data)
    newest = [n for n in snaps if n.endswith(".snap") and n not in (older, newer)]
    eq("after the next snapshot: the intact older one is kept beside it, the damaged one aside",
       snaps, sorted([older, newer + ".damaged"] + newest))
    # One more damaged snapshot: the intact older one, and the log after it, are still there.
    damage_snapshot(os.path.join(data, "snapshots", newest[0]))
    srv3 = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    check("the newest damaged too, --repair: it loads the intact older snapshot",
          f"snapshot LSN {int(older[5:21], 16)} loaded" in srv3.output(), srv3.output()[-900:])
    c3 = srv3.client()
    eq("the newest damaged too, --repair: back to the older snapshot, every charge there", c3.pool(a)["used"], 6)
    eq("the newest damaged too, --repair: SIGTERM exits 0", srv3.stop(), 0)
    srv4 = h.start(manual_clock=True, data_dir=data)
    eq("then a plain start", srv4.client().pool(a)["used"], 6)
    srv4.stop()


def wal_records(path):
    """[start, end) of each record of a log segment (wal_format.h)."""
    import struct
    with open(path, "rb") as fh:
        buf = fh.read()
    out, pos = [], 40
    while pos + 13 <= len(buf) and buf[pos:pos + 13] != b"\0" * 13:
        length = struct.unpack_from("<I", buf, pos + 8)[0]
        out.append((pos, pos + 13 + length))
        pos += 13 + length
    return out


def charged_then_killed(account, at, charges):
    """A server with `account` (starter) charged 1 credit `charges` times, SIGKILLed (no
    snapshot): its data dir, the account and the log's first segment."""
    import glob
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock(at)
    a = c.create_account(account, "starter")
    for i in range(charges):
        check(f"{account} setup: charge {i}", c.charge(a, amount=1, idem=f"{account}-{i}").status == 201)
    srv.kill()
    wal = sorted(glob.glob(os.path.join(srv.data_dir, "wal", "wal-*.log")))
    eq(f"{account} setup: the log and its preallocated next segment", len(wal), 2)
    return srv.data_dir, a, wal


def repair_deletes_the_unused_next_segment():
    """--repair cuts the log at damage and keeps the later segments aside as *.damaged; the
    preallocated next segment holds no record and is not damage: it is deleted, not kept as
    64 MiB of zeros that nothing ever deletes (found by an audit)."""
    import subprocess
    data, a, wal = charged_then_killed("prealloc", "2026-03-15T12:00:00Z", 4)
    start, end = wal_records(wal[0])[-2]  # the third charge's record: the fourth follows it
    with open(wal[0], "r+b") as fh:
        fh.seek((start + end) // 2)
        b = fh.read(1)
        fh.seek((start + end) // 2)
        fh.write(bytes([b[0] ^ 0x40]))
    proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                           "--clock", "manual"], capture_output=True, text=True, timeout=60)
    check("damaged record: a plain start refuses", proc.returncode > 0, (proc.returncode, proc.stderr[-400:]))
    srv = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    check("damaged record, --repair: the log is cut there", "cut the log at" in srv.output(), srv.output()[-600:])
    eq("damaged record, --repair: the charges before it", srv.client().pool(a)["used"], 2)
    wal_dir = os.path.join(data, "wal")
    eq("damaged record, --repair: no *.damaged file (the next segment was unused)",
       [n for n in os.listdir(wal_dir) if n.endswith(".damaged")], [])
    eq("damaged record, --repair: SIGTERM exits 0", srv.stop(), 0)
    eq("damaged record, --repair: the segments are the log and its preallocated next one",
       sorted((n, os.path.getsize(os.path.join(wal_dir, n))) for n in os.listdir(wal_dir)),
       [(os.path.basename(wal[0]), 64 << 20), (os.path.basename(wal[1]), 64 << 20)])


def bytes_past_a_segment():
    """DESIGN.md section 3: a zero record header ends a segment's records, and a segment is
    its preallocated 64 MiB. Bytes appended past that (creditd never writes there) are cut
    and reported like a torn tail, naming the file and offset, instead of stopping the start
    as damage (found by an audit: "zero record header followed by a non-zero byte at offset
    67108864", and "bad segment magic" for the unused next segment)."""
    data, a, wal = charged_then_killed("past", "2026-03-16T12:00:00Z", 3)
    for path in wal:
        with open(path, "ab") as fh:
            fh.write(os.urandom(100) + b"\0" * 4096)
    srv = h.start(manual_clock=True, data_dir=data)
    out = srv.output()
    check("bytes past the segments: the start cuts them and names the file and offset",
          f"cut bytes past the end of a log segment at {wal[0]} offset {64 << 20}" in out, out[-900:])
    check("bytes past the unused next segment: reported too", wal[1] in out, out[-900:])
    c = srv.client()
    eq("bytes past the segments: the state is whole", c.pool(a)["used"], 3)
    eq("bytes past the segments: the segment is its 64 MiB again", os.path.getsize(wal[0]), 64 << 20)
    check("bytes past the segments: a new charge", c.charge(a, amount=1, idem="past-3").status == 201)
    eq("bytes past the segments: SIGTERM exits 0", srv.stop(), 0)
    srv2 = h.start(manual_clock=True, data_dir=data)
    check("bytes past the segments: the next start reports nothing", "past the end" not in srv2.output(),
          srv2.output()[-600:])
    eq("bytes past the segments: the next start has every charge", srv2.client().pool(a)["used"], 4)
    srv2.stop()
    # Damage inside the records is still damage, whatever lies past the segment.
    srv3 = h.start(manual_clock=True, data_dir=data)
    srv3.kill()
    start, end = wal_records(wal[0])[2]
    with open(wal[0], "r+b") as fh:
        fh.seek((start + end) // 2)
        b = fh.read(1)
        fh.seek((start + end) // 2)
        fh.write(bytes([b[0] ^ 0x40]))
    with open(wal[0], "ab") as fh:
        fh.write(b"appended")
    import subprocess
    proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                           "--clock", "manual"], capture_output=True, text=True, timeout=60)
    check("a damaged record and bytes past the segment: the start refuses at the record",
          proc.returncode > 0 and f"at offset {start}" in proc.stdout + proc.stderr,
          (proc.returncode, (proc.stdout + proc.stderr)[-600:]))


def retry_after_a_new_rate_card():
    """The same request is the same request after the rate card changed (found by an audit:
    charge and hold keys replayed 422 idempotency_key_reused after a restart with a new
    card, since the request hash held the card's price, version and pool)."""
    import tempfile
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "config", "rate_card.toml")) as fh:
        card = fh.read()
    assert "\nversion = 1\n" in card and "\nbase_mc = 500\n" in card
    card2 = card.replace("\nversion = 1\n", "\nversion = 2\n").replace("\nbase_mc = 500\n", "\nbase_mc = 900\n")
    # The new card no longer knows gpt-4o-mini: a retry is still the request it was.
    assert '\n[models."gpt-4o-mini"]\nmultiplier_milli = 300\n' in card2
    card2 = card2.replace('\n[models."gpt-4o-mini"]\nmultiplier_milli = 300\n', "\n")
    path2 = os.path.join(tempfile.mkdtemp(prefix="creditd-card-"), "rate_card.toml")
    with open(path2, "w") as fh:
        fh.write(card2)
    srv = h.start(manual_clock=True)
    c = srv.client()
    c.set_clock("2026-03-14T12:00:00Z")
    a = c.create_account("card", "pro")
    usage = {"model": "default", "input_tokens": 1000, "output_tokens": 100}
    mini = {"model": "gpt-4o-mini", "input_tokens": 3000, "output_tokens": 700}
    def the_three(cl):  # a charge priced by usage, one by amount, a hold: the same each time
        return {
            "usage": cl.charge(a, usage=usage, kind="agent_prompt", idem="card-u"),
            "amount": cl.charge(a, amount=2, kind="agent_prompt", idem="card-a"),
            "hold": cl.post(f"/v1/accounts/{a}/holds", {"idempotency_key": "card-h", "kind": "agent_prompt",
                                                        "user_id": "u1", "usage": usage}),
            "usage of a model the new card lacks": cl.charge(a, usage=mini, kind="integration.invoke_llm",
                                                             idem="card-m"),
            "amount with a usage the new card lacks": cl.charge(a, amount=1, usage=mini, kind="integration.invoke_llm",
                                                                idem="card-am"),
            "hold of a model the new card lacks": cl.post(
                f"/v1/accounts/{a}/holds", {"idempotency_key": "card-hm", "kind": "integration.invoke_llm",
                                            "user_id": "u1", "usage": mini}),
        }
    first = the_three(c)
    for name, r in first.items():
        check(f"new card setup: {name}: 201", r.status == 201, r)
    eq("new card setup: SIGTERM", srv.stop(), 0)
    srv2 = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=["--rate-card", path2])
    c2 = srv2.client()
    q = c2.post(f"/v1/accounts/{a}/quote", {"kind": "agent_prompt", "usage": usage})
    eq("new card: quotes price with version 2", q.get("rate_card_version"), 2)
    again = the_three(c2)
    for name, r in again.items():
        check(f"new card: the {name} request's key replays its first answer",
              r.status == 201 and r.headers.get("idempotent-replayed") == "true" and r.text == first[name].text,
              (r, first[name].text))
    r = c2.charge(a, amount=3, kind="agent_prompt", idem="card-a")
    check("new card: another body under the key is still 422", h.is_error(r, 422, "idempotency_key_reused"), r)
    r = c2.charge(a, usage=mini, kind="integration.invoke_llm", idem="card-m-new")
    check("new card: a new key with the model it lacks is 400 invalid_usage", h.is_error(r, 400, "invalid_usage"), r)
    srv2.stop()


def retention_while_running():
    """DESIGN.md "Events": the event log's days are deleted by age while the server runs,
    not only at its next start."""
    srv = h.start(manual_clock=True, extra_args=["--events-retain-days", "3"])
    c = srv.client()
    c.set_clock("2026-01-01T10:00:00Z")
    a = c.create_account("ret", "pro")
    for d in range(1, 9):
        c.set_clock(f"2026-01-0{d}T10:00:00Z")
        c.charge(a, amount=1, idem=f"ret-{d}")
    days = [e["at"][:10] for e in events_of(c, a, "charge")]
    eq("retention: a running server keeps the last 3 whole days and today",
       days, [f"2026-01-0{d}" for d in range(5, 9)])
    files = sorted(os.listdir(os.path.join(srv.data_dir, "events")))
    eq("retention: the older days' files are deleted", files, [f"events-2026-01-0{d}.log" for d in range(5, 9)])
    srv.stop()


def events_lost_after_snapshot():
    """DESIGN.md section 3: the event segments a snapshot counts are verified at start.
    Events a snapshot covers cannot be rebuilt from the command log (it was let go), so a
    newest event segment cut or deleted after a clean stop stops the start, naming the
    events dir; --repair goes on and says what was lost (found by an audit: the start said
    "33 events loaded" where there were 37, and usage and hot files changed)."""
    import glob
    import subprocess
    data, a = charged_then_stopped("evlost", "2026-03-12T12:00:00Z", 4)
    seg = sorted(glob.glob(os.path.join(data, "events", "events-*.log")))[-1]
    with open(seg, "rb") as fh:
        whole = fh.read()

    def refused(label):
        proc = subprocess.run([h.ARGS.creditd, "--data", data, "--listen", f"127.0.0.1:{h.free_port()}",
                               "--clock", "manual"], capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        check(f"{label}: the start fails, naming the events dir and the missing events",
              proc.returncode > 0 and "are missing" in out and os.path.join(data, "events") in out,
              (proc.returncode, out[-600:]))

    os.unlink(seg)
    before = tree_bytes(data)
    refused("event segment deleted after a snapshot")
    after = tree_bytes(data)
    eq("event segment deleted: the refused start changed no file",
       sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)), [])
    with open(seg, "wb") as fh:
        fh.write(whole[:-5])  # the last event torn
    refused("newest event cut after a snapshot")
    with open(seg, "wb") as fh:
        fh.write(whole)
    srv = h.start(manual_clock=True, data_dir=data)
    eq("event segment put back: every charge event is there",
       len(events_of(srv.client(), a, "charge")), 4)
    eq("event segment put back: SIGTERM exits 0", srv.stop(), 0)
    with open(seg, "wb") as fh:
        fh.write(whole[:-5])
    srv2 = h.start(manual_clock=True, data_dir=data, extra_args=["--repair"])
    check("newest event cut, --repair: the start says which events are lost",
          "are missing" in srv2.output() and "--repair" in srv2.output(), srv2.output()[-600:])
    c2 = srv2.client()
    eq("newest event cut, --repair: the state is whole", c2.pool(a)["used"], 4)
    eq("newest event cut, --repair: the events left", len(events_of(c2, a, "charge")), 3)
    eq("newest event cut, --repair: SIGTERM exits 0 (nothing written after the repair)", srv2.stop(), 0)
    # The loss the repair accepted is written down: a plain start goes on (found by an
    # audit: every later start was refused again until a new event was written).
    srv2 = h.start(manual_clock=True, data_dir=data)
    c2 = srv2.client()
    check("after --repair: a plain start, then a new charge", c2.charge(a, amount=1, idem="evlost-after").status == 201)
    eq("after --repair: SIGTERM exits 0", srv2.stop(), 0)
    srv3 = h.start(manual_clock=True, data_dir=data)
    eq("after --repair: the next plain start has the new charge's event",
       len(events_of(srv3.client(), a, "charge")), 4)
    srv3.stop()


def retention_keeps_newest_event():
    """Retention never deletes the day holding the newest event, even when every day is
    past its age (an idle server restarted weeks later): otherwise the next start could not
    tell a log that lost its newest events from one whose old days were let go."""
    srv = h.start(manual_clock=True, extra_args=["--events-retain-days", "3"])
    c = srv.client()
    c.set_clock("2026-01-01T10:00:00Z")
    a = c.create_account("retnew", "pro")
    c.charge(a, amount=1, idem="retnew-1")
    eq("retention, newest: SIGTERM exits 0", srv.stop(), 0)
    srv2 = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=["--events-retain-days", "3"])
    c2 = srv2.client()
    c2.set_clock("2026-01-20T10:00:00Z")
    # A logged batch past every day's age that makes no event (retention runs after it).
    r = c2.put(f"/v1/accounts/{a}/cache/k1", {"kind": "integration.invoke_llm", "response": {"x": 1}})
    eq("retention, newest: a cache entry is stored (a batch without events)", r.status, 204)
    eq("retention, newest: the day of the newest charge is kept",
       [e["at"][:10] for e in events_of(c2, a, "charge")], ["2026-01-01"])
    eq("retention, newest: SIGTERM exits 0 again", srv2.stop(), 0)
    srv3 = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=["--events-retain-days", "3"])
    eq("retention, newest: the next start is not refused", srv3.client().pool(a)["used"], 1)
    srv3.stop()


def capacity_flags_after_a_crash():
    """DESIGN.md section 3: replaying the log never reads a config file, so a restart can
    never change an acknowledged answer. A capacity flag is configuration: a 409
    limit_reached acknowledged under --live-grants-per-pool-max 2 stays refused when the
    log is replayed after a SIGKILL by a start with the default (found by an audit: the
    replay applied the refused pack, and the balance and the event log disagreed)."""
    srv = h.start(manual_clock=True, extra_args=["--live-grants-per-pool-max", "2"])
    c = srv.client()
    c.set_clock("2026-03-01T00:00:00Z")
    a = c.create_account("capf", "enterprise")

    def pack(cl, k):
        return cl.post(f"/v1/accounts/{a}/packs", {"pool": "credits", "credits": 1, "idempotency_key": k})

    eq("capacity: two packs", [pack(c, "p0").status, pack(c, "p1").status], [201, 201])
    third = pack(c, "p2")
    check("capacity: the third is 409 limit_reached", is_error(third, 409, "limit_reached"), third)
    extra = c.pool(a)["extra"]
    srv.kill()
    srv2 = h.start(manual_clock=True, data_dir=srv.data_dir)  # the default capacity, 256
    c2 = srv2.client()
    r = pack(c2, "p2")
    check("capacity after SIGKILL and other flags: the refusal replays as 409",
          is_error(r, 409, "limit_reached") and r.headers.get("idempotent-replayed") == "true", r)
    eq("capacity after SIGKILL and other flags: the balance is the one acknowledged", c2.pool(a)["extra"], extra)
    eq("capacity after SIGKILL and other flags: the new flag applies from this start", pack(c2, "p3").status, 201)
    check("capacity: the start says the flags changed", "capacity flags changed" in srv2.output(),
          srv2.output()[-600:])
    srv2.kill()
    srv3 = h.start(manual_clock=True, data_dir=srv.data_dir, extra_args=["--live-grants-per-pool-max", "2"])
    c3 = srv3.client()
    eq("capacity, third start: p2 refused and p3 kept",
       (pack(c3, "p2").status, pack(c3, "p3").status, c3.pool(a)["extra"]), (409, 201, extra + 1))
    eq("capacity, third start: SIGTERM exits 0 (a snapshot holds the flags)", srv3.stop(), 0)
    srv4 = h.start(manual_clock=True, data_dir=srv.data_dir)
    c4 = srv4.client()
    eq("capacity after a snapshot: the answers stand", (pack(c4, "p2").status, c4.pool(a)["extra"]), (409, extra + 1))
    srv4.stop()


def refused_starts_write_nothing():
    """A second creditd on a data dir in use is refused by the lock before it writes anything:
    it used to rewrite analytics/alert_rules.log (dropping a torn last line, which may be a
    line the running server is writing) before the lock refused it. A start refused because
    its port is in use creates no data dir and no admin key."""
    import subprocess
    srv = h.start(manual_clock=True)
    rules = os.path.join(srv.data_dir, "analytics", "alert_rules.log")
    os.makedirs(os.path.dirname(rules), exist_ok=True)
    with open(rules, "ab") as f:
        f.write(b'{"partial')  # as if the running server were writing this line now
    before = (os.stat(rules).st_ino, open(rules, "rb").read())
    tree = tree_bytes(srv.data_dir)
    p = subprocess.run([h.ARGS.creditd, "--data", srv.data_dir, "--listen", f"127.0.0.1:{h.free_port()}"],
                       capture_output=True, text=True, timeout=60)
    check("a second creditd on the dir: exit 2, in use", p.returncode == 2 and "in use" in p.stderr,
          (p.returncode, p.stderr))
    eq("and the running server's files are as they were (the torn line too)",
       (os.stat(rules).st_ino, open(rules, "rb").read()), before)
    eq("and no other file changed", tree_bytes(srv.data_dir), tree)
    fresh = os.path.join(os.path.dirname(srv.data_dir), os.path.basename(srv.data_dir) + "-refused")
    p = subprocess.run([h.ARGS.creditd, "--data", fresh, "--listen", f"127.0.0.1:{srv.port}"],
                       capture_output=True, text=True, timeout=60)
    check("a start on a port in use: exit 2", p.returncode == 2, (p.returncode, p.stderr))
    check("and it created no data dir (no admin key)", not os.path.exists(fresh), os.listdir(fresh)
          if os.path.exists(fresh) else "")
    srv.stop()


for section in (race, restart, sigterm_during_recovery, sigterm_grace, torn_last_record, missing_first_segment,
                missing_segment_after_snapshot, repair_skips_covered_damage, repair_sets_a_damaged_snapshot_aside,
                repair_deletes_the_unused_next_segment, bytes_past_a_segment, retry_after_a_new_rate_card,
                retention_while_running, events_lost_after_snapshot, retention_keeps_newest_event,
                capacity_flags_after_a_crash, refused_starts_write_nothing):
    h.run_section(section)
h.finish()
