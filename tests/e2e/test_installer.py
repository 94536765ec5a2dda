"""Issue #19 item 2: the installer's image. installer/build-image.sh packs
the pullcred binary (PULLCRED_BIN; the static one in CI when built, else the
debug build: the build only packages a file) into an OCI layout with no base
image; skopeo pushes it to the session's open registry (mirror.example.net:
the installer must be pullable without pullcred, which it installs);
containerd pulls it through CRI PullImage; its content store then holds
exactly our layer, whose only file is the binary, byte for byte.
"""

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from common import MIRROR
from conftest import BIN

REPO = Path(__file__).resolve().parent.parent.parent


def test_installer_image_is_pushed_with_skopeo_and_pulled_by_containerd(world, tmp_path):
    w = world
    layout = tmp_path / "installer-image"
    subprocess.run([str(REPO / "installer" / "build-image.sh"), "--binary", str(BIN), "--out", str(layout),
                    "--tag", "e2e"], check=True, capture_output=True, timeout=120)
    ref = f"{MIRROR}/pullcred/installer:e2e"
    subprocess.run(["skopeo", "copy", "--quiet", "--dest-cert-dir", str(w.cert_dir), f"oci:{layout}:e2e",
                    f"docker://{ref}"], check=True, capture_output=True, timeout=120)

    # containerd pulls it over CRI, as the kubelet would for the DaemonSet
    image_ref = w.cri.pull(ref)
    status = w.cri.status(ref)
    assert status is not None and status.id == image_ref
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    assert image_ref == manifest["config"]["digest"]  # the image id is our config's digest

    # the layer containerd stored is ours, and holds only the binary
    layer = manifest["layers"][0]["digest"]
    blob = subprocess.run(["ctr", "--address", str(w.cri.socket), "--namespace", "k8s.io", "content", "get", layer],
                          check=True, capture_output=True, timeout=60).stdout
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        files = [m for m in t.getmembers() if m.isfile()]
        assert [m.name.removeprefix("./") for m in files] == ["pullcred"]
        assert files[0].mode == 0o755 and (files[0].uid, files[0].gid) == (0, 0)
        assert t.extractfile(files[0]).read() == BIN.read_bytes()
