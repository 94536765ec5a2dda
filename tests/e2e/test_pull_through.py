"""Test 4 of issue #16, the working path: pull-through caches used by
rewriting the image to the cache host. An ECR pull-through cache rule
(`<registry>/docker-hub/library/nginx`), a Harbor proxy project
(`harbor.example.com/dockerhub-proxy/...`, pulled with that project's robot
from a docker-config key confined to it) and an ACR cache rule
(`myreg.azurecr.io/docker.io/library/nginx`) are ordinary images of their
registries: the kubelet asks pullcred about the cache host, and containerd
pulls with its answer."""

import pytest

from common import HARBOR, docker_config, env_for, kubelet_config
from driver import KubeletDriver
from test_sources import assert_pulled, assert_refused


@pytest.mark.parametrize("key", ["ecr_ptc", "acr_cache"])
def test_a_cloud_cache_rule_pulls_with_pullcreds_answer(plugin, world, key):
    w = world
    node = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w))
    assert_pulled(w, node.pull(w.image[key]))


def test_a_harbor_proxy_project_pulls_with_its_own_robot(plugin, world, tmp_path):
    w = world
    robot = ("proxy-robot", w.harbor_users["proxy-robot"])
    cfg = docker_config(tmp_path / "config.json", {f"{HARBOR}/dockerhub-proxy/": robot})
    node = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg),
                                                                    PULLCRED_NO_REGISTRY_CHECK="1"))
    assert_pulled(w, node.pull(w.image["harbor_proxy"]))
    # the confined key goes nowhere else on the host: team-a's image is
    # pulled anonymously, and refused
    assert_refused(w, node.pull(w.image["harbor_team_a"]))
