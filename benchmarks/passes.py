"""Where the time of a batched run goes (#28): the batched passes themselves,
or the gaps between them while the lanes' Python samples, detokenizes and
routes under one GIL.

    python benchmarks/passes.py --route small --parallel 16 --limit 16 [--data train]

Solves `--limit` problems of `--data` at `--parallel` and traces every
`llama_decode` the scheduler makes: its width (sequences and tokens), its
duration, and the gap since the previous pass ended. It prints the share of
the wall time spent inside passes, a width histogram, and the tokens per
second the passes reach against the whole run's. Nothing here changes what
steer does; it wraps two methods for the length of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable


def trace(args: argparse.Namespace) -> dict:
    from steer_cli import batching, datasets
    from steer_cli.routes import Route
    from steer_cli.session import Options, Session

    import llama_cpp

    passes: list[dict] = []
    plain_pass, plain_decode = batching.Core._pass, llama_cpp.llama_decode
    in_decode = [0.0]

    def timed_decode(ctx, batch):  # noqa: ANN001, ANN202 (ctypes handles)
        started = time.perf_counter()
        try:
            return plain_decode(ctx, batch)
        finally:
            in_decode[0] += time.perf_counter() - started

    def traced(core: batching.Core, taken: list) -> None:
        if not taken:
            return
        width, tokens = len({r.seq for r, _ in taken}), len(taken)
        depth = max(r.pos + len(r.tokens) for r, _ in taken)
        started = time.perf_counter()
        plain_pass(core, taken)
        passes.append({"model": core.engine.name, "seqs": width, "tokens": tokens, "depth": depth, "start": started, "end": time.perf_counter()})

    batching.Core._pass = traced  # type: ignore[method-assign]
    llama_cpp.llama_decode = timed_decode
    session = Session.from_options(Options(parallel=args.parallel, **({"threads": args.threads} if args.threads else {})), measure=False)
    items = datasets.problems(args.data, args.limit, need_gold=True)
    route = session.route(Route(args.route))
    started = time.perf_counter()
    for _ in session.solve_many(route, items, lambda item: item.question):
        pass
    wall = time.perf_counter() - started
    batching.Core._pass, llama_cpp.llama_decode = plain_pass, plain_decode  # type: ignore[method-assign]
    return {**summary(passes, wall, args), "llama_decode_share_of_pass_time": round(in_decode[0] / max(sum(p["end"] - p["start"] for p in passes), 1e-9), 3)}


def summary(passes: list[dict], wall: float, args: argparse.Namespace) -> dict:
    inside = sum(p["end"] - p["start"] for p in passes)
    gaps = [b["start"] - a["end"] for a, b in zip(passes, passes[1:])]
    decode = [p for p in passes if p["tokens"] == p["seqs"]]  # one new token per sequence: a decode pass
    widths = Counter(p["seqs"] for p in decode)
    tokens = sum(p["tokens"] for p in passes)
    return {
        "route": args.route, "parallel": args.parallel, "problems": args.limit, "wall_s": round(wall, 1),
        "passes": len(passes), "inside_passes_share": round(inside / wall, 3),
        "gap_median_ms": round(1000 * sorted(gaps)[len(gaps) // 2], 1) if gaps else None,
        "gap_total_s": round(sum(gaps), 1),
        "decode_passes": len(decode), "decode_width_histogram": dict(sorted(widths.items())),
        "decode_mean_width": round(sum(p["seqs"] for p in decode) / max(len(decode), 1), 2),
        "decode_tok_s_inside": round(sum(p["tokens"] for p in decode) / max(sum(p["end"] - p["start"] for p in decode), 1e-9), 1),
        "all_tok_s_wall": round(tokens / wall, 1),
        "decode_ms_by_width": by(decode, lambda p: p["seqs"]),
        "decode_ms_by_depth": by(decode, lambda p: 256 * (p["depth"] // 256)),
        # Full-width passes by the quarter of the run they start in: a cost that grows at the same width is the shared cache filling.
        "full_width_ms_by_quarter": by([p for p in decode if p["seqs"] == args.parallel], lambda p: quarter(p, passes)),
        "mixed_passes": len(passes) - len(decode),
        "mixed_share_of_pass_time": round(sum(p["end"] - p["start"] for p in passes if p["tokens"] != p["seqs"]) / max(inside, 1e-9), 3),
    }


def quarter(p: dict, passes: list[dict]) -> int:
    first, last = passes[0]["start"], passes[-1]["end"]
    return min(3, int(4 * (p["start"] - first) / max(last - first, 1e-9)))


def by(passes: list[dict], key: Callable[[dict], int]) -> dict[int, dict]:
    """Passes grouped by `key`: how many, and their median milliseconds."""
    groups: dict[int, list[float]] = {}
    for p in passes:
        groups.setdefault(key(p), []).append(1000 * (p["end"] - p["start"]))
    return {k: {"passes": len(v), "median_ms": round(sorted(v)[len(v) // 2], 1)} for k, v in sorted(groups.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--route", default="small")
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--data", default="train")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--read-alone", type=int, default=None, help="batching.READ_ALONE for the run (a large value mixes every read with decodes, as before 2026-12-07)")
    ap.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval for the run (seconds; Python's default is 0.005)")
    args = ap.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    from steer_cli import batching

    if args.read_alone is not None:
        batching.READ_ALONE = args.read_alone
    print(json.dumps({**trace(args), "switch_interval_s": sys.getswitchinterval(), "read_alone": batching.READ_ALONE}, indent=1))


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
