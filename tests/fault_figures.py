#!/usr/bin/env python3
"""Counts the fault-matrix cases (tests/test_fault_matrix.py) by fault kind
and prints a Markdown table for the README's Reliability section.

    .venv/bin/python tests/fault_figures.py

It imports the test module's parameter lists; it runs nothing.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_fault_matrix as m  # noqa: E402

LABELS = {
    "refused": "refused connection",
    "dns": "DNS failure",
    "tls": "TLS failure",
    "5xx": "5xx",
    "throttle": "throttling (429), retried, then recovers",
    "hang": "hang past the deadline",
    "truncated": "truncated body",
    "garbage": "garbage body",
    "huge": "huge body (64 MiB announced)",
    "expired": "token expiry in the past",
    "far_future": "token expiry decades away",
    "stale": "upstream down, still-valid cached token",
}


def main():
    cases = set(m.CASES) | {(s, "stale") for s in m.STALE_SOURCES}
    kinds = [*m.FAULTS, "stale"]
    print("| fault | " + " | ".join(m.SOURCES) + " | cases |")
    print("|---|" + "---|" * len(m.SOURCES) + "---|")
    total = 0
    for k in kinds:
        cells = ["tested" if (s, k) in cases else "n/a" for s in m.SOURCES]
        n = sum((s, k) in cases for s in m.SOURCES)
        total += n
        print(f"| {LABELS[k]} | " + " | ".join(cells) + f" | {n} |")
    na = len(m.SOURCES) * len(kinds) - total
    print(f"| **total** | | | | | **{total}** ({na} n/a) |")


if __name__ == "__main__":
    main()
