"""Query-level routing from the question alone (#29 item 5): can either model's
hidden state over the question, read before answering, tell where sending a
query to the large model pays, with enough training rows to know?

    python benchmarks/query_routing.py --train-limit 600 --dev-limit 300 --work W --out R

Predictors (P(IK)-style: an L2 logistic regression on the last hidden state,
mean-pooled and at the last token, plus two text extras; the penalty chosen
by 5-fold cross-validation on the training rows) for three labels, each from
the small model's state, the large model's, and both:
  - "small right": the small model alone answers correctly
  - "large right": the large model alone answers correctly
  - "escalating helps": the large model is right where the small one is wrong
Trained on GSM8K train, scored on dev (AUROC), and routed on dev: the share p
of queries the predictor rates most in need of the large model go to it
(the rest to the small one), replayed from the solo runs (greedy decoding: a
query sent to one model is that model's solo run), and compared with random
mixing at the same cost in time, decode and FLOPs (paired 95% intervals).
The predictor's own reading of the question is billed: one prefill of the
question for each model whose state it reads.

Everything is resumable from --work: the small-only and large-only records
(the same files `steer eval` writes and reads), and each model's embedding of
each question (float16, one JSON line per question). Ship them compressed and
a later session, maybe on another machine, continues where this one stopped.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from steer_cli import advisor, datasets, stats
from steer_cli import pik as pk
from steer_cli.evaluate import Bench
from steer_cli.records import RecordFile
from steer_cli.routes import Route
from steer_cli.session import Options, Session
from steer_cli.output import Output

LABELS = ("small right", "large right", "escalating helps")
FEATURES = ("small", "large", "both")
SHARES = (0.2, 0.4, 0.6, 0.8)


def embeddings(engine: Any, items: list, work: Path, out: Output, what: str) -> tuple[np.ndarray, list[dict]]:
    """Each question's embedding by this model, and the bill of each pass (kept in --work)."""
    from dataclasses import asdict

    from steer_cli.cost import ModelCost

    digest = hashlib.sha256(engine.identity.encode()).hexdigest()[:12]
    rows, bills = [], []
    with RecordFile(work / f"embeddings-{digest}.jsonl") as store, out.counter(f"{what} embeddings ({engine.name})", len(items), every=10, transient=True) as bar:
        for item in items:
            got = store.get(item.key)
            reused = got is not None
            if got is None:
                vector, bill = ModelCost.billed(engine, lambda item=item: engine.embed_prompt(item.question).astype(np.float16))
                got = store.add(item.key, {"f16": base64.b64encode(vector.tobytes()).decode(), "cost": asdict(bill)})
            bar.advance(reused=reused)
            rows.append(pk.feature_vector(np.frombuffer(base64.b64decode(got["f16"]), dtype=np.float16), item.question))
            bills.append(got["cost"])
    return np.vstack(rows), bills


def labels(small: list[dict], large: list[dict]) -> dict[str, np.ndarray]:
    s = np.array([stats.correct(r) for r in small], dtype=bool)
    g = np.array([stats.correct(r) for r in large], dtype=bool)
    return {"small right": s, "large right": g, "escalating helps": g & ~s}


def fit_and_score(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray) -> np.ndarray:
    """Dev scores of a logistic regression fitted on the standardised training rows."""
    if y_train.min() == y_train.max():
        return np.zeros(len(x_dev))  # one class only: nothing to learn, every query rated alike
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    a, b = (x_train - mean) / std, (x_dev - mean) / std
    y = y_train.astype(float)
    w, bias = pk.fit_logistic(a, y, pk.choose_l2(a, y))
    return b @ w + bias


def need_of_large(label: str, scores: np.ndarray) -> np.ndarray:
    """How much a query needs the large model, by a predictor of `label`."""
    return -scores if label == "small right" else scores


def with_reading(records: list[dict], bills: list[list[dict]]) -> list[dict]:
    """Each record billed the predictor's passes over its question as well."""
    out = []
    for record, extra in zip(records, bills, strict=True):
        for bill in extra:
            record = advisor.combine({"cost": {"models": [bill], "flops": bill["flops"], "wall_s": bill["wall_s"], "price_usd": bill.get("price_usd")}}, record)
        out.append(record)
    return out


def routed(small: list[dict], large: list[dict], need: np.ndarray, share: float, bills: list[list[dict]]) -> list[dict]:
    n_up = round(share * len(small))
    up = np.zeros(len(small), dtype=bool)
    up[np.argsort(-need, kind="stable")[:n_up]] = True
    return with_reading(advisor.replayed(small, large, list(up), False), bills)


def study(args: argparse.Namespace) -> dict:
    given = {k: getattr(args, k) for k in ("small", "large", "threads", "n_ctx", "max_steps", "max_step_tokens", "parallel")}
    options = Options(**{k: v for k, v in given.items() if v is not None})  # an option left out keeps steer's default
    session = Session.from_options(options, measure=True)
    out = Output(quiet=args.quiet)
    train = datasets.problems(args.train, args.train_limit, need_gold=True)
    dev = datasets.problems(args.dev, args.dev_limit, need_gold=True)
    bench = Bench(session, args.work)
    todo = sum(bench.missing(Route(r), items) for r in ("small", "large") for items in (train, dev))
    out.note(f"query routing: {todo} solo runs to solve ({session.expected(todo)}), then one embedding pass per question and model; all kept in {args.work}")
    runs = {"train": bench.solo_runs(train, out, "train"), "dev": bench.solo_runs(dev, out, "dev")}
    small_engine, large_engine = session.engines[0], session.engines[-1]
    x, bills = {}, {}
    for what, items in (("train", train), ("dev", dev)):
        for name, engine in (("small", small_engine), ("large", large_engine)):
            x[what, name], bills[what, name] = embeddings(engine, items, args.work, out, what)
        x[what, "both"] = np.hstack([x[what, "small"], x[what, "large"]])
    y_train, y_dev = labels(runs["train"]["small"], runs["train"]["large"]), labels(runs["dev"]["small"], runs["dev"]["large"])
    return report(session, runs["dev"], x, bills, y_train, y_dev)


def report(session: Session, dev: dict[str, list[dict]], x: dict, bills: dict, y_train: dict, y_dev: dict) -> dict:
    small, large = dev["small"], dev["large"]
    reference = {r["key"]: r for r in large}
    aurocs, rows = {}, []
    summaries = [stats.summarize("small", small, reference, session.meter), stats.summarize("large", large, reference, session.meter)]
    outcomes = {"small": {r["key"]: stats.correct(r) for r in small}, "large": {r["key"]: stats.correct(r) for r in large}}
    for label in LABELS:
        for feats in FEATURES:
            scores = fit_and_score(x["train", feats], y_train[label], x["dev", feats])
            value = pk.auroc(scores, y_dev[label])
            aurocs[f"{label} | {feats}"] = None if np.isnan(value) else round(value, 3)
            reads = [[bills["dev", name][i] for name in (("small", "large") if feats == "both" else (feats,))] for i in range(len(small))]
            for share in SHARES:
                config = f"{label} ({feats} state) top {share:.0%} up"
                records = routed(small, large, need_of_large(label, scores), share, reads)
                summaries.append(stats.summarize(config, records, reference, session.meter))
                outcomes[config] = {r["key"]: stats.correct(r) for r in records}
    stats.add_baselines(summaries, outcomes, session.unit)
    for s in summaries:
        rows.append({"config": s.config, "accuracy": round(s.accuracy, 4), **{f"cost_{u}": s.cost(u) for u in ("time", "decode", "flops")},
                     **{f"vs_random_{u}": _plain(s.vs_random_by_unit.get(u)) for u in ("time", "decode", "flops")}})
    return {"n_train": int(len(y_train["small right"])), "n_dev": len(small), "base_rates_dev": {k: round(float(v.mean()), 3) for k, v in y_dev.items()},
            "auroc_dev": aurocs, "routes": rows}


def _plain(p: stats.Paired | None) -> list[float] | None:
    return None if p is None else [round(p.diff * 100, 1), round(p.low * 100, 1), round(p.high * 100, 1)]


def markdown(result: dict) -> str:
    lines = [f"Trained on {result['n_train']} train problems, scored on {result['n_dev']} dev problems.", "",
             "| label | " + " | ".join(f"AUROC ({f} state)" for f in FEATURES) + " |", "|---|---|---|---|"]
    for label in LABELS:
        lines.append(f"| {label} | " + " | ".join(_num(result["auroc_dev"][f"{label} | {f}"], 3) for f in FEATURES) + " |")
    lines += ["", "| route | accuracy | rel. time | rel. decode | vs random (time) | vs random (decode) | vs random (FLOPs) |", "|---|---|---|---|---|---|---|"]
    for r in result["routes"]:
        cells = [_cell(r[f"vs_random_{u}"]) for u in ("time", "decode", "flops")]
        lines.append(f"| {r['config']} | {r['accuracy']:.1%} | {_num(r['cost_time'])} | {_num(r['cost_decode'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _num(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _cell(v: list[float] | None) -> str:
    return "–" if v is None else f"{v[0]:+.1f} [{v[1]:+.1f}, {v[2]:+.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default="train")
    ap.add_argument("--train-limit", type=int, default=600)
    ap.add_argument("--dev", default="dev")
    ap.add_argument("--dev-limit", type=int, default=300)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="write query-routing.json and query-routing.md here")
    ap.add_argument("--small", default=None)
    ap.add_argument("--large", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--n-ctx", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--max-step-tokens", type=int, default=None)
    ap.add_argument("--parallel", type=int, default=1, help="solo runs solved at once (steer bench --parallel N says what it gains here)")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args()
    result = study(args)
    text = markdown(result)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "query-routing.json").write_text(json.dumps(result, indent=1) + "\n")
        (args.out / "query-routing.md").write_text(text + "\n")
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
