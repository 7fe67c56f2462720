"""Engine figures, measured side by side in one run.

1. Decode speed: steer's engine (small model only) against a plain
   llama-cpp-python `generate` loop on the same model, prompt and threads.
   Same greedy tokens; target ratio >= 0.95.
2. Waste: evaluated / needed tokens per model on a routed STEER run
   (target <= 1.02: every token evaluated once).
3. Memory: peak RSS of the routed run against the model files' sizes.
4. TRIM's verify scorer: the large model scoring a drafted step (log-probs
   for every row) against plain prefill of the same tokens (logits for the
   last row only) and against decoding it. Target: scoring/prefill >= 0.70.
5. Memory target: peak RSS <= model files + KV caches + 300 MiB.
6. P(IK)'s embedding pass on the small model: peak RSS and time of steer's
   context on the generation handle's weights against a second load of the
   file in embeddings mode (what steer did before).

    python benchmarks/engine.py [--tokens 128] [--problems 3] [--only pik]

Each phase runs in its own process so one model's pages do not count in
another phase's RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PROMPT = "Write a detailed, step-by-step explanation of how to compute 17 * 23 by hand, then check it."


def _decode_steer(path: str, n: int, threads: int) -> dict:
    from steer_cli.engine import LlamaEngine, LoadOptions

    engine = LlamaEngine("small", path, LoadOptions(n_threads=threads))
    engine.start(PROMPT)
    engine.next_token()  # prefill outside the timed region
    started, count = time.perf_counter(), 0
    while count < n and not engine.sample().eog:
        count += 1
    return {"tokens": count, "seconds": time.perf_counter() - started}


def _decode_plain(path: str, n: int, threads: int) -> dict:
    from llama_cpp import Llama

    from steer_cli.engine import LlamaEngine

    tokens = LlamaEngine("small", path).render_prompt(PROMPT)  # identical prompt tokens
    llm = Llama(path, n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    gen = llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0)
    first = next(gen)  # prefill + first token outside the timed region
    started, count = time.perf_counter(), 0
    eos = llm.token_eos()
    if first != eos:
        for tok in gen:
            if tok == eos or llama_is_eog(llm, tok) or count >= n:
                break
            count += 1
    return {"tokens": count, "seconds": time.perf_counter() - started}


def llama_is_eog(llm, tok: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, tok))


def _verify(path: str, n: int, threads: int) -> dict:
    """Decode n tokens with one engine, then time a second engine scoring that text."""
    from steer_cli.engine import LlamaEngine, LoadOptions

    writer = LlamaEngine("large", path, LoadOptions(n_threads=threads))
    writer.start(PROMPT)
    writer.next_token()
    started, pieces = time.perf_counter(), []
    while len(pieces) < n:
        token = writer.sample()
        if token.eog:
            break
        pieces.append(token.piece)
    decode_s = time.perf_counter() - started
    text = b"".join(pieces).decode("utf-8", "replace")
    scorer = LlamaEngine("large", path, LoadOptions(n_threads=threads))
    scorer.start(PROMPT)
    scorer.next_token()
    base = scorer.mark()
    prefill_s, score_s = [], []
    for _ in range(3):  # alternated, best of three: the same tokens read both ways
        scorer.append_text(text)
        started = time.perf_counter()
        scorer.next_token()  # plain prefill: logits for the last row only
        prefill_s.append(time.perf_counter() - started)
        scorer.rewind(base)
        started = time.perf_counter()
        scored = scorer.score_text(text)  # TRIM verify: log-probs for every row
        score_s.append(time.perf_counter() - started)
        scorer.rewind(base)
    return {"tokens": len(pieces), "scored": len(scored), "decode_s": decode_s, "score_s": min(score_s), "prefill_s": min(prefill_s)}


QUESTION = "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. How many are left to sell?"


def _pik(path: str, how: str, threads: int) -> dict:
    """Peak RSS after one generation step, then after embedding the question
    `shared` (steer's way) or in a `separate` load; the second pass is timed."""
    import numpy as np

    from steer_cli.engine import LlamaEngine, LoadOptions

    engine = LlamaEngine("small", path, LoadOptions(n_threads=threads))
    engine.start(QUESTION)
    engine.next_token()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if how == "shared":
        embed = engine.embed_prompt
    else:
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE, n_ctx=4096,
                              n_batch=4096, n_ubatch=4096, n_threads=threads, n_threads_batch=threads, verbose=False)

        def embed(question: str) -> np.ndarray:
            tokens = engine.render_prompt(question)
            llm._ctx.kv_cache_clear()
            llm._batch.set_batch(batch=tokens, n_past=0, logits_all=True)
            llm._ctx.decode(llm._batch)
            return np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(llm._ctx.ctx), shape=(len(tokens), llm.n_embd())).copy()
    embed(QUESTION)
    started = time.perf_counter()
    embed(QUESTION)
    return {"rss_before": before, "rss_after": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "embed_s": time.perf_counter() - started}


def _pik_report(path: str, threads: int) -> str:
    lines = ["P(IK) embedding pass, small model:"]
    for how, what in (("shared", "a context on the generation handle's weights (steer)"), ("separate", "a second load of the file (before)")):
        r = _phase(["pik", path, how, str(threads)])
        lines.append(f"  {what}: peak RSS {r['rss_before'] / 2**20:.0f} -> {r['rss_after'] / 2**20:.0f} MiB, {r['embed_s'] * 1000:.0f} ms per question")
    return "\n".join(lines)


def _routed(problems: int, threshold: float) -> dict:
    from steer_cli.datasets import load
    from steer_cli.routes import Route
    from steer_cli.session import Session
    from steer_cli.solver import Solved
    from steer_cli.tiers import build_tiers

    tiers = build_tiers()
    solver = Session.of(tiers).solver(Route("steer", threshold))
    large_steps = steps = 0
    for item in load("train", problems):
        result = next(e.result for e in solver.solve(item.question) if isinstance(e, Solved))
        steps += len(result.steps)
        large_steps += sum(s.tier == 1 for s in result.steps)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "models": [{"name": t.name, "file_bytes": t.path.stat().st_size, "kv_bytes": kv_bytes(t), **vars(t.stats)} for t in tiers],
        "peak_rss": rss,
        "steps": steps,
        "large_steps": large_steps,
    }


def kv_bytes(engine) -> int:
    """The f16 KV cache llama.cpp allocates: layers x context x KV heads x head size x (K, V) x 2 bytes."""
    from gguf import GGUFReader

    reader = GGUFReader(str(engine.path))

    def field(name: str) -> int:
        f = reader.fields[name]
        return int(f.parts[f.data[0]][0])

    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    heads = field(f"{arch}.attention.head_count")
    kv_heads = field(f"{arch}.attention.head_count_kv") if f"{arch}.attention.head_count_kv" in reader.fields else heads
    head_dim = field(f"{arch}.attention.key_length") if f"{arch}.attention.key_length" in reader.fields else field(f"{arch}.embedding_length") // heads
    return field(f"{arch}.block_count") * engine.options.n_ctx * kv_heads * head_dim * 2 * 2


def _phase(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--problems", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--phase", nargs="*")
    ap.add_argument("--only", choices=["pik"], help="run one phase only")
    args = ap.parse_args()
    if args.phase:
        kind, *rest = args.phase
        if kind == "pik":
            result = _pik(rest[0], rest[1], int(rest[2]))
        else:
            fn = {"steer": _decode_steer, "plain": _decode_plain, "verify": _verify}.get(kind)
            result = fn(rest[0], int(rest[1]), int(rest[2])) if fn else _routed(int(rest[0]), float(rest[1]))
        print(json.dumps(result))
        return

    from steer_cli.engine import physical_cores
    from steer_cli.tiers import build_tiers

    small_path = str(build_tiers()[0].path)
    threads = physical_cores()
    if args.only == "pik":
        print(_pik_report(small_path, threads))
        return
    rates: dict[str, list[float]] = {"steer": [], "plain": []}
    for _ in range(args.reps):  # interleaved so drift hits both alike
        for kind in ("plain", "steer"):
            r = _phase([kind, small_path, str(args.tokens), str(threads)])
            rates[kind].append(r["tokens"] / r["seconds"])
    best = {k: max(v) for k, v in rates.items()}
    print(f"decode, small model, {threads} threads, {args.tokens} tokens, best of {args.reps}:")
    print(f"  plain llama-cpp-python generate: {best['plain']:6.1f} tok/s   (runs: {', '.join(f'{x:.1f}' for x in rates['plain'])})")
    print(f"  steer engine:                    {best['steer']:6.1f} tok/s   (runs: {', '.join(f'{x:.1f}' for x in rates['steer'])})")
    print(f"  ratio steer/plain: {best['steer'] / best['plain']:.3f}   (target >= 0.95)")

    large_path = str(build_tiers()[-1].path)
    v = _phase(["verify", large_path, "64", str(threads)])
    print(f"TRIM verify, large model: decoding a {v['tokens']}-token step {v['decode_s'] * 1000:.0f} ms,"
          f" plain prefill of it {v['prefill_s'] * 1000:.0f} ms, scoring it (log-probs for every row) {v['score_s'] * 1000:.0f} ms")
    print(f"scoring/prefill ratio: {v['prefill_s'] / v['score_s']:.2f}   (scoring throughput / plain prefill throughput; target >= 0.70)")

    routed = _routed_report(args.problems, args.threshold)
    print(routed)
    print(_pik_report(small_path, threads))


def _routed_report(problems: int, threshold: float) -> str:
    r = _phase(["routed", str(problems), str(threshold)])
    lines = [f"routed STEER run, {problems} GSM8K train problems, threshold {threshold}: {r['steps']} steps, {r['large_steps']} on the large model"]
    total_file = 0
    for m in r["models"]:
        ratio = m["evaluated_tokens"] / m["needed_tokens"] if m["needed_tokens"] else float("nan")
        total_file += m["file_bytes"]
        lines.append(
            f"  {m['name']}: evaluated {m['evaluated_tokens']} / needed {m['needed_tokens']} = {ratio:.3f} (target <= 1.02);"
            f" prefill {m['prefill_tokens']}, decoded {m['decoded_tokens']}, reused {m['reused_tokens']}, {m['wall_s']:.1f}s"
        )
    kv = sum(m["kv_bytes"] for m in r["models"])
    allowed = total_file + kv + 300 * 2**20
    lines.append(f"  peak RSS {r['peak_rss'] / 2**20:.0f} MiB vs model files {total_file / 2**20:.0f} MiB (ratio {r['peak_rss'] / total_file:.2f})")
    lines.append(f"  RSS target: files + KV caches ({kv / 2**20:.0f} MiB) + 300 MiB = {allowed / 2**20:.0f} MiB: {'met' if r['peak_rss'] <= allowed else 'NOT met'}")
    return "\n".join(lines)


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
