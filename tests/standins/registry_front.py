"""A STAND-IN front for the real test registry (tests/registry.py), for fault
tests of the static-credentials check.

Why: Debian's docker-registry cannot be told to fail, throttle, hang or answer
garbage. This front speaks TLS with the real registry's own certificate (so
the test CA verifies it) and, in mode "ok", relays every request to the real
registry unchanged; in the other modes it fails the way a broken registry or
proxy does:

  ok | error503 | throttle (429) | hang | truncated (body shorter than its
  Content-Length) | garbage (not HTTP at all) | huge (64 MiB announced)

Control (tests only): configure(mode=...); calls.
"""

import ssl
import threading
import time
import urllib.error
import urllib.request

from .base import QuietHandler, start, tls_server_context


class RegistryFront:
    def __init__(self, registry):
        self.lock = threading.Lock()
        self.mode = "ok"
        self.calls = []
        upstream = f"https://{registry.host}"
        client_ctx = ssl.create_default_context(cafile=str(registry.ca))
        front = self

        class H(QuietHandler):
            def do_GET(self):
                with front.lock:
                    mode = front.mode
                    front.calls.append({"path": self.path, "time": time.time()})
                if mode == "hang":
                    time.sleep(60)
                    return
                if mode == "garbage":
                    self.wfile.write(b"this is not HTTP at all\r\n\r\n")
                    self.close_connection = True
                    return
                if mode in ("error503", "throttle"):
                    return self.reply(503 if mode == "error503" else 429, b'{"errors":[]}', None)
                if mode == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Length", "4096")
                    self.end_headers()
                    self.wfile.write(b'{"repositories": [')
                    self.close_connection = True
                    return
                if mode == "huge":
                    self.send_huge()
                    self.close_connection = True
                    return
                # ok: relay to the real registry
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "accept")}
                req = urllib.request.Request(upstream + self.path, headers=headers)
                try:
                    with urllib.request.urlopen(req, context=client_ctx, timeout=10) as r:
                        status, rh, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, rh, body = e.code, e.headers, e.read()
                self.reply(status, body, None, {k: v for k, v in rh.items() if k.lower() in ("www-authenticate", "content-type", "docker-distribution-api-version")})

        self.server = start(H, tls_server_context(registry.root / "server.pem", registry.root / "server.key"))
        self.port = self.server.port
        self.host = self.server.host

    def configure(self, mode):
        with self.lock:
            self.mode = mode

    def call_count(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.server.close()
