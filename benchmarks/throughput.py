"""Problems per hour at `--parallel` 1, 4, 8, ...: one run, side by side.

Each (route, N) pair is one `steer eval` process over the first K dev
problems with a work directory of its own (no record reused), timed from
outside and measured for peak RSS (wait4). Answers and step texts under
batching are compared with the N=1 run of the same route. Resumable: a pair
already in --out's runs.jsonl is not run again, so a long measurement can
span sessions (ship runs.jsonl and the record directories, compressed).

    python benchmarks/throughput.py --routes small,large,steer,trim:verify --parallel 1,4,8,16 --limit 32 --out benchmarks/throughput
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def run_one(route: str, n: int, limit: int, work: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "steer_cli", "eval", "--routers", route, "--data", "dev", "--limit", str(limit), "--parallel", str(n),
           "--work", str(work), "--json", "-q", *extra]
    work.mkdir(parents=True, exist_ok=True)
    out_path, err_path = work / "eval.stdout", work / "eval.stderr"
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{route} at --parallel {n} failed: {err_path.read_text()[-400:]}")
    summary = json.loads(out_path.read_text())[0]
    return {"route": route, "parallel": n, "problems": limit, "wall_s": round(wall, 1), "per_hour": round(3600 * limit / wall, 1),
            "accuracy": summary["accuracy"], "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "work": str(work)}


def solutions(work: Path) -> dict[str, tuple]:
    found = {}
    for path in work.glob("*-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[record["key"]] = (record.get("answer"), tuple(s["text"] for s in record["steps"]), record.get("correct"))
    return found


def compare(base: dict, other: dict) -> dict:
    keys = sorted(set(base) & set(other))
    same_answer = sum(base[k][0] == other[k][0] for k in keys)
    same_text = sum(base[k][1] == other[k][1] for k in keys)
    return {"same_answer": same_answer, "same_text": same_text, "compared": len(keys),
            "correct_delta": sum(bool(other[k][2]) - bool(base[k][2]) for k in keys)}


def table(rows: list[dict]) -> str:
    lines = ["| route | N | problems/h | x vs N=1 | peak RSS MiB | accuracy | same answer | same text |", "|---|---|---|---|---|---|---|---|"]
    base = {r["route"]: r for r in rows if r["parallel"] == 1}
    for r in rows:
        one = base.get(r["route"])
        speedup = f"{r['per_hour'] / one['per_hour']:.2f}" if one else "-"
        same = r.get("vs_sequential") or {}
        answer = f"{same['same_answer']}/{same['compared']}" if same else "-"
        text = f"{same['same_text']}/{same['compared']}" if same else "-"
        lines.append(f"| {r['route']} | {r['parallel']} | {r['per_hour']} | {speedup} | {r['peak_rss_mib']} | {r['accuracy']:.1%} | {answer} | {text} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", default="small,large,steer,trim:verify")
    ap.add_argument("--parallel", default="1,4,8,16")
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/throughput"))
    ap.add_argument("extra", nargs="*", help="more eval options after --, e.g. -- --max-steps 8")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["route"], r["parallel"], r["problems"]) for r in rows}
    for n in sorted(int(x) for x in args.parallel.split(",")):
        for route in args.routes.split(","):
            if (route, n, args.limit) in done:
                continue
            work = args.out / f"work-{route.replace(':', '_')}-p{n}"
            row = run_one(route, n, args.limit, work, args.extra)
            one = next((r for r in rows if r["route"] == route and r["parallel"] == 1 and r["problems"] == args.limit), None)
            if one is not None and n > 1:
                # by name within --out: a runs.jsonl shipped and unpacked elsewhere still finds its N=1 run
                row["vs_sequential"] = compare(solutions(args.out / Path(one["work"]).name), solutions(work))
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table([r for r in rows if r["problems"] == args.limit]))


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
