"""Test 4 of issue #16, the mirror map: `--mirror docker.io=<ECR>/docker-hub`
with containerd's hosts.toml sending docker.io's pulls to the ECR
pull-through cache, and only there.

The kubelet passes the plugin's username and password for docker.io with no
server_address, and containerd offers them to every host hosts.toml lists
for docker.io (tests/e2e/test_mirror.py has the evidence). So the answer for
docker.io must be the cache's credential, and no host but the cache may be
tried: `server` is the ECR host too, and the cache rule's path comes from
`override_path`. A pod's `library/nginx:1.0` then pulls from
<ECR>/docker-hub/library/nginx:1.0 with pullcred's ECR token, and Docker
Hub's stand-in is never contacted."""

import yaml

from common import ECR, HUB, env_for, kubelet_config
from driver import KubeletDriver
from test_sources import assert_pulled


def mirror_config():
    doc = yaml.safe_load(kubelet_config())
    p = doc["providers"][0]
    p["args"] = list(p.get("args") or []) + ["--mirror", f"docker.io={ECR}/docker-hub"]
    return yaml.safe_dump(doc)


def test_docker_io_pulls_through_the_ecr_cache_with_pullcreds_ecr_token(plugin, world):
    w = world
    w.cri.hosts_toml("docker.io", f"https://{ECR}", [(f"https://{ECR}/v2/docker-hub", ["pull", "resolve"], True)])
    try:
        hub_calls = len(w.hub_tokens.calls)
        ecr_calls = w.ecr.call_count()
        node = KubeletDriver(plugin, mirror_config(), w.cri, env=env_for(w))
        pull = node.pull("library/nginx:1.0")
        # the plugin was asked about docker.io and answered with the ECR token
        assert pull.user == "AWS", (pull.offered, pull.error)
        assert_pulled(w, pull)
        assert w.ecr.call_count() == ecr_calls + 1
        # a direct pull of the cache's own name shares that token
        assert_pulled(w, node.pull(w.image["ecr_ptc"]))
        assert w.ecr.call_count() == ecr_calls + 1
        assert len(w.hub_tokens.calls) == hub_calls, "Docker Hub's token service was contacted"
    finally:
        w.cri.hosts_toml("docker.io", f"https://{HUB}", [(f"https://{HUB}", ["pull", "resolve"])])
