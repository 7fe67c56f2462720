"""`steer calibrate`: find and save the threshold that spends a target cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


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
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="With --router auto: write every candidate's summary and frontier.png (the random line drawn) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    work: common.Work = None,
    pik: common.Pik = None,
    cost_unit: common.CostUnit = None,
    policy: common.PolicyFile = None,
    trained: common.Trained = None,
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
    parallel: common.Parallel = 1,
) -> None:
    """Find the ROUTER threshold whose measured relative cost meets --target-cost, check it on held-out problems, save it; with --router auto, choose the route itself (small, large, random mixing or the P(T) cascade, priced from the two solo runs) and save it as the default route in your models.yaml (--dry-run: only print it). At the defaults (400 + 300 problems) several hours on 2 cores; records are reused."""
    from steer_cli import calibrate as cal
    from steer_cli import datasets
    from steer_cli.evaluate import Bench
    from steer_cli.output import Output
    from steer_cli.registry import save_user_defaults, steer_home
    from steer_cli.routers import PIK, names
    from steer_cli.session import Session

    out = Output(as_json, quiet)
    if not 0.0 < target_cost <= 1.0:
        raise common.UsageError(f"--target-cost {target_cost:g} is outside (0, 1]", "pass a fraction of the large model's cost, like 0.5")
    if not 0.0 < tolerance < 1.0:
        raise common.UsageError(f"--tolerance {tolerance:g} is outside (0, 1)", "pass how close to the target is close enough, like 0.03")
    for flag, value in (("--max-rounds", max_rounds), ("--limit", limit), ("--heldout-limit", heldout_limit)):
        common.within(flag, value, 1, example="the default")
    session = Session.from_options(common.options(locals()), measure=True)
    session.require_prices("calibrating")
    if out_dir is not None:
        from steer_cli import report

        report.check_writable(out_dir)
    if router == "auto":
        return _advise(session, data, limit, heldout, heldout_limit, target_cost, work, dry_run, config, out, out_dir)
    route = session.chosen(router, None, signal)
    if route.threshold is None:
        raise common.UsageError(f"router {route.router!r} has no threshold to calibrate", f"use one of: {', '.join(names(fixed=False))}")
    items = datasets.problems(data, limit)
    held = _heldout_items(heldout, heldout_limit, data, limit)
    bench = Bench(session, work or steer_home() / "eval")
    session.meter.require(session.engines, "calibrating")
    out.note(f"calibration: up to {max_rounds} routed passes over {len(items)} problems after one small-only pass, then {len(held)} held-out; "
             f"each pass {session.expected(len(items))}, less where records are reused")
    calibrator = cal.Calibrator(bench, route.router, route.signal, out, temperature == 0, session.artifacts.get(PIK.kind))
    found = calibrator.calibrate(items, held, target_cost, tolerance, max_rounds)
    saved = None
    if not dry_run:
        thresholds = {route.router: found.outcome.best.threshold, **({"pik": found.pik} if found.pik is not None else {})}
        saved = save_user_defaults({"thresholds": thresholds, **({"signals": {route.router: route.signal}} if route.signal else {})}, config)
    _report(route.router, route.signal, target_cost, found, saved, out, session.unit)
    _warn_if_loose(found.outcome.best, tolerance, out)


def _advise(session, data: str, limit: int, heldout: str, heldout_limit: int, target: float, work: Path | None, dry_run: bool, config, out,
            out_dir: Path | None = None) -> None:
    """--router auto: price every query-level route from the small-only and
    large-only runs, pick the best within the target, check it held out
    against random mixing and the large model, save it as the default route."""
    from steer_cli import advisor, datasets
    from steer_cli.evaluate import Bench
    from steer_cli.registry import save_user_defaults, steer_home
    from steer_cli.routes import Route

    bench = Bench(session, work or steer_home() / "eval")
    items, held = datasets.problems(data, limit), _heldout_items(heldout, heldout_limit, data, limit)
    todo = sum(bench.missing(Route(r), items + held) for r in ("small", "large"))
    out.note(f"choosing a route: {todo} solo solutions to run (small and large on {len(items)} calibration and {len(held)} held-out problems), "
             f"{session.expected(todo)}; the rest are in the records")
    runs = {}
    for what, problems in (("calibration", items), ("held-out", held)):
        for name in ("small", "large") if problems else ():
            with out.counter(f"{what} {name}", len(problems), every=10, transient=True) as bar:
                ticks = iter(range(1, len(problems) + 1))
                runs[what, name] = bench.records(Route(name), problems, lambda: bar.update(next(ticks)))
    unit = session.unit
    candidates = advisor.query_level(runs["calibration", "small"], runs["calibration", "large"], target, unit, session.meter)
    winner = advisor.choose(candidates, target, unit)
    check = _held_check(winner, runs, target, unit, session.meter) if held else None
    saved = None
    if not dry_run:
        values = {"router": winner.route.router}
        if winner.route.threshold is not None:
            values["thresholds"] = {winner.route.router: winner.route.threshold}
        saved = save_user_defaults(values, config)
    _report_choice(candidates, winner, check, target, unit, saved, out)
    if out_dir is not None:
        from steer_cli import report

        out.note(f"wrote {', '.join(str(p) for p in report.write_outputs([c.summary for c in candidates], out_dir, unit))}")


def _held_check(winner, runs: dict, target: float, unit: str, meter) -> dict:
    """The winner on the held-out problems, replayed from their solo runs,
    with paired intervals against random mixing at its cost and the large model."""
    from steer_cli import advisor, stats
    from steer_cli.routes import Route

    small, large = runs["held-out", "small"], runs["held-out", "large"]
    summary = stats.summarize(winner.route.label, advisor.records_of(winner.route, small, large), {r["key"]: r for r in large}, meter)
    at_cost = advisor.mix_within(small, large, summary.cost(unit) or 0.0, unit, meter)
    return {"summary": summary, "vs_mix": advisor.paired_against(winner.route, at_cost.route, small, large) if at_cost else None,
            "mix": at_cost.route.label if at_cost else None, "vs_large": advisor.paired_against(winner.route, Route("large"), small, large)}


def _report_choice(candidates, winner, check, target: float, unit: str, saved, out) -> None:
    from steer_cli import advisor

    rows = [f"  {c.route.label:<24} accuracy {c.summary.accuracy:6.1%}  cost {c.cost(unit) if c.cost(unit) is not None else float('nan'):.3f} ({unit}, {c.how})"
            + ("  ← chosen" if c is winner else "") for c in candidates]
    text = [f"route for target cost {target:g} ({unit}): {advisor.plainly(winner.route)}", *rows]
    payload = {"target_cost": target, "cost_unit": unit, "route": winner.route.label, "plainly": advisor.plainly(winner.route),
               "candidates": [{"route": c.route.label, "accuracy": c.summary.accuracy, "cost": c.cost(unit), "how": c.how, "n": c.summary.n} for c in candidates],
               "heldout": None, "saved_to": str(saved) if saved else None}
    if check is not None:
        s = check["summary"]
        payload["heldout"] = {"accuracy": s.accuracy, "cost": s.cost(unit), "n": s.n, "vs_mix": str(check["vs_mix"]) if check["vs_mix"] else None,
                              "mix": check["mix"], "vs_large": str(check["vs_large"]) if check["vs_large"] else None}
        text.append(f"  held-out: accuracy {s.accuracy:.1%} at cost {s.cost(unit) or 0:.3f} (n={s.n}); vs {check['mix']}: {check['vs_mix'] or '-'}; "
                    f"vs large: {check['vs_large'] or '-'}")
    out.result(payload, "\n".join(text))
    if not out.json:
        out.warn(f"saved defaults.router = {winner.route.router} to {saved}" if saved else "dry run, nothing saved")


def _heldout_items(heldout: str, heldout_limit: int, data: str, limit: int) -> list:
    """Held-out problems, disjoint from the calibration ones: from the same
    file they are the ones after the calibration slice."""
    from steer_cli import datasets

    if heldout == "none":
        return []
    if heldout == data:
        return datasets.problems(data, limit + heldout_limit)[limit:]
    return datasets.problems(heldout, heldout_limit)


def _warn_if_loose(best, tolerance: float, out=None) -> None:
    """A cost measured on few problems is itself uncertain: a few problems
    that escalate or not move it more than the search's tolerance."""
    from steer_cli.output import Output

    out = out or Output()
    spread = 2 * best.cost_se
    if spread > tolerance:
        out.warn(f"note: over {best.n} problems the cost is only known to ±{spread:.3f} (2 s.e.), wider than the "
                 f"tolerance {tolerance:g}; new problems may land that far off the target: calibrate on more (--limit)")


def _report(name: str, signal: str | None, target: float, found, saved: Path | None, out, unit: str = "time") -> None:
    from steer_cli.calibrate import line

    best, outcome, check, pik = found.outcome.best, found.outcome, found.check, found.pik
    payload = {
        "router": name, "signal": signal, "target_cost": target, "cost_unit": unit, "threshold": best.threshold, "pik_threshold": pik,
        "converged": outcome.converged,
        "calibration": {"cost": round(best.cost, 4), "cost_se": round(best.cost_se, 4), "accuracy": best.accuracy, "n": best.n},
        "heldout": None if check is None else {"cost": round(check.cost, 4), "cost_se": round(check.cost_se, 4), "accuracy": check.accuracy, "n": check.n},
        "probes": [{"threshold": p.threshold, "cost": round(p.cost, 4), "accuracy": p.accuracy} for p in outcome.probes],
        "saved_to": str(saved) if saved else None,
    }
    label = name if signal is None else f"{name} ({signal})"
    text = [f"{label} threshold {best.threshold:g}{'' if pik is None else f', P(IK) threshold {pik:g}'} for target cost {target:g} ({unit})",
            f"  calibration: {line(best)}"] + ([f"  held-out:    {line(check)}"] if check is not None else [])
    out.result(payload, "\n".join(text))
    if out.json:
        return
    if not outcome.converged:
        out.warn(f"no threshold within tolerance after {len(outcome.probes)} rounds; kept the closest")
    out.warn(f"saved defaults.thresholds.{name} = {best.threshold:g} to {saved}" if saved else "dry run, nothing saved")
