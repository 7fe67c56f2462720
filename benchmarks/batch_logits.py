"""Are a sequence's logits the same alone and inside a batched pass? (#28, item 5)

    python benchmarks/batch_logits.py [--model small] [--tokens 64] [--widths 1,2,4,8,16]

Lane 0 holds the first dev problem's prompt; lanes 1.. hold the next ones.
Each prompt is prefilled on its own, so every lane's KV is the same at every
width. Then, for `--tokens` steps, one `llama_decode` carries one token for
each of W lanes, lane 0 always fed the tokens a lone greedy run chose
(teacher forcing, so each step compares logits at the same context). Each
width runs in a fresh context of the shape steer's Core makes (one unified
cache, 16 sequences). It prints, per width, how far lane 0's logits move from
the lone run's, and at how many steps the greedy choice itself changes: the
mechanism behind answers that differ under `--parallel`. Width 1 is run
twice, to show that a lone run repeats itself bit for bit, and once more
with every lane's prompt in the cache, to part the cache's contents from
the width of the pass.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

LANES = 16


FLASH = {"auto": -1, "off": 0, "on": 1}  # llama_flash_attn_type


def _context(model: Any, n_ctx: int, threads: int, flash: str) -> Any:
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.flash_attn_type = FLASH[flash]
    params.n_ctx, params.n_batch, params.n_ubatch = n_ctx * LANES, 512, 512
    params.n_seq_max, params.kv_unified = LANES, True
    params.n_threads = params.n_threads_batch = threads
    return llama_cpp.llama_init_from_model(model, params)


def _decode(ctx: Any, batch: Any, entries: list[tuple[int, int, int, bool]]) -> None:
    """One pass: (token, position, sequence, wants logits) for each entry."""
    import llama_cpp

    batch.n_tokens = 0
    for token, pos, seq, row in entries:
        j = batch.n_tokens
        batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = token, pos, 1, row
        batch.seq_id[j][0] = seq
        batch.n_tokens += 1
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise SystemExit("llama_decode failed")


def _row(ctx: Any, j: int, n_vocab: int) -> np.ndarray:
    import llama_cpp

    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, j), shape=(n_vocab,)).copy()


def run(model: Any, prompts: list[list[int]], width: int, forced: list[int] | None, args: argparse.Namespace, n_vocab: int, threads: int,
        held: int = 0) -> tuple[list[int], list[np.ndarray]]:
    """Lane 0's greedy tokens (or the forced ones) and its logits at every step, with `width` lanes per pass
    (and `held` lanes' prompts in the cache, decoded or not)."""
    import llama_cpp

    ctx, batch = _context(model, 2048, threads, args.flash), llama_cpp.llama_batch_init(512, 0, 1)
    try:
        last: list[int] = []
        for seq, prompt in enumerate(prompts[: max(width, held)]):
            _decode(ctx, batch, [(t, i, seq, i == len(prompt) - 1) for i, t in enumerate(prompt)])
            last.append(int(np.argmax(_row(ctx, len(prompt) - 1, n_vocab))))
        rows: list[np.ndarray] = []
        chosen: list[int] = []
        for step in range(args.tokens):
            token0 = forced[step] if forced is not None else last[0]
            chosen.append(token0)
            feed = [token0] + last[1:]
            _decode(ctx, batch, [(feed[s], len(prompts[s]) + step, s, True) for s in range(width)])
            logits = [_row(ctx, s, n_vocab) for s in range(width)]
            rows.append(logits[0])
            last = [int(np.argmax(x)) for x in logits]
        return chosen, rows
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)


def compare(lone: list[np.ndarray], other: list[np.ndarray]) -> dict:
    diffs = [float(np.max(np.abs(a - b))) for a, b in zip(lone, other)]
    flips = sum(int(np.argmax(a) != np.argmax(b)) for a, b in zip(lone, other))
    margins = [float(np.diff(np.sort(a)[-2:])[0]) for a in lone]
    return {
        "bit_identical_steps": sum(d == 0.0 for d in diffs), "steps": len(diffs),
        "max_abs_logit_diff": round(max(diffs), 5), "median_abs_logit_diff": round(float(np.median(diffs)), 5),
        "greedy_choice_changed": flips,
        "steps_with_top2_margin_below_the_diff": sum(m < d for m, d in zip(margins, diffs)),
    }


def main() -> None:
    from steer_cli import datasets
    from steer_cli.engine import LoadOptions, physical_cores
    from steer_cli.tiers import build_tiers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["small", "large"], default="small")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--widths", default="1,2,4,8,16")
    ap.add_argument("--flash", choices=sorted(FLASH), default="auto", help="flash attention in every context (steer's lone engine runs it off)")
    args = ap.parse_args()
    threads = physical_cores()
    engine = build_tiers(options=LoadOptions(n_threads=threads))[0 if args.model == "small" else -1]
    engine._ensure_weights()
    model, n_vocab = engine.model.llm._model.model, engine.model.n_vocab
    prompts = [engine.render_prompt(item.question) for item in datasets.problems("dev", LANES, need_gold=True)]
    forced, lone = run(model, prompts, 1, None, args, n_vocab, threads)
    report: dict[str, Any] = {"model": engine.name, "flash_attn": args.flash, "tokens": args.tokens, "threads": threads}
    _, again = run(model, prompts, 1, forced, args, n_vocab, threads)
    report["width 1, again"] = compare(lone, again)
    _, among = run(model, prompts, 1, forced, args, n_vocab, threads, held=LANES)
    report[f"width 1, {LANES} prompts in the cache"] = compare(lone, among)  # the cache's layout alone, the kernels as lone
    for width in (int(w) for w in args.widths.split(",")):
        if width > 1:
            _, rows = run(model, prompts, width, forced, args, n_vocab, threads)
            report[f"width {width}"] = compare(lone, rows)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
