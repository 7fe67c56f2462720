"""Hard per-query caps on the larger tiers, composing with every router.

`max_large_tokens` caps the tokens decoded by every tier above the smallest.

`relative` (--budget B) caps the query's cost, in `unit` (units.py: time,
decode, flops or price), at B x what the top tier would spend answering alone: reading the prompt and writing `reference_tokens`
(the typical large-only answer length; the actual transcript once longer,
except under the query-level cascade, whose long attempt may be dropped for
a shorter one, so there the fixed reference holds).
Only the tiers above the smallest are counted against the cap. Their reading
is priced as the unit prices it (in time and FLOPs a larger tier that joins
late pays for reading the whole transcript first; in decode units reading is
free); the cap is checked before every larger-tier step with that owed
prefill reserved. The smallest tier is the fallback and is never capped, so a query whose small-model cost alone exceeds the cap still
finishes, with the small model only.

Both caps are never exceeded by the larger tiers: a step granted to one is cut
at the tokens left, and once none are left the smallest tier writes the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from steer_cli.errors import UsageError

# Mean tokens the 1.5B wrote per GSM8K dev answer (327) rounded; see README.
REFERENCE_TOKENS = 320


@dataclass(frozen=True)
class Budget:
    max_large_tokens: int | None = None
    relative: float | None = None
    reference_tokens: int = REFERENCE_TOKENS
    unit: str = "flops"

    def __post_init__(self) -> None:
        if self.max_large_tokens is not None and self.max_large_tokens < 0:
            raise UsageError(f"--max-large-tokens {self.max_large_tokens} is negative", "pass 0 or more")
        if self.relative is not None and not 0.0 < self.relative <= 10.0:
            raise UsageError(f"--budget {self.relative} is not a relative cost", "pass a fraction of the large model's cost, like 0.5")
        from steer_cli.units import check

        check(self.unit)
        if self.reference_tokens < 1:
            raise UsageError("budget reference_tokens must be positive", "set it to a typical answer length, like 320")

    @property
    def active(self) -> bool:
        return self.max_large_tokens is not None or self.relative is not None


class Ledger:
    """One problem's spend against the caps: what the tiers above the
    smallest have spent since the problem started, and how many tokens each
    may still decode. `top_tokens` is the transcript so far in the top tier's
    tokens (the cap grows with it, except under a query-level router)."""

    def __init__(self, tiers: list, budget: Budget, rates: list, query_level: bool, max_tokens: int) -> None:
        self.tiers, self.budget, self.rates = tiers, budget, rates
        self.query_level, self.max_tokens = query_level, max_tokens
        self.before = [t.stats.snapshot() for t in tiers]

    def since(self) -> list:
        """Each tier's counters for this problem alone."""
        return [t.stats.since(b) for t, b in zip(self.tiers, self.before, strict=True)]

    def room(self, tier: int, top_tokens: int) -> int | None:
        """Tokens `tier` may still decode (None: no cap). The smallest tier
        is the fallback and never capped."""
        if tier == 0 or not self.budget.active:
            return None
        rooms = []
        if self.budget.max_large_tokens is not None:
            rooms.append(self.budget.max_large_tokens - self.large_decoded())
        if self.budget.relative is not None:
            rates = self.rates[tier]
            left = self.cap(top_tokens) - self.larger_spent() - self.tiers[tier].pending() * rates.prefill
            rooms.append(math.floor(left / rates.decode) if rates.decode else self.max_tokens)
        return max(0, min(rooms))

    def visible(self, members: list[int], need: int, top_tokens: int) -> int:
        """How many of `members` (small to large) may still act on `need`
        more tokens; the first always may."""
        count = 1
        for t in members[1:]:
            room = self.room(t, top_tokens)
            if room is not None and room < need:
                break
            count += 1
        return count

    def cap(self, top_tokens: int) -> float:
        """B x the top tier alone: its prompt and the longer of the typical
        answer and the transcript so far (a cascade's attempt may yet be
        dropped for a shorter one, so there only the fixed reference is sure)."""
        from steer_cli import units

        top = self.tiers[-1]
        written = 0 if self.query_level else top_tokens
        return self.budget.relative * units.alone(self.rates[-1], top.prompt_length(), max(self.budget.reference_tokens, written))

    def larger_spent(self) -> float:
        """What the tiers above the smallest spent on this problem, in the budget's unit."""
        from steer_cli import units

        return sum(units.spent_by(self.budget.unit, r, t.params, s) for r, t, s in zip(self.rates[1:], self.tiers[1:], self.since()[1:], strict=True))

    def large_decoded(self) -> int:
        return sum(s.decoded_tokens for s in self.since()[1:])

    def report(self, top_tokens: int) -> list[dict]:
        """What each cap allowed and what it covered spent, in its own unit;
        `spent <= cap` always (the smallest tier is the fallback, not covered)."""
        report = []
        if self.budget.max_large_tokens is not None:
            report.append({"unit": "decoded tokens", "cap": self.budget.max_large_tokens, "spent": self.large_decoded(), "covers": "tiers above the smallest"})
        if self.budget.relative is not None:
            report.append({"unit": self.budget.unit, "cap": self.cap(top_tokens), "spent": self.larger_spent(), "covers": "tiers above the smallest"})
        return report
