"""Calibration reaches its target cost: on scripted engines with a known
confidence distribution, and through the real CLI on small real models."""

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from fakes import ScriptedEngine
from steer_cli import calibrate as cal
from steer_cli.cli import app
from steer_cli.errors import UsageError
from steer_cli.evaluate import Bench
from steer_cli.session import Session
from steer_cli.stats import summarize
from steer_cli.routes import Route
from steer_cli.registry import Defaults, load_registry
from steer_cli.datasets import Item
from steer_cli.solver import StepLimits


class Uniform(ScriptedEngine):
    """Writes six 10-token steps per problem; its step-start confidence is
    uniform on [0, 1] (seeded), so a threshold t escalates a fraction t."""

    def __init__(self, name, params, seed):
        super().__init__(name, params)
        self.seed = seed

    def start(self, problem):
        super().start(problem)
        rng = random.Random(f"{self.seed}-{problem}")  # the same draws for a problem in every run
        self.queue = [f"s{i} = {i:04d}\n\n" for i in range(5)] + ["so \\boxed{5}"]  # ends inside its last step
        self.confidences = [rng.random() for _ in range(12)]
        sure = rng.random() < 0.6  # a problem the model writes confidently or not: what trim and cascade read
        self.token_probs = [0.9 if sure else 0.3] * 6


def bench(tmp_path, seed=0, meter=None):
    engines = [Uniform("small", 100, seed), Uniform("large", 400, seed + 1)]
    return Bench(Session.of(engines, meter, defaults=Defaults(), limits=StepLimits(), seed=seed, identities={"fake": seed}), tmp_path)


def items(prefix, n):
    return [Item(id=f"{prefix}{i}", line=i, question=f"problem {prefix}{i}", answer="5") for i in range(n)]


def probe(b, problems, data):
    def measure(t):
        config = Route("steer", t, "maxprob")
        s = summarize(config.label, b.records(config, problems))
        return cal.Probe(t, s.relative_cost, s.accuracy, s.n)

    return measure


@pytest.mark.parametrize("target", [0.5, 0.6, 0.7, 0.8, 0.9])
def test_calibration_meets_the_target_and_holds_out(tmp_path, target):
    b = bench(tmp_path)
    train, held = items("t", 200), items("h", 200)
    small = summarize("small", b.records(Route("small", None), train))
    scores = cal.scores_of("steer", "maxprob", b.records(Route("small", None), train))
    assert len(scores) == 200 * 6
    records = b.records(Route("small", None), train)
    assert cal.decisions_per_query("steer", records) == 6
    outcome = cal.search(probe(b, train, "train"), target, small.relative_cost, lambda f: cal.quantile(scores, f), tolerance=0.03, rounds=8, decisions=6)
    assert outcome.converged and abs(outcome.best.cost - target) <= 0.03
    check = probe(b, held, "held")(outcome.best.threshold)
    assert abs(check.cost - target) <= 0.05


@pytest.mark.parametrize("target", [0.6, 0.8])
def test_calibration_in_time_meets_the_target_and_holds_out(tmp_path, target):
    """The same search in seconds: a profile where the large model decodes
    3x slower than the small one and reads 4x faster than it decodes."""
    from steer_cli.profile import Profile
    from steer_cli.units import Meter

    meter = Meter("time", {"small": Profile("small", "0" * 64, 2, 0, "x", 200, 60, 120, 0), "large": Profile("large", "1" * 64, 2, 0, "x", 80, 20, 40, 0)})
    b = bench(tmp_path, meter=meter)
    train, held = items("t", 200), items("h", 200)

    def measure(problems):
        def run(t):
            config = Route("steer", t, "maxprob")
            s = summarize(config.label, b.records(config, problems), meter=meter)
            return cal.Probe(t, s.cost("time"), s.accuracy, s.n)

        return run

    small = summarize("small", b.records(Route("small", None), train), meter=meter)
    scores = cal.scores_of("steer", "maxprob", b.records(Route("small", None), train))
    outcome = cal.search(measure(train), target, small.cost("time"), lambda f: cal.quantile(scores, f), tolerance=0.03, rounds=8, decisions=6)
    assert outcome.converged and abs(outcome.best.cost - target) <= 0.03
    assert abs(measure(held)(outcome.best.threshold).cost - target) <= 0.05
    assert small.cost("time") != small.relative_cost  # seconds are not FLOPs here


def test_a_target_below_the_small_models_own_cost_is_refused(tmp_path):
    with pytest.raises(UsageError, match="below what the small model alone costs"):
        cal.search(lambda t: pytest.fail("no run should start"), 0.2, 0.35, lambda f: f)


def test_quantile_maps_a_fraction_to_the_score_below_it():
    scores = [0.1, 0.2, 0.3, 0.4, 0.5]
    assert cal.quantile(scores, 0.0) == 0.1 and cal.quantile(scores, 1.0) == 0.5
    assert cal.quantile(scores, 0.5) == pytest.approx(0.3)
    assert cal.quantile([], 0.3) == 0.3  # no traces: the fraction itself (random's p)


def test_scores_come_from_the_small_models_traces():
    records = [{"steps": [{"signals": {"entropy": 0.4}, "mean_logprob": -0.1, "min_logprob": -2.0}], "answer_confidence": 0.7}]
    assert cal.scores_of("steer", "entropy", records) == [0.4]
    assert cal.scores_of("trim", "self-min", records) == pytest.approx([0.1353], abs=1e-4)
    assert cal.scores_of("cascade", "answer", records) == [0.7]
    assert cal.scores_of("trim", "verify", records) == []


runner = CliRunner()


@pytest.mark.usefixtures("profiled")
def test_calibrate_cli_saves_a_threshold_later_commands_use(tmp_path, tiny_small, smollm2_path):
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(1, 6)))
    args = ["calibrate", "--target-cost", "0.7", "--router", "steer", "--small", str(tiny_small), "--large", str(smollm2_path), "--data", str(data), "--limit", "3",
            "--heldout", str(data), "--heldout-limit", "2", "--max-rounds", "2", "--tolerance", "0.3", "--json", "-q",
            "--work", str(tmp_path / "work"), "--max-steps", "3", "--max-step-tokens", "8", "--threads", "1", "--n-ctx", "1024"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["saved_to"] is None
    assert load_registry().defaults.thresholds["steer"] == 0.36  # the packaged value, untouched
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["router"] == "steer" and out["heldout"]["n"] == 2 and out["calibration"]["n"] == 3
    assert abs(out["calibration"]["cost"] - 0.7) == min(abs(p["cost"] - 0.7) for p in out["probes"])
    saved = yaml.safe_load(open(out["saved_to"]))
    assert saved["defaults"]["thresholds"]["steer"] == out["threshold"]
    registry = load_registry()
    assert registry.defaults.thresholds["steer"] == out["threshold"]
    assert registry.defaults.thresholds["random"] == 0.3  # the other routers keep the packaged values


@pytest.mark.usefixtures("profiled")
def test_calibrate_runs_on_questions_without_gold_answers(tmp_path, tiny_small, smollm2_path):
    """Cost needs no labels, so a user can calibrate on their own questions."""
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} times 3?"}) + "\n" for i in range(1, 4)))
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.7", "--small", str(tiny_small), "--large", str(smollm2_path), "--data", str(data),
                            "--limit", "2", "--heldout", str(data), "--heldout-limit", "1", "--max-rounds", "1", "--tolerance", "0.6", "--dry-run",
                            "--work", str(tmp_path / "work"), "--max-steps", "2", "--max-step-tokens", "6", "--threads", "1", "--n-ctx", "1024"])
    assert r.exit_code == 0, r.stderr
    assert "accuracy no gold answers (n=2)" in r.stdout and "accuracy no gold answers (n=1)" in r.stdout
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.5", "--data", str(empty), "--heldout", "none"])
    assert r.exit_code == 2 and "no usable problems in it" in r.stderr


def test_calibrate_refuses_routers_without_a_threshold():
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.5", "--router", "large", "--limit", "1", "--heldout", "none"])
    assert r.exit_code == 2 and "no threshold to calibrate" in r.stderr
    r = runner.invoke(app, ["calibrate", "--target-cost", "1.5"])
    assert r.exit_code == 2 and "outside (0, 1]" in r.stderr


@pytest.mark.parametrize("router, signal, t", [("steer", "maxprob", 0.05), ("steer", "maxprob", 0.2), ("trim", "self", 0.55), ("cascade", "answer", 0.3)])
def test_problems_that_never_escalate_are_their_small_only_run(tmp_path, router, signal, t):
    """The shortcut calibrate takes is exact: a routed record it reuses from
    the small-only run is what solving the problem would have produced."""
    b = bench(tmp_path / "a")
    problems = items("p", 60)
    small = {r["id"]: r for r in b.records(Route("small", None), problems)}
    solved = {r["id"]: r for r in bench(tmp_path / "b").records(Route(router, t, signal), problems)}
    reused = [pid for pid, r in small.items() if cal.stays_small(router, signal, t, r)]
    assert 0 < len(reused) < 60  # some problems are reused, some must be solved: both sides are checked
    for pid in reused:
        assert [s["tier"] for s in solved[pid]["steps"]] == [0] * len(small[pid]["steps"])
        assert solved[pid]["cost"]["flops"] == small[pid]["cost"]["flops"] and solved[pid]["answer"] == small[pid]["answer"]


def test_a_cost_measured_on_too_few_problems_is_flagged(capsys):
    from steer_cli.commands.calibrate import _warn_if_loose

    _warn_if_loose(cal.Probe(0.14, 0.49, 0.31, 100, cost_se=0.044), tolerance=0.03)
    assert "only known to ±0.088" in capsys.readouterr().err
    _warn_if_loose(cal.Probe(0.14, 0.50, 0.31, 400, cost_se=0.012), tolerance=0.03)
    assert capsys.readouterr().err == ""


def test_calibrate_auto_chooses_among_routes_and_later_commands_use_it(tmp_path, tiny_small, smollm2_path):
    """--router auto prices small, large, mix and the cascade from the two solo
    runs alone; a replayed candidate is what a real run of it gives; the choice
    is saved and `ask` with no --router runs it."""
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(1, 9)))
    common = ["--small", str(tiny_small), "--large", str(smollm2_path), "--work", str(tmp_path / "work"), "--max-steps", "3",
              "--max-step-tokens", "8", "--threads", "1", "--n-ctx", "1024", "--cost-unit", "flops"]
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.8", "--router", "auto", "--data", str(data), "--limit", "5",
                            "--heldout", str(data), "--heldout-limit", "3", "--json", "-q", "--out", str(tmp_path / "choice"), *common])
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "choice" / "frontier.png").read_bytes()[:4] == b"\x89PNG"  # every candidate, the random line drawn
    out = json.loads(r.stdout)
    names = [c["route"].split("@")[0].split(":")[0] for c in out["candidates"]]
    assert names[:2] == ["small", "large"] and "mix" in names
    within = [c for c in out["candidates"] if c["cost"] <= 0.8]
    chosen = next(c for c in out["candidates"] if c["route"] == out["route"])
    assert chosen["accuracy"] == max(c["accuracy"] for c in within)
    assert out["heldout"]["n"] == 3 and out["heldout"]["mix"].startswith("mix@")
    # A replayed candidate against a real run of the same route on the same problems.
    mix = next(c for c in out["candidates"] if c["route"].startswith("mix"))
    fresh = [tmp_path / "fresh" if a == str(tmp_path / "work") else a for a in common]  # no solo records there: mix is really solved
    ev = runner.invoke(app, ["eval", "--routers", f"{mix['route']},large", "--data", str(data), "--limit", "5", "--json", "-q", *map(str, fresh)])
    assert ev.exit_code == 0, ev.stderr
    real = next(s for s in json.loads(ev.stdout) if s["config"] == mix["route"])
    assert real["accuracy"] == mix["accuracy"] and real["relative_cost"] == pytest.approx(mix["cost"], rel=0.05)
    # Beside the solo records, eval reuses them for mix instead of solving again.
    again = runner.invoke(app, ["eval", "--routers", f"large,{mix['route']}", "--data", str(data), "--limit", "5", "--json", "-q", *common])
    reused = [json.loads(line) for f in (tmp_path / "work").glob("mix@*.jsonl") for line in f.read_text().splitlines()]
    assert again.exit_code == 0 and len(reused) == 5 and all(r["reused"] in ("small", "large") for r in reused)
    assert next(s for s in json.loads(again.stdout) if s["config"] == mix["route"])["accuracy"] == mix["accuracy"]
    saved = yaml.safe_load(open(out["saved_to"]))
    assert saved["defaults"]["router"] == out["route"].split("@")[0].split(":")[0]
    asked = runner.invoke(app, ["ask", "What is 3 + 3?", "--json", "-q", *[a for a in common if a not in ("--work", str(tmp_path / "work"))]])
    assert asked.stdout, asked.stderr
    assert json.loads(asked.stdout)["router"] == saved["defaults"]["router"]


def test_calibrate_auto_weighs_the_stepwise_routes_named_calibrated_or_as_given(tmp_path, tiny_small, smollm2_path):
    """--routers adds stepwise candidates: one without a threshold is calibrated
    to the target on the calibration problems, one with a threshold runs as
    given; both are graded against the same large-only records and shown."""
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(1, 7)))
    common = ["--small", str(tiny_small), "--large", str(smollm2_path), "--work", str(tmp_path / "work"), "--max-steps", "3",
              "--max-step-tokens", "8", "--threads", "1", "--n-ctx", "1024", "--cost-unit", "flops"]
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.8", "--router", "auto", "--routers", "steer,random@0.5", "--max-rounds", "2",
                            "--data", str(data), "--limit", "4", "--heldout", str(data), "--heldout-limit", "2", "--json", "--dry-run", *common])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    measured = {c["route"].split("@")[0]: c for c in out["candidates"] if c["how"] == "measured"}
    assert set(measured) == {"steer:entropy", "random"} and measured["random"]["route"] == "random@0.5"
    assert all(c["n"] == 4 and c["cost"] > 0 for c in measured.values())
    assert "stepwise route(s)" in r.stderr and out["heldout"]["n"] == 2
    for bad, says in ((["--router", "auto", "--routers", "mix@0.3"], "always weighed"), (["--routers", "steer"], "--router auto")):
        r = runner.invoke(app, ["calibrate", "--target-cost", "0.8", *bad, "--data", str(data), *common])
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_calibrate_auto_sizes_its_problems_to_half_an_hour_on_this_machine():
    """Without --limit, --router auto takes as many problems as the two solo
    runs finish in about 30 minutes on the machine's profile, and says so."""
    from steer_cli.commands.calibrate import _sized
    from steer_cli.output import Output

    class Profiled:  # a session whose profile prices the small model at 20 s a problem and the large at 40 s
        def seconds_alone(self, tier: int = -1) -> float:
            return 20.0 if tier == 0 else 40.0

    said = []
    out = Output(quiet=True)
    out.note = said.append  # type: ignore[method-assign]
    assert _sized(Profiled(), None, None, "dev", out) == (18, 12) and "30 minutes" in said[0] and "18 calibration and 12 held-out" in said[0]
    assert _sized(Profiled(), 50, None, "dev", out) == (50, 12)
    assert _sized(Profiled(), 50, None, "none", out) == (50, 0) and len(said) == 2  # nothing left to size, nothing said


def test_calibrate_auto_weighs_the_pik_gate_and_its_replay_is_what_a_real_run_gives(tmp_path, tiny_small, smollm2_path):
    """With --pik, the gate alone and the gate in front of the P(T) cascade are
    candidates, replayed from the solo runs plus one P(IK) pass per problem
    (kept in --work); the replay of a gated route matches a real run of it."""
    import numpy as np

    from steer_cli import pik as pk
    from steer_cli.engine import LlamaEngine, LoadOptions
    from steer_cli.files import content_sha256

    width = len(LlamaEngine("s", tiny_small, LoadOptions(n_ctx=512, n_threads=1)).embed_prompt("What is 1 + 1?"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, width + len(pk.EXTRAS)))
    model = pk.train(x, np.arange(24) % 2 == 0, np.zeros(24, dtype=bool), tiny_small.stem, content_sha256(tiny_small), 0.5, [f"k{i}" for i in range(24)])
    gate = model.save(tmp_path / "pik.json")
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(1, 9)))
    common = ["--small", str(tiny_small), "--large", str(smollm2_path), "--max-steps", "3", "--max-step-tokens", "8", "--threads", "1",
              "--n-ctx", "1024", "--cost-unit", "flops", "--pik", str(gate)]
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.8", "--router", "auto", "--data", str(data), "--limit", "5", "--heldout", str(data),
                            "--heldout-limit", "3", "--json", "--dry-run", "--work", str(tmp_path / "work"), *common])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    gated = [c for c in out["candidates"] if "+pik@" in c["route"]]
    assert gated and all(c["how"] == "replayed" and c["cost"] <= 0.8 for c in gated) and "P(IK) pass" in r.stderr
    assert len(list((tmp_path / "work").glob("pik-pass-*.jsonl"))) == 1
    alone = next(c for c in gated if c["route"].startswith("cascade:answer@0+pik@"))
    ev = runner.invoke(app, ["eval", "--routers", f"{alone['route']},large", "--data", str(data), "--limit", "5", "--json", "-q",
                             "--work", str(tmp_path / "fresh"), *common])
    assert ev.exit_code == 0, ev.stderr
    real = next(s for s in json.loads(ev.stdout) if s["config"] == alone["route"])
    assert real["accuracy"] == alone["accuracy"] and real["relative_cost"] == pytest.approx(alone["cost"], rel=0.05)
