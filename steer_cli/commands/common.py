"""What every command shares: its options, declared once, and stdin."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from steer_cli.errors import SteerError, UsageError  # noqa: F401 (re-exported for commands)


def read_problem(problem: str | None) -> str:
    """The problem from the argument, or stdin for '-' or a pipe."""
    if problem is None or problem == "-":
        if problem is None and sys.stdin.isatty():
            raise UsageError("no problem given", 'pass it as an argument: steer ask "…", or pipe it: echo "…" | steer ask -')
        from steer_cli.datasets import decode

        problem = decode(sys.stdin.buffer.read(), "stdin")
    if not problem.strip():
        raise UsageError("the problem is empty", "pass the problem text, or pipe it on stdin with `-`")
    return problem.strip()


def within(flag: str, value: float | None, low: float, high: float = float("inf"), example: str = "") -> None:
    """Refuse `value` outside [low, high] (NaN included) before anything runs."""
    if value is not None and not low <= value <= high:
        span = f"{low:g} or more" if high == float("inf") else f"in [{low:g}, {high:g}]"
        raise UsageError(f"{flag} {value} is outside what it allows", f"pass a value {span}{', e.g. ' + example if example else ''}")


def options(given: dict[str, Any]):
    """A command's session Options from its parameters (its `locals()`):
    every field it has, and its trained files as (kind, path) pairs."""
    from steer_cli.session import Options

    trained = [("pik", given["pik"])] if given.get("pik") is not None else []
    trained += [("policy", given["policy"])] if given.get("policy") is not None else []
    trained += [_trained(spec) for spec in given.get("trained") or []]
    chosen = {f.name: given[f.name] for f in fields(Options) if f.name in given and f.name != "trained"}
    return Options(**chosen, trained=tuple(trained))


def warn_in_sample(session: Any, out: Any, sets: dict[str, list]) -> None:
    """Say when the P(IK) file (--pik) learnt from the problems it is about to
    be judged on: a gate's figures there flatter it (the file lists its
    training problems; older files do not, and say nothing)."""
    model = session.artifacts.get("pik")
    if model is None:
        return
    for what, items in sets.items():
        seen = model.seen(items)
        if seen:
            out.warn(f"{seen} of the {len(items)} {what} problems trained {model.source}: a P(IK) gate's figures on them are in-sample "
                     "(train the P(IK) on other problems, e.g. `steer pik train --data my.jsonl`)")


def _trained(spec: str) -> tuple[str, Path]:
    kind, eq, path = spec.partition("=")
    if not eq or not kind or not path:
        raise UsageError(f"--trained {spec!r} is not KIND=FILE", "e.g. --trained policy=policy.json")
    return kind, Path(path)


def _router_help() -> str:
    from steer_cli import routers

    return f"A router, or a whole route (router:signal@threshold+pik@t, every part after the name optional): {routers.help_text()}"


def _signal_help() -> str:
    from steer_cli import routers

    return routers.signal_help()


# Typer options shared by the commands, declared once; router help is read from the registry.
Small = Annotated[Optional[str], typer.Option("--small", help="Smallest tier: a models.yaml name or a .gguf path.")]
Large = Annotated[Optional[str], typer.Option("--large", help="Largest tier: a models.yaml name or a .gguf path.")]
Tiers = Annotated[Optional[str], typer.Option("--tiers", help="A tier set from models.yaml (small -> large).")]
Router = Annotated[Optional[str], typer.Option("--router", "-r", help=_router_help())]
Threshold = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Route up when confidence is below this (0-1).")]
Signal = Annotated[Optional[str], typer.Option("--signal", help=_signal_help())]
Config = Annotated[Optional[Path], typer.Option("--config", help="A models.yaml overriding the packaged one.", envvar="STEER_CONFIG")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", help="Where models are stored (default: STEER_HOME/models and the HF cache).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: physical cores).")]
GpuLayers = Annotated[int, typer.Option("--gpu-layers", help="Layers to offload when llama.cpp has a GPU backend.")]
NCtx = Annotated[Optional[int], typer.Option("--n-ctx", help="Context window (default from models.yaml).")]
MaxSteps = Annotated[int, typer.Option("--max-steps", help="Stop after this many steps.")]
MaxStepTokens = Annotated[int, typer.Option("--max-step-tokens", help="Tokens per step at most.")]
Delimiter = Annotated[str, typer.Option("--delimiter", help="Text that ends a step (escapes like \\n allowed); '' ends steps only at --max-step-tokens (fixed-size steps).")]
Temperature = Annotated[float, typer.Option("--temperature", help="0 = greedy (reproducible).")]
Parallel = Annotated[int, typer.Option("--parallel", help="Problems solved at once: each token of all of them in one llama.cpp pass (a KV cache of n_ctx per problem, "
                                       "reserved up front). Default 1: on the 2-core machine of 2026-12-01, 4 gave 1.03x (0.5B) and 1.19x (1.5B) problems per hour "
                                       "(compute-bound cores); machines limited by memory bandwidth gain more: `steer bench --parallel N` measures yours.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for sampling and the random router.")]
BudgetCap = Annotated[Optional[float], typer.Option("--budget", help="Cap what the tiers above the smallest spend, in --cost-unit (reading priced as the unit prices it), at this fraction of the top tier answering alone; then the smallest tier finishes, uncapped. The result's cost.budget reports cap and spend.")]
CostUnit = Annotated[Optional[str], typer.Option("--cost-unit", help="time (seconds on this machine, from its profile), decode, flops or price: what --budget caps and relative cost counts (default: models.yaml defaults.cost_unit, else time).")]
Pik = Annotated[Optional[Path], typer.Option("--pik", help="A P(IK) classifier from `steer pik train`: a query it judges hopeless for the small model goes straight to the tiers above (any routing router).")]
PikThreshold = Annotated[Optional[float], typer.Option("--pik-threshold", help="Skip the small tier when P(IK) is below this (default: the file's).")]
PolicyFile = Annotated[Optional[Path], typer.Option("--policy", help="A routing policy from `steer policy train` (for --router policy; short for --trained policy=FILE).")]
Trained = Annotated[Optional[list[str]], typer.Option("--trained", help="A trained file a router reads, as KIND=FILE (e.g. policy=policy.json); repeatable.")]
MaxLargeTokens = Annotated[Optional[int], typer.Option("--max-large-tokens", help="Hard cap per problem on tokens decoded by the larger tiers; then the smallest writes the rest.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Nothing on stderr but warnings and errors.")]
Work = Annotated[Optional[Path], typer.Option("--work", help="Per-route records (reused on rerun); default STEER_HOME/eval.")]
