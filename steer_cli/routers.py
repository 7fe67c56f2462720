"""Routers: before each step, pick the tier (0 = smallest) that writes it.

The interface is RouteLLM's: a router scores the decision point and compares
the score with a threshold. Scores are confidences in [0, 1]; below the
threshold means "not confident enough here, go one tier up".
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Callable

from steer_cli.errors import UsageError
from steer_cli.signals import SIGNALS, NextToken, confidence

if TYPE_CHECKING:
    from steer_cli.pik import PikModel


@dataclass(frozen=True)
class Decision:
    tier: int
    score: float | None = None  # the confidence the decision was made on


@dataclass
class DecisionPoint:
    """What a router may look at before a step. Distributions are lazy (and
    memoised) so a router that never asks costs no evaluation."""

    step_index: int
    n_tiers: int
    fetch: Callable[[int], NextToken]  # tier -> next-token distribution
    seen: dict[int, NextToken] = field(default_factory=dict)

    def next_token(self, tier: int) -> NextToken:
        if tier not in self.seen:
            self.seen[tier] = self.fetch(tier)
        return self.seen[tier]


class Router(Protocol):
    name: str

    def decide(self, point: DecisionPoint) -> Decision: ...


@dataclass
class FixedRouter:
    """Always the same tier: `small` (tier 0) or `large` (top tier)."""

    name: str
    top: bool

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=point.n_tiers - 1 if self.top else 0)


@dataclass
class SteerRouter:
    """STEER (arXiv 2511.06190): the tier's own next-token confidence at the
    step start decides; below threshold the step escalates one tier, and the
    next tier is asked the same question, up to the top tier."""

    threshold: float
    signal: str = "maxprob"
    name: str = "steer"

    def decide(self, point: DecisionPoint) -> Decision:
        score = None
        for tier in range(point.n_tiers - 1):
            score = confidence(self.signal, point.next_token(tier))
            if score >= self.threshold:
                return Decision(tier=tier, score=score)
        return Decision(tier=point.n_tiers - 1, score=score)


@dataclass
class RandomRouter:
    """The honest baseline: each step goes to the top tier with probability p."""

    threshold: float  # p
    seed: int = 0
    name: str = "random"

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def decide(self, point: DecisionPoint) -> Decision:
        score = self._rng.random()
        return Decision(tier=point.n_tiers - 1 if score < self.threshold else 0, score=score)


@dataclass
class Draft:
    """A step a tier has just written, up for review."""

    problem: str
    previous: list[str]  # the texts of the steps before it
    text: str
    token_logprobs: list[float]  # the writer's own
    tier: int
    n_tiers: int  # tiers the budget still allows
    score_by: Callable[[int, str], list[float]]  # tier -> its log-probs of the text (prefill only)


@dataclass
class TrimRouter:
    """TRIM (arXiv 2601.10245): the smallest tier drafts every step; a scorer
    judges the draft; below the threshold it is discarded and the next tier up
    rewrites the step (itself judged in turn, up to the top tier)."""

    threshold: float
    signal: str = "self"
    prm_url: str | None = None
    name: str = "trim"

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=0)

    def review(self, draft: Draft) -> Decision:
        if draft.tier >= draft.n_tiers - 1 or not draft.text.strip():
            return Decision(tier=draft.tier)
        score = self.score(draft)
        return Decision(tier=draft.tier if score >= self.threshold else draft.tier + 1, score=score)

    def score(self, draft: Draft) -> float:
        kind, _, stat = self.signal.partition("-")
        if kind == "prm":
            from steer_cli.prm import score_step

            return score_step(self.prm_url, draft.problem, draft.previous, draft.text)
        logprobs = draft.score_by(draft.tier + 1, draft.text) if kind == "verify" else draft.token_logprobs
        if not logprobs:
            return 1.0
        value = min(logprobs) if stat == "min" else sum(logprobs) / len(logprobs)
        return math.exp(value)


@dataclass
class CascadeRouter:
    """Confidence cascade (arXiv 2602.22090), query level: a tier's whole
    answer is kept when its answer confidence P(T) reaches the threshold,
    else the next tier solves the problem afresh. With a P(IK) classifier,
    a query it judges hopeless for the smallest tier (P(IK) below
    `pik_threshold`) skips that tier before it spends anything."""

    threshold: float
    pik: PikModel | None = None
    pik_threshold: float = 0.0
    name: str = "cascade"
    level: str = "query"

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=0)

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision:
        """The tier that answers first: 0, or 1 when P(IK) says tier 0 will not know."""
        if self.pik is None or n_tiers < 2:
            return Decision(tier=0)
        score = round(self.pik.predict(embed(), problem), 6)
        return Decision(tier=0 if score >= self.pik_threshold else 1, score=score)

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision:
        score = 0.0 if confidence is None else confidence
        if tier >= n_tiers - 1 or score >= self.threshold:
            return Decision(tier=tier, score=score)
        return Decision(tier=tier + 1, score=score)


ROUTERS = ("small", "large", "steer", "random", "trim", "cascade")
THRESHOLDED = ("steer", "random", "trim", "cascade")
DEFAULT_THRESHOLDS = {"steer": 0.5, "random": 0.5, "trim": 0.5, "cascade": 0.5}
# What each router's --signal may name; the first is its default.
ROUTER_SIGNALS: dict[str, tuple[str, ...]] = {
    "steer": tuple(SIGNALS),
    "trim": ("self", "self-min", "verify", "verify-min", "prm"),
    "cascade": ("answer",),
}


def default_signal(router: str) -> str | None:
    return ROUTER_SIGNALS[router][0] if router in ROUTER_SIGNALS else None


@dataclass(frozen=True)
class Route:
    """A router with its threshold and signal: what `make_router` builds, and
    the label (`steer:entropy@0.36`) that records and tables go by."""

    router: str
    threshold: float | None = None
    signal: str | None = None
    pik: float | None = None  # cascade only: the P(IK) threshold, None = no P(IK)

    @property
    def label(self) -> str:
        name = self.router if self.signal is None else f"{self.router}:{self.signal}"
        name = name if self.threshold is None else f"{name}@{self.threshold:g}"
        return name if self.pik is None else f"{name}+pik@{self.pik:g}"

    def build(self, seed: int = 0, pik: PikModel | None = None) -> Router:
        if self.pik is not None and pik is None:
            raise UsageError(f"{self.label} needs a P(IK) classifier", "pass --pik FILE (from `steer pik train`)")
        router = make_router(self.router, self.threshold, self.signal, seed)
        if self.pik is not None and isinstance(router, CascadeRouter):
            if not 0.0 <= self.pik <= 1.0:
                raise UsageError(f"P(IK) threshold {self.pik:g} is outside [0, 1]", "pass a value like 0.2")
            router.pik, router.pik_threshold = pik, self.pik
        return router


def fill(route: Route, defaults) -> Route:
    """`route` with what was left unnamed taken from models.yaml's defaults
    (then the router's own), so a label always says what actually ran."""
    if route.router in ("small", "large"):
        return Route(route.router)
    if route.pik is not None and route.router != "cascade":
        raise UsageError(f"router {route.router} does not read P(IK)", "use +pik with cascade only, e.g. cascade@0.999+pik@0.2")
    threshold = route.threshold
    if threshold is None:
        threshold = defaults.thresholds.get(route.router, DEFAULT_THRESHOLDS.get(route.router))
    return Route(route.router, threshold, route.signal or defaults.signals.get(route.router) or default_signal(route.router), route.pik)


def make_router(name: str, threshold: float | None = None, signal: str | None = None, seed: int = 0) -> Router:
    """Build a router by name; `threshold`/`signal` None take the router's defaults."""
    if name not in ROUTERS:
        raise UsageError(f"unknown router {name!r}", f"use one of: {', '.join(ROUTERS)}")
    allowed = ROUTER_SIGNALS.get(name)
    signal = signal or default_signal(name)
    if allowed and signal not in allowed:
        raise UsageError(f"router {name} has no signal {signal!r}", f"use one of: {', '.join(allowed)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold {threshold} is outside [0, 1]", "pass a value like 0.5")
    t = DEFAULT_THRESHOLDS.get(name, 0.0) if threshold is None else threshold
    if name in ("small", "large"):
        return FixedRouter(name=name, top=name == "large")
    if name == "steer":
        return SteerRouter(threshold=t, signal=signal or "maxprob")
    if name == "trim":
        prm_url = os.environ.get("STEER_PRM_URL")
        if signal == "prm" and not prm_url:
            raise UsageError("--signal prm needs a process reward model endpoint", "set STEER_PRM_URL=http://host:port/score")
        return TrimRouter(threshold=t, signal=signal or "self", prm_url=prm_url)
    if name == "cascade":
        return CascadeRouter(threshold=t)
    return RandomRouter(threshold=t, seed=seed)
