#!/usr/bin/env python3
"""Fleet-scale simulation of pullcred's upstream calls (issue #20 item 3).

A script, not a test: it prints a Markdown report on stdout (progress on
stderr), writes a PNG, and exits 0. It needs numpy and matplotlib
(bench/requirements.txt):

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/fleet_sim.py                 # 10,000 and 50,000 nodes, 48 h
    .venv/bin/python bench/fleet_sim.py --nodes 2000 --hours 12 --check-binary 0

N nodes boot within a window and pull a mix of registries for `--hours`
simulated hours; the script counts every upstream call each node's pullcred
makes, per API, per second, with the refresh jitter off and on, with kubelet
restarts and an upstream outage. See bench/README.md ("Fleet simulation") for
the model and its assumptions.

pullcred's rules are reimplemented here from the Rust sources, and the
refresh schedule is checked against the binary on a sample
(`--check-binary N`, default 20 node IDs):

- provider/src/expiry.rs `schedule`, `jittered`, `stale_serve_duration`:
  margin = life / 4 clamped to [5 min, 1 h], refresh = expiry - margin, then
  earlier by trunc(fraction * min(margin, (refresh - fetch) / 2)); a token
  fresh for no time at all is answered with `0s` and not cached; through an
  outage a still-valid entry is served for min(60 s, time to expiry).
- provider/src/run.rs `jitter_fraction`: the first 8 bytes of
  sha256("pullcred refresh jitter\\0" + node + "\\0" + cache key), read as a
  little-endian u64, shifted right by 11, divided by 2^53.
- provider/src/cache.rs `CacheKey::new` (sha256 of "pullcred-cache-v1\\0" and
  length-prefixed parts) with the parts of provider/src/sources/aws/mod.rs
  (`token_key("ecr", [partition], workload, [region, fips, dual-stack])` plus
  the AWS identity environment): ECR node entries use pullcred's exact key.
- provider/src/pipeline.rs: one file cache per node (single flight: one
  upstream call per entry however many pulls ask at once); a per-pod entry
  never outlives the pod's service-account token.
"""

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
H = 3600

# provider/src/expiry.rs
MIN_MARGIN = 5 * 60
MAX_MARGIN = 60 * 60
MAX_LIFETIME = 12 * H
STALE_SERVE_SECS = 60
# provider/src/cache.rs
CACHE_FORMAT = 1
# provider/src/sources/mod.rs AWS_IDENTITY_ENV, in its order
AWS_IDENTITY_ENV = [
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL_ECR_PUBLIC", "AWS_ENDPOINT_URL_STS",
]

# The kubelet: a pod's image pull backs off 10 s, doubling, at most 5 min
# (pkg/kubelet/images: backOffPeriod / MaxContainerBackOff).
PULL_BACKOFF_FIRST = 10.0
PULL_BACKOFF_MAX = 300.0
# The kubelet's service-account tokens (KEP-4412) are requested with the
# TokenRequest default, 1 h, and its token manager hands out a cached token
# until 80% of that life: a pod's token has 12 to 60 minutes left.
SA_TOKEN_LEFT = (12 * 60, 60 * 60)


# ---------------------------------------------------------------- pullcred's rules

def cache_key(parts):
    """provider/src/cache.rs CacheKey::new, exactly."""
    h = hashlib.sha256(f"pullcred-cache-v{CACHE_FORMAT}\0".encode())
    for k, v in parts:
        k, v = k.encode(), v.encode()
        h.update(struct.pack("<Q", len(k)) + k + struct.pack("<Q", len(v)) + v)
    return h.hexdigest()


def ecr_key(region, env=None):
    """The key of a node-identity ECR private entry (sources/aws/mod.rs
    EcrRoute::cache_parts via sources/mod.rs token_key): source, partition,
    region, fips, dual-stack, then the AWS identity variables that are set."""
    env = env or {}
    parts = [("source", "ecr"), ("partition", "aws"), ("region", region),
             ("fips", "false"), ("dual-stack", "false")]
    parts += [(n, env[n]) for n in AWS_IDENTITY_ENV if n in env]
    return cache_key(parts)


def jitter_fraction(node, key):
    """provider/src/run.rs jitter_fraction, exactly."""
    d = hashlib.sha256(b"pullcred refresh jitter\0" + node.encode() + b"\0" + key.encode()).digest()
    (n,) = struct.unpack("<Q", d[:8])
    return (n >> 11) / float(1 << 53)


def refresh_points(fetched, expires, fraction):
    """expiry::jittered(expiry::schedule(fetched, expires), fraction) -> refresh_at,
    vectorised over int64 arrays of unix seconds (all values here are >= 0, so
    Rust's truncating division is numpy's floor division)."""
    expires = np.minimum(expires, fetched + MAX_LIFETIME)
    life = np.maximum(expires - fetched, 0)
    margin = np.clip(life // 4, MIN_MARGIN, MAX_MARGIN)
    refresh = expires - margin
    window = np.maximum(np.minimum(margin, (refresh - fetched) // 2), 0)
    shift = np.clip((window.astype(np.float64) * np.clip(fraction, 0.0, 1.0)).astype(np.int64), 0, window)
    return refresh - shift


# ---------------------------------------------------------------- the fleet

@dataclass
class Api:
    short: str
    name: str
    attempts: int          # calls per exec while it fails (pullcred's own retries: the AWS SDK's standard 3)
    quota: float | None    # published default, calls per second
    scope: str
    source: str


APIS = [
    Api("ecr-a", "ECR GetAuthorizationToken, us-east-1", 3, 500.0,
        "per account per Region (adjustable, L-55A41110)",
        "https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html"),
    Api("ecr-b", "ECR GetAuthorizationToken, eu-west-1", 3, 500.0,
        "per account per Region (adjustable, L-55A41110)",
        "https://docs.aws.amazon.com/AmazonECR/latest/userguide/service-quotas.html"),
    Api("ecr-public", "ECR Public GetAuthorizationToken", 3, 200.0,
        "per account per Region (us-east-1; adjustable, L-B5773E0E)",
        "https://docs.aws.amazon.com/AmazonECR/latest/public/public-service-quotas.html"),
    Api("sts", "AWS STS AssumeRoleWithWebIdentity, us-east-1", 3, 600.0,
        "600/s per account per Region is the published quota of STS calls signed with AWS "
        "credentials (AssumeRole, GetSessionToken, ...); AssumeRoleWithWebIdentity is unsigned "
        "and not in that list: no number is published for it",
        "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"),
    Api("gsts", "Google STS token exchange", 4, 6000 / 60,
        "6,000/min per project (global endpoint; each regional endpoint has its own)",
        "https://cloud.google.com/iam/quotas"),
    Api("iamcred", "Google IAM Credentials generateAccessToken", 4, 60000 / 60,
        "60,000/min per project",
        "https://cloud.google.com/iam/quotas"),
    Api("entra", "Entra ID token endpoint (v2)", 3, None,
        "no published number: throttled callers get 429 and Retry-After (per tenant and app); "
        "IMDS managed identity (not used here) is 20/s per VM",
        "https://learn.microsoft.com/entra/msal/dotnet/advanced/client-and-server-throttling"),
    Api("acr", "ACR GET /v2/ + POST /oauth2/exchange", 3, None,
        "not looked up", ""),
]
API_INDEX = {a.short: i for i, a in enumerate(APIS)}


@dataclass
class Family:
    """A kind of cache entry: which calls one fetch makes, in order, and how
    long the credential lives."""
    name: str
    chain: list            # API shorts, in call order
    life: int              # upstream credential life, seconds
    per_pod: bool          # capped by the pod's service-account token


def families():
    return [
        Family("ECR us-east-1 (node)", ["ecr-a"], 12 * H, False),
        Family("ECR eu-west-1 (node)", ["ecr-b"], 12 * H, False),
        Family("ECR Public (node)", ["ecr-public"], 12 * H, False),
        # A fleet on AWS reaching Google and Azure registries with the node's
        # identity goes through workload identity federation: Google STS then
        # impersonation (1 h token); an Entra client-credentials token traded
        # for an ACR refresh token (3 h).
        Family("Google AR (node, WIF)", ["gsts", "iamcred"], 1 * H, False),
        Family("ACR (node, Entra)", ["entra", "acr"], 3 * H, False),
        Family("ECR us-east-1 (per pod)", ["sts", "ecr-a"], 1 * H, True),
        Family("Google AR (per pod)", ["gsts", "iamcred"], 1 * H, True),
        Family("ACR (per pod)", ["entra", "acr"], 3 * H, True),
    ]


NODE_KEYS = {
    # exact pullcred keys (no AWS_* variables in the kubelet's environment on
    # a node with an instance role)
    "ECR us-east-1 (node)": ecr_key("us-east-1"),
    "ECR eu-west-1 (node)": ecr_key("eu-west-1"),
    "ECR Public (node)": cache_key([("source", "ecr-public"), ("registry", "public.ecr.aws")]),
    # stable stand-ins for keys whose parts depend on files read at run time
    "Google AR (node, WIF)": cache_key([("source", "google"), ("identity", "external_account")]),
    "ACR (node, Entra)": cache_key([("source", "acr"), ("registry", "fleet.azurecr.io")]),
}


@dataclass
class Params:
    nodes: int
    boot_window: float
    hours: float
    outage_start: float
    outage_minutes: float
    outage_apis: list
    restart_rate: float
    seed: int
    pods_per_node: int
    namespaces: int
    per_pod: dict
    node_lookups: float
    pod_lookups: float
    boot_pull_spread: float


class Fleet:
    """The nodes, their cache entries and restart times for one seed: shared
    by the jitter-off and jitter-on runs so that they differ only there."""

    def __init__(self, p: Params):
        rng = np.random.default_rng(p.seed)
        fams = families()
        self.fams = fams
        n = p.nodes
        self.node_ids = [rng.bytes(16).hex() for _ in range(n)]  # like /etc/machine-id
        self.boot = rng.uniform(0, p.boot_window, n)

        # namespaces: the first share of them use per-pod identities for
        # Google AR, the next for ECR, the next for ACR; the rest the node's
        pod_fams = [i for i, f in enumerate(fams) if f.per_pod]
        ns_family = np.full(p.namespaces, -1)
        start = 0
        for fi in pod_fams:
            share = p.per_pod.get(fams[fi].name.split(" (")[0], 0.0)
            k = int(round(share * p.namespaces))
            ns_family[start:start + k] = fi
            start += k
        # each node runs pods_per_node pods from random namespaces
        pods = rng.integers(0, p.namespaces, size=(n, p.pods_per_node))
        pairs = np.unique(np.arange(n)[:, None] * p.namespaces + pods)
        p_node, p_ns = pairs // p.namespaces, pairs % p.namespaces
        p_fam = ns_family[p_ns]
        keep = p_fam >= 0
        p_node, p_ns, p_fam = p_node[keep], p_ns[keep], p_fam[keep]

        node_fams = [i for i, f in enumerate(fams) if not f.per_pod]
        e_node = np.concatenate([np.repeat(np.arange(n), len(node_fams)), p_node])
        e_fam = np.concatenate([np.tile(node_fams, n), p_fam])
        e_ns = np.concatenate([np.full(n * len(node_fams), -1), p_ns])
        self.node, self.fam, self.ns = e_node, e_fam, e_ns

        t0 = time.perf_counter()
        frac = np.empty(len(e_node))
        for i, (nd, fi, ns) in enumerate(zip(e_node.tolist(), e_fam.tolist(), e_ns.tolist())):
            f = fams[fi]
            if f.per_pod:
                # workload.rs Workload::cache_parts: issuer, namespace, name, UID, identity
                key = cache_key([("source", f.name), ("sa-issuer", "https://oidc.example"),
                                 ("sa-namespace", f"ns-{ns}"), ("sa-name", "puller"),
                                 ("sa-uid", f"uid-{ns}"), ("identity", f"role-{ns}")])
            else:
                key = NODE_KEYS[f.name]
            frac[i] = jitter_fraction(self.node_ids[nd], key)
        self.frac = frac
        log(f"  {n} nodes, {len(e_node)} cache entries "
            f"({int((~np.array([fams[i].per_pod for i in e_fam])).sum())} node identity, "
            f"{int(keep.sum())} per pod); jitter fractions in {time.perf_counter() - t0:.1f}s")

        # kubelet restarts: a Poisson process per node after its boot
        T = p.hours * H
        counts = rng.poisson(p.restart_rate * np.maximum(T - self.boot, 0) / H)
        r_node = np.repeat(np.arange(n), counts)
        r_time = self.boot[r_node] + rng.uniform(0, 1, r_node.size) * (T - self.boot[r_node])
        self.restart_keys = np.sort(r_node * 1e6 + r_time)
        self.restarts = int(r_node.size)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Result:
    counts: np.ndarray        # [api, second] upstream calls, failed attempts included
    failed: np.ndarray        # [api] failed attempts
    execs: np.ndarray         # [second] pullcred execs
    restart_hits: int         # execs after a kubelet restart answered from the file cache
    stale_served: int         # execs that served a still-valid entry through the outage
    failed_execs: int         # execs that failed: entry expired and upstream down
    failed_entries: int       # cache entries with at least one such failure
    failed_by_family: dict    # family name -> entries with at least one such failure
    stale_by_family: dict     # family name -> execs served stale
    elapsed: float


def simulate(fleet: Fleet, p: Params, jitter: bool) -> Result:
    t_start = time.perf_counter()
    rng = np.random.default_rng(p.seed + 1)
    fams = fleet.fams
    T = int(p.hours * H)
    E = fleet.node.size
    n_api = len(APIS)
    counts = np.zeros((n_api, T), dtype=np.int64)
    failed = np.zeros(n_api, dtype=np.int64)
    execs = np.zeros(T, dtype=np.int64)

    fam = fleet.fam
    per_pod_f = np.array([f.per_pod for f in fams])
    life_f = np.array([f.life for f in fams], dtype=np.int64)
    in_chain = np.zeros((n_api, len(fams)), dtype=bool)
    for fi, f in enumerate(fams):
        for a in f.chain:
            in_chain[API_INDEX[a], fi] = True
    # the first API of each family's chain that the outage takes down
    down_at = np.full(len(fams), -1)
    for fi, f in enumerate(fams):
        for pos, a in enumerate(f.chain):
            if a in p.outage_apis:
                down_at[fi] = pos
                break
    before = np.zeros((n_api, len(fams)), dtype=bool)   # called (and answered) before the failing one
    failing = np.zeros((n_api, len(fams)), dtype=bool)
    for fi, f in enumerate(fams):
        if down_at[fi] >= 0:
            for pos, a in enumerate(f.chain):
                if pos < down_at[fi]:
                    before[API_INDEX[a], fi] = True
                elif pos == down_at[fi]:
                    failing[API_INDEX[a], fi] = True
    o1 = p.outage_start * H
    o2 = o1 + p.outage_minutes * 60

    lam = np.where(per_pod_f[fam], p.pod_lookups, p.node_lookups) / H   # lookups per second
    frac = fleet.frac * (1.0 if jitter else 0.0)
    # first lookups: the pods a new node gets, within boot_pull_spread of its boot
    t_next = fleet.boot[fleet.node] + rng.uniform(0, p.boot_pull_spread, E)
    expires = np.full(E, -1, dtype=np.int64)
    fails = np.zeros(E, dtype=np.int64)
    restart_hits = stale_served = failed_execs = 0
    ever_failed = np.zeros(E, dtype=bool)
    stale_fam = np.zeros(len(fams), dtype=np.int64)

    def add(api, times):
        if times.size:
            s = times.astype(np.int64)
            s = s[(s >= 0) & (s < T)]
            counts[api] += np.bincount(s, minlength=T)

    steps = 0
    while True:
        idx = np.nonzero(t_next < T)[0]
        if idx.size == 0:
            break
        steps += 1
        t = t_next[idx]
        fm = fam[idx]
        execs[:] += np.bincount(t.astype(np.int64), minlength=T)
        down = (down_at[fm] >= 0) & (t >= o1) & (t < o2)

        # ---- upstream answers: fetch, store, answer until the refresh point
        ok = ~down
        i_ok, t_ok, f_ok = idx[ok], t[ok], fm[ok]
        for a in range(n_api):
            add(a, t_ok[in_chain[a, f_ok]])
        fetched = np.floor(t_ok).astype(np.int64)
        life = life_f[f_ok]
        pp = per_pod_f[f_ok]
        if pp.any():
            left = rng.integers(SA_TOKEN_LEFT[0], SA_TOKEN_LEFT[1] + 1, size=int(pp.sum()))
            life = life.copy()
            life[pp] = np.minimum(life[pp], left)
        exp = fetched + life
        refresh = refresh_points(fetched, exp, frac[i_ok])
        cached = refresh > fetched   # else answered with 0s and not cached
        wait = rng.exponential(1.0 / lam[i_ok])
        t_next[i_ok] = np.where(cached, refresh, t_ok) + wait
        expires[i_ok] = exp
        fails[i_ok] = 0
        # a kubelet restart between the fetch and the refresh point empties
        # the kubelet's cache: the node's next lookup execs pullcred, which
        # answers from its file cache (no upstream call)
        if fleet.restart_keys.size:
            nd = fleet.node[i_ok].astype(np.float64) * 1e6
            lo = np.searchsorted(fleet.restart_keys, nd + t_ok, side="right")
            hi = np.searchsorted(fleet.restart_keys, nd + refresh, side="left")
            has = (hi > lo) & cached
            if has.any():
                s = fleet.restart_keys[lo[has]] - nd[has]
                hit = s + rng.exponential(1.0 / lam[i_ok[has]])
                hit = hit[hit < refresh[has]]
                restart_hits += int(hit.size)
                h = hit.astype(np.int64)
                execs[:] += np.bincount(h[h < T], minlength=T)

        # ---- upstream down
        if down.any():
            i_d, t_d, f_d = idx[down], t[down], fm[down]
            for a in range(n_api):
                add(a, t_d[before[a, f_d]])
                m = failing[a, f_d]
                if m.any():
                    # the retries of one exec: the SDK's / our backoff, a few seconds
                    tt = t_d[m].copy()
                    for k in range(APIS[a].attempts):
                        add(a, tt)
                        tt = tt + rng.uniform(0, 1, tt.size) * min(2.0 ** k, 20.0)
                    failed[a] += int(m.sum()) * APIS[a].attempts
            valid = t_d < expires[i_d]
            # still valid: served stale for min(60 s, time to expiry)
            iv, tv = i_d[valid], t_d[valid]
            d = np.minimum(STALE_SERVE_SECS, expires[iv] - np.floor(tv))
            t_next[iv] = tv + d + rng.exponential(1.0 / lam[iv])
            stale_served += int(valid.sum())
            stale_fam += np.bincount(fam[iv], minlength=len(fams))
            # expired: the pull fails; the pod retries with the kubelet's backoff
            ie, te = i_d[~valid], t_d[~valid]
            fails[ie] += 1
            backoff = np.minimum(PULL_BACKOFF_FIRST * 2.0 ** (fails[ie] - 1), PULL_BACKOFF_MAX)
            t_next[ie] = te + np.minimum(backoff, rng.exponential(1.0 / lam[ie]))
            failed_execs += int(ie.size)
            ever_failed[ie] = True

    elapsed = time.perf_counter() - t_start
    log(f"  jitter {'on ' if jitter else 'off'}: {steps} steps, {counts.sum():,} upstream calls, "
        f"{execs.sum():,} execs, {elapsed:.1f}s")
    by_fam = np.bincount(fam[ever_failed], minlength=len(fams))
    return Result(counts, failed, execs, restart_hits, stale_served, failed_execs,
                  int(ever_failed.sum()),
                  {f.name: int(by_fam[i]) for i, f in enumerate(fams) if by_fam[i]},
                  {f.name: int(stale_fam[i]) for i, f in enumerate(fams) if stale_fam[i]},
                  elapsed)


# ---------------------------------------------------------------- the binary check

def check_binary(binary: Path, n: int):
    """Runs the binary for n node IDs against the ECR stand-in (12 h tokens),
    jitter on, and compares each cacheDuration and cache key with the model's."""
    sys.path.insert(0, str(ROOT / "tests"))
    from standins.ecr import EcrStandin  # noqa: E402

    host = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
    standin = EcrStandin()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        for name in ("aws-config", "aws-credentials"):
            (home / name).write_text("")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "AKIDFLEETSIMULATION",
            "AWS_SECRET_ACCESS_KEY": "fleet-simulation-not-a-secret",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_ENDPOINT_URL_ECR": standin.url,
            "PULLCRED_REFRESH_JITTER": "1",
        }
        key = ecr_key("us-west-2", env)
        req = json.dumps({"apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                          "kind": "CredentialProviderRequest", "image": f"{host}/app"}) + "\n"
        for i in range(n):
            node = hashlib.sha256(f"fleet-sim-check-{i}".encode()).hexdigest()[:32]
            cache = Path(tmp) / f"cache-{i}"
            e = dict(env, PULLCRED_NODE_ID=node, PULLCRED_CACHE_DIR=str(cache))
            res = subprocess.run([str(binary)], input=req, capture_output=True, text=True, env=e, timeout=60)
            if res.returncode != 0:
                raise SystemExit(f"fleet_sim: {binary} failed: {res.stderr.strip()}")
            got = go_secs(json.loads(res.stdout)["cacheDuration"])
            files = [f.name for f in cache.iterdir() if f.name.endswith(".json")]
            stored = json.loads((cache / files[0]).read_text())["key"] if len(files) == 1 else None
            frac = jitter_fraction(node, key)
            f0 = 1_800_000_000
            want = int(refresh_points(np.array([f0]), np.array([f0 + 12 * H]), np.array([frac]))[0]) - f0
            rows.append((node, frac, got, want, stored == key))
    standin.server.close()
    diffs = [abs(g - w) for _, _, g, w, _ in rows]
    keys_ok = all(k for *_, k in rows)
    got = [g for _, _, g, _, _ in rows]
    return {
        "n": n, "keys_ok": keys_ok, "max_diff": max(diffs),
        "ok": keys_ok and max(diffs) <= 2,
        "range": (min(got), max(got)), "rows": rows, "binary": os.path.relpath(binary, ROOT),
    }


def go_secs(s):
    total, num = 0, ""
    for c in s:
        if c.isdigit():
            num += c
        elif c in "hms":
            total += int(num) * {"h": 3600, "m": 60, "s": 1}[c]
            num = ""
    return total


# ---------------------------------------------------------------- report

def stats(counts):
    """Per API: the largest 1-second count, the 99th percentile of the
    1-second counts over the whole run, and the largest after the first hour
    (the boot is over: what the refresh schedule does)."""
    peak = counts.max(axis=1)
    p99 = np.percentile(counts, 99, axis=1)
    later = counts[:, H:].max(axis=1) if counts.shape[1] > H else np.zeros(len(counts))
    return peak, p99, later


def fmt(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.0f}"
    return f"{x:.1f}".rstrip("0").rstrip(".") if x else "0"


def plot(results, params, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = [a for a in range(len(APIS))
            if any(r.counts[a].any() for runs in results.values() for r in runs.values())]
    cols = 2
    rows = (len(used) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 2.6 * rows), sharex=True, squeeze=False)
    style = {(False,): dict(color="tab:red", lw=0.7), (True,): dict(color="tab:blue", lw=0.7)}
    biggest = max(results)
    p = params[biggest]
    T = int(p.hours * H)
    minute = 60
    x = np.arange(T // minute) / 60.0
    for k, a in enumerate(used):
        ax = axes[k // cols][k % cols]
        for nodes in sorted(results):
            for jit in (False, True):
                c = results[nodes][jit].counts[a][: (T // minute) * minute].reshape(-1, minute).max(axis=1)
                ls = "-" if nodes == biggest else ":"
                ax.plot(x, np.maximum(c, 0.8), ls, label=f"{nodes:,} nodes, jitter {'on' if jit else 'off'}",
                        **style[(jit,)])
        if APIS[a].quota:
            ax.axhline(APIS[a].quota, color="black", ls="--", lw=0.8, label="published quota")
        ax.axvspan(p.outage_start, p.outage_start + p.outage_minutes / 60, color="orange", alpha=0.25)
        ax.set_yscale("log")
        ax.set_ylim(0.8, None)
        ax.set_title(APIS[a].name, fontsize=9)
        ax.set_ylabel("calls/s (peak per min)", fontsize=8)
        ax.grid(True, which="both", alpha=0.2)
    for k in range(len(used), rows * cols):
        axes[k // cols][k % cols].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("hours since the first boot")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"pullcred upstream calls per API (boot window {p.boot_window / 60:.0f} min, "
                 f"kubelet restarts {p.restart_rate:.0%}/node/h)\nshaded: {p.outage_minutes:.0f}-min outage of "
                 f"{', '.join(APIS[API_INDEX[x]].name for x in p.outage_apis) or 'nothing'})", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(results, params, check, out):
    w = out.write
    sizes = sorted(results)
    p = params[sizes[0]]
    w("## pullcred fleet simulation\n\n")
    w(f"{p.hours:g} simulated hours; nodes boot within {p.boot_window / 60:g} min; "
      f"{p.node_lookups:g} credential lookups per hour per node and registry, {p.pod_lookups:g} per node "
      f"and per-pod service account; kubelet restarts {p.restart_rate:.1%} of nodes per hour; outage of "
      f"{', '.join(APIS[API_INDEX[a]].name for a in p.outage_apis) or 'nothing'}: "
      f"{p.outage_minutes:g} min from hour {p.outage_start:g}; seed {p.seed}.\n\n"
      "Each cell: peak / p99 / peak after the first hour, in upstream calls per second "
      "(1-second bins over the whole run; failed attempts during the outage, pullcred's own "
      "retries included).\n\n")
    head = "| API | published default quota, calls/s |"
    sep = "|---|---|"
    for n in sizes:
        head += f" {n:,} nodes, jitter off | {n:,} nodes, jitter on |"
        sep += "---|---|"
    w(head + "\n" + sep + "\n")
    stat = {n: {j: stats(results[n][j].counts) for j in (False, True)} for n in sizes}
    for a, api in enumerate(APIS):
        q = fmt(api.quota) if api.quota else "none published"
        line = f"| {api.name} | {q} |"
        for n in sizes:
            for j in (False, True):
                pk, p99, later = stat[n][j]
                flag = " ⚠" if api.quota and pk[a] > api.quota else ""
                line += f" {fmt(pk[a])} / {fmt(p99[a])} / {fmt(later[a])}{flag} |"
        w(line + "\n")
    w("\n⚠: the 1-second peak is above the published default quota.\n\n")

    w("| run | upstream calls | of which failed (outage) | pullcred execs | of which file-cache hits "
      "after a kubelet restart | served stale through the outage | failed execs: entry expired, "
      "upstream down (entries) | sim time |\n")
    w("|---|---|---|---|---|---|---|---|\n")
    for n in sizes:
        for j in (False, True):
            r = results[n][j]
            w(f"| {n:,} nodes, jitter {'on' if j else 'off'} | {r.counts.sum():,} | {r.failed.sum():,} "
              f"| {r.execs.sum():,} | {r.restart_hits:,} | {r.stale_served:,} "
              f"| {r.failed_execs:,} ({r.failed_entries:,}) | {r.elapsed:.1f} s |\n")
    w("\nThrough the outage, per kind of entry: served stale (execs) / entries whose pulls failed:\n\n")
    for n in sizes:
        for j in (False, True):
            r = results[n][j]
            names = sorted(set(r.failed_by_family) | set(r.stale_by_family))
            parts = [f"{k} {r.stale_by_family.get(k, 0):,} / {r.failed_by_family.get(k, 0):,}" for k in names]
            w(f"- {n:,} nodes, jitter {'on' if j else 'off'}: {'; '.join(parts) or 'none'}\n")
    w("\nPublished default quotas:\n\n")
    for api in APIS:
        src = f" <{api.source}>" if api.source else ""
        w(f"- {api.name}: {api.scope}.{src}\n")
    w("\n")
    if check is None:
        w("Schedule not checked against the binary (`--check-binary 0`, or no binary).\n")
    else:
        lo, hi = check["range"]
        w(f"Schedule checked against `{check['binary']}`: {check['n']} node IDs, ECR stand-in with "
          f"12 h tokens, jitter on: cacheDuration {lo}..{hi} s (the window is 36000..39600), largest "
          f"difference from the model {check['max_diff']} s; cache key "
          f"{'identical' if check['keys_ok'] else 'DIFFERENT'} to the model's for every node: "
          f"{'the model agrees' if check['ok'] else 'the model DISAGREES (a stale build?)'}.\n")


def parse_per_pod(s):
    out = {}
    for item in s.split(","):
        if item.strip():
            k, v = item.split("=")
            out[{"gar": "Google AR", "ecr": "ECR us-east-1", "acr": "ACR"}[k.strip()]] = float(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--boot-window", type=float, default=10, help="minutes (default 10)")
    ap.add_argument("--hours", type=float, default=48)
    ap.add_argument("--outage-start", type=float, default=24, help="hour (default 24)")
    ap.add_argument("--outage-minutes", type=float, default=30, help="0: no outage")
    ap.add_argument("--outage-apis", default="ecr",
                    help="comma list of " + ", ".join(a.short for a in APIS) + "; 'ecr' = ecr-a,ecr-b")
    ap.add_argument("--restart-rate", type=float, default=0.01, help="kubelet restarts per node per hour")
    ap.add_argument("--jitter", choices=["both", "on", "off"], default="both")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--namespaces", type=int, default=500)
    ap.add_argument("--per-pod", default="gar=0.1,ecr=0.1,acr=0.1",
                    help="share of namespaces using per-pod identities, per registry")
    ap.add_argument("--node-lookups", type=float, default=2,
                    help="credential lookups per hour per node and node-identity registry")
    ap.add_argument("--pod-lookups", type=float, default=1,
                    help="credential lookups per hour per node and per-pod service account")
    ap.add_argument("--boot-pulls", type=float, default=120, help="seconds after boot the first pulls spread over")
    ap.add_argument("--png", default=str(ROOT / "bench" / "fleet.png"))
    ap.add_argument("--check-binary", type=int, default=20, metavar="N",
                    help="compare the schedule with the binary for N node IDs (0: skip)")
    ap.add_argument("--bin", default=None, help="pullcred binary (default target/release, else target/debug)")
    args = ap.parse_args()

    outage = set()
    for s in args.outage_apis.split(","):
        s = s.strip()
        if s == "ecr":
            outage |= {"ecr-a", "ecr-b"}
        elif s in API_INDEX:
            outage.add(s)
        elif s:
            ap.error(f"unknown API {s!r}")
    if args.outage_minutes <= 0:
        outage = set()

    check = None
    if args.check_binary > 0:
        # the newer of the release and debug builds: a stale release binary
        # (built before the jitter) would answer the unjittered 11 h
        built = [b for b in (ROOT / "target/release/pullcred", ROOT / "target/debug/pullcred") if b.exists()]
        binary = Path(args.bin) if args.bin else max(built, key=lambda b: b.stat().st_mtime, default=None)
        if binary and binary.exists():
            log(f"checking the schedule against {binary} ({args.check_binary} node IDs)")
            check = check_binary(binary, args.check_binary)
            log(f"  {'agrees' if check['ok'] else 'DISAGREES'}: max difference {check['max_diff']} s, "
                f"keys {'identical' if check['keys_ok'] else 'different'}")
        else:
            log("no pullcred binary (build with `cargo build --release -p pullcred`): schedule not checked")

    results, params = {}, {}
    jit = {"both": (False, True), "on": (True,), "off": (False,)}[args.jitter]
    for n in args.nodes:
        p = Params(nodes=n, boot_window=args.boot_window * 60, hours=args.hours,
                   outage_start=args.outage_start, outage_minutes=args.outage_minutes,
                   outage_apis=sorted(outage), restart_rate=args.restart_rate,
                   seed=args.seed, pods_per_node=args.pods_per_node, namespaces=args.namespaces,
                   per_pod=parse_per_pod(args.per_pod), node_lookups=args.node_lookups,
                   pod_lookups=args.pod_lookups, boot_pull_spread=args.boot_pulls)
        log(f"fleet of {n:,} nodes")
        fleet = Fleet(p)
        params[n] = p
        results[n] = {j: simulate(fleet, p, j) for j in jit}
    if args.jitter == "both":
        report(results, params, check, sys.stdout)
        plot(results, params, args.png)
        log(f"wrote {args.png}")
    else:
        for n in results:
            for j, r in results[n].items():
                pk, p99, _ = stats(r.counts)
                for a, api in enumerate(APIS):
                    print(f"{n} jitter={'on' if j else 'off'} {api.name}: peak {pk[a]} p99 {p99[a]:.1f}")


if __name__ == "__main__":
    main()
