"""`steer calibrate`: find and save the threshold that spends a target cost."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def calibrate(
    target_cost: Annotated[float, typer.Option("--target-cost", help="Relative cost to spend, in --cost-unit: routed / the large model alone, in (0, 1].")],
    router: common.Router = None,
    signal: common.Signal = None,
    data: Annotated[str, typer.Option("--data", help="Calibration problems: train (shipped GSM8K slice) or a JSONL; cost needs no gold answers, so your own questions do.")] = "train",
    limit: Annotated[int, typer.Option("--limit", help="Calibration problems to use (a 0.5 target on GSM8K needs a few hundred: few problems escalate).")] = 400,
    heldout: Annotated[str, typer.Option("--heldout", help="Held-out problems to check the threshold on (dev, train or a JSONL; 'none' skips).")] = "dev",
    heldout_limit: Annotated[int, typer.Option("--heldout-limit", help="Held-out problems to use.")] = 300,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Stop when the calibration cost is this close to the target.")] = 0.03,
    max_rounds: Annotated[int, typer.Option("--max-rounds", help="Routed passes over the calibration set at most.")] = 6,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the threshold without saving it.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    work: Annotated[Optional[Path], typer.Option("--work", help="Per-configuration records (reused on rerun); default STEER_HOME/eval.")] = None,
    pik: common.Pik = None,
    cost_unit: common.CostUnit = None,
    policy: common.PolicyFile = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    max_steps: common.MaxSteps = 24,
    max_step_tokens: common.MaxStepTokens = 256,
    delimiter: common.Delimiter = "\\n\\n",
    temperature: common.Temperature = 0.0,
    seed: common.Seed = 0,
    n_ctx: common.NCtx = None,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Find the ROUTER threshold whose measured relative cost meets --target-cost, check it on held-out problems, save it."""
    with boundary():
        from steer_cli import calibrate as cal
        from steer_cli import datasets, stats
        from steer_cli import evaluate as ev
        from steer_cli import ui
        from steer_cli.registry import load_registry, save_user_defaults
        from steer_cli.routers import THRESHOLDED, Route

        if not 0.0 < target_cost <= 1.0:
            raise common.UsageError(f"--target-cost {target_cost:g} is outside (0, 1]", "pass a fraction of the large model's cost, like 0.5")
        name = router or load_registry(config).defaults.router
        if name not in THRESHOLDED:
            raise common.UsageError(f"router {name!r} has no threshold to calibrate", f"use one of: {', '.join(THRESHOLDED)}")
        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx, temperature, seed)
        registry = engine_args.registry()
        limits = common.step_limits(max_steps, max_step_tokens, delimiter)
        classifier = common.load_pik(pik)
        items = datasets.problems(data, limit)
        held = _heldout_items(heldout, heldout_limit, data, limit)
        unit = common.cost_unit(cost_unit, registry.defaults)
        trained = common.load_policy(policy)
        if (trained is None) != (name != "policy"):
            raise common.UsageError("--policy goes with --router policy, and --router policy needs --policy FILE", "pass both, or neither")
        bench = common.bench(engine_args, limits, work, registry=registry, pik=classifier, unit=unit, quiet=quiet, policy=trained)
        bench.meter.require(bench.engines, "calibrating")
        common.check_pik(classifier, bench.engines)
        chosen = bench.resolve(Route(name, None, ev.signal_for(name, signal))).signal
        log = ui.stderr_console()
        small_done: dict[str, dict] = {}  # problem key -> small-only record
        greedy = temperature == 0  # only then is a routed run its small-only run up to the first escalation

        def run(cfg: Route, problems: list, what: str) -> tuple[cal.Probe, list[dict]]:
            reuse = None
            # Problems whose small-only trace never escalates are that run (not with P(IK): it adds its own pass).
            if cfg.router != "small" and greedy and cfg.pik is None:
                if any(p.key not in small_done for p in problems):
                    run(Route("small"), problems, what)  # with its own progress bar: it is the long part

                def reuse(item):
                    record = small_done[item.key]
                    return {**record, "router": cfg.router, "reused": "small"} if cal.stays_small(cfg.router, chosen, cfg.threshold, record) else None

            with ui.Counter(f"{what} {cfg.label}", len(problems), quiet=quiet, every=10, transient=True) as bar:
                ticks = iter(range(1, len(problems) + 1))
                records = bench.records(cfg, problems, lambda: bar.update(next(ticks)), reuse)
            if cfg.router == "small":
                small_done.update((r["key"], r) for r in records)
            s = stats.summarize(cfg.label, records, meter=bench.meter)
            probe = cal.Probe(cfg.threshold if cfg.threshold is not None else 0.0, s.cost(unit) or 0.0, cal.accuracy(records), s.n, s.cost_ses[unit])
            if not quiet:
                log.print(f"steer: {what} {cfg.label}: {_line(probe)}", highlight=False)
            return probe, records

        floor, small_records = run(Route("small"), items, "calibration")
        scores = cal.scores_of(name, chosen, small_records)
        # With P(IK) the pair of thresholds moves along one line: both are the
        # same quantile f of their own signal over the calibration problems.
        pik_scores = [classifier.predict(bench.engines[0].embed_prompt(i.question), i.question) for i in items] if classifier else []
        line: dict[float, float | None] = {}

        def to_threshold(f: float) -> float:
            t = round(cal.quantile(scores, f), 4)
            line[t] = round(cal.quantile(pik_scores, f), 4) if classifier else None
            return t

        outcome = cal.search(
            lambda t: run(Route(name, t, chosen, line.get(t)), items, "calibration")[0],
            target_cost, floor.cost, to_threshold, tolerance, max_rounds,
            cal.decisions_per_query(name, small_records),
        )
        best_pik = line.get(outcome.best.threshold)
        check = run(Route(name, outcome.best.threshold, chosen, best_pik), held, "held-out")[0] if held else None
        saved = None
        if not dry_run:
            thresholds = {name: outcome.best.threshold, **({"pik": best_pik} if best_pik is not None else {})}
            saved = save_user_defaults({"thresholds": thresholds, "signals": {name: chosen}} if chosen else {"thresholds": thresholds}, config)
        _report(name, chosen, target_cost, outcome, check, saved, as_json, best_pik, unit)
        _warn_if_loose(outcome.best, tolerance)


def _heldout_items(heldout: str, heldout_limit: int, data: str, limit: int) -> list:
    """Held-out problems, disjoint from the calibration ones: from the same
    file they are the ones after the calibration slice."""
    from steer_cli import datasets

    if heldout == "none":
        return []
    if heldout == data:
        return datasets.problems(data, limit + heldout_limit)[limit:]
    return datasets.problems(heldout, heldout_limit)


def _warn_if_loose(best, tolerance: float) -> None:
    """A cost measured on few problems is itself uncertain: a few problems
    that escalate or not move it more than the search's tolerance."""
    spread = 2 * best.cost_se
    if spread > tolerance:
        print(
            f"steer: note: over {best.n} problems the cost is only known to ±{spread:.3f} (2 s.e.), wider than the "
            f"tolerance {tolerance:g}; new problems may land that far off the target: calibrate on more (--limit)",
            file=sys.stderr,
        )


def _report(name: str, signal: str | None, target: float, outcome, check, saved: Path | None, as_json: bool, pik: float | None = None, unit: str = "time") -> None:
    best = outcome.best
    if as_json:
        payload = {
            "router": name,
            "signal": signal,
            "target_cost": target,
            "cost_unit": unit,
            "threshold": best.threshold,
            "pik_threshold": pik,
            "converged": outcome.converged,
            "calibration": {"cost": round(best.cost, 4), "cost_se": round(best.cost_se, 4), "accuracy": best.accuracy, "n": best.n},
            "heldout": None if check is None else {"cost": round(check.cost, 4), "cost_se": round(check.cost_se, 4), "accuracy": check.accuracy, "n": check.n},
            "probes": [{"threshold": p.threshold, "cost": round(p.cost, 4), "accuracy": p.accuracy} for p in outcome.probes],
            "saved_to": str(saved) if saved else None,
        }
        print(json.dumps(payload))
        return
    label = name if signal is None else f"{name} ({signal})"
    print(f"{label} threshold {best.threshold:g}{'' if pik is None else f', P(IK) threshold {pik:g}'} for target cost {target:g} ({unit})")
    print(f"  calibration: {_line(best)}")
    if check is not None:
        print(f"  held-out:    {_line(check)}")
    if not outcome.converged:
        print(f"steer: no threshold within tolerance after {len(outcome.probes)} rounds; kept the closest", file=sys.stderr)
    if saved:
        print(f"steer: saved defaults.thresholds.{name} = {best.threshold:g} to {saved}", file=sys.stderr)
    else:
        print("steer: dry run, nothing saved", file=sys.stderr)


def _line(probe) -> str:
    graded = "no gold answers" if probe.accuracy is None else f"{probe.accuracy:.1%}"
    return f"relative cost {probe.cost:.3f} ± {probe.cost_se:.3f} (s.e.) · accuracy {graded} (n={probe.n})"
