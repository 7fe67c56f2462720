"""`steer policy train`: learn the cost-aware control policy for a model pair."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common

# Training stops by default after this many minutes per problem: on 2 cores
# 12 problems x 3 epochs took 23 minutes, most of it the first epoch's fresh
# outcomes, so this buys a few epochs; --max-minutes sets another bound.
MINUTES_PER_PROBLEM = 1.5

app = typer.Typer(help="The learned routing policy (policy-guided stepwise routing): train it for a model pair.", no_args_is_help=True)


@app.command("train")
def train(
    target_cost: Annotated[float, typer.Option("--target-cost", help="Relative cost to meet in expectation, in --cost-unit (routed / the large model alone).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the policy (JSON); its training curve goes beside it as .png.")] = Path("policy.json"),
    data: Annotated[str, typer.Option("--data", help="Training problems with gold answers: train (shipped GSM8K slice) or a JSONL.")] = "train",
    limit: Annotated[int, typer.Option("--limit", help="Training problems to use.")] = 300,
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the training problems.")] = 40,
    rollouts: Annotated[int, typer.Option("--rollouts", help="Rollouts per problem and epoch: one sampled, the rest branch points (2 or more).")] = 4,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Problems per policy update (default: all of them, one update per epoch); smaller learns more from the same rollouts.")] = None,
    replay: Annotated[int, typer.Option("--replay", help="Gradient steps per update over every branch point gathered so far (kept in --work, so a rerun learns from earlier runs' rollouts too); 0: one step on the batch's own.")] = 30,
    calib_limit: Annotated[Optional[int], typer.Option("--calib-limit", help="Calibrate the threshold on the first N training problems (default: up to 40; each bisection round plays them anew).")] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help=f"Start no further batch of problems after this many minutes, and calibrate for at most half as long again (the file is still written); default {MINUTES_PER_PROBLEM:g} a training problem.")] = None,
    cost_unit: common.CostUnit = None,
    work: Annotated[Optional[Path], typer.Option("--work", help="Where the cache of engine outcomes lives (reused on rerun); default STEER_HOME/policy.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    seed: common.Seed = 0,
    small: common.Small = None,
    large: common.Large = None,
    tiers: common.Tiers = None,
    max_steps: common.MaxSteps = 24,
    max_step_tokens: common.MaxStepTokens = 256,
    delimiter: common.Delimiter = "\\n\\n",
    n_ctx: common.NCtx = None,
    threads: common.Threads = None,
    gpu_layers: common.GpuLayers = 0,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
    parallel: common.Parallel = 1,
) -> None:
    """Roll the routed step loop out on training problems with the real engines (outcomes cached by transcript), learn the policy by policy improvement on accuracy - lambda x cost (replayed over every branch point kept), lambda moved toward --target-cost, calibrate its threshold to the target, save it to -o with its training-curve PNG. It stops after 1.5 minutes a training problem (--max-minutes; 7.5 h at the default 300) plus at most half that calibrating, says so before it starts, and a rerun resumes from the cache; 12 problems and 3 epochs took 23 minutes on 2 cores."""
    from steer_cli import datasets
    from steer_cli.engine import LlamaEngine
    from steer_cli.output import Output
    from steer_cli.session import Session

    if not 0.0 < target_cost <= 1.5:
        raise common.UsageError(f"--target-cost {target_cost:g} is outside (0, 1.5]", "pass a fraction of the large model's cost, like 0.6")
    if epochs < 1 or rollouts < 2 or (batch is not None and batch < 1) or replay < 0 or (calib_limit is not None and calib_limit < 2):
        raise common.UsageError("--epochs and --batch must be 1 or more, --rollouts and --calib-limit 2 or more, --replay 0 or more",
                                "e.g. --epochs 40 --rollouts 4 --batch 10 --replay 30")
    if max_minutes is not None and not max_minutes > 0:
        raise common.UsageError(f"--max-minutes {max_minutes} allows no training", "pass a positive number of minutes, or leave it out")
    common.within("--limit", limit, 2, example="300")
    if output.is_dir():
        raise common.UsageError(f"-o {output} is a directory", "pass a file path such as policy.json")
    session = Session.from_options(common.options(locals()), measure=True)
    session.require_prices("policy training")
    items = datasets.problems(data, limit, need_gold=True)
    if len(items) < 2:
        raise common.UsageError(f"{len(items)} labelled problem(s) are too few to train on", "pass --limit 20 or more")
    engines = session.engines
    if len(engines) != 2 or not all(isinstance(e, LlamaEngine) for e in engines):
        raise common.UsageError("policy training needs exactly two local GGUF tiers (a small and a large)", "pass --small and --large, or a two-model --tiers set")
    session.meter.require(engines, "policy training")
    out = Output(as_json, quiet)
    minutes = max_minutes if max_minutes is not None else MINUTES_PER_PROBLEM * len(items)
    settings = Run(target_cost, epochs, rollouts, seed, minutes, batch, replay, calib_limit, data)
    policy = _train(session, items, settings, work, out)
    policy.save(output)
    png = _plot(policy.training["updates"], output.with_suffix(".png"), session.unit, target_cost, len(items))
    _report(policy, output, png, out)


@dataclass(frozen=True)
class Run:
    """What the user asked of a training run."""

    target: float
    epochs: int
    rollouts: int
    seed: int
    max_minutes: float
    batch: int | None
    replay: int
    calib_limit: int | None
    data: str


def _train(session, items: list, run: Run, work: Path | None, out):
    """Roll out, learn, calibrate: the trained policy with its training record."""
    from steer_cli import training
    from steer_cli.ui import duration

    engines, unit = session.engines, session.unit
    outcomes, episode, run_all, points_file = _players(session, items, work)
    points = training.load_points(points_file)
    started, n, reused = time.perf_counter(), len(items), len(points)

    k = min(n, run.calib_limit or 40)
    out.note(f"policy training: up to {run.epochs} epochs over {n} problems, {run.rollouts} rollouts each, for at most {duration(60 * run.max_minutes)} "
             f"(--max-minutes), then at most {duration(30 * run.max_minutes)} calibrating on {k}; a rollout costs up to {session.expected(1)} "
             "until its outcomes are cached (shared prefixes computed once), so later epochs run faster")
    deadline = time.monotonic() + 60 * run.max_minutes
    with out.counter("policy training (problem-epochs)", run.epochs * n, every=max(1, n // 10), transient=True, deadline=deadline) as bar:
        settings = training.Settings(target=run.target, epochs=run.epochs, rollouts=run.rollouts, seed=run.seed, deadline=deadline, batch=run.batch, replay=run.replay)
        done, note, lock = [0], [""], threading.Lock()

        def tick() -> None:
            with lock:  # lanes of --parallel finish problems at once
                done[0] += 1
                bar.update(done[0], f"{note[0]}{outcomes.computed} outcomes computed")

        def epoch_done(row: dict) -> None:
            note[0] = f"epoch {row['epoch']}: acc {row['accuracy']:.0%} · cost {row['cost']:.2f} · λ {row['lambda']:.2f} · "

        policy, curve = training.train(episode, n, settings, progress=epoch_done, tick=tick, points=points, keep=training.keep_points(points_file), run_all=run_all)
    calibrated = time.perf_counter()
    threshold, accuracy, cost = training.calibrate(episode, k, policy, run.target, tolerance=0.02, deadline=time.monotonic() + 30 * run.max_minutes, run_all=run_all)
    policy.threshold = threshold
    policy.models = {"small": engines[0].identity, "large": engines[1].identity}
    policy.model_names = {"small": engines[0].name, "large": engines[1].name}
    policy.training.update({
        "unit": unit, "target_cost": run.target, "data": run.data, "n": n, "epochs": run.epochs, "rollouts": run.rollouts, "batch": run.batch or n,
        "epochs_run": len(curve), "replay": run.replay, "points_reused": reused, "points": len(points), "calibrated_on": k,
        "train_accuracy": round(accuracy, 4), "train_cost": round(cost, 4), "seconds": round(time.perf_counter() - started, 1),
        "calibration_seconds": round(time.perf_counter() - calibrated, 1),
        "outcomes_computed": outcomes.computed, "outcomes_cached": len(outcomes.values), "curve": curve,
    })
    return policy


def _players(session, items: list, work: Path | None):
    """The shared outcome cache, an episode function, the runner of a batch's
    problems (None: one at a time; under --parallel one rollout environment per
    lane, all reading one cache) and the branch points' file."""
    from steer_cli.answers import gold_answer
    from steer_cli.rollouts import Outcomes, Rollouts

    cache, points_file = _files(session.engines, session.limits, work, session.unit)
    outcomes = Outcomes(cache)
    golds = [gold_answer(item.answer) for item in items]

    def player(tiers: list):
        env = Rollouts(tiers, session.limits, session.meter, outcomes)
        return lambda i, choose: env.episode(items[i].question, golds[i], choose)

    if session.parallel == 1:
        return outcomes, player(session.engines), None, points_file
    from steer_cli.batching import solve_all

    sets, scheduler = session.lanes()
    players = [player(tiers) for tiers in sets]

    def run_all(tasks: list) -> list:
        done = dict(solve_all([lambda item, play=play: item[1](play) for play in players], list(enumerate(tasks)), scheduler))
        return [done[i, task] for i, task in enumerate(tasks)]

    return outcomes, players[0], run_all, points_file


def _files(engines, limits, work: Path | None, unit: str) -> tuple[Path, Path]:
    """The outcome cache, keyed by everything that changes an outcome, and the
    file of branch points (their costs are in `unit`)."""
    import hashlib

    from steer_cli.engine import STEP_INSTRUCTION
    from steer_cli.policy import FEATURES
    from steer_cli.registry import steer_home

    work = work or steer_home() / "policy"
    if work.exists() and not work.is_dir():
        raise common.UsageError(f"--work {work} is a file", "pass a directory for the outcome cache")
    work.mkdir(parents=True, exist_ok=True)
    keyed = json.dumps({"models": [e.identity for e in engines], "limits": vars(limits), "prompt": STEP_INSTRUCTION, "keys": "tokens"}, sort_keys=True)
    key = hashlib.sha256(keyed.encode()).hexdigest()[:12]
    features = hashlib.sha256(" ".join(FEATURES).encode()).hexdigest()[:6]  # a point's x means nothing to other features
    return work / f"outcomes-{key}.jsonl", work / f"points-{key}-{features}-{unit}.jsonl"


def _plot(updates: list[dict], path: Path, unit: str, target: float, n: int) -> Path | None:
    """Accuracy and cost of each update's sampled rollouts against problems
    seen (an epoch is `n` of them), with λ on the right axis."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    seen = [row["problems"] / n for row in updates]
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=120)
    for key, label, colour in (("accuracy", "accuracy", "tab:blue"), ("cost", f"relative cost ({unit})", "tab:orange")):
        raw = [row[key] for row in updates]
        ax.plot(seen, raw, ".", color=colour, alpha=0.35)
        ax.plot(seen, _running(raw, 5), color=colour, label=f"{label}, sampled rollouts (mean of 5 updates)")
    ax.axhline(target, color="grey", linestyle=":", label=f"target cost {target:g}")
    ax2 = ax.twinx()
    ax2.plot(seen, [row["lambda"] for row in updates], color="tab:red", alpha=0.5, label="λ (right axis)")
    ax.set_xlabel(f"epochs (passes over the {n} training problems)")
    ax.set_title("policy training")
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _running(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each point: a few problems per update are noisy."""
    means = []
    for i in range(len(values)):
        last = values[max(0, i + 1 - window) : i + 1]
        means.append(sum(last) / len(last))
    return means


def _report(policy, output: Path, png: Path | None, out) -> None:
    t = policy.training
    text = (f"policy for {policy.model_names['small']} → {policy.model_names['large']}: threshold {policy.threshold:g}, "
            f"training accuracy {t['train_accuracy']:.1%} at relative cost {t['train_cost']:.3f} ({t['unit']}; target {t['target_cost']:g})\n"
            f"  {t['n']} problems, {t['epochs_run']} epochs x {t['rollouts']} rollouts, λ {t['lambda']:g}, {t['seconds']:.0f} s "
            f"({t['calibration_seconds']:.0f} s calibrating on {t['calibrated_on']}), {t['outcomes_computed']} outcomes computed "
            f"({t['outcomes_cached']} cached), {t['points']} branch points ({t['points_reused']} from earlier runs)")
    out.result({"saved_to": str(output), "curve_png": str(png) if png else None, "threshold": policy.threshold,
                **{k: v for k, v in t.items() if k != "curve"}}, text)
    if not out.json:
        out.warn(f"saved {output}" + (f" and {png}" if png else ""))
