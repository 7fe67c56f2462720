"""Routers: before each step, pick the tier (0 = smallest) that writes it.

The interface is RouteLLM's: a router scores the decision point and compares
the score with a threshold. Scores are confidences in [0, 1]; below the
threshold means "not confident enough here, go one tier up".
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol
from collections.abc import Callable

from steer_cli.errors import UsageError
from steer_cli.signals import SIGNALS, NextToken, confidence


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


ROUTERS = ("small", "large", "steer", "random")
DEFAULT_THRESHOLDS = {"steer": 0.5, "random": 0.5}


def make_router(
    name: str, threshold: float | None = None, signal: str = "maxprob", seed: int = 0
) -> Router:
    """Build a router by name; `threshold` None takes the router's default."""
    if name not in ROUTERS:
        raise UsageError(f"unknown router {name!r}", f"use one of: {', '.join(ROUTERS)}")
    if signal not in SIGNALS:
        raise UsageError(f"unknown confidence signal {signal!r}", f"use one of: {', '.join(SIGNALS)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold {threshold} is outside [0, 1]", "pass a value like 0.5")
    t = DEFAULT_THRESHOLDS.get(name, 0.0) if threshold is None else threshold
    if name in ("small", "large"):
        return FixedRouter(name=name, top=name == "large")
    if name == "steer":
        return SteerRouter(threshold=t, signal=signal)
    return RandomRouter(threshold=t, seed=seed)
