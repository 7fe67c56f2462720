"""What one batched pass costs by its shape (#28): decode width, prefill
chunk, and what else the shared cache holds.

    python benchmarks/pass_cost.py [--model small|large] [--depth 600] [--flash auto|on|off]

One context of the shape steer's Core makes (one unified cache, 16
sequences of n_ctx each). Every sequence holds `--depth` tokens of a train
prompt (repeated). Each shape is timed as the median of `--reps` passes,
each pass undone afterwards (its cells removed), so the cache is the same
for every repetition. It prints milliseconds and tokens per second: how far
a wide decode pass is from a prefill's rate (what batching can give at most
to a route whose tokens are part prefill), and what a prefill costs inside
one pass with other lanes' decodes against in a pass of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from batch_logits import FLASH, LANES, _context, _decode

CHUNK = 256  # prompt tokens per setup pass


def main() -> None:
    import llama_cpp

    from steer_cli import datasets
    from steer_cli.engine import LoadOptions, physical_cores
    from steer_cli.tiers import build_tiers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["small", "large"], default="small")
    ap.add_argument("--depth", type=int, default=600, help="tokens each sequence holds before the timed pass")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--flash", choices=sorted(FLASH), default="auto")
    args = ap.parse_args()
    threads = physical_cores()
    engine = build_tiers(options=LoadOptions(n_threads=threads))[0 if args.model == "small" else -1]
    engine._ensure_weights()
    prompts = [engine.render_prompt(item.question) for item in datasets.problems("train", LANES, need_gold=True)]
    texts = [(p * (args.depth // len(p) + 1))[: args.depth] for p in prompts]
    ctx = _context(engine.model.llm._model.model, engine.options.n_ctx, threads, args.flash)
    batch, memory = llama_cpp.llama_batch_init(512, 0, 1), llama_cpp.llama_get_memory(ctx)
    at = args.depth

    def fill(seq: int) -> None:
        for i in range(0, at, CHUNK):
            _decode(ctx, batch, [(t, i + k, seq, False) for k, t in enumerate(texts[seq][i : i + CHUNK])])

    def ms(*passes: list[tuple[int, int, int, bool]]) -> dict[str, float]:
        """The median time of these passes, one llama_decode each, run back to back."""
        times = []
        for _ in range(args.reps + 1):  # the first is a warm-up
            started = time.perf_counter()
            for entries in passes:
                _decode(ctx, batch, entries)
            times.append(time.perf_counter() - started)
            for seq in {e[2] for entries in passes for e in entries}:
                llama_cpp.llama_memory_seq_rm(memory, seq, at, -1)
        median = statistics.median(times[1:])
        return {"ms": round(median * 1000, 1), "tok_s": round(sum(map(len, passes)) / median, 1)}

    def decode(width: int) -> list[tuple[int, int, int, bool]]:
        return [(texts[s][0], at, s, True) for s in range(width)]

    def prefill(chunk: int) -> list[tuple[int, int, int, bool]]:
        return [(t, at + k, 0, k == chunk - 1) for k, t in enumerate(texts[1][:chunk])]

    report: dict[str, Any] = {"model": engine.name, "flash_attn": args.flash, "depth": at, "threads": threads}
    fill(0)
    report["one sequence held: decode 1"] = ms(decode(1))
    for chunk in (16, 64, 256):
        report[f"one sequence held: prefill {chunk}"] = ms(prefill(chunk))
    for seq in range(1, LANES):
        fill(seq)
    for width in (1, 2, 4, 8, 16):
        report[f"{LANES} held: decode width {width}"] = ms(decode(width))
    for chunk in (16, 64, 256):
        report[f"{LANES} held: prefill {chunk}"] = ms(prefill(chunk))
    for chunk in (16, 32, 64, 256):  # one lane's prompt or catch-up read beside other lanes' next tokens
        for width in (1, 4, 15):
            others = decode(width + 1)[1:]
            report[f"{LANES} held: prefill {chunk} + decode {width}, one pass"] = ms(prefill(chunk) + others)
            report[f"{LANES} held: prefill {chunk} + decode {width}, two passes"] = ms(prefill(chunk), others)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
