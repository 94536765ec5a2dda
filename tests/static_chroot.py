"""Runs the static pullcred in an empty root, inside a network namespace of
its own. Started by tests/test_static_binary.py as

    unshare --net --mount -- python tests/static_chroot.py BINARY WORKDIR

(root only). In the new namespace it brings up loopback, starts the DNS
stand-in on 127.0.0.1:53 and the ECR stand-in over https with a test CA,
builds WORKDIR/root holding only

    /pullcred  /etc/resolv.conf  /etc/hosts  /etc/ssl/certs/ca-certificates.crt  /run/pullcred/

and runs `chroot WORKDIR/root /pullcred` (under strace when there is one)
three times: a miss whose API host is in /etc/hosts, a miss whose API host
only the DNS stand-in knows, and a hit. It prints one JSON object of facts on
stdout; the test decides what they must be.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import standins.ecr as ecr_module  # noqa: E402
from standins.azure import make_ca_and_server_cert  # noqa: E402
from standins.base import tls_server_context  # noqa: E402
from standins.dns import DnsStandin  # noqa: E402

V1 = "credentialprovider.kubelet.k8s.io/v1"
BY_HOSTS = "api.ecr-by-hosts.test"
BY_DNS = "api.ecr-by-dns.test"
REGISTRY_HOSTS = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
REGISTRY_DNS = "210987654321.dkr.ecr.eu-west-1.amazonaws.com"


def ecr_over_https(cert, key):
    """The ECR stand-in, its server wrapped in TLS before it starts."""
    plain = ecr_module.start
    ecr_module.start = lambda handler: plain(handler, tls_server_context(cert, key))
    try:
        return ecr_module.EcrStandin()
    finally:
        ecr_module.start = plain


def main():
    binary, work = Path(sys.argv[1]), Path(sys.argv[2])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    ca, cert, key = make_ca_and_server_cert(work, names=(BY_HOSTS, BY_DNS))
    ecr = ecr_over_https(cert, key)
    dns = DnsStandin({BY_DNS: ["127.0.0.1"]}, port=53)

    root = work / "root"
    (root / "etc" / "ssl" / "certs").mkdir(parents=True)
    (root / "run" / "pullcred").mkdir(parents=True, mode=0o700)
    shutil.copy2(binary, root / "pullcred")
    (root / "etc" / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {BY_HOSTS}\n")
    shutil.copy(ca, root / "etc" / "ssl" / "certs" / "ca-certificates.crt")
    tree = sorted(str(p.relative_to(root)) for p in root.rglob("*"))

    strace = shutil.which("strace")
    runs = []
    for name, registry, api in [
        ("miss-hosts", REGISTRY_HOSTS, BY_HOSTS),
        ("miss-dns", REGISTRY_DNS, BY_DNS),
        ("hit", REGISTRY_HOSTS, BY_HOSTS),
    ]:
        env = {
            "AWS_ACCESS_KEY_ID": "AKIAPULLCREDSTATIC01",
            "AWS_SECRET_ACCESS_KEY": "pullcred-static-test-secret-not-real",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_ECR": f"https://{api}:{ecr.port}",
            "AWS_CONFIG_FILE": "/nonexistent/config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            "HOME": "/",
        }
        trace = work / f"{name}.strace"
        cmd = [shutil.which("chroot") or "/usr/sbin/chroot", str(root), "/pullcred"]
        if strace:
            cmd = [strace, "-f", "-qq", "-o", str(trace), "-e", "trace=execve,open,openat,connect", *cmd]
        req = {"apiVersion": V1, "kind": "CredentialProviderRequest", "image": f"{registry}/app"}
        calls_before = ecr.call_count()
        p = subprocess.run(cmd, input=json.dumps(req) + "\n", capture_output=True, text=True, env=env, timeout=60)
        runs.append(
            {
                "name": name,
                "code": p.returncode,
                "stdout": p.stdout,
                "stderr": p.stderr,
                "api_calls": ecr.call_count() - calls_before,
                "api_host": ecr.calls[-1]["host"] if ecr.call_count() > calls_before else None,
                "trace": pullcred_part(trace.read_text()) if strace else None,
            }
        )
    print(
        json.dumps(
            {
                "tree": tree,
                "dns_by_hosts": dns.asked(BY_HOSTS),
                "dns_by_dns": dns.asked(BY_DNS),
                "runs": runs,
                "strace": bool(strace),
            }
        )
    )
    ecr.close()
    dns.close()


def pullcred_part(trace):
    """The traced lines from pullcred's own execve on: chroot(8) itself is
    dynamic and opens its libraries before it execs pullcred."""
    lines = trace.splitlines()
    for i, line in enumerate(lines):
        if 'execve("/pullcred"' in line:
            return lines[i:]
    return lines


if __name__ == "__main__":
    main()
