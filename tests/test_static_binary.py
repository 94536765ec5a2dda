"""The static pullcred (release/static.sh): no dynamic loader, no shared
library, no NSS, and it works in an empty root.

The binary is $PULLCRED_STATIC_BIN, else
target/static/x86_64-unknown-linux-gnu/release/pullcred, built with
release/static.sh when missing (a cold build of that target directory takes
several minutes; tests/run builds it first).

The empty-root test runs tests/static_chroot.py in a network namespace of its
own (`unshare --net`: the DNS stand-in needs 127.0.0.1:53), as root or, if
not root, as root of a new user namespace.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "target" / "static" / "x86_64-unknown-linux-gnu" / "release" / "pullcred"
A, AAAA = 1, 28


@pytest.fixture(scope="module")
def static_bin():
    path = Path(os.environ.get("PULLCRED_STATIC_BIN", DEFAULT))
    if not path.exists():
        subprocess.run([str(ROOT / "release" / "static.sh")], check=True, stdout=subprocess.DEVNULL)
    assert path.exists(), f"{path} is missing after release/static.sh"
    return path


def readelf(flag, path):
    return subprocess.run(["readelf", "-W", flag, str(path)], capture_output=True, text=True, check=True).stdout


def test_no_loader_and_no_shared_library(static_bin):
    # Given the binary release/static.sh builds
    # Then it asks for no program interpreter (no ld.so) ...
    headers = readelf("-l", static_bin)
    assert "INTERP" not in headers
    assert "Requesting program interpreter" not in headers
    # ... and names no shared library.
    assert "(NEEDED)" not in readelf("-d", static_bin)


@pytest.fixture(scope="module")
def empty_root(static_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("static-root")
    ns = ["unshare", "--net", "--mount"]
    if os.geteuid() != 0:
        ns.insert(1, "--map-root-user")
    p = subprocess.run(
        [*ns, "--", sys.executable, str(ROOT / "tests" / "static_chroot.py"), str(static_bin), str(work)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    facts["runs"] = {r["name"]: r for r in facts["runs"]}
    return facts


def answer(run):
    assert run["code"] == 0, run["stderr"]
    assert run["stderr"] == ""
    body = json.loads(run["stdout"])
    (auth,) = body["auth"].values()
    assert auth["password"] not in run["stderr"]
    return auth


def test_the_root_holds_only_the_binary_and_four_files(empty_root):
    assert empty_root["tree"] == [
        "etc",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/ssl",
        "etc/ssl/certs",
        "etc/ssl/certs/ca-certificates.crt",
        "pullcred",
        "run",
        "run/pullcred",
    ]


def test_a_miss_by_etc_hosts_over_https(empty_root):
    # Given the ECR API's host only in the root's /etc/hosts
    run = empty_root["runs"]["miss-hosts"]
    # Then the SDK reached it by that name, over TLS verified by the CA bundle
    assert answer(run)["username"] == "AWS"
    assert run["api_calls"] == 1
    assert run["api_host"].startswith("api.ecr-by-hosts.test:")
    # ... and DNS was never asked.
    assert empty_root["dns_by_hosts"] == []


def test_a_miss_by_dns_through_resolv_conf(empty_root):
    # Given a host only the DNS stand-in of the root's resolv.conf knows
    run = empty_root["runs"]["miss-dns"]
    assert answer(run)["username"] == "AWS"
    assert run["api_calls"] == 1
    assert run["api_host"].startswith("api.ecr-by-dns.test:")
    # Then pullcred asked it for A and AAAA records of that exact name.
    assert sorted(set(empty_root["dns_by_dns"])) == [A, AAAA]


def test_a_hit_calls_nothing(empty_root):
    miss, hit = empty_root["runs"]["miss-hosts"], empty_root["runs"]["hit"]
    assert answer(hit) == answer(miss)
    assert hit["api_calls"] == 0
    if empty_root["strace"]:
        assert not [l for l in hit["trace"] if "connect(" in l], hit["trace"]


def test_no_nss_no_loader_no_shared_object_is_opened(empty_root):
    assert empty_root["strace"], "strace is needed (tests/run installs it)"
    for run in empty_root["runs"].values():
        trace = run["trace"]
        assert trace and 'execve("/pullcred"' in trace[0]
        opened = [l for l in trace if "open" in l]
        for bad in ("nsswitch.conf", "libnss", ".so", "ld.so", "/lib", "gconv", "/usr"):
            assert not [l for l in opened if bad in l], (run["name"], bad, opened)
    # The DNS miss read the resolver's files, from the root.
    opened = "\n".join(empty_root["runs"]["miss-dns"]["trace"])
    assert '"/etc/resolv.conf"' in opened
    assert '"/etc/hosts"' in opened
