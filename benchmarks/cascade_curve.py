"""The whole accuracy-cost curve of the two-tier confidence cascade, from runs
already made.

With greedy decoding a cascade's tiers solve the problem exactly as they do
alone, so one real cascade run (which records the small model's answer and
P(T) for every problem, kept or not) plus the large-only run give the cascade
at every threshold. The script first recomputes the real run's own threshold
and checks it reproduces that run's figures, then prints the curve and, at
each point, the random query-routing line at the same cost.

    python benchmarks/cascade_curve.py CASCADE.jsonl SMALL.jsonl LARGE.jsonl
"""

from __future__ import annotations

import json
import sys


def load(path: str) -> dict[str, dict]:
    with open(path, encoding="utf-8") as f:
        return {r["id"]: r for r in map(json.loads, f) if "error" not in r}


def point(threshold: float, cascade: dict, small: dict, large: dict) -> tuple[float, float, float]:
    """(accuracy, relative cost, share escalated) at `threshold`."""
    correct = flops = reference = escalated = 0.0
    for pid, rec in cascade.items():
        first = rec["attempts"][0]
        small_flops = rec["cost"]["models"][0]["flops"]
        if (first["confidence"] or 0.0) >= threshold:
            correct += small[pid]["correct"]
            flops += small_flops
            reference += small[pid]["cost"]["large_only_flops"]
        else:
            escalated += 1
            correct += large[pid]["correct"]
            flops += small_flops + large[pid]["cost"]["flops"]
            reference += large[pid]["cost"]["large_only_flops"]
    n = len(cascade)
    return correct / n, flops / reference, escalated / n


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit("usage: cascade_curve.py CASCADE.jsonl SMALL.jsonl LARGE.jsonl THRESHOLD_OF_THE_CASCADE_RUN")
    cascade, small, large = (load(p) for p in sys.argv[1:4])
    missing = [pid for pid in cascade if pid not in small or pid not in large]
    if missing:
        sys.exit(f"small/large records lack {len(missing)} of the cascade's problems, e.g. {missing[0]}")
    n = len(cascade)
    acc_s = sum(small[p]["correct"] for p in cascade) / n
    acc_l = sum(large[p]["correct"] for p in cascade) / n
    c_small = sum(small[p]["cost"]["flops"] for p in cascade) / sum(small[p]["cost"]["large_only_flops"] for p in cascade)
    real_acc = sum(r["correct"] for r in cascade.values()) / n
    real_cost = sum(r["cost"]["flops"] for r in cascade.values()) / sum(r["cost"]["large_only_flops"] for r in cascade.values())
    acc, cost, _ = point(float(sys.argv[4]), cascade, small, large)
    print(f"{n} problems; small {acc_s:.1%} at {c_small:.3f}, large {acc_l:.1%} at 1.000")
    print(f"real cascade run: accuracy {real_acc:.1%}, relative cost {real_cost:.3f}; recomputed from the records: {acc:.1%}, {cost:.3f}")
    confidences = sorted(r["attempts"][0]["confidence"] or 0.0 for r in cascade.values())
    print("| threshold | escalated | accuracy | rel. FLOPs | random query routing at that cost | margin |")
    print("|---|---|---|---|---|---|")
    for q in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        t = confidences[min(int(q * n), n - 1)] if q < 1.0 else 1.01
        acc, cost, share = point(t, cascade, small, large)
        p = min(max((cost - c_small) / (1.0 - c_small), 0.0), 1.0)
        baseline = acc_s + p * (acc_l - acc_s)
        print(f"| {t:.6g} | {share:.0%} | {acc:.1%} | {cost:.3f} | {baseline:.1%} | {acc - baseline:+.1%} |")


if __name__ == "__main__":
    main()
