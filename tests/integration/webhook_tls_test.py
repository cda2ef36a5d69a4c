"""Webhooks over TLS (issue 6): creditd delivers an alert to an https receiver on
127.0.0.1 whose certificate it verifies (a throwaway CA made here with the openssl
command, trusted through SSL_CERT_FILE, which OpenSSL's default verify paths read), with
the HMAC-SHA256 signature and the delivery id of API.md; a receiver whose certificate is
not trusted gets nothing, and the alert stays queued."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SECRET = "whsec-tls-1"
ACCT = "tls"
WORK = tempfile.mkdtemp(prefix="creditd-tls-")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_cert(name):
    """A CA and a leaf certificate for IP 127.0.0.1 signed by it; returns (ca, cert, key)."""
    ca_key, ca = f"{WORK}/{name}-ca.key", f"{WORK}/{name}-ca.pem"
    key, csr, cert = f"{WORK}/{name}.key", f"{WORK}/{name}.csr", f"{WORK}/{name}.pem"
    ext = f"{WORK}/{name}.ext"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "2", "-subj", f"/CN=creditd test CA {name}")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", ext)
    return ca, cert, key


class TlsReceiver:
    """Records every delivery (id, body, signature ok) and answers 204."""

    def __init__(self, cert, key):
        self.received = []
        self.lock = threading.Lock()
        self.server = h.WebhookReceiver(SECRET, self.on_delivery, tls=(cert, key))
        self.port = self.server.port

    def on_delivery(self, delivery_id, body, signature_ok, signature):
        with self.lock:
            self.received.append((delivery_id, body, signature_ok))
        return 204

    def wait(self, n, timeout_s=15):
        end = time.time() + timeout_s
        while time.time() < end:
            with self.lock:
                if len(self.received) >= n:
                    return list(self.received)
            time.sleep(0.05)
        with self.lock:
            return list(self.received)


trusted_ca, cert, key = make_cert("trusted")
_, other_cert, other_key = make_cert("untrusted")  # signed by a CA creditd does not know
good = TlsReceiver(cert, key)
bad = TlsReceiver(other_cert, other_key)
os.environ["SSL_CERT_FILE"] = trusted_ca  # inherited by creditd
srv = h.start(extra_args=["--allow-local-webhooks"])
admin = srv.client()


def delivered_over_tls():
    admin.create_account(ACCT, plan="starter")
    admin.create_account("tls2", plan="starter")
    for acct, port in ((ACCT, good.port), ("tls2", bad.port)):
        r = admin.put(f"/v1/accounts/{acct}/alert-rules",
                      {"thresholds": [50], "webhook_url": f"https://127.0.0.1:{port}/hook",
                       "webhook_secret": SECRET})
        h.eq(f"alert-rules: an https URL on 127.0.0.1 is accepted with --allow-local-webhooks ({acct})",
             r.status, 200)
        allowance = float(admin.account(acct)["pools"]["credits"]["allowance"])
        r = admin.charge(acct, amount=allowance * 0.6)
        h.eq(f"a charge past 50 % ({acct})", r.status, 201)
    got = good.wait(1)
    h.eq("tls: one alert delivered to the trusted receiver", len(got), 1)
    if got:
        delivery_id, body, sig_ok = got[0]
        h.check("tls: the signature verifies", sig_ok, body)
        h.eq("tls: the body names the account and the rule", (body.get("account_id"), body.get("rule")),
             (ACCT, "threshold"))
        h.eq("tls: Creditd-Delivery-Id is the alert id", delivery_id, body.get("alert_id"))
        alerts = admin.get(f"/v1/accounts/{ACCT}/alerts").get("alerts") or []
        h.eq("tls: the delivered alert is the listed one", [a.get("alert_id") for a in alerts], [delivery_id])
    time.sleep(1.0)
    h.eq("tls: a receiver with an untrusted certificate gets nothing", bad.wait(1, timeout_s=1), [])
    alerts = admin.get("/v1/accounts/tls2/alerts").get("alerts") or []
    h.eq("tls: the undelivered alert is still recorded", len(alerts), 1)


try:
    h.run_section(delivered_over_tls)
finally:
    srv.stop()
    good.server.shutdown()
    bad.server.shutdown()
    shutil.rmtree(WORK, ignore_errors=True)
h.finish()
