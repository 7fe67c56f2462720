"""A tier behind an OpenAI-compatible server (vLLM, llama.cpp, a paid API).

The remote model continues the same templated transcript as the local tiers,
through the raw completions API: a step is generated with the step delimiter
as stop string (in chunks, so a long step never needs more than the solver
asks for), log-probs come with the tokens, and a draft is scored from the
server's prompt log-probs (`echo` with `logprobs`). Every call re-sends the
transcript, so its tokens are counted as input each time, as APIs bill them;
cached prompt tokens are credited where the server reports them.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import numpy as np

from steer_cli.engine import STEP_INSTRUCTION, EngineStats, LoadOptions, Token
from steer_cli.errors import SteerError
from steer_cli.registry import EndpointSource
from steer_cli.signals import NextToken

CHUNK = 128  # tokens asked per request while a step is being written
RETRIES = 4
NO_ECHO = "small, large, steer, random, cascade, trim with --signal self"


class RemoteEngine:
    """The Engine protocol over HTTP. Tokens are counted by the server's
    `usage`; text is measured in tokens by the `template_from` model's
    tokenizer where there is one, else estimated at 4 characters a token."""

    def __init__(self, name: str, endpoint: EndpointSource, params: int, options: LoadOptions | None = None,
                 local: Any = None, chat_template: str | None = None, client: Any = None, price: Any = None) -> None:
        import httpx

        self.name, self.endpoint, self._params = name, endpoint, params
        self.options = options or LoadOptions()
        self.local = local  # a vocab-only LlamaEngine sharing this model's template and tokenizer
        self.stats = EngineStats()
        self.price = price
        key = os.environ.get(endpoint.api_key_env, "") if endpoint.api_key_env else ""
        if endpoint.api_key_env and not key:
            raise SteerError(f"{name}: ${endpoint.api_key_env} is unset", f"export {endpoint.api_key_env}=<the API key of {endpoint.base_url}>")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = client or httpx.Client(base_url=endpoint.base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(120.0, connect=5.0))
        self._template = chat_template
        self._text = ""
        self._prompt = ""
        self._buffer: deque[Token] = deque()
        self._seed = self.options.seed
        self._last_completion_tokens = 0
        self.stop = "\n\n"  # the step delimiter, set by the solver: the server stops there
        self.away: Callable[[], AbstractContextManager] = nullcontext  # held while waiting on the server

    def lane(self, away: Callable[[], AbstractContextManager]) -> RemoteEngine:
        """A twin for one of several problems solved at once (batching.py): its
        own transcript and counters, the same connection pool, so up to N
        requests are in flight and the server batches them itself."""
        twin = copy.copy(self)
        twin.stats, twin._buffer, twin._text, twin._prompt = EngineStats(), deque(), "", ""
        twin.options, twin.away = replace(self.options), away
        return twin

    @property
    def identity(self) -> str:
        """A served model is known by its endpoint and the model it names."""
        return f"{self.endpoint.base_url}#{self.endpoint.model}"

    @property
    def params(self) -> int:
        return self._params

    # -- the transcript ----------------------------------------------------------
    def start(self, problem: str) -> None:
        self._prompt = self._text = self._render(problem)
        self._buffer.clear()

    def _render(self, problem: str) -> str:
        if self.local is not None and self._template is None:
            return self.local.prompt_text(problem)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from steer_cli.engine import FALLBACK_TEMPLATE

        template = self._template or self._server_template() or FALLBACK_TEMPLATE
        content = f"{problem.strip()}\n\n{STEP_INSTRUCTION}"
        return Jinja2ChatFormatter(template=template, eos_token="", bos_token="")(messages=[{"role": "user", "content": content}]).prompt

    def _server_template(self) -> str | None:
        """llama.cpp's server exposes its model's chat template at /props."""
        if self._template is None:
            try:
                root = self.endpoint.base_url.rstrip("/").removesuffix("/v1")
                self._template = self._http.get(f"{root}/props").json().get("chat_template") or ""
            except Exception:  # noqa: BLE001 - a server without /props: fall back
                self._template = ""
        return self._template or None

    def append_text(self, text: str) -> None:
        self._buffer.clear()
        self._text += text

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return self.local.count_tokens(text) if self.local is not None else max(1, len(text) // 4)

    def prompt_length(self) -> int:
        return self.count_tokens(self._prompt)

    def mark(self) -> int:
        return len(self._text)

    def rewind(self, mark: int) -> None:
        self._buffer.clear()
        self._text = self._text[:mark]

    def pending(self) -> int:
        return 0  # the server reads the transcript on every call; a budget sees it in `usage`

    def set_sampling(self, temperature: float | None, seed: int | None) -> None:
        if temperature is not None:
            self.options.temperature = temperature
        if seed is not None:
            self._seed = seed

    def embed_prompt(self, problem: str) -> np.ndarray:
        raise SteerError(f"{self.name} is a remote tier: P(IK) needs the small tier's hidden state", "use a local GGUF as the small tier with --pik")

    # -- generation ----------------------------------------------------------------
    def sample(self) -> Token:
        """The next token of the step being written, fetched a chunk at a time."""
        if not self._buffer:
            self._fetch_chunk()
        token = self._buffer.popleft()
        if not token.eog:
            self._text += token.piece.decode("utf-8", "replace")
        return token

    def _fetch_chunk(self) -> None:
        delimiter = self.stop
        body = {"prompt": self._text, "max_tokens": CHUNK, "logprobs": 1, "temperature": self.options.temperature, "seed": self._seed}
        if delimiter:
            body["stop"] = [delimiter]
        choice = self._complete(body)
        tokens, logprobs = _token_logprobs(choice)
        if not tokens and choice.get("text"):
            tokens, logprobs = [choice["text"]], [0.0]  # a server that sends no log-probs
        for piece, lp in zip(tokens, logprobs, strict=True):
            self._buffer.append(Token(id=-1, piece=piece.encode("utf-8"), logprob=lp))
        if choice.get("finish_reason") == "stop":
            if tokens and delimiter:  # the server swallows the stop string: hand the solver its step end
                self._buffer.append(Token(id=-1, piece=delimiter.encode("utf-8"), logprob=0.0))
            else:
                self._buffer.append(Token(id=-1, piece=b"", logprob=0.0, eog=True))
        elif not tokens:
            self._buffer.append(Token(id=-1, piece=b"", logprob=0.0, eog=True))

    def next_token(self) -> NextToken:
        """The next token's top log-probs (for a remote tier that routers ask)."""
        return _summary(self._complete({"prompt": self._text, "max_tokens": 1, "logprobs": 5, "temperature": 0.0}))

    def score_text(self, text: str) -> list[float]:
        """This model's log-prob of each token of `text` after the transcript,
        from the server's prompt log-probs; `text` is then part of the transcript."""
        choice = self._complete({"prompt": self._text + text, "max_tokens": 1, "logprobs": 1, "echo": True, "temperature": 0.0})
        tokens, values = _token_logprobs(choice)
        if not tokens:
            raise SteerError(f"{self.endpoint.base_url} returned no prompt log-probs", f"TRIM verify needs echo+logprobs; routers that work there: {NO_ECHO}")
        scored = _tail_logprobs(list(zip(tokens, values, strict=True))[: len(tokens) - self._last_completion_tokens], len(text))
        if not scored:  # llama.cpp's llama-server answers echo with the generated token's log-prob only
            raise SteerError(f"{self.endpoint.base_url} returned no prompt log-probs for the draft", f"TRIM verify needs echo with prompt log-probs; routers that work there: {NO_ECHO}")
        self._text += text
        return scored

    # -- HTTP ------------------------------------------------------------------------
    def _complete(self, body: dict) -> dict:
        """One completions call with retries on 429/5xx and broken connections;
        counts its tokens and latency; one SteerError naming the endpoint."""
        import httpx

        body = {"model": self.endpoint.model, **body}
        where = f"{self.endpoint.base_url} ({self.endpoint.model})"
        for attempt in range(RETRIES):
            started = time.perf_counter()
            try:
                with self.away():
                    response = self._http.post("/completions", json=body)
            except httpx.TransportError as exc:
                problem = f"cannot reach {where}: {type(exc).__name__}"
                retry = True
            else:
                if response.status_code < 400:
                    return self._account(response.json(), time.perf_counter() - started)
                problem = f"{where} answered {response.status_code}: {_message(response)}"
                retry = response.status_code == 429 or response.status_code >= 500
                if not retry and body.get("echo"):
                    raise SteerError(f"{where} cannot score a draft ({_message(response)})", f"TRIM verify needs echo with prompt log-probs; routers that work there: {NO_ECHO}")
            if not retry or attempt == RETRIES - 1:
                break
            time.sleep(0.5 * 2**attempt)
        raise SteerError(problem, "check that the server is up and the model name is right (a rerun of batch or eval resumes where it stopped)")

    def _account(self, payload: dict, seconds: float) -> dict:
        usage = payload.get("usage") or {}
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        cached = int(((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0)
        s = self.stats
        s.prefill_tokens += prompt - cached
        s.reused_tokens += cached
        s.decoded_tokens += completion
        s.evaluated_tokens += prompt - cached + completion
        s.wall_s += seconds
        self._last_completion_tokens = completion
        choices = payload.get("choices") or [{}]
        return choices[0]


def _summary(choice: dict) -> NextToken:
    """The next token's distribution from a completion's top log-probs (the rest of the mass spread as one outcome)."""
    top = (choice.get("logprobs") or {}).get("top_logprobs") or [{}]
    values = sorted((top[0] or {}).values(), reverse=True) or [0.0]
    probs = [math.exp(v) for v in values]
    rest = max(0.0, 1.0 - sum(probs))
    entropy = -sum(p * math.log(p) for p in probs if p > 0) + (rest * math.log(1 / rest) if rest > 0 else 0.0)
    return NextToken(top_ids=tuple(range(len(values))), top_logprobs=tuple(values), entropy=entropy)


def _tail_logprobs(prompt: list[tuple[str, float]], chars: int) -> list[float]:
    """The log-probs of the prompt's last `chars` characters (the draft). Walking
    back by text keeps a BOS token (or none) and special tokens shown as "" from
    shifting it; empty when the server gave no prompt log-probs."""
    scored, covered = [], 0
    for piece, value in reversed(prompt):
        if covered >= chars:
            break
        scored.append(value)
        covered += len(piece)
    return scored[::-1] if covered else []


def _token_logprobs(choice: dict) -> tuple[list[str], list[float]]:
    lp = choice.get("logprobs") or {}
    tokens = lp.get("tokens") or []
    values = [0.0 if v is None else float(v) for v in (lp.get("token_logprobs") or [])]
    return (tokens, values) if len(tokens) == len(values) else ([], [])


def _message(response: Any) -> str:
    try:
        error = response.json().get("error")
        return (error.get("message") if isinstance(error, dict) else str(error or response.text))[:200]
    except Exception:  # noqa: BLE001 - not JSON
        return response.text[:200]
