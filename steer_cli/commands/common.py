"""Pieces every command shares: the error boundary, model options, stdin."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional
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
        from steer_cli.datasets import decode

        problem = decode(sys.stdin.buffer.read(), "stdin")
    if not problem.strip():
        raise UsageError("the problem is empty", "pass the problem text, or pipe it on stdin with `-`")
    return problem.strip()


# Typer options shared by ask / batch / eval, declared once.
Small = Annotated[Optional[str], typer.Option("--small", help="Smallest tier: a models.yaml name or a .gguf path.")]
Large = Annotated[Optional[str], typer.Option("--large", help="Largest tier: a models.yaml name or a .gguf path.")]
Tiers = Annotated[Optional[str], typer.Option("--tiers", help="A tier set from models.yaml (small -> large).")]
Router = Annotated[Optional[str], typer.Option("--router", "-r", help="small, large, steer, trim, cascade, random or policy (with --policy FILE); default from models.yaml.")]
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
BudgetCap = Annotated[Optional[float], typer.Option("--budget", help="Cap what the tiers above the smallest spend, in --cost-unit (reading priced as the unit prices it), at this fraction of the top tier answering alone; then the smallest tier finishes, uncapped. The result's cost.budget reports cap and spend.")]
CostUnit = Annotated[Optional[str], typer.Option("--cost-unit", help="time (seconds on this machine, from its profile), decode, flops or price: what --budget caps and relative cost counts (default: models.yaml defaults.cost_unit, else time).")]
Pik = Annotated[Optional[Path], typer.Option("--pik", help="A P(IK) classifier from `steer pik train`: a query it judges hopeless for the small model goes straight to the tiers above (any routing router).")]
PikThreshold = Annotated[Optional[float], typer.Option("--pik-threshold", help="Skip the small tier when P(IK) is below this (default: the file's).")]
PolicyFile = Annotated[Optional[Path], typer.Option("--policy", help="A routing policy from `steer policy train` (for --router policy).")]
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

    def registry(self):
        """models.yaml (packaged + user), with the numeric options checked:
        everything that can be refused is refused before a model loads."""
        from steer_cli.registry import load_registry

        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads} is not a thread count", "pass 1 or more, or leave it out for all physical cores")
        if self.n_ctx is not None and self.n_ctx < 64:
            raise UsageError(f"--n-ctx {self.n_ctx} cannot hold a prompt", "pass 512 or more, or leave it out for the model's own")
        if self.gpu_layers < 0:
            raise UsageError(f"--gpu-layers {self.gpu_layers} is negative", "pass 0 (CPU) or a layer count")
        if not 0.0 <= self.temperature <= 5.0:
            raise UsageError(f"--temperature {self.temperature:g} is outside [0, 5]", "0 is greedy; 0.7 is a usual sampling temperature")
        return load_registry(self.config)

    def engines(self, registry) -> list:
        """One warm engine per tier: models load once per command."""
        from steer_cli.engine import LoadOptions
        from steer_cli.session import build_tiers

        options = LoadOptions(n_threads=self.threads, n_gpu_layers=self.gpu_layers, temperature=self.temperature, seed=self.seed)
        return build_tiers(self.small, self.large, self.tiers, registry=registry, cache=self.cache_dir, options=options, n_ctx=self.n_ctx)


@dataclass
class Plan:
    """What ask and batch will run, checked whole before any model loads."""

    engine_args: EngineArgs
    registry: Any
    route: Any
    limits: Any
    caps: Any
    pik: Any
    unit: str = "time"
    quiet: bool = False
    policy: Any = None

    def solver(self):
        """Load the tiers (once per command) and the solver that routes between them."""
        from steer_cli.solver import Solver

        engines = self.engine_args.engines(self.registry)
        check_pik(self.pik, engines)
        check_policy(self.policy, engines)
        # A budget in time needs the profile now; elsewhere a stored one is used if there is one.
        measure_now = self.caps.relative is not None and self.unit == "time"
        return Solver(engines, self.route.build(self.engine_args.seed, self.pik, self.policy), self.limits, self.caps, meter(engines, self.unit, measure_now, self.quiet))


def plan(engine_args: EngineArgs, router: str | None, threshold: float | None, signal: str | None, pik_path: Path | None, pik_threshold: float | None,
         max_steps: int, max_step_tokens: int, delimiter: str, max_large_tokens: int | None, relative: float | None,
         unit: str | None = None, quiet: bool = False, policy_path: Path | None = None) -> Plan:
    registry = engine_args.registry()
    classifier = load_pik(pik_path)
    policy = load_policy(policy_path)
    chosen = route(router, threshold, signal, registry.defaults, classifier, pik_threshold, policy)
    unit = cost_unit(unit, registry.defaults)
    caps = budget(max_large_tokens, relative, registry.defaults, unit)
    return Plan(engine_args, registry, chosen, step_limits(max_steps, max_step_tokens, delimiter), caps, classifier, unit, quiet, policy)


def cost_unit(given: str | None, defaults) -> str:
    from steer_cli.units import check

    return check(given or defaults.cost_unit)


def budget(max_large_tokens: int | None, relative: float | None, defaults, unit: str = "flops"):
    from steer_cli.budget import Budget

    return Budget(max_large_tokens, relative, defaults.budget_reference_tokens, unit)


def meter(engines: list, unit: str, measure: bool, quiet: bool = False):
    """The run's cost meter: `unit` plus each local model's machine profile,
    measured now (once per machine setting, said on stderr) when `measure`,
    else only a stored one."""
    from steer_cli import profile
    from steer_cli.units import Meter

    from steer_cli.datasets import load

    warm = [i.question for i in load("train", 4)] if measure else []
    return Meter(unit, profile.for_engines(engines, warm, say=lambda line: None if quiet else print(line, file=sys.stderr), measure_missing=measure))


def step_limits(max_steps: int, max_step_tokens: int, delimiter: str):
    from steer_cli.solver import StepLimits

    if max_steps < 1:
        raise UsageError(f"--max-steps {max_steps} allows no step", "pass 1 or more")
    if max_step_tokens < 1:
        raise UsageError(f"--max-step-tokens {max_step_tokens} allows no token", "pass 1 or more")
    return StepLimits(delimiter=unescape(delimiter), max_steps=max_steps, max_step_tokens=max_step_tokens)


def route(router: str | None, threshold: float | None, signal: str | None, defaults, pik=None, pik_threshold: float | None = None, policy=None):
    """The route ask/batch run: what the user named, the rest from models.yaml;
    refused before any model loads if it cannot run (an option the router does
    not read included). `pik` is a loaded P(IK) file, if one was given."""
    from steer_cli.routers import ROUTER_SIGNALS, THRESHOLDED, Route, fill, refuse_fixed_pik

    name = router or defaults.router
    refuse_fixed_pik(name, pik is not None or pik_threshold is not None)
    if pik_threshold is not None and pik is None:
        raise UsageError("--pik-threshold needs a P(IK) classifier", "pass --pik FILE too")
    if threshold is not None and name in ("small", "large"):
        raise UsageError(f"router {name} has no threshold, so --threshold {threshold:g} would be ignored", f"drop --threshold, or use one of: {', '.join(THRESHOLDED)}")
    if signal is not None and name not in ROUTER_SIGNALS:
        raise UsageError(f"router {name} reads no signal, so --signal {signal} would be ignored", f"drop --signal, or use one of: {', '.join(ROUTER_SIGNALS)}")
    if policy is not None and name != "policy":
        raise UsageError(f"router {name} reads no policy file", "use --policy with --router policy")
    chosen = fill(Route(name, threshold, signal, pik_default(pik, pik_threshold, defaults)), defaults, policy)
    chosen.build(pik=pik, policy=policy)  # validates router, signal, thresholds and the policy now
    return chosen


def load_policy(path: Path | None):
    """The policy file, checked before any model loads (None: none given)."""
    if path is None:
        return None
    from steer_cli import policy

    return policy.load(path)


def check_policy(policy, engines) -> None:
    """Refuse a policy trained for another model pair than these tiers."""
    if policy is None:
        return
    from steer_cli.policy import check_models

    check_models(policy, [identity(e) for e in engines], [e.name for e in engines])


def pik_default(pik, given: float | None, defaults) -> float | None:
    """The P(IK) threshold: as given, else calibrated (models.yaml), else the file's own."""
    if pik is None:
        return None
    if given is not None:
        return given
    from steer_cli.pik import default_threshold

    return default_threshold(pik, defaults)


def load_pik(path: Path | None):
    """The P(IK) file, format-checked before any model loads (None: none given)."""
    if path is None:
        return None
    from steer_cli import pik

    return pik.load(path)


def check_pik(pik, engines) -> None:
    """Refuse a P(IK) file trained for another model than the smallest tier."""
    if pik is None:
        return
    from steer_cli.fetch import content_sha256
    from steer_cli.remote import RemoteEngine

    if isinstance(engines[0], RemoteEngine):
        raise UsageError(f"the small tier {engines[0].name} is remote: P(IK) needs its hidden state", "use a local GGUF as the small tier with --pik")
    sha = content_sha256(engines[0].path)
    if pik.model_sha256 != sha:
        raise UsageError(f"the P(IK) file was trained for {pik.model} ({pik.model_sha256[:12]}…), not for the small tier {engines[0].name} ({sha[:12]}…)", "train one for this model with `steer pik train`")


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}


def unescape(delimiter: str) -> str:
    """\\n, \\t, \\r, \\\\ and \\0 become their characters; everything else,
    non-ASCII text included, is kept as typed."""
    out, i = [], 0
    while i < len(delimiter):
        ch = delimiter[i]
        if ch == "\\" and i + 1 < len(delimiter) and delimiter[i + 1] in _ESCAPES:
            out.append(_ESCAPES[delimiter[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def identity(engine) -> str:
    """What a record's model is: a local file's sha256, or a remote endpoint and its served model."""
    from steer_cli.fetch import content_sha256

    return _identity(engine, content_sha256)


def _identity(engine, content_sha256) -> str:
    from steer_cli.remote import RemoteEngine

    if isinstance(engine, RemoteEngine):
        return f"{engine.endpoint.base_url}#{engine.endpoint.model}"
    return content_sha256(engine.path)


def bench(engine_args: EngineArgs, limits, work: Path | None, max_large_tokens: int | None = None, relative: float | None = None, registry=None, pik=None,
          unit: str | None = None, quiet: bool = False, policy=None, profile: bool = True):
    """Loaded engines plus the fingerprint that keys their records: every
    setting that changes an answer (models, limits, sampling, prompt, budget)."""
    from steer_cli.engine import STEP_INSTRUCTION
    from steer_cli.evaluate import Bench
    from steer_cli.fetch import content_sha256
    from steer_cli.registry import steer_home

    work = work or steer_home() / "eval"
    if work.exists() and not work.is_dir():
        raise UsageError(f"--work {work} is a file", "pass a directory for the record files")
    registry = registry or engine_args.registry()
    unit = cost_unit(unit, registry.defaults)
    caps = budget(max_large_tokens, relative, registry.defaults, unit)
    engines = engine_args.engines(registry)
    costing = meter(engines, unit, measure=profile, quiet=quiet)  # off where nothing is priced in time
    fingerprint = {
        "models": [(e.name, _identity(e, content_sha256)) for e in engines],
        "limits": vars(limits),
        "temperature": engine_args.temperature,
        "seed": engine_args.seed,
        "prompt": STEP_INSTRUCTION,
    }
    if caps.active:
        fingerprint["budget"] = vars(caps)
        if caps.relative is not None and unit == "time":  # the cap in seconds depends on this machine's profile
            fingerprint["profiles"] = {name: vars(p) for name, p in sorted(costing.profiles.items())}
    check_policy(policy, engines)
    return Bench(engines, registry.defaults, limits, fingerprint, work, engine_args.seed, caps, pik, costing, policy)
