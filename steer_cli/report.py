"""Tables and the frontier plot of an eval: summary.json/.csv/.md and frontier.png."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from steer_cli.errors import UsageError
from steer_cli.output import aligned
from steer_cli.stats import Paired, Summary

from steer_cli.units import UNITS

NAMES = {"time": "time", "decode": "decode", "flops": "FLOPs", "price": "price"}


def header(unit: str, every_unit: bool = False) -> tuple[str, ...]:
    versus = [f"vs random ({NAMES[u]}) [95% CI], line" for u in (UNITS if every_unit else (unit,))]
    return (
        "config", "n", "accuracy", "95% CI", *(f"rel. {NAMES[u]}" for u in UNITS), "rel. wall", "large tok/prob", "large steps",
        "s/prob", "pred. s/prob", "gap recovered", *versus, "vs large [95% CI]",
    )


def _cell(value: float | Paired | None, fmt: str = "") -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, Paired) else format(value, fmt)


def _versus(value: Paired | None) -> str:
    """A paired difference with where it puts the route: above, on or below the line."""
    return "-" if value is None else f"{value} {value.verdict}"


def rows(summaries: list[Summary], unit: str, every_unit: bool = False) -> list[tuple[str, ...]]:
    return [
        (
            s.config,
            str(s.n),
            f"{s.accuracy:.1%}",
            f"{s.ci_low:.1%}–{s.ci_high:.1%}",
            *(_cell(s.cost(u), ".2f") for u in UNITS),
            _cell(s.wall_cost, ".2f"),
            f"{s.large_decoded_per_problem:.0f}",
            f"{s.large_step_share:.0%}",
            f"{s.wall_s_per_problem:.1f}",
            _cell(s.predicted_s_per_problem, ".1f"),
            _cell(s.gap_recovered, ".0%"),
            *(_versus(s.vs_random_by_unit.get(u)) for u in (UNITS if every_unit else (unit,))),
            _cell(s.vs_large),
        )
        for s in summaries
    ]


def table(summaries: list[Summary], unit: str = "time") -> str:
    return aligned([header(unit), *rows(summaries, unit)])


def markdown(summaries: list[Summary], unit: str = "time") -> str:
    head = header(unit, every_unit=True)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(summaries, unit, every_unit=True)]
    return "\n".join(lines)


def as_payload(summaries: list[Summary]) -> list[dict]:
    """What summary.json holds: one object per configuration."""
    return [_plain(s) for s in summaries]


def as_json(summaries: list[Summary]) -> str:
    return json.dumps(as_payload(summaries), indent=2)


def _plain(summary: Summary) -> dict:
    def plain(v):
        if isinstance(v, Paired):
            return asdict(v)
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else v

    return {k: plain(v) for k, v in vars(summary).items()}


def check_writable(out: Path) -> None:
    """Refuse an --out that cannot take the files, before anything is solved."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "pass a directory for summary.json, .csv, .md and frontier.png")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".steer-write-check"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be written ({exc.strerror})", "pass a directory you can write to") from None


def write_outputs(summaries: list[Summary], out: Path, unit: str = "time", profiles: dict[str, Any] | None = None) -> list[Path]:
    """summary.json, summary.csv, summary.md, profiles.json (the machine profiles that priced
    the time column, so a table read later says what machine it is true of) and frontier.png
    (when matplotlib is installed)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file", "pass a directory (it is created if missing)")
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "summary.csv", out / "summary.md"]
    written[0].write_text(as_json(summaries) + "\n")
    with written[1].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(vars(summaries[0])))
        writer.writeheader()
        writer.writerows({k: (str(v) if isinstance(v, Paired) else json.dumps(_plain(s)[k]) if isinstance(v, dict) else v) for k, v in vars(s).items()} for s in summaries)
    written[2].write_text(markdown(summaries, unit) + "\n")
    if profiles:
        written.append(out / "profiles.json")
        written[-1].write_text(json.dumps({"cpu": cpu_name(), "profiles": {n: vars(p) for n, p in sorted(profiles.items())}}, indent=1) + "\n")
    png = out / "frontier.png"
    if plot_frontier(summaries, png, unit):
        written.append(png)
    return written


def cpu_name() -> str:
    """The processor's name as the kernel reports it (Linux), else the platform's guess."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plot_frontier(summaries: list[Summary], path: Path, unit: str = "flops") -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if any(s.cost(unit) is None for s in summaries):
        unit = "flops"  # always countable
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    families: dict[str, list[Summary]] = {}
    for s in summaries:
        families.setdefault(s.config.split("@")[0], []).append(s)
    for name, group in families.items():
        group = sorted(group, key=lambda s: s.cost(unit))
        xs, ys = [s.cost(unit) for s in group], [s.accuracy for s in group]
        err = [[s.accuracy - s.ci_low for s in group], [s.ci_high - s.accuracy for s in group]]
        marker = {"small": "s", "large": "D"}.get(name, "o")
        ax.errorbar(xs, ys, yerr=err, marker=marker, capsize=3, linestyle="-" if len(group) > 1 else "none", label=name)
        for s in group:
            ax.annotate(s.config, (s.cost(unit), s.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=7)
    by = {s.config: s for s in summaries}
    if "small" in by and "large" in by:
        ends = (by["small"], by["large"])
        ax.plot([e.cost(unit) for e in ends], [e.accuracy for e in ends], color="grey", linestyle=":", label="random query routing")
    ax.set_xlabel(f"relative cost in {NAMES[unit]} (routed / large model alone)")
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy–cost frontier")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
