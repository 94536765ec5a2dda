"""Runs pullcred the way the kubelet does: one CredentialProviderRequest on
stdin, the response read from stdout. Passwords are masked in what is shown."""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from standins.ecr import EcrStandin  # noqa: E402

BIN = sys.argv[1]
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def mask(body):
    for a in body.get("auth", {}).values():
        p = a["password"]
        a["password"] = p[:4] + "..." + f"({len(p)} chars)"
    return body


def kubelet_exec(image, env):
    req = {"apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderRequest", "image": image}
    print(f"\n$ echo '{json.dumps(req)}' | pullcred")
    t = time.perf_counter()
    p = subprocess.run([BIN], input=json.dumps(req) + "\n", capture_output=True, text=True, env=env)
    ms = (time.perf_counter() - t) * 1000
    if p.stderr:
        print("stderr: " + p.stderr.strip())
    print(f"exit {p.returncode} in {ms:.1f} ms")
    if p.returncode == 0:
        print(json.dumps(mask(json.loads(p.stdout)), indent=2))


def main():
    tmp = Path(tempfile.mkdtemp(prefix="pullcred-demo-"))
    (tmp / "aws-config").write_text("")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "AWS_ACCESS_KEY_ID": "AKIADEMO000000000000",
        "AWS_SECRET_ACCESS_KEY": "demo-secret",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "aws-config"),
        "PULLCRED_CACHE_DIR": str(tmp / "cache"),
    }
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    moto_bin = Path(sys.executable).parent / "moto_server"
    moto = subprocess.Popen([str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        print("== 1. ECR GetAuthorizationToken against moto (the AWS API on 127.0.0.1)")
        print("   moto's tokens expire in 2015, so pullcred answers cacheDuration 0s and caches nothing.")
        kubelet_exec(f"{HOST}/team/app", dict(env, AWS_ENDPOINT_URL=url))

        print("\n== 2. The on-node cache, against a stand-in ECR endpoint that issues 12-hour tokens")
        standin = EcrStandin()
        e2 = dict(env, AWS_ENDPOINT_URL_ECR=standin.url)
        kubelet_exec(f"{HOST}/team/app", e2)
        standin.close()
        print("\n   (ECR endpoint now shut down: the next exec is a cache hit, no network)")
        kubelet_exec(f"{HOST}/team/other", e2)
        print(f"\n   upstream calls: {len(standin.calls)}")

        print("\n== 3. A look-alike host gets nothing, with one clear line on stderr")
        kubelet_exec(f"{HOST}.evil.io/team/app", e2)
    finally:
        moto.terminate()
        moto.wait(10)


if __name__ == "__main__":
    main()
