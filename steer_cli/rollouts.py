"""The policy's training ground: the real solver over engines that replay.

With greedy decoding, what a model does next depends only on the tokens of
its transcript. So each tier of a training episode is a `Replaying` engine: a
LlamaEngine whose bookkeeping is the real one (what it reads, decodes and
scores, and where its context ends), and whose outcomes (the next-token
summary at a transcript, the step it writes from there, its reading of a
draft) are computed once by the real engine and then served from a cache
keyed by the transcript's tokens. Rollouts that share a prefix share its
work, and the cache file makes collection resumable and reusable.

An episode is the solver running the policy router with the trainer choosing
each action (`Chooser` stands in for the policy file). Its cost is that
solve's counters priced in the unit, over the same problem solved by the top
tier alone through the same engines: what eval measures against.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from steer_cli import jsonl, units
from steer_cli.answers import answers_match
from steer_cli.engine import LlamaEngine, Token
from steer_cli.policy import NODES
from steer_cli.signals import NextToken
from steer_cli.solver import StepLimits

Choose = Callable[[str, np.ndarray], int]  # (node, features) -> action index


@dataclass
class Episode:
    correct: bool
    cost: float  # relative to the top tier alone, in the env's unit
    decisions: list[tuple[str, Any, int]]  # (node, features, action index)
    answer: str | None = None
    steps: int = 0
    escalated: int = 0
    verified: int = 0


class Outcomes:
    """What the engines computed, by content key, kept in a JSONL file;
    lanes of --parallel share one (a key two lanes miss at once is computed
    twice and kept once)."""

    def __init__(self, path: Path | None = None) -> None:
        self.values: dict[str, Any] = {}
        self.computed = 0  # computed by an engine in this run (the rest came from the file)
        if path is not None:
            self.values.update((row["key"], row["value"]) for row in jsonl.rows(path) if "key" in row and "value" in row)
        self._out = jsonl.Appender(path) if path is not None else None
        self._lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        value = self.values.get(key)
        if value is not None:
            return value
        value = compute()
        with self._lock:
            if key not in self.values:
                self.values[key] = value
                self.computed += 1
                if self._out is not None:
                    self._out.append({"key": key, "value": value})
            return self.values[key]


class _Recorder:
    """The real engine as the step writer sees it, keeping each token it samples."""

    def __init__(self, engine: LlamaEngine) -> None:
        self.engine, self.name, self.tokens = engine, engine.name, []

    def sample(self) -> Token:
        token = self.engine.sample()
        self.tokens.append(token)
        return token


class Replaying(LlamaEngine):
    """A tier whose outcomes come from `outcomes`, computed by `real` on a miss."""

    def __init__(self, real: LlamaEngine, outcomes: Outcomes, limits: StepLimits) -> None:
        self._twin_of(real)
        self.real, self.outcomes, self.limits = real, outcomes, limits
        self._root = hashlib.sha256(real.identity.encode()).digest()
        self._chain = [self._root]  # _chain[i]: the digest of the transcript's first i tokens
        self._stream: tuple[int, str, list[int], list] | None = None  # the step being replayed: (start, digest there, ids, tokens)

    def start(self, problem: str) -> None:
        super().start(problem)
        self._chain = [self._root]

    def rewind(self, mark: int) -> None:
        super().rewind(mark)
        del self._chain[mark + 1 :]

    def _has_cache(self) -> bool:
        return False  # every episode reads its prompt: its cost must not depend on the one before

    def _ensure_weights(self) -> None:
        """The real engine loads its weights when an outcome is missing."""

    def _evaluate(self, start: int, tokens: list[int]) -> None:
        """Nothing to evaluate: the bookkeeping around this call is all a replay needs."""

    def _digest(self, n: int | None = None) -> str:
        n = len(self._tokens) if n is None else n
        chain, tokens = self._chain, self._tokens
        while len(chain) <= n:
            chain.append(hashlib.sha256(chain[-1] + tokens[len(chain) - 1].to_bytes(4, "little")).digest())
        return chain[n].hex()[:32]

    def next_token(self) -> NextToken:
        self._sync()
        top_ids, top_logprobs, entropy = self.outcomes.get(f"dist:{self._digest()}", self._real_dist)
        return NextToken(tuple(top_ids), tuple(top_logprobs), entropy)

    def _real_dist(self) -> list:
        self.real.load_tokens(self._tokens)
        dist = self.real.next_token()
        return [list(dist.top_ids), list(dist.top_logprobs), dist.entropy]

    def _pick(self) -> Token:
        n = len(self._tokens)
        if not self._continues(n):
            here = self._digest()
            key = f"step:{self.limits.max_step_tokens}:{self.limits.stop_repetition}:{self.limits.delimiter!r}:{here}"
            tokens = self.outcomes.get(key, self._real_step)
            self._stream = (n, here, [t[0] for t in tokens], tokens)
        start, _, _, tokens = self._stream
        token_id, logprob, eog = tokens[n - start]
        return Token(token_id, b"" if eog else self.model.piece(token_id), logprob, bool(eog))

    def _continues(self, n: int) -> bool:
        """Whether the transcript is still inside the step being replayed."""
        if self._stream is None:
            return False
        start, digest, ids, _ = self._stream
        k = n - start
        return 0 <= k < len(ids) and self._tokens[start:n] == ids[:k] and self._digest(start) == digest

    def _real_step(self) -> list:
        """The whole step the real engine writes from here, as the solver's step writer ends it."""
        from steer_cli.solver import write_step

        self.real.load_tokens(self._tokens)
        recorder = _Recorder(self.real)
        for _ in write_step(recorder, 0, 0, None, self.limits, self.limits.max_step_tokens, self.limits.max_tokens):  # type: ignore[arg-type]
            pass
        return [[t.id, t.logprob, int(t.eog)] for t in recorder.tokens]

    def _score(self, start: int, new: list[int]) -> list[float]:
        text = hashlib.sha256(np.asarray(new, dtype=np.int64).tobytes()).hexdigest()[:32]
        return self.outcomes.get(f"score:{self._digest()}:{text}", lambda: self._real_score(new))

    def _real_score(self, new: list[int]) -> list[float]:
        self.real.load_tokens(self._tokens)
        return self.real.score_tokens(new)


@dataclass
class Chooser:
    """The policy file's stand-in while training: `choose` picks each action,
    and every decision is kept for the trainer."""

    choose: Choose = lambda node, x: 0
    decisions: list[tuple[str, Any, int]] = field(default_factory=list)

    def act(self, node: str, x: np.ndarray, threshold: float | None = None) -> tuple[str, float]:
        index = self.choose(node, x)
        self.decisions.append((node, x, index))
        return NODES[node][index], float(index == 0)


class Rollouts:
    """Training episodes of the policy router, on the real solver over replaying tiers."""

    def __init__(self, engines: list[LlamaEngine], limits: StepLimits, meter: Any, outcomes: Outcomes | None = None) -> None:
        from steer_cli.routes import Route
        from steer_cli.session import Session

        self.outcomes = outcomes or Outcomes()
        self.tiers = [Replaying(e, self.outcomes, limits) for e in engines]
        self.chooser = Chooser()
        session = Session.of(self.tiers, meter, limits=limits, artifacts={"policy": self.chooser})
        self._routed, self._alone = session.solver(Route("policy", 0.5)), session.solver(Route("large"))
        self.unit = meter.unit
        self._rates = [meter.rates(t) for t in self.tiers]
        self._reference: dict[str, float] = {}  # problem -> the top tier's cost alone

    @property
    def computed(self) -> int:
        return self.outcomes.computed

    @property
    def cached(self) -> int:
        return len(self.outcomes.values)

    def episode(self, problem: str, gold: str | None, choose: Choose) -> Episode:
        """One routed solution with `choose(node, features) -> action index`."""
        self.chooser.choose, self.chooser.decisions = choose, []
        result, spent = self._solve(self._routed, problem)
        decisions = self.chooser.decisions
        verify = NODES["draft"].index("verify")
        return Episode(gold is not None and answers_match(result.answer, gold), spent / self._top_alone(problem), decisions, result.answer,
                       len(result.steps), sum(s.tier > 0 for s in result.steps), sum(n == "draft" and a == verify for n, _, a in decisions))

    def _solve(self, solver: Any, problem: str) -> tuple[Any, float]:
        """The result and what it spent, every tier priced in the unit."""
        from steer_cli.runs import solve_one

        before = [t.stats.snapshot() for t in self.tiers]
        result = solve_one(solver, problem)
        spent = sum(units.spent_by(self.unit, r, t.params, t.stats.since(b)) for r, t, b in zip(self._rates, self.tiers, before, strict=True))
        return result, spent

    def _top_alone(self, problem: str) -> float:
        if problem not in self._reference:
            self._reference[problem] = self._solve(self._alone, problem)[1] or 1.0
        return self._reference[problem]
