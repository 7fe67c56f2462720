"""`steer bench`: measure what each model costs in time on this machine."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def bench(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models (models.yaml names or .gguf paths); default: the default tier set.")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even where a stored profile exists.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the profiles as JSON lines.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Prefill, decode and scoring speed per model with these threads and GPU layers; stored and reused by eval."""
    with boundary():
        from steer_cli import datasets, profile
        from steer_cli.engine import LoadOptions
        from steer_cli.session import build_tiers

        engine_args = common.EngineArgs(config=config, cache_dir=cache_dir, threads=threads, gpu_layers=gpu_layers)
        registry = engine_args.registry()
        options = LoadOptions(n_threads=threads, n_gpu_layers=gpu_layers)
        engines = []
        for name in models or registry.tier_names(None):
            engines += build_tiers(small=name, large=name, registry=registry, cache=cache_dir, options=options)[:1]
        problems = [i.question for i in datasets.load("train", 4)]
        say = (lambda line: None) if quiet else (lambda line: typer.echo(line, err=True))
        found = profile.for_engines(engines, problems, refresh=refresh, say=say)
        for p in found.values():
            if as_json:
                print(json.dumps(asdict(p)))
            else:
                print(f"{p.model}: prefill {p.prefill_tok_s:.1f} tok/s · decode {p.decode_tok_s:.1f} tok/s · scoring {p.score_tok_s:.1f} tok/s"
                      f" (scoring/prefill {p.score_tok_s / p.prefill_tok_s:.2f}) · load {p.load_s:.1f} s · {p.threads} threads, {p.gpu_layers} GPU layers, llama.cpp {p.llama_cpp}")
