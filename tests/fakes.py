"""A scripted engine for router and step-loop tests (llm's MockModel pattern).

Tokens are characters. `enqueue` queues the text of steps this tier will
write; an empty queue means end-of-generation. `confidences` are the
max-probabilities its next-token distribution reports, one per decision;
`token_probs` the probability of each token it writes, one per step
(default 0.5), and `verify_probs` the probability it gives each token of a
text it is asked to score, one per call.
"""

from __future__ import annotations

import math

from steer_cli.engine import EngineStats, Token
from steer_cli.signals import NextToken


class ScriptedEngine:
    def __init__(
        self,
        name: str,
        params: int = 1000,
        confidences: list[float] | None = None,
        token_probs: list[float] | None = None,
        verify_probs: list[float] | None = None,
    ) -> None:
        self.name = name
        self.stop = "\n\n"
        self.price = None
        self._params = params
        self.stats = EngineStats()
        self.queue: list[str] = []
        self.confidences = list(confidences or [])
        self.transcript = ""
        self.appended: list[str] = []
        self._current = ""
        self.asked = 0
        self.token_probs = list(token_probs or [])
        self.verify_probs = list(verify_probs or [])
        self.scored: list[str] = []
        self._step_prob = 0.5

    @property
    def params(self) -> int:
        return self._params

    @property
    def identity(self) -> str:
        return f"scripted:{self.name}:{self._params}"

    def enqueue(self, *steps: str) -> ScriptedEngine:
        self.queue.extend(steps)
        return self

    def start(self, problem: str) -> None:
        self.transcript = f"Q: {problem}\n"
        self._prompt = len(self.transcript)
        self._pending = self._prompt

    def prompt_length(self) -> int:
        return self._prompt

    def append_text(self, text: str) -> None:
        self.appended.append(text)
        self.transcript += text
        self._pending += len(text)

    def count_tokens(self, text: str) -> int:
        return len(text)

    def _evaluate(self) -> None:
        """Like the real engine: what was handed over is read only when needed."""
        self.stats.prefill_tokens += self._pending
        self.stats.evaluated_tokens += self._pending
        self._pending = 0

    def next_token(self) -> NextToken:
        self._evaluate()
        self.asked += 1
        p = min(max(self.confidences.pop(0) if self.confidences else 0.99, 1e-9), 1.0)
        rest = max(1.0 - p, 1e-9)
        return NextToken(top_ids=(1, 2), top_logprobs=(math.log(p), math.log(rest)), entropy=0.1)

    def sample(self) -> Token:
        self._evaluate()
        if not self._current:
            if not self.queue:
                return Token(id=0, piece=b"", logprob=0.0, eog=True)
            self._current = self.queue.pop(0)
            self._step_prob = self.token_probs.pop(0) if self.token_probs else 0.5
        ch, self._current = self._current[0], self._current[1:]
        self.transcript += ch
        self.stats.decoded_tokens += 1
        self.stats.evaluated_tokens += 1
        return Token(id=ord(ch), piece=ch.encode(), logprob=math.log(self._step_prob))

    def mark(self) -> int:
        return len(self.transcript)

    def rewind(self, mark: int) -> None:
        dropped = len(self.transcript) - mark
        self.transcript = self.transcript[:mark]
        self._pending = max(0, self._pending - dropped)

    def pending(self) -> int:
        return self._pending

    def score_text(self, text: str) -> list[float]:
        """Prefill-only scoring: reads the text like a hand-off, decodes nothing."""
        self.scored.append(text)
        self.append_text(text)
        self.stats.scored_tokens += len(text)
        self._evaluate()
        p = self.verify_probs.pop(0) if self.verify_probs else 0.5
        return [math.log(p)] * len(text)

    def embed_prompt(self, problem: str):
        """A fixed 'hidden state' per problem: its first character's code and
        length; the prompt's reading is counted like a prefill."""
        import numpy as np

        self.embedded = getattr(self, "embedded", 0) + 1
        self.stats.evaluated_tokens += len(problem)
        self.stats.prefill_tokens += len(problem)
        return np.array([float(ord(problem[0])), float(len(problem))])

    def set_sampling(self, temperature, seed) -> None:
        """Scripted text is the same under any sampling."""
