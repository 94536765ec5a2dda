#!/usr/bin/env python3
"""Benchmark report for pullcred (a script, not a test).

Run from the repository root:

    .venv/bin/python bench/bench.py            # full run (~1-2 min after the build)
    .venv/bin/python bench/bench.py --quick    # fewer iterations
    .venv/bin/python bench/bench.py --no-build # use target/release/pullcred as it is

Prints a Markdown table on stdout (progress goes to stderr) and exits 0 whether
or not the targets are met: it is a report. It exits non-zero only when it
cannot measure (build failed, binary missing, pullcred answers wrongly).

Everything stays on 127.0.0.1: the ECR stand-in (tests/standins/ecr.py) runs in
this process (as do the Google and Azure stand-ins, tests/standins/gcp.py and
azure.py), moto runs as `moto_server -H 127.0.0.1`, and Debian's
docker-credential-ecr-login is only ever run against a pre-populated,
unexpired file-cache entry, with its proxy and endpoint pointed at a closed
loopback port as a safety net. See bench/README.md for the method.
"""

import argparse
import base64
import datetime as dt
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from standins.base import b64url  # noqa: E402
from standins.ecr import EcrStandin  # noqa: E402

V1 = "credentialprovider.kubelet.k8s.io/v1"
ACCOUNT = "123456789012"
REGION = "us-west-2"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
IMAGE = f"{REGISTRY}/app"
ACCESS_KEY = "AKIAPULLCREDBENCH001"
SECRET_KEY = "pullcred-bench-secret-key-not-real-0001"
ECR_LOGIN = "docker-credential-ecr-login"
ECR_LOGIN_PASSWORD = "bench-ecr-login-cached-password"

MIB = 1024 * 1024

# Targets (README "Performance").
TARGET_HIT_MEDIAN_MS = 2.0
TARGET_HIT_RATIO = 0.25  # pullcred hit median <= 1/4 of ecr-login's
TARGET_HIT_RSS_MIB = 5.0
TARGET_BINARY_MIB = 12.0
TARGET_CONCURRENT_CALLS = 1
# The static binary (release/static.sh), issue #19: its hit against a static
# C program that exits at once, interleaved; its peak RSS; its size.
TARGET_STATIC_HIT_VS_NOOP = 1.3
TARGET_STATIC_RSS_MIB = 4.0
TARGET_STATIC_BINARY_MIB = 8.0
STATIC_BINS = [
    ROOT / "target" / "static" / "x86_64-unknown-linux-gnu" / "release" / "pullcred",
    ROOT / "target" / "static-pie" / "x86_64-unknown-linux-gnu" / "release" / "pullcred",
]


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Spawning and timing: one code path for both tools.
# --------------------------------------------------------------------------


class Run:
    __slots__ = ("code", "out", "err", "secs", "maxrss_kib")

    def __init__(self, code, out, err, secs, maxrss_kib):
        self.code, self.out, self.err, self.secs, self.maxrss_kib = code, out, err, secs, maxrss_kib


def _read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def spawn(argv, env, stdin: bytes, rss_helper=None):
    """posix_spawn argv[0] (an absolute path) with stdin/stdout/stderr piped;
    write stdin and close it, read stdout and stderr to EOF, wait4.
    The time is perf_counter from just before posix_spawn to just after wait4.

    With rss_helper, the tool is started through that small helper, which
    forks it, wait4s it, and reports the child's ru_maxrss on fd 3 (see
    RSS_HELPER_C for why). Timings of such runs are not used."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    actions = [
        (os.POSIX_SPAWN_DUP2, r_in, 0),
        (os.POSIX_SPAWN_DUP2, w_out, 1),
        (os.POSIX_SPAWN_DUP2, w_err, 2),
    ]
    r_rss = w_rss = None
    if rss_helper:
        r_rss, w_rss = os.pipe()
        actions.append((os.POSIX_SPAWN_DUP2, w_rss, 3))
        argv = [rss_helper, *argv]
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    finally:
        for fd in (r_in, w_out, w_err, w_rss):
            if fd is not None:
                os.close(fd)
    try:
        os.write(w_in, stdin)
    except BrokenPipeError:
        pass
    os.close(w_in)
    out = _read_all(r_out)
    err = _read_all(r_err)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter()
    code = os.waitstatus_to_exitcode(status)
    maxrss = ru.ru_maxrss
    if r_rss is not None:
        rep = _read_all(r_rss).split()
        maxrss = int(rep[1]) if len(rep) == 2 else None
    return Run(code, out.decode(errors="replace"), err.decode(errors="replace"), t1 - t0, maxrss)


# ru_maxrss of a child, as the parent's wait4 sees it, is never below the RSS
# the child's address space had just before its exec: Linux's exec_mmap() folds
# the old mm's high-water mark into signal->maxrss. A child that Python
# forks/vforks/posix_spawns starts out sharing (or copying) Python's ~10-40 MiB
# address space, so os.wait4() from this script would report Python's RSS for a
# 1 MiB program. This helper is a static C program of ~0.5 MiB RSS: it forks,
# execs the tool, wait4s it and reports ru_maxrss on fd 3, so the floor is the
# helper's own size, far below the figures measured.
RSS_HELPER_C = r"""
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    if (argc < 2) return 125;
    fcntl(3, F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) return 126;
    if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
    int status; struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0) return 126;
    dprintf(3, "%d %ld\n", status, ru.ru_maxrss);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""
NOOP_C = "int main(void) { return 0; }\n"


def build_rss_helper(work: Path):
    """Returns (helper path or None, floor KiB or None, note)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, None, "no C compiler: RSS from os.wait4 in Python (includes Python's RSS, an upper bound)"
    (work / "rss.c").write_text(RSS_HELPER_C)
    (work / "noop.c").write_text(NOOP_C)
    for flags in (["-static"], []):
        ok = True
        for src, exe in (("rss.c", "rss-helper"), ("noop.c", "noop")):
            p = subprocess.run([cc, "-O2", *flags, "-o", str(work / exe), str(work / src)], capture_output=True)
            ok = ok and p.returncode == 0
        if ok:
            floor = spawn([str(work / "noop")], {}, b"", rss_helper=str(work / "rss-helper")).maxrss_kib
            kind = "static" if flags else "dynamic"
            return str(work / "rss-helper"), floor, f"{kind} C fork/exec/wait4 helper; floor (a no-op program) {floor} KiB"
    return None, None, "C helper did not compile: RSS from os.wait4 in Python (an upper bound)"


# --------------------------------------------------------------------------
# Statistics and formatting
# --------------------------------------------------------------------------


def pct(values, q):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def ms(secs):
    return f"{secs * 1000:.2f} ms"


def summary(secs):
    return f"{ms(statistics.median(secs))} (p90 {ms(pct(secs, 0.9))}, min {ms(min(secs))}, n={len(secs)})"


def mib(kib):
    return f"{kib / 1024:.2f} MiB"


def verdict(ok):
    if ok is None:
        return "n/a"
    return "PASS" if ok else "FAIL"


# --------------------------------------------------------------------------
# pullcred
# --------------------------------------------------------------------------


def request_line(image=IMAGE):
    return (json.dumps({"apiVersion": V1, "kind": "CredentialProviderRequest", "image": image}) + "\n").encode()


def base_env(home: Path):
    """A clean environment, like the kubelet's exec (nothing inherited but PATH)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "nonexistent-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "nonexistent-aws-credentials"),
    }


def pullcred_password(run: Run, what, registry=REGISTRY):
    if run.code != 0:
        raise SystemExit(f"bench: pullcred failed on {what}: exit {run.code}: {run.err.strip()[:500]}")
    try:
        return json.loads(run.out)["auth"][registry]["password"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"bench: pullcred answered oddly on {what}: {run.out[:300]!r}")


def build(args):
    if args.no_build:
        log("--no-build: using", args.bin)
        return
    log("cargo build --release -p pullcred")
    p = subprocess.run(["cargo", "build", "--release", "-p", "pullcred"], cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"bench: cargo build --release -p pullcred failed (exit {p.returncode})")


def elf_has_symtab(path: Path):
    """True if the ELF file has a .symtab section (i.e. is not stripped)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    end = "<" if data[5] == 1 else ">"
    e_shoff, = struct.unpack_from(end + "Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    if not e_shoff or e_shstrndx >= e_shnum:
        return False

    def sh(i):
        return struct.unpack_from(end + "IIQQQQIIQQ", data, e_shoff + i * e_shentsize)

    str_off = sh(e_shstrndx)[4]
    for i in range(e_shnum):
        name_off = sh(i)[0]
        name = data[str_off + name_off: data.index(b"\0", str_off + name_off)]
        if name == b".symtab":
            return True
    return False


def elf_kind(path: Path):
    """"static non-PIE", "static-pie", "dynamic (PIE)" or "dynamic (non-PIE)"
    from the ELF header: e_type, and whether a PT_INTERP segment asks for a
    loader."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    e_type, = struct.unpack_from("<H", data, 16)
    e_phoff, = struct.unpack_from("<Q", data, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 0x36)
    interp = any(struct.unpack_from("<I", data, e_phoff + i * e_phentsize)[0] == 3 for i in range(e_phnum))
    pie = e_type == 3  # ET_DYN
    if interp:
        return "dynamic (PIE)" if pie else "dynamic (non-PIE)"
    return "static-pie" if pie else "static non-PIE"


# --------------------------------------------------------------------------
# docker-credential-ecr-login (Debian's amazon-ecr-credential-helper 0.6.0)
# --------------------------------------------------------------------------


def ecr_login_cache(home: Path, access_key: str):
    """Pre-populates ~/.ecr/cache.json with an unexpired entry, exactly as
    amazon-ecr-credential-helper v0.6.0 (ecr-login/cache/{build,file}.go) reads it:

      {"Registries": {KEY: AuthEntry}, "Version": "1.0"}
      KEY = REGION + "-" + checksum(AccessKeyID) + "-" + REGISTRY_ID
      checksum(s) = base64std(md5.New().Sum([]byte(s)))  -- Go's Sum(b) APPENDS
                    md5("") to b, so this is base64(s || md5(b"")), not md5(s)
      AuthEntry = {AuthorizationToken: base64("AWS:<pw>"), RequestedAt, ExpiresAt
                   (RFC 3339), ProxyEndpoint: "https://<host>", Service: "ecr"}

    An entry is used while now < ExpiresAt - (ExpiresAt - RequestedAt)/2."""
    checksum = base64.b64encode(access_key.encode() + hashlib.md5(b"").digest()).decode()
    key = f"{REGION}-{checksum}-{ACCOUNT}"
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    entry = {
        "AuthorizationToken": base64.b64encode(f"AWS:{ECR_LOGIN_PASSWORD}".encode()).decode(),
        "RequestedAt": now.isoformat().replace("+00:00", "Z"),
        "ExpiresAt": (now + dt.timedelta(hours=12)).isoformat().replace("+00:00", "Z"),
        "ProxyEndpoint": f"https://{REGISTRY}",
        "Service": "ecr",
    }
    d = home / ".ecr"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    (d / "cache.json").write_text(json.dumps({"Registries": {key: entry}, "Version": "1.0"}, indent=2))
    return key


def ecr_login_ok(run: Run):
    if run.code != 0:
        return False
    try:
        body = json.loads(run.out)
    except ValueError:
        return False
    return body.get("Secret") == ECR_LOGIN_PASSWORD and body.get("Username") == "AWS"


def verify_ecr_login_hit(exe, env, stdin, home: Path):
    """A real hit: right creds on stdout, its own debug log says "Using cached
    token" and never "Calling ECR", and (with strace) no connect() at all."""
    logf = home / ".ecr" / "log" / "ecr-login.log"
    before = logf.read_text() if logf.exists() else ""
    notes = []
    strace = shutil.which("strace")
    if strace:
        trace = home / "strace.txt"
        r = spawn([strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), exe, "get"], env, stdin)
        connects = [l for l in trace.read_text().splitlines() if "connect(" in l]
        if connects:
            return False, f"made {len(connects)} connect() call(s): {connects[0][:120]}"
        notes.append("strace: 0 connect() calls")
    else:
        r = spawn([exe, "get"], env, stdin)
        notes.append("strace not installed; checked its log only")
    if not ecr_login_ok(r):
        return False, f"did not print the cached creds: exit {r.code} {r.out[:200]!r} {r.err[:200]!r}"
    new_log = (logf.read_text() if logf.exists() else "")[len(before):]
    if "Using cached token" not in new_log or "Calling ECR" in new_log:
        return False, f"its log does not show a cache hit: {new_log[-300:]!r}"
    notes.append('its log: "Using cached token"')
    return True, "; ".join(notes)


def dpkg_version(pkg):
    try:
        p = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        return p.stdout.strip() if p.returncode == 0 else None
    except OSError:
        return None


# --------------------------------------------------------------------------
# moto
# --------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    def __init__(self, work: Path):
        exe = Path(sys.executable).parent / "moto_server"
        if not exe.exists():
            exe = shutil.which("moto_server")
        if not exe:
            raise SystemExit("bench: moto_server not found (tests/run or .ci/run installs it into .venv)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logpath = work / "moto.log"
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        end = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.close()
                    raise SystemExit(f"bench: moto_server did not come up; see {self.logpath}")
                time.sleep(0.1)

    def api_calls(self):
        """Requests moto has served on its API path (POST /), from its access log."""
        self.logf.flush()
        return self.logpath.read_bytes().count(b'"POST / HTTP/1.1"')

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


# --------------------------------------------------------------------------
# Google and Azure: miss and hit against the test stand-ins
# --------------------------------------------------------------------------

GOOGLE_IMAGE, GOOGLE_REGISTRY = "us-docker.pkg.dev/proj/repo/app", "us-docker.pkg.dev"
AZURE_IMAGE, AZURE_REGISTRY = "myreg.azurecr.io/app", "myreg.azurecr.io"


def source_rows(pullcred, env, image, registry, calls, work: Path, name, miss_label, miss_runs, hit_runs,
                req=None):
    """Miss: each exec on a fresh, absent cache dir; each must call upstream.
    Hit: one warming exec, then hit_runs execs on that cache; none may call
    upstream. calls() is the stand-in's call count. Returns two table rows."""
    req = req or request_line(image)
    miss = []
    before = calls()
    for i in range(miss_runs):
        r = spawn([pullcred], dict(env, PULLCRED_CACHE_DIR=str(work / f"{name}-miss-{i}")), req)
        pullcred_password(r, f"a {name} miss", registry)
        miss.append(r.secs)
    miss_calls = calls() - before
    env_hit = dict(env, PULLCRED_CACHE_DIR=str(work / f"{name}-hit"))
    token = pullcred_password(spawn([pullcred], env_hit, req), f"the {name} warming miss", registry)
    before = calls()
    hit = []
    for _ in range(hit_runs):
        r = spawn([pullcred], env_hit, req)
        if pullcred_password(r, f"a {name} cache hit", registry) != token:
            raise SystemExit(f"bench: a {name} cache hit returned a different token")
        hit.append(r.secs)
    hit_calls = calls() - before
    return [
        (miss_label, summary(miss) + f", {miss_calls} upstream calls"
         + ("" if miss_calls >= miss_runs else " (NOT a miss each time)"), "(reference)", ""),
        (f"{name} cache hit, median exec", summary(hit) + f", {hit_calls} upstream calls"
         + ("" if hit_calls == 0 else " (NOT all hits)"), "(reference)", ""),
    ]


def google_rows(pullcred, home, work, miss_runs, hit_runs):
    from standins.gcp import GoogleStandin
    g = GoogleStandin()
    try:
        env = dict(base_env(home), GCE_METADATA_HOST=g.host)
        return source_rows(pullcred, env, GOOGLE_IMAGE, GOOGLE_REGISTRY, g.call_count, work, "google",
                           "google (metadata server stand-in) cache miss, median exec", miss_runs, hit_runs)
    finally:
        g.close()


def azure_rows(pullcred, home, work, miss_runs, hit_runs):
    from standins.azure import AzureStandin, make_ca_and_server_cert
    tls = work / "azure-tls"
    tls.mkdir()
    ca, cert, key = make_ca_and_server_cert(tls)
    a = AzureStandin(cert, key)
    try:
        env = dict(base_env(home), SSL_CERT_FILE=str(ca), PULLCRED_AZURE_IMDS_ENDPOINT=a.imds_url,
                   AZURE_AUTHORITY_HOST=a.url, PULLCRED_ACR_ENDPOINTS=f"*={a.url}", PULLCRED_AZURE_CONFIG="none")
        calls = lambda: len(a.calls)  # noqa: E731
        return source_rows(pullcred, env, AZURE_IMAGE, AZURE_REGISTRY, calls, work, "azure",
                           "azure (IMDS + Entra + ACR stand-ins) cache miss, median exec", miss_runs, hit_runs)
    finally:
        a.close()


def service_account_token(ns="team-a", name="builder", uid="0b8e4b52-4e49-4a8e-9a47-3c2f2d0d7b11"):
    """A Kubernetes-shaped service-account JWT (unsigned: moto's STS checks no
    signature; the tests use signed ones against a trust-checking stand-in)."""
    now = int(time.time())
    claims = {"iss": "https://kubernetes.default.svc", "sub": f"system:serviceaccount:{ns}:{name}",
              "aud": ["sts.amazonaws.com"], "iat": now, "nbf": now, "exp": now + 3600,
              "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}}}
    header = b64url(json.dumps({"alg": "RS256"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(b'bench-signature')}"


def workload_rows(pullcred, home, work, moto, standin, miss_runs, hit_runs):
    """Per-pod identity (KEP-4412): sts:AssumeRoleWithWebIdentity against
    moto, then ECR GetAuthorizationToken against the stand-in (moto's ECR
    tokens expired in 2015, so they are never cached)."""
    req = (json.dumps({"apiVersion": V1, "kind": "CredentialProviderRequest", "image": IMAGE,
                       "serviceAccountToken": service_account_token(),
                       "serviceAccountAnnotations": {"eks.amazonaws.com/ecr-role-arn":
                                                     "arn:aws:iam::123456789012:role/pull"}}) + "\n").encode()
    env = dict(base_env(home), AWS_ENDPOINT_URL_STS=moto.url, AWS_ENDPOINT_URL_ECR=standin.url)
    calls = lambda: moto.api_calls() + standin.call_count()  # noqa: E731
    return source_rows(pullcred, env, IMAGE, REGISTRY, calls, work, "ECR per-pod identity",
                       "ECR per-pod identity (moto STS + ECR stand-in) cache miss, median exec",
                       miss_runs, hit_runs, req=req)


def other_source_rows(fn, label, *args):
    """Runs fn; if its stand-in cannot be driven, one "not measured" row."""
    try:
        return fn(*args)
    except (Exception, SystemExit) as e:  # noqa: BLE001
        return [(label, f"not measured: {str(e)[:200] or type(e).__name__}", "(reference)", "")]


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, noisier figures)")
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --release first")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "pullcred", help="pullcred binary")
    ap.add_argument("--hit-runs", type=int, help="timed cache-hit execs per tool (default 300, --quick 50)")
    ap.add_argument("--miss-runs", type=int, help="timed cache-miss execs against moto (default 40, --quick 10)")
    ap.add_argument("--static-bin", type=Path, action="append",
                    help="a static pullcred to measure too (repeatable; default: release/static.sh's outputs "
                         "target/static and target/static-pie, those that exist)")
    args = ap.parse_args()

    hit_runs = args.hit_runs or (50 if args.quick else 300)
    miss_runs = args.miss_runs or (10 if args.quick else 40)
    rss_hit_runs = 10 if args.quick else 30
    rss_miss_runs = 3 if args.quick else 10
    warmup = 5 if args.quick else 20
    concurrency = 32
    src_miss_runs = 5 if args.quick else 20  # Google and Azure
    src_hit_runs = 20 if args.quick else 100

    build(args)
    binp = args.bin.resolve()
    if not binp.is_file():
        raise SystemExit(f"bench: {binp} is missing (build it, or drop --no-build)")
    pullcred = str(binp)
    statics = [p.resolve() for p in (args.static_bin or [b for b in STATIC_BINS if b.is_file()])]
    for p in statics:
        if not p.is_file():
            raise SystemExit(f"bench: static binary {p} is missing (release/static.sh builds it)")

    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="pullcred-bench-"))  # 0700
    rows = []  # (figure, value, target, verdict)
    notes = []
    standin = moto = None
    try:
        rss_helper, rss_floor, rss_note = build_rss_helper(work)
        notes.append(f"peak RSS: {rss_note}")

        # ---- binary size --------------------------------------------------
        size = binp.stat().st_size
        symtab = elf_has_symtab(binp)
        stripped = {True: "not stripped (.symtab present)", False: "stripped", None: "not ELF?"}[symtab]
        size_row = ("release binary size", f"{size:,} B ({size / MIB:.2f} MiB), {stripped}",
                    f"< {TARGET_BINARY_MIB:g} MiB", verdict(size < TARGET_BINARY_MIB * MIB))

        # ---- cache hit: pullcred (and ecr-login, interleaved) -------------
        standin = EcrStandin()
        home = work / "home"
        home.mkdir()
        env_hit = base_env(home)
        env_hit["PULLCRED_CACHE_DIR"] = str(work / "cache-hit")  # absent: pullcred creates it 0700
        env_hit["AWS_ENDPOINT_URL_ECR"] = standin.url
        req = request_line()
        log("warming pullcred's cache via the ECR stand-in")
        token = pullcred_password(spawn([pullcred], env_hit, req), "the warming miss")
        if standin.call_count() != 1:
            raise SystemExit(f"bench: warming made {standin.call_count()} stand-in calls, want 1")

        ecr_exe = shutil.which(ECR_LOGIN)
        ecr_env = ecr_req = None
        if ecr_exe:
            ecr_home = work / "ecr-home"
            ecr_home.mkdir(mode=0o700)
            ecr_login_cache(ecr_home, ACCESS_KEY)
            dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
            ecr_env = base_env(ecr_home)
            # Safety net only: should the hit ever miss, the SDK's request goes
            # to a closed loopback port instead of AWS. Unused on a hit.
            ecr_env.update({"AWS_ENDPOINT_URL": dead, "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "NO_PROXY": ""})
            ecr_req = f"{REGISTRY}\n".encode()
            ok, why = verify_ecr_login_hit(ecr_exe, ecr_env, ecr_req, ecr_home)
            ver = dpkg_version("amazon-ecr-credential-helper") or "unknown version"
            if ok:
                notes.append(f"ecr-login ({ECR_LOGIN}, Debian {ver}) verified file-cache hit: {why}")
            else:
                notes.append(f"ecr-login ({ECR_LOGIN}, Debian {ver}) NOT a verified hit, left out: {why}")
                ecr_exe = None
        else:
            notes.append(f"{ECR_LOGIN} not installed (apt-get install -y --no-install-recommends "
                         "amazon-ecr-credential-helper): no comparison")

        noop = str(work / "noop") if (work / "noop").exists() else None
        # A Rust "hello world" built like pullcred (-O, panic=abort): the floor
        # for any program using Rust's std on this machine.
        hello = None
        if shutil.which("rustc"):
            (work / "hello.rs").write_text('fn main() { println!("hello"); }\n')
            built = subprocess.run(["rustc", "-O", "-C", "panic=abort", "-o", str(work / "hello-rust"),
                                    str(work / "hello.rs")], capture_output=True)
            if built.returncode == 0:
                hello = str(work / "hello-rust")
        log(f"cache hits: {warmup} warm-up + {hit_runs} timed execs per tool, interleaved")
        hit_p, hit_e, hit_n, hit_h = [], [], [], []
        hit_s = {p: [] for p in statics}
        for i in range(warmup + hit_runs):
            order = ("p", "e", "n", "h", *statics)
            if i % 2:
                order = order[::-1]
            for who in order:
                if isinstance(who, Path):
                    # The static binaries answer from the same cache.
                    r = spawn([str(who)], env_hit, req)
                    if pullcred_password(r, f"a cache hit of {who}") != token:
                        raise SystemExit(f"bench: {who}'s cache hit returned a different token")
                    if i >= warmup:
                        hit_s[who].append(r.secs)
                elif who == "h":
                    if hello:
                        r = spawn([hello], env_hit, b"")
                        if i >= warmup:
                            hit_h.append(r.secs)
                elif who == "n":
                    if noop:
                        r = spawn([noop], env_hit, req)
                        if i >= warmup:
                            hit_n.append(r.secs)
                elif who == "p":
                    r = spawn([pullcred], env_hit, req)
                    if pullcred_password(r, "a cache hit") != token:
                        raise SystemExit("bench: a cache hit returned a different token")
                    if i >= warmup:
                        hit_p.append(r.secs)
                elif ecr_exe:
                    r = spawn([ecr_exe, "get"], ecr_env, ecr_req)
                    if not ecr_login_ok(r):
                        raise SystemExit(f"bench: ecr-login hit failed: exit {r.code} {r.err[:300]!r}")
                    if i >= warmup:
                        hit_e.append(r.secs)
        hit_calls = standin.call_count() - 1
        notes.append(f"cache hits made {hit_calls} upstream call(s) in {warmup + hit_runs} execs")

        med_p = statistics.median(hit_p)
        rows.append(("pullcred cache hit, median exec", summary(hit_p),
                     f"< {TARGET_HIT_MEDIAN_MS:g} ms", verdict(med_p * 1000 < TARGET_HIT_MEDIAN_MS and hit_calls == 0)))
        if hit_e:
            med_e = statistics.median(hit_e)
            rows.append(("ecr-login file-cache hit, median exec", summary(hit_e), "(reference)", ""))
            ratio = med_p / med_e
            net = ""
            if hit_n:  # the same ratio with the harness floor (spawn from Python) taken off both
                floor = statistics.median(hit_n)
                if med_e > floor:
                    net = f"; net of the harness floor {max(0.0, med_p - floor) / (med_e - floor):.3f}"
            rows.append(("hit ratio pullcred / ecr-login (medians)", f"{ratio:.3f} ({med_e / med_p:.1f}x faster{net})",
                         f"<= {TARGET_HIT_RATIO:g}", verdict(ratio <= TARGET_HIT_RATIO)))
        else:
            rows.append(("hit ratio pullcred / ecr-login (medians)", "not measured", f"<= {TARGET_HIT_RATIO:g}", "n/a"))
        if hit_n:
            rows.append(("harness floor: static no-op C program, median exec", summary(hit_n), "(reference)", ""))
        if hit_h:
            best = ""
            if hit_e:
                best = f"; as a ratio to ecr-login's hit: {statistics.median(hit_h) / statistics.median(hit_e):.3f}"
            rows.append(("Rust std hello world, median exec (floor for any Rust binary)",
                         summary(hit_h) + best, "(reference)", ""))

        static_rows = []
        for p in statics:
            kind = elf_kind(p)
            med_s = statistics.median(hit_s[p])
            static_rows.append((f"{kind} pullcred cache hit, median exec ({p.relative_to(ROOT) if p.is_relative_to(ROOT) else p})",
                                summary(hit_s[p]), "(reference)", ""))
            if hit_n:
                ratio = med_s / statistics.median(hit_n)
                static_rows.append((f"{kind} hit / static no-op C program (medians, interleaved)", f"{ratio:.3f}",
                                    f"<= {TARGET_STATIC_HIT_VS_NOOP:g}", verdict(ratio <= TARGET_STATIC_HIT_VS_NOOP)))
        if statics and hit_n:
            static_rows.append(("dynamic pullcred hit / static no-op C program (medians, interleaved)",
                                f"{med_p / statistics.median(hit_n):.3f} ({elf_kind(binp)})", "(reference)", ""))

        log("peak RSS on hits")
        for p in statics:
            kind = elf_kind(p)
            rss_s = max(spawn([str(p)], env_hit, req, rss_helper=rss_helper).maxrss_kib for _ in range(rss_hit_runs))
            static_rows.append((f"{kind} pullcred peak RSS, cache hit", f"{mib(rss_s)} ({rss_s} KiB, max of {rss_hit_runs})",
                                f"<= {TARGET_STATIC_RSS_MIB:g} MiB", verdict(rss_s <= TARGET_STATIC_RSS_MIB * 1024)))
            size_s = p.stat().st_size
            strip_s = {True: "not stripped", False: "stripped", None: "not ELF?"}[elf_has_symtab(p)]
            static_rows.append((f"{kind} binary size", f"{size_s:,} B ({size_s / MIB:.2f} MiB), {strip_s}",
                                f"<= {TARGET_STATIC_BINARY_MIB:g} MiB", verdict(size_s <= TARGET_STATIC_BINARY_MIB * MIB)))
        rss_hit = max(spawn([pullcred], env_hit, req, rss_helper=rss_helper).maxrss_kib for _ in range(rss_hit_runs))
        rss_rows = [("pullcred peak RSS, cache hit", f"{mib(rss_hit)} ({rss_hit} KiB, max of {rss_hit_runs})",
                     f"< {TARGET_HIT_RSS_MIB:g} MiB", verdict(rss_hit < TARGET_HIT_RSS_MIB * 1024))]
        if ecr_exe:
            rss_e = max(spawn([ecr_exe, "get"], ecr_env, ecr_req, rss_helper=rss_helper).maxrss_kib
                        for _ in range(rss_hit_runs))
            rss_rows.append(("ecr-login peak RSS, file-cache hit", f"{mib(rss_e)} ({rss_e} KiB, max of {rss_hit_runs})",
                             "(reference)", ""))

        # ---- 32 concurrent cold execs -----------------------------------
        log(f"{concurrency} concurrent cold execs, stand-in delay 0.3 s")
        env_cold = dict(env_hit)
        env_cold["PULLCRED_CACHE_DIR"] = str(work / "cache-cold")  # absent
        standin.configure(delay=0.3)
        before = standin.call_count()
        procs = []
        t0 = time.perf_counter()
        for _ in range(concurrency):
            r_in, w_in = os.pipe()
            r_out, w_out = os.pipe()
            pid = os.posix_spawn(pullcred, [pullcred], env_cold, file_actions=[
                (os.POSIX_SPAWN_DUP2, r_in, 0), (os.POSIX_SPAWN_DUP2, w_out, 1),
                (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
            os.close(r_in)
            os.close(w_out)
            procs.append((pid, w_in, r_out))
        for _, w_in, _ in procs:
            os.write(w_in, req)
            os.close(w_in)
        tokens, failed = set(), 0
        for pid, _, r_out in procs:
            out = _read_all(r_out)
            _, status, _ = os.wait4(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                failed += 1
                continue
            tokens.add(json.loads(out)["auth"][REGISTRY]["password"])
        wall = time.perf_counter() - t0
        calls = standin.call_count() - before
        standin.configure(delay=0.0)
        rows.append((f"upstream calls, {concurrency} concurrent cold execs (stand-in delay 0.3 s)",
                     f"{calls} ({concurrency - failed}/{concurrency} exit 0, {len(tokens)} distinct token(s), "
                     f"all done in {wall:.2f} s)",
                     f"{TARGET_CONCURRENT_CALLS}", verdict(calls == TARGET_CONCURRENT_CALLS and failed == 0)))

        # ---- cache miss against moto --------------------------------------
        log("starting moto_server on 127.0.0.1")
        moto = Moto(work)
        env_miss = base_env(home)
        env_miss["PULLCRED_CACHE_DIR"] = str(work / "cache-miss")
        env_miss["AWS_ENDPOINT_URL"] = moto.url
        env_miss["AWS_ENDPOINT_URL_ECR"] = moto.url
        for _ in range(3):  # moto's first requests load its backends
            pullcred_password(spawn([pullcred], env_miss, req), "a miss against moto")
        log(f"cache misses against moto: {miss_runs} timed execs")
        before = moto.api_calls()
        miss = []
        for _ in range(miss_runs):
            r = spawn([pullcred], env_miss, req)
            pullcred_password(r, "a miss against moto")
            miss.append(r.secs)
        moto_calls = moto.api_calls() - before
        rows.append(("pullcred cache miss vs local moto, median exec", summary(miss) + f", {moto_calls} moto calls",
                     "(each exec a miss)", verdict(moto_calls >= miss_runs)))
        rss_miss = max(spawn([pullcred], env_miss, req, rss_helper=rss_helper).maxrss_kib for _ in range(rss_miss_runs))
        rss_rows.append(("pullcred peak RSS, cache miss (moto)", f"{mib(rss_miss)} ({rss_miss} KiB, max of {rss_miss_runs})",
                         "(reference)", ""))
        rows.extend(rss_rows)

        # ---- per-pod identity: STS (moto) then ECR (stand-in) --------------
        log(f"per-pod identity: {src_miss_runs} misses, then 1 warming + {src_hit_runs} hits")
        rows.extend(other_source_rows(workload_rows, "ECR per-pod identity cache miss and hit",
                                      pullcred, home, work, moto, standin, src_miss_runs, src_hit_runs))

        # ---- Google and Azure, against their stand-ins ---------------------
        log(f"google: {src_miss_runs} misses, then 1 warming + {src_hit_runs} hits")
        rows.extend(other_source_rows(google_rows, "google (metadata server stand-in) cache miss and hit",
                                      pullcred, home, work, src_miss_runs, src_hit_runs))
        log(f"azure: {src_miss_runs} misses, then 1 warming + {src_hit_runs} hits")
        rows.extend(other_source_rows(azure_rows, "azure (IMDS + Entra + ACR stand-ins) cache miss and hit",
                                      pullcred, home, work, src_miss_runs, src_hit_runs))
        rows.append(size_row)
        rows.extend(static_rows)
    finally:
        if moto:
            moto.close()
        if standin:
            standin.close()
        shutil.rmtree(work, ignore_errors=True)

    # ---- report -------------------------------------------------------
    load = os.getloadavg()
    print(f"pullcred benchmark, {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, "
          f"{'--quick, ' if args.quick else ''}{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"load average {load_start[0]:.2f} at start, {load[0]:.2f} at end")
    print(f"binary: {binp}")
    print()
    print("| figure | value | target | result |")
    print("|---|---|---|---|")
    for fig, val, tgt, res in rows:
        print(f"| {fig} | {val} | {tgt} | {res} |")
    print()
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
