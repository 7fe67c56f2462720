"""The step loop: route, write one step, hand it to every tier, repeat.

`Solver.solve` is a generator of events so the terminal view, JSON output and
batch runs all consume the same stream; nothing here prints.
"""

from __future__ import annotations

import codecs
import time
from dataclasses import asdict, dataclass, field
from typing import Union
from collections.abc import Iterator

from steer_cli.answers import extract_answer
from steer_cli.budget import Budget
from steer_cli.cost import Cost, ModelCost
from steer_cli.engine import ContextFull, Engine
from steer_cli.routers import DecisionPoint, Router
from steer_cli.signals import SIGNALS


@dataclass
class StepLimits:
    delimiter: str = "\n\n"
    max_steps: int = 24
    max_step_tokens: int = 256
    max_tokens: int = 1536  # generated tokens per problem, all tiers together


@dataclass
class Step:
    index: int
    tier: int
    model: str
    text: str
    score: float | None  # the router's confidence at the step start
    tokens: int
    mean_logprob: float
    finish: str  # delimiter | eos | step_tokens | max_tokens | context
    # Tier 0's confidence signals at the step start, when its distribution was
    # computed anyway (the router asked, or tier 0 wrote the step).
    signals: dict[str, float] | None = None


@dataclass
class Result:
    problem: str
    answer: str | None
    steps: list[Step]
    finish: str
    router: str
    cost: Cost = field(default_factory=Cost)
    budget_bound: bool = False  # --max-large-tokens cut a step or kept the larger tiers out

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.steps)

    def to_dict(self) -> dict:
        return asdict(self)


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
class Solved:
    result: Result


Event = Union[StepStarted, TextDelta, StepFinished, Solved]


class Solver:
    def __init__(self, tiers: list[Engine], router: Router, limits: StepLimits | None = None, budget: Budget | None = None) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self.tiers = tiers
        self.router = router
        self.limits = limits or StepLimits()
        self.budget = budget or Budget()

    def solve(self, problem: str) -> Iterator[Event]:
        before = [t.stats.snapshot() for t in self.tiers]
        started = time.perf_counter()
        for tier in self.tiers:
            tier.start(problem)
        steps: list[Step] = []
        finish = "max_steps"
        generated = 0
        bound = False
        for index in range(self.limits.max_steps):
            large_left = self.budget.left(self._large_decoded(before))
            # With the larger tiers' allowance spent, the router sees (and probes) only the smallest.
            visible = 1 if large_left == 0 else len(self.tiers)
            bound = bound or visible < len(self.tiers)
            point = DecisionPoint(index, visible, lambda t: self.tiers[t].next_token())
            try:
                decision = self.router.decide(point)
                engine = self.tiers[decision.tier]
                signals = _signals(point, free=decision.tier == 0)
                yield StepStarted(index, decision.tier, engine.name, decision.score)
                step_limit = self.limits.max_step_tokens
                if decision.tier > 0 and large_left is not None and large_left < step_limit:
                    step_limit = large_left
                step = yield from self._write_step(engine, index, decision.tier, decision.score, step_limit, self.limits.max_tokens - generated)
            except ContextFull:
                finish = "context"
                break
            bound = bound or (step_limit < self.limits.max_step_tokens and step.tokens == step_limit)
            step.signals = signals
            if step.tokens == 0:  # end of generation right at a step start
                finish = step.finish
                break
            steps.append(step)
            generated += step.tokens
            yield StepFinished(step)
            for t, other in enumerate(self.tiers):
                if t != decision.tier:
                    other.append_text(step.text)
            if step.finish in ("eos", "max_tokens", "context"):
                finish = step.finish
                break
        result = Result(problem, None, steps, finish, self.router.name, self._cost(steps, before, time.perf_counter() - started))
        result.answer = extract_answer(result.text)
        result.budget_bound = bound
        yield Solved(result)

    def _write_step(self, engine: Engine, index: int, tier: int, score: float | None, step_limit: int, left: int) -> Iterator[Event]:
        """One step, ended by the delimiter, end of generation, `step_limit`
        (finish "step_tokens") or the problem's remaining `left` ("max_tokens")."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        delimiter = self.limits.delimiter
        text, n, logprob_sum, finish = "", 0, 0.0, "step_tokens"
        while n < step_limit:
            if n >= left:
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
            n += 1
            logprob_sum += token.logprob
            delta = decoder.decode(token.piece)
            if delta:
                text += delta
                yield TextDelta(index, delta)
                if _ends_step(text, len(delta), delimiter):
                    finish = "delimiter"
                    break
        tail = decoder.decode(b"", final=True)
        if tail:
            text += tail
            yield TextDelta(index, tail)
        mean = logprob_sum / n if n else 0.0
        return Step(index, tier, engine.name, text, score, n, round(mean, 5), finish)

    def _cost(self, steps: list[Step], before: list, wall_s: float) -> Cost:
        models = [ModelCost.of(t.name, t.params, t.stats.since(b)) for t, b in zip(self.tiers, before, strict=True)]
        return Cost.of(models, self._large_only_tokens(steps), self.tiers[-1].params, wall_s)

    def _large_only_tokens(self, steps: list[Step]) -> int:
        """The top tier's prompt plus every step in its own tokenization."""
        top, top_index = self.tiers[-1], len(self.tiers) - 1
        return top.prompt_length() + sum(s.tokens if s.tier == top_index else top.count_tokens(s.text) for s in steps)

    def _large_decoded(self, before: list) -> int:
        """Tokens decoded in this problem by every tier above the smallest."""
        return sum(t.stats.decoded_tokens - b.decoded_tokens for t, b in zip(self.tiers[1:], before[1:], strict=True))


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
