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
    def __init__(self, tiers: list[Engine], router: Router, limits: StepLimits | None = None) -> None:
        if not tiers:
            raise ValueError("at least one tier is required")
        self.tiers = tiers
        self.router = router
        self.limits = limits or StepLimits()

    def solve(self, problem: str) -> Iterator[Event]:
        before = [t.stats.snapshot() for t in self.tiers]
        started = time.perf_counter()
        for tier in self.tiers:
            tier.start(problem)
        steps: list[Step] = []
        finish = "max_steps"
        generated = 0
        for index in range(self.limits.max_steps):
            point = DecisionPoint(index, len(self.tiers), lambda t: self.tiers[t].next_token())
            try:
                decision = self.router.decide(point)
                engine = self.tiers[decision.tier]
                signals = _signals(point, free=decision.tier == 0)
                yield StepStarted(index, decision.tier, engine.name, decision.score)
                budget = self.limits.max_tokens - generated
                step = yield from self._write_step(engine, index, decision.tier, decision.score, budget)
            except ContextFull:
                finish = "context"
                break
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
        yield Solved(result)

    def _write_step(self, engine: Engine, index: int, tier: int, score: float | None, budget: int) -> Iterator[Event]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        delimiter = self.limits.delimiter
        text, n, logprob_sum, finish = "", 0, 0.0, "step_tokens"
        while n < self.limits.max_step_tokens:
            if n >= budget:
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
        top = self.tiers[-1]
        top_index = len(self.tiers) - 1
        large_only = top.prompt_length() + sum(
            s.tokens if s.tier == top_index else top.count_tokens(s.text) for s in steps
        )
        return Cost.of(models, large_only, top.params, wall_s)


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
