"""Routers: before each step, pick the tier (0 = smallest) that writes it.

The interface is RouteLLM's: a router scores the decision point and compares
the score with a threshold. Scores are confidences in [0, 1]; below the
threshold means "not confident enough here, go one tier up".
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from collections.abc import Callable

from steer_cli.errors import UsageError
from steer_cli.signals import SIGNALS, NextToken, confidence

if TYPE_CHECKING:
    from pathlib import Path


    from steer_cli.pik import PikModel
    from steer_cli.policy import Policy, Trace


@dataclass(frozen=True)
class Decision:
    tier: int
    score: float | None = None  # the confidence the decision was made on
    by: str = "pik"  # what `score` is, where a query's first tier is decided (records name it)


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
    no draft, keeps every answer, and lets tier 0 start every problem."""

    level = "step"
    reviews = False

    def review(self, draft: Draft) -> Decision:
        return Decision(tier=draft.tier)

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision:
        return Decision(tier=0)

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision:
        return Decision(tier=tier)


@dataclass
class Gated:
    """The P(IK) gate (`+pik`) in front of any router: a query P(IK) judges
    hopeless for tier 0 is solved by the tiers above without it; the rest go
    to the router as they are. The embedding pass is paid only here."""

    inner: Router
    pik: PikModel
    threshold: float

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def level(self) -> str:
        return self.inner.level

    @property
    def reviews(self) -> bool:
        return self.inner.reviews

    def decide(self, point: DecisionPoint) -> Decision:
        return self.inner.decide(point)

    def review(self, draft: Draft) -> Decision:
        return self.inner.review(draft)

    def keep(self, confidence: float | None, tier: int, n_tiers: int) -> Decision:
        return self.inner.keep(confidence, tier, n_tiers)

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision:
        """1 when P(IK) says tier 0 will not know; else what the router says."""
        if n_tiers < 2:
            return self.inner.first_tier(embed, problem, n_tiers)
        score = round(self.pik.predict(embed(), problem), 6)
        if score < self.threshold:
            return Decision(tier=1, score=score)
        inner = self.inner.first_tier(embed, problem, n_tiers)
        return inner if inner.tier > 0 else Decision(tier=0, score=score)


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


def mix_draw(problem: str) -> float:
    """A problem's fixed draw in [0, 1): from a hash of its text, so every run
    on every machine (and every --seed) sends the same queries up."""
    digest = hashlib.sha256(problem.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def mix_up(problem: str, share: float) -> bool:
    """Whether `mix@share` sends this problem to the top tier."""
    return round(mix_draw(problem), 6) < share


@dataclass
class MixRouter(RouterBase):
    """Random mixing of whole queries, the line every router is judged
    against and a legitimate choice of its own: a share `threshold` of the
    queries, picked by a hash of the problem (mix_draw), is solved by the top
    tier alone, the rest by the smallest alone."""

    threshold: float  # p, the share sent to the top tier
    name: str = "mix"

    def first_tier(self, embed: Callable[[], Any], problem: str, n_tiers: int) -> Decision:
        return Decision(tier=n_tiers - 1 if mix_up(problem, self.threshold) else 0, score=round(mix_draw(problem), 6), by="mix")

    def decide(self, point: DecisionPoint) -> Decision:
        return Decision(tier=0)


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
    else the next tier solves the problem afresh. With a P(IK) gate in front
    (Gated), a query it judges hopeless for the smallest tier skips that tier
    before it spends anything."""

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
    While training, `policy` is the trainer's stand-in (rollouts.Chooser)."""

    threshold: float
    policy: Policy | None = None
    name: str = "policy"
    reviews = True

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
        from steer_cli.policy import features

        if self.policy is None:
            raise UsageError("the policy router has no policy", "pass --policy FILE (from `steer policy train`)")
        return self.policy.act(node, features(trace), self.threshold)


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


def _mix_scores(signal: str | None, records: list[dict]) -> list[float]:
    return [mix_draw(r["problem"]) for r in records if "steps" in r]


def _mix_stays(signal: str | None, threshold: float, record: dict) -> bool:
    return not mix_up(record["problem"], threshold)


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


def _make_trim(threshold: float, signal: str, seed: int, artifact: Any = None) -> Router:
    prm_url = os.environ.get("STEER_PRM_URL")
    if signal == "prm" and not prm_url:
        raise UsageError("--signal prm needs a process reward model endpoint", "set STEER_PRM_URL=http://host:port/score")
    return TrimRouter(threshold=threshold, signal=signal, prm_url=prm_url)


@dataclass(frozen=True)
class ArtifactSpec:
    """A trained file some router (or the P(IK) gate) reads: how it loads, how
    it is checked against the tiers it would route, what of it keys records,
    and the threshold a route takes from it when none is named."""

    kind: str  # its name in `--trained KIND=FILE`
    load: Callable[[Path], Any]  # format-checked, before any model loads
    check: Callable[[Any, list], None] = lambda artifact, engines: None  # refuse one trained for other models
    key: Callable[[Any], Any] = lambda artifact: None  # what of it changes a run's records
    threshold: Callable[[Any, Any], float | None] = lambda artifact, defaults: None  # artifact, models.yaml defaults
    train: str = ""  # the command that makes one, for error messages


@dataclass(frozen=True)
class RouterSpec:
    """Everything steer knows about a router, in one place: how to build it,
    what it reads (signals, a trained file), what its threshold means, and how
    calibration probes it. CLI help, route validation and serve read it."""

    name: str
    make: Callable[[float, str, int, Any], Router]  # threshold, signal, seed, loaded artifact (or None)
    signals: tuple[str, ...] = ()  # what --signal may name; the first is the default
    threshold: float | None = None  # the fallback threshold; None: the router has none (and takes no gate)
    rule: str = ""  # the legend: what falling below the threshold does
    per_query: bool = False  # one routing decision per query (calibration's cost model)
    needs: ArtifactSpec | None = None  # a trained file it cannot run without
    scores: Callable[[str | None, list[dict]], list[float]] = lambda signal, records: []
    stays_small: Callable[[str | None, float, dict], bool] = lambda signal, threshold, record: False

    @property
    def fixed(self) -> bool:
        """One tier always (small, large): no threshold, no signal, no gate."""
        return self.threshold is None


def _load_policy(path: Path) -> Any:
    from steer_cli import policy

    return policy.load(path)


def _check_policy(trained: Any, engines: list) -> None:
    from steer_cli.policy import check_models

    check_models(trained, [e.identity for e in engines], [e.name for e in engines])


def _load_pik(path: Path) -> Any:
    from steer_cli import pik

    return pik.load(path)


def _check_pik(model: Any, engines: list) -> None:
    from steer_cli.pik import check_engine

    check_engine(model, engines[0])


POLICY = ArtifactSpec("policy", _load_policy, _check_policy, key=lambda p: p.body(), threshold=lambda p, defaults: p.threshold, train="steer policy train")
# The P(IK) gate in front of any routing router (`+pik`): not a router, a trained file all of them may read.
def _pik_threshold(model: Any, defaults: Any) -> float:
    from steer_cli.pik import default_threshold

    return default_threshold(model, defaults)


PIK = ArtifactSpec("pik", _load_pik, _check_pik, key=lambda m: m.identity(), threshold=_pik_threshold, train="steer pik train")

REGISTRY: dict[str, RouterSpec] = {}
ARTIFACTS: dict[str, ArtifactSpec] = {PIK.kind: PIK}


def register(entry: RouterSpec) -> RouterSpec:
    """Add a router (and the trained file it reads) to what every command,
    route and server knows: a new router is its module plus this call."""
    REGISTRY[entry.name] = entry
    if entry.needs is not None:
        ARTIFACTS[entry.needs.kind] = entry.needs
    return entry


for _entry in (
    RouterSpec("small", lambda t, s, seed, a: FixedRouter(name="small", top=False)),
    RouterSpec("large", lambda t, s, seed, a: FixedRouter(name="large", top=True)),
    RouterSpec("steer", lambda t, s, seed, a: SteerRouter(threshold=t, signal=s), tuple(SIGNALS), 0.5,
               "{signal} before a step < {threshold} → a larger model writes it", scores=_steer_scores, stays_small=_steer_stays),
    RouterSpec("random", lambda t, s, seed, a: RandomRouter(threshold=t, seed=seed), (), 0.5, "each step goes to the top tier with probability {threshold}"),
    RouterSpec("mix", lambda t, s, seed, a: MixRouter(threshold=t), (), 0.5, "a share {threshold} of the queries (by a hash of the problem) → the top tier alone",
               per_query=True, scores=_mix_scores, stays_small=_mix_stays),
    RouterSpec("trim", _make_trim, ("self", "self-min", "verify", "verify-min", "prm"), 0.5,
               "{signal} score of a draft < {threshold} → discarded, a larger model rewrites it", scores=_trim_scores, stays_small=_trim_stays),
    RouterSpec("cascade", lambda t, s, seed, a: CascadeRouter(threshold=t), ("answer",), 0.5,
               "P(T) of an answer < {threshold} → the next tier solves the problem", per_query=True, scores=_cascade_scores, stays_small=_cascade_stays),
    RouterSpec("policy", lambda t, s, seed, a: PolicyRouter(threshold=t, policy=a), (), 0.5,
               "learned policy: P(cheap action) < {threshold} → verify, reject or escalate", needs=POLICY),
):
    register(_entry)


def load_plugins() -> None:
    """Routers from other packages, each a module that calls `register`:
    those installed under the `steer.routers` entry point, and the modules
    named in STEER_PLUGINS (comma-separated; for a router not packaged yet)."""
    from importlib import import_module, metadata

    loaders = [ep.load for ep in metadata.entry_points(group="steer.routers")]
    loaders += [lambda name=name.strip(): import_module(name) for name in os.environ.get("STEER_PLUGINS", "").split(",") if name.strip()]
    for load in loaders:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin is the user's to hear about, in one line
            raise UsageError(f"a router plugin failed to load: {type(exc).__name__}: {exc}", "fix the plugin, or unset STEER_PLUGINS") from None



def spec(name: str) -> RouterSpec:
    if name not in REGISTRY:
        raise UsageError(f"unknown router {name!r}", f"use one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names(fixed: bool | None = None) -> list[str]:
    """The registered routers; `fixed` False: only those with a threshold."""
    return [n for n, e in REGISTRY.items() if fixed is None or e.fixed == fixed]


def with_signals() -> list[str]:
    return [n for n, e in REGISTRY.items() if e.signals]


def default_signal(router: str) -> str | None:
    entry = REGISTRY.get(router)
    return entry.signals[0] if entry is not None and entry.signals else None


def help_text() -> str:
    """The --router help, read from the registry so it never lags behind it."""
    trained = [f"{n} (with --trained {e.needs.kind}=FILE)" for n, e in REGISTRY.items() if e.needs is not None]
    plain = [n for n, e in REGISTRY.items() if e.needs is None]
    return f"{', '.join(plain + trained)}; default from models.yaml."


def signal_help() -> str:
    return "What the router reads. " + "; ".join(f"{n}: {', '.join(e.signals)}" for n, e in REGISTRY.items() if e.signals) + "."


def make_router(name: str, threshold: float | None = None, signal: str | None = None, seed: int = 0, artifact: Any = None) -> Router:
    """Build a router by name; `threshold`/`signal` None take the router's defaults."""
    entry = spec(name)
    signal = signal or default_signal(name)
    if entry.signals and signal not in entry.signals:
        raise UsageError(f"router {name} has no signal {signal!r}", f"use one of: {', '.join(entry.signals)}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"threshold {threshold} is outside [0, 1]", "pass a value like 0.5")
    if entry.needs is not None and artifact is None:
        raise UsageError(f"router {name} needs a trained {entry.needs.kind} file", f"pass --trained {entry.needs.kind}=FILE (from `{entry.needs.train}`)")
    return entry.make(entry.threshold or 0.0 if threshold is None else threshold, signal or "", seed, artifact)
