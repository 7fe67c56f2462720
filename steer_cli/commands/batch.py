"""`steer batch`: solve a JSONL file of problems, resumably."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def batch(
    input: Annotated[str, typer.Argument(help="JSONL with question/problem/prompt (+ optional id, answer); '-' reads stdin.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Results JSONL; rerunning skips ids already there. '-' or none: stdout.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed line instead of recording it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    router: common.Router = None,
    threshold: common.Threshold = None,
    signal: common.Signal = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    pik: common.Pik = None,
    pik_threshold: common.PikThreshold = None,
    budget: common.BudgetCap = None,
    cost_unit: common.CostUnit = None,
    policy: common.PolicyFile = None,
    max_large_tokens: common.MaxLargeTokens = None,
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
    """Solve every line of INPUT; one JSON result per line, flushed as it completes."""
    with boundary():
        from steer_cli import datasets, runs, ui

        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx, temperature, seed)
        plan = common.plan(engine_args, router, threshold, signal, pik, pik_threshold, max_steps, max_step_tokens, delimiter, max_large_tokens, budget, cost_unit, quiet, policy)
        out_path = None if output in (None, "-") else Path(output)
        if out_path is not None and input != "-" and out_path.resolve() == Path(input).resolve():
            raise common.UsageError(f"-o {output} is the input file", "write the results to another file, e.g. -o results.jsonl")
        items = datasets.load(input)
        if strict:
            bad = next((i for i in items if i.error is not None), None)
            if bad is not None:
                raise common.UsageError(bad.error, "fix that line, or drop --strict to record it and go on")
        out, done = runs.open_output(out_path)
        tally = runs.Tally()
        todo = []
        for item in items:
            record = done.get(runs.batch_key(item)) if item.error is None else None
            if record is not None:
                tally.add(record)
            else:
                todo.append(item)
        solver = None
        if any(item.error is None for item in todo):
            solver = plan.solver()
        try:
            # Results on a terminal's stdout: keep the bar from drawing over them.
            hide = quiet or (out is sys.stdout and sys.stdout.isatty())
            with ui.Counter("batch", len(items), quiet=hide) as progress:
                progress.update(tally.done, tally.line())
                for item in todo:
                    if item.error is not None:
                        record = runs.error_record(item)
                        print(f"steer: {item.error}", file=sys.stderr)
                    else:
                        record = runs.result_record(item, runs.solve_one(solver, item.question), runs.batch_key(item))
                    runs.append(out, record)
                    tally.add(record)
                    progress.update(tally.done, tally.line())
        finally:
            if out is not sys.stdout:
                runs.fsync_quietly(out)
                out.close()
        if not quiet:
            print(f"steer: {tally.done}/{len(items)} done · {tally.line()}", file=sys.stderr)
        if tally.failed:
            raise typer.Exit(1)
