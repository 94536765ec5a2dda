"""containerd with its CRI plugin, started for the session, and a CRI
ImageService client generated at session start from tests/e2e/cri_api.proto
with grpcio-tools (the generated code goes to a temp dir, never committed).

containerd: Debian's package (1.6 on bookworm), its own config.toml
(version 2), root, state and socket under a temp dir. No CNI: containerd's
CRI plugin logs that it found no network config and serves anyway; pulling
images needs none. Registry trust and mirrors come from
`[plugins."io.containerd.grpc.v1.cri".registry] config_path`, one
`hosts.toml` per host (containerd's docs/hosts.md).
"""

import importlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate_stubs(out: Path):
    """runtime.v1 ImageService stubs from cri_api.proto into `out`; returns
    (pb2, pb2_grpc) modules."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "cri_api.proto", out / "cri_api.proto")
    rc = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}", str(out / "cri_api.proto")])
    assert rc == 0, "grpc_tools.protoc failed on cri_api.proto"
    sys.path.insert(0, str(out))
    return importlib.import_module("cri_api_pb2"), importlib.import_module("cri_api_pb2_grpc")


def overlay_works(scratch: Path):
    """Whether an overlay mount works here (it does not inside some
    container sandboxes): the snapshotter containerd can use."""
    for d in ("lower", "upper", "work", "merged"):
        (scratch / d).mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={scratch/'lower'},upperdir={scratch/'upper'},workdir={scratch/'work'}",
                        str(scratch / "merged")], capture_output=True)
    if r.returncode == 0:
        subprocess.run(["umount", str(scratch / "merged")], capture_output=True)
        return True
    return False


class Containerd:
    def __init__(self, root: Path, certs_d: Path, ca: Path, pb2, pb2_grpc):
        import grpc

        self.ca = ca

        assert shutil.which("containerd"), "containerd is missing: .ci/run installs it (apt-get install containerd)"
        self.root = root
        self.certs_d = certs_d
        self.snapshotter = "overlayfs" if overlay_works(root / "overlay-probe") else "native"
        self.socket = root / "containerd.sock"
        self.log = root / "containerd.log"
        config = root / "config.toml"
        config.write_text(f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.invalid/pause:none"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "{self.snapshotter}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{root / 'cni-bin'}"
    conf_dir = "{root / 'cni-conf'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs_d}"
""")
        self.version = subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout.strip()
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))
        self.pb2 = pb2
        end = time.monotonic() + 30
        while not self.socket.exists():
            assert self.proc.poll() is None, f"containerd exited: {self.log.read_text()[-2000:]}"
            assert time.monotonic() < end, "containerd did not create its socket"
            time.sleep(0.05)
        self.channel = grpc.insecure_channel(f"unix://{self.socket}")
        self.images = pb2_grpc.ImageServiceStub(self.channel)
        while True:
            try:
                self.images.ListImages(pb2.ListImagesRequest(), timeout=5)
                break
            except grpc.RpcError:
                assert time.monotonic() < end, f"containerd's CRI never answered: {self.log.read_text()[-2000:]}"
                time.sleep(0.1)

    def hosts_toml(self, host, server, entries):
        """certs.d/<host>/hosts.toml: `server`, then `entries` as [(url,
        capabilities[, override_path])] hosts tried in order, all trusting
        `self.ca`."""
        d = self.certs_d / host
        d.mkdir(parents=True, exist_ok=True)
        text = f'server = "{server}"\nca = "{self.ca}"\n'
        for url, caps, *override in entries:
            text += f'\n[host."{url}"]\n  capabilities = {caps!r}\n  ca = "{self.ca}"\n'.replace("'", '"')
            if override and override[0]:
                text += "  override_path = true\n"
        (d / "hosts.toml").write_text(text)

    # ------------------------------------------------------------ CRI calls
    def pull(self, image, auth=None, timeout=60):
        req = self.pb2.PullImageRequest(image=self.pb2.ImageSpec(image=image))
        if auth is not None:
            req.auth.CopyFrom(auth)
        return self.images.PullImage(req, timeout=timeout).image_ref

    def status(self, image):
        r = self.images.ImageStatus(self.pb2.ImageStatusRequest(image=self.pb2.ImageSpec(image=image)), timeout=10)
        return r.image if r.HasField("image") else None

    def list(self):
        return list(self.images.ListImages(self.pb2.ListImagesRequest(), timeout=10).images)

    def remove(self, image):
        self.images.RemoveImage(self.pb2.RemoveImageRequest(image=self.pb2.ImageSpec(image=image)), timeout=10)

    def remove_all(self):
        for img in self.list():
            self.images.RemoveImage(self.pb2.RemoveImageRequest(image=self.pb2.ImageSpec(image=img.id)), timeout=10)

    def close(self):
        self.channel.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
