#!/usr/bin/env python3
"""bench/import/send.py URL ADMIN_KEY FILE MODE PIECE_BYTES: streams FILE to
POST /v1/admin/import?mode=MODE with Transfer-Encoding: chunked, PIECE_BYTES read from the
file per chunk (the client holds one piece, never the file), and prints
"seconds imported rejected" (the first errors go to stderr). Standard library only.
"""
import http.client
import json
import sys
import time
import urllib.parse


def send(url, admin, path, mode, piece_bytes):
    """Streams the file; returns (seconds, imported, rejected), the first errors on stderr."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=7200)
    t0 = time.monotonic()
    conn.putrequest("POST", f"/v1/admin/import?mode={mode}")
    conn.putheader("Authorization", "Bearer " + admin)
    conn.putheader("Content-Type", "application/x-ndjson")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    with open(path, "rb") as f:
        while True:
            piece = f.read(int(piece_bytes))
            if not piece:
                break
            conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
    conn.send(b"0\r\n\r\n")
    r = conn.getresponse()
    data = r.read()
    secs = time.monotonic() - t0
    if r.status != 200:
        raise SystemExit(f"import: {r.status} {data[:500]!r}")
    res = json.loads(data)
    if res["errors"]:
        print(f"import: first errors: {res['errors'][:5]}", file=sys.stderr)
    return secs, res["imported"], res["rejected"]


def main():
    url, admin, path, mode, piece_bytes = sys.argv[1:6]
    secs, imported, rejected = send(url, admin, path, mode, piece_bytes)
    print(f"{secs:.2f} {imported} {rejected}")


if __name__ == "__main__":
    main()
