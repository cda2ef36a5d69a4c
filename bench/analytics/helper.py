#!/usr/bin/env python3
"""bench/analytics/helper.py: the parts of bench/analytics/run.sh that are easier in Python
(standard library only).

  clock URL ADMIN_KEY AT                 POST /v1/admin/clock {"now": AT}
  setup URL ADMIN_KEY ACCOUNTS PLAN      a service key and accounts acct-001..acct-N on PLAN
                                         (at the clock's now); prints the service key
  import URL ADMIN_KEY FILE MODE         POST /v1/admin/import?mode=MODE with FILE as the body;
                                         prints "seconds imported rejected" (errors to stderr)
  latency URL KEY ACCOUNTS REQUESTS OUT  REQUESTS GETs of every analytics route over one
                                         keep-alive connection, each request on the next
                                         account (acct-001, acct-002, ...); writes OUT (TSV:
                                         route, p50 ms, p99 ms, max ms, mean bytes) and prints it
  used URL KEY                           total credits used over all accounts
  wrk FILE                               -> "rps p50_ms p99_ms errors" from wrk --latency output
  table RESULTS.tsv LATENCY.tsv [WHAT]   the figures as markdown tables
"""
import concurrent.futures
import http.client
import json
import os
import re
import statistics
import sys
import time
import urllib.parse

# `used` and `parse_wrk` are bench/http's: the same charges, the same wrk output.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
from helper import parse_wrk, used  # noqa: E402  (bench/http/helper.py)

ROUTES = [
    ("usage?group_by=kind", "usage by kind"),
    ("usage?group_by=user", "usage by user"),
    ("usage?group_by=file", "usage by file"),
    ("usage?group_by=feature", "usage by feature"),
    ("usage?group_by=model", "usage by model"),
    ("usage?group_by=call_site", "usage by call_site"),
    ("usage?group_by=day", "usage by day"),
    ("usage?group_by=week", "usage by week"),
    ("hot-files", "hot-files"),
    ("burn", "burn"),
    ("forecast", "forecast"),
]
TARGET_MS = 10.0


def connect(url, timeout=60):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def call(conn, method, path, key, body=None):
    headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


def acct(i):
    return f"acct-{i:03d}"


def clock(url, admin, at):
    call(connect(url), "POST", "/v1/admin/clock", admin, {"now": at})


def setup(url, admin, n, plan):
    conn = connect(url)
    svc = call(conn, "POST", "/v1/keys", admin,
               {"idempotency_key": "bench-service", "role": "service", "label": "bench"})["key"]

    def create(ids):
        c = connect(url)
        for i in ids:
            call(c, "POST", "/v1/accounts", admin,
                 {"account_id": acct(i), "plan": plan, "idempotency_key": f"create-{i}"})

    workers = 16
    chunks = [list(range(w + 1, n + 1, workers)) for w in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        list(ex.map(create, chunks))
    print(svc)


def do_import(url, admin, path, mode):
    # Streamed as bench/import/send.py sends it (64 KiB pieces, chunked).
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "import"))
    from send import send  # noqa: E402
    secs, imported, rejected = send(url, admin, path, mode, 64 * 1024)
    print(f"{secs:.1f} {imported} {rejected}")


def pct(sorted_ms, p):
    # nearest rank
    k = max(0, min(len(sorted_ms) - 1, int(round(p * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


def latency(url, key, accounts, n, out):
    conn = connect(url)
    rows = []
    for route, label in ROUTES:
        # Warm-up: 20 requests (connection, allocator, caches), not counted.
        for i in range(20):
            call(conn, "GET", f"/v1/accounts/{acct(i % accounts + 1)}/{route}", key)
        times, size = [], 0
        for i in range(n):
            path = f"/v1/accounts/{acct(i % accounts + 1)}/{route}"
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": "Bearer " + key})
            r = conn.getresponse()
            data = r.read()
            t1 = time.perf_counter()
            if r.status != 200:
                raise SystemExit(f"GET {path}: {r.status} {data[:300]!r}")
            times.append((t1 - t0) * 1e3)
            size += len(data)
        times.sort()
        rows.append((label, pct(times, 0.50), pct(times, 0.99), times[-1], size // n))
    with open(out, "w") as f:
        for r in rows:
            f.write(f"{r[0]}\t{r[1]:.3f}\t{r[2]:.3f}\t{r[3]:.3f}\t{r[4]}\n")
    for r in rows:
        print(f"{r[0]:<20} p50 {r[1]:7.3f} ms  p99 {r[2]:7.3f} ms  max {r[3]:7.3f} ms  {r[4]} B")


def table(results, lat, what):
    out = [f"| route ({what}) | p50 ms | p99 ms | max ms | answer bytes | p99 ≤ 10 ms |",
           "|---|---|---|---|---|---|"]
    for line in open(lat):
        label, p50, p99, mx, size = line.rstrip("\n").split("\t")
        ok = "met" if float(p99) <= TARGET_MS else "**missed**"
        out.append(f"| `{label}` | {float(p50):.2f} | {float(p99):.2f} | {float(mx):.2f} | {int(size):,} | {ok} |")
    out.append("")
    rows = {}
    for line in open(results):
        f = line.rstrip("\n").split("\t")
        rnd, case, rate, p50, p99, errors = f[:6]
        m = re.search(r"cpu_us_per_charge=([\d.]+)", f[6] if len(f) > 6 else "")
        cpu = float(m.group(1)) if m else float("nan")
        rows.setdefault(case, []).append((float(rate), float(p50), float(p99), int(errors), cpu))
    names = {"loaded": f"loaded: {what} (full rollups)",
             "fresh": "fresh: the same accounts, no history"}
    out.append("| durable single charges | charges/s (median) | rounds (charges/s) | p50 ms | p99 ms | server CPU µs/charge | errors |")
    out.append("|---|---|---|---|---|---|---|")
    med = {}
    for case in ("loaded", "fresh"):
        if case not in rows:
            continue
        r = rows[case]
        med[case] = statistics.median(x[0] for x in r)
        out.append(f"| {names[case]} | {med[case]:,.0f} | {' / '.join(f'{x[0]:,.0f}' for x in r)} | "
                   f"{statistics.median(x[1] for x in r):.2f} | {statistics.median(x[2] for x in r):.2f} | "
                   f"{statistics.median(x[4] for x in r):.1f} | {sum(x[3] for x in r)} |")
    if "loaded" in med and "fresh" in med and med["fresh"] > 0:
        cpu_l = statistics.median(x[4] for x in rows["loaded"])
        cpu_f = statistics.median(x[4] for x in rows["fresh"])
        out.append("")
        out.append(f"loaded / fresh: {med['loaded'] / med['fresh']:.3f}× in charges/s, "
                   f"{cpu_l / cpu_f:.3f}× in server CPU per charge (target for analytics on vs off: within 10 %)")
    print("\n".join(out))


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, a = sys.argv[1], sys.argv[2:]
    if cmd == "clock":
        clock(a[0], a[1], a[2])
    elif cmd == "setup":
        setup(a[0], a[1], int(a[2]), a[3])
    elif cmd == "import":
        do_import(a[0], a[1], a[2], a[3])
    elif cmd == "latency":
        latency(a[0], a[1], int(a[2]), int(a[3]), a[4])
    elif cmd == "used":
        used(a[0], a[1])
    elif cmd == "wrk":
        parse_wrk(a[0])
    elif cmd == "table":
        table(a[0], a[1], a[2] if len(a) > 2 else "1,000 accounts, 1 M events loaded")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
