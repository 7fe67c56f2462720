"""`steer eval`: compare routes on problems with gold answers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


def evaluate(
    routers: Annotated[str, typer.Option("--routers", help="Comma-separated routes (router:signal@threshold+pik@t, every part after the name optional), e.g. small,large,steer@0.4,trim:verify@0.6.")] = "small,large,steer",
    data: Annotated[str, typer.Option("--data", help="dev or train (the shipped GSM8K slices), or a JSONL file with gold answers.")] = "dev",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N problems.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write summary.json, summary.csv, summary.md, profiles.json (the machine that priced time) and frontier.png here.")] = None,
    work: common.Work = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries (what summary.json holds) to stdout as JSON; the table goes to stderr.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed data line instead of skipping it.")] = False,
    signal: common.Signal = None,
    pik: common.Pik = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    budget: common.BudgetCap = None,
    cost_unit: common.CostUnit = None,
    policy: common.PolicyFile = None,
    trained: common.Trained = None,
    max_large_tokens: common.MaxLargeTokens = None,
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
    """Run each route over the problems; print accuracy (95% CI) and cost as a table (stdout; JSON with --json), keep one record file per route in --work and write summaries and frontier.png to --out. About 10-40 s a GSM8K problem and route on 2 cores; records are reused."""
    from dataclasses import replace

    from steer_cli import datasets, report, routes, stats
    from steer_cli.evaluate import Bench
    from steer_cli.output import Output
    from steer_cli.registry import steer_home
    from steer_cli.session import Session

    sink = Output(as_json, quiet)
    if out is not None:
        report.check_writable(out)
    session = Session.from_options(common.options(locals()), measure=True)
    named = [session.route(replace(r, signal=r.signal or routes.signal_for(r.router, signal))) for r in routes.parse_list(routers)]
    configs = list({cfg.label: cfg for cfg in named}.values())  # a route named twice, or once with its default spelled out, is solved and counted once
    items = datasets.problems(data, limit, strict=strict, need_gold=True)
    common.warn_in_sample(session, sink, {"evaluation": items})
    bench = Bench(session, work or steer_home() / "eval")
    todo = sum(bench.missing(cfg, items) for cfg in configs)
    sink.note(f"eval: {todo} of {len(configs) * len(items)} route-problems to solve, {session.expected(todo)}; the rest are in the records")
    runs: dict[str, list[dict]] = {}
    with sink.counter("eval", len(configs) * len(items), every=10, transient=True) as progress:
        for cfg in configs:
            runs[cfg.label] = bench.records(cfg, items, lambda reused, cfg=cfg: progress.advance(cfg.label, reused), bench.solo_reuse(cfg))
    # A large-only run recorded earlier is the reference even when this eval does not name `large`,
    # so the same route reads the same cost in every table drawn from one --work.
    large_run = {r["key"]: r for r in runs["large"]} if "large" in runs else bench.held(routes.Route("large"), items)
    summaries = [stats.summarize(label, records, large_run, session.meter) for label, records in runs.items()]
    stats.add_baselines(summaries, {label: {r["key"]: stats.correct(r) for r in records} for label, records in runs.items()}, session.unit)
    sink.result(report.as_payload(summaries))
    sink.table(report.table(summaries, session.unit))
    if out is not None:
        written = report.write_outputs(summaries, out, session.unit, session.meter.profiles)
        if not any(p.suffix == ".png" for p in written):
            sink.warn("matplotlib is not installed, no frontier.png (pip install 'steer-cli[eval]')")
        sink.note(f"wrote {', '.join(str(p) for p in written)}")
