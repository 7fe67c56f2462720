"""One warm llama.cpp model with a token list that only grows.

Each engine owns one `Llama` and the token list of the current transcript.
Text from other models is appended as new tokens (text-level hand-off, so
tiers may use different tokenizers); tokens this model samples are appended
as-is, never re-tokenized. Evaluation is lazy: pending tokens are sent to
llama.cpp only when a distribution is needed, and exactly once, so prefill
and decode counters are measured waste, not estimates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from steer_cli.errors import SteerError
from steer_cli.signals import NextToken, greedy, log_softmax_at, sample, summarize, top_alternatives
from steer_cli.weights import FALLBACK_TEMPLATE, STEP_INSTRUCTION, LoadOptions, ModelFile, Weights, gguf_param_count, physical_cores

__all__ = ["FALLBACK_TEMPLATE", "STEP_INSTRUCTION", "ContextFull", "Engine", "EngineStats", "LlamaEngine", "LoadOptions", "Token", "gguf_param_count", "physical_cores"]



# Rows of logits per scoring pass: llama.cpp keeps an output buffer of rows x
# vocabulary floats (39 MiB at 64 rows of Qwen's 151,936), and throughput is
# flat from 64 rows up (measured on the 1.5B: 0.78x plain prefill at 64 rows,
# 0.80x at 128).
SCORE_ROWS = 32


class ContextFull(SteerError):
    """The transcript no longer fits the model's context window."""


@dataclass
class EngineStats:
    """Counters for one model, summed over every problem it served."""

    prefill_tokens: int = 0  # evaluated tokens that came from a prompt or another model
    decoded_tokens: int = 0  # tokens this model sampled
    evaluated_tokens: int = 0  # every token sent to llama_decode
    needed_tokens: int = 0  # positions that had to be evaluated at least once
    reused_tokens: int = 0  # prompt tokens found already in the KV cache
    scored_tokens: int = 0  # prefill tokens read with logits for every position (TRIM verify)
    wall_s: float = 0.0  # time in evaluation and sampling
    load_s: float = 0.0

    def snapshot(self) -> EngineStats:
        return EngineStats(**vars(self))

    def since(self, before: EngineStats) -> EngineStats:
        return EngineStats(**{k: v - getattr(before, k) for k, v in vars(self).items()})


@dataclass(frozen=True)
class Token:
    id: int
    piece: bytes  # raw bytes; may be part of a UTF-8 character
    logprob: float
    eog: bool = False
    alternatives: list[tuple[int, float]] = field(default_factory=list)


class Engine(Protocol):
    """What the step loop needs from a model. `LlamaEngine` is the local one,
    `remote.RemoteEngine` a model behind an OpenAI-compatible server; tests
    script a fake with the same surface."""

    name: str
    stats: EngineStats
    stop: str  # the step delimiter (the solver sets it); a remote server stops there
    price: Any  # registry.Price per million input/output tokens, or None

    @property
    def params(self) -> int: ...

    def start(self, problem: str) -> None: ...

    def append_text(self, text: str) -> None: ...

    def next_token(self) -> NextToken: ...

    def sample(self) -> Token: ...

    def count_tokens(self, text: str) -> int: ...

    def prompt_length(self) -> int: ...

    def mark(self) -> int: ...

    def rewind(self, mark: int) -> None: ...

    def pending(self) -> int: ...

    def score_text(self, text: str) -> list[float]: ...

    def embed_prompt(self, problem: str) -> np.ndarray: ...

    def set_sampling(self, temperature: float | None, seed: int | None) -> None: ...


class LlamaCalls:
    """What one transcript asks of llama.cpp: evaluate tokens, read a logits
    row, pick a token, embed a prompt. `LlamaEngine` keeps the transcript and
    its counters around these; `batching.SeqEngine` sends them to a shared
    context and `rollouts.Replaying` answers them from a cache."""

    options: LoadOptions
    stats: EngineStats
    model: Weights
    _kv_len: int
    _logits_at: int
    _scratch: np.ndarray | None
    _embedded: Any
    _rng: np.random.Generator
    _llm: Any
    _weights_loaded: bool
    n_vocab: int

    def _ensure_weights(self) -> None:
        if self.model.ensure():
            self._kv_len = 0
            self._logits_at = -1

    def _has_cache(self) -> bool:
        return self._weights_loaded

    def _cached_ids(self) -> np.ndarray:
        """The tokens the KV cache holds for this transcript."""
        return np.asarray(self._llm._input_ids[: self._kv_len])

    def _evaluate(self, start: int, tokens: list[int]) -> None:
        """Send `tokens` (positions from `start` on) through the model; the last one's logits row is kept."""
        started = time.perf_counter()
        self._llm.n_tokens = start
        self._llm.eval(tokens)
        self.stats.wall_s += time.perf_counter() - started

    def _score_chunk(self, pos: int, chunk: list[int]) -> Callable[[int], np.ndarray]:
        """One pass over `chunk` with a logits row for every position; returns the row reader."""
        started = time.perf_counter()
        llm = self._llm
        llm._batch.set_batch(batch=chunk, n_past=pos, logits_all=True)
        llm._ctx.decode(llm._batch)
        llm.input_ids[pos : pos + len(chunk)] = chunk
        llm.n_tokens = pos + len(chunk)
        self.stats.wall_s += time.perf_counter() - started
        return self._row

    def _logits(self) -> np.ndarray:
        return self._row(-1)

    def _row(self, i: int) -> np.ndarray:
        """The i-th logits row of the last batch (-1: the last)."""
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self._llm._ctx.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def embed_prompt(self, problem: str) -> np.ndarray:
        """Hidden state of the rendered problem (mean and last token), from a context of
        its own on these weights (P(IK)'s input); its prefill is counted on this engine."""
        if self._embedded is None:
            from steer_cli.pik import Embedded

            self._ensure_weights()
            self._embedded = Embedded(self, self._llm, self.options.n_threads or physical_cores())
        vector, tokens, seconds = self._embedded(problem)
        self.stats.wall_s += seconds
        self.stats.evaluated_tokens += tokens
        self.stats.prefill_tokens += tokens
        return vector

    def _pick(self) -> Token:
        """The next token from the current logits row."""
        started = time.perf_counter()
        logits = self._logits()
        if self.options.temperature > 0:
            token, logprob = sample(logits, self.options.temperature, self._rng)
        else:
            if self._scratch is None:
                self._scratch = np.empty_like(logits)
            token, logprob = greedy(logits, self._scratch)
        alternatives = top_alternatives(logits, self.options.top_k) if self.options.top_k else []
        self.stats.wall_s += time.perf_counter() - started
        import llama_cpp

        eog = bool(llama_cpp.llama_vocab_is_eog(self._llm._model.vocab, token))
        return Token(id=token, piece=b"" if eog else self.model.piece(token), logprob=logprob, eog=eog, alternatives=alternatives)


class LlamaEngine(LlamaCalls, ModelFile):
    """A GGUF model kept warm in llama.cpp. Weights load on first evaluation;
    until then a vocab-only handle serves tokenizing and counting."""

    def __init__(self, name: str, path: Path, options: LoadOptions | None = None) -> None:
        self.name = name
        self.path = Path(path)
        self.options = options or LoadOptions()
        self.stats = EngineStats()
        self.stop = "\n\n"
        self.price: Any = None
        self._rng = np.random.default_rng(self.options.seed)
        self._loaded_sampling = (self.options.temperature, self.options.seed)  # what a request's None restores
        self.model = Weights(self.path, self.options, self.stats)
        self._blank()

    def _blank(self) -> None:
        """No transcript yet."""
        self._tokens: list[int] = []
        self._kv_len = 0  # how many of self._tokens the KV cache holds
        self._logits_at = -1  # list length the current logits row belongs to
        self._first_new = 0  # first position of this problem not reused from the cache
        self._prompt_len = 0
        self._own_pending = 0  # sampled tokens appended but not yet evaluated
        self._unclaimed_reuse = 0  # cached prompt tokens, until this model is used
        self._scratch: np.ndarray | None = None  # vocab-sized buffer for the per-token math
        self._embedded: Any = None

    def _twin_of(self, engine: LlamaEngine) -> None:
        """Become another transcript over `engine`'s model (its weights, tokenizer,
        options copied so a request's sampling stays this twin's), counted apart."""
        from dataclasses import replace

        self.name, self.path, self.model = engine.name, engine.path, engine.model
        self.options = replace(engine.options)
        self.price, self.stop = engine.price, engine.stop
        self.stats = EngineStats()
        self._loaded_sampling = engine._loaded_sampling
        self._rng = np.random.default_rng(self.options.seed)
        self._blank()

    def prompt_length(self) -> int:
        return self._prompt_len

    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    # -- the transcript ----------------------------------------------------
    def start(self, problem: str) -> None:
        """Begin a new transcript; the KV cache keeps whatever prefix matches
        (chat-template boilerplate is shared between problems)."""
        self._tokens = self.render_prompt(problem)
        self._prompt_len = len(self._tokens)
        self._own_pending = 0
        self.resume_cache()

    def resume_cache(self) -> None:
        """Keep the KV cache's longest prefix of the transcript as it stands
        (after `start` and any `append_text`): a transcript revisited (policy
        training walks a tree of them) is not evaluated again."""
        if self._has_cache():
            cached = self._cached_ids()
            n = min(len(cached), len(self._tokens))
            diff = np.nonzero(cached[:n] != np.asarray(self._tokens[:n]))[0]
            # At most n-1: the last token is evaluated again for its logits.
            self._kv_len = min(int(diff[0]) if diff.size else n, len(self._tokens) - 1)
        self._first_new = self._kv_len
        self._unclaimed_reuse = self._kv_len  # counted only if this model takes part
        self._logits_at = -1

    def append_text(self, text: str) -> None:
        self._tokens.extend(self.tokenize_text(text))

    def load_tokens(self, ids: list[int]) -> None:
        """Continue from a transcript given as token ids (policy training revisits them)."""
        self._tokens = list(ids)
        self._own_pending = 0
        self.resume_cache()

    def mark(self) -> int:
        """A point in the transcript to `rewind` to (a discarded draft)."""
        return len(self._tokens)

    def rewind(self, mark: int) -> None:
        """Forget everything after `mark`; the KV cache past it is overwritten
        on the next evaluation (Llama.eval clears positions >= n_tokens)."""
        dropped = len(self._tokens) - mark
        if dropped <= 0:
            return
        del self._tokens[mark:]
        self._own_pending = max(0, self._own_pending - dropped)
        self._kv_len = min(self._kv_len, mark)
        if self._logits_at != mark or self._kv_len != mark:
            self._logits_at = -1

    def pending(self) -> int:
        """Tokens the next `next_token`/`sample` must process first (prefill
        owed, cached prompt tokens not yet charged included): what a budget
        must reserve before granting this model a step."""
        n = len(self._tokens)
        if self._logits_at == n and self._kv_len == n:
            return 0
        return n - min(self._kv_len, n - 1) + self._unclaimed_reuse

    def score_text(self, text: str) -> list[float]:
        """Append `text` and return this model's log-prob of each of its
        tokens, from one prefill pass with logits requested only for the new
        positions (never logits_all over the whole context)."""
        return self.score_tokens(self.tokenize_text(text))

    def score_tokens(self, new: list[int]) -> list[float]:
        """`score_text` for text already tokenized by this model."""
        if not new:
            return []
        self._sync()  # the last transcript token's row scores the first new token
        start = len(self._tokens)
        if start + len(new) > self.options.n_ctx:
            raise ContextFull(f"{self.name}: transcript of {start + len(new)} tokens exceeds n_ctx={self.options.n_ctx}", "raise n_ctx in models.yaml or lower --max-steps")
        logprobs = self._score(start, new)
        self._tokens.extend(new)
        self.stats.evaluated_tokens += len(new)
        self.stats.prefill_tokens += len(new)
        self.stats.scored_tokens += len(new)
        self.stats.needed_tokens += max(0, start + len(new) - max(start, self._first_new))
        self._first_new = max(self._first_new, start + len(new))
        self._kv_len = self._logits_at = len(self._tokens)
        return logprobs

    def _score(self, start: int, new: list[int]) -> list[float]:
        """Log-probs of `new` following the transcript's first `start` tokens (all evaluated)."""
        logprobs = [log_softmax_at(self._logits(), new[0])]
        for i in range(0, len(new), SCORE_ROWS):
            chunk = new[i : i + SCORE_ROWS]
            row = self._score_chunk(start + i, chunk)
            started = time.perf_counter()
            for j, following in enumerate(new[i + 1 : i + len(chunk) + 1]):
                logprobs.append(log_softmax_at(row(j), following))
            self.stats.wall_s += time.perf_counter() - started
        return logprobs

    def _sync(self) -> None:
        """Evaluate pending tokens so the logits row belongs to the last one."""
        n = len(self._tokens)
        if self._logits_at == n and self._kv_len == n:
            return
        self._ensure_weights()
        if n > self.options.n_ctx:
            raise ContextFull(f"{self.name}: transcript of {n} tokens exceeds n_ctx={self.options.n_ctx}", "raise n_ctx in models.yaml or lower --max-steps")
        start = min(self._kv_len, n - 1)  # re-evaluate one token if only logits are missing
        todo = self._tokens[start:]
        self._evaluate(start, todo)
        self.stats.evaluated_tokens += len(todo)
        self.stats.reused_tokens += self._unclaimed_reuse
        self._unclaimed_reuse = 0
        # A token evaluated right after this model sampled it is decode work, not prefill.
        self.stats.prefill_tokens += len(todo) - min(self._own_pending, len(todo))
        self._own_pending = 0
        self.stats.needed_tokens += max(0, n - max(self._kv_len, self._first_new))
        self._first_new = max(self._first_new, n)
        self._kv_len = self._logits_at = n

    def set_sampling(self, temperature: float | None, seed: int | None) -> None:
        """Per-request sampling (serve); None keeps the value the engine was loaded with."""
        t, s = self._loaded_sampling
        self.options.temperature = t if temperature is None else temperature
        self._rng = np.random.default_rng(s if seed is None else seed)

    def next_token(self) -> NextToken:
        self._sync()
        return summarize(self._logits(), k=5)

    def sample(self) -> Token:
        """Pick the next token, append it (unevaluated) and report its log-prob."""
        self._sync()
        token = self._pick()
        self.stats.decoded_tokens += 1
        if not token.eog:
            self._tokens.append(token.id)
            self._own_pending += 1
        return token

