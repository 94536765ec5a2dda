"""Test 2 of issue #16: a kubelet restart (a new driver: its in-memory
cache is empty) pulls 20 images of one ECR registry at once, one thread per
pod, as the kubelet's parallel image pulls do. The kubelet runs pullcred
once per image (it collapses concurrent requests only for the same image):
20 execs at the same moment. Every pull succeeds through containerd, and
the ECR stand-in sees ONE GetAuthorizationToken: pullcred's own lock and
on-node cache did the deduplication.

Then a second restart, pullcred's cache warm: 20 pulls, no upstream call."""

import threading
from concurrent.futures import ThreadPoolExecutor

from common import env_for, kubelet_config
from driver import KubeletDriver


def pull_all(node, images):
    """Every pod's pull starts at the same moment (a barrier), as after a
    node boot or kubelet restart."""
    gate = threading.Barrier(len(images))

    def one(image):
        gate.wait()
        return node.pull(image)

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        return list(pool.map(one, images))


def test_twenty_pods_at_boot_make_one_upstream_call(plugin, world):
    w = world
    before = w.ecr.call_count()
    node = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w))
    pulls = pull_all(node, w.many)
    failed = [(p.image, p.error) for p in pulls if not p.ok]
    assert failed == [], failed
    # the kubelet ran pullcred for every image whose lookup came before the
    # first answer reached its cache: concurrent execs really happened
    assert node.execs >= 2, node.execs
    print(f"\nboot: {node.execs} pullcred execs for 20 images, 1 GetAuthorizationToken")
    assert w.ecr.call_count() - before == 1, "one GetAuthorizationToken for the whole boot"
    assert all(p.user == "AWS" for p in pulls)
    listed = {t for img in w.cri.list() for t in img.repo_tags}
    assert {p.image for p in pulls} <= listed
    w.cri.remove_all()

    # the kubelet restarts again: its cache is cold, pullcred's is warm
    again = KubeletDriver(plugin, kubelet_config(), w.cri, env=env_for(w))
    pulls = pull_all(again, w.many)
    assert [p.error for p in pulls if not p.ok] == []
    assert again.execs >= 2
    assert w.ecr.call_count() - before == 1
