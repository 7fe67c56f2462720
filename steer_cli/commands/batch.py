"""`steer batch`: solve a JSONL file of problems, resumably."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common


def batch(
    input: Annotated[str, typer.Argument(help="JSONL with question/problem/prompt (+ optional id, answer); '-' reads stdin.")],
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Results JSONL; rerunning skips ids already there. '-' or none: stdout.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Stop at the first malformed line instead of recording it.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    router: common.Router = None,
    threshold: common.Threshold = None,
    signal: common.Signal = None,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    pik: common.Pik = None,
    pik_threshold: common.PikThreshold = None,
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
    """Solve every line of INPUT; writes one JSON result per line to -o (or stdout), flushed as it completes (about 10-40 s a GSM8K problem on 2 cores; --parallel solves several at once)."""
    from steer_cli import datasets, runs
    from steer_cli.output import Output
    from steer_cli.session import Session

    out = Output(quiet=quiet)
    session = Session.from_options(common.options(locals()))
    route = session.chosen(router, threshold, signal, pik_threshold)
    out_path = None if output in (None, "-") else Path(output)
    if out_path is not None and input != "-" and out_path.resolve() == Path(input).resolve():
        raise common.UsageError(f"-o {output} is the input file", "write the results to another file, e.g. -o results.jsonl")
    items = datasets.load(input)
    if not items:
        raise common.UsageError(f"{'stdin' if input == '-' else input}: no problems in it", 'pass a JSONL with one {"question": ...} per line')
    bad = next((i for i in items if i.error is not None), None) if strict else None
    if bad is not None:
        raise common.UsageError(bad.error, "fix that line, or drop --strict to record it and go on")
    sink, done = runs.open_output(out_path)
    tally = runs.Tally()
    todo = runs.pending(items, done, tally)
    # Results on a terminal's stdout: keep the bar from drawing over them.
    with sink, out.counter("batch", len(items), hide=out_path is None and sys.stdout.isatty()) as progress:
        progress.update(tally.done, tally.line())

        def keep(record: dict) -> None:
            sink.append(record)
            tally.add(record)
            progress.update(tally.done, tally.line())

        for item, result in _in_order(session, route, todo):
            if result is None:
                out.warn(item.error)
                keep(runs.error_record(item))
                continue
            if result.finish == "context":
                out.warn(f"{item.id}: the solution outgrew the context window before an answer (raise --n-ctx or lower --max-steps)")
            keep(runs.result_record(item, result, runs.batch_key(item)))
    out.note(f"{tally.done}/{len(items)} done · {tally.line()}")
    if tally.failed or tally.overflowed:
        raise typer.Exit(1)


def _in_order(session, route, todo: list) -> Iterator[tuple]:
    """(item, result) for every item, a malformed one with None: in input order
    one at a time; under --parallel the malformed first, then as problems finish."""
    solved = session.solve_many(route, [i for i in todo if i.error is None], lambda i: i.question)
    for item in todo:
        if item.error is not None:
            yield item, None
        elif session.parallel == 1:
            yield next(solved)
    if session.parallel > 1:
        yield from solved
