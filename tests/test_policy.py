"""The learned routing policy: training on a decision process whose best
policy is known, the cost constraint, the file, and the router in the solver."""

import json

import numpy as np
import pytest

from steer_cli import training
from steer_cli.errors import UsageError
from steer_cli.policy import NODES, Policy, Trace, features, load
from steer_cli.rollouts import Episode

# Three kinds of step, told apart by the small model's confidence: easy ones
# it always gets right, unsure ones it gets right half the time, hard ones
# never. A verification (cheap) tells a right draft from a wrong one; the
# large model is always right but dear. The best policy at a moderate
# budget: accept easy drafts, verify unsure ones (reject the wrong half),
# send hard steps straight up.
KINDS = {"easy": 0.95, "unsure": 0.5, "hard": 0.05}
DRAFT, VERIFY, LARGE = 0.02, 0.04, 0.25


def synthetic(n: int, steps: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    kinds = [[rng.choice(list(KINDS)) for _ in range(steps)] for _ in range(n)]
    good = [[rng.random() < KINDS[k] for k in row] for row in kinds]

    def episode(i, choose):
        decisions, cost, right, escalated, verified = [], 0.0, True, 0, 0
        previous = "none"
        for j, kind in enumerate(kinds[i]):
            s = KINDS[kind]
            trace = Trace({"maxprob": s, "entropy": 2 * (1 - s), "margin": s}, j, 30 * j, escalated, previous)

            def pick(node):
                x = features(trace)
                a = choose(node, x)
                decisions.append((node, x, a))
                return NODES[node][a]

            if pick("pre") == "escalate":
                cost, escalated, previous = cost + LARGE, escalated + 1, "escalated"
                continue
            cost += DRAFT
            trace.draft_logprobs, trace.draft_text = [-0.3] * 20, "x"  # the draft's own confidence says nothing
            action = pick("draft")
            if action == "verify":
                cost += VERIFY
                verified += 1
                trace.verify_logprobs = [-0.05 if good[i][j] else -2.5] * 20
                action = pick("verified")
            if action == "accept":
                right = right and good[i][j]
                previous = "verified" if trace.verify_logprobs else "accepted"
            else:
                cost, escalated, previous = cost + LARGE, escalated + 1, "rejected"
        return Episode(right, cost, decisions, steps=steps, escalated=escalated, verified=verified)

    return episode, kinds


def best_cost(kinds) -> float:
    per = {"easy": DRAFT, "unsure": DRAFT + VERIFY + 0.5 * LARGE, "hard": LARGE}
    return float(np.mean([sum(per[k] for k in row) for row in kinds]))


@pytest.fixture(scope="module")
def trained():
    episode, kinds = synthetic(60)
    target = best_cost(kinds) + 0.02
    policy, curve = training.train(episode, 60, training.Settings(target=target, epochs=100, seed=1))
    return policy, curve, episode, kinds, target


def probabilities(policy):
    out = {}
    for kind, s in KINDS.items():
        trace = Trace({"maxprob": s, "entropy": 2 * (1 - s), "margin": s}, 1, 30, 0)
        pre = policy.probs("pre", features(trace))
        trace.draft_logprobs, trace.draft_text = [-0.3] * 20, "x"
        draft = policy.probs("draft", features(trace))
        out[kind] = (pre, draft)
    return out


def test_training_learns_where_to_pay_and_where_to_buy_information(trained):
    policy, _, episode, kinds, target = trained
    p = probabilities(policy)
    # Before the step: draft where the small model is sure, go up where it is hopeless.
    assert p["easy"][0][0] > p["unsure"][0][0] > p["hard"][0][0] and p["hard"][0][1] > 0.5
    # After a draft: accept the sure ones, buy a verification where unsure.
    assert p["easy"][1][0] > p["unsure"][1][0] and p["unsure"][1][1] == max(p[k][1][1] for k in KINDS) and p["unsure"][1][1] > p["unsure"][1][0]
    trace = Trace({"maxprob": 0.5}, 1, 30, 0, draft_logprobs=[-0.3] * 20, draft_text="x")
    trace.verify_logprobs = [-0.05] * 20
    good = policy.probs("verified", features(trace))[0]
    trace.verify_logprobs = [-2.5] * 20
    assert good > 0.9 > 0.3 > policy.probs("verified", features(trace))[0]  # the verdict decides


def test_the_calibrated_policy_meets_the_cost_target_on_new_problems(trained):
    policy, curve, episode, kinds, target = trained
    threshold, accuracy, cost = training.calibrate(episode, 60, policy, target)
    assert cost <= target + 1e-9 and accuracy >= 0.75  # the best policy: 100% at best_cost = target - 0.02
    cost = meets_the_target_on_fresh_problems(policy, threshold)
    # Never-escalate and always-escalate are the two ends it sits between.
    fresh, _ = synthetic(200, seed=7)
    assert training.evaluate(fresh, 200, policy, 0.0)[1] < cost < training.evaluate(fresh, 200, policy, 1.0)[1]


def test_updates_every_few_problems_learn_as_much_from_a_quarter_of_the_rollouts():
    episode, kinds = synthetic(60)
    target = best_cost(kinds) + 0.02
    calls = [0]

    def counted(i, choose):
        calls[0] += 1
        return episode(i, choose)

    policy, _ = training.train(counted, 60, training.Settings(target=target, epochs=25, batch=10, seed=1))
    # At most 25 epochs x 60 problems x (1 + 3 branch points x 3 actions): a quarter of the 100 epochs `trained` needs.
    assert calls[0] <= 25 * 60 * 10
    threshold, _, _ = training.calibrate(episode, 60, policy, target)
    meets_the_target_on_fresh_problems(policy, threshold)


def test_replaying_every_branch_point_learns_from_half_the_rollouts():
    """The engines' outcomes are dear and gradient steps are not: with 30 steps
    per update over every point gathered so far, 4 epochs of one branch point
    per problem learn what 8 need without replay (README table)."""
    episode, kinds = synthetic(60)
    target = best_cost(kinds) + 0.02
    fresh, _ = synthetic(200, seed=7)

    def accuracy(replay: int, seed: int) -> float:
        policy, _ = training.train(episode, 60, training.Settings(target=target, epochs=4, batch=4, rollouts=2, replay=replay, seed=seed))
        threshold, _, _ = training.calibrate(episode, 60, policy, target)
        return training.evaluate(fresh, 200, policy, threshold)[0]

    replayed = [accuracy(30, seed) for seed in range(1, 5)]
    plain = [accuracy(0, seed) for seed in range(1, 5)]
    assert np.mean(replayed) >= 0.68 and np.mean(replayed) > np.mean(plain) + 0.1


def test_branch_points_are_kept_for_the_next_run(tmp_path):
    episode, kinds = synthetic(12)
    path = tmp_path / "points.jsonl"
    points: list = []
    training.train(episode, 12, training.Settings(target=0.5, epochs=2, batch=4, rollouts=3, replay=5), points=points, keep=training.keep_points(path))
    with path.open("a") as f:
        f.write('{"node": "pre", "x": [1')  # a run killed mid-write
    again = training.load_points(path)
    assert len(again) == len(points) > 0
    assert all(a.node == b.node and np.allclose(a.x, b.x) and np.allclose(a.outcomes, b.outcomes) for a, b in zip(again, points))


def meets_the_target_on_fresh_problems(policy, threshold) -> float:
    """200 problems never trained on: cost within 0.05 of the calibrated target, >= 70% right; returns the cost."""
    fresh, fresh_kinds = synthetic(200, seed=7)
    accuracy, cost = training.evaluate(fresh, 200, policy, threshold)
    assert cost <= best_cost(fresh_kinds) + 0.02 + 0.05 and accuracy >= 0.7
    return cost


def test_lambda_rises_while_the_policy_overspends():
    episode, kinds = synthetic(40, seed=3)
    _, curve = training.train(episode, 40, training.Settings(target=0.2, epochs=30, seed=2))
    assert curve[-1]["lambda"] > curve[0]["lambda"] and curve[-1]["cost"] < curve[0]["cost"] + 0.3


def test_a_policy_file_round_trips_and_refuses_tampering(tmp_path, trained):
    policy = trained[0]
    policy.models, policy.model_names = {"small": "a" * 64, "large": "b" * 64}, {"small": "s", "large": "l"}
    path = tmp_path / "p.json"
    policy.save(path)
    back = load(path)
    x = features(Trace({"maxprob": 0.5}, 2, 60, 1))
    assert np.allclose(back.probs("pre", x), policy.probs("pre", x), atol=1e-5) and back.threshold == pytest.approx(policy.threshold)
    body = json.loads(path.read_text())
    body["threshold"] = 0.01
    path.write_text(json.dumps(body))
    with pytest.raises(UsageError, match="changed after training"):
        load(path)
    body["features"] = body["features"][:-1]
    path.write_text(json.dumps(body))
    with pytest.raises(UsageError):
        load(path)
    path.write_text("{not json")
    with pytest.raises(UsageError, match="not readable JSON"):
        load(path)
    with pytest.raises(UsageError, match="does not exist"):
        load(tmp_path / "missing.json")


def test_a_policy_for_another_pair_is_refused():
    from steer_cli.policy import check_models

    policy = Policy(models={"small": "a" * 64, "large": "b" * 64}, model_names={"small": "s", "large": "l"})
    check_models(policy, ["a" * 64, "b" * 64], ["s", "l"])
    with pytest.raises(UsageError, match="trained for s → l"):
        check_models(policy, ["a" * 64, "c" * 64], ["s", "other"])


# -- end to end on small real models -------------------------------------------------
from typer.testing import CliRunner  # noqa: E402

from steer_cli.cli import app  # noqa: E402

runner = CliRunner()


def pair(tiny_small, smollm2_path):
    return ["--small", str(tiny_small), "--large", str(smollm2_path), "--threads", "1", "--n-ctx", "1024", "--max-steps", "3", "--max-step-tokens", "6"]


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory, tiny_small, smollm2_path):
    out = tmp_path_factory.mktemp("policy")
    args = ["policy", "train", "--data", "tests/data/math_sample.jsonl", "--limit", "3", "--target-cost", "0.6", "--cost-unit", "decode",
            "--epochs", "2", "--rollouts", "2", "--batch", "2", "-o", str(out / "p.json"), "--work", str(out / "work"), "--json", *pair(tiny_small, smollm2_path)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.stderr
    again = runner.invoke(app, args)  # every outcome is in the cache now
    return out / "p.json", json.loads(first.stdout), json.loads(again.stdout)


def test_policy_train_writes_a_validated_file_and_its_curve(policy_file):
    path, report, again = policy_file
    policy = load(path)
    assert report["n"] == 3 and report["batch"] == 2 and len(policy.training["curve"]) == 2 and 0.0 <= policy.threshold <= 1.0
    assert [u["problems"] for u in policy.training["updates"]] == [2, 3, 5, 6]  # an update every 2 problems, 2 epochs of 3
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert report["outcomes_computed"] > 0 and again["outcomes_computed"] == 0  # resumed from the cache, nothing recomputed
    assert report["points_reused"] == 0 and again["points_reused"] == report["points"] > 0  # and learned from the first run's branch points


def test_policy_train_at_its_defaults_says_how_long_it_may_take_and_keeps_to_it(tmp_path, tiny_small, smollm2_path):
    """40 epochs of 3 problems once ran past 25 minutes unannounced: the default
    bound is 1.5 minutes a problem, said before any rollout, then half that calibrating."""
    import time

    args = ["policy", "train", "--data", "tests/data/math_sample.jsonl", "--limit", "3", "--target-cost", "0.6", "--cost-unit", "decode",
            "-o", str(tmp_path / "p.json"), "--work", str(tmp_path / "work"), "--json", *pair(tiny_small, smollm2_path)]
    started = time.monotonic()
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert time.monotonic() - started < 60 * 4.5 * 1.5 + 60  # the bound, with room for loading the models
    said = [line for line in r.stderr.splitlines() if line.startswith("steer: policy training:")]
    assert said and "up to 40 epochs over 3 problems" in said[0] and "for at most 4 min (--max-minutes)" in said[0] and "at most 2 min calibrating on 3" in said[0]
    assert 1 <= json.loads(r.stdout)["epochs_run"] <= 40


def test_policy_train_in_parallel_learns_the_same_policy_whatever_n_from_the_same_outcomes(tmp_path, tiny_small, smollm2_path):
    """--parallel plays a batch's problems at once, each drawing from a seed of
    its own: from the outcomes --parallel 2 computed, --parallel 3 (lanes
    finishing in another order) computes nothing and trains the very same policy."""
    import shutil

    def train(parallel: int, work):
        args = ["policy", "train", "--data", "tests/data/math_sample.jsonl", "--limit", "4", "--target-cost", "0.6", "--cost-unit", "decode",
                "--epochs", "2", "--rollouts", "2", "--batch", "2", "--parallel", str(parallel), "-o", str(work / "p.json"), "--work", str(work),
                "--json", *pair(tiny_small, smollm2_path)]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout), load(work / "p.json")

    (tmp_path / "a").mkdir()
    first, together = train(2, tmp_path / "a")
    (tmp_path / "b").mkdir()
    for outcomes in (tmp_path / "a").glob("outcomes-*.jsonl"):
        shutil.copy(outcomes, tmp_path / "b")  # the outcomes only: no branch points to learn from beyond the run's own
    again, alone = train(3, tmp_path / "b")
    assert first["outcomes_computed"] > 0 and again["outcomes_computed"] == 0
    assert alone.threshold == together.threshold and all(np.allclose(alone.weights[k], together.weights[k]) for k in NODES)


def test_the_solver_follows_the_path_the_policy_trained_on(policy_file, tiny_small, smollm2_path):
    from steer_cli.engine import LlamaEngine, LoadOptions
    from steer_cli.rollouts import Rollouts
    from steer_cli.routes import Route
    from steer_cli.runs import solve_one
    from steer_cli.session import Session
    from steer_cli.solver import StepLimits
    from steer_cli.units import Meter

    policy = load(policy_file[0])
    policy.threshold = 0.5
    engines = [LlamaEngine(n, p, LoadOptions(n_ctx=1024, n_threads=1)) for n, p in (("s", tiny_small), ("l", smollm2_path))]
    limits = StepLimits(max_steps=3, max_step_tokens=6)
    env = Rollouts(engines, limits, Meter("decode"))
    real = Session.of(engines, Meter("decode"), limits=limits, artifacts={"policy": policy}).solver(Route("policy", 0.5))
    for problem in ("2+2?", "What is 7 times 6?"):
        episode = env.episode(problem, "4", training.deterministic(policy, 0.5))
        result = solve_one(real, problem)
        assert result.answer == episode.answer and len(result.steps) == episode.steps
        assert sum(s.tier > 0 for s in result.steps) == episode.escalated
        # The cost is relative to what the user would otherwise run: the large model alone, every step its own.
        assert env.episode(problem, "4", lambda node, x: 1 if node == "pre" else 0).cost == pytest.approx(1.0)
        computed = env.computed
        again = env.episode(problem, "4", training.deterministic(policy, 0.5))
        assert (again.answer, again.cost, again.steps) == (episode.answer, episode.cost, episode.steps) and env.computed == computed  # replayed, not recomputed


def test_ask_routes_with_the_policy_and_refuses_a_mismatched_pair(policy_file, tiny_small, smollm2_path):
    path = str(policy_file[0])
    r = runner.invoke(app, ["ask", "--router", "policy", "--policy", path, "--json", "-q", "--cost-unit", "decode", *pair(tiny_small, smollm2_path), "2+2?"])
    assert r.exit_code in (0, 1) and json.loads(r.stdout)["router"] == "policy"
    swapped = ["--small", str(smollm2_path), "--large", str(tiny_small), "--threads", "1", "--n-ctx", "1024"]
    r = runner.invoke(app, ["ask", "--router", "policy", "--policy", path, "-q", *swapped, "2+2?"])
    assert r.exit_code == 2 and "the policy was trained for" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, ["ask", "--router", "steer", "--policy", path, "2+2?"])
    assert r.exit_code == 2 and "reads no policy file" in r.stderr
    r = runner.invoke(app, ["ask", "--router", "policy", "2+2?"])
    assert r.exit_code == 2 and "--policy FILE" in r.stderr


def test_serve_routes_with_the_policy_and_refuses_a_mismatched_pair(policy_file, tiny_small, smollm2_path):
    import subprocess
    import sys

    import httpx
    from serving import free_port, wait_healthy

    path = str(policy_file[0])
    port = free_port()
    serve = [sys.executable, "-m", "steer_cli", "serve", "--policy", path, "--cost-unit", "decode"]
    swapped = subprocess.run([*serve, "--small", str(smollm2_path), "--large", str(tiny_small), "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert swapped.returncode == 2 and "the policy was trained for" in swapped.stderr and len(swapped.stderr.strip().splitlines()) == 1
    proc = subprocess.Popen([*serve, "--port", str(port), *pair(tiny_small, smollm2_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, proc)
        ask = {"messages": [{"role": "user", "content": "What is 7 times 6?"}], "temperature": 0}
        routed = httpx.post(f"{base}/v1/chat/completions", json={**ask, "model": "policy"}, timeout=60)
        assert routed.status_code == 200, routed.text
        body = routed.json()
        assert body["model"] == f"policy@{load(path).threshold:g}" and body["steer"]["steps"] and body["steer"]["cost"]["relative_cost"] > 0
        assert httpx.post(f"{base}/v1/chat/completions", json={**ask, "model": "policy@0.9"}, timeout=60).status_code == 200
        listed = [m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]]
        assert f"policy@{load(path).threshold:g}" in listed
    finally:
        proc.terminate()
        proc.wait(timeout=10)
