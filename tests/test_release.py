"""The release (release/release.sh): the static binary, the installer image as
an OCI archive, the CycloneDX SBOM and SHA256SUMS, reproducibly.

release.sh runs twice, into two directories, with the build of the `pullcred`
crate forced in between (a source file of the provider crate is touched, so
the crate is compiled and the binary linked again): the two SHA256SUMS are
the same bytes.

The static build reuses target/static (tests/run builds it with
release/static.sh first). release.sh installs cargo-cyclonedx from crates.io
when it is missing.
"""

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "release" / "release.sh"
# A source file of the provider crate: touching it rebuilds the final crate.
TOUCHED = ROOT / "provider" / "src" / "main.rs"


def crate_version():
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def lock_versions():
    """Cargo.lock: crate name -> the set of its locked versions."""
    with open(ROOT / "Cargo.lock", "rb") as f:
        lock = tomllib.load(f)
    versions = {}
    for p in lock["package"]:
        versions.setdefault(p["name"], set()).add(p["version"])
    return versions


def release(out):
    env = dict(os.environ)
    # The commit time, as a release would have it (release/reproducible.sh).
    env.pop("SOURCE_DATE_EPOCH", None)
    started = time.monotonic()
    p = subprocess.run(
        [str(RELEASE), crate_version(), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    took = time.monotonic() - started
    assert p.returncode == 0, f"release.sh failed ({p.returncode}):\n{p.stderr[-4000:]}"
    print(f"release.sh into {out}: {took:.0f} s")
    return p


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "a"
    p = release(out)
    return out, p


@pytest.fixture(scope="module")
def artifacts(released):
    out, _ = released
    v = crate_version()
    return {
        "bin": out / f"pullcred-{v}-linux-amd64",
        "image": out / f"pullcred-installer-{v}.oci.tar",
        "sbom": out / f"pullcred-{v}.cdx.json",
        "sums": out / "SHA256SUMS",
    }


@pytest.fixture(scope="module")
def epoch(artifacts):
    """SOURCE_DATE_EPOCH of the release, from the image archive's entries."""
    with tarfile.open(artifacts["image"]) as t:
        mtimes = {m.mtime for m in t.getmembers()}
    assert len(mtimes) == 1, mtimes
    return mtimes.pop()


def test_artifacts_listed_and_checksums_verify(released, artifacts):
    # Given a release
    out, p = released
    # Then it prints the four artifacts, and nothing else, on stdout ...
    assert p.stdout.splitlines() == [str(artifacts[k]) for k in ("bin", "image", "sbom", "sums")]
    assert sorted(os.listdir(out)) == sorted(a.name for a in artifacts.values())
    # ... and SHA256SUMS covers the other three and verifies.
    sums = artifacts["sums"].read_text()
    assert sorted(line.split("  ")[1] for line in sums.splitlines()) == sorted(
        artifacts[k].name for k in ("bin", "image", "sbom")
    )
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == 3


def test_binary_is_static_and_holds_no_build_path(artifacts):
    binary = artifacts["bin"]
    # Then the binary has no program interpreter and needs no shared library ...
    headers = subprocess.run(["readelf", "-lW", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers
    dynamic = subprocess.run(["readelf", "-dW", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "(NEEDED)" not in dynamic
    assert os.stat(binary).st_mode & 0o777 == 0o755
    # ... holds no absolute path of the build machine ...
    data = binary.read_bytes()
    for path in {str(ROOT) + "/", os.path.expanduser("~") + "/", "/work/", "/root/"}:
        assert path.encode() not in data, f"the binary holds {path}"
    # ... the sources are named under the remapped prefixes ...
    assert b"/cargo/registry/src/" in data
    # ... and it is the release's version.
    p = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    assert p.stdout.split() == ["pullcred", crate_version()]


def test_release_leaves_nothing_in_the_checkout(artifacts):
    # cargo-cyclonedx writes one SBOM per workspace member next to its Cargo.toml
    stray = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/*-sbom.json"))
    assert stray == [], stray


def test_sbom_lists_the_locked_crates(artifacts, epoch):
    text = artifacts["sbom"].read_text()
    bom = json.loads(text)
    # Then it is a CycloneDX document about pullcred ...
    assert bom["bomFormat"] == "CycloneDX"
    component = bom["metadata"]["component"]
    assert component["name"] == "pullcred"
    assert component["version"] == crate_version()
    # ... whose dependencies carry the versions of Cargo.lock ...
    locked = lock_versions()
    listed = {}
    for c in bom["components"]:
        listed.setdefault(c["name"], set()).add(c["version"])
    for name in ("rustls", "aws-sdk-ecr", "ring", "ureq", "serde_json", "kubelet-config"):
        assert name in listed, f"{name} missing from the SBOM"
        assert listed[name] <= locked[name], (name, listed[name], locked[name])
    for name, versions in listed.items():
        assert name in locked and versions <= locked[name], (name, versions)
    # ... with purls naming them ...
    ecr = next(c for c in bom["components"] if c["name"] == "aws-sdk-ecr")
    assert ecr["purl"].startswith(f"pkg:cargo/aws-sdk-ecr@{ecr['version']}")
    # ... of the release build only: no test-only crate, no other platform's.
    assert "proptest" not in listed
    assert "windows-sys" not in listed
    # And it is normalised: the release's time, a serial number of its own
    # content, no path of the checkout.
    assert bom["metadata"]["timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", bom["serialNumber"])
    assert {"name": "cdx:reproducible", "value": "true"} in bom["metadata"]["properties"]
    assert str(ROOT) not in text


def blob(layout, digest):
    algo, hexd = digest.split(":")
    assert algo == "sha256"
    data = layout[f"./blobs/sha256/{hexd}"]
    assert hashlib.sha256(data).hexdigest() == hexd, digest
    return data


def test_installer_image_holds_only_the_binary(artifacts, epoch):
    # Given the image archive: an OCI image layout in a tar
    with tarfile.open(artifacts["image"]) as t:
        members = t.getmembers()
        names = [m.name for m in members]
        # Then its entries are sorted, owned by 0:0, dated SOURCE_DATE_EPOCH ...
        assert names == sorted(names)
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == epoch for m in members)
        layout = {m.name: t.extractfile(m).read() for m in members if m.isfile()}
    assert json.loads(layout["./oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    # ... the index names one manifest, tagged with the version ...
    index = json.loads(layout["./index.json"])
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == crate_version()
    manifest_bytes = blob(layout, entry["digest"])
    assert len(manifest_bytes) == entry["size"]
    manifest = json.loads(manifest_bytes)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["Entrypoint"] == ["/pullcred", "install"]
    # ... and its one layer holds /pullcred, the released binary, and nothing else.
    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer["digest"])))) as lt:
        files = [m for m in lt.getmembers() if not m.isdir()]
        assert [m.name for m in files] == ["./pullcred"]
        assert files[0].mode == 0o755 and files[0].uid == 0
        assert lt.extractfile(files[0]).read() == artifacts["bin"].read_bytes()
    # And skopeo reads it as an image archive.
    inspect = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{artifacts['image']}:{crate_version()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert inspect.returncode == 0, inspect.stderr
    assert json.loads(inspect.stdout) == manifest


def test_release_is_reproducible(released, artifacts, tmp_path):
    # Given the first release, and the provider crate's source touched, so
    # that the crate is compiled and the binary linked again
    os.utime(TOUCHED)
    # When the release is made again into another directory
    p = release(tmp_path / "b")
    assert re.search(r"Compiling pullcred v", p.stderr), "the second release did not rebuild pullcred"
    # Then the checksums are the same bytes, and so are the artifacts.
    assert (tmp_path / "b" / "SHA256SUMS").read_bytes() == artifacts["sums"].read_bytes()
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=tmp_path / "b", capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_refuses_another_version_and_a_used_directory(tmp_path, released):
    # A version other than the crate's is refused before anything is built.
    p = subprocess.run([str(RELEASE), "9.9.9", "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "not the crate's version" in p.stderr and p.stdout == ""
    # So is a directory that already holds something.
    out, _ = released
    p = subprocess.run([str(RELEASE), crate_version(), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "not empty" in p.stderr and p.stdout == ""
    # And no version at all is a usage error.
    p = subprocess.run([str(RELEASE)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
