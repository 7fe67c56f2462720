"""Does `--cost-unit time` predict the seconds a run really takes?

Runs `steer eval` over the first N dev problems for several routers (fresh
records, on a quiet machine: nothing else may run) and compares, per router,
the measured wall seconds per problem with the seconds the machine profile
predicts from the run's token counts. Target: within 10% for every router.

    python benchmarks/time_prediction.py [--limit 10] [--routers small,large,trim:verify@0.5,steer:entropy@0.4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--routers", default="small,large,trim:verify@0.5,steer:entropy@0.4,cascade@0.9")
    ap.add_argument("--data", default="dev")
    ap.add_argument("--out", type=Path, default=Path("docs/time-prediction.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work, report = Path(tmp) / "work", Path(tmp) / "report"
        cmd = ["steer", "eval", "--routers", args.routers, "--data", args.data, "--limit", str(args.limit), "--work", str(work), "--out", str(report), "-q"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        summaries = json.loads((report / "summary.json").read_text())
    lines = [f"Measured against predicted seconds per problem, first {args.limit} {args.data} problems, one run, nothing else running:", "",
             "| config | measured s/prob | predicted s/prob | predicted / measured |", "|---|---|---|---|"]
    worst = 0.0
    for s in summaries:
        ratio = s["predicted_s_per_problem"] / s["wall_s_per_problem"]
        worst = max(worst, abs(ratio - 1))
        lines.append(f"| {s['config']} | {s['wall_s_per_problem']:.1f} | {s['predicted_s_per_problem']:.1f} | {ratio:.3f} |")
    lines += ["", f"largest error: {worst:.1%} (target <= 10%)"]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
