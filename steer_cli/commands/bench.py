"""`steer bench`: measure what each model costs in time on this machine."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


def bench(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models (models.yaml names or .gguf paths); default: the default tier set.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even where a stored profile exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON lines.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
    parallel: Annotated[int, typer.Option("--parallel", help="Also measure how many times sooner N problems finish at once (--parallel N) than one after another; kept in the profile, so estimates of duration under --parallel N use it.")] = 1,
) -> None:
    """Prefill, decode and scoring speed per model with these threads and GPU layers: printed (JSON lines with --json) and stored under STEER_HOME/profiles for --cost-unit time. About 30 s a model on 2 cores (--parallel N: about a minute more); a stored profile is reused at once."""
    from steer_cli import datasets, profile
    from steer_cli.engine import LoadOptions
    from steer_cli.output import Output
    from steer_cli.session import Options, checked_registry
    from steer_cli.batching import MAX_PARALLEL
    from steer_cli.tiers import build_tiers

    common.within("--parallel", parallel, 1, MAX_PARALLEL, example="4")  # before any model is looked up
    registry = checked_registry(Options(config=config, cache_dir=cache_dir, threads=threads, gpu_layers=gpu_layers))
    options = LoadOptions(n_threads=threads, n_gpu_layers=gpu_layers)
    out = Output(as_json, quiet)
    engines = []
    for name in models or registry.tier_names(None):
        engines += build_tiers(small=name, large=name, registry=registry, cache=cache_dir, options=options)[:1]
    problems = [i.question for i in datasets.load("train", 4)]
    found = profile.for_engines(engines, problems, refresh=refresh, say=lambda line: out.note(line.removeprefix("steer: ")), batch=parallel)
    for p in found.values():
        batched = "".join(f" · --parallel {n}: {x:.2f}x sooner" for n, x in sorted(p.batched.items(), key=lambda kv: int(kv[0])))
        out.result(asdict(p), f"{p.model}: prefill {p.prefill_tok_s:.1f} tok/s · decode {p.decode_tok_s:.1f} tok/s · scoring {p.score_tok_s:.1f} tok/s"
                   f" (scoring/prefill {p.score_tok_s / p.prefill_tok_s:.2f}) · load {p.load_s:.1f} s · {p.threads} threads, {p.gpu_layers} GPU layers, llama.cpp {p.llama_cpp}{batched}")
