"""P(IK) on held-out problems: how well it separates, and what it buys the cascade.

    python benchmarks/pik_cascade.py --pik pik.json --data dev --limit 150 --work W --out docs/

With greedy decoding a cascade's tiers solve a problem exactly as they do
alone, so the small-only and large-only runs (reused from eval's record files
under --work, solved first if missing) plus one P(IK) embedding per problem
give every (P(T), P(IK)) operating point exactly. Each point is compared with
routing whole queries at random between the two models at the same cost
(decode, FLOPs and time against the large-only run, problem by problem; time
predicted from this machine's profile, or `--wall` for the records' own
clock), as a paired difference with a 95% interval.

`--gate steer:entropy@0.55,...` puts P(IK) in front of stepwise routers too:
a query it rates hopeless goes to the large model alone, every other query
to the router exactly as it runs alone (P(IK)'s pass reads the question in a
context of its own), so those rows come from the router's records as well.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from steer_cli import datasets, stats
from steer_cli import pik as pk
from steer_cli.evaluate import Bench
from steer_cli.registry import steer_home
from steer_cli.routes import Route
from steer_cli.session import Options, Session


def load(args):
    trained = (("pik", args.pik),) + ((("policy", args.policy),) if args.policy else ())
    options = Options(small=args.small, large=args.large, threads=args.threads, n_ctx=args.n_ctx, max_steps=args.max_steps,
                      max_step_tokens=args.max_step_tokens, trained=trained)
    session = Session.from_options(options, measure=True)
    items = datasets.problems(args.data, args.limit, need_gold=True)
    bench = Bench(session, args.work or steer_home() / "eval")
    small = bench.records(Route("small"), items)
    large = bench.records(Route("large"), items[: args.cascade_limit or len(items)])
    model = session.artifacts["pik"]
    engine = session.engines[0]
    calib = datasets.problems(args.calib, args.calib_limit, need_gold=True)
    calib_pt = [r.get("answer_confidence") or 0.0 for r in bench.records(Route("small"), calib)]
    calib_pik = [model.predict(engine.embed_prompt(i.question), i.question) for i in calib]
    piks, embed_s, embed_tokens = [], [], []
    for item in items:
        before = engine.stats.snapshot()
        started = time.perf_counter()
        piks.append(model.predict(engine.embed_prompt(item.question), item.question))
        embed_s.append(time.perf_counter() - started)
        embed_tokens.append(engine.stats.since(before).evaluated_tokens)
    gated = {label: bench.records(route, items[: len(large)]) for label, route in _gate_routes(args.gate, bench)}
    loaded = (items, small, large, np.array(piks), np.array(embed_s), np.array(embed_tokens), engine.params, np.array(calib_pt), np.array(calib_pik))
    return loaded, gated, session.meter.profiles


def _gate_routes(spec: str, bench) -> list[tuple[str, Route]]:
    from steer_cli import routes as grammar

    routes = [bench.resolve(r) for r in grammar.parse_list(spec, "--gate")]  # a bad spec is refused before anything runs
    for route in routes:
        if route.router in ("small", "large", "cascade"):
            raise SystemExit(f"--gate takes stepwise routers, not {route.router}")
    return [(r.label, r) for r in routes]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pik", type=Path, required=True)
    ap.add_argument("--data", default="dev")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--small", default=None)
    ap.add_argument("--large", default=None)
    ap.add_argument("--n-ctx", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=24)
    ap.add_argument("--max-step-tokens", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--calib", default="train", help="where the thresholds come from (never the evaluation set)")
    ap.add_argument("--calib-limit", type=int, default=150)
    ap.add_argument("--gate", default="", help="stepwise routers to put behind P(IK) too, in eval's spelling (steer:entropy@0.55,trim:verify@0.78)")
    ap.add_argument("--policy", type=Path, default=None, help="the policy file, where --gate names policy")
    ap.add_argument("--wall", action="store_true", help="price time by the records' measured wall clock (same machine only) instead of this machine's profile")
    ap.add_argument("--cascade-limit", type=int, default=None, help="cascade points on the first N problems only (AUROCs use all --limit)")
    args = ap.parse_args()
    loaded, gated, profiles = load(args)
    items, small, large, piks, embed_s, embed_tokens, small_params, calib_pt, calib_pik = loaded

    right_all = np.array([stats.correct(r) for r in small], dtype=float)
    pt_all = np.array([r.get("answer_confidence") or 0.0 for r in small])
    min_entropy = np.array([min((s["signals"]["entropy"] for s in r["steps"] if s.get("signals")), default=1.0) for r in small])
    piks_all = piks
    m = len(large)  # the cascade needs the large-only run: its first m problems
    small, piks, embed_s, embed_tokens = small[:m], piks[:m], embed_s[:m], embed_tokens[:m]
    right_s = right_all[:m]
    right_l = np.array([stats.correct(r) for r in large], dtype=float)
    pt = pt_all[:m]
    pass_s = _pik_pass_seconds(small, embed_tokens, profiles)
    wall = args.wall or pass_s is None  # the clock of the machine that solved them, else this machine's profile for records from anywhere
    time_basis = "measured wall clock" if wall else "predicted from this machine's profile"

    def priced(records: list[dict], unit: str) -> np.ndarray:
        return np.array([stats.wall(r) if unit == "time" and wall else stats.spent(r, unit, profiles) for r in records])

    pik_pass = {"decode": np.zeros(m), "flops": 2.0 * small_params * embed_tokens, "time": embed_s if wall else pass_s}  # it decodes nothing
    costs = {u: (priced(small, u), priced(large, u), pik_pass[u]) for u in ("decode", "flops", "time")}  # per unit: small, large, P(IK)'s pass
    f_l, t_l, f_e, t_e = costs["flops"][1], costs["time"][1], pik_pass["flops"], pik_pass["time"]

    n = len(items)
    lines = [f"Separation, {n} problems of {args.data} (small alone right on {right_all.mean():.1%}):", ""]
    lines += ["| signal (per problem, before or after the small model answers) | AUROC for 'the small model is right' |", "|---|---|"]
    lines += [f"| P(IK), before answering (hidden state of the question) | **{pk.auroc(piks_all, right_all > 0):.3f}** |"]
    lines += [f"| P(T), after answering (answer-token probability) | {pk.auroc(pt_all, right_all > 0):.3f} |"]
    lines += [f"| min step entropy confidence, after answering | {pk.auroc(min_entropy, right_all > 0):.3f} |", ""]
    lines += [f"Cascade, the first {m} of them (small alone {right_s.mean():.1%}, large alone {right_l.mean():.1%}):", ""]
    lines += [f"Cascade operating points: thresholds are the 10-50% quantiles of each signal on the {args.calib} problems "
              f"(first {args.calib_limit}), never on these; a P(IK) skip sends the query straight to the large model; time {time_basis}.", ""]

    def point(skip: np.ndarray, escalate: np.ndarray, with_pik: bool) -> dict:
        uses_small = ~skip
        to_large = skip | escalate
        acc = np.where(to_large, right_l, right_s)
        out = {"accuracy": acc.mean(), "skipped": skip.mean(), "escalated": to_large.mean(), "vs_large": stats.paired(list(acc - right_l))}
        for unit, (small_cost, large_cost, pik_cost) in costs.items():
            spent = (pik_cost if with_pik else 0) + np.where(uses_small, small_cost, 0) + np.where(to_large, large_cost, 0)
            out[unit], out[f"vs_random_{unit}"] = _against_random(acc, spent, small_cost, large_cost, right_s, right_l)
        return out

    rows = []
    none = np.zeros(m, dtype=bool)
    for q in (0.1, 0.2, 0.3, 0.5):
        t = float(np.quantile(calib_pt, q))
        rows.append((f"cascade@{t:.6g}", point(none, pt < t, False)))
    for q_ik in (0.1, 0.2, 0.4):
        t_ik = float(np.quantile(calib_pik, q_ik))
        for q in (0.0, 0.1, 0.2, 0.3):
            t = float(np.quantile(calib_pt, q)) if q else 0.0
            rows.append((f"cascade@{t:.6g}+pik@{t_ik:.3g}", point(piks < t_ik, (piks >= t_ik) & (pt < t), True)))
    header = ("| config | P(IK) skips | to the 1.5B | accuracy | rel. decode | rel. FLOPs | rel. time | vs random (decode) [95% CI] "
              "| vs random (FLOPs) [95% CI] | vs random (time) [95% CI] | vs 1.5B [95% CI] |")
    lines += [header, "|" + "---|" * 11]
    for label, p in rows:
        lines.append(f"| {label} | {p['skipped']:.0%} | {p['escalated']:.0%} | {p['accuracy']:.1%} | {p['decode']:.2f} | {p['flops']:.2f} | {p['time']:.2f} "
                     f"| {p['vs_random_decode']} | {p['vs_random_flops']} | {p['vs_random_time']} | {p['vs_large']} |")
    estimated = np.array([r["cost"]["large_only_flops"] for r in small])
    lines += ["", f"Cost reference: the 1.5B's FLOPs estimated from the 0.5B's accepted transcripts are {estimated.sum() / f_l.sum():.3f} "
              f"of the measured large-only run on the same problems (per problem, median {np.median(estimated / f_l):.3f}); "
              f"`eval` uses the measured run wherever `large` is among its configurations."]
    lines += ["", f"P(IK)'s own cost: {embed_tokens.mean():.0f} prompt tokens prefilled by the small model per problem, "
              f"{embed_s.mean() * 1000:.0f} ms measured here ({t_e.sum() / t_l.sum():.3f} of the large model's time, {time_basis}; "
              f"{f_e.sum() / f_l.sum():.3f} of its FLOPs)"]
    if gated:
        gate = {label: {u: priced(records, u) for u in costs} for label, records in gated.items()}
        lines += ["", *_gate_table(gated, gate, costs, right_s, right_l, piks, calib_pik, time_basis, args)]
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pik-cascade.md").write_text(text + "\n")
    _plot(rows, right_s.mean(), right_l.mean(), costs["time"][0].sum() / t_l.sum(), args.out / "pik-cascade.png")
    json.dump({"auroc_pik": pk.auroc(piks_all, right_all > 0), "auroc_pt": pk.auroc(pt_all, right_all > 0), "auroc_min_entropy": pk.auroc(min_entropy, right_all > 0)}, sys.stderr)
    print(file=sys.stderr)


def _pik_pass_seconds(small: list[dict], embed_tokens: np.ndarray, profiles: dict) -> np.ndarray | None:
    """P(IK)'s pass as this machine's profile prices it: a prefill of the question by the small model."""
    profile = profiles.get(small[0]["cost"]["models"][0]["name"]) if small else None
    return None if profile is None else np.array([profile.seconds(int(t), 0) for t in embed_tokens])


def _against_random(acc: np.ndarray, spent: np.ndarray, small_cost: np.ndarray, large_cost: np.ndarray, right_s: np.ndarray, right_l: np.ndarray):
    """Relative cost of `spent`, and accuracy against routing whole queries at
    random between the two models at that cost (paired, problem by problem)."""
    rel = spent.sum() / large_cost.sum()
    p = stats.random_share(rel, small_cost.sum() / large_cost.sum(), 1.0)
    return rel, stats.paired(list(acc - ((1 - p) * right_s + p * right_l)))


def _gate_table(gated, gate_costs, costs, right_s, right_l, piks, calib_pik, time_basis, args) -> list[str]:
    """P(IK) in front of each stepwise router: skipped queries take the large
    model's record, the rest the router's; every unit against the large run."""
    lines = [f"P(IK) in front of stepwise routers, the same {len(piks)} problems: a skipped query goes to the large model alone, "
             f"the rest to the router as it runs alone; time {time_basis}; thresholds: quantiles of P(IK) "
             f"on the {args.calib} problems (first {args.calib_limit}).", ""]
    lines += ["| config | P(IK) skips | accuracy | rel. decode | rel. FLOPs | rel. time | vs random (decode) [95% CI] | vs random (FLOPs) [95% CI] "
              "| vs random (time) [95% CI] | vs the router alone [95% CI] |", "|" + "---|" * 10]
    for label, records in gated.items():
        right_r = np.array([stats.correct(r) for r in records], dtype=float)
        for q in (0.0, 0.1, 0.2, 0.3, 0.4):
            t = float(np.quantile(calib_pik, q)) if q else None
            skip = piks < t if t is not None else np.zeros(len(piks), dtype=bool)
            acc = np.where(skip, right_l, right_r)
            cells = {}
            for u, (small_cost, large_cost, pik_cost) in costs.items():
                spent = np.where(skip, large_cost, gate_costs[label][u]) + (pik_cost if t is not None else 0)
                cells[u] = _against_random(acc, spent, small_cost, large_cost, right_s, right_l)
            name = label if t is None else f"{label}+pik@{t:.3g}"
            lines.append(f"| {name} | {skip.mean():.0%} | {acc.mean():.1%} | {cells['decode'][0]:.2f} | {cells['flops'][0]:.2f} | {cells['time'][0]:.2f} "
                         f"| {cells['decode'][1]} | {cells['flops'][1]} | {cells['time'][1]} | {stats.paired(list(acc - right_r)) if t is not None else '–'} |")
    return lines


def _plot(rows, acc_small: float, acc_large: float, time_small: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for tag, marker in (("P(T) only", "o"), ("P(T) + P(IK)", "s")):
        pts = sorted((p["time"], p["accuracy"]) for label, p in rows if ("+pik" in label) == (tag != "P(T) only"))
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker=marker, linestyle="none", label=f"cascade, {tag}")
    ax.plot([time_small, 1.0], [acc_small, acc_large], color="grey", linestyle=":", label="random query routing")
    ax.scatter([time_small, 1.0], [acc_small, acc_large], color="black", zorder=3)
    ax.set_xlabel("relative time (vs the 1.5B alone)")
    ax.set_ylabel("accuracy")
    ax.set_title("confidence cascade with and without P(IK)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    from steer_cli.output import run_script  # the CLI's one error map: a known failure is one line

    run_script(main)
