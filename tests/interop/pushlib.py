"""Fake Google endpoints for push_wake (docs/protocol.md §9): a test CA, a service-account key,
and threaded HTTPS servers standing in for the OAuth2 token endpoint and FCM, recording every
request. Used by tests/interop/test_push.py and scripts/push-bench.py; loopback only."""

import base64
import datetime
import http.server
import ipaddress
import json
import socketserver
import ssl
import sys
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import free_port


# ---------------------------------------------------------------------------------------------
# Test PKI and the service-account key
# ---------------------------------------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key, ca_cert, directory, stem):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = f"{directory}/{stem}.pem", f"{directory}/{stem}.key"
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def make_pki():
    d = tempfile.mkdtemp(prefix="push-pki-")
    ca_key, ca_cert = _ca("push test CA")
    rogue_key, rogue_cert = _ca("rogue CA")
    with open(f"{d}/ca.pem", "wb") as f:
        f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    return {"ca": f"{d}/ca.pem", "trusted": _leaf(ca_key, ca_cert, d, "trusted"),
            "rogue": _leaf(rogue_key, rogue_cert, d, "rogue")}


def make_account_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_json(private_key, token_uri):
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "pyrycode-mobile", "private_key_id": "k1",
                       "private_key": pem, "client_email": "relay@pyrycode-mobile.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": token_uri})


def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# ---------------------------------------------------------------------------------------------
# Fake HTTPS servers
# ---------------------------------------------------------------------------------------------

class FakeServer:
    """A threaded HTTPS/1.1 server (keep-alive) that records each request and answers through
    `self.answer(request) -> (status, body bytes)`, or holds it open while `self.hold` is set.
    `delay` seconds pass before each answer. TLS handshakes run in the per-connection thread;
    `connections` counts the completed ones, `handshake_failures` the others."""

    def __init__(self, cert, answer):
        self.port = free_port()
        self.answer = answer
        self.delay = 0.0
        self.hold = False
        self.requests = []
        self.handshake_failures = 0
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self.released = threading.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*cert)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                req = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                       "header_names": list(self.headers.keys()), "body": body, "at": time.monotonic()}
                with fake.lock:
                    fake.requests.append(req)
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                try:
                    if fake.hold:
                        fake.released.wait(30)
                        self.close_connection = True
                        return
                    if fake.delay:
                        time.sleep(fake.delay)
                    status, out = fake.answer(req)
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                finally:
                    with fake.lock:
                        fake.active -= 1

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def finish_request(self, request, client_address):
                try:
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    with fake.lock:
                        fake.handshake_failures += 1
                    return
                with fake.lock:
                    fake.connections += 1
                super().finish_request(tls, client_address)

            def handle_error(self, request, client_address):
                # The relay going away mid-answer (a test stopping it) is not an error of the fake.
                if not isinstance(sys.exc_info()[1], OSError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class Google:
    """The token endpoint and FCM, with switchable behaviour."""

    def __init__(self, pki, fcm_cert="trusted"):
        self.issued = 0
        self.token_mode = "ok"
        self.fcm_mode = "ok"
        self.oauth = FakeServer(pki["trusted"], self._token)
        self.fcm = FakeServer(pki[fcm_cert], self._fcm)

    def _token(self, req):
        if self.token_mode == "500":
            return 500, b'{"error":"internal_failure"}'
        if self.token_mode == "garbage":
            return 200, b"<html>not json"
        self.issued += 1
        return 200, json.dumps({"access_token": f"ya29.test-{self.issued}", "expires_in": 3599,
                                "token_type": "Bearer"}).encode()

    def _fcm(self, req):
        if self.fcm_mode == "unregistered":
            return 404, json.dumps({"error": {"code": 404, "message": "Requested entity was not found.",
                                              "status": "NOT_FOUND", "details": [
                                                  {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                                   "errorCode": "UNREGISTERED"}]}}).encode()
        if self.fcm_mode == "huge":
            return 200, b'{"name":"' + b"x" * 8192 + b'"}'
        return 200, b'{"name":"projects/pyrycode-mobile/messages/0:1700000000%abc"}'

    def close(self):
        self.oauth.close()
        self.fcm.close()
