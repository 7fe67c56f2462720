"""`steer eval`: compare routers on problems with gold answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.commands.common import boundary


def evaluate(
    routers: Annotated[str, typer.Option("--routers", help="Comma-separated router[:signal][@threshold] list, e.g. small,large,steer@0.4,trim:verify@0.6.")] = "small,large,steer",
    data: Annotated[str, typer.Option("--data", help="dev or train (the shipped GSM8K slices), or a JSONL file with gold answers.")] = "dev",
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N problems.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write summary.json, summary.csv, summary.md and frontier.png here.")] = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Per-configuration records (reused on rerun); default STEER_HOME/eval.")] = None,
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
) -> None:
    """Run each router configuration over the problems; print accuracy (95% CI) and cost."""
    with boundary():
        from dataclasses import replace

        from steer_cli import datasets, report, stats
        from steer_cli import evaluate as ev
        from steer_cli import ui

        if out is not None and out.exists() and not out.is_dir():
            raise common.UsageError(f"--out {out} is a file", "pass a directory for summary.json, .csv, .md and frontier.png")
        engine_args = common.EngineArgs(small, large, tiers, config, cache_dir, threads, gpu_layers, n_ctx, temperature, seed)
        registry = engine_args.registry()
        limits = common.step_limits(max_steps, max_step_tokens, delimiter)
        unit = common.cost_unit(cost_unit, registry.defaults)
        common.budget(max_large_tokens, budget, registry.defaults, unit)
        classifier = common.load_pik(pik)
        trained = common.load_policy(policy)
        configs = [replace(c, signal=c.signal or ev.signal_for(c.router, signal)) for c in ev.parse_configs(routers)]
        configs = [ev.fill(ev.with_pik(c, classifier, registry.defaults), registry.defaults, trained) for c in configs]
        for cfg in configs:
            cfg.build(pik=classifier, policy=trained)  # a bad signal or threshold is refused before anything runs
        items = datasets.problems(data, limit, strict=strict, need_gold=True)
        bench = common.bench(engine_args, limits, work, max_large_tokens, budget, registry, classifier, unit, quiet, trained)
        common.check_pik(classifier, bench.engines)
        runs: dict[str, list[dict]] = {}
        with ui.Counter("eval", len(configs) * len(items), quiet=quiet, every=10, transient=True) as progress:
            ticks = iter(range(1, len(configs) * len(items) + 1))
            for cfg in configs:
                runs.setdefault(cfg.label, bench.records(cfg, items, lambda cfg=cfg: progress.update(next(ticks), cfg.label)))
        large_run = {r["key"]: r for r in runs.get("large", [])}
        summaries = [stats.summarize(label, records, large_run, bench.meter) for label, records in runs.items()]
        outcomes = {label: {r["key"]: stats.correct(r) for r in records} for label, records in runs.items()}
        stats.add_baselines(summaries, outcomes, unit)
        if as_json:
            print(report.as_json(summaries))
        print(report.table(summaries, unit), file=sys.stderr if as_json else sys.stdout)
        if out is not None:
            written = report.write_outputs(summaries, out, unit)
            if not any(p.suffix == ".png" for p in written):
                print("steer: matplotlib is not installed, no frontier.png (pip install 'steer-cli[eval]')", file=sys.stderr)
            print(f"steer: wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
