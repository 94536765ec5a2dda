"""A real registry for the tests: Debian's `docker-registry` (the CNCF
distribution server) with htpasswd auth and TLS on 127.0.0.1, using a test CA
made here with openssl. `skopeo` pushes a small image built here (an OCI
layout written by hand) and pulls with whatever credentials a test gives."""

import gzip
import hashlib
import io
import json
import secrets
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

for tool in ("docker-registry", "skopeo", "htpasswd", "openssl"):
    assert shutil.which(tool), f"{tool} is missing: .ci/run installs it (apt-get install docker-registry skopeo apache2-utils openssl)"


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(d: Path):
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
       "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-subj", "/CN=pullcred test CA")
    sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"),
       "-out", str(d / "server.csr"), "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    sh("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
       "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-out", str(d / "server.pem"),
       "-extfile", str(d / "ext.cnf"))
    certs = d / "certs.d"
    certs.mkdir()
    shutil.copy(d / "ca.pem", certs / "ca.crt")


def oci_layout(d: Path, content: bytes = b"hello from pullcred's test image\n", tag="1.0"):
    """A one-layer image holding /hello.txt = `content`, written as an OCI
    image layout whose one manifest is tagged `tag`."""
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data):
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return {"digest": f"sha256:{h}", "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(content))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = blob(gzip.compress(raw.getvalue(), mtime=0))
    config = blob(json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode())
    manifest = blob(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    }))


class Registry:
    def __init__(self, root: Path):
        self.root = root
        make_ca(root)
        self.ca = root / "ca.pem"
        self.cert_dir = root / "certs.d"
        self.users = {f"user{i}": "pw-" + secrets.token_hex(16) for i in (1, 2)}
        htpasswd = root / "htpasswd"
        for i, (u, p) in enumerate(self.users.items()):
            args = ["htpasswd", "-bB"] + (["-c"] if i == 0 else []) + [str(htpasswd), u, p]
            sh(*args)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        (root / "config.yml").write_text(f"""
version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}
http:
  addr: 127.0.0.1:{self.port}
  tls: {{certificate: {root / 'server.pem'}, key: {root / 'server.key'}}}
auth:
  htpasswd: {{realm: pullcred-test, path: {htpasswd}}}
""")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait()
        layout = root / "layout"
        layout.mkdir()
        oci_layout(layout)
        user, pw = next(iter(self.users.items()))
        sh("skopeo", "copy", "--dest-cert-dir", str(self.cert_dir), "--dest-creds", f"{user}:{pw}",
           f"oci:{layout}:1.0", f"docker://{self.host}/team/app:1.0")

    def _wait(self):
        ctx = ssl.create_default_context(cafile=str(self.ca))
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401: up, and asking for credentials
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start")

    def skopeo_inspect(self, image, creds=None):
        args = ["skopeo", "inspect", "--cert-dir", str(self.cert_dir)]
        if creds:
            args += ["--creds", f"{creds[0]}:{creds[1]}"]
        else:
            args += ["--no-creds"]
        return subprocess.run(args + [f"docker://{image}"], capture_output=True, text=True)

    def skopeo_pull(self, image, creds, dest: Path):
        return subprocess.run(
            ["skopeo", "copy", "--src-cert-dir", str(self.cert_dir), "--src-creds", f"{creds[0]}:{creds[1]}",
             f"docker://{image}", f"dir:{dest}"], capture_output=True, text=True)

    def serve_tls(self, handler):
        """A stand-in HTTPS server on 127.0.0.1 with this registry's test
        certificate, serving `handler` in a background thread. Call
        `.shutdown()` on the result."""
        import threading
        from http.server import ThreadingHTTPServer

        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.root / "server.pem", self.root / "server.key")
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
