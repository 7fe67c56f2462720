"""What an answer cost, per model and relative to the large model alone.

FLOPs follow the usual 2 x parameters x tokens rule, counted over the tokens
each model actually processed (prompt-cache hits included, so a warm cache
does not flatter one router over another). The reference is the top tier
writing the same transcript alone: its prompt plus every step's text in its
own tokenization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from steer_cli.engine import EngineStats
from steer_cli.units import flops as flops_of

T = TypeVar("T")


@dataclass
class ModelCost:
    name: str
    params: int
    prefill_tokens: int
    decoded_tokens: int
    evaluated_tokens: int
    reused_tokens: int
    flops: float
    wall_s: float
    price_usd: float | None = None  # input (prefill + cached) and output tokens at the model's price
    scored_tokens: int = 0  # of the prefill, read with logits for every position

    @classmethod
    def billed(cls, engine: Any, work: Callable[[], T]) -> tuple[T, ModelCost]:
        """What `work` on `engine` returns, and what it cost there (a pass a
        route pays before anything else, such as reading the question)."""
        before = engine.stats.snapshot()
        value = work()
        return value, cls.of(engine.name, engine.params, engine.stats.since(before), engine.price)

    @classmethod
    def of(cls, name: str, params: int, stats: EngineStats, price=None) -> ModelCost:
        processed = stats.evaluated_tokens + stats.reused_tokens
        billed = None
        if price is not None:
            billed = round(((stats.prefill_tokens + stats.reused_tokens) * price.input_per_m + stats.decoded_tokens * price.output_per_m) / 1e6, 8)
        return cls(
            name=name,
            params=params,
            prefill_tokens=stats.prefill_tokens,
            decoded_tokens=stats.decoded_tokens,
            evaluated_tokens=stats.evaluated_tokens,
            reused_tokens=stats.reused_tokens,
            flops=flops_of(params, processed),
            wall_s=round(stats.wall_s, 4),
            price_usd=billed,
            scored_tokens=stats.scored_tokens,
        )


@dataclass
class Cost:
    models: list[ModelCost] = field(default_factory=list)
    flops: float = 0.0
    large_only_flops: float = 0.0
    relative_cost: float = 0.0  # in `unit`: routed / the top tier alone
    unit: str = "flops"
    relative: dict[str, float | None] = field(default_factory=dict)  # every unit's (units.py); None where not computable
    wall_s: float = 0.0
    price_usd: float | None = None  # every tier's bill, when every tier has a price
    budget: list[dict] = field(default_factory=list)  # per cap: {unit, cap, spent, covers}, spent <= cap

    @classmethod
    def of(cls, models: list[ModelCost], large_only_tokens: int, large_params: int, wall_s: float) -> Cost:
        flops = sum(m.flops for m in models)
        reference = flops_of(large_params, large_only_tokens)
        return cls(
            models=models,
            flops=flops,
            large_only_flops=reference,
            relative_cost=round(flops / reference, 4) if reference else 0.0,
            wall_s=round(wall_s, 4),
            price_usd=None if any(m.price_usd is None for m in models) else round(sum(m.price_usd for m in models), 8),
        )
