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
    import numpy as np

    from steer_cli.pik import PikModel
    from steer_cli.policy import Policy, Trace


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
    """What the solver calls. `level` "step" routers pick each step's writer;
    "query" routers (the cascade) let one tier solve the whole problem and
    are asked `first_tier` and `keep`. `reviews` routers judge every draft."""

    name: str
    level: str
    reviews: bool

    def decide(self, point: DecisionPoint) -> Decision: ...

    def review(self, draft: Draft) -> Decision: ...

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision: ...

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision: ...


class RouterBase:
    """What a router does where it has nothing to add: routes by step, reviews
    no draft, keeps every answer, and lets tier 0 start the problem unless a
    P(IK) gate (`+pik`, any router) judges it hopeless for tier 0, in which
    case the tiers above solve it without tier 0."""

    level = "step"
    reviews = False
    pik: PikModel | None = None
    pik_threshold: float = 0.0

    def review(self, draft: Draft) -> Decision:
        return Decision(tier=draft.tier)

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision:
        """0, or 1 when P(IK) says tier 0 will not know (the pass is paid only with a gate)."""
        if self.pik is None or n_tiers < 2:
            return Decision(tier=0)
        score = round(self.pik.predict(embed(), problem), 6)
        return Decision(tier=0 if score >= self.pik_threshold else 1, score=score)

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision:
        return Decision(tier=tier)


@dataclass
class FixedRouter(RouterBase):
    """Always the same tier: `small` (tier 0) or `large` (top tier)."""

    name: str
    top: bool

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=point.n_tiers - 1 if self.top else 0)


@dataclass
class SteerRouter(RouterBase):
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
class RandomRouter(RouterBase):
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
class TrimRouter(RouterBase):
    """TRIM (arXiv 2601.10245): the smallest tier drafts every step; a scorer
    judges the draft; below the threshold it is discarded and the next tier up
    rewrites the step (itself judged in turn, up to the top tier)."""

    threshold: float
    signal: str = "self"
    prm_url: str | None = None
    name: str = "trim"
    reviews = True

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
class CascadeRouter(RouterBase):
    """Confidence cascade (arXiv 2602.22090), query level: a tier's whole
    answer is kept when its answer confidence P(T) reaches the threshold,
    else the next tier solves the problem afresh. With a P(IK) classifier,
    a query it judges hopeless for the smallest tier (P(IK) below
    `pik_threshold`) skips that tier before it spends anything (RouterBase)."""

    threshold: float
    name: str = "cascade"
    level = "query"

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=0)

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision:
        score = 0.0 if confidence is None else confidence
        if tier >= n_tiers - 1 or score >= self.threshold:
            return Decision(tier=tier, score=score)
        return Decision(tier=tier + 1, score=score)


@dataclass
class PolicyRouter(RouterBase):
    """Policy-guided stepwise routing (arXiv 2605.06116): a trained policy
    (policy.py) looks at the trace before each step (draft or escalate) and
    at each draft of the smallest tier (accept, buy a verification by the
    next tier, or reject). It decides between the smallest tier and the next.
    With `explore` it samples its actions and logs them (training)."""

    threshold: float
    policy: Policy | None = None
    name: str = "policy"
    reviews = True
    explore: np.random.Generator | None = None
    log: list = field(default_factory=list)  # (node, features, action index) when exploring

    def __post_init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._tokens = self._escalated = 0
        self._previous, self._rejected = "none", False
        self._trace: Trace | None = None

    def decide(self, point: DecisionPoint) -> Decision:
        from steer_cli.policy import Trace

        if point.step_index == 0:
            self._reset()
        dist = point.next_token(0)
        self._trace = Trace({name: fn(dist) for name, fn in SIGNALS.items()}, point.step_index, self._tokens, self._escalated, self._previous)
        action, score = self._choose("pre", self._trace)
        return Decision(tier=0 if action == "draft" else 1, score=score)

    def review(self, draft: Draft) -> Decision:
        from dataclasses import replace

        if draft.tier != 0 or draft.n_tiers < 2 or self._trace is None:
            self._after(draft, "accepted" if draft.tier == 0 else "rejected" if self._rejected else "escalated")
            return Decision(tier=draft.tier)
        trace = replace(self._trace, draft_logprobs=draft.token_logprobs, draft_text=draft.text)
        action, score = self._choose("draft", trace)
        verified = action == "verify"
        if verified:
            trace.verify_logprobs = draft.score_by(1, draft.text)
            action, score = self._choose("verified", trace)
        if action == "accept":
            self._after(draft, "verified" if verified else "accepted")
            return Decision(tier=0, score=score)
        self._rejected = True
        return Decision(tier=1, score=score)

    def _after(self, draft: Draft, previous: str) -> None:
        self._tokens += len(draft.token_logprobs)
        self._escalated += draft.tier > 0
        self._previous, self._rejected, self._trace = previous, False, None

    def _choose(self, node: str, trace: Trace) -> tuple[str, float]:
        from steer_cli.policy import NODES, features

        if self.policy is None:
            raise UsageError("the policy router has no policy", "pass --policy FILE (from `steer policy train`)")
        x = features(trace)
        if self.explore is None:
            return self.policy.act(node, x, self.threshold)
        index, p = self.policy.sample(node, x, self.explore)
        self.log.append((node, x, index))
        return NODES[node][index], float(p[0])


# -- the registry: one entry per router ------------------------------------------
# Calibration reads a router's scores from a small-only run's records: its
# traces (`scores`) and whether a problem would never leave the smallest tier
# (`stays_small`; with greedy decoding such a problem *is* its small-only run).
# Scores in records are rounded; one this close to the threshold counts as escalating.
_ROUNDING = 1e-4


def _steer_scores(signal: str | None, records: list[dict]) -> list[float]:
    return [s["signals"][signal] for r in records if "steps" in r for s in r["steps"] if s.get("signals")]


def _steer_stays(signal: str | None, threshold: float, record: dict) -> bool:
    scores = _steer_scores(signal, [record])
    if len(scores) < len(record["steps"]):
        return False  # a step without its trace
    if record["finish"] == "eos" and record["steps"] and record["steps"][-1]["finish"] != "eos":
        return False  # it ended at a step start, a decision point whose score was not recorded
    return all(score >= threshold + _ROUNDING for score in scores)


def _trim_scores(signal: str | None, records: list[dict]) -> list[float]:
    if signal not in ("self", "self-min"):
        return []  # verify and prm scores need a model the small-only run never asked
    key = "mean_logprob" if signal == "self" else "min_logprob"
    return [math.exp(s[key]) for r in records if "steps" in r for s in r["steps"]]


def _trim_stays(signal: str | None, threshold: float, record: dict) -> bool:
    return signal in ("self", "self-min") and all(score >= threshold + _ROUNDING for score in _trim_scores(signal, [record]))


def _cascade_scores(signal: str | None, records: list[dict]) -> list[float]:
    return [r.get("answer_confidence") or 0.0 for r in records if "steps" in r]


def _cascade_stays(signal: str | None, threshold: float, record: dict) -> bool:
    return (record.get("answer_confidence") or 0.0) >= threshold + _ROUNDING


def _make_trim(threshold: float, signal: str, seed: int) -> Router:
    prm_url = os.environ.get("STEER_PRM_URL")
    if signal == "prm" and not prm_url:
        raise UsageError("--signal prm needs a process reward model endpoint", "set STEER_PRM_URL=http://host:port/score")
    return TrimRouter(threshold=threshold, signal=signal, prm_url=prm_url)


@dataclass(frozen=True)
class RouterSpec:
    """Everything steer knows about a router, in one place: how to build it,
    what it reads, what its threshold means, and how calibration probes it."""

    name: str
    make: Callable[[float, str, int], Router]
    signals: tuple[str, ...] = ()  # what --signal may name; the first is the default
    threshold: float | None = None  # the fallback threshold; None: the router has none
    rule: str = ""  # the legend: what falling below the threshold does
    per_query: bool = False  # one routing decision per query (calibration's cost model)
    scores: Callable[[str | None, list[dict]], list[float]] = lambda signal, records: []
    stays_small: Callable[[str | None, float, dict], bool] = lambda signal, threshold, record: False


REGISTRY: dict[str, RouterSpec] = {
    spec.name: spec
    for spec in (
        RouterSpec("small", lambda t, s, seed: FixedRouter(name="small", top=False)),
        RouterSpec("large", lambda t, s, seed: FixedRouter(name="large", top=True)),
        RouterSpec("steer", lambda t, s, seed: SteerRouter(threshold=t, signal=s), tuple(SIGNALS), 0.5,
                   "{signal} before a step < {threshold} → a larger model writes it", scores=_steer_scores, stays_small=_steer_stays),
        RouterSpec("random", lambda t, s, seed: RandomRouter(threshold=t, seed=seed), (), 0.5, "each step goes to the top tier with probability {threshold}"),
        RouterSpec("trim", _make_trim, ("self", "self-min", "verify", "verify-min", "prm"), 0.5,
                   "{signal} score of a draft < {threshold} → discarded, a larger model rewrites it", scores=_trim_scores, stays_small=_trim_stays),
        RouterSpec("cascade", lambda t, s, seed: CascadeRouter(threshold=t), ("answer",), 0.5,
                   "P(T) of an answer < {threshold} → the next tier solves the problem", per_query=True, scores=_cascade_scores, stays_small=_cascade_stays),
        RouterSpec("policy", lambda t, s, seed: PolicyRouter(threshold=t), (), 0.5,
                   "learned policy: P(cheap action) < {threshold} → verify, reject or escalate"),
    )
}
ROUTERS = tuple(REGISTRY)
THRESHOLDED = tuple(name for name, spec in REGISTRY.items() if spec.threshold is not None)
DEFAULT_THRESHOLDS = {name: spec.threshold for name, spec in REGISTRY.items() if spec.threshold is not None}
ROUTER_SIGNALS: dict[str, tuple[str, ...]] = {name: spec.signals for name, spec in REGISTRY.items() if spec.signals}


def spec(name: str) -> RouterSpec:
    if name not in REGISTRY:
        raise UsageError(f"unknown router {name!r}", f"use one of: {', '.join(ROUTERS)}")
    return REGISTRY[name]


def default_signal(router: str) -> str | None:
    return ROUTER_SIGNALS[router][0] if router in ROUTER_SIGNALS else None


@dataclass(frozen=True)
class Route:
    """A router with its threshold and signal: what `make_router` builds, and
    the label (`steer:entropy@0.36`) that records and tables go by."""

    router: str
    threshold: float | None = None
    signal: str | None = None
    pik: float | None = None  # the P(IK) gate's threshold, None = no gate

    @property
    def label(self) -> str:
        name = self.router if self.signal is None else f"{self.router}:{self.signal}"
        name = name if self.threshold is None else f"{name}@{self.threshold:g}"
        return name if self.pik is None else f"{name}+pik@{self.pik:g}"

    def build(self, seed: int = 0, pik: PikModel | None = None, policy: Policy | None = None) -> Router:
        if self.pik is not None and pik is None:
            raise UsageError(f"{self.label} needs a P(IK) classifier", "pass --pik FILE (from `steer pik train`)")
        router = make_router(self.router, self.threshold, self.signal, seed)
        if isinstance(router, PolicyRouter):
            if policy is None:
                raise UsageError("router policy needs a trained policy", "pass --policy FILE (from `steer policy train`)")
            router.policy = policy
        if self.pik is not None:
            if not 0.0 <= self.pik <= 1.0:
                raise UsageError(f"P(IK) threshold {self.pik:g} is outside [0, 1]", "pass a value like 0.2")
            router.pik, router.pik_threshold = pik, self.pik
        return router


def fill(route: Route, defaults, policy: Policy | None = None) -> Route:
    """`route` with what was left unnamed taken from models.yaml's defaults
    (then, for a policy route, the policy file's calibrated threshold; then the
    router's own), so a label always says what actually ran."""
    refuse_fixed_pik(route.router, route.pik is not None)
    if route.router in ("small", "large"):
        return Route(route.router)
    threshold = route.threshold
    if threshold is None:
        threshold = defaults.thresholds.get(route.router)
    if threshold is None and route.router == "policy" and policy is not None:
        threshold = policy.threshold
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS.get(route.router)
    return Route(route.router, threshold, route.signal or defaults.signals.get(route.router) or default_signal(route.router), route.pik)


def refuse_fixed_pik(router: str, gated: bool) -> None:
    """A P(IK) gate needs a router to hand the other queries to."""
    if gated and router in ("small", "large"):
        raise UsageError(f"router {router} does not read P(IK)", "put +pik on a routing router, e.g. steer+pik@0.2 or cascade@0.999+pik@0.2")


def make_router(name: str, threshold: float | None = None, signal: str | None = None, seed: int = 0) -> Router:
    """Build a router by name; `threshold`/`signal` None take the router's defaults."""
    entry = spec(name)
    signal = signal or default_signal(name)
    if entry.signals and signal not in entry.signals:
        raise UsageError(f"router {name} has no signal {signal!r}", f"use one of: {', '.join(entry.signals)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold {threshold} is outside [0, 1]", "pass a value like 0.5")
    return entry.make(entry.threshold or 0.0 if threshold is None else threshold, signal or "", seed)
