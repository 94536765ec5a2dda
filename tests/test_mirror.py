"""`--mirror SOURCE=TARGET[/PREFIX]` for every cloud: images of SOURCE are
answered, keyed SOURCE, with the credentials of TARGET/PREFIX/<repository>
(an ECR pull-through cache, an Artifact Registry remote repository, an ACR,
a static key's registry). containerd hands the credentials the kubelet got
for SOURCE to every host hosts.toml lists for it (README, "Registry mirrors
and pull-through caches"); tests/e2e/test_mirror_map.py pulls through one.

The ACR cases (and PULLCRED_ACR_MIRRORS) are in tests/test_azure.py."""

import pytest

from conftest import ecr_env, request
from test_static import docker_config, env_for, registry, tripwire, user  # noqa: F401  (fixtures)

ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
HUB_IMAGE = "docker.io/library/nginx"


def test_ecr_pull_through_cache_answers_for_docker_io(plugin, standin):
    """docker.io's images get the ECR token of the pull-through cache's
    region, keyed docker.io; a direct pull of the ECR host shares that one
    GetAuthorizationToken."""
    args = ["--mirror", f"docker.io={ECR}/docker-hub"]
    res = plugin.run(request(HUB_IMAGE), env=ecr_env(standin.url), args=args)
    assert res.code == 0, res.stderr
    body = res.json
    assert list(body["auth"]) == ["docker.io"]
    assert body["auth"]["docker.io"]["username"] == "AWS"
    assert body["cacheKeyType"] == "Registry"
    [call] = standin.calls
    assert call["region"] == "us-east-1" and call["service"] == "ecr"
    # the ECR host itself, directly: the same entry, re-keyed
    direct = plugin.run(request(f"{ECR}/team/app"), env=ecr_env(standin.url), args=args)
    assert direct.code == 0, direct.stderr
    assert list(direct.json["auth"]) == [ECR]
    assert direct.json["auth"][ECR]["password"] == body["auth"]["docker.io"]["password"]
    assert standin.call_count() == 1


def test_mirrors_env_variable(plugin, standin):
    e = dict(ecr_env(standin.url), PULLCRED_MIRRORS=f"quay.io=myreg.azurecr.io, docker.io={ECR}/docker-hub/")
    res = plugin.run(request(HUB_IMAGE), env=e)
    assert res.code == 0, res.stderr
    assert list(res.json["auth"]) == ["docker.io"]
    assert res.json["auth"]["docker.io"]["username"] == "AWS"


def test_the_former_acr_variable_takes_any_target(plugin, standin):
    e = dict(ecr_env(standin.url), PULLCRED_ACR_MIRRORS=f"docker.io={ECR}/docker-hub")
    res = plugin.run(request(HUB_IMAGE), env=e)
    assert res.code == 0, res.stderr
    assert list(res.json["auth"]) == ["docker.io"]


def test_artifact_registry_remote_repository_answers_for_its_source(plugin, google):
    res = plugin.run(request("quay.io/org/app"), env={"GCE_METADATA_HOST": google.host},
                     args=["--mirror", "quay.io=us-docker.pkg.dev/proj/remote-repo"])
    assert res.code == 0, res.stderr
    body = res.json
    assert list(body["auth"]) == ["quay.io"]
    assert body["auth"]["quay.io"]["username"] == "oauth2accesstoken"
    assert body["auth"]["quay.io"]["password"].startswith("ya29.standin-")
    assert body["cacheKeyType"] == "Registry"
    assert len(google.calls) == 1


def test_static_target_is_checked_at_the_target_and_rekeyed(plugin, registry, tmp_path, tripwire):
    """A Harbor-style proxy project holding a static key: the credentials
    are checked at TARGET (the real registry), never at SOURCE (a listener
    that must not be contacted), and answered keyed SOURCE."""
    cfg = docker_config(tmp_path / "config.json", {f"{registry.host}/team/": user(registry)})
    args = ["--mirror", f"{tripwire.host}={registry.host}/team"]
    res = plugin.run(request(f"{tripwire.host}/app"), env=env_for(registry, cfg), args=args)
    assert res.code == 0, res.stderr
    body = res.json
    assert list(body["auth"]) == [tripwire.host]
    got = (body["auth"][tripwire.host]["username"], body["auth"][tripwire.host]["password"])
    assert got == user(registry)
    # SOURCE is a whole registry: the answer is registry-wide
    assert body["cacheKeyType"] == "Registry"
    assert tripwire.hits == []
    # the credentials open the image at TARGET/PREFIX
    assert registry.skopeo_inspect(f"{registry.host}/team/app:1.0", got).returncode == 0

    # a wrong password fails the check at TARGET, still without a word to SOURCE
    bad = docker_config(tmp_path / "bad.json", {f"{registry.host}/team/": ("user1", "wrong-password")})
    res = plugin.run(request(f"{tripwire.host}/other"), env=env_for(registry, bad), args=args)
    assert res.code == 1
    assert registry.host in res.stderr, res.stderr
    assert tripwire.hits == []


def test_a_target_no_source_serves_is_a_usage_error(plugin, standin):
    res = plugin.run(request(HUB_IMAGE), env=ecr_env(standin.url), args=["--mirror", "docker.io=quay.io/proxy"])
    assert res.code == 2
    assert "--mirror docker.io=quay.io/proxy: no pullcred source serves quay.io/proxy" in res.stderr
    assert standin.call_count() == 0


@pytest.mark.parametrize("bad", ["docker.io", "docker.io=harbor/proxy", "docker.io/x=myreg.azurecr.io", "docker.io=docker.io"])
def test_bad_mirror_syntax_is_a_usage_error(plugin, bad):
    res = plugin.run(request(HUB_IMAGE), args=["--mirror", bad])
    assert res.code == 2
    assert "mirror" in res.stderr


def test_only_the_whole_source_registry_is_mirrored(plugin, standin):
    args = ["--mirror", f"docker.io={ECR}/docker-hub"]
    res = plugin.run(request("quay.io/docker.io/nginx"), env=ecr_env(standin.url), args=args)
    assert res.code == 1
    assert "no pullcred source serves registry" in res.stderr
    assert standin.call_count() == 0
