"""P(IK): trained by a steer command on a real model, validated on load, and
used by the cascade to skip the small tier before it spends anything."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fakes import ScriptedEngine
from steer_cli import datasets
from steer_cli import pik as pk
from steer_cli.cli import app
from steer_cli.routes import Route, build
from steer_cli.solver import Solved, Solver

runner = CliRunner()
SUMS = [(2, 2), (3, 5), (10, 7), (6, 6), (9, 1), (4, 8), (12, 3), (7, 7), (5, 9), (8, 2), (11, 4), (1, 1), (20, 5), (6, 3), (2, 9), (13, 13)]


def test_auroc_and_logistic_regression_recover_a_known_signal():
    assert pk.auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert pk.auroc([0.5, 0.5], [True, False]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x[:, 2] + 0.3 * rng.normal(size=400) > 0).astype(float)
    w, b = pk.fit_logistic(x, y, l2=0.01)
    assert np.argmax(np.abs(w)) == 2 and pk.auroc(x @ w + b, y > 0) > 0.95


def hand_made(threshold):
    """A P(IK) on the scripted engine's 2-number 'hidden state' (first char code, length)."""
    n = 1  # the fake's 2 numbers stand for a mean and a last-token state of width 1
    return pk.PikModel("s", "0" * 64, pk.feature_names(n), np.zeros(2 * n + 2), np.ones(2 * n + 2), np.array([0.0, 1.0, 0.0, 0.0]), -10.0, threshold)


def test_a_query_judged_hopeless_skips_the_small_tier_and_pays_only_the_embedding():
    pik = hand_made(0.5)  # P(IK) = sigmoid(len - 10): short problems are "hopeless" here
    small, large = ScriptedEngine("s").enqueue("\\boxed{1}"), ScriptedEngine("l").enqueue("\\boxed{2}")
    router = build(Route("cascade", 0.0, "answer", pik=0.5), {"pik": pik})
    result = next(e.result for e in Solver([small, large], router).solve("short") if isinstance(e, Solved))
    assert result.answer == "2" and result.attempts[0] == {"tier": 0, "model": "s", "skipped": True, "pik": pytest.approx(0.0067, abs=1e-3)}
    assert small.stats.decoded_tokens == 0 and result.cost.models[0].evaluated_tokens == len("short")  # the embedding's prefill, counted
    small, large = ScriptedEngine("s").enqueue("\\boxed{1}"), ScriptedEngine("l").enqueue("\\boxed{2}")
    result = next(e.result for e in Solver([small, large], router).solve("a long enough problem") if isinstance(e, Solved))
    assert result.answer == "1" and result.attempts[0]["pik"] > 0.5 and "skipped" not in result.attempts[0]


def solved(solver, problem):
    return next(e.result for e in solver.solve(problem) if isinstance(e, Solved))


def test_a_gate_in_front_of_a_stepwise_router_sends_a_hopeless_query_to_the_large_model_alone():
    pik = hand_made(0.5)
    gated = build(Route("steer", 0.5, "maxprob", pik=0.5), {"pik": pik})  # the 0.5B is sure (0.99) of every step
    small, large = ScriptedEngine("s").enqueue("2 + 2 = 4.\n\n", "\\boxed{1}"), ScriptedEngine("l").enqueue("\\boxed{2}")
    hopeless = solved(Solver([small, large], gated), "short")
    assert hopeless.answer == "2" and [s.model for s in hopeless.steps] == ["l"]
    assert hopeless.attempts == [{"tier": 0, "model": "s", "skipped": True, "pik": pytest.approx(0.0067, abs=1e-3)}]
    assert small.stats.decoded_tokens == 0 and small.asked == 0  # the 0.5B wrote nothing and was asked nothing
    # A query it rates knowable runs exactly as with no gate, plus the one pass over the question.
    problem = "a long enough problem"
    runs = []
    for route in (Route("steer", 0.5, "maxprob"), Route("steer", 0.5, "maxprob", pik=0.5)):
        small, large = ScriptedEngine("s").enqueue("2 + 2 = 4.\n\n", "\\boxed{1}"), ScriptedEngine("l").enqueue("\\boxed{2}")
        runs.append(solved(Solver([small, large], build(route, {"pik": pik})), problem))
    plain, kept = runs
    assert kept.answer == plain.answer == "1" and [s.text for s in kept.steps] == [s.text for s in plain.steps]
    assert kept.attempts[0]["pik"] > 0.5 and "skipped" not in kept.attempts[0] and plain.attempts == []
    assert kept.cost.models[0].evaluated_tokens == plain.cost.models[0].evaluated_tokens + len(problem)


@pytest.mark.usefixtures("profiled")
def test_pik_train_then_cascade_on_a_real_model(tmp_path, smollm2_path, tiny_small):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n" for a, b in SUMS))
    models = ["--small", str(smollm2_path), "--large", str(smollm2_path), "--threads", "1", "--n-ctx", "1024", "--max-steps", "3", "--max-step-tokens", "40"]
    out = tmp_path / "pik.json"
    r = runner.invoke(app, ["pik", "train", "--data", str(data), "--limit", "16", "-o", str(out), "--skip-share", "0.5", "--json", "-q",
                            "--work", str(tmp_path / "work"), *models])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["n"] == 16 and 0 < report["small_accuracy"] < 1 and report["saved_to"] == str(out)
    model = pk.load(out)
    assert model.model == smollm2_path.stem and len(model.features) == 2 * 576 + 2
    items = datasets.problems(str(data), 16, need_gold=True)
    assert len(model.trained_on) == model.n_train and model.trained_on <= {item.key for item in items}
    ask = ["ask", "What is 2 + 2?", "--router", "cascade", "-t", "0", "--pik", str(out), "--json", "-q", *models]
    skipped = json.loads(runner.invoke(app, [*ask, "--pik-threshold", "1"]).stdout)
    assert skipped["attempts"][0]["skipped"] is True and skipped["cost"]["models"][0]["decoded_tokens"] == 0
    assert skipped["cost"]["models"][0]["prefill_tokens"] > 0  # the embedding pass is paid for
    kept = json.loads(runner.invoke(app, [*ask, "--pik-threshold", "0"]).stdout)
    assert "skipped" not in kept["attempts"][0] and 0 <= kept["attempts"][0]["pik"] <= 1
    # The same gate in front of a stepwise router: a hopeless query is the large model's alone.
    gated = json.loads(runner.invoke(app, ["ask", "What is 2 + 2?", "--router", "steer", "-t", "0.5", "--pik", str(out), "--pik-threshold", "1", "--json", "-q", *models]).stdout)
    assert gated["attempts"][0]["skipped"] is True and gated["cost"]["models"][0]["decoded_tokens"] == 0
    assert gated["steps"] and {s["tier"] for s in gated["steps"]} == {1}
    # Under --parallel each problem pays for its own embedding.
    src = tmp_path / "two.jsonl"
    src.write_text('{"id": "a", "question": "What is 2 + 2?"}\n{"id": "b", "question": "What is 3 + 5?"}\n')
    both = runner.invoke(app, ["batch", str(src), "-o", str(tmp_path / "two-out.jsonl"), "--router", "steer", "-t", "0.5", "--pik", str(out), "--pik-threshold", "1",
                               "--parallel", "2", "-q", *models])
    assert both.exit_code == 0, both.stderr
    for rec in map(json.loads, (tmp_path / "two-out.jsonl").read_text().splitlines()):
        small_cost = rec["cost"]["models"][0]
        assert rec["attempts"][0]["skipped"] is True and small_cost["decoded_tokens"] == 0 and small_cost["prefill_tokens"] > 5
    # calibrate moves the P(T) and P(IK) thresholds along one line and reports both.
    cal = runner.invoke(app, ["calibrate", "--target-cost", "0.9", "--router", "cascade", "--pik", str(out), "--data", str(data), "--limit", "4",
                              "--heldout", "none", "--max-rounds", "1", "--tolerance", "0.9", "--dry-run", "--json", "-q", "--work", str(tmp_path / "work"), *models])
    assert cal.exit_code == 0, cal.stderr
    assert 0.0 <= json.loads(cal.stdout)["pik_threshold"] <= 1.0
    seen = model.seen(items[:4])  # calibrating on problems the P(IK) learnt from flatters the gate: said, even under -q
    assert seen > 0 and f"{seen} of the 4 calibration problems trained {out}: a P(IK) gate's figures on them are in-sample" in cal.stderr
    # The same file on another small model, or altered, is refused in one line.
    other = runner.invoke(app, ["ask", "2+2?", "--router", "cascade", "--pik", str(out), "--small", str(tiny_small), "--large", str(smollm2_path), "--threads", "1"])
    assert other.exit_code == 2 and "was trained for" in other.stderr and other.stderr.count("\n") == 1
    raw = json.loads(out.read_text())
    raw["weights"] = raw["weights"][:-1]
    out.write_text(json.dumps(raw))
    bad = runner.invoke(app, [*ask])
    assert bad.exit_code == 2 and "altered" in bad.stderr and bad.stderr.count("\n") == 1


def test_the_embedding_runs_on_the_generation_weights_and_leaves_generation_alone(smollm2_path):
    """P(IK)'s pass shares the loaded model (no second copy of the weights), gives what
    a separate embeddings-mode load of the same file gives, and the generation
    context's next token is the same after it as before."""
    import llama_cpp

    from steer_cli.engine import LlamaEngine, LoadOptions

    engine = LlamaEngine("s", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    engine.start("What is 6 times 7?")
    before = engine.next_token()
    vector = engine.embed_prompt("What is 6 times 7?")
    assert engine.next_token() == before
    assert engine._embedded.embedder._ctx.model is engine._llm._model
    alone = llama_cpp.Llama(model_path=str(smollm2_path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
                            n_ctx=512, n_batch=512, n_ubatch=512, n_threads=1, verbose=False)
    tokens = engine.render_prompt("What is 6 times 7?")
    alone._batch.set_batch(batch=tokens, n_past=0, logits_all=True)
    alone._ctx.decode(alone._batch)
    states = np.ctypeslib.as_array(llama_cpp.llama_get_embeddings(alone._ctx.ctx), shape=(len(tokens), alone.n_embd()))
    expected = np.concatenate([states.mean(axis=0), states[-1]])
    assert vector.shape == expected.shape and np.allclose(vector, expected, rtol=1e-4, atol=1e-4)


def test_the_regression_is_the_same_solved_over_rows_or_over_features():
    from steer_cli.pik import _fit_dual, fit_logistic

    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 25))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(float)
    w, b = fit_logistic(x, y, 0.1)  # more rows than features: over the features
    w_dual, b_dual = _fit_dual(x, y, 0.1, 300)  # the same data solved over the rows
    assert np.allclose(w, w_dual, atol=1e-6) and abs(b - b_dual) < 1e-6


def test_a_pik_file_lists_the_problems_it_learnt_from_not_those_held_out(tmp_path):
    """So calibrate and eval can say when they judge it on its own training problems;
    the list leaves the gate's predictions, and so its record keys, alone."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2 * 4 + len(pk.EXTRAS)))
    items = [datasets.Item(f"p{i}", i, f"What is {i} + 1?", str(i + 1)) for i in range(30)]
    heldout = np.arange(30) % 3 == 0
    model = pk.train(x, (x[:, 0] > 0).astype(float), heldout, "tiny", "0" * 64, 0.1, [item.key for item in items])
    loaded = pk.load(model.save(tmp_path / "pik.json"))
    assert loaded.trained_on == {item.key for item, held in zip(items, heldout) if not held} and loaded.n_train == 20
    assert loaded.seen(items[:6]) == 4 and loaded.seen([datasets.Item("new", 0, "What is 99 + 1?", "100")]) == 0
    older = json.loads((tmp_path / "pik.json").read_text())
    del older["trained_on"]  # a file written before steer kept the list: nothing to say, same predictions
    (tmp_path / "old.json").write_text(json.dumps(older))
    old = pk.load(tmp_path / "old.json")
    assert old.seen(items) == 0 and old.identity() == loaded.identity()
