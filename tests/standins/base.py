"""The HTTP scaffolding every stand-in shares (no stand-in itself).

QuietHandler: a BaseHTTPRequestHandler speaking HTTP/1.1 with TCP_NODELAY,
no access log, read_body(), reply() and send_huge().
QuietServer: a ThreadingHTTPServer that neither prints client errors nor
waits for its handlers on close.
start(): one of those on 127.0.0.1:<free port>, optionally TLS, serving in a
daemon thread, with .port, .host, .url and .thread set.
b64url(), b64url_decode(): JWT's unpadded base64url (RFC 7515 section 2).
"""

import base64
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle holds the
        # body until the client's delayed ACK (~40 ms a call on loopback),
        # which real servers do not cost pullcred.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status, body, ctype="application/json", headers=None):
        """Sends `body` (bytes, str, or a dict or list sent as JSON) with its
        Content-Type (none when `ctype` is None), Content-Length and
        `headers`."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if ctype is not None:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_huge(self, ctype="application/json", headers=None):
        """Announces 64 MiB and streams spaces until the client gives up."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(64 << 20))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            chunk = b" " * 65536
            for _ in range(1024):
                self.wfile.write(chunk)
        except OSError:
            pass


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # close() must not wait for a "hang" handler

    def handle_error(self, request, client_address):
        pass  # clients that give up (huge, hang) or are killed mid-request are expected

    def close(self):
        self.shutdown()
        self.server_close()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def tls_server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def start(handler_cls, tls_context=None):
    """A QuietServer for `handler_cls` on 127.0.0.1:<free port> (HTTPS when
    `tls_context` is given), serving in a daemon thread. Stop it with
    .close()."""
    server = QuietServer(("127.0.0.1", 0), handler_cls)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    server.port = server.server_address[1]
    server.host = f"127.0.0.1:{server.port}"
    server.url = f"{'https' if tls_context is not None else 'http'}://{server.host}"
    server.thread = threading.Thread(target=server.serve_forever, daemon=True)
    server.thread.start()
    return server


class Tripwire:
    """A TCP listener on 127.0.0.1 that must never be contacted: it records
    each connection's first line (a request line, or the start of a TLS
    handshake; never headers or bodies) and closes it. As HTTP_PROXY with
    NO_PROXY=127.0.0.1,localhost it catches any plain-http request to a
    non-loopback host; as a host it catches any connection at all."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.hits = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096)
                except OSError:
                    first = b""
                self.hits.append(first.split(b"\r\n", 1)[0][:200])

    def proxy_env(self):
        """Environment that sends plain-http requests for other hosts here."""
        return {"HTTP_PROXY": self.url, "http_proxy": self.url, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost"}

    def close(self):
        self.sock.close()
