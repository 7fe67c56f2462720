"""Next-token distribution math on one logits row, and the confidence signals.

All work is numpy on the last logits row (float32, vocab-sized): one max, one
exp-sum and, at decision points only, an argpartition for the top-k. This is
the hot path of decoding, so no Python-level loop touches the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np


@dataclass(frozen=True)
class NextToken:
    """Summary of a next-token distribution at a decision point."""

    top_ids: tuple[int, ...]
    top_logprobs: tuple[float, ...]  # sorted, most likely first
    entropy: float  # nats

    @property
    def maxprob(self) -> float:
        return math.exp(self.top_logprobs[0])

    @property
    def margin(self) -> float:
        second = math.exp(self.top_logprobs[1]) if len(self.top_logprobs) > 1 else 0.0
        return self.maxprob - second


def summarize(logits: np.ndarray, k: int = 5) -> NextToken:
    """Top-k log-probabilities and entropy of softmax(logits)."""
    m = float(logits.max())
    z = logits - m
    e = np.exp(z)
    total = float(e.sum(dtype=np.float64))
    log_z = math.log(total)
    entropy = log_z - float(np.dot(e, z)) / total
    k = min(k, logits.shape[0])
    top = np.argpartition(logits, -k)[-k:]
    top = top[np.argsort(-logits[top], kind="stable")]
    return NextToken(
        top_ids=tuple(int(i) for i in top),
        top_logprobs=tuple(float(z[i]) - log_z for i in top),
        entropy=max(entropy, 0.0),
    )


def greedy(logits: np.ndarray, scratch: np.ndarray | None = None) -> tuple[int, float]:
    """The argmax token and its log-probability. Runs once per decoded token,
    so it writes into a reusable buffer; the float32 pairwise sum of values
    in [0, 1] (at least one of them 1) is exact to ~1e-6 relative."""
    token = int(logits.argmax())
    buf = np.empty_like(logits) if scratch is None else scratch
    np.subtract(logits, logits[token], out=buf)
    np.exp(buf, out=buf)
    return token, -math.log(float(buf.sum()))


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> tuple[int, float]:
    """Draw from softmax(logits / T); report the token's log-prob at T=1."""
    scaled = (logits - logits.max()) / temperature
    p = np.exp(scaled.astype(np.float64))
    p /= p.sum()
    token = int(rng.choice(p.shape[0], p=p))
    shifted = logits - logits.max()
    log_z = math.log(float(np.exp(shifted).sum(dtype=np.float64)))
    return token, float(shifted[token]) - log_z


def log_softmax_at(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], without materialising the whole row."""
    m = float(logits.max())
    return float(logits[token]) - m - math.log(float(np.exp(logits - m).sum(dtype=np.float64)))


def top_alternatives(logits: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most likely (token, logprob) pairs, most likely first."""
    info = summarize(logits, k)
    return list(zip(info.top_ids, info.top_logprobs, strict=True))


# Each signal maps a distribution to a confidence in [0, 1]: high = sure.
# entropy is turned into exp(-H) so one "route up when below threshold" rule fits all.
SIGNALS: dict[str, Callable[[NextToken], float]] = {
    "maxprob": lambda d: d.maxprob,
    "margin": lambda d: d.margin,
    "entropy": lambda d: math.exp(-d.entropy),
}


def confidence(signal: str, dist: NextToken) -> float:
    try:
        return SIGNALS[signal](dist)
    except KeyError:
        from steer_cli.errors import UsageError

        raise UsageError(
            f"unknown confidence signal {signal!r}", f"use one of: {', '.join(SIGNALS)}"
        ) from None
