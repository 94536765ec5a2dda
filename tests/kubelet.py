"""The kubelet's side of an image credential provider, restated in Python.

What the kubelet does around a plugin exec, from `../shared/KUBELET-CONTRACT.md`
and the kubelet source (pkg/credentialprovider/plugin/plugin.go and
pkg/credentialprovider/keyring.go, Kubernetes 1.37 development line):

- `glob_matches`: the URLsMatch rule for `matchImages` and `auth` keys;
- `auth_keys_for`: the keyring lookup over a response's `auth` map (keys
  normalised, tried in reverse lexical order, every match contributing, the
  Docker Hub fallback key);
- `decode_response`: strict decoding of a CredentialProviderResponse;
- `KubeletCache`: the in-memory cache, looked up by image, then registry, then
  global, BEFORE the plugin is run, honouring `cacheKeyType` and
  `cacheDuration` on a clock the test controls.

This is a model for tests, checked against the project's matching vectors
(tests/test_kubelet_model.py); it is not the kubelet.
"""

import fnmatch
import json
import re

V1 = "credentialprovider.kubelet.k8s.io/v1"
GLOBAL = "<global>"


def _parse_schemeless(s):
    """url.Parse of `s` with `https://` prepended when it has no scheme:
    (host, port, path)."""
    if "://" not in s:
        s = "https://" + s
    rest = s.split("://", 1)[1]
    host, slash, path = rest.partition("/")
    path = slash + path
    port = ""
    if host.startswith("["):
        end = host.find("]")
        if end >= 0 and host[end + 1 : end + 2] == ":":
            host, port = host[: end + 1], host[end + 2 :]
    elif ":" in host:
        host, port = host.rsplit(":", 1)
    return host, port, path


def _label_match(glob, label):
    # Go's filepath.Match: `[^...]` negates like fnmatch's `[!...]`; labels
    # hold no separator, so `*` covers the same ground.
    return fnmatch.fnmatchcase(label, glob.replace("[^", "[!"))


def glob_matches(glob, image):
    """The kubelet's URLsMatch: ports equal, host labels matched one by one
    (same count), image path a plain string prefix of the glob's path."""
    gh, gp, gpath = _parse_schemeless(glob)
    th, tp, tpath = _parse_schemeless(image)
    if gp != tp:
        return False
    gl, tl = gh.split("."), th.split(".")
    if len(gl) != len(tl):
        return False
    if not all(_label_match(g, t) for g, t in zip(gl, tl)):
        return False
    return tpath.startswith(gpath)


def normalize_auth_key(key):
    """A response `auth` key as the keyring stores it: scheme added, a
    leading /v1/ or /v2/ dropped, a path of `/` dropped."""
    k = key if "://" in key else "https://" + key
    scheme, rest = k.split("://", 1)
    host, slash, path = rest.partition("/")
    path = slash + path
    for prefix in ("/v1/", "/v2/"):
        if path.startswith(prefix):
            path = path[len(prefix) - 1 :]
            break
    if path == "/":
        path = ""
    return host + path


DOCKER_HUB_KEY = "index.docker.io"


def is_docker_hub_image(image):
    if not image:
        return False
    first = image.split("/", 1)[0]
    return "/" not in image or first in ("docker.io", "index.docker.io") or not (
        "." in first or ":" in first or first == "localhost"
    )


def auth_keys_for(auth, image):
    """The keys of `auth` the kubelet would use for `image`, in the order it
    tries them."""
    normalized = sorted(((normalize_auth_key(k), k) for k in auth), reverse=True)
    matched = [k for n, k in normalized if glob_matches(n, image)]
    if not matched and is_docker_hub_image(image):
        matched = [k for n, k in normalized if n == DOCKER_HUB_KEY]
    return matched


def credentials_for(auth, image):
    """[(username, password), ...] the runtime is offered, in order."""
    return [(auth[k].get("username", ""), auth[k].get("password", "")) for k in auth_keys_for(auth, image)]


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_go_duration(s):
    """Go's time.ParseDuration, in seconds."""
    if s in ("0", ""):
        return 0.0
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"invalid duration {s!r}")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


RESPONSE_FIELDS = {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}


def decode_response(stdout, api_version):
    """Strict decoding, as the kubelet does; raises ValueError."""
    body = json.loads(stdout)
    unknown = set(body) - RESPONSE_FIELDS
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    if body.get("kind") != "CredentialProviderResponse":
        raise ValueError("wrong kind")
    if body.get("apiVersion") != api_version:
        raise ValueError("apiVersion differs from the request's")
    if body.get("cacheKeyType") not in ("Image", "Registry", "Global"):
        raise ValueError(f"bad cacheKeyType {body.get('cacheKeyType')!r}")
    for v in (body.get("auth") or {}).values():
        if set(v) - {"username", "password"}:
            raise ValueError("unknown auth fields")
    return body


def registry_of(image):
    return image.split("/", 1)[0]


class KubeletCache:
    """The kubelet's per-provider cache: image, then registry, then global."""

    def __init__(self, default_cache_duration=300.0):
        self.entries = {}
        self.default = default_cache_duration
        self.now = 0.0

    def advance(self, seconds):
        self.now += seconds

    def lookup(self, image):
        for key in (image, registry_of(image), GLOBAL):
            e = self.entries.get(key)
            if e and e[0] > self.now:
                return e[1], key
        return None, None

    def store(self, image, body):
        d = body.get("cacheDuration")
        seconds = self.default if d is None else parse_go_duration(d)
        if seconds <= 0:
            return
        key = {"Image": image, "Registry": registry_of(image), "Global": GLOBAL}[body["cacheKeyType"]]
        self.entries[key] = (self.now + seconds, body.get("auth") or {})


class Kubelet:
    """One provider as the kubelet runs it: cache lookup first, exec on a
    miss, then the keyring over the answer."""

    def __init__(self, plugin, env=None, args=(), default_cache_duration=300.0):
        self.plugin = plugin
        self.env = env or {}
        self.args = tuple(args)
        self.cache = KubeletCache(default_cache_duration)
        self.execs = 0

    def credentials(self, image):
        auth, hit = self.cache.lookup(image)
        if hit is None:
            req = {"apiVersion": V1, "kind": "CredentialProviderRequest", "image": image}
            res = self.plugin.run(req, env=self.env, args=self.args)
            self.execs += 1
            if res.code != 0:
                return []
            body = decode_response(res.stdout, V1)
            self.cache.store(image, body)
            auth = body.get("auth") or {}
        return credentials_for(auth, image)


# --- the kubelet's side of a pull, for the e2e driver (tests/e2e/driver.py) ---


def normalize_image(image):
    """The kubelet's parsers.ParseImageName (pkg/util/parsers/parsers.go,
    docker reference ParseNormalizedNamed): (repository as sent to the
    plugin, the image with its default tag as the CRI gets it). `nginx` ->
    (`docker.io/library/nginx`, `nginx:latest`)."""
    name, digest = image, ""
    if "@" in name:
        name, digest = name.split("@", 1)
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, slash, rest = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        domain, path = "docker.io", name
    else:
        domain, path = first, rest
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    with_tag = image if (tag or digest) else image + ":latest"
    return f"{domain}/{path}", with_tag


def load_providers(path_or_text):
    """The `providers` of a CredentialProviderConfig (YAML or JSON file, or
    its text): each with name, matchImages, defaultCacheDuration,
    apiVersion, args, env (a dict) and tokenAttributes."""
    import yaml
    from pathlib import Path

    text = Path(path_or_text).read_text() if "\n" not in str(path_or_text) else path_or_text
    doc = yaml.safe_load(text)
    assert doc.get("kind") == "CredentialProviderConfig", "not a CredentialProviderConfig"
    out = []
    for p in doc.get("providers") or []:
        out.append({
            "name": p["name"],
            "matchImages": list(p.get("matchImages") or []),
            "defaultCacheDuration": parse_go_duration(p.get("defaultCacheDuration", "0s")),
            "apiVersion": p.get("apiVersion", V1),
            "args": list(p.get("args") or []),
            "env": {e["name"]: e["value"] for e in p.get("env") or []},
            "tokenAttributes": p.get("tokenAttributes"),
        })
    return out


def provider_matches(provider, image):
    """Whether the kubelet runs `provider` for `image` (a repository as
    normalize_image returns it): any matchImages glob matches."""
    return any(glob_matches(g, image) for g in provider["matchImages"])


class Keyring:
    """The kubelet's BasicDockerKeyring over the answers of every provider
    that matched (pkg/credentialprovider/keyring.go, Add and Lookup): keys
    normalised, indexed in reverse lexical order, every matching key
    contributing its credentials in the order they were added, the
    `index.docker.io` fallback for Docker Hub images."""

    def __init__(self):
        self.creds = {}

    def add(self, auth):
        for key, v in (auth or {}).items():
            self.creds.setdefault(normalize_auth_key(key), []).append(
                (v.get("username", ""), v.get("password", ""), key))

    def lookup(self, image):
        out = []
        for k in sorted(self.creds, reverse=True):
            if glob_matches(k, image):
                out.extend(self.creds[k])
        if not out and is_docker_hub_image(image):
            out = list(self.creds.get(DOCKER_HUB_KEY, []))
        return out
