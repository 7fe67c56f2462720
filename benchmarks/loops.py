"""What the repetition guard saves, and what it costs in accuracy.

Takes small-only or large-only record files from `steer eval` (its --work
directory), finds the solutions the guard stopped (`finish: "repetition"`),
solves those problems again with the guard off, and compares tokens,
seconds and correctness side by side.

    python benchmarks/loops.py WORK/small-*.jsonl WORK/large-*.jsonl [--out docs/loops.md]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("records", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/loops.md"))
    args = ap.parse_args()

    from steer_cli import routes
    from steer_cli.answers import answers_match
    from steer_cli.session import Session
    from steer_cli.solver import Solved, StepLimits
    from steer_cli.tiers import build_tiers

    session = Session.of(build_tiers(), limits=replace(StepLimits(), stop_repetition=False))
    rows, seen, looped = [], 0, []
    for path in args.records:
        router = path.name.split("-", 1)[0]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            seen += 1
            if record.get("finish") == "repetition":
                looped.append((router, record))
    for router, record in looped:
        solver = session.solver(routes.parse(router))
        started = time.perf_counter()
        free = next(e.result for e in solver.solve(record["problem"]) if isinstance(e, Solved))
        seconds = time.perf_counter() - started
        guarded_tokens = sum(m["decoded_tokens"] for m in record["cost"]["models"])
        free_tokens = sum(m.decoded_tokens for m in free.cost.models)
        rows.append((router, record.get("id", "?"), guarded_tokens, record["cost"]["wall_s"], free_tokens, seconds,
                     bool(record.get("correct")), answers_match(free.answer, record.get("gold", "")), free.finish))
    lines = [f"{len(looped)} of {seen} solutions stopped by the repetition guard; each solved again with the guard off:", "",
             "| router | problem | tokens (guard) | s (guard) | tokens (no guard) | s (no guard) | right (guard) | right (no guard) | finish (no guard) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]} | {r[5]:.1f} | {r[6]} | {r[7]} | {r[8]} |" for r in rows]
    if rows:
        saved = sum(r[5] - r[3] for r in rows)
        lines += ["", f"time saved: {saved:.0f} s over {seen} solutions ({saved / seen:.2f} s per solution); "
                      f"right with the guard {sum(r[6] for r in rows)}, without it {sum(r[7] for r in rows)}"]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
