"""Find the threshold that spends a target relative cost.

RouteLLM's start: a router escalates when its score is below the threshold,
so the threshold that sends a fraction f of decisions up is the f-quantile of
the scores the small model produces (read from a small-only run's traces).
The cost a fraction buys is unknown (a late escalation makes the large model
read the whole transcript, and routing changes the trajectory), so the start
is then corrected with real routed runs: a bracketing search on f, each probe
a full pass over the calibration set, until the measured relative cost is
within tolerance of the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steer_cli.errors import UsageError
from steer_cli.routers import spec
from steer_cli.routes import Route


@dataclass(frozen=True)
class Probe:
    threshold: float
    cost: float  # sum of routed FLOPs / sum of large-only FLOPs
    accuracy: float | None  # over the problems with gold answers; None without any
    n: int
    cost_se: float = 0.0


@dataclass
class Outcome:
    best: Probe
    probes: list[Probe]
    converged: bool


def accuracy(records: list[dict]) -> float | None:
    """Accuracy over the records that have a gold answer: cost needs none,
    so a user may calibrate on their own unlabelled questions."""
    graded = [r for r in records if "correct" in r]
    return sum(bool(r["correct"]) for r in graded) / len(graded) if graded else None


def scores_of(router: str, signal: str | None, records: list[dict]) -> list[float]:
    """The scores `router` would compare with its threshold, as traced by a
    small-only run: one per step (steer, trim self) or per answer (cascade).
    Empty when the score needs a model the small-only run never used."""
    return spec(router).scores(signal, records)


def decisions_per_query(router: str, records: list[dict]) -> float:
    """Routing decisions per query in a small-only run: its steps, or one."""
    solved = [r for r in records if "steps" in r]
    if spec(router).per_query or not solved:
        return 1.0
    return sum(len(r["steps"]) for r in solved) / len(solved)


def stays_small(router: str, signal: str | None, threshold: float, record: dict) -> bool:
    """Whether `router` at `threshold` would never leave the smallest tier on
    this problem, judged from its small-only record. With greedy decoding the
    routed run is the small-only run until its first escalation, so the
    router sees exactly these scores; if none is below the threshold, the
    routed record *is* the small-only record. False when it cannot be known
    (random routing, scores that need another model)."""
    return "steps" in record and spec(router).stays_small(signal, threshold, record)


def quantile(scores: list[float], f: float) -> float:
    """The threshold below which a fraction f of `scores` lies (identity when
    there are no scores: the random router's p is its own fraction)."""
    if not scores:
        return f
    ordered = sorted(scores)
    position = f * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def search(
    measure: Callable[[float], Probe],
    target: float,
    floor: float,
    to_threshold: Callable[[float], float],
    tolerance: float = 0.03,
    rounds: int = 6,
    decisions: float = 1.0,
) -> Outcome:
    """Bracket the escalation fraction f whose threshold meets `target`.
    `floor` is the cost at f = 0 (the small model alone); `decisions` the
    routing decisions per query (steps, or 1 for a query-level router)."""
    if target < floor - tolerance:
        raise UsageError(
            f"target cost {target:g} is below what the small model alone costs here ({floor:.3f})",
            f"pick a target of {math.ceil(floor * 100) / 100:.2f} or more, or answer with the small model alone (ask/batch --router small)",
        )
    low, high = (0.0, floor), None  # (fraction, cost) on each side of the target
    f = initial_fraction(target, floor, decisions)
    probes: list[Probe] = []
    for _ in range(rounds):
        probe = measure(round(to_threshold(f), 4))
        probes.append(probe)
        if abs(probe.cost - target) <= tolerance:
            return Outcome(probe, probes, True)
        width = (high[0] if high else 1.0) - low[0]
        if probe.cost < target:
            low = (f, probe.cost)
        else:
            high = (f, probe.cost)
        # Interpolate while it shrinks the bracket fast; a curved cost (it
        # rises steeply with the first escalations) would stall it, so bisect then.
        shrank = (high[0] if high else 1.0) - low[0] <= width / 2
        f = _next_fraction(low, high, target, floor, interpolate=shrank)
        if f is None:
            break
    best = min(probes, key=lambda p: abs(p.cost - target))
    return Outcome(best, probes, False)


def initial_fraction(target: float, floor: float, decisions: float = 1.0) -> float:
    """A first guess from a simple model: a query escalated at any of its
    `decisions` pays about the large model's whole cost on top of the small
    model's (the large model must read the transcript, the small one still
    reads every step), so a fraction f costs floor + 1 - (1 - f)^decisions."""
    share = min(max(target - floor, 0.0), 1.0)
    f = 1.0 - (1.0 - share) ** (1.0 / max(decisions, 1.0))
    return min(max(f, 0.02), 0.98)


def _extrapolate(low: tuple[float, float], floor: float, target: float) -> float:
    """Below the target with no probe above it yet: scale f by how far the
    cost still has to rise, a little generously, never less than +10%."""
    f, cost = low
    rise = (target - floor) / (cost - floor) if cost > floor else 4.0
    return f * max(1.1, 1.2 * rise)


def _next_fraction(low: tuple[float, float], high: tuple[float, float] | None, target: float, floor: float, interpolate: bool = True) -> float | None:
    if high is None:
        if low[0] >= 0.999:
            return None  # even escalating everything stays under the target
        return min(1.0, low[0] * 4, _extrapolate(low, floor, target))
    (f0, c0), (f1, c1) = low, high
    if f1 - f0 < 0.005:
        return None
    if not interpolate or c1 <= c0:
        f = (f0 + f1) / 2
    elif f0 > 0:  # the first escalations cost most: interpolate in log f
        f = f0 * (f1 / f0) ** ((target - c0) / (c1 - c0))
    else:
        f = f1 * (target - c0) / (c1 - c0)
    # Keep away from the ends so a flat stretch cannot stall the bracket.
    margin = (f1 - f0) / 8
    return min(max(f, f0 + margin), f1 - margin)


@dataclass
class Found:
    """What a calibration found: the search, the P(IK) threshold paired with
    the best one (with a gate), and the check on held-out problems."""

    outcome: Outcome
    pik: float | None
    check: Probe | None


class Calibrator:
    """Runs a calibration over real problems with a Bench: the small-only
    run first (the floor and the scores), then routed probes, reusing every
    problem whose small-only trace never escalates (greedy decoding only)."""

    def __init__(self, bench: Any, router: str, signal: str | None, out: Any, greedy: bool, pik: Any = None, large: list[dict] | None = None) -> None:
        self.bench, self.router, self.signal, self.out, self.greedy, self.pik = bench, router, signal, out, greedy, pik
        self.small_done: dict[str, dict] = {}  # problem key -> small-only record
        # With the large model's own runs (the route advisor has them), cost is
        # against those, as the advisor grades it; else against the estimate
        # every record carries (the large model's reading and writing of the kept steps).
        self.reference = {r["key"]: r for r in large} if large else None

    def run(self, route: Any, problems: list, what: str) -> tuple[Probe, list[dict]]:
        """One route over `problems`, as a Probe of its cost and accuracy."""
        from steer_cli import stats

        reuse = None
        if route.router != "small" and self.greedy and route.pik is None:  # P(IK) adds its own pass: nothing to reuse
            if any(p.key not in self.small_done for p in problems):
                self.run(Route("small"), problems, what)  # with its own progress bar: it is the long part

            def reuse(item: Any) -> dict | None:
                record = self.small_done[item.key]
                return {**record, "router": route.router, "reused": "small"} if stays_small(route.router, self.signal, route.threshold, record) else None

        with self.out.counter(f"{what} {route.label}", len(problems), every=10, transient=True) as bar:
            records = self.bench.records(route, problems, lambda reused: bar.advance(reused=reused), reuse)
        if route.router == "small":
            self.small_done.update((r["key"], r) for r in records)
        unit = self.bench.session.unit
        s = stats.summarize(route.label, records, self.reference, meter=self.bench.session.meter)
        probe = Probe(route.threshold if route.threshold is not None else 0.0, s.cost(unit) or 0.0, accuracy(records), s.n, s.cost_ses[unit])
        self.out.note(f"{what} {route.label}: {line(probe)}")
        return probe, records

    def calibrate(self, items: list, held: list, target: float, tolerance: float, rounds: int) -> Found:
        floor, small_records = self.run(Route("small"), items, "calibration")
        scores = scores_of(self.router, self.signal, small_records)
        # With P(IK) the pair of thresholds moves along one line: both are the
        # same quantile f of their own signal over the calibration problems.
        engine = self.bench.session.engines[0]
        pik_scores = [self.pik.predict(engine.embed_prompt(i.question), i.question) for i in items] if self.pik else []
        paired: dict[float, float | None] = {}

        def to_threshold(f: float) -> float:
            t = round(quantile(scores, f), 4)
            paired[t] = round(quantile(pik_scores, f), 4) if self.pik else None
            return t

        outcome = search(lambda t: self.run(Route(self.router, t, self.signal, paired.get(t)), items, "calibration")[0],
                         target, floor.cost, to_threshold, tolerance, rounds, decisions_per_query(self.router, small_records))
        pik = paired.get(outcome.best.threshold)
        check = self.run(Route(self.router, outcome.best.threshold, self.signal, pik), held, "held-out")[0] if held else None
        return Found(outcome, pik, check)


def line(probe: Probe) -> str:
    graded = "no gold answers" if probe.accuracy is None else f"{probe.accuracy:.1%}"
    return f"relative cost {probe.cost:.3f} ± {probe.cost_se:.3f} (s.e.) · accuracy {graded} (n={probe.n})"
