#!/usr/bin/env python3
"""Exec-to-pulled figures through a real containerd, per source, cold and
warm pullcred cache (issue #16): runs tests/e2e/test_figures.py through
tests/e2e/run (its own network namespace; root) and prints the table.

    cargo build -p pullcred && python3 bench/e2e_figures.py [out.json]
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mktemp(suffix=".json")
    env = dict(os.environ, PULLCRED_E2E_FIGURES=out)
    r = subprocess.run([str(ROOT / "tests" / "e2e" / "run"), "-k", "figures", "-s"], env=env, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(r.returncode)
    data = json.loads(Path(out).read_text())
    print(f"\n| source | cold (exec -> pulled) | warm |\n|---|---|---|")
    for name, v in data["sources"].items():
        print(f"| {name} | {v['cold_ms']:.0f} ms | {v['warm_ms']:.0f} ms |")
    print(f"\nmedian of {data['rounds']}; {data['containerd']}; snapshotter {data['snapshotter']}; JSON: {out}")


if __name__ == "__main__":
    main()
