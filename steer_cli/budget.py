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
