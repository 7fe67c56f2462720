"""Paired comparison of two `steer eval` / `steer batch` record files on the
problems they share: who alone got which right, and the exact McNemar p-value.

    python benchmarks/paired.py runs/dev-steer@0.36-*.jsonl runs/dev-random@0.3-*.jsonl
"""

from __future__ import annotations

import argparse
import json
from math import comb
from pathlib import Path


def correct_by_id(path: Path) -> dict[str, bool]:
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["id"]: bool(r["correct"]) for r in rows if "correct" in r}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact binomial test on the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("first", type=Path)
    ap.add_argument("second", type=Path)
    args = ap.parse_args()
    a, b = correct_by_id(args.first), correct_by_id(args.second)
    ids = sorted(set(a) & set(b))
    only_a = sum(a[i] and not b[i] for i in ids)
    only_b = sum(b[i] and not a[i] for i in ids)
    print(f"{len(ids)} shared problems: only first correct {only_a}, only second correct {only_b}, exact McNemar p = {mcnemar_exact(only_a, only_b):.3f}")


if __name__ == "__main__":
    main()
