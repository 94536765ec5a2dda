#!/usr/bin/env python3
"""Regenerates provider/hit-path.order: the functions a cache hit runs, for
the linker to place together (a script, not a test).

Why: a hit touches a few hundred functions spread over the 7 MiB .text;
the kernel maps 64 KiB around every page fault in a file mapping
(fault-around), so scattered code costs about 2.5 MiB of RSS where the code
itself is about 0.5 MiB. `provider/build.rs` passes the list to rust-lld
(`--symbol-ordering-file`), which puts those functions next to each other.
A name the linker does not find is skipped silently, so a stale list only
costs memory, never a build: rerun this script after changing the hit path,
the dependencies or the toolchain, and check the RSS row of bench/bench.py.

    .venv/bin/python bench/symbol_order.py

Method: relinks the release build without the ordering and with a link map
(`PULLCRED_NO_SYMBOL_ORDER=1 PULLCRED_LINK_MAP=...`: same profile, so the
same symbol names; only the final link runs again), runs cache hits of that
stripped binary under `valgrind --tool=callgrind` (instruction-level
tracing, no timing), names every instruction callgrind saw executed by the
link map's symbol around it, writes them in address order, and relinks
target/release/pullcred with the new list. A build with another profile
(unstripped, say) would not do: the profile is part of every symbol's hash.
Hits covered: ECR with the node's identity, ECR with a pod's identity, a
static docker config. Everything stays on 127.0.0.1.

    .venv/bin/python bench/symbol_order.py --static

does the same for the static binary (release/static.sh: its own target
directory, so symbol hashes of its own) and writes
provider/hit-path-static.order, which provider/build.rs reads when
`crt-static` is on. PULLCRED_PIE is passed through to release/static.sh as
set: make the list for the variant you ship (non-PIE by default).
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402

STATIC = "--static" in sys.argv[1:]
OUT = ROOT / "provider" / ("hit-path-static.order" if STATIC else "hit-path.order")
TARGET = ROOT / "target" / ("symbol-order-static" if STATIC else "symbol-order")


MAP = TARGET / "pullcred.map"


def build(**extra) -> Path:
    env = dict(os.environ, **extra)
    if STATIC:
        p = subprocess.run([str(ROOT / "release" / "static.sh")], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.PIPE, text=True)
        return Path(p.stdout.strip().splitlines()[-1])
    subprocess.run(["cargo", "build", "--release", "-p", "pullcred"], cwd=ROOT, env=env, check=True)
    return ROOT / "target" / "release" / "pullcred"


def unordered() -> Path:
    """The release binary linked without the list, with a link map."""
    TARGET.mkdir(parents=True, exist_ok=True)
    binp = build(PULLCRED_NO_SYMBOL_ORDER="1", PULLCRED_LINK_MAP=str(MAP))
    copy = TARGET / "pullcred-unordered"
    shutil.copy2(binp, copy)
    return copy


def traced(binp: Path, env, req: bytes, out: Path):
    valgrind = shutil.which("valgrind") or "/usr/bin/valgrind"
    r = bench.spawn([valgrind, "--tool=callgrind", "--demangle=no", "--dump-instr=yes", "--compress-pos=no",
                     f"--callgrind-out-file={out}", str(binp)], env, req)
    if r.code != 0:
        raise SystemExit(f"symbol_order: traced hit failed: {r.err.strip()[-300:]}")


def entries_in(callgrind_out: Path):
    """Every instruction address callgrind saw executed (`--dump-instr=yes
    --compress-pos=no`: each cost line starts with its absolute address).

    Function entries alone are not enough: callgrind folds a function
    entered by a jump (a tail call, as `__rust_begin_short_backtrace` makes
    into `pullcred::cli::main`) into its caller, and such functions were
    missing from the list."""
    addrs = set()
    for line in callgrind_out.read_text(errors="replace").splitlines():
        m = re.match(r"^(0x[0-9a-fA-F]+) ", line)
        if m:
            addrs.add(int(m.group(1), 16))
    return addrs


def text_symbols(link_map: Path):
    """(address, size, name) of every symbol the link map places in an
    input section of .text, sorted by address."""
    out = []
    in_text = False
    for line in link_map.read_text(errors="replace").splitlines():
        p = line.split()
        if len(p) < 5:
            continue
        if ":(" in p[4]:
            in_text = ":(.text" in p[4]
            continue
        if in_text and len(p) == 5:
            try:
                out.append((int(p[0], 16), int(p[2], 16), p[4]))
            except ValueError:
                pass
    out.sort()
    return out


def name_entries(addrs, symbols):
    import bisect

    starts = [a for a, _, _ in symbols]
    names = {}
    for a in addrs:
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0:
            start, size, name = symbols[i]
            if a < start + max(size, 1):
                names[name] = start
    return names


# glibc's string functions come in variants that an IFUNC picks at start-up
# from the CPU's features (`__memmove_avx512_unaligned_erms`, ...). Valgrind's
# virtual CPU has fewer features than the machine the list is used on, so
# the variant traced is not the one run: take every variant of a family seen.
IFUNC_VARIANT = re.compile(r"^(__[a-z0-9]+)_(sse2|ssse3|sse4_1|sse4_2|avx|avx2|evex|evex512|avx512)(_\w*)?$")


def with_ifunc_variants(named, symbols):
    families = {m.group(1) for n in named if (m := IFUNC_VARIANT.match(n))}
    for start, _, name in symbols:
        m = IFUNC_VARIANT.match(name)
        if m and m.group(1) in families:
            named.setdefault(name, start)
    return named


def main():
    binp = unordered()
    work = Path(tempfile.mkdtemp(prefix="pullcred-order-"))
    standin = bench.EcrStandin()
    moto = bench.Moto(work)
    try:
        home = work / "home"
        home.mkdir()
        seen = set()
        node = bench.request_line()
        pod = (json.dumps({"apiVersion": bench.V1, "kind": "CredentialProviderRequest", "image": bench.IMAGE,
                           "serviceAccountToken": bench.service_account_token(),
                           "serviceAccountAnnotations": {"eks.amazonaws.com/ecr-role-arn":
                                                         "arn:aws:iam::123456789012:role/pull"}}) + "\n").encode()
        cfg = work / "docker.json"
        auth = base64.b64encode(b"robot:not-a-real-password").decode()
        cfg.write_text(json.dumps({"auths": {"registry.example.com": {"auth": auth}}}))
        cfg.chmod(0o600)
        static = (json.dumps({"apiVersion": bench.V1, "kind": "CredentialProviderRequest",
                              "image": "registry.example.com/team/app:1"}) + "\n").encode()
        cases = [
            ("ecr", dict(bench.base_env(home), AWS_ENDPOINT_URL_ECR=standin.url), node),
            ("pod", dict(bench.base_env(home), AWS_ENDPOINT_URL_STS=moto.url, AWS_ENDPOINT_URL_ECR=standin.url), pod),
            ("static", dict(bench.base_env(home), PULLCRED_DOCKER_CONFIG=str(cfg), PULLCRED_NO_REGISTRY_CHECK="1"),
             static),
        ]
        for name, env, req in cases:
            env["PULLCRED_CACHE_DIR"] = str(work / f"cache-{name}")
            warm = bench.spawn([str(binp)], env, req)
            if warm.code != 0:
                raise SystemExit(f"symbol_order: warming {name} failed: {warm.err.strip()[-300:]}")
            out = work / f"{name}.callgrind"
            traced(binp, env, req, out)
            seen |= entries_in(out)
        symbols = text_symbols(MAP)
        named = with_ifunc_variants(name_entries(seen, symbols), symbols)
        keep = sorted(named, key=named.get)
        if len(keep) < 50:
            raise SystemExit(f"symbol_order: only {len(keep)} functions named; is {MAP} from this build?")
        OUT.write_text("".join(f"{n}\n" for n in keep))
        span = (max(named.values()) - min(named.values())) // 1024
        print(f"{OUT.relative_to(ROOT)}: {len(keep)} functions (spread over {span} KiB of .text before ordering)")
        build()  # relink target/release/pullcred with the new list
    finally:
        standin.close()
        moto.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
