"""The kubelet model in tests/kubelet.py agrees with the matching vectors
restated from the kubelet's keyring tests (tests/vectors/kubelet-matching.json,
from pkg/credentialprovider/keyring_test.go), so that the tests built on it
replay what a kubelet does."""

import json
from pathlib import Path

import pytest

import kubelet

VECTORS = json.loads((Path(__file__).parent / "vectors" / "kubelet-matching.json").read_text())


@pytest.mark.parametrize("glob,image,want", VECTORS["matchImages"], ids=lambda v: str(v))
def test_match_images(glob, image, want):
    assert kubelet.glob_matches(glob, image) is want


@pytest.mark.parametrize("key,image,want", VECTORS["authKeys"], ids=lambda v: str(v))
def test_auth_keys(key, image, want):
    assert bool(kubelet.auth_keys_for({key: {"username": "u", "password": "p"}}, image)) is want


@pytest.mark.parametrize("image,want", VECTORS["dockerHubImage"], ids=lambda v: str(v))
def test_docker_hub_images(image, want):
    assert kubelet.is_docker_hub_image(image) is want


def test_go_durations():
    assert kubelet.parse_go_duration("5m0s") == 300
    assert kubelet.parse_go_duration("1h2m3.5s") == 3723.5
    assert kubelet.parse_go_duration("0s") == 0
    assert kubelet.parse_go_duration("1500ms") == 1.5
    with pytest.raises(ValueError):
        kubelet.parse_go_duration("5 minutes")


def test_cache_lookup_order_is_image_then_registry_then_global():
    c = kubelet.KubeletCache()
    c.store("a.io/x/y", {"cacheKeyType": "Registry", "cacheDuration": "60s", "auth": {"a.io": {}}})
    assert c.lookup("a.io/other")[1] == "a.io"
    c.store("a.io/x/y", {"cacheKeyType": "Image", "cacheDuration": "60s", "auth": {"a.io/x": {}}})
    assert c.lookup("a.io/x/y")[1] == "a.io/x/y"
    c.store("b.io/z", {"cacheKeyType": "Global", "cacheDuration": "120s", "auth": {}})
    assert c.lookup("c.io/q")[1] == kubelet.GLOBAL
    c.advance(61)
    assert c.lookup("a.io/x/y")[1] == kubelet.GLOBAL
    c.advance(60)
    assert c.lookup("a.io/x/y") == (None, None)
    c.store("d.io/z", {"cacheKeyType": "Image", "cacheDuration": "0s", "auth": {}})
    assert c.lookup("d.io/z")[1] is None
