"""N concurrent requests to `steer serve`: how much sooner they all finish
with `--parallel N` than with one lane (requests queued one after another).

One run, side by side: the same N problems, sent at once by N client threads
with the `openai` client, to a server started with `--parallel 1` and then to
one started with `--parallel N` (nothing else running). Reported: the time
until the last answer (makespan), the mean latency, and how many solution texts match.

    python benchmarks/serve_concurrency.py --route small --requests 8 --out docs/serve-concurrency.json
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(parallel: int, extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "steer_cli", "serve", "--port", str(port), "--parallel", str(parallel), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"steer serve --parallel {parallel} did not come up: {proc.stderr.read()[-400:] if proc.stderr else ''}")


def _burst(base: str, route: str, questions: list[str]) -> dict:
    """Every question at once, one thread each; the answers and the timings."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=3600)
    answers: list[str | None] = [None] * len(questions)
    latency = [0.0] * len(questions)
    started = time.perf_counter()

    def ask(i: int) -> None:
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model=route, messages=[{"role": "user", "content": questions[i]}], temperature=0)
        answers[i] = reply.choices[0].message.content
        latency[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"makespan_s": round(time.perf_counter() - started, 1), "mean_latency_s": round(sum(latency) / len(latency), 1), "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--route", default="small")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args, extra = parser.parse_known_args()
    from steer_cli import datasets

    questions = [item.question for item in datasets.problems("dev", args.requests)]
    rows = {}
    for parallel in (1, args.requests):
        proc, base = _serve(parallel, extra)
        try:
            _burst(base, args.route, questions[:1])  # warm: the weights are loaded and the first pass is made
            rows[parallel] = _burst(base, args.route, questions)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    one, many = rows[1], rows[args.requests]
    same = sum(a == b for a, b in zip(one["answers"], many["answers"], strict=True))  # whole solution texts
    result = {"route": args.route, "requests": args.requests, "one_lane": {k: v for k, v in one.items() if k != "answers"},
              "parallel": {k: v for k, v in many.items() if k != "answers"}, "speedup": round(one["makespan_s"] / many["makespan_s"], 2),
              "texts_same": f"{same}/{args.requests}"}
    print(f"| --parallel | makespan s | mean latency s |\n|---|---|---|\n| 1 | {one['makespan_s']} | {one['mean_latency_s']} |\n"
          f"| {args.requests} | {many['makespan_s']} | {many['mean_latency_s']} |\n\n{args.requests} concurrent requests ({args.route}): "
          f"{result['speedup']}x sooner with --parallel {args.requests}; solution texts the same: {result['texts_same']}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
