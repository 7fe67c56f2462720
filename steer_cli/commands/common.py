"""Pieces every command shares: the error boundary, model options, stdin."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional
from collections.abc import Iterator

import typer

from steer_cli.errors import SteerError, UsageError, translate  # noqa: F401 (re-exported for commands)


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
    return problem.strip()


# Typer options shared by ask / batch / eval, declared once.
Small = Annotated[Optional[str], typer.Option("--small", help="Smallest tier: a models.yaml name or a .gguf path.")]
Large = Annotated[Optional[str], typer.Option("--large", help="Largest tier: a models.yaml name or a .gguf path.")]
Tiers = Annotated[Optional[str], typer.Option("--tiers", help="A tier set from models.yaml (small -> large).")]
Router = Annotated[Optional[str], typer.Option("--router", "-r", help="small, large, steer, trim, cascade or random (default from models.yaml).")]
Threshold = Annotated[Optional[float], typer.Option("--threshold", "-t", help="Route up when confidence is below this (0-1).")]
Signal = Annotated[Optional[str], typer.Option("--signal", help="What the router reads. steer: maxprob, margin, entropy; trim: self, self-min, verify, verify-min, prm; cascade: answer.")]
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
BudgetCap = Annotated[Optional[float], typer.Option("--budget", help="Cap each query's FLOPs at this fraction of a large-only answer; the larger tiers stop when it is spent.")]
MaxLargeTokens = Annotated[Optional[int], typer.Option("--max-large-tokens", help="Hard cap per problem on tokens decoded by the larger tiers; then the smallest writes the rest.")]


@dataclass
class EngineArgs:
    """The model-side options every solving command takes."""

    small: str | None = None
    large: str | None = None
    tiers: str | None = None
    config: Path | None = None
    cache_dir: Path | None = None
    threads: int | None = None
    gpu_layers: int = 0
    n_ctx: int | None = None
    temperature: float = 0.0
    seed: int = 0

    def load(self):
        """(registry, engines): models load once per command."""
        from steer_cli.engine import LoadOptions
        from steer_cli.registry import load_registry
        from steer_cli.session import build_tiers

        registry = load_registry(self.config)
        options = LoadOptions(n_threads=self.threads, n_gpu_layers=self.gpu_layers, temperature=self.temperature, seed=self.seed)
        return registry, build_tiers(self.small, self.large, self.tiers, registry=registry, cache=self.cache_dir, options=options, n_ctx=self.n_ctx)


def budget(max_large_tokens: int | None, relative: float | None, defaults):
    from steer_cli.budget import Budget

    return Budget(max_large_tokens, relative, defaults.budget_reference_tokens)


def step_limits(max_steps: int, max_step_tokens: int, delimiter: str):
    from steer_cli.solver import StepLimits

    return StepLimits(delimiter=unescape(delimiter), max_steps=max_steps, max_step_tokens=max_step_tokens)


def route(router: str | None, threshold: float | None, signal: str | None, defaults):
    """The route ask/batch run: what the user named, the rest from models.yaml."""
    from steer_cli.routers import Route, fill

    return fill(Route(router or defaults.router, threshold, signal), defaults)


def unescape(delimiter: str) -> str:
    return delimiter.encode("utf-8").decode("unicode_escape")


def labelled_items(data: str, limit: int | None, need_gold: bool = True) -> list:
    """Problems as run items: those with gold answers, or (`need_gold`
    False: costs need none) every problem."""
    from steer_cli.datasets import load_problems
    from steer_cli.runs import Item

    problems = [p for p in load_problems(data, limit) if p.answer is not None or not need_gold]
    if not problems:
        if need_gold:
            raise UsageError(f"{data}: no problems with a gold 'answer'", "eval needs gold answers; use `steer batch` for unlabelled problems")
        raise UsageError(f"{data}: no problems in it", "pass a JSONL with one {\"question\": ...} per line")
    return [Item(id=p.id, line=n, question=p.question, answer=p.answer) for n, p in enumerate(problems, 1)]


def bench(engine_args: EngineArgs, limits, work: Path | None, max_large_tokens: int | None = None, relative: float | None = None):
    """Loaded engines plus the fingerprint that keys their records: every
    setting that changes an answer (models, limits, sampling, prompt, budget)."""
    from steer_cli.engine import STEP_INSTRUCTION
    from steer_cli.evaluate import Bench
    from steer_cli.registry import steer_home

    registry, engines = engine_args.load()
    caps = budget(max_large_tokens, relative, registry.defaults)
    fingerprint = {
        "models": [(e.name, e.path.stat().st_size) for e in engines],
        "limits": vars(limits),
        "temperature": engine_args.temperature,
        "seed": engine_args.seed,
        "prompt": STEP_INSTRUCTION,
    }
    if caps.active:
        fingerprint["budget"] = vars(caps)
    return Bench(engines, registry.defaults, limits, fingerprint, work or steer_home() / "eval", engine_args.seed, caps)
