"""`steer pik train`: fit the P(IK) classifier for the smallest tier (the cascade's, and any router's gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common

app = typer.Typer(help="P(IK): predict, before answering, whether the small model will get a problem right.", no_args_is_help=True)


@app.command("train")
def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the classifier (JSON).")] = Path("pik.json"),
    data: Annotated[str, typer.Option("--data", help="Labelled training problems: train (shipped GSM8K slice) or a JSONL with gold answers.")] = "train",
    limit: Annotated[int, typer.Option("--limit", help="Training problems to use.")] = 400,
    heldout_share: Annotated[float, typer.Option("--heldout-share", help="Share of them held out to report AUROC on.")] = 0.2,
    skip_share: Annotated[float, typer.Option("--skip-share", help="Default threshold: the P(IK) below which this share of training problems skip the small tier.")] = 0.1,
    work: Annotated[Optional[Path], typer.Option("--work", help="Record files (the small-only run is reused from eval/calibrate).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    max_steps: common.MaxSteps = 24,
    max_step_tokens: common.MaxStepTokens = 256,
    delimiter: common.Delimiter = "\\n\\n",
    n_ctx: common.NCtx = None,
    threads: common.Threads = None,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
    parallel: common.Parallel = 1,
) -> None:
    """Label training problems by whether the small model's greedy answer is right, embed each question with the small model itself, fit a logistic regression, print its held-out AUROC and save it to -o. At the defaults (400 problems) the small-only run takes 2-3 h on 2 cores (reused from eval and calibrate records); the fit, seconds."""
    import numpy as np

    from steer_cli import datasets, stats
    from steer_cli import pik as pk
    from steer_cli.evaluate import Bench
    from steer_cli.output import Output
    from steer_cli.registry import steer_home
    from steer_cli.routes import Route
    from steer_cli.session import Session

    if not 0.0 < heldout_share < 1.0:
        raise common.UsageError(f"--heldout-share {heldout_share:g} is outside (0, 1)", "pass a share like 0.2")
    if not 0.0 <= skip_share < 1.0:
        raise common.UsageError(f"--skip-share {skip_share:g} is outside [0, 1)", "pass a share like 0.1, or 0 to never skip by default")
    common.within("--limit", limit, 10, example="400")
    if output.is_dir():
        raise common.UsageError(f"-o {output} is a directory", "pass a file path such as pik.json")
    session = Session.from_options(common.options(locals()), measure=False)
    items = datasets.problems(data, limit, need_gold=True)
    if len(items) < 10:
        raise common.UsageError(f"{len(items)} labelled problems are too few to train on", "pass --limit 100 or more")
    bench = Bench(session, work or steer_home() / "eval")
    out = Output(as_json, quiet)
    todo = bench.missing(Route("small"), items)
    out.note(f"pik train: {todo} of {len(items)} small-only solutions to run, {session.expected(todo, tier=0)}, then one embedding pass each")
    with out.counter("pik labels (small-only run)", len(items), every=10, transient=True) as bar:
        records = bench.records(Route("small"), items, lambda reused: bar.advance(reused=reused))
    labels = np.array([stats.correct(r) for r in records], dtype=float)
    if labels.min() == labels.max():
        raise common.SteerError(f"the small model got {'all' if labels[0] else 'none'} of the {len(items)} problems right: nothing to learn", "train on more or harder problems")
    engine = session.engines[0]
    rows = []
    with out.counter("pik features (embedding)", len(items), every=25, transient=True) as bar:
        for n, item in enumerate(items, 1):
            rows.append(pk.feature_vector(engine.embed_prompt(item.question), item.question))
            bar.update(n)
    heldout = np.array([int(item.key[:8], 16) % 1000 < heldout_share * 1000 for item in items])
    model = pk.train(np.vstack(rows), labels, heldout, engine.name, engine.identity, skip_share, [item.key for item in items])
    model.save(output)
    report = {
        "model": engine.name, "n": len(items), "small_accuracy": round(float(labels.mean()), 4), "heldout_n": int(heldout.sum()),
        "heldout_auroc": model.heldout_auroc, "threshold": model.threshold, "skip_share": skip_share, "saved_to": str(output),
    }
    out.result(report, f"P(IK) for {engine.name}: held-out AUROC {model.heldout_auroc} on {report['heldout_n']} problems "
                       f"(trained on {model.n_train}; the small model is right on {labels.mean():.1%})\n"
                       f"  default threshold {model.threshold:g}: {skip_share:.0%} of training problems skip the small tier")
    if not as_json:
        out.warn(f"saved {output}")
