"""`steer calibrate`: find and save the threshold that spends a target cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


LIMIT, HELDOUT_LIMIT = 400, 300
AUTO_MINUTES = 30  # --router auto's default size: the two solo runs over both sets in about this long
AUTO_SHARE = 0.6  # of those problems, the calibration set's share


def calibrate(
    target_cost: Annotated[float, typer.Option("--target-cost", help="Relative cost to spend, in --cost-unit: routed / the large model alone, in (0, 1].")],
    router: common.Router = None,
    signal: common.Signal = None,
    data: Annotated[str, typer.Option("--data", help="Calibration problems: train (shipped GSM8K slice) or a JSONL; cost needs no gold answers, so your own questions do.")] = "train",
    limit: Annotated[Optional[int], typer.Option("--limit", help=f"Calibration problems to use (a 0.5 target on GSM8K needs a few hundred: few problems escalate); default {LIMIT}, and with --router auto what the solo runs finish in about {AUTO_MINUTES} minutes on this machine (60% of it).", show_default=False)] = None,
    heldout: Annotated[str, typer.Option("--heldout", help="Held-out problems to check the threshold on (dev, train or a JSONL; 'none' skips).")] = "dev",
    heldout_limit: Annotated[Optional[int], typer.Option("--heldout-limit", help=f"Held-out problems to use; default {HELDOUT_LIMIT}, and with --router auto the other 40% of its {AUTO_MINUTES} minutes.", show_default=False)] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Stop when the calibration cost is this close to the target.")] = 0.03,
    max_rounds: Annotated[int, typer.Option("--max-rounds", help="Routed passes over the calibration set at most.")] = 6,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the threshold without saving it.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="With --router auto: write every candidate's summary and frontier.png (the random line drawn) here.")] = None,
    routers: Annotated[Optional[str], typer.Option("--routers", help="With --router auto: stepwise routes to weigh beside the query-level ones, each calibrated to the target on the calibration problems (steer, trim:verify) or run as given (steer@0.4); real runs, each about the large model's time a problem on 2 cores, so none by default.")] = None,
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
    """Find the ROUTER threshold whose measured relative cost meets --target-cost, check it on held-out problems, save it; with --router auto, choose the route itself (small, large, random mixing or the P(T) cascade, priced from the two solo runs) and save it as the default route in your models.yaml (--dry-run: only print it). At the defaults several hours on 2 cores for one router (400 + 300 problems), about 30 minutes for --router auto (sized from the machine profile); records are reused."""
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
        if value is not None:
            common.within(flag, value, 1, example="the default")
    stepwise = _stepwise(routers, router)
    session = Session.from_options(common.options(locals()), measure=True)
    session.require_prices("calibrating")
    if out_dir is not None:
        from steer_cli import report

        report.check_writable(out_dir)
    if router == "auto":
        search = {"tolerance": tolerance, "rounds": max_rounds, "greedy": temperature == 0}
        limit, heldout_limit = _sized(session, limit, heldout_limit, heldout, out)
        return _advise(session, data, limit, heldout, heldout_limit, target_cost, work, dry_run, config, out, out_dir, stepwise, search)
    limit, heldout_limit = limit or LIMIT, heldout_limit or HELDOUT_LIMIT
    route = session.chosen(router, None, signal)
    if route.threshold is None:
        raise common.UsageError(f"router {route.router!r} has no threshold to calibrate", f"use one of: {', '.join(names(fixed=False))}")
    items = datasets.problems(data, limit)
    held = _heldout_items(heldout, heldout_limit, data, limit)
    bench = Bench(session, work or steer_home() / "eval")
    session.meter.require(session.engines, "calibrating")
    out.note(f"calibration: up to {max_rounds} routed passes over {len(items)} problems after one small-only pass, then {len(held)} held-out; "
             f"each pass {session.expected(len(items))}, less where records are reused")
    common.warn_in_sample(session, out, {"calibration": items, "held-out": held})
    calibrator = cal.Calibrator(bench, route.router, route.signal, out, temperature == 0, session.artifacts.get(PIK.kind))
    found = calibrator.calibrate(items, held, target_cost, tolerance, max_rounds)
    saved = None
    if not dry_run:
        thresholds = {route.router: found.outcome.best.threshold, **({"pik": found.pik} if found.pik is not None else {})}
        saved = save_user_defaults({"thresholds": thresholds, **({"signals": {route.router: route.signal}} if route.signal else {})}, config)
    _report(route.router, route.signal, target_cost, found, saved, out, session.unit)
    _warn_if_loose(found.outcome.best, tolerance, out)


def _sized(session, limit: int | None, heldout_limit: int | None, heldout: str, out) -> tuple[int, int]:
    """--router auto's problem counts where not given: as many as the small-only
    and large-only runs finish in about AUTO_MINUTES on this machine's profile."""
    if limit is not None and (heldout_limit is not None or heldout == "none"):
        return limit, heldout_limit or 0
    small, large = session.seconds_alone(0), session.seconds_alone(-1)
    if small is None or large is None:
        return limit or LIMIT, heldout_limit or HELDOUT_LIMIT
    n = max(10, int(AUTO_MINUTES * 60 / (small + large)))
    sized = (limit or round(AUTO_SHARE * n), heldout_limit or (0 if heldout == "none" else max(2, n - round(AUTO_SHARE * n))))
    out.note(f"sized to about {AUTO_MINUTES} minutes on this machine ({small + large:.0f} s a problem for both solo runs): "
             f"{sized[0]} calibration and {sized[1]} held-out problems; --limit and --heldout-limit choose others, and records are reused")
    return sized


def _stepwise(routers: str | None, router: str | None) -> list:
    """--routers: the stepwise routes --router auto weighs too, checked before any model loads."""
    from steer_cli import routes
    from steer_cli.routers import spec

    if routers is None:
        return []
    if router != "auto":
        raise common.UsageError("--routers names candidates for --router auto", "add --router auto, or calibrate one router with --router NAME")
    named = routes.parse_list(routers)
    for route in named:
        if spec(route.router).per_query or spec(route.router).fixed:
            raise common.UsageError(f"--routers {route.label}: small, large, mix and the cascade are always weighed (from the solo runs)",
                                    "name stepwise routers only, e.g. --routers steer,trim:verify")
    return named


def _gates(bench, out, sets: dict[str, list]) -> dict[str, list[dict] | None]:
    """Each set's P(IK) pass (with --pik; one prefill a problem, kept in --work), with progress."""
    gates = {}
    for what, problems in sets.items():
        with out.counter(f"{what} P(IK) pass", len(problems), every=10, transient=True) as bar:
            gates[what] = bench.gate_pass(problems, lambda reused, bar=bar: bar.advance(reused=reused))
    return gates


def _advise(session, data: str, limit: int, heldout: str, heldout_limit: int, target: float, work: Path | None, dry_run: bool, config, out,
            out_dir: Path | None = None, stepwise: list | None = None, search: dict | None = None) -> None:
    """--router auto: price every query-level route from the small-only and
    large-only runs, calibrate the stepwise routes named, pick the best within
    the target, check it held out against random mixing and the large model,
    save it as the default route."""
    from steer_cli import advisor, datasets
    from steer_cli.evaluate import Bench
    from steer_cli.registry import save_user_defaults, steer_home
    from steer_cli.routes import Route

    bench = Bench(session, work or steer_home() / "eval")
    items, held = datasets.problems(data, limit), _heldout_items(heldout, heldout_limit, data, limit)
    stepwise = stepwise or []
    todo = sum(bench.missing(Route(r), items + held) for r in ("small", "large"))
    out.note(f"choosing a route: {todo} solo solutions to run (small and large on {len(items)} calibration and {len(held)} held-out problems), "
             f"{session.expected(todo)}; the rest are in the records"
             + (f"; then {len(stepwise)} stepwise route(s), each up to {search['rounds']} passes over the {len(items)} calibration problems "
                f"(a pass: {session.expected(len(items))}), and over the held-out ones if one wins" if stepwise and search else
                "; stepwise routers join only when named (--routers)")
             + ("; with --pik, one P(IK) pass per problem too (kept in --work)" if session.artifacts.get("pik") is not None else ""))
    common.warn_in_sample(session, out, {"calibration": items, "held-out": held})
    runs = {(what, name): records for what, problems in (("calibration", items), ("held-out", held))
            for name, records in bench.solo_runs(problems, out, what).items()}
    unit = session.unit
    gates = _gates(bench, out, {"calibration": items, "held-out": held})
    candidates = advisor.query_level(runs["calibration", "small"], runs["calibration", "large"], target, unit, session.meter)
    if gates["calibration"] is not None:
        candidates += advisor.gated(runs["calibration", "small"], runs["calibration", "large"], gates["calibration"], target, unit, session.meter)
    candidates += [_measured(bench, route, items, runs["calibration", "large"], target, search or {}, out) for route in stepwise]
    winner = advisor.choose(candidates, target, unit)
    check = _held_check(winner, runs, target, unit, session.meter, bench, held, gates["held-out"]) if held else None
    saved = None
    if not dry_run:
        values = {"router": winner.route.router}
        if winner.route.threshold is not None:
            values["thresholds"] = {winner.route.router: winner.route.threshold, **({"pik": winner.route.pik} if winner.route.pik is not None else {})}
        saved = save_user_defaults(values, config)
    _report_choice(candidates, winner, check, target, unit, saved, out)
    if out_dir is not None:
        from steer_cli import report

        out.note(f"wrote {', '.join(str(p) for p in report.write_outputs([c.summary for c in candidates], out_dir, unit, session.meter.profiles))}")


def _measured(bench, route, items: list, large: list[dict], target: float, search: dict, out):
    """A stepwise candidate: calibrated to the target on the calibration
    problems when its threshold is left out, then graded on its records there."""
    from dataclasses import replace

    from steer_cli import advisor
    from steer_cli import calibrate as cal
    from steer_cli.routers import PIK

    filled = bench.session.route(route)  # its signal named, so the probes' records and the candidate's are one file
    if route.threshold is None:
        pik = bench.session.artifacts.get(PIK.kind) if route.pik is not None else None
        found = cal.Calibrator(bench, route.router, filled.signal, out, search.get("greedy", True), pik, large).calibrate(
            items, [], target, search.get("tolerance", 0.03), search.get("rounds", 6))
        filled = bench.session.route(replace(filled, threshold=found.outcome.best.threshold, pik=found.pik))
    return advisor.graded(filled, bench.records(filled, items), large, bench.session.meter)


def _held_check(winner, runs: dict, target: float, unit: str, meter, bench=None, held: list | None = None, gate: list | None = None) -> dict:
    """The winner on the held-out problems (replayed from their solo runs, or
    run there when it was measured), with paired intervals against random
    mixing at its cost and the large model."""
    from steer_cli import advisor, stats

    small, large = runs["held-out", "small"], runs["held-out", "large"]
    mine = bench.records(winner.route, held) if winner.how == "measured" else advisor.records_of(winner.route, small, large, gate)
    summary = stats.summarize(winner.route.label, mine, {r["key"]: r for r in large}, meter)
    at_cost = advisor.mix_within(small, large, summary.cost(unit) or 0.0, unit, meter)
    return {"summary": summary, "vs_mix": advisor.paired(mine, advisor.records_of(at_cost.route, small, large)) if at_cost else None,
            "mix": at_cost.route.label if at_cost else None, "vs_large": advisor.paired(mine, large)}


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
