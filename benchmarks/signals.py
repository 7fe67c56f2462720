"""Which pre-step confidence signal separates good trajectories from bad ones?

Runs the small model alone over GSM8K problems and, before every step, records
maxprob, margin and exp(-entropy) of its next-token distribution. A step is
labelled by whether its trajectory ends in the correct answer. Prints the
AUROC of each signal at step level and per problem (min over steps), so the
default signal is chosen on data. Traces go to --out as JSON lines.

    python benchmarks/signals.py --limit 100 --out signals.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from steer_cli.answers import answers_match, gold_answer
from steer_cli.routers import Decision, DecisionPoint
from steer_cli.signals import SIGNALS
from steer_cli.solver import Solved, Solver
from steer_cli.session import build_tiers
from steer_cli.datasets import load_problems


class Recorder:
    """Writes every step with the small model, noting every signal first."""

    name = "small"

    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def decide(self, point: DecisionPoint) -> Decision:
        dist = point.next_token(0)
        self.seen.append({name: fn(dist) for name, fn in SIGNALS.items()})
        return Decision(tier=0)


def auroc(scores: list[float], labels: list[bool]) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="dev")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--out", type=Path, default=Path("signals.jsonl"))
    args = ap.parse_args()
    tiers = build_tiers(None, None, None)[:1]
    rows = []
    done = {json.loads(l)["id"] for l in args.out.read_text().splitlines()} if args.out.exists() else set()
    with args.out.open("a") as out:
        for item in load_problems(args.data, args.limit):
            if item.id in done:
                continue
            rec = Recorder()
            started = time.perf_counter()
            result = next(e.result for e in Solver(tiers, rec).solve(item.question) if isinstance(e, Solved))
            ok = answers_match(result.answer, gold_answer(item.answer))
            row = {"id": item.id, "correct": ok, "signals": rec.seen[: len(result.steps)], "steps": len(result.steps), "s": round(time.perf_counter() - started, 2)}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{item.id} correct={ok} steps={row['steps']} {row['s']}s", file=sys.stderr)
    rows = [json.loads(l) for l in args.out.read_text().splitlines()]
    acc = sum(r["correct"] for r in rows) / len(rows)
    print(f"problems: {len(rows)}  small-only accuracy: {acc:.3f}")
    print(f"{'signal':<10} {'step AUROC':>11} {'first-step':>11} {'min/problem':>12} {'mean/problem':>13}")
    for name in SIGNALS:
        step_s = [s[name] for r in rows for s in r["signals"]]
        step_y = [r["correct"] for r in rows for _ in r["signals"]]
        first = [r["signals"][0][name] for r in rows if r["signals"]]
        mins = [min(s[name] for s in r["signals"]) for r in rows if r["signals"]]
        means = [sum(s[name] for s in r["signals"]) / len(r["signals"]) for r in rows if r["signals"]]
        ys = [r["correct"] for r in rows if r["signals"]]
        print(f"{name:<10} {auroc(step_s, step_y):>11.3f} {auroc(first, ys):>11.3f} {auroc(mins, ys):>12.3f} {auroc(means, ys):>13.3f}")


if __name__ == "__main__":
    main()
