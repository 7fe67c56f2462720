"""A router with a trained file, written as a plugin author would: this
module and its one registry entry, nothing else in steer touched.

Its "training" is a pattern of tiers, one per step (0 = small, 1 = large),
kept in a JSON file; steps past the pattern go to the small model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from steer_cli.errors import UsageError
from steer_cli.routers import ArtifactSpec, Decision, DecisionPoint, RouterBase, RouterSpec, register


@dataclass
class ToyRouter(RouterBase):
    threshold: float
    pattern: list[int] = field(default_factory=list)
    name: str = "toy"

    def decide(self, point: DecisionPoint) -> Decision:
        tier = self.pattern[point.step_index] if point.step_index < len(self.pattern) else 0
        return Decision(tier=min(tier, point.n_tiers - 1), score=self.threshold)


def load(path: Path) -> list[int]:
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        raise UsageError(f"{path} is not a toy pattern file", "write a JSON object like {\"pattern\": [1, 0]}") from None
    pattern = body.get("pattern") if isinstance(body, dict) else None
    if not isinstance(pattern, list) or not all(t in (0, 1) for t in pattern):
        raise UsageError(f"{path}: pattern must be a list of 0 and 1", "write a JSON object like {\"pattern\": [1, 0]}")
    return pattern


TOY = ArtifactSpec("toy", load, key=lambda pattern: pattern, train="write {\"pattern\": [...]}")
register(RouterSpec("toy", lambda t, s, seed, pattern: ToyRouter(threshold=t, pattern=pattern), threshold=0.5,
                    rule="the trained pattern picks each step's tier", needs=TOY))
