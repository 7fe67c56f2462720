"""What batching can give a route at most on this machine (#28): Amdahl's
law over the route's own tokens.

    python benchmarks/ceiling.py --work benchmarks/throughput/work-steer-p1 --pass-cost small.json large.json [--lanes 16] [--full]

Reads the per-model token counts of a sequential run's records (a
throughput.py N=1 work directory) and prices them with this machine's
profile (steer bench): prefill, scoring and decoding as sequential steer
does them. Under --parallel only the decoding can get faster, up to the
gain a decode pass of W sequences shows in `benchmarks/pass_cost.py`'s
output over a lone one; prefills and scoring passes are many tokens wide
already. A two-model route's lanes split between its models: each model's
decode passes are taken as wide as its share of the decoded tokens of
--lanes (with --full, every pass --lanes wide). It prints the predicted
sequential seconds, the seconds with those decode gains, and their ratio,
the ceiling.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def gain(pass_cost: dict, width: int) -> float:
    """Tokens per second of a width-W decode pass over a lone one, with 16 sequences held
    (a width pass_cost.py did not time: its milliseconds between the neighbours')."""
    timed = {int(k.rsplit(" ", 1)[1]): v["ms"] for k, v in pass_cost.items() if k.startswith("16 held: decode width")}
    below, above = max(w for w in timed if w <= width), min(w for w in timed if w >= width)
    ms = timed[below] if below == above else timed[below] + (timed[above] - timed[below]) * (width - below) / (above - below)
    return width / ms * timed[1]


def main() -> None:
    from steer_cli import profile as profiles
    from steer_cli.engine import LoadOptions
    from steer_cli.tiers import build_tiers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pass-cost", type=Path, nargs="+", required=True, help="pass_cost.py outputs, one per model")
    ap.add_argument("--lanes", type=int, default=16)
    ap.add_argument("--full", action="store_true", help="every decode pass --lanes wide, whatever the route")
    args = ap.parse_args()
    costs = {c["model"]: c for c in (json.loads(p.read_text()) for p in args.pass_cost)}
    found = profiles.for_engines(build_tiers(options=LoadOptions()), [], measure_missing=False)
    totals: dict[str, list[int]] = {}
    for path in args.work.glob("*-*.jsonl"):
        for line in path.read_text().splitlines():
            for m in json.loads(line)["cost"]["models"]:
                t = totals.setdefault(m["name"], [0, 0, 0])
                t[0], t[1], t[2] = t[0] + m["prefill_tokens"], t[1] + m["decoded_tokens"], t[2] + m.get("scored_tokens", 0)
    totals = {name: t for name, t in totals.items() if t[0] or t[1]}
    decoded_all = sum(t[1] for t in totals.values())
    report: dict[str, Any] = {"work": str(args.work)}
    before = after = 0.0
    for name, (prefill, decoded, scored) in totals.items():
        width = args.lanes if args.full else max(1, round(args.lanes * decoded / decoded_all))
        p = found[name]
        read, decode = p.seconds(prefill, 0, scored), p.seconds(0, decoded)
        speedup = gain(costs[name], width)
        before += read + decode
        after += read + decode / speedup
        report[name] = {"prefill": prefill, "scored": scored, "decoded": decoded, "read_s": round(read, 1),
                        "decode_s": round(decode, 1), "width": width, "decode_gain": round(speedup, 2)}
    report.update(sequential_s=round(before, 1), batched_s=round(after, 1), ceiling=round(before / after, 2))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
