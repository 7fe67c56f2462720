"""`steer ask`: solve one problem, streaming its steps on stderr."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def ask(
    problem: Annotated[Optional[str], typer.Argument(help="The problem; '-' or a pipe reads stdin.")] = None,
    router: common.Router = None,
    threshold: common.Threshold = None,
    signal: common.Signal = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (steps, answer, cost) to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")] = False,
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
    """Solve PROBLEM step by step, routing each step to the small or large model."""
    with boundary():
        from steer_cli import ui
        from steer_cli.solver import Solved

        text = common.read_problem(problem)
        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx, temperature, seed)
        plan = common.plan(engine_args, router, threshold, signal, pik, pik_threshold, max_steps, max_step_tokens, delimiter, max_large_tokens, budget, cost_unit, quiet, policy)
        chosen = plan.route
        events = plan.solver().solve(text)
        if not quiet:
            console = ui.stderr_console()
            console.print(ui.legend(chosen.router, chosen.threshold, chosen.signal))
            events = ui.show(events, console)
        result = next(e.result for e in events if isinstance(e, Solved))
        if as_json:
            json.dump(result.to_dict(), sys.stdout, ensure_ascii=False)
            sys.stdout.write("\n")
        elif result.answer is not None:
            print(result.answer)
        if result.answer is None:
            print(f"steer: no answer: {ui.why_unanswered(result)}", file=sys.stderr)
            raise typer.Exit(1)
