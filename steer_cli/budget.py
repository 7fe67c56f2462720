"""A hard per-query cap on the larger tiers' decoding, composing with any router.

`max_large_tokens` caps the tokens decoded by every tier above the smallest.
It is never exceeded: a step granted to a larger tier is cut at the tokens
left, and once none are left the smallest tier writes the rest.

(A cap on relative FLOPs is not offered: with prefill counted, a larger tier
taking a step must first read the whole transcript, so right after it the
ratio is at least 1 + P_small / P_large. A cap below that could only be
honoured by never escalating; see the README.)
"""

from __future__ import annotations

from dataclasses import dataclass

from steer_cli.errors import UsageError


@dataclass(frozen=True)
class Budget:
    max_large_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_large_tokens is not None and self.max_large_tokens < 0:
            raise UsageError(f"--max-large-tokens {self.max_large_tokens} is negative", "pass 0 or more")

    @property
    def active(self) -> bool:
        return self.max_large_tokens is not None

    def left(self, large_tokens: int) -> int | None:
        """Tokens the larger tiers may still decode, or None for no cap."""
        return None if self.max_large_tokens is None else max(0, self.max_large_tokens - large_tokens)
