"""Choosing the route that pays: every candidate graded and priced on the
same calibration problems, the best accuracy within the target cost winning
(ties to the cheaper), and said plainly when that is one model alone or
random mixing.

Query-level candidates need no run of their own: with greedy decoding a
query sent to one model is that model's solo run, so `small`, `large`,
`mix@p` and the P(T) cascade are replayed exactly from the small-only and
large-only records (a cascade that escalates pays both runs). Stepwise
routers the user names are calibrated with real runs (calibrate.py) and join
as measured, priced against the same large-only records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from steer_cli import stats
from steer_cli.routers import mix_draw, mix_up
from steer_cli.routes import Route


@dataclass
class Candidate:
    route: Route
    summary: stats.Summary
    how: str  # "replayed" (from the solo runs) or "measured"

    def cost(self, unit: str) -> float | None:
        return self.summary.cost(unit)


def combine(first: dict, then: dict) -> dict:
    """A query that `first` answered and `then` answered again (a cascade's
    escalation): `then`'s answer, both runs' bills."""
    cost = {**then["cost"], "models": first["cost"]["models"] + then["cost"]["models"]}
    for key in ("flops", "wall_s"):
        cost[key] = first["cost"][key] + then["cost"][key]
    bills = [first["cost"].get("price_usd"), then["cost"].get("price_usd")]
    cost["price_usd"] = None if None in bills else sum(bills)
    return {**then, "cost": cost}


def replayed(small: list[dict], large: list[dict], up: list[bool], both: bool) -> list[dict]:
    """The records of the route that sends the queries marked `up` to the
    large model (after the small one, when `both`)."""
    return [(combine(s, g) if both else g) if u else s for s, g, u in zip(small, large, up, strict=True)]


def replay(label: str, small: list[dict], large: list[dict], up: list[bool], both: bool, meter: Any) -> stats.Summary:
    return stats.summarize(label, replayed(small, large, up, both), {r["key"]: r for r in large}, meter)


def records_of(route: Route, small: list[dict], large: list[dict], gate: list[dict] | None = None) -> list[dict]:
    """A query-level route's records, replayed from the solo runs; behind a
    P(IK) gate (`gate`: each query's P(IK) and the bill of its pass, from
    Bench.gate_pass) every query pays the pass and one rated under the
    threshold goes to the large model alone."""
    if route.pik is not None:
        if gate is None:
            raise ValueError(f"{route.label} needs each query's P(IK) to be replayed")
        inner = records_of(replace(route, pik=None), small, large)
        return [combine(g, big if g["pik"] < route.pik else mine) for g, mine, big in zip(gate, inner, large, strict=True)]
    if route.router == "small":
        return small
    if route.router == "large":
        return large
    if route.router == "mix":
        return replayed(small, large, [mix_up(r["problem"], route.threshold) for r in small], False)
    return replayed(small, large, [(r.get("answer_confidence") or 0.0) < route.threshold for r in small], True)


def paired(mine: list[dict], theirs: list[dict]) -> stats.Paired | None:
    """mine - theirs, problem by problem (the same problems in the same order)."""
    return stats.paired([stats.correct(a) - stats.correct(b) for a, b in zip(mine, theirs, strict=True)])


def graded(route: Route, records: list[dict], large: list[dict], meter: Any, how: str = "measured") -> Candidate:
    """A route's records (run for real, or replayed) as a candidate, priced against the large-only ones."""
    return Candidate(route, stats.summarize(route.label, records, {r["key"]: r for r in large}, meter), how)


def mix_at(share: float, small: list[dict], large: list[dict], meter: Any) -> Candidate:
    share = round(share, 4)  # what the saved route will say, so what it will do
    up = [mix_up(r["problem"], share) for r in small]
    route = Route("mix", share)
    return Candidate(route, replay(route.label, small, large, up, False, meter), "replayed")


def cascade_at(threshold: float, small: list[dict], large: list[dict], meter: Any) -> Candidate:
    threshold = round(threshold, 6)
    up = [(r.get("answer_confidence") or 0.0) < threshold for r in small]
    route = Route("cascade", threshold, "answer")
    return Candidate(route, replay(route.label, small, large, up, True, meter), "replayed")


def gated_at(pik: float, cascade: float, small: list[dict], large: list[dict], gate: list[dict], meter: Any) -> Candidate:
    route = Route("cascade", round(cascade, 6), "answer", round(pik, 6))
    return graded(route, records_of(route, small, large, gate), large, meter, "replayed")


def gated(small: list[dict], large: list[dict], gate: list[dict], target: float, unit: str, meter: Any) -> list[Candidate]:
    """The P(IK) gate alone (in front of a cascade that keeps every answer),
    and in front of the P(T) cascade with both thresholds at the same quantile
    of their signal (as calibrate pairs them), each spending the most within
    the target."""
    from steer_cli.calibrate import quantile

    piks = [g["pik"] for g in gate]
    confidences = [r.get("answer_confidence") or 0.0 for r in small]
    alone = _largest_within(lambda t: gated_at(t, 0.0, small, large, gate, meter), [0.0] + [min(1.0, p + 1e-6) for p in piks], target, unit)
    n = len(small)
    both = _largest_within(lambda f: gated_at(quantile(piks, f), quantile(confidences, f), small, large, gate, meter),
                           [k / n for k in range(1, n + 1)], target, unit)
    return [c for c in (alone, both) if c is not None]


def _largest_within(make, points: list[float], target: float, unit: str) -> Candidate | None:
    """The candidate at the largest point whose cost stays within `target`
    (costs rise with the point: more queries go up)."""
    best = None
    for point in sorted(set(points)):
        candidate = make(point)
        cost = candidate.cost(unit)
        if cost is None or cost > target:
            break
        best = candidate
    return best


def query_level(small: list[dict], large: list[dict], target: float, unit: str, meter: Any) -> list[Candidate]:
    """small, large, and the mix and cascade that spend the most within the target."""
    alone = [Candidate(Route("small"), stats.summarize("small", small, {r["key"]: r for r in large}, meter), "replayed"),
             Candidate(Route("large"), stats.summarize("large", large, {r["key"]: r for r in large}, meter), "replayed")]
    confidences = [0.0] + [min(1.0, (r.get("answer_confidence") or 0.0) + 1e-6) for r in small]
    found = [mix_within(small, large, target, unit, meter), _largest_within(lambda t: cascade_at(t, small, large, meter), confidences, target, unit)]
    return alone + [c for c in found if c is not None]


def mix_within(small: list[dict], large: list[dict], target: float, unit: str, meter: Any) -> Candidate | None:
    """Random mixing at the largest share whose cost stays within `target`."""
    draws = [0.0] + [min(1.0, mix_draw(r["problem"]) + 1e-4) for r in small]  # just past each draw: that query goes up
    return _largest_within(lambda p: mix_at(p, small, large, meter), draws, target, unit)


def choose(candidates: list[Candidate], target: float, unit: str) -> Candidate:
    """The best accuracy at cost <= target, ties to the cheaper; the cheapest when none fits."""
    within = [c for c in candidates if c.cost(unit) is not None and c.cost(unit) <= target]
    if not within:
        return min(candidates, key=lambda c: c.cost(unit) if c.cost(unit) is not None else float("inf"))
    return max(within, key=lambda c: (c.summary.accuracy, -(c.cost(unit) or 0.0)))


def plainly(route: Route) -> str:
    """What the winner is, in words a user reads."""
    if route.router == "small":
        return "the small model alone (no routing pays here)"
    if route.router == "large":
        return "the large model alone (no routing pays here)"
    if route.router == "mix":
        return f"random mixing of whole queries ({route.label}: a share {route.threshold:g} to the large model; no router beat it here)"
    if route.pik is not None:
        return f"the router {route.label}, behind the P(IK) gate (ask, batch and serve apply the gate when given the same --pik FILE)"
    return f"the router {route.label}"
