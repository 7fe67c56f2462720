"""Noticing a model that repeats itself, before it burns the token cap.

Greedy decoding of a small model sometimes falls into a loop: the same
phrase over and over inside a step, or the same step again and again. Left
alone it runs to the problem's token limit (a minute of decoding for nothing:
a looping solution almost never states a right answer), so the solver stops
the solution there and records `finish: "repetition"`.
"""

from __future__ import annotations

# A tail this long made of one repeated pattern is a loop, not a list: real
# steps repeat a word or a short "+ 1" a few times, not for 48 tokens.
MIN_SPAN = 48
MAX_PERIOD = 32
MIN_REPEATS = 3
# A repeated step must be this long to count: "So:" twice is not a loop.
MIN_STEP_CHARS = 24


def looping(tokens: list[int]) -> bool:
    """True when the tail of `tokens` is one pattern of at most MAX_PERIOD
    tokens repeated back to back over MIN_SPAN tokens (and MIN_REPEATS times)."""
    n = len(tokens)
    for period in range(1, MAX_PERIOD + 1):
        span = max(MIN_SPAN, MIN_REPEATS * period)
        if span > n:
            break
        if tokens[n - span + period :] == tokens[n - span : n - period]:
            return True
    return False


def repeated_step(text: str, earlier: list[str]) -> bool:
    """True when a step says again, word for word, what an earlier step said."""
    said = text.strip()
    return len(said) >= MIN_STEP_CHARS and any(said == before.strip() for before in earlier)
