"""The policy's training ground: real engines, a tree of cached outcomes.

With greedy decoding a routed solution is a deterministic function of the
routing decisions, and what a model writes next depends only on the
transcript so far. So every outcome a rollout needs (the small model's
signals and draft at a transcript, the next tier's verdict on that draft, the
next tier's own step) is computed once by the real engines and cached under a
digest of (problem, transcript): rollouts that share a prefix share its work,
and the cache file makes collection resumable and reusable.

An episode replays the solver's step loop (same step writer, limits, loop
guard, answer extraction) with the policy's actions, and prices it as the
solver's counters would: each tier reads (prefill) what it has not yet read
before it acts, decodes what it writes, and scores a draft it verifies.
Relative cost divides by the top tier solving the same problem alone (every
step escalated), in the chosen unit (units.py): what eval measures against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steer_cli import jsonl, loops, units
from steer_cli.answers import answers_match, extract_answer
from steer_cli.policy import NODES, Trace, features
from steer_cli.signals import SIGNALS

ENDS = ("eos", "max_tokens", "context", "repetition")


@dataclass
class Written:
    """A step one tier wrote at a transcript."""

    text: str
    logprobs: list[float]
    finish: str
    read_tokens: list[int]  # its length in each tier's tokens (what another tier reads)

    @property
    def tokens(self) -> int:
        return len(self.logprobs)


@dataclass
class Episode:
    correct: bool
    cost: float  # relative to the top tier alone, in the env's unit
    decisions: list[tuple[str, Any, int]]  # (node, features, action index)
    answer: str | None = None
    steps: int = 0
    escalated: int = 0
    verified: int = 0


@dataclass
class _Ledger:
    """Token counts per tier, priced at the end; `read` is how many accepted
    steps each tier has already read."""

    n: int
    prefill: list[int] = field(default_factory=list)
    decoded: list[int] = field(default_factory=list)
    scored: list[int] = field(default_factory=list)
    read: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prefill, self.decoded, self.scored, self.read = [0] * self.n, [0] * self.n, [0] * self.n, [-1] * self.n

    def catch_up(self, tier: int, prompt: int, steps: list[Written]) -> None:
        """`tier` reads the prompt (first time) and every accepted step it has not read."""
        if self.read[tier] < 0:
            self.prefill[tier] += prompt
            self.read[tier] = 0
        self.prefill[tier] += sum(s.read_tokens[tier] for s in steps[self.read[tier] :])
        self.read[tier] = len(steps)


@dataclass
class _Run:
    """One episode's state as it unfolds."""

    problem: str
    prompts: list[int]  # the prompt's length in each tier's tokens
    ledger: _Ledger
    choose: Callable[[str, Trace], int]
    steps: list[Written] = field(default_factory=list)
    writers: list[int] = field(default_factory=list)
    decisions: list = field(default_factory=list)
    generated: int = 0
    previous: str = "none"
    finish: str = "max_steps"
    verified: int = 0
    informed: bool = True  # False: the choices ignore the small model's signals, so none are computed

    def pick(self, node: str, trace: Trace) -> str:
        index = self.choose(node, trace)
        self.decisions.append((node, features(trace), index))
        return NODES[node][index]


class TreeEnv:
    """Episodes over real engines with a content-keyed cache of outcomes."""

    def __init__(self, tiers: list, limits: Any, rates: list[units.Rates], cache: Path | None = None) -> None:
        self.tiers, self.limits, self.rates = tiers, limits, rates
        self.cache_path = cache
        self.cache: dict[str, Any] = {}
        self.computed = 0  # outcomes computed by the engines (the rest came from the cache)
        self._reference: dict[str, float] = {}  # problem -> the top tier's cost alone
        if cache is not None:
            self.cache.update((row["key"], row["value"]) for row in jsonl.rows(cache) if "key" in row and "value" in row)
        self._out = jsonl.Appender(cache) if cache is not None else None

    # -- outcomes ---------------------------------------------------------------
    def _key(self, kind: str, problem: str, steps: list[Written], extra: str = "") -> str:
        blob = json.dumps([kind, problem, [s.text for s in steps], extra])
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _remember(self, key: str, value: Any) -> Any:
        self.cache[key] = value
        self.computed += 1
        if self._out is not None:
            self._out.append({"key": key, "value": value})
        return value

    def _at(self, tier: int, problem: str, steps: list[Written]) -> Any:
        engine = self.tiers[tier]
        engine.start(problem)
        for step in steps:
            engine.append_text(step.text)
        engine.resume_cache()
        return engine

    def signals(self, problem: str, steps: list[Written]) -> dict[str, float]:
        key = self._key("signals", problem, steps)
        if key not in self.cache:
            dist = self._at(0, problem, steps).next_token()
            self._remember(key, {name: round(fn(dist), 5) for name, fn in SIGNALS.items()})
        return self.cache[key]

    def written(self, tier: int, problem: str, steps: list[Written], left: int) -> Written:
        from steer_cli.solver import write_step

        cap = min(self.limits.max_step_tokens, left)
        key = self._key(f"step{tier}", problem, steps, str(cap) if cap < self.limits.max_step_tokens else "")
        if key not in self.cache:
            writer = write_step(self._at(tier, problem, steps), tier, len(steps), None, self.limits, self.limits.max_step_tokens, left)
            try:
                while True:
                    next(writer)
            except StopIteration as done:
                step = done.value
            read = [t.count_tokens(step.text) if i != tier else step.tokens for i, t in enumerate(self.tiers)]
            self._remember(key, {"text": step.text, "logprobs": [round(x, 5) for x in step.token_logprobs], "finish": step.finish, "read": read})
        v = self.cache[key]
        return Written(v["text"], v["logprobs"], v["finish"], v["read"])

    def verdict(self, problem: str, steps: list[Written], draft: Written) -> list[float]:
        key = self._key("verify", problem, steps, draft.text)
        if key not in self.cache:
            self._remember(key, [round(x, 5) for x in self._at(1, problem, steps).score_text(draft.text)])
        return self.cache[key]

    # -- one episode --------------------------------------------------------------
    def episode(self, problem: str, gold: str | None, choose: Callable[[str, Trace], int]) -> Episode:
        """One routed solution with `choose(node, trace) -> action index`."""
        run = self._play(problem, choose)
        answer = extract_answer("".join(s.text for s in run.steps), last_number=run.finish == "eos")
        correct = gold is not None and answers_match(answer, gold)
        return Episode(correct, self._spent(run.ledger) / self._alone(problem), run.decisions, answer, len(run.steps),
                       sum(w > 0 for w in run.writers), run.verified)

    def _play(self, problem: str, choose: Callable[[str, Trace], int], informed: bool = True) -> _Run:
        run = _Run(problem, [len(t.render_prompt(problem)) for t in self.tiers], _Ledger(len(self.tiers)), choose, informed=informed)
        for index in range(self.limits.max_steps):
            step, writer = self._step(run, index)
            if step is None:
                break
            if self.limits.stop_repetition and loops.repeated_step(step.text, [s.text for s in run.steps]):
                step = Written(step.text, step.logprobs, "repetition", step.read_tokens)
            run.steps.append(step)
            run.writers.append(writer)
            if step.finish in ENDS:
                run.finish = step.finish
                break
        return run

    def _step(self, run: _Run, index: int) -> tuple[Written | None, int]:
        """The policy's choices for one step and the step they produce (None: the
        writer had nothing left to say, `run.finish` says why), with its writer."""
        problem, steps, ledger = run.problem, run.steps, run.ledger
        ledger.catch_up(0, run.prompts[0], steps)
        trace = Trace(self.signals(problem, steps) if run.informed else {}, index, sum(s.tokens for s in steps), sum(w > 0 for w in run.writers), run.previous)
        if run.pick("pre", trace) == "draft":
            draft = self.written(0, problem, steps, self.limits.max_tokens - run.generated)
            ledger.decoded[0] += draft.tokens
            run.generated += draft.tokens
            if draft.tokens == 0:
                run.finish = draft.finish
                return None, 0
            if self._judge(run, trace, draft) == "accept":
                return draft, 0
        else:
            run.previous = "escalated"
        ledger.catch_up(1, run.prompts[1], steps)
        step = self.written(1, problem, steps, self.limits.max_tokens - run.generated)
        ledger.decoded[1] += step.tokens
        run.generated += step.tokens
        ledger.read[1] = len(steps) + 1
        if step.tokens == 0:
            run.finish = step.finish
            return None, 1
        return step, 1

    def _judge(self, run: _Run, trace: Trace, draft: Written) -> str:
        """Accept or reject a draft, buying the next tier's verdict first if the policy asks."""
        steps, ledger = run.steps, run.ledger
        trace.draft_logprobs, trace.draft_text = draft.logprobs, draft.text
        action = run.pick("draft", trace)
        if action == "verify":
            ledger.catch_up(1, run.prompts[1], steps)
            trace.verify_logprobs = self.verdict(run.problem, steps, draft)
            ledger.scored[1] += len(trace.verify_logprobs)
            ledger.prefill[1] += len(trace.verify_logprobs)
            run.verified += 1
            action = run.pick("verified", trace)
        if action != "accept":
            run.previous = "rejected"
            return "reject"
        run.previous = "verified" if trace.verify_logprobs else "accepted"
        if trace.verify_logprobs:
            ledger.read[1] = len(steps) + 1  # it read the draft while scoring it
        ledger.read[0] = len(steps) + 1
        return "accept"

    def _spent(self, ledger: _Ledger) -> float:
        return sum(units.spend(r, ledger.prefill[i], ledger.decoded[i], ledger.scored[i]) for i, r in enumerate(self.rates))

    def _alone(self, problem: str) -> float:
        """What the user would otherwise run: the top tier solving the problem
        alone (its every step escalated; only its own reading and writing
        priced), the reference eval measures too. Cached with the outcomes."""
        if problem not in self._reference:
            run = self._play(problem, lambda node, trace: 1 if node == "pre" else 0, informed=False)
            ledger = run.ledger
            spent = units.spend(self.rates[-1], ledger.prefill[-1], ledger.decoded[-1], ledger.scored[-1])
            self._reference[problem] = spent or 1.0
        return self._reference[problem]
