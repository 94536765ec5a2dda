"""Names, addresses and helpers shared by the e2e tests."""

import json
import os
import ssl
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

ECR = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
ECR_PUBLIC = "public.ecr.aws"
GAR = "us-docker.pkg.dev"
ACR = "myreg.azurecr.io"
STATIC = "registry.example.com"
HARBOR = "harbor.example.com"
HUB = "registry-1.docker.io"
HUB_AUTH = "auth.docker.io"
MIRROR = "mirror.example.net"

ADDRESSES = {
    ECR: "127.0.0.2",
    ECR_PUBLIC: "127.0.0.3",
    GAR: "127.0.0.4",
    ACR: "127.0.0.5",
    STATIC: "127.0.0.6",
    HARBOR: "127.0.0.7",
    HUB: "127.0.0.8",
    "index.docker.io": "127.0.0.8",
    HUB_AUTH: "127.0.0.9",
    MIRROR: "127.0.0.10",
}
ACR_USER = "00000000-0000-0000-0000-000000000000"

# The provider entry: the project's own all-clouds example plus the hosts the
# static sources serve (as `config generate --cloud generic` writes them).
EXAMPLES = HERE.parent.parent / "kubelet-config" / "examples"


def kubelet_config(extra_match=(STATIC, HARBOR, "docker.io"), token_attributes=None, name="pullcred"):
    import yaml

    doc = yaml.safe_load((EXAMPLES / "all-clouds.yaml").read_text())
    p = doc["providers"][0]
    p["name"] = name
    p["matchImages"] = list(p["matchImages"]) + list(extra_match)
    if token_attributes:
        p["tokenAttributes"] = token_attributes
    return yaml.safe_dump(doc)


def env_for(w, **extra):
    """The kubelet's environment for pullcred: every stand-in, the test CA."""
    e = {
        "SSL_CERT_FILE": str(w.pki.ca),
        "AWS_ENDPOINT_URL_ECR": w.ecr.url,
        "AWS_ENDPOINT_URL_ECR_PUBLIC": w.ecr_public.url,
        "AWS_ENDPOINT_URL_STS": w.sts.url,
        "GCE_METADATA_HOST": w.google.host,
        "PULLCRED_AZURE_IMDS_ENDPOINT": w.azure.imds_url,
        "AZURE_AUTHORITY_HOST": w.azure.url,
        "PULLCRED_AZURE_CONFIG": "none",
    }
    e.update(extra)
    return e


def docker_config(path, auths):
    import base64

    doc = {"auths": {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for k, (u, p) in auths.items()}}
    path.write_text(json.dumps(doc))
    os.chmod(path, 0o600)
    return path


def wait_json(url, ca):
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
        return json.loads(r.read())
