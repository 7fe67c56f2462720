"""`steer ask`: solve one problem, streaming its steps on stderr."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from steer_cli.commands import common


def ask(
    problem: Annotated[Optional[str], typer.Argument(help="The problem; '-' or a pipe reads stdin.")] = None,
    router: common.Router = None,
    threshold: common.Threshold = None,
    signal: common.Signal = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (steps, answer, cost) to stdout.")] = False,
    quiet: common.Quiet = False,
    pik: common.Pik = None,
    pik_threshold: common.PikThreshold = None,
    budget: common.BudgetCap = None,
    cost_unit: common.CostUnit = None,
    policy: common.PolicyFile = None,
    trained: common.Trained = None,
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
    """Solve PROBLEM step by step, routing each step to the small or large model: the answer on stdout (one JSON object with --json), the steps on stderr. Seconds to a minute on 2 cores."""
    from steer_cli import ui
    from steer_cli.output import Output
    from steer_cli.runs import solve_events
    from steer_cli.session import Session

    out = Output(as_json, quiet)
    text = common.read_problem(problem)
    session = Session.from_options(common.options(locals()))
    route = session.chosen(router, threshold, signal, pik_threshold)
    result = solve_events(out.steps(session.solver(route).solve(text), route))
    out.result(result.to_dict(), result.answer)
    if result.cost.unit != session.unit:
        out.note(f"relative cost in {result.cost.unit}, not {session.unit}: " + (
            "no machine profile for these models yet (`steer bench` measures one; a --budget in time measures it on first use)"
            if session.unit == "time" else f"not every tier can be priced in {session.unit}"))
    if result.answer is None:
        out.warn(f"no answer: {ui.why_unanswered(result)}")
        raise typer.Exit(1)
