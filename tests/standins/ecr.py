"""A STAND-IN for the Amazon ECR and ECR Public APIs (GetAuthorizationToken only).

Why a stand-in when moto exists: moto's ECR tokens carry an expiry in 2015, and
moto cannot count calls, delay, throttle, hang or answer garbage on demand. The
cache, single-flight and fault tests need all of that. Tests that only need a
real-shaped answer use moto itself (see conftest.moto).

Wire format (AWS JSON 1.1, as the SDK sends it):
  POST /   X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken
           X-Amz-Target: SpencerFrontendService.GetAuthorizationToken   (ECR Public)
  200 {"authorizationData":[{"authorizationToken": base64("AWS:<token>"),
                              "expiresAt": <epoch seconds>, "proxyEndpoint": ...}]}
  errors: {"__type": "<Code>", "message": "..."} with x-amzn-ErrorType.

Control (tests only): POST /_standin/config {mode, expires_in, delay, fail_first}
  modes: ok | error500 | throttle (400 ThrottlingException) | http429 (the same
  with HTTP 429) | denied | garbage | truncated | huge (64 MiB announced) |
  empty | hang
                      GET  /_standin/calls

Each call records the SigV4 signer: `access_key_id` (from the Authorization
header's `Credential=<AKID>/<date>/<region>/<service>/aws4_request`) and
`session_token` (the X-Amz-Security-Token header, None when absent), so a
test can tell temporary credentials (an assumed role) from the node's keys.
"""

import base64
import json
import re
import secrets
import threading
import time

from .base import QuietHandler, start

PRIVATE_TARGET = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
PUBLIC_TARGET = "SpencerFrontendService.GetAuthorizationToken"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
ACCESS_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")


class EcrStandin:
    """Runs on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, on_token=None):
        self.lock = threading.Lock()
        self.config = {"mode": "ok", "expires_in": 12 * 3600, "delay": 0.0, "fail_first": 0}
        self.calls = []
        self.tokens = []
        self.on_token = on_token
        standin = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path == "/_standin/calls":
                    with standin.lock:
                        body = json.dumps({"calls": list(standin.calls)}).encode()
                    return self.reply(200, body, "application/json")
                self.reply(404, b"{}", "application/json")

            def do_POST(self):
                raw = self.read_body()
                if self.path == "/_standin/config":
                    with standin.lock:
                        standin.config.update(json.loads(raw or b"{}"))
                    return self.reply(200, b"{}", "application/json")
                standin.handle_api(self, raw)

        self.server = start(Handler)
        self.port = self.server.port
        self.url = self.server.url
        self.thread = self.server.thread

    def configure(self, **kw):
        with self.lock:
            self.config.update(kw)

    def call_count(self):
        with self.lock:
            return len(self.calls)

    def close(self):
        self.server.close()

    def handle_api(self, h, raw):
        target = h.headers.get("X-Amz-Target", "")
        auth = h.headers.get("Authorization", "")
        m = SCOPE.search(auth)
        akid = ACCESS_KEY_ID.search(auth)
        with self.lock:
            cfg = dict(self.config)
            n = len(self.calls)
            self.calls.append(
                {
                    "target": target,
                    "region": m.group(1) if m else None,
                    "service": m.group(2) if m else None,
                    "host": h.headers.get("Host"),
                    "access_key_id": akid.group(1) if akid else None,
                    "session_token": h.headers.get("X-Amz-Security-Token"),
                    "time": time.time(),
                }
            )
        if cfg["delay"]:
            time.sleep(cfg["delay"])
        mode = cfg["mode"]
        if n < cfg.get("fail_first", 0):
            mode = cfg.get("fail_mode", "error500")
        if target not in (PRIVATE_TARGET, PUBLIC_TARGET):
            return self.error(h, 400, "UnknownOperationException", "unknown target")
        if mode == "hang":
            time.sleep(300)
            return
        if mode == "error500":
            return self.error(h, 500, "ServerException", "internal failure")
        if mode == "throttle":
            return self.error(h, 400, "ThrottlingException", "Rate exceeded")
        if mode == "http429":
            return self.error(h, 429, "ThrottlingException", "Rate exceeded")
        if mode == "denied":
            return self.error(h, 400, "AccessDeniedException", "not authorized to perform ecr:GetAuthorizationToken")
        if mode == "garbage":
            return h.reply(200, b"<html>this is not json</html>", "application/x-amz-json-1.1")
        if mode == "truncated":
            return h.reply(200, b'{"authorizationData":[{"authorizationTo', "application/x-amz-json-1.1")
        if mode == "huge":
            return h.send_huge("application/x-amz-json-1.1")
        if mode == "empty":
            return h.reply(200, b'{"authorizationData":[]}', "application/x-amz-json-1.1")
        token = "standin-" + secrets.token_hex(24)
        with self.lock:
            self.tokens.append(token)
        if self.on_token:
            self.on_token(token)
        data = {
            "authorizationToken": base64.b64encode(f"AWS:{token}".encode()).decode(),
            "expiresAt": time.time() + float(cfg["expires_in"]),
        }
        if target == PRIVATE_TARGET:
            data["proxyEndpoint"] = "https://standin.invalid"
            body = {"authorizationData": [data]}
        else:
            body = {"authorizationData": data}
        h.reply(200, json.dumps(body).encode(), "application/x-amz-json-1.1")

    @staticmethod
    def error(h, status, code, message):
        body = json.dumps({"__type": code, "message": message}).encode()
        h.reply(status, body, "application/x-amz-json-1.1", {"x-amzn-ErrorType": code})
