"""The assembly room: one Session per command, built from what the user set.

A Session checks every option and loads every trained file when it is made
(no model is touched), loads the tiers on first use, checks the trained files
against them, prices the run (units.Meter), and is the one place a Solver is
built. ask, batch, eval, calibrate, serve, the trainers and the benchmarks
all take one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from steer_cli import routes
from steer_cli.batching import MAX_PARALLEL
from steer_cli.budget import Budget
from steer_cli.errors import UsageError
from steer_cli.registry import Defaults
from steer_cli.routes import Route
from steer_cli.solver import Solver, StepLimits
from steer_cli.tiers import build_tiers, prices, tier_specs

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """Everything a command line may set for a run, before any check."""

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
    max_steps: int = 24
    max_step_tokens: int = 256
    delimiter: str = "\\n\\n"
    max_large_tokens: int | None = None
    budget: float | None = None
    cost_unit: str | None = None
    trained: tuple[tuple[str, Path], ...] = ()  # (kind, file): --pik, --policy, --trained KIND=FILE
    quiet: bool = False
    parallel: int = 1


@dataclass
class Session:
    """A run's parts: defaults, limits, budget, trained files, the tiers
    (given, or loaded on first use by `load`) and their meter."""

    defaults: Defaults = field(default_factory=Defaults)
    limits: StepLimits = field(default_factory=StepLimits)
    budget: Budget = field(default_factory=Budget)
    artifacts: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    temperature: float = 0.0
    quiet: bool = False
    measure: bool | None = None  # profile the machine now: None only where a budget in time needs it
    load: Callable[[], list] | None = None
    identities: dict = field(default_factory=dict)  # what keys records beyond the engines (prompt, sampling)
    prices: list | None = None  # each tier's models.yaml price, known before any model loads
    parallel: int = 1  # problems solved at once (batching.py)
    _engines: list | None = None
    _meter: Any = None
    _lanes: Any = None

    @classmethod
    def of(cls, engines: list, meter: Any = None, **parts: Any) -> Session:
        """A session over engines already made (tests, the trainers)."""
        return cls(_engines=engines, _meter=meter, **parts)

    @classmethod
    def from_options(cls, options: Options, measure: bool | None = None) -> Session:
        """Everything that can be refused, refused now, before any model loads."""
        registry = checked_registry(options)
        unit = _unit(options.cost_unit, registry.defaults)
        budget = Budget(options.max_large_tokens, options.budget, registry.defaults.budget_reference_tokens, unit)
        artifacts = load_artifacts(options.trained)
        session = cls(registry.defaults, step_limits(options.max_steps, options.max_step_tokens, options.delimiter), budget, artifacts,
                      options.seed, options.temperature, options.quiet, measure, lambda: _load_tiers(options, registry),
                      prices=prices(registry, tier_specs(registry, options.tiers, options.small, options.large)), parallel=options.parallel)
        if budget.relative is not None:
            session.require_prices("--budget")
        if not session.limits.delimiter:
            from steer_cli.output import Output

            Output(quiet=options.quiet).note(f"--delimiter '' ends no step by text: every step is {options.max_step_tokens} tokens (--max-step-tokens), "
                                             "and the router decides before each")
        return session

    def require_prices(self, why: str) -> None:
        """In the price unit, refuse now (no model loaded) tiers models.yaml does not price."""
        if self.unit != "price" or self.prices is None:
            return
        fix = "add `price: {input_per_m: …, output_per_m: …}` to the models in models.yaml, or pass --cost-unit time"
        if any(p is None for p in self.prices):
            raise UsageError(f"{why} in price needs a price for every remote tier, and models.yaml has none for one", fix)
        if self.prices[-1].output_per_m == 0:
            raise UsageError(f"{why} in price: the top tier bills nothing, so there is no price to compare with", fix)

    # -- the tiers and their prices --------------------------------------------
    @property
    def engines(self) -> list:
        """The tiers, loaded once (the trained files checked against them)."""
        if self._engines is None:
            from steer_cli.routers import ARTIFACTS

            assert self.load is not None, "a Session needs engines or a way to load them"
            engines = self.load()
            for kind, artifact in self.artifacts.items():
                ARTIFACTS[kind].check(artifact, engines)
            self._engines = engines
        return self._engines

    @property
    def unit(self) -> str:
        return self.budget.unit

    @property
    def meter(self) -> Any:
        """Prices in every unit: the machine profile measured now (once per
        machine setting, said on stderr) when `measure` asks, else a stored one."""
        if self._meter is None:
            from steer_cli import profile
            from steer_cli.datasets import load
            from steer_cli.output import Output
            from steer_cli.units import Meter

            now = self.measure if self.measure is not None else self.budget.relative is not None and self.unit == "time"
            warm = [i.question for i in load("train", 4)] if now else []
            out = Output(quiet=self.quiet)
            self._meter = Meter(self.unit, profile.for_engines(self.engines, warm, say=lambda line: out.note(line.removeprefix("steer: ")), measure_missing=now))
        return self._meter

    # -- routes and solvers ---------------------------------------------------
    def route(self, route: Route) -> Route:
        """A route with what was left unnamed filled in, checked whole."""
        filled = routes.fill(route, self.defaults, self.artifacts)
        routes.build(filled, self.artifacts, self.seed)  # a bad signal, threshold or missing file is refused now
        return filled

    def chosen(self, router: str | None, threshold: float | None = None, signal: str | None = None, pik_threshold: float | None = None) -> Route:
        """The one route of ask, batch and calibrate: --router (else models.yaml's)
        and its options; a trained file the route would not read is refused."""
        from steer_cli.routers import PIK, spec

        named = routes.from_options(router or self.defaults.router, threshold, signal, PIK.kind in self.artifacts, pik_threshold)
        needs = spec(named.router).needs
        for kind in self.artifacts:
            if kind != PIK.kind and (needs is None or needs.kind != kind):
                raise UsageError(f"router {named.router} reads no {kind} file", f"drop it, or use the router that reads it: --router {_reader(kind)}")
        return self.route(named)

    def solver(self, route: Route, limits: StepLimits | None = None, seed: int | None = None, lane: int | None = None) -> Solver:
        """The only place a Solver is built; `lane` picks one of the `parallel` sets of tiers."""
        filled = routes.fill(route, self.defaults, self.artifacts)
        router = routes.build(filled, self.artifacts, self.seed if seed is None else seed)
        engines = self.engines if lane is None else self.lanes()[0][lane]
        return Solver(engines, router, limits or self.limits, self.budget, self.meter)

    def lanes(self) -> tuple[list[list], Any]:
        """`parallel` sets of tiers sharing the models, and their scheduler (made once)."""
        if self._lanes is None:
            from steer_cli.batching import lanes, reserved
            from steer_cli.output import Output

            self._lanes = lanes(self.engines, self.parallel)
            Output(quiet=self.quiet).note(f"{self.parallel} problems at once: {reserved(self.engines, self.parallel) / 2**30:.2f} GiB of KV cache for them")
        return self._lanes

    def solve_many(self, route: Route, items: list[T], question: Callable[[T], str]) -> Iterator[tuple[T, Any]]:
        """(item, Result) for each item, `parallel` at a time, in the order they finish."""
        from steer_cli.runs import solve_one

        if self.parallel == 1 or len(items) <= 1:
            solver = self.solver(route) if items else None
            for item in items:
                yield item, solve_one(solver, question(item))
            return
        from steer_cli.batching import solve_all

        meter = self.meter  # measured (if it must be) before the lanes start
        assert meter is not None
        solvers = [self.solver(route, lane=i) for i in range(self.parallel)]
        yield from solve_all([lambda item, s=s: solve_one(s, question(item)) for s in solvers], items, self.lanes()[1])

    def expected(self, solves: int, tier: int = -1) -> str:
        """What `solves` problems cost on this machine, each priced as `tier`
        answering alone (prompt ~120 tokens, the typical answer), said for a
        person; the stepwise routes cost about the large model's time here."""
        from steer_cli.ui import duration

        seconds = self.seconds_alone(tier)
        if seconds is None:
            return "no machine profile yet to estimate it from"
        if self.parallel == 1:
            return f"about {duration(solves * seconds)} on this machine"
        speedup = self.meter.profiles[self.engines[tier].name].speedup(self.parallel)
        if speedup is None:
            return f"about {duration(solves * seconds)} on this machine one at a time (`steer bench --parallel {self.parallel}` measures what {self.parallel} at once gain)"
        return f"about {duration(solves * seconds / speedup)} on this machine at --parallel {self.parallel} ({speedup:.2f}x, measured)"

    def seconds_alone(self, tier: int = -1) -> float | None:
        """Predicted seconds of one problem answered by `tier` alone (None: no profile)."""
        profile = self.meter.profiles.get(self.engines[tier].name)
        return None if profile is None else profile.seconds(120, self.budget.reference_tokens)

    def fingerprint(self) -> dict:
        """Every setting that changes an answer: models, limits, sampling, prompt, budget."""
        from steer_cli.engine import STEP_INSTRUCTION

        keyed = {"models": [(e.name, e.identity) for e in self.engines], "limits": vars(self.limits), "temperature": self.temperature,
                 "seed": self.seed, "prompt": STEP_INSTRUCTION, **self.identities}
        if self.budget.active:
            keyed["budget"] = vars(self.budget)
            if self.budget.relative is not None and self.unit == "time":  # the cap in seconds depends on this machine's profile
                keyed["profiles"] = {name: vars(p) for name, p in sorted(self.meter.profiles.items())}
        return keyed

    def record_key(self, route: Route) -> dict:
        return {**self.fingerprint(), **routes.record_key(self.route(route), self.artifacts)}

    def runnable(self) -> list[Route]:
        """Every registered router this session can run, filled: serve's models."""
        return [self.route(Route(name)) for name in routes.runnable(self.artifacts)]


def _reader(kind: str) -> str:
    from steer_cli.routers import REGISTRY

    return next((n for n, e in REGISTRY.items() if e.needs is not None and e.needs.kind == kind), kind)


def load_artifacts(trained: tuple[tuple[str, Path], ...]) -> dict[str, Any]:
    """Each trained file, format-checked (not yet against the tiers)."""
    from steer_cli.routers import ARTIFACTS

    loaded: dict[str, Any] = {}
    for kind, path in trained:
        if kind not in ARTIFACTS:
            raise UsageError(f"no router reads a trained file of kind {kind!r}", f"use one of: {', '.join(ARTIFACTS)} (--trained KIND=FILE)")
        if kind in loaded:
            raise UsageError(f"two {kind} files given", "pass one")
        loaded[kind] = ARTIFACTS[kind].load(path)
    return loaded


def step_limits(max_steps: int, max_step_tokens: int, delimiter: str) -> StepLimits:
    if max_steps < 1:
        raise UsageError(f"--max-steps {max_steps} allows no step", "pass 1 or more")
    if max_step_tokens < 1:
        raise UsageError(f"--max-step-tokens {max_step_tokens} allows no token", "pass 1 or more")
    return StepLimits(delimiter=unescape(delimiter), max_steps=max_steps, max_step_tokens=max_step_tokens)


def checked_registry(options: Options) -> Any:
    """models.yaml (packaged + user), after the numeric options are checked."""
    from steer_cli.registry import load_registry

    if options.threads is not None and options.threads < 1:
        raise UsageError(f"--threads {options.threads} is not a thread count", "pass 1 or more, or leave it out for all physical cores")
    if options.n_ctx is not None and options.n_ctx < 64:
        raise UsageError(f"--n-ctx {options.n_ctx} cannot hold a prompt", "pass 512 or more, or leave it out for the model's own")
    if options.gpu_layers < 0:
        raise UsageError(f"--gpu-layers {options.gpu_layers} is negative", "pass 0 (CPU) or a layer count")
    if options.seed < 0:
        raise UsageError(f"--seed {options.seed} is negative", "pass 0 or more")
    if not 1 <= options.parallel <= MAX_PARALLEL:
        raise UsageError(f"--parallel {options.parallel} is outside [1, {MAX_PARALLEL}]", "pass 1 (one problem at a time) to 16")
    if not 0.0 <= options.temperature <= 5.0:
        raise UsageError(f"--temperature {options.temperature:g} is outside [0, 5]", "0 is greedy; 0.7 is a usual sampling temperature")
    return load_registry(options.config)


def _unit(given: str | None, defaults: Defaults) -> str:
    from steer_cli.units import check

    return check(given or defaults.cost_unit)


def _load_tiers(options: Options, registry: Any) -> list:
    from steer_cli.engine import LoadOptions

    load = LoadOptions(n_threads=options.threads, n_gpu_layers=options.gpu_layers, temperature=options.temperature, seed=options.seed)
    return build_tiers(options.small, options.large, options.tiers, registry=registry, cache=options.cache_dir, options=load, n_ctx=options.n_ctx)


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
