"""What a model costs in time on this machine: a measured profile.

Prefill, decode and scoring (logits for every position, as TRIM verify asks)
throughput, measured through steer's own engine with the threads and GPU
layers given, stored in the user data dir keyed by the model's sha256, the
threads, the GPU layers and the llama.cpp build, and reused. A run's time is
then predicted from its token counts, which is what `--cost-unit time` would
budget and calibrate by.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from steer_cli.errors import SteerError
from steer_cli.registry import steer_home

CONTEXT_TOKENS = 400  # transcript read before decoding is timed
DECODE_TOKENS = 96
DRAFT = " Then we multiply the number of boxes by the number of pencils in each box, which gives the total number of pencils, and we subtract the ones that were given away."


@dataclass(frozen=True)
class Profile:
    model: str
    sha256: str
    threads: int
    gpu_layers: int
    llama_cpp: str
    prefill_tok_s: float
    decode_tok_s: float
    score_tok_s: float
    load_s: float
    # --parallel N -> how many times sooner N problems finish at once than one
    # after another (`steer bench --parallel N` measures it)
    batched: dict[str, float] = field(default_factory=dict)

    def speedup(self, n: int) -> float | None:
        return 1.0 if n == 1 else self.batched.get(str(n))

    def seconds(self, prefill: int, decoded: int, scored: int = 0) -> float:
        """Predicted seconds for this many tokens (scored ones are part of prefill in the counters)."""
        return (prefill - scored) / self.prefill_tok_s + scored / self.score_tok_s + decoded / self.decode_tok_s


def key(sha256: str, threads: int, gpu_layers: int) -> str:
    import llama_cpp

    return f"{sha256[:16]}-t{threads}-g{gpu_layers}-llama{llama_cpp.__version__}"


def path_for(profile_key: str) -> Path:
    return steer_home() / "profiles" / f"{profile_key}.json"


def load(profile_key: str) -> Profile | None:
    try:
        return Profile(**json.loads(path_for(profile_key).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(profile: Profile, profile_key: str) -> Path:
    target = path_for(profile_key)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(asdict(profile), indent=1) + "\n")
    tmp.replace(target)
    return target


SPREAD = 1.6  # fastest / slowest repeat of a rate above which a profile is too noisy to keep
STEADY_S = 0.25  # repeats shorter than this are timer noise, not load: not judged


def measure(engine, problems: list[str], reps: int = 3, tick=lambda: None) -> Profile:
    """Median rates over `reps` problems through steer's own step writer (its
    per-token work included, as in a real run); each rep reads a different
    problem so no prefix cache flatters prefill, and decodes a few hundred
    tokens into the transcript, where solutions decode (a best-of or a decode
    right after the prompt predicted GSM8K runs 11-13% fast). A noisy set of
    repeats (another job on the CPU) is measured once more, then refused."""
    import statistics

    import llama_cpp

    from steer_cli.engine import physical_cores

    engine.start(problems[0])
    engine.next_token()  # weights load here, outside the timed parts
    load_s = engine.stats.load_s
    rates = timed_rates(engine, problems[1 : reps + 1], tick)
    if noisy(rates):
        rates = timed_rates(engine, problems[1 : reps + 1], tick)
    why = noisy(rates)
    if why:
        raise SteerError(f"{engine.name} measured unsteadily ({why}): another job was likely using the CPU; no profile saved",
                         "run `steer bench` again when the machine is quiet, or pass --cost-unit decode")
    threads = engine.options.n_threads or physical_cores()
    median = statistics.median
    return Profile(engine.name, engine.identity, threads, engine.options.n_gpu_layers, llama_cpp.__version__,
                   round(median(rates["prefill"]), 2), round(median(rates["decode"]), 2), round(median(rates["score"]), 2), round(load_s, 3))


def noisy(rates: dict[str, list[float]]) -> str | None:
    """What makes a set of repeats too uneven to trust, or None (`seconds`
    holds how long each kind's repeats took)."""
    for kind, values in rates.items():
        if kind == "seconds" or min(rates["seconds"].get(kind, [0.0]), default=0.0) < STEADY_S:
            continue
        if len(values) > 1 and min(values) > 0 and max(values) / min(values) > SPREAD:
            return f"{kind} {min(values):.1f}-{max(values):.1f} tok/s across {len(values)} repeats"
    return None


def timed_rates(engine, problems: list[str], tick=lambda: None) -> dict:
    """Prefill, decode and scoring tokens per second, one of each per problem,
    and under "seconds" how long each took."""
    from steer_cli.solver import StepLimits, write_step

    limits = StepLimits(delimiter="", max_step_tokens=DECODE_TOKENS, stop_repetition=False)
    rates: dict = {"prefill": [], "decode": [], "score": [], "seconds": {"prefill": [], "decode": [], "score": []}}

    def timed(kind: str, tokens: int, started: float) -> None:
        seconds = time.perf_counter() - started
        rates[kind].append(tokens / seconds)
        rates["seconds"][kind].append(seconds)

    for text in problems:
        before, started = engine.stats.snapshot(), time.perf_counter()
        engine.start(text)
        engine.next_token()
        timed("prefill", engine.stats.since(before).evaluated_tokens, started)
        room = min(CONTEXT_TOKENS, engine.options.n_ctx // 4) // max(1, engine.count_tokens(DRAFT))
        engine.append_text(DRAFT * max(1, room))
        engine.next_token()
        started = time.perf_counter()
        writer, step = write_step(engine, 0, 0, None, limits, DECODE_TOKENS, DECODE_TOKENS), None
        while step is None:
            try:
                next(writer)
            except StopIteration as done:
                step = done.value
        timed("decode", max(step.tokens, 1), started)
        engine.next_token()  # the last sampled token's evaluation is decode work, outside the scoring time
        started = time.perf_counter()
        timed("score", len(engine.score_text(DRAFT)), started)
        tick()
    return rates

def batch_speedup(engine, problems: list[str], n: int) -> float:
    """How many times sooner `n` problems' first steps (prefill, then
    DECODE_TOKENS through steer's own step writer) finish in the lanes of
    --parallel n than one after another, on this engine's model."""
    from steer_cli.batching import lanes, solve_all
    from steer_cli.solver import StepLimits, write_step

    limits = StepLimits(delimiter="", max_step_tokens=DECODE_TOKENS, stop_repetition=False)
    texts = [problems[i % len(problems)] for i in range(n)]

    def first_step(lane, text: str) -> None:
        lane.start(text)
        for _ in write_step(lane, 0, 0, None, limits, DECODE_TOKENS, DECODE_TOKENS):
            pass

    sets, scheduler = lanes([engine], n)
    for warm in (engine, sets[0][0]):  # weights and contexts ready, on a text neither timing reads (no prompt cache to flatter it)
        first_step(warm, DRAFT)
    started = time.perf_counter()
    for text in texts:
        first_step(engine, text)
    one_by_one = time.perf_counter() - started
    started = time.perf_counter()
    list(solve_all([lambda text, lane=tiers[0]: first_step(lane, text) for tiers in sets], texts, scheduler))
    return round(one_by_one / (time.perf_counter() - started), 3)


def for_engines(engines: list, problems: list[str], refresh: bool = False, say=lambda line: None, measure_missing: bool = True,
                batch: int | None = None) -> dict[str, Profile]:
    """Each local engine's profile, measured once per machine setting and then
    reused; with `measure_missing` False only the stored ones; with `batch`,
    its speedup at --parallel `batch` too (measured once, kept in the profile)."""
    from steer_cli.engine import LlamaEngine, physical_cores
    from steer_cli.files import content_sha256

    found = {}
    for engine in engines:
        if not isinstance(engine, LlamaEngine):
            continue  # a remote tier's time is its measured latency
        k = key(content_sha256(engine.path), engine.options.n_threads or physical_cores(), engine.options.n_gpu_layers)
        profile = None if refresh else load(k)
        if profile is None and measure_missing:
            say(f"steer: measuring {engine.name} on this machine (once; `steer bench` shows it)")
            try:
                profile = measure(engine, problems)
            except SteerError as exc:  # e.g. a context too small for the probe: no prediction, never a failed run
                say(f"steer: could not profile {engine.name}: {exc}")
                continue
            save(profile, k)
        if profile is not None and batch is not None and batch > 1 and profile.speedup(batch) is None:
            say(f"steer: measuring {engine.name} at --parallel {batch} on this machine (once)")
            profile = replace(profile, batched={**profile.batched, str(batch): batch_speedup(engine, problems, batch)})
            save(profile, k)
        if profile is not None:
            found[engine.name] = profile
    return found


def predicted_seconds(record: dict, profiles: dict[str, Profile]) -> float | None:
    """A record's seconds as its token counts predict them, when every model has a profile."""
    total = 0.0
    for m in record["cost"]["models"]:
        if not (m["evaluated_tokens"] or m["decoded_tokens"]):
            continue
        profile = profiles.get(m["name"])
        if profile is None:
            return None
        total += profile.seconds(m["prefill_tokens"], m["decoded_tokens"], m.get("scored_tokens", 0))
    return total
