"""Test 4 of issue #16 (evidence): a containerd hosts.toml mirror for
docker.io pointing at a private cache. Which credentials do the kubelet and
containerd send to the mirror host when the kubelet asked the plugin about
docker.io?

The kubelet builds the CRI AuthConfig with username and password only
(pkg/credentialprovider/keyring.go: Add sets Username, Password, Email;
server_address stays empty). containerd 1.6's CRI plugin
(pkg/cri/server/image_pull.go, ParseAuth) drops the credentials only when
server_address is set and names another host; empty, they are handed to
the resolver for EVERY host hosts.toml lists, and the authorizer sends them
to whichever host challenges (docker.io's credentials to the mirror).

Observed here with the real containerd, a private cache (a distribution
registry behind a front that can demand Basic credentials) and Docker
Hub's stand-in (registry-1.docker.io with auth.docker.io's token service).
The facts asserted below are the README's mirror findings; the run also
writes them to <session tmp>/mirror-evidence.json and prints them (-s).
"""

import json

from common import HUB, MIRROR, docker_config, env_for, kubelet_config
from driver import KubeletDriver

CACHE_USER = ("cache-robot", "cache-robot-secret-0001")


def docker_io_node(plugin, w, tmp_path, creds, **env):
    """pullcred answering for docker.io with `creds` from a docker config
    (the Docker Hub token, or a cache's own robot account)."""
    cfg = docker_config(tmp_path / f"config-{creds[0]}.json", {"docker.io": creds})
    return KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg), **env))


def test_docker_io_mirror_gets_the_docker_io_credentials(plugin, world, tmp_path):
    from conftest import register_secret

    register_secret(CACHE_USER[1])
    w = world
    w.cri.hosts_toml("docker.io", f"https://{HUB}", [(f"https://{MIRROR}", ["pull", "resolve"])])
    image = w.image["mirror"]  # library/cached:1.0: only the cache holds it
    evidence = {}
    try:
        # (a) an open cache: containerd sends no credentials (it sends them
        # only after a 401 challenge), the cache serves the image
        w.mirror.require_basic = None
        w.mirror.clear()
        node = docker_io_node(plugin, w, tmp_path, w.hub_user)
        pull = node.pull(image)
        evidence["open cache"] = {"pulled": pull.ok, "basic users seen by the cache": sorted(
            {b[0] for b in w.mirror.basic_seen()})}
        assert pull.ok, pull.error
        assert w.mirror.basic_seen() == []
        w.cri.remove_all()

        # (b) a cache that wants its own robot account, pullcred answering
        # docker.io with the Docker Hub token: the cache receives the
        # Docker Hub username AND password, refuses them, and containerd
        # falls back to registry-1.docker.io with the same credentials
        w.mirror.require_basic = {CACHE_USER[0]: CACHE_USER[1]}
        w.mirror.clear()
        w.hub_tokens.calls.clear()
        pull = node.pull(image)
        seen = w.mirror.basic_seen()
        evidence["private cache, docker.io answer = Docker Hub token"] = {
            "pulled": pull.ok,
            "basic users seen by the cache": sorted({b[0] for b in seen}),
            "cache saw the Docker Hub password": any(b == w.hub_user for b in seen),
            "then Docker Hub's token service saw users": sorted({c["user"] or "" for c in w.hub_tokens.calls}),
            "error": pull.error,
        }
        assert not pull.ok
        assert seen and all(b == w.hub_user for b in seen), seen
        assert any(c["user"] == w.hub_user[0] for c in w.hub_tokens.calls), w.hub_tokens.calls

        # (c) pullcred answering docker.io with the CACHE's robot account.
        # Today pullcred checks a docker.io credential against Docker Hub,
        # which refuses the cache's robot: no answer at all
        checked = docker_io_node(plugin, w, tmp_path, CACHE_USER).pull(image)
        evidence["docker.io answer = the cache's robot, registry check on"] = {
            "pullcred answered": bool(checked.offered), "pulled": checked.ok}
        assert checked.offered == [] and not checked.ok
        # with the check off, containerd carries them to the cache: it works
        w.mirror.clear()
        w.hub_tokens.calls.clear()
        cache_node = docker_io_node(plugin, w, tmp_path, CACHE_USER, PULLCRED_NO_REGISTRY_CHECK="1")
        pull = cache_node.pull(image)
        evidence["private cache, docker.io answer = the cache's robot (--no-registry-check)"] = {
            "pulled": pull.ok, "basic users seen by the cache": sorted({b[0] for b in w.mirror.basic_seen()}),
            "Docker Hub contacted": bool(w.hub_tokens.calls)}
        assert pull.ok, pull.error
        assert {b[0] for b in w.mirror.basic_seen()} == {CACHE_USER[0]}
        w.cri.remove_all()

        # (d) what server_address would do (the kubelet never sets it):
        # credentials scoped to the mirror host reach only the mirror
        pb2 = w.cri.pb2
        scoped = {}
        for addr in (f"https://{MIRROR}", f"https://{HUB}", "https://index.docker.io/v1/"):
            w.mirror.clear()
            auth = pb2.AuthConfig(username=CACHE_USER[0], password=CACHE_USER[1], server_address=addr)
            try:
                w.cri.pull("docker.io/" + image, auth)
                ok = True
            except Exception:
                ok = False
            scoped[addr] = {"pulled": ok, "cache saw credentials": bool(w.mirror.basic_seen())}
            w.cri.remove_all()
        evidence["server_address set (not by the kubelet)"] = scoped
        assert scoped[f"https://{MIRROR}"] == {"pulled": True, "cache saw credentials": True}
        assert scoped[f"https://{HUB}"]["cache saw credentials"] is False
        assert scoped["https://index.docker.io/v1/"]["cache saw credentials"] is False
    finally:
        w.mirror.require_basic = None
        w.cri.hosts_toml("docker.io", f"https://{HUB}", [(f"https://{HUB}", ["pull", "resolve"])])
        (w.root / "mirror-evidence.json").write_text(json.dumps(evidence, indent=2))
        print("\nMIRROR EVIDENCE (containerd %s):\n%s" % (w.cri.version, json.dumps(evidence, indent=2)))


def test_image_rewritten_to_the_cache_host_pulls_with_its_own_answer(plugin, world, tmp_path):
    """The working alternative: the pod names the cache host itself
    (`mirror.example.net/library/cached`); pullcred answers for that host."""
    w = world
    w.mirror.require_basic = {CACHE_USER[0]: CACHE_USER[1]}
    try:
        cfg = docker_config(tmp_path / "config.json", {MIRROR: CACHE_USER})
        node = KubeletDriver(plugin, kubelet_config(extra_match=(MIRROR,)), w.cri,
                             env=env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg)))
        pull = node.pull(f"{MIRROR}/library/cached:1.0")
        assert pull.ok and pull.user == CACHE_USER[0], (pull.offered, pull.error)
    finally:
        w.mirror.require_basic = None
