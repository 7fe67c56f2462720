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
from dataclasses import dataclass

from steer_cli.answers import answers_match, extract_answer

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
    return sum(2.0 * m["params"] * m["decoded_tokens"] for m in record["cost"]["models"])


def wall(record: dict) -> float:
    return float(record["cost"]["wall_s"])


def references(record: dict, large: dict | None) -> tuple[float, float, float | None]:
    """(FLOPs, decode FLOPs, seconds) of the top tier alone on this problem:
    measured when its large-only record is at hand, else estimated from the
    accepted transcript (no time estimate then)."""
    if large is not None:
        return large["cost"]["flops"], decode_flops(large), wall(large)
    top = record["cost"]["models"][-1]
    accepted = sum(s["tokens"] for s in record["steps"])  # exact when the tiers share a tokenizer
    return record["cost"]["large_only_flops"], 2.0 * top["params"] * accepted, None


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
    time_cost: float | None  # wall seconds against the measured large-only run (None without it)
    price_cost: float | None  # billed price against the large-only run's (None without prices or that run)
    reference: str  # "measured" (the large-only run, per problem) or "estimated"
    large_decoded_per_problem: float
    large_step_share: float
    wall_s: float
    wall_s_per_problem: float
    predicted_s_per_problem: float | None = None  # from the machine profile and the token counts
    # Against the small and large runs on the same problems (None without them).
    gap_recovered: float | None = None
    vs_random: Paired | None = None  # accuracy minus random query routing at the same FLOPs
    vs_random_time: Paired | None = None  # ... at the same wall time
    vs_small: Paired | None = None
    vs_large: Paired | None = None


def summarize(label: str, records: list[dict], large: dict[str, dict] | None = None, profiles: dict | None = None) -> Summary:
    """One configuration's figures; `large` maps a problem key to its
    large-only record, the honest cost reference where present; `profiles`
    (model name -> profile.Profile) predict each record's seconds."""
    solved = [r for r in records if "error" not in r]
    n = len(solved)
    right = sum(correct(r) for r in solved)
    low, high = wilson(right, n)
    refs = [references(r, (large or {}).get(r.get("key", ""))) for r in solved]
    measured = bool(solved) and all(large and r.get("key") in large for r in solved)
    flops = [r["cost"]["flops"] for r in solved]
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
        relative_cost=_ratio(flops, [x[0] for x in refs]),
        cost_se=ratio_se(flops, [x[0] for x in refs]),
        decode_cost=_ratio([decode_flops(r) for r in solved], [x[1] for x in refs]),
        time_cost=_ratio([wall(r) for r in solved], [x[2] or 0.0 for x in refs]) if measured else None,
        price_cost=_price_ratio(solved, large) if measured else None,
        reference="measured" if measured else "estimated",
        large_decoded_per_problem=sum(r["cost"]["models"][-1]["decoded_tokens"] for r in solved) / n if n else 0.0,
        large_step_share=sum(s["tier"] == top for s in steps) / len(steps) if steps else 0.0,
        wall_s=seconds,
        wall_s_per_problem=seconds / n if n else 0.0,
        predicted_s_per_problem=_predicted(solved, profiles),
    )


def _predicted(records: list[dict], profiles: dict | None) -> float | None:
    from steer_cli.profile import predicted_seconds

    if not profiles or not records:
        return None
    each = [predicted_seconds(r, profiles) for r in records]
    return None if any(x is None for x in each) else sum(each) / len(each)


def _price_ratio(records: list[dict], large: dict[str, dict] | None) -> float | None:
    prices = [r["cost"].get("price_usd") for r in records]
    reference = [(large or {})[r["key"]]["cost"].get("price_usd") for r in records]
    if any(p is None for p in prices + reference) or not sum(reference):
        return None
    return sum(prices) / sum(reference)


def _ratio(xs: list[float], ys: list[float]) -> float:
    total = sum(ys)
    return sum(xs) / total if total else 0.0


def add_baselines(summaries: list[Summary], outcomes: dict[str, dict[str, bool]] | None = None) -> None:
    """Fill the comparisons when `small` and `large` were run. Random query
    routing that sends a share p to the large model costs (1-p) c_small +
    p c_large and scores (1-p) a_small + p a_large: the straight line between
    the two points, the bar a router must clear. `outcomes` (config -> problem
    key -> correct) makes every comparison paired, with its interval."""
    by = {s.config: s for s in summaries}
    small, large = by.get("small"), by.get("large")
    if small is None or large is None or large.relative_cost <= small.relative_cost:
        return
    gap = large.accuracy - small.accuracy
    for s in summaries:
        if gap:
            s.gap_recovered = (s.accuracy - small.accuracy) / gap
        if outcomes is None or s.config not in outcomes:
            continue
        mine, lo, hi = outcomes[s.config], outcomes.get("small", {}), outcomes.get("large", {})
        keys = [k for k in mine if k in lo and k in hi]
        share = _share(s.relative_cost, small.relative_cost, large.relative_cost)
        s.vs_random = paired([mine[k] - ((1 - share) * lo[k] + share * hi[k]) for k in keys])
        if s.time_cost is not None and small.time_cost is not None and large.time_cost:
            t = _share(s.time_cost, small.time_cost, large.time_cost)
            s.vs_random_time = paired([mine[k] - ((1 - t) * lo[k] + t * hi[k]) for k in keys])
        s.vs_small = paired([mine[k] - lo[k] for k in keys])
        s.vs_large = paired([mine[k] - hi[k] for k in keys])


def _share(cost: float, low: float, high: float) -> float:
    return min(max((cost - low) / (high - low), 0.0), 1.0) if high > low else 0.0
