"""The arithmetic of comparing routers on the same problems.

Costs are relative to what the user would otherwise run: the top tier solving
the same problem alone. Where that run was measured (eval with `large` among
its configurations) its own records are the reference, problem by problem;
elsewhere the reference is estimated from the accepted transcript only (a
discarded draft never enlarges it). Accuracy differences are paired: each
router against each baseline on the very same problems, with a 95% interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from steer_cli.answers import answers_match, extract_answer
from steer_cli.units import UNITS, flops

Z95 = 1.96


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def ratio_se(numerators: list[float], denominators: list[float]) -> float:
    """Standard error of sum(x) / sum(y) over n problems (first-order delta
    method): how far another sample of problems would move the cost."""
    n, total = len(numerators), sum(denominators)
    if n < 2 or not total:
        return 0.0
    r = sum(numerators) / total
    residuals = [x - r * y for x, y in zip(numerators, denominators, strict=True)]
    return math.sqrt(n / (n - 1) * sum(e * e for e in residuals)) / total


@dataclass(frozen=True)
class Paired:
    """Mean per-problem difference with its 95% interval (normal
    approximation over problems: paired, so shared luck cancels)."""

    diff: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.diff:+.1%} [{self.low:+.1%}, {self.high:+.1%}]"

    @property
    def verdict(self) -> str:
        """Where the interval puts a route against the line it is compared with."""
        return "above" if self.low > 0 else "below" if self.high < 0 else "on"


def paired(differences: list[float]) -> Paired | None:
    n = len(differences)
    if n < 2:
        return None
    mean = sum(differences) / n
    var = sum((d - mean) ** 2 for d in differences) / (n - 1)
    half = Z95 * math.sqrt(var / n)
    return Paired(mean, mean - half, mean + half, n)


def correct(record: dict) -> bool:
    """Graded now, from the record's text, by today's answer checker (so an
    improved checker re-grades old records)."""
    if "gold" not in record or "steps" not in record:
        return bool(record.get("correct"))
    text = "".join(s["text"] for s in record["steps"])
    return answers_match(extract_answer(text, last_number=record.get("finish") == "eos"), record["gold"])


def decode_flops(record: dict) -> float:
    return sum(flops(m["params"], m["decoded_tokens"]) for m in record["cost"]["models"])


def wall(record: dict) -> float:
    return float(record["cost"]["wall_s"])


def spent(record: dict, unit: str, profiles: dict) -> float | None:
    """What one run cost in `unit` (None where it cannot be priced)."""
    from steer_cli.profile import predicted_seconds

    cost = record["cost"]
    if unit == "flops":
        return cost["flops"]
    if unit == "decode":
        return decode_flops(record)
    if unit == "price":
        return cost.get("price_usd")
    return predicted_seconds(record, profiles)


def alone(record: dict, unit: str, profiles: dict) -> float | None:
    """The top tier answering this problem alone, estimated from the accepted
    transcript (a discarded draft never enlarges it)."""
    cost = record["cost"]
    top = cost["models"][-1]
    answer = sum(s["tokens"] for s in record["steps"])  # exact when the tiers share a tokenizer
    prompt = max(0.0, cost["large_only_flops"] / flops(top["params"], 1) - answer)
    if unit == "flops":
        return cost["large_only_flops"]
    if unit == "decode":
        return flops(top["params"], answer)
    if unit == "time":
        profile = profiles.get(top["name"])
        return None if profile is None else profile.seconds(int(prompt), answer)
    relative = (cost.get("relative") or {}).get("price")
    return cost["price_usd"] / relative if relative and cost.get("price_usd") is not None else None


def reference(record: dict, large: dict | None, unit: str, profiles: dict) -> float | None:
    """The top tier alone on this problem: its measured run when at hand, else estimated."""
    return spent(large, unit, profiles) if large is not None else alone(record, unit, profiles)


@dataclass
class Summary:
    config: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    relative_cost: float  # FLOPs, prefill included: sum routed / sum reference
    cost_se: float  # its standard error over problems (delta method for a ratio of sums)
    decode_cost: float  # decoded tokens only, weighted by parameters (TRIM's "expensive tokens")
    time_cost: float | None  # seconds predicted by the machine profile (None without one)
    price_cost: float | None  # billed price (None without a price for every tier)
    wall_cost: float | None  # measured wall seconds against the measured large-only run (None without it)
    reference: str  # "measured" (the large-only run, per problem) or "estimated"
    large_decoded_per_problem: float
    large_step_share: float
    wall_s: float
    wall_s_per_problem: float
    predicted_s_per_problem: float | None = None  # from the machine profile and the token counts
    cost_ses: dict[str, float] = field(default_factory=dict)  # unit -> standard error of its relative cost
    # Against the small and large runs on the same problems (None without them).
    gap_recovered: float | None = None
    unit: str = "flops"  # the unit vs_random is matched in
    vs_random: Paired | None = None  # accuracy minus random query routing at the same cost in `unit`
    vs_random_by_unit: dict[str, Paired | None] = field(default_factory=dict)
    vs_small: Paired | None = None
    vs_large: Paired | None = None

    def cost(self, unit: str) -> float | None:
        return {"flops": self.relative_cost, "decode": self.decode_cost, "time": self.time_cost, "price": self.price_cost}[unit]


def summarize(label: str, records: list[dict], large: dict[str, dict] | None = None, meter=None) -> Summary:
    """One configuration's figures; `large` maps a problem key to its
    large-only record, the honest cost reference where present; `meter`
    (units.Meter) brings the machine profiles that price time."""
    profiles = meter.profiles if meter is not None else {}
    solved = [r for r in records if "error" not in r]
    n = len(solved)
    right = sum(correct(r) for r in solved)
    low, high = wilson(right, n)
    measured = bool(solved) and all(large and r.get("key") in large for r in solved)
    refs = {r.get("key", ""): (large or {}).get(r.get("key", "")) for r in solved}
    costs, ses = {}, {}
    for unit in UNITS:
        xs = [spent(r, unit, profiles) for r in solved]
        ys = [reference(r, refs[r.get("key", "")], unit, profiles) for r in solved]
        usable = bool(solved) and all(v is not None for v in xs + ys) and sum(ys) > 0  # local models bill nothing
        costs[unit] = _ratio(xs, ys) if usable else None
        ses[unit] = ratio_se(xs, ys) if usable else 0.0
    steps = [s for r in solved for s in r["steps"]]
    top = len(solved[0]["cost"]["models"]) - 1 if solved else 1
    seconds = sum(wall(r) for r in solved)
    return Summary(
        config=label,
        n=n,
        correct=right,
        accuracy=right / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        relative_cost=costs["flops"] or 0.0,
        cost_se=ses["flops"],
        decode_cost=costs["decode"] or 0.0,
        time_cost=costs["time"],
        price_cost=costs["price"],
        wall_cost=_ratio([wall(r) for r in solved], [wall(refs[r["key"]]) for r in solved]) if measured else None,
        reference="measured" if measured else "estimated",
        large_decoded_per_problem=sum(r["cost"]["models"][-1]["decoded_tokens"] for r in solved) / n if n else 0.0,
        large_step_share=sum(s["tier"] == top for s in steps) / len(steps) if steps else 0.0,
        wall_s=seconds,
        wall_s_per_problem=seconds / n if n else 0.0,
        predicted_s_per_problem=_predicted(solved, profiles),
        cost_ses=ses,
    )


def _predicted(records: list[dict], profiles: dict | None) -> float | None:
    from steer_cli.profile import predicted_seconds

    if not profiles or not records:
        return None
    each = [predicted_seconds(r, profiles) for r in records]
    return None if any(x is None for x in each) else sum(each) / len(each)


def _ratio(xs: list[float], ys: list[float]) -> float:
    total = sum(ys)
    return sum(xs) / total if total else 0.0


def add_baselines(summaries: list[Summary], outcomes: dict[str, dict[str, bool]] | None = None, unit: str = "flops") -> None:
    """Fill the comparisons when `small` and `large` were run. Random query
    routing that sends a share p to the large model costs (1-p) c_small +
    p c_large and scores (1-p) a_small + p a_large: the straight line between
    the two points, the bar a router must clear, drawn in every unit that
    can be counted; `unit` is the one the table leads with. `outcomes`
    (config -> problem key -> correct) makes every comparison paired."""
    by = {s.config: s for s in summaries}
    small, large = by.get("small"), by.get("large")
    if small is None or large is None:
        return
    gap = large.accuracy - small.accuracy
    for s in summaries:
        s.unit = unit
        if gap:
            s.gap_recovered = (s.accuracy - small.accuracy) / gap
        if outcomes is None or s.config not in outcomes:
            continue
        mine, lo, hi = outcomes[s.config], outcomes.get("small", {}), outcomes.get("large", {})
        keys = [k for k in mine if k in lo and k in hi]
        for u in UNITS:
            c, c_small, c_large = s.cost(u), small.cost(u), large.cost(u)
            if None in (c, c_small, c_large) or c_large <= c_small:
                s.vs_random_by_unit[u] = None
                continue
            share = random_share(c, c_small, c_large)
            s.vs_random_by_unit[u] = paired([mine[k] - ((1 - share) * lo[k] + share * hi[k]) for k in keys])
        s.vs_random = s.vs_random_by_unit.get(unit)
        s.vs_small = paired([mine[k] - lo[k] for k in keys])
        s.vs_large = paired([mine[k] - hi[k] for k in keys])


def random_share(cost: float, low: float, high: float) -> float:
    """The share of queries a random query router sends to the large model so that its cost,
    between the small model's (`low`) and the large one's (`high`), comes to `cost`."""
    return min(max((cost - low) / (high - low), 0.0), 1.0) if high > low else 0.0
