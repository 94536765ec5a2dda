"""Bounded work per pod author (#15, section 7).

A pod author can name any number of made-up registry hosts. An ECR token is
good for every registry the identity may read in its region (the ECR API
reference: `registryIds` is deprecated and does not change the token's
scope), and a Google access token for every Google registry, so such hosts
must cost no more upstream calls than one real host. Request text a pod
author controls (annotations, token claims) is clipped in error lines."""

import satoken
from conftest import ecr_env, free_port, request


def ecr_calls(standin):
    return [c for c in standin.calls if c["service"] == "ecr"]


def test_five_accounts_in_one_region_make_one_ecr_call(plugin, standin):
    hosts = [f"{n:012d}.dkr.ecr.us-west-2.amazonaws.com" for n in (123456789012, 210987654321, 111111111111, 222222222222, 333333333333)]
    for h in hosts:
        res = plugin.run(request(f"{h}/team/app"), env=ecr_env(standin.url))
        assert res.code == 0, res.stderr
        assert list(res.json["auth"]) == [h], "each answer names the host asked about"
        assert res.json["cacheKeyType"] == "Registry"
    assert len(ecr_calls(standin)) == 1
    # one cache entry, not one per made-up account
    assert len(list(plugin.cache_dir.glob("*.json"))) == 1


def test_regions_partitions_and_endpoint_variants_stay_apart(plugin, standin):
    hosts = [
        "123456789012.dkr.ecr.us-west-2.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
        "123456789012.dkr-ecr.us-east-1.on.aws",
        "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
    ]
    for h in hosts:
        assert plugin.run(request(f"{h}/app"), env=ecr_env(standin.url)).code == 0
    assert len(ecr_calls(standin)) == len(hosts)
    for h in hosts:
        assert plugin.run(request(f"{h}/other"), env=ecr_env(standin.url)).code == 0
    assert len(ecr_calls(standin)) == len(hosts)


def test_google_hosts_share_one_token(plugin, google):
    env = {"GCE_METADATA_HOST": google.host}
    images = ["us-docker.pkg.dev/p/r/app", "gcr.io/p/app", "eu.gcr.io/p/app", "europe-west1-docker.pkg.dev/q/r/app"]
    for image in images:
        res = plugin.run(request(image), env=env)
        assert res.code == 0, res.stderr
        assert list(res.json["auth"]) == [image.split("/")[0]]
    assert google.call_count("metadata") == 1


def test_a_megabyte_of_request_text_is_clipped_in_the_error_line(plugin):
    """An Entra client ID annotation of 900 kB, and Entra down: the error line
    names the client, clipped, not the whole annotation."""
    token = satoken.mint("team-a", "puller")
    annotations = {
        "kubernetes.azure.com/acr-client-id": "c" * 900_000,
        "kubernetes.azure.com/acr-tenant-id": "22222222-bbbb-4bbb-8bbb-222222222222",
    }
    req = satoken.sa_request("myreg.azurecr.io/app", token, annotations)
    env = {"AZURE_AUTHORITY_HOST": f"http://127.0.0.1:{free_port()}"}
    res = plugin.run(req, env=env, args=["--timeout", "3s"])
    assert res.code == 1
    [line] = [l for l in res.stderr.splitlines() if l.startswith("pullcred:")]
    assert len(line) <= 1100, len(line)
    assert "more bytes" in line
    assert len(res.stderr) < 4096
