#!/usr/bin/env python3
"""Restart from snapshots: with a small --snapshot-wal-bytes the server snapshots while it
takes charges; after SIGKILL (and after a clean SIGTERM) every acknowledged charge is
present exactly once, balances are equal, idempotent replays answer the stored reply, and
the event log under DATA/events holds a segment for the day. The snapshots are rebuilt
from the log by a worker process (not forked from the server), and a SIGKILL leaves no
process behind on the data dir: neither the worker nor the helper that forks it.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import D, check, eq  # noqa: E402

ACCOUNTS = 5
CHARGES = 300
SNAPSHOT_ARGS = ["--snapshot-wal-bytes", "20000"]


def charge_all(c, accounts, start, count):
    done = {}
    for i in range(start, start + count):
        a = accounts[i % len(accounts)]
        k = f"snap-charge-{i}"
        r = c.charge(a, amount=D("1.5"), idem=k, metadata={"file": f"src/f{i % 4}.tsx"})
        check(f"charge {i} acknowledged", r.status == 201, r)
        done[k] = (a, r.text)
    return done


def views(c, accounts):
    return {a: c.account(a) for a in accounts}


def replays_answer(c, done, label):
    bad = []
    for k, (a, text) in done.items():
        r = c.charge(a, amount=D("1.5"), idem=k, metadata={"file": f"src/f{int(k.rsplit('-', 1)[1]) % 4}.tsx"})
        if r.status != 201 or r.text != text or r.headers.get("idempotent-replayed") != "true":
            bad.append((k, r.status, r.text[:200]))
    eq(f"{label}: every acknowledged charge replays its stored answer", bad, [])


def wait_snapshots_replayed(c, at_least, wait_s=60.0):
    """creditd_snapshots_replayed_total once it reaches at_least (or after wait_s)."""
    deadline = time.time() + wait_s
    while True:
        m = c.get("/metrics", key=None)
        lines = [line for line in m.text.splitlines() if line.startswith("creditd_snapshots_replayed_total ")]
        n = int(lines[0].split()[1]) if len(lines) == 1 else -1
        if n >= at_least or time.time() > deadline:
            return n
        time.sleep(0.05)


def snapshot_files(data):
    d = os.path.join(data, "snapshots")
    return sorted(f for f in os.listdir(d) if f.endswith(".snap")) if os.path.isdir(d) else []


def processes_on(data, wait_s=5.0):
    """Pids of live processes whose command line names `data` (waits up to wait_s for them to go)."""
    deadline = time.time() + wait_s
    while True:
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().split(b"\0")
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if data.encode() in cmdline and state != "Z":
                pids.append(int(pid))
        if not pids or time.time() > deadline:
            return pids
        time.sleep(0.05)


def main():
    srv = h.start(manual_clock=True, extra_args=SNAPSHOT_ARGS)
    data = srv.data_dir
    c = srv.client()
    c.set_clock("2026-03-10T12:00:00Z")
    accounts = [c.create_account(f"snap{i}", "pro") for i in range(ACCOUNTS)]
    done = charge_all(c, accounts, 0, CHARGES)
    before = views(c, accounts)
    # 300 charges of 1.5 over 5 accounts: 90 credits used by each of 10,000.
    eq("before the crash: each account used 90", [before[a]["pools"]["credits"]["used"] for a in accounts],
       [90] * ACCOUNTS)
    # The charges ask for snapshots; a worker takes each in the background, and on a
    # loaded machine the first may end after the last charge. The server counts one once
    # its file is in place.
    replayed = wait_snapshots_replayed(c, 1)
    check("metrics: the snapshots rebuilt by a worker are counted", replayed >= 1, replayed)
    snaps = snapshot_files(data)
    check("snapshots were taken while charging", len(snaps) >= 1, snaps)
    check("at most two snapshots are kept", len(snaps) <= 2, snaps)
    events = os.listdir(os.path.join(data, "events"))
    eq("the event log has the day's segment", events, ["events-2026-03-10.log"])

    check("the snapshots were rebuilt from the log by a worker",
          "rebuilt the state from the log" in srv.output() and "forked in" not in srv.output(),
          srv.output()[-2000:])
    eq("SIGKILL", srv.kill(), -signal.SIGKILL)
    # The helper sees the server's end of its socket close and exits, killing a worker in
    # flight first: nothing is left running on the data dir.
    eq("after SIGKILL: no process left on the data dir", processes_on(data), [])
    srv = h.start(manual_clock=True, data_dir=data, extra_args=SNAPSHOT_ARGS)
    c = srv.client()
    eq("after SIGKILL: balances equal", views(c, accounts), before)
    replays_answer(c, done, "after SIGKILL")
    eq("after SIGKILL: the replays changed nothing", views(c, accounts), before)

    more = charge_all(c, accounts, CHARGES, 50)
    done.update(more)
    after_more = views(c, accounts)
    eq("SIGTERM exits 0", srv.stop(), 0)
    srv = h.start(manual_clock=True, data_dir=data, extra_args=SNAPSHOT_ARGS)
    c = srv.client()
    eq("after SIGTERM: balances equal", views(c, accounts), after_more)
    eq("after SIGTERM: each account used 105", [after_more[a]["pools"]["credits"]["used"] for a in accounts],
       [105] * ACCOUNTS)
    replays_answer(c, done, "after SIGTERM")
    r = c.get(f"/v1/accounts/{accounts[0]}/events?limit=1000")
    if r.status == 200 and isinstance(r.get("events"), list):
        charges = [e for e in r["events"] if e.get("type") == "charge"]
        eq("after restarts: the events list every charge once", len(charges), (CHARGES + 50) // ACCOUNTS)
    srv.stop()


if __name__ == "__main__":
    h.run_section(main)
    h.finish()
