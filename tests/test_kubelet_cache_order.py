"""pullcred's answers replayed through the kubelet's own cache order.

The kubelet looks its cache up by image, then registry, then global, BEFORE it
runs the plugin (pkg/credentialprovider/plugin/plugin.go, getCachedCredentials;
../shared/KUBELET-CONTRACT.md). A `Registry`-scoped answer therefore answers
every later image of that host for `cacheDuration`, and would shadow a
path-scoped key such as `docker.io/myorg`. For a sequence of pulls, each image
must get exactly the credentials the kubelet would use with no cache at all.
"""

import base64
import json
import os

import pytest

import kubelet
from conftest import ecr_env, register_secret

NO_CHECK = {"PULLCRED_NO_REGISTRY_CHECK": "1"}


def docker_config(path, auths):
    doc = {"auths": {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for k, (u, p) in auths.items()}}
    for _, p in auths.values():
        register_secret(p)
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    return path


def replay(plugin, env, images, step=30):
    """Each image through a kubelet with its cache, and through one with
    none; returns the pairs that differ."""
    node = kubelet.Kubelet(plugin, env=env)
    wrong = []
    for image in images:
        got = node.credentials(image)
        fresh = kubelet.Kubelet(plugin, env=env).credentials(image)
        assert fresh, f"pullcred gave no credentials for {image}"
        if got != fresh:
            wrong.append((image, [u for u, _ in got], [u for u, _ in fresh]))
        node.cache.advance(step)
    return wrong, node


PULLS = {
    "docker hub with an org robot": (
        {"docker.io": ("ratelimit", "rl-pat-0001"), "docker.io/myorg": ("orgrobot", "org-pat-0001")},
        [
            "docker.io/library/nginx",
            "docker.io/myorg/private",
            "docker.io/myorg/other",
            "docker.io/library/redis",
            "docker.io/myorg/private",
            "docker.io/library/nginx",
        ],
    ),
    "harbor with a team project": (
        {"harbor.example.com": ("node", "harbor-node-0001"), "harbor.example.com/team-a": ("team-a", "harbor-a-0001")},
        [
            "harbor.example.com/public/base",
            "harbor.example.com/team-a/app",
            "harbor.example.com/team-b/app",
            "harbor.example.com/team-a/app",
            "harbor.example.com/team-ab/app",
        ],
    ),
    "a confined project key": (
        {"harbor.example.com": ("node", "harbor-node-0002"), "harbor.example.com/team-a/": ("team-a", "harbor-a-0002")},
        [
            "harbor.example.com/team-ab/app",
            "harbor.example.com/team-a/app",
            "harbor.example.com/team-ab/app",
        ],
    ),
}


@pytest.mark.parametrize("case", list(PULLS))
def test_every_image_gets_what_an_uncached_kubelet_would_use(plugin, tmp_path, case):
    auths, images = PULLS[case]
    cfg = docker_config(tmp_path / "config.json", auths)
    env = {"PULLCRED_DOCKER_CONFIG": str(cfg), **NO_CHECK}
    wrong, node = replay(plugin, env, images)
    assert wrong == [], f"served from a registry-wide kubelet entry: {wrong}"
    # and the kubelet's cache still saves execs for repeated images
    assert node.execs < len(images)


def test_a_host_without_path_keys_stays_registry_scoped(plugin, tmp_path):
    cfg = docker_config(tmp_path / "config.json", {"quay.io": ("q", "quay-0001"), "docker.io/myorg": ("o", "org-0002")})
    env = {"PULLCRED_DOCKER_CONFIG": str(cfg), **NO_CHECK}
    res = plugin.run(kubelet_request("quay.io/a/b"), env=env)
    assert res.code == 0, res.stderr
    assert res.json["cacheKeyType"] == "Registry"
    wrong, node = replay(plugin, env, ["quay.io/a/b", "quay.io/c/d", "quay.io/a/b"])
    assert wrong == []
    assert node.execs == 1


def test_a_cloud_token_for_a_host_with_a_path_key_is_image_scoped(plugin, standin, tmp_path):
    """An ECR registry whose team-a repositories use a static robot key from
    the node's docker config: the ECR token for the rest of the registry must
    not become the kubelet's registry-wide entry."""
    host = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    cfg = docker_config(tmp_path / "config.json", {f"{host}/team-a": ("robot", "ecr-robot-0001")})
    env = {"PULLCRED_DOCKER_CONFIG": str(cfg), **NO_CHECK, **ecr_env(standin.url)}
    res = plugin.run(kubelet_request(f"{host}/platform/app"), env=env)
    assert res.code == 0, res.stderr
    assert res.json["cacheKeyType"] == "Image"
    assert res.json["auth"][host]["username"] == "AWS"
    wrong, _ = replay(plugin, env, [f"{host}/platform/app", f"{host}/team-a/app", f"{host}/platform/app"])
    assert wrong == []
    # the same answer from pullcred's own cache keeps the Image scope
    again = plugin.run(kubelet_request(f"{host}/platform/app"), env=env)
    assert again.json["cacheKeyType"] == "Image"


def kubelet_request(image):
    return {"apiVersion": kubelet.V1, "kind": "CredentialProviderRequest", "image": image}


def test_a_key_ending_in_a_slash_keeps_it_and_stays_below_its_path(plugin, tmp_path):
    """`harbor.example.com/team-a` also matches `team-ab` (the kubelet's match
    is a plain string prefix); `harbor.example.com/team-a/` does not, and
    pullcred hands the key back as written."""
    cfg = docker_config(tmp_path / "config.json", {"harbor.example.com/team-a/": ("team-a", "harbor-a-0003")})
    env = {"PULLCRED_DOCKER_CONFIG": str(cfg), **NO_CHECK}
    res = plugin.run(kubelet_request("harbor.example.com/team-a/app"), env=env)
    assert res.code == 0, res.stderr
    assert list(res.json["auth"]) == ["harbor.example.com/team-a/"]
    assert kubelet.credentials_for(res.json["auth"], "harbor.example.com/team-a/app") == [("team-a", "harbor-a-0003")]
    other = plugin.run(kubelet_request("harbor.example.com/team-ab/app"), env=env)
    assert other.code == 1
