"""Comparing router configurations on problems with gold answers.

A configuration is a route, `router[:signal][@threshold]` (e.g. `steer:entropy@0.6`). Its records live
in a JSONL file keyed by everything that changes an answer (models, router,
signal, step limits, sampling, prompt), so a rerun reuses finished problems
and a changed setting never reuses stale ones.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from steer_cli.errors import UsageError
from steer_cli.routers import ROUTER_SIGNALS, ROUTERS, Route, fill


def parse_configs(spec: str) -> list[Route]:
    """`router[:signal][@threshold]`, comma-separated: small,large,steer@0.4,trim:verify@0.6."""
    configs = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        head, _, value = part.partition("@")
        name, _, signal = head.partition(":")
        if name not in ROUTERS:
            raise UsageError(f"unknown router {name!r} in --routers", f"use one of: {', '.join(ROUTERS)}, e.g. small,large,steer@0.6")
        try:
            threshold = float(value) if value else None
        except ValueError:
            raise UsageError(f"bad threshold {value!r} in --routers", "write it like steer@0.6") from None
        configs.append(Route(name, threshold, signal or None))
    if not configs:
        raise UsageError("--routers names no configuration", "e.g. --routers small,large,steer@0.6")
    return configs


def signal_for(router: str, signal: str | None) -> str | None:
    """A --signal given to a whole eval applies to the routers that can read it."""
    return signal if signal in ROUTER_SIGNALS.get(router, ()) else None


def records_path(work: Path, data: str, config: Route, fingerprint: dict) -> Path:
    digest = hashlib.sha256(json.dumps({**fingerprint, "config": config.label}, sort_keys=True).encode()).hexdigest()[:10]
    stem = Path(data).stem if data.endswith(".jsonl") else data
    return work / f"{stem}-{config.label}-{digest}.jsonl"


@dataclass
class Bench:
    """Runs configurations over labelled problems with loaded engines, one
    resumable record file per (data, configuration, fingerprint)."""

    engines: list
    defaults: Any  # registry defaults: thresholds and signals left unnamed
    limits: Any
    fingerprint: dict
    work: Path
    seed: int = 0
    budget: Any = None

    def resolve(self, config: Route) -> Route:
        """The configuration with the defaults it would run with filled in."""
        return fill(config, self.defaults)

    def path(self, data: str, config: Route) -> Path:
        config, keyed = self.resolve(config), dict(self.fingerprint)
        # The label already names the signal; it stays in the key too so record files written
        # before keep their names (and only routers that read a signal key on it).
        if config.router in ROUTER_SIGNALS:
            keyed["signal"] = config.signal
        return records_path(self.work, data, config, keyed)

    def records(
        self, data: str, config: Route, items: list, tick: Callable[[], None] = lambda: None, reuse: Callable[[Any], dict | None] | None = None
    ) -> list[dict]:
        """Each item's record, solving only what the record file lacks; every
        finished problem is appended at once, so an interruption loses one.
        `reuse(item)` may supply a record known to be what solving would give."""
        from steer_cli import runs
        from steer_cli.solver import Solver

        config = self.resolve(config)
        solver = Solver(self.engines, config.build(self.seed), self.limits, self.budget)
        stream, done = runs.open_output(self.path(data, config))
        try:
            for item in items:
                if item.id not in done:
                    known = reuse(item) if reuse else None
                    done[item.id] = known if known is not None else runs.result_record(item, runs.solve_one(solver, item.question))
                    runs.append(stream, done[item.id])
                tick()
        finally:
            stream.close()
        return [done[i.id] for i in items]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
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


@dataclass
class Summary:
    config: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    relative_cost: float  # sum of routed FLOPs / sum of large-only FLOPs
    cost_se: float  # its standard error over problems (delta method for a ratio of sums)
    # Decode work only: sum(params x decoded) / (top params x all decoded tokens).
    # Shows what routing saves where prefill is nearly free (exact when tiers share a tokenizer).
    decode_cost: float
    large_decoded_per_problem: float
    large_step_share: float
    wall_s: float
    wall_s_per_problem: float
    # Against the small and large runs on the same problems (None without them):
    # the share of the small-to-large accuracy gap recovered, and the accuracy
    # over routing whole queries at random between the two at the same cost.
    gap_recovered: float | None = None
    vs_random: float | None = None


def add_baselines(summaries: list[Summary]) -> None:
    """Fill gap_recovered and vs_random when `small` and `large` were run.
    Random query routing that sends a share p to the large model costs
    (1-p) c_small + p c_large and scores (1-p) a_small + p a_large: the
    straight line between the two points, the bar a router must clear."""
    by = {s.config: s for s in summaries}
    small, large = by.get("small"), by.get("large")
    if small is None or large is None or large.relative_cost <= small.relative_cost:
        return
    gap = large.accuracy - small.accuracy
    for s in summaries:
        if gap:
            s.gap_recovered = (s.accuracy - small.accuracy) / gap
        p = (s.relative_cost - small.relative_cost) / (large.relative_cost - small.relative_cost)
        s.vs_random = s.accuracy - (small.accuracy + min(max(p, 0.0), 1.0) * gap)


def summarize(config: Route, records: list[dict]) -> Summary:
    solved = [r for r in records if "error" not in r]
    n = len(solved)
    correct = sum(bool(r.get("correct")) for r in solved)
    low, high = wilson(correct, n)
    flops = sum(r["cost"]["flops"] for r in solved)
    reference = sum(r["cost"]["large_only_flops"] for r in solved)
    large_decoded = sum(r["cost"]["models"][-1]["decoded_tokens"] for r in solved)
    decode_work = sum(m["params"] * m["decoded_tokens"] for r in solved for m in r["cost"]["models"])
    decode_reference = sum(r["cost"]["models"][-1]["params"] * sum(m["decoded_tokens"] for m in r["cost"]["models"]) for r in solved)
    steps = [s for r in solved for s in r["steps"]]
    top = len(solved[0]["cost"]["models"]) - 1 if solved else 1
    wall = sum(r["cost"]["wall_s"] for r in solved)
    return Summary(
        config=config.label,
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        relative_cost=flops / reference if reference else 0.0,
        cost_se=ratio_se([r["cost"]["flops"] for r in solved], [r["cost"]["large_only_flops"] for r in solved]),
        decode_cost=decode_work / decode_reference if decode_reference else 0.0,
        large_decoded_per_problem=large_decoded / n if n else 0.0,
        large_step_share=sum(s["tier"] == top for s in steps) / len(steps) if steps else 0.0,
        wall_s=wall,
        wall_s_per_problem=wall / n if n else 0.0,
    )


HEADER = ("config", "n", "accuracy", "95% CI", "rel. FLOPs", "rel. decode FLOPs", "large tok/prob", "large steps", "s/prob", "gap recovered", "vs random")


def _signed(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table(summaries: list[Summary]) -> str:
    rows = [HEADER] + [
        (
            s.config,
            str(s.n),
            f"{s.accuracy:.1%}",
            f"{s.ci_low:.1%}–{s.ci_high:.1%}",
            f"{s.relative_cost:.2f}",
            f"{s.decode_cost:.2f}",
            f"{s.large_decoded_per_problem:.0f}",
            f"{s.large_step_share:.0%}",
            f"{s.wall_s_per_problem:.1f}",
            _signed(s.gap_recovered, ".0%"),
            _signed(s.vs_random, "+.1%"),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def markdown(summaries: list[Summary]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for s in summaries:
        lines.append(
            f"| {s.config} | {s.n} | {s.accuracy:.1%} | {s.ci_low:.1%}–{s.ci_high:.1%} | {s.relative_cost:.2f} | {s.decode_cost:.2f}"
            f" | {s.large_decoded_per_problem:.0f} | {s.large_step_share:.0%} | {s.wall_s_per_problem:.1f}"
            f" | {_signed(s.gap_recovered, '.0%')} | {_signed(s.vs_random, '+.1%')} |"
        )
    return "\n".join(lines)


def write_outputs(summaries: list[Summary], out: Path) -> list[Path]:
    """summary.json, summary.csv, summary.md and frontier.png (when matplotlib is installed)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "summary.csv", out / "summary.md"]
    written[0].write_text(json.dumps([asdict(s) for s in summaries], indent=2) + "\n")
    with written[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(summaries[0])))
        writer.writeheader()
        writer.writerows(asdict(s) for s in summaries)
    written[2].write_text(markdown(summaries) + "\n")
    png = out / "frontier.png"
    if plot_frontier(summaries, png):
        written.append(png)
    return written


def plot_frontier(summaries: list[Summary], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    families: dict[str, list[Summary]] = {}
    for s in summaries:
        families.setdefault(s.config.split("@")[0], []).append(s)
    for name, group in families.items():
        group = sorted(group, key=lambda s: s.relative_cost)
        xs, ys = [s.relative_cost for s in group], [s.accuracy for s in group]
        err = [[s.accuracy - s.ci_low for s in group], [s.ci_high - s.accuracy for s in group]]
        marker = {"small": "s", "large": "D"}.get(name, "o")
        ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=3, linestyle="-" if len(group) > 1 else "none", label=name)
        for s in group:
            ax.annotate(s.config, (s.relative_cost, s.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    by = {s.config: s for s in summaries}
    if "small" in by and "large" in by:
        ends = (by["small"], by["large"])
        ax.plot([e.relative_cost for e in ends], [e.accuracy for e in ends], color="grey", linestyle=":", label="random query routing")
    ax.set_xlabel("relative cost (routed FLOPs / large-only FLOPs)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy–cost frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
