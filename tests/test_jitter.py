"""Jittered refresh (issue #20 item 2).

Without jitter every node refreshes a 12-hour ECR token at exactly 11 hours,
so nodes booted together (a scale-out, a node-group roll) refresh together
forever. pullcred moves each node's refresh point of each entry earlier by a
stable fraction of the refresh window (the margin: a quarter of the token's
life, 5 minutes to 1 hour), derived from the node's ID (`PULLCRED_NODE_ID`,
else /etc/machine-id) and the cache key. Never later than the unjittered
point, so never past expiry; `cacheDuration` follows the jittered point.

These tests boot a hundred simulated nodes in the same second against the
ECR stand-in (12-hour tokens): the acceptance is that they refresh over at
least a fifth of the window.
"""

import pytest

from conftest import ecr_env, request

HOST = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
H = 3600


def secs(go):
    """A Go duration as pullcred writes it (whole seconds: `10h4m7s`)."""
    total, num = 0, ""
    for c in go:
        if c.isdigit():
            num += c
        else:
            total += int(num) * {"h": 3600, "m": 60, "s": 1}[c]
            num = ""
    return total


def cache_duration(plugin, tmp_path, node, env_extra=None, name=None):
    env = dict(ecr_env(plugin.standin_url), PULLCRED_REFRESH_JITTER="1", PULLCRED_NODE_ID=node,
               PULLCRED_CACHE_DIR=str(tmp_path / (name or node)))
    env.update(env_extra or {})
    res = plugin.run(request(f"{HOST}/app"), env=env)
    assert res.code == 0, res.stderr
    return secs(res.json["cacheDuration"])


@pytest.fixture
def nodes(plugin, standin):
    plugin.standin_url = standin.url
    return plugin


def test_a_hundred_nodes_booted_together_spread_their_refresh(nodes, tmp_path, standin):
    durations = [cache_duration(nodes, tmp_path, f"node-{i:03d}") for i in range(100)]
    assert len(standin.calls) == 100
    window = H  # a 12h token's margin: refreshed between 10h and 11h after the fetch
    # never later than the unjittered 11h (a few seconds of test time aside),
    # never earlier than the window allows
    assert all(10 * H - 60 <= d <= 11 * H for d in durations), (min(durations), max(durations))
    spread = max(durations) - min(durations)
    assert spread >= window / 5, f"refreshes spread over {spread}s of a {window}s window"
    # and not bunched: at least 8 of 10 six-minute slices of the window are used
    slices = {min(9, (11 * H - d) // (window // 10)) for d in durations}
    assert len(slices) >= 8, sorted(slices)


def test_one_node_is_stable_and_answers_hits_consistently(nodes, tmp_path, standin):
    first = cache_duration(nodes, tmp_path, "node-a", name="shared")
    again = cache_duration(nodes, tmp_path, "node-a", name="shared")
    assert len(standin.calls) == 1, "the second exec is a hit"
    assert 0 <= first - again <= 2, (first, again)
    # the same node, a fresh cache: the same offset
    other_dir = cache_duration(nodes, tmp_path, "node-a", name="fresh")
    assert abs(other_dir - first) <= 2


def test_jitter_off_refreshes_at_three_quarters(nodes, tmp_path):
    d = [cache_duration(nodes, tmp_path, f"n{i}", {"PULLCRED_REFRESH_JITTER": "0"}) for i in range(5)]
    assert all(11 * H - 5 <= x <= 11 * H for x in d), d


def test_a_short_token_keeps_most_of_its_cache_time(nodes, tmp_path, standin):
    """A 10-minute token's margin is 5 minutes; jitter may take at most half
    of the 5 minutes left before the refresh point."""
    standin.configure(expires_in=600)
    d = [cache_duration(nodes, tmp_path, f"short-{i}") for i in range(20)]
    assert all(150 - 5 <= x <= 300 for x in d), d


def test_bad_jitter_value_is_a_usage_error(nodes, tmp_path):
    res = nodes.run(request(f"{HOST}/app"), env=dict(ecr_env(nodes.standin_url), PULLCRED_REFRESH_JITTER="2"))
    assert res.code == 2
    assert "between 0 and 1" in res.stderr
