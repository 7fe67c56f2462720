"""Cost units: what a run cost in the unit the user pays.

Every unit prices a model's work by four per-token rates: tokens it reads
(prefill), tokens it writes (decode), tokens it reads with logits for every
position (TRIM verify's scoring) and prompt tokens found in its KV cache.

- `time`: seconds on this machine, from the measured profile (profile.py);
- `decode`: decoded tokens weighted by parameters (TRIM's "expensive tokens");
  reading is free;
- `flops`: 2 x parameters per processed token, reading and writing alike;
- `price`: what an API bills, per million input and output tokens (models.yaml).

Relative cost divides by the top tier answering alone: reading the prompt and
writing the answer (the accepted transcript in its own tokens, or its measured
run where eval has one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steer_cli.errors import UsageError

UNITS = ("time", "decode", "flops", "price")
DEFAULT_UNIT = "time"


@dataclass(frozen=True)
class Rates:
    prefill: float
    decode: float
    score: float
    reused: float


def check(unit: str) -> str:
    if unit not in UNITS:
        raise UsageError(f"unknown cost unit {unit!r}", f"use one of: {', '.join(UNITS)}")
    return unit


def flops(params: int, tokens: int | float) -> float:
    """The one FLOPs rule: 2 x parameters per processed token."""
    return 2.0 * params * tokens


def rates(unit: str, params: int, price: Any = None, profile: Any = None) -> Rates | None:
    """One model's per-token rates in `unit`; None where the unit cannot be
    computed for it (time without a profile, price without a price)."""
    flop = flops(params, 1)
    if unit == "flops":
        return Rates(flop, flop, flop, flop)
    if unit == "decode":
        return Rates(0.0, flop, 0.0, 0.0)
    if unit == "time":
        if profile is None:
            return None
        return Rates(1.0 / profile.prefill_tok_s, 1.0 / profile.decode_tok_s, 1.0 / profile.score_tok_s, 0.0)
    if price is None:
        return None
    return Rates(price.input_per_m / 1e6, price.output_per_m / 1e6, price.input_per_m / 1e6, price.input_per_m / 1e6)


def spend(r: Rates, prefill: int, decoded: int, scored: int = 0, reused: int = 0) -> float:
    """Cost of these token counts (`scored` is part of `prefill` in the counters)."""
    return (prefill - scored) * r.prefill + scored * r.score + decoded * r.decode + reused * r.reused


def spent_by(unit: str, r: Rates, params: int, counts: Any) -> float:
    """One model's spend from its counters; FLOPs count every evaluated token
    (a re-evaluated one too), as cost.ModelCost does."""
    if unit == "flops":
        return flops(params, counts.evaluated_tokens + counts.reused_tokens)
    return spend(r, counts.prefill_tokens, counts.decoded_tokens, counts.scored_tokens, counts.reused_tokens)


def alone(r: Rates, prompt_tokens: int, answer_tokens: int) -> float:
    """The top tier answering alone: read the prompt, write the answer."""
    return prompt_tokens * r.prefill + answer_tokens * r.decode


@dataclass
class Meter:
    """Prices every tier of a run in every unit. `unit` is the one budgets
    cap and tables lead with; `profiles` maps a model name to its profile."""

    unit: str = DEFAULT_UNIT
    profiles: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self.unit)

    def rates(self, engine: Any, unit: str | None = None) -> Rates | None:
        return rates(unit or self.unit, engine.params, engine.price, self.profiles.get(engine.name))

    def require(self, engines: list, why: str) -> None:
        """Refuse, with the fix, a unit some tier cannot be priced in (a top
        tier that bills nothing leaves relative price undefined)."""
        top = self.rates(engines[-1]) if engines else None
        if self.unit == "price" and top is not None and top.decode == 0:
            raise UsageError(f"{why} in price: {engines[-1].name} bills nothing, so there is no price to compare with",
                             "add `price: {input_per_m: …, output_per_m: …}` to the models in models.yaml, or pass --cost-unit time")
        for engine in engines:
            if self.rates(engine) is None:
                fix = ("run `steer bench` once to profile it, or pass --cost-unit decode" if self.unit == "time"
                       else "add `price: {input_per_m: …, output_per_m: …}` to it in models.yaml, or pass --cost-unit time")
                raise UsageError(f"{why} in {self.unit} needs a {'profile' if self.unit == 'time' else 'price'} for {engine.name}", fix)

    def relative(self, engines: list, counts: list[Any], prompt_tokens: int, answer_tokens: int) -> dict[str, float | None]:
        """Every unit's relative cost of one run (`counts`: each tier's
        counters); None where a tier cannot be priced in that unit."""
        out: dict[str, float | None] = {}
        for unit in UNITS:
            each = [rates(unit, e.params, e.price, self.profiles.get(e.name)) for e in engines]
            if any(r is None for r in each):
                out[unit] = None
                continue
            spent = sum(spent_by(unit, r, e.params, c) for r, e, c in zip(each, engines, counts, strict=True))
            reference = alone(each[-1], prompt_tokens, answer_tokens)
            out[unit] = round(spent / reference, 4) if reference else None
        return out
