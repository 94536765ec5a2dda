"""Test 3 of issue #16: the kubelet cache-order case (issue #11) through
containerd. A Harbor-style registry with distribution's token auth: its
token service grants `team-a/*` to the team-a robot only, and everything
else to the node account, so a wrong credential really fails at the
registry. The node's docker config holds a key for the host and a
path-scoped key `harbor.example.com/team-a/`.

If pullcred answered with a Registry-scoped cache entry, the kubelet would
serve the node account to team-a/app from its cache (it looks up image,
then registry, then global BEFORE it execs), and containerd's pull would
fail. Each pull must use the right robot account."""

from common import HARBOR, docker_config, env_for, kubelet_config
from driver import KubeletDriver

IMAGES = [
    (f"{HARBOR}/team-ab/app:1.0", "node"),
    (f"{HARBOR}/team-a/app:1.0", "team-a"),
    (f"{HARBOR}/team-ab/app:1.0", "node"),
    (f"{HARBOR}/team-a/app:1.0", "team-a"),
]


def test_each_pull_uses_the_right_robot_account(plugin, world, tmp_path):
    w = world
    cfg = docker_config(tmp_path / "config.json", {
        HARBOR: ("node", w.harbor_users["node"]),
        f"{HARBOR}/team-a/": ("team-a", w.harbor_users["team-a"]),
    })
    node = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w, PULLCRED_DOCKER_CONFIG=str(cfg)))
    for image, user in IMAGES:
        pull = node.pull(image)
        assert pull.ok, (image, pull.offered, pull.error)
        assert pull.user == user, (image, pull.offered)
        w.cri.remove(image)
    # the kubelet's cache still saved execs for the repeated images
    assert node.execs < len(IMAGES)


def test_the_registry_really_refuses_the_other_robot(plugin, world):
    """The harness's own check: the node account cannot pull team-a/app,
    and the team-a robot cannot pull team-ab/app."""
    w = world
    pb2 = w.cri.pb2
    import grpc
    import pytest

    for image, user in ((f"{HARBOR}/team-a/app:1.0", "node"), (f"{HARBOR}/team-ab/app:1.0", "team-a")):
        with pytest.raises(grpc.RpcError) as err:
            w.cri.pull(image, pb2.AuthConfig(username=user, password=w.harbor_users[user]))
        assert "pull access denied" in err.value.details() or "401" in err.value.details()
