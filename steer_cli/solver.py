"""The step loop: route, write one step, hand it to every tier, repeat.

`Solver.solve` is a generator of events so the terminal view, JSON output and
batch runs all consume the same stream; nothing here prints. Three kinds of
router drive it (see routers.py): pre-step routers pick the writer of each
step (steer, random); reviewing routers also judge each draft and may have it
rewritten a tier up (trim); query-level routers let one tier solve the whole
problem and escalate on the answer's confidence (cascade).
"""

from __future__ import annotations

import codecs
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Union
from collections.abc import Iterator

from steer_cli import loops
from steer_cli.answers import answer_span, extract_answer
from steer_cli.budget import Budget, Ledger
from steer_cli.cost import Cost, ModelCost
from steer_cli.engine import ContextFull, Engine
from steer_cli.routers import DecisionPoint, Draft, Router
from steer_cli.signals import SIGNALS
from steer_cli.units import Meter


@dataclass
class StepLimits:
    delimiter: str = "\n\n"
    max_steps: int = 24
    max_step_tokens: int = 256
    max_tokens: int = 1536  # generated tokens per problem, all tiers together
    stop_repetition: bool = True  # end a solution that loops (loops.py), finish "repetition"


@dataclass
class Step:
    index: int
    tier: int
    model: str
    text: str
    score: float | None  # the router's confidence for this step (before it, or of its draft)
    tokens: int
    mean_logprob: float
    finish: str  # delimiter | eos | step_tokens | max_tokens | context | repetition
    min_logprob: float = 0.0
    # Tier 0's confidence signals at the step start, when its distribution was
    # computed anyway (the router asked, or tier 0 wrote the step).
    signals: dict[str, float] | None = None
    # Per-token log-probs and the character offset each token ends at; kept
    # in memory for P(T), left out of records.
    token_logprobs: list[float] = field(default_factory=list, repr=False)
    token_ends: list[int] = field(default_factory=list, repr=False)


@dataclass
class Result:
    problem: str
    answer: str | None
    steps: list[Step]
    finish: str
    router: str
    cost: Cost = field(default_factory=Cost)
    budget_bound: bool = False  # a budget cut a step or kept the larger tiers out
    answer_confidence: float | None = None  # P(T): probability of the answer's tokens
    drafts: list[Step] = field(default_factory=list)  # written, then discarded (cost counted)
    # Query-level routers: each tier's whole answer and its P(T), in order;
    # with a P(IK) gate (any router), tier 0's P(IK) and whether it was skipped.
    attempts: list[dict] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    def to_dict(self) -> dict:
        record = asdict(self)
        for step in record["steps"] + record["drafts"]:
            del step["token_logprobs"], step["token_ends"]
            # The live view's names; `score` and `mean_logprob` stay as aliases for one release.
            step["confidence"] = round(math.exp(step["mean_logprob"]), 5)
            step["route_score"] = step["score"]
        return record


@dataclass
class StepStarted:
    index: int
    tier: int
    model: str
    score: float | None


@dataclass
class TextDelta:
    index: int
    text: str


@dataclass
class StepFinished:
    step: Step


@dataclass
class Discarded:
    """Steps thrown away (a rejected TRIM draft, a cascade tier's whole answer)."""

    steps: list[Step]
    score: float | None
    to_tier: int
    by: str = ""  # with no steps: what sent the query past the lower tiers (pik, mix)


@dataclass
class Solved:
    result: Result


Event = Union[StepStarted, TextDelta, StepFinished, Discarded, Solved]


@dataclass
class _Attempt:
    """One pass of the step loop: a whole routed solution, or one cascade tier's."""

    steps: list[Step] = field(default_factory=list)
    finish: str = "max_steps"
    top_tokens: int = 0  # the transcript so far in the top tier's tokens

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    @property
    def answer(self) -> str | None:
        """Only a solution that ended by itself may offer its last number as
        the answer; one cut off mid-sentence ("1. First,") must state it."""
        return extract_answer(self.text, last_number=self.finish == "eos")


class Solver:
    def __init__(self, tiers: list[Engine], router: Router, limits: StepLimits | None = None, budget: Budget | None = None, meter: Meter | None = None) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self.tiers = tiers
        self.router = router
        self.limits = limits or StepLimits()
        self.budget = budget or Budget()
        self.meter = meter or Meter(self.budget.unit)
        if self.budget.relative is not None:
            self.meter.require(tiers[1:], "--budget")
        self._budget_rates = [self.meter.rates(t, self.budget.unit) for t in tiers]
        for tier in tiers:
            tier.stop = self.limits.delimiter

    def solve(self, problem: str) -> Iterator[Event]:
        self._ledger = Ledger(self.tiers, self.budget, self._budget_rates, self._query_level, self.limits.max_tokens)
        self._problem = problem
        self._generated = 0
        self._bound = False
        self._drafts: list[Step] = []
        self._attempts: list[dict] = []
        self._attempt = _Attempt()
        self._pik: float | None = None
        started = time.perf_counter()
        for tier in self.tiers:
            tier.start(problem)
        first = yield from self._first_tier()
        if self._query_level:
            attempt = yield from self._cascade(first)
        else:
            attempt = _Attempt()
            yield from self._run_steps(attempt, list(range(first, len(self.tiers))))
        result = Result(problem, attempt.answer, attempt.steps, attempt.finish, self.router.name)
        since = self._ledger.since()
        loading = sum(s.load_s for s in since)  # a one-off, not the problem's cost
        shared = any(getattr(t, "batched", False) for t in self.tiers)  # solved beside others: its share, not the time it waited
        result.cost = self._cost(attempt, sum(s.wall_s for s in since) if shared else time.perf_counter() - started - loading)
        result.budget_bound = self._bound
        result.cost.budget = self._ledger.report(attempt.top_tokens)
        result.answer_confidence = answer_confidence(attempt.steps, attempt.finish == "eos")
        result.drafts = self._drafts
        result.attempts = self._attempts
        yield Solved(result)

    # -- the step loop ------------------------------------------------------
    def _run_steps(self, attempt: _Attempt, members: list[int]) -> Iterator[Event]:
        """Write steps with the tiers in `members` until the answer ends."""
        self._attempt = attempt
        for index in range(self.limits.max_steps):
            visible = self._visible(members, need=1)
            self._bound = self._bound or visible < len(members)
            point = DecisionPoint(index, visible, lambda t: self.tiers[members[t]].next_token())
            try:
                decision = self.router.decide(point) if len(members) > 1 else None
                tier = members[decision.tier] if decision else members[0]
                signals = _signals(point, free=tier == 0) if decision else None
                step = yield from self._write_reviewed(attempt, members, index, tier, decision.score if decision else None)
            except ContextFull:
                attempt.finish = "context"
                break
            step.signals = signals
            if step.tokens == 0:  # end of generation right at a step start
                attempt.finish = step.finish
                break
            if self.limits.stop_repetition and loops.repeated_step(step.text, [s.text for s in attempt.steps]):
                step.finish = "repetition"
            attempt.steps.append(step)
            attempt.top_tokens += step.tokens if step.tier == len(self.tiers) - 1 else self.tiers[-1].count_tokens(step.text)
            yield StepFinished(step)
            if step.finish in ("eos", "max_tokens", "context", "repetition"):
                attempt.finish = step.finish
                break

    def _write_reviewed(self, attempt: _Attempt, members: list[int], index: int, tier: int, score: float | None) -> Iterator[Event]:
        """Write a step with `tier`; a reviewing router may discard the draft
        and have the next tier up write it instead."""
        marks = [t.mark() for t in self.tiers]
        while True:
            yield StepStarted(index, tier, self.tiers[tier].name, score)
            step = yield from self._write_step(tier, index, score)
            read_by: set[int] = set()
            if not self.router.reviews or step.tokens == 0:
                break

            def score_by(t: int, text: str = step.text) -> list[float]:
                read_by.add(members[t])
                return self.tiers[members[t]].score_text(text)

            position = members.index(tier)
            visible = self._visible(members, need=step.tokens)
            self._bound = self._bound or visible < len(members)  # the budget kept a reviewer's tier out
            verdict = self.router.review(Draft(self._problem, [s.text for s in attempt.steps], step.text, step.token_logprobs, position, visible, score_by))
            if verdict.score is not None:  # the top tier's own step keeps the score that sent it there
                step.score = verdict.score
            if verdict.tier == position:
                break
            for engine, mark in zip(self.tiers, marks, strict=True):
                engine.rewind(mark)
            self._drafts.append(step)
            tier, score = members[verdict.tier], verdict.score
            yield Discarded([step], verdict.score, tier)
        if step.tokens:
            for t in members:
                if t != tier and t not in read_by:
                    self.tiers[t].append_text(step.text)
        return step

    def _write_step(self, tier: int, index: int, score: float | None) -> Iterator[Event]:
        """One step by `tier`, within the budget's room and the problem's token limit."""
        step_limit = self.limits.max_step_tokens
        room = self._room(tier)
        if room is not None and room < step_limit:
            step_limit = room
        step = yield from write_step(self.tiers[tier], tier, index, score, self.limits, step_limit, self.limits.max_tokens - self._generated)
        self._generated += step.tokens
        self._bound = self._bound or (step.finish == "step_tokens" and step_limit < self.limits.max_step_tokens)
        return step

    # -- the P(IK) gate --------------------------------------------------------
    def _first_tier(self) -> Iterator[Event]:
        """The lowest tier that works on the problem: 0, unless the router's
        P(IK) gate judges it hopeless there (its skip is recorded and shown)."""
        first = self.router.first_tier(lambda: self.tiers[0].embed_prompt(self._problem), self._problem, len(self.tiers))
        if first.tier > 0:
            self._attempts.append({"tier": 0, "model": self.tiers[0].name, "skipped": True, first.by: first.score})
            yield Discarded([], first.score, first.tier, first.by)
        elif first.score is not None and first.by == "pik":
            self._pik = first.score
            if not self._query_level:  # the cascade files it with tier 0's answer
                self._attempts.append({"tier": 0, "model": self.tiers[0].name, "pik": first.score})
        return first.tier

    # -- query level --------------------------------------------------------
    def _cascade(self, first: int) -> Iterator[Event]:
        """Each tier in turn solves the whole problem alone; the router keeps
        an answer whose confidence P(T) is high enough, else the next tier
        re-solves. A larger tier the budget cannot afford is not tried."""
        kept: _Attempt | None = None
        for tier in range(first, len(self.tiers)):
            room = self._room(tier) if tier > 0 else None
            if room is not None and room < 1:
                self._bound = True
                break
            attempt = _Attempt()
            yield from self._run_steps(attempt, [tier])
            if kept is not None:
                if attempt.answer is None and kept.answer is not None:
                    self._drafts.extend(attempt.steps)  # a budget-cut attempt with no answer
                    break
                self._drafts.extend(kept.steps)
            kept = attempt
            confidence = answer_confidence(attempt.steps, attempt.finish == "eos")
            self._attempts.append({"tier": tier, "model": self.tiers[tier].name, "answer": attempt.answer, "confidence": confidence, **({"pik": self._pik} if tier == 0 and self._pik is not None else {})})
            decision = self.router.keep(confidence, tier, len(self.tiers))
            if decision.tier == tier or tier == len(self.tiers) - 1:
                break
            yield Discarded(attempt.steps, confidence, tier + 1)
        assert kept is not None
        return kept

    # -- budget (the arithmetic is budget.Ledger's) -----------------------------
    @property
    def _query_level(self) -> bool:
        return self.router.level == "query"

    def _room(self, tier: int) -> int | None:
        return self._ledger.room(tier, self._attempt.top_tokens)

    def _visible(self, members: list[int], need: int) -> int:
        return self._ledger.visible(members, need, self._attempt.top_tokens)

    # -- cost -----------------------------------------------------------------
    def _cost(self, attempt: _Attempt, wall_s: float) -> Cost:
        """Per-model cost; the reference is the top tier's prompt plus every
        kept step in its own tokenization (counted as the steps were kept)."""
        since = self._ledger.since()
        models = [ModelCost.of(t.name, t.params, s, t.price) for t, s in zip(self.tiers, since, strict=True)]
        cost = Cost.of(models, self.tiers[-1].prompt_length() + attempt.top_tokens, self.tiers[-1].params, wall_s)
        cost.relative = self.meter.relative(self.tiers, since, self.tiers[-1].prompt_length(), attempt.top_tokens)
        if cost.relative.get(self.meter.unit) is not None:  # else FLOPs, which always can be counted
            cost.unit, cost.relative_cost = self.meter.unit, cost.relative[self.meter.unit]
        return cost


def write_step(engine: Engine, tier: int, index: int, score: float | None, limits: StepLimits, step_limit: int, left: int) -> Iterator[Event]:
    """One step by `engine`, ended by the delimiter, end of generation, a loop,
    `step_limit` tokens (finish "step_tokens") or the problem's `left` tokens
    ("max_tokens"); its text streams as TextDelta events."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    text, logprobs, ends, ids, finish = "", [], [], [], "step_tokens"
    while len(logprobs) < step_limit:
        if len(logprobs) >= left:
            finish = "max_tokens"
            break
        try:
            token = engine.sample()
        except ContextFull:
            finish = "context"
            break
        if token.eog:
            finish = "eos"
            break
        logprobs.append(token.logprob)
        ids.append(token.id)
        delta = decoder.decode(token.piece)
        text += delta
        ends.append(len(text))
        if delta:
            yield TextDelta(index, delta)
            if _ends_step(text, len(delta), limits.delimiter):
                finish = "delimiter"
                break
        if limits.stop_repetition and loops.looping(ids):
            finish = "repetition"
            break
    tail = decoder.decode(b"", final=True)
    if tail:
        text += tail
        yield TextDelta(index, tail)
    n = len(logprobs)
    mean = sum(logprobs) / n if n else 0.0
    return Step(index, tier, engine.name, text, score, n, round(mean, 5), finish, round(min(logprobs, default=0.0), 5), token_logprobs=logprobs, token_ends=ends)


def answer_confidence(steps: list[Step], last_number: bool = True) -> float | None:
    """P(T): the joint probability of the tokens that spell the final answer
    (the cascade paper's answer confidence), None when there is no answer."""
    text = "".join(s.text for s in steps)
    span = answer_span(text, last_number)
    if span is None:
        return None
    start, end = span
    logprob, offset = 0.0, 0
    for step in steps:
        previous = offset
        for lp, step_end in zip(step.token_logprobs, step.token_ends, strict=True):
            token_end = offset + step_end
            if token_end > start and previous < end:
                logprob += lp
            previous = token_end
        offset += len(step.text)
    return round(math.exp(logprob), 6)


def _signals(point: DecisionPoint, free: bool) -> dict[str, float] | None:
    """Tier 0's signals, if its distribution is known or costs nothing
    (it is about to write, so its logits are needed anyway)."""
    if 0 not in point.seen and not free:
        return None
    dist = point.next_token(0)
    return {name: round(fn(dist), 5) for name, fn in SIGNALS.items()}


def _ends_step(text: str, new_chars: int, delimiter: str) -> bool:
    """True once the delimiter appears after some non-blank content; only the
    newly decoded tail is searched so the check stays O(token)."""
    if not delimiter:
        return False
    at = text.find(delimiter, max(0, len(text) - new_chars - len(delimiter) + 1))
    return at > 0 and not text[:at].isspace()
