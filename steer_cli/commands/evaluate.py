"""`steer eval`: compare routers on problems with gold answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def evaluate(
    routers: Annotated[str, typer.Option("--routers", help="Comma-separated router[@threshold] list.")] = "small,large,steer",
    data: Annotated[str, typer.Option("--data", help="dev or train (the shipped GSM8K slices), or a JSONL file with gold answers.")] = "dev",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N problems.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write summary.json, summary.csv, summary.md and frontier.png here.")] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Per-configuration records (reused on rerun); default STEER_HOME/eval.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    signal: common.Signal = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    max_steps: common.MaxSteps = 24,
    max_step_tokens: common.MaxStepTokens = 256,
    delimiter: common.Delimiter = "\\n\\n",
    temperature: common.Temperature = 0.0,
    seed: common.Seed = 0,
    n_ctx: common.NCtx = None,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Run each router configuration over the problems; print accuracy (95% CI) and cost."""
    with boundary():
        from steer_cli import evaluate as ev
        from steer_cli import runs, ui
        from steer_cli.datasets import load_problems
        from steer_cli.engine import STEP_INSTRUCTION
        from steer_cli.registry import steer_home
        from steer_cli.solver import Solver

        configs = ev.parse_configs(routers)
        problems = [p for p in load_problems(data, limit) if p.answer is not None]
        if not problems:
            raise common.UsageError(f"{data}: no problems with a gold 'answer'", "eval needs gold answers; use `steer batch` for unlabelled problems")
        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx, temperature, seed)
        registry, engines = engine_args.load()
        limits = common.step_limits(max_steps, max_step_tokens, delimiter)
        chosen_signal = signal or registry.defaults.signal
        fingerprint = {
            "models": [(e.name, e.path.stat().st_size) for e in engines],
            "limits": vars(limits),
            "temperature": temperature,
            "seed": seed,
            "prompt": STEP_INSTRUCTION,
        }
        work_dir = work or steer_home() / "eval"
        items = [runs.Item(id=p.id, line=n, question=p.question, answer=p.answer) for n, p in enumerate(problems, 1)]
        summaries = []
        done_total = 0
        with ui.Counter("eval", len(configs) * len(items), quiet=quiet, every=10, transient=True) as progress:
            for cfg in configs:
                choice = common.route_choice(cfg.router, cfg.threshold, chosen_signal, registry.defaults)
                cfg = ev.Config(cfg.router, choice.threshold if cfg.router not in ("small", "large") else None)
                solver = Solver(engines, common.make_router(choice, seed), limits)
                # Only steer reads the signal: other routers' records stay valid when it changes.
                keyed = {**fingerprint, "signal": chosen_signal} if cfg.router == "steer" else fingerprint
                path = ev.records_path(work_dir, data, cfg, keyed)
                stream, done = runs.open_output(path)
                try:
                    for item in items:
                        if item.id not in done:
                            done[item.id] = runs.result_record(item, runs.solve_one(solver, item.question))
                            runs.append(stream, done[item.id])
                        done_total += 1
                        progress.update(done_total, cfg.label)
                finally:
                    stream.close()
                summaries.append(ev.summarize(cfg, [done[i.id] for i in items]))
        print(ev.table(summaries))
        if out is not None:
            written = ev.write_outputs(summaries, out)
            if not any(p.suffix == ".png" for p in written):
                print("steer: matplotlib is not installed, no frontier.png (pip install 'steer-cli[eval]')", file=sys.stderr)
            print(f"steer: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)

