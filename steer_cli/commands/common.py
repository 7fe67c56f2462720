"""Pieces every command shares: the error boundary, model options, stdin."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from steer_cli.errors import SteerError, UsageError, translate


@contextlib.contextmanager
def boundary() -> Iterator[None]:
    """Known failures become one line on stderr and a non-zero exit;
    Ctrl-C exits 130 like any well-behaved Unix tool."""
    try:
        yield
    except KeyboardInterrupt:
        print("steer: interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        print(f"steer: error: {err}", file=sys.stderr)
        raise typer.Exit(err.exit_code) from None


def read_problem(problem: str | None) -> str:
    """The problem from the argument, or stdin for '-' or a pipe."""
    if problem is None or problem == "-":
        if problem is None and sys.stdin.isatty():
            raise UsageError("no problem given", 'pass it as an argument: steer ask "…", or pipe it: echo "…" | steer ask -')
        problem = sys.stdin.read()
    if not problem.strip():
        raise UsageError("the problem is empty", "pass the problem text, or pipe it on stdin with `-`")
    return problem


# Typer options shared by ask / batch / eval, declared once.
Small = Annotated[Optional[str], typer.Option("--small", help="Smallest tier: a models.yaml name or a .gguf path.")]
Large = Annotated[Optional[str], typer.Option("--large", help="Largest tier: a models.yaml name or a .gguf path.")]
Tiers = Annotated[Optional[str], typer.Option("--tiers", help="A tier set from models.yaml (small -> large).")]
Router = Annotated[Optional[str], typer.Option("--router", "-r", help="small, large, steer or random (default from models.yaml).")]
Threshold = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Route up when confidence is below this (0-1).")]
Signal = Annotated[Optional[str], typer.Option("--signal", help="Confidence signal for steer: maxprob, margin or entropy.")]
Config = Annotated[Optional[Path], typer.Option("--config", help="A models.yaml overriding the packaged one.", envvar="STEER_CONFIG")]
CacheDir = Annotated[Optional[Path], typer.Option("--cache-dir", help="Where models are stored (default: STEER_HOME/models and the HF cache).")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: physical cores).")]
GpuLayers = Annotated[int, typer.Option("--gpu-layers", help="Layers to offload when llama.cpp has a GPU backend.")]
NCtx = Annotated[Optional[int], typer.Option("--n-ctx", help="Context window (default from models.yaml).")]
MaxSteps = Annotated[int, typer.Option("--max-steps", help="Stop after this many steps.")]
MaxStepTokens = Annotated[int, typer.Option("--max-step-tokens", help="Tokens per step at most.")]
Delimiter = Annotated[str, typer.Option("--delimiter", help="Text that ends a step (escapes like \\n allowed).")]
Temperature = Annotated[float, typer.Option("--temperature", help="0 = greedy (reproducible).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for sampling and the random router.")]


@dataclass
class RouteChoice:
    router: str
    threshold: float | None
    signal: str


def route_choice(router: str | None, threshold: float | None, signal: str | None, defaults) -> RouteChoice:
    """Fill what the user left out from models.yaml's defaults."""
    name = router or defaults.router
    t = threshold if threshold is not None else defaults.thresholds.get(name)
    return RouteChoice(name, t, signal or defaults.signal)


def unescape(delimiter: str) -> str:
    return delimiter.encode("utf-8").decode("unicode_escape")
