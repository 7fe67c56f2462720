"""Which pre-step confidence signal separates good trajectories from bad ones?

Reads records from `steer eval` / `steer batch` (small-only runs record, for
every step, the small model's maxprob, margin and exp(-entropy) before it
wrote the step) and labels each step by whether its trajectory ended in the
correct answer. Prints the AUROC of each signal per step, for the first step,
and per problem (min and mean over its steps), plus the quantiles a threshold
would be taken from.

    steer eval --routers small --data dev --limit 100 --work runs/
    python benchmarks/signals.py runs/dev-small-*.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SIGNALS = ("maxprob", "margin", "entropy")


def auroc(scores: list[float], labels: list[bool]) -> float:
    """P(score of a positive > score of a negative), ties counted half (rank form)."""
    pairs = sorted(zip(scores, labels, strict=True))
    n_pos = sum(labels)
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2  # 1-based average rank of the tie group
        rank_sum += mid_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def quantile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("records", type=Path, nargs="+")
    args = ap.parse_args()
    rows = [json.loads(line) for path in args.records for line in path.read_text().splitlines()]
    rows = [r for r in rows if "correct" in r and r["steps"] and all(s.get("signals") for s in r["steps"])]
    acc = sum(r["correct"] for r in rows) / len(rows)
    n_steps = sum(len(r["steps"]) for r in rows)
    print(f"{len(rows)} problems, {n_steps} steps, small-only accuracy {acc:.1%}")
    print("| signal | step AUROC | first-step AUROC | min/problem AUROC | mean/problem AUROC | q10 | q30 | q50 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SIGNALS:
        steps = [(s["signals"][name], r["correct"]) for r in rows for s in r["steps"]]
        values = [v for v, _ in steps]
        ys = [r["correct"] for r in rows]
        first = [r["steps"][0]["signals"][name] for r in rows]
        mins = [min(s["signals"][name] for s in r["steps"]) for r in rows]
        means = [sum(s["signals"][name] for s in r["steps"]) / len(r["steps"]) for r in rows]
        print(
            f"| {name} | {auroc(values, [y for _, y in steps]):.3f} | {auroc(first, ys):.3f} | {auroc(mins, ys):.3f}"
            f" | {auroc(means, ys):.3f} | {quantile(values, 0.1):.3f} | {quantile(values, 0.3):.3f} | {quantile(values, 0.5):.3f} |"
        )


if __name__ == "__main__":
    main()
