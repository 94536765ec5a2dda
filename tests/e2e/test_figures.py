"""Figures for the README (issue #16), not timed assertions: for each
source, the time from the driver's exec of pullcred to PullImage returning
for a small image, with pullcred's cache cold and warm (each through a
fresh kubelet: an empty in-memory cache, so pullcred is exec'd both times).

For the htpasswd registries (ECR, ECR Public, Google) a cold run includes
restarting docker-registry to add the freshly issued token to its htpasswd
(a harness cost, not a node's); it is measured and subtracted.

The table is printed (run with -s) and written as JSON to
$PULLCRED_E2E_FIGURES when set (bench/e2e_figures.py does)."""

import json
import os
import statistics

from test_sources import SOURCES, driver_with_args, source

ROUNDS = 3


def test_exec_to_pulled_figures(plugin, world, moto, tmp_path):
    w = world
    regs = {"ecr": w.ecr_registry, "ecr-public": w.ecr_public_registry, "google": w.gar_registry}
    rows = {}
    for name in SOURCES:
        cold, warm = [], []
        for r in range(ROUNDS):
            d = tmp_path / f"{name}-{r}"
            d.mkdir()
            env, args, image, _ = source(name, w, d, moto)
            env = dict(env, PULLCRED_CACHE_DIR=str(d / "pullcred-cache"))
            for bucket in (cold, warm):
                reg = regs.get(name)
                restart_before = reg.restart_seconds if reg else 0.0
                node = driver_with_args(plugin, w, env, args)
                pull = node.must_pull(image)
                spent = (reg.restart_seconds - restart_before) if reg else 0.0
                bucket.append((pull.done - pull.exec_started - spent) * 1000)
                w.cri.remove_all()
        rows[name] = {"cold_ms": round(statistics.median(cold), 1), "warm_ms": round(statistics.median(warm), 1)}
    lines = [f"exec -> PullImage returned, median of {ROUNDS} (containerd {w.cri.version.split()[2]}, "
             f"snapshotter {w.cri.snapshotter}):", f"{'source':<18}{'cold':>10}{'warm':>10}"]
    lines += [f"{k:<18}{v['cold_ms']:>8.0f}ms{v['warm_ms']:>8.0f}ms" for k, v in rows.items()]
    print("\n" + "\n".join(lines))
    out = os.environ.get("PULLCRED_E2E_FIGURES")
    if out:
        with open(out, "w") as f:
            json.dump({"rounds": ROUNDS, "containerd": w.cri.version, "snapshotter": w.cri.snapshotter,
                       "sources": rows}, f, indent=2)
    assert set(rows) == set(SOURCES)
