"""The e2e session: kubelet-faithful driver -> pullcred -> containerd CRI ->
real registries under their real names, all on loopback.

Run through tests/e2e/run: it starts pytest in its own network and mount
namespace (`unshare --net --mount`), where port 443 is free, nothing can
reach out, and this file bind-mounts a hosts file over /etc/hosts that
resolves every registry name below to its own 127.0.0.x address. Outside
such a namespace the session fails at once: it never touches the machine's
/etc/hosts, and never skips.

The session starts, once: a test CA; the registries (tests/e2e/registries.py)
and the cloud stand-ins (tests/standins/) behind them; moto (conftest.moto,
started here: the namespace cannot reach one started outside); containerd
with a hosts.toml per host trusting the test CA; and the CRI client,
generated from tests/e2e/cri_api.proto. Every test leaves containerd with no
images (RemoveImage).
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import register_secret  # noqa: E402
from common import ACR, ADDRESSES, ECR, ECR_PUBLIC, GAR, HARBOR, HUB, HUB_AUTH, MIRROR, STATIC  # noqa: E402
from cri import Containerd, generate_stubs  # noqa: E402
from pki import Pki  # noqa: E402
from registries import ADMIN, Distribution, Front, HtpasswdRegistry, TokenService, push  # noqa: E402
from standins.azure import AzureStandin  # noqa: E402
from standins.ecr import EcrStandin  # noqa: E402
from standins.gcp import GoogleStandin  # noqa: E402
from standins.sts import StsStandin  # noqa: E402

def _in_own_namespaces():
    """Whether this process's network and mount namespaces differ from the
    ones tests/e2e/run started in (it passes their ids)."""
    outer = os.environ.get("PULLCRED_E2E_OUTER_NS", "").split()
    try:
        mine = [os.readlink("/proc/self/ns/net"), os.readlink("/proc/self/ns/mnt")]
    except OSError:
        return False
    return len(outer) == 2 and all(a != b for a, b in zip(mine, outer))


class World:
    """Everything the session started; the tests' handle on it."""


def _relay_https(url, ca):
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=str(ca))

    def handler(h, method, body):
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        conn.request(method, h.path, body=body or None, headers=headers)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        h.reply(r.status, data, r.getheader("Content-Type"))

    return handler


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    if os.environ.get("PULLCRED_E2E_NETNS") != "1" or not _in_own_namespaces():
        pytest.fail("the e2e tests run in their own network and mount namespace: use tests/e2e/run", pytrace=False)
    root = tmp_path_factory.mktemp("e2e")
    w = World()
    w.root = root
    closers = []

    # names -> loopback addresses, for this namespace only
    hosts = root / "hosts"
    hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in ADDRESSES.items()))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    for name, ip in ADDRESSES.items():
        assert socket.gethostbyname(name) == ip, f"{name} does not resolve to {ip}"

    w.pki = pki = Pki(root, list(ADDRESSES), ips=set(ADDRESSES.values()))
    w.cert_dir = root / "skopeo-certs"
    w.cert_dir.mkdir()
    shutil.copy(pki.ca, w.cert_dir / "ca.crt")
    images = root / "images"

    # --- ECR and ECR Public: htpasswd holding AWS:<token the stand-in issued>
    w.ecr_registry = HtpasswdRegistry(root / "ecr", ECR, ADDRESSES[ECR], pki)
    w.ecr_public_registry = HtpasswdRegistry(root / "ecr-public", ECR_PUBLIC, ADDRESSES[ECR_PUBLIC], pki)

    def ecr_token(registry):
        def on(t):
            register_secret(t)
            registry.allow("AWS", t)
        return on

    w.ecr = EcrStandin(on_token=ecr_token(w.ecr_registry))
    w.ecr_public = EcrStandin(on_token=ecr_token(w.ecr_public_registry))
    w.sts = StsStandin(on_secret=register_secret)
    closers += [w.ecr_registry.close, w.ecr_public_registry.close, w.ecr.close, w.ecr_public.close, w.sts.close]

    # --- Google: htpasswd holding oauth2accesstoken:<token>
    w.gar_registry = HtpasswdRegistry(root / "gar", GAR, ADDRESSES[GAR], pki)

    def google_token(t):
        register_secret(t)
        if t.startswith("ya29.standin-"):
            w.gar_registry.allow("oauth2accesstoken", t)

    w.google = GoogleStandin(on_token=google_token)
    closers += [w.gar_registry.close, w.google.close]

    # --- static docker config: htpasswd with a robot account
    w.static_registry = HtpasswdRegistry(root / "static", STATIC, ADDRESSES[STATIC], pki)
    w.static_user = ("robot", "static-" + os.urandom(12).hex())
    register_secret(w.static_user[1])
    w.static_registry.allow(*w.static_user)
    closers.append(w.static_registry.close)

    # --- Docker Hub style: registry-1.docker.io with auth: token, realm auth.docker.io
    w.hub_user = ("hubuser", "dckr_pat_" + os.urandom(12).hex())
    register_secret(w.hub_user[1])
    hub_users = {ADMIN[0]: ADMIN[1], w.hub_user[0]: w.hub_user[1]}
    w.hub_tokens = TokenService(
        pki, "registry.docker.io", "auth.docker.io",
        check=lambda u, p: hub_users.get(u) == p,
        policy=lambda u, repo: ["pull", "push"] if u == ADMIN[0] else (["pull"] if u in hub_users else []),
        on_token=register_secret)
    w.hub_auth = Front(ADDRESSES[HUB_AUTH], pki, routes={"/token": w.hub_tokens.handle})
    w.hub_registry = Distribution(root / "hub", f"{ADDRESSES[HUB]}:443", tls=(pki.cert, pki.key),
                                  auth=w.hub_tokens.auth_config(f"https://{HUB_AUTH}/token"))
    closers += [w.hub_auth.close, w.hub_registry.stop]

    # --- Harbor style: a team-a robot may pull team-a/* only, the node account the rest
    w.harbor_users = {"node": "harbor-node-" + os.urandom(8).hex(), "team-a": "harbor-a-" + os.urandom(8).hex(),
                      "proxy-robot": "harbor-proxy-" + os.urandom(8).hex(), ADMIN[0]: ADMIN[1]}
    for p in w.harbor_users.values():
        register_secret(p)

    def harbor_policy(user, repo):
        if user == ADMIN[0]:
            return ["pull", "push"]
        team_a = repo.startswith("team-a/")
        if repo.startswith("dockerhub-proxy/"):  # a proxy project: its own robot only
            return ["pull"] if user == "proxy-robot" else []
        return ["pull"] if (user == "team-a" and team_a) or (user == "node" and not team_a) else []

    w.harbor_tokens = TokenService(pki, "harbor-registry", "harbor-token-issuer",
                                   check=lambda u, p: w.harbor_users.get(u) == p, policy=harbor_policy,
                                   on_token=register_secret)
    port = _free_port()
    w.harbor_registry = Distribution(root / "harbor", f"127.0.0.1:{port}", public_url=f"https://{HARBOR}",
                                     auth=w.harbor_tokens.auth_config(f"https://{HARBOR}/service/token"))
    w.harbor = Front(ADDRESSES[HARBOR], pki, routes={"/service/token": w.harbor_tokens.handle},
                     upstream=("127.0.0.1", port))
    closers += [w.harbor.close, w.harbor_registry.stop]

    # --- ACR: the registry behind ACR's token endpoints on its own host
    w.azure = AzureStandin(pki.cert, pki.key, on_secret=register_secret)
    w.azure.configure(registry=ACR)

    def acr_refresh(token):
        return "acr-refresh-token-user" if token in w.azure.refresh_tokens else None

    w.acr_tokens = TokenService(
        pki, ACR, "Azure Container Registry",
        check=lambda u, p: u == ADMIN[0] and p == ADMIN[1],
        policy=lambda u, repo: ["pull", "push"] if u == ADMIN[0] else (["pull"] if u else []),
        refresh=acr_refresh, password_grant=False, on_token=register_secret)
    port = _free_port()
    w.acr_registry = Distribution(root / "acr", f"127.0.0.1:{port}", public_url=f"https://{ACR}",
                                  auth=w.acr_tokens.auth_config(f"https://{ACR}/oauth2/token"))
    w.acr = Front(ADDRESSES[ACR], pki, upstream=("127.0.0.1", port), routes={
        "/oauth2/exchange": _relay_https(w.azure.url, pki.ca),
        "/oauth2/token": w.acr_tokens.handle,
    })
    closers += [w.acr.close, w.acr_registry.stop, w.azure.close]

    # --- a private pull-through cache, for the docker.io mirror evidence
    port = _free_port()
    w.mirror_registry = Distribution(root / "mirror", f"127.0.0.1:{port}", public_url=f"https://{MIRROR}")
    w.mirror = Front(ADDRESSES[MIRROR], pki, upstream=("127.0.0.1", port))
    closers += [w.mirror.close, w.mirror_registry.stop]

    # --- images
    w.image = {}
    pushes = [
        ("ecr", f"{ECR}/team/app:1.0"), ("ecr_public", f"{ECR_PUBLIC}/pullcred/app:1.0"),
        ("gar", f"{GAR}/project/repo/app:1.0"), ("acr", f"{ACR}/team/app:1.0"),
        ("static", f"{STATIC}/team/app:1.0"), ("hub", f"{HUB}/myorg/private:1.0"),
        ("harbor_team_a", f"{HARBOR}/team-a/app:1.0"), ("harbor_team_ab", f"{HARBOR}/team-ab/app:1.0"),
        ("mirror", f"{MIRROR}/library/cached:1.0"),
        # pull-through caches, as images rewritten to the cache host
        ("ecr_ptc", f"{ECR}/docker-hub/library/nginx:1.0"),
        ("harbor_proxy", f"{HARBOR}/dockerhub-proxy/library/nginx:1.0"),
        ("acr_cache", f"{ACR}/docker.io/library/nginx:1.0"),
    ]
    w.ecr_registry.allow(*ADMIN)
    w.ecr_public_registry.allow(*ADMIN)
    w.gar_registry.allow(*ADMIN)
    jobs = []
    for key, ref in pushes:
        w.image[key] = ref
        jobs.append(threading.Thread(target=push, args=(images, w.cert_dir, ref)))
    w.many = [f"{ECR}/fleet/app{i:02d}:1.0" for i in range(20)]
    jobs += [threading.Thread(target=push, args=(images, w.cert_dir, ref)) for ref in w.many]
    errors = []

    def run(t):
        try:
            t.run()
        except subprocess.CalledProcessError as e:
            errors.append(e.stderr)

    for batch in range(0, len(jobs), 6):
        ts = [threading.Thread(target=run, args=(j,)) for j in jobs[batch: batch + 6]]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert not errors, errors
    # docker.io images as the kubelet names them
    w.image["hub"] = "myorg/private:1.0"
    w.image["mirror"] = "library/cached:1.0"

    # --- containerd
    certs_d = root / "certs.d"
    certs_d.mkdir()
    pb2, pb2_grpc = generate_stubs(root / "cri-stubs")
    w.cri = Containerd(root / "containerd", certs_d, pki.ca, pb2, pb2_grpc)
    closers.append(w.cri.close)
    for name in (ECR, ECR_PUBLIC, GAR, ACR, STATIC, HARBOR, MIRROR):
        w.cri.hosts_toml(name, f"https://{name}", [(f"https://{name}", ["pull", "resolve"])])
    w.cri.hosts_toml("docker.io", f"https://{HUB}", [(f"https://{HUB}", ["pull", "resolve"])])

    yield w
    for c in reversed(closers):
        try:
            c()
        except Exception:
            pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def clean_runtime(request):
    """Every e2e test starts and ends with no image in containerd."""
    if "world" not in request.fixturenames:
        yield
        return
    w = request.getfixturevalue("world")
    w.cri.remove_all()
    yield
    w.cri.remove_all()
