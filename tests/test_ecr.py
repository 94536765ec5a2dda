"""Amazon ECR: every partition and host style, ECR Public, and moto."""

import pytest

from conftest import V1, ecr_env, request

# (host, region the API must be called in)
PARTITIONS = [
    ("123456789012.dkr.ecr.us-west-2.amazonaws.com", "us-west-2"),
    ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", "us-east-1"),
    ("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", "us-gov-west-1"),
    ("123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com", "us-gov-east-1"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"),
    ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", "eusc-de-east-1"),
    ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", "us-iso-east-1"),
    ("123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", "us-isob-east-1"),
    ("123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", "eu-isoe-west-1"),
    ("123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", "us-isof-south-1"),
    ("123456789012.dkr-ecr.us-west-2.on.aws", "us-west-2"),
    ("123456789012.dkr-ecr-fips.us-west-2.on.aws", "us-west-2"),
    ("123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn", "cn-north-1"),
]


@pytest.mark.parametrize("host,region", PARTITIONS, ids=[h for h, _ in PARTITIONS])
def test_every_partition_gets_a_token_from_its_region(plugin, standin, host, region):
    res = plugin.run(request(f"{host}/team/app"), env=ecr_env(standin.url))
    assert res.code == 0, res.stderr
    body = res.json
    assert list(body["auth"]) == [host]
    assert body["auth"][host]["username"] == "AWS"
    call = standin.calls[-1]
    assert call["region"] == region
    assert call["service"] == "ecr"
    assert call["target"].startswith("AmazonEC2ContainerRegistry")


LOOK_ALIKES = [
    "123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.io/app",
    "evil.io/123456789012.dkr.ecr.us-west-2.amazonaws.com/app",
    "1234567890123.dkr.ecr.us-west-2.amazonaws.com/app",
    "12345678901.dkr.ecr.us-west-2.amazonaws.com/app",
    "123456789012.dkr.ecr.us-west-2.amazonaws.hacker.com/app",
    "123456789012.dkr.ecr.us-west-2.amazonaws.lol/app",
    "123456789012.dkr.ecr.us-west-2.amazonaws.gov/app",
    "123456789012.dog.ecr.us-west-2.amazonaws.com/app",
    "123456789012.dkr.cat.us-west-2.amazonaws.com/app",
    "123456789012.lala-land-1.amazonaws.com/app",
    "public.ecr.aws.evil.io/app",
    "evil.io/public.ecr.aws/app",
]


@pytest.mark.parametrize("image", LOOK_ALIKES)
def test_look_alikes_get_nothing(plugin, standin, image):
    res = plugin.run(request(image), env=ecr_env(standin.url))
    assert res.code == 1
    assert "no pullcred source serves registry" in res.stderr
    assert standin.call_count() == 0


def test_ecr_against_moto(plugin, moto):
    """moto (server mode) answers GetAuthorizationToken with a real-shaped
    token whose expiry is in 2015: served with 0s, not cached, warned."""
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    res = plugin.run(request(f"{host}/app"), env={"AWS_ENDPOINT_URL": moto})
    assert res.code == 0, res.stderr
    body = res.json
    assert body["apiVersion"] == V1
    assert body["auth"][host]["username"] == "AWS"
    assert body["auth"][host]["password"]
    assert body["cacheDuration"] == "0s"
    assert "already past" in res.stderr
    assert not list(plugin.cache_dir.glob("*.json"))


def test_ecr_public_against_moto(plugin, moto):
    res = plugin.run(request("public.ecr.aws/nginx/nginx"), env={"AWS_ENDPOINT_URL": moto})
    # moto's ecr-public may not implement GetAuthorizationToken; either way the
    # answer is a response or one clear line, never a crash.
    if res.code == 0:
        assert res.json["auth"]["public.ecr.aws"]["password"]
    else:
        assert "ecr-public GetAuthorizationToken" in res.stderr


def test_no_credentials_is_a_clear_error(plugin, standin):
    env = ecr_env(standin.url)
    env.update({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None})
    res = plugin.run(request("123456789012.dkr.ecr.us-west-2.amazonaws.com/app"), env=env, args=["--timeout", "5s"])
    assert res.code == 1
    assert "registry 123456789012.dkr.ecr.us-west-2.amazonaws.com" in res.stderr
    assert "credential" in res.stderr.lower()
    assert standin.call_count() == 0
