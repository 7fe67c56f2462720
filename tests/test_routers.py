"""TRIM and the confidence cascade on scripted engines: exact decisions and costs."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from fakes import ScriptedEngine
from steer_cli.errors import SteerError, UsageError
from steer_cli.registry import Defaults
from steer_cli.routers import make_router
from steer_cli.routes import Route, build, fill
from steer_cli.solver import Discarded, Solver, StepLimits, answer_confidence


def run(tiers, router, problem="two plus two?", budget=None):
    events = list(Solver(tiers, router, StepLimits(), budget).solve(problem))
    return events, events[-1].result


# -- TRIM -------------------------------------------------------------------
def test_trim_self_keeps_likely_drafts_and_has_weak_ones_rewritten():
    # Draft 1 at p=0.9 is kept; draft 2 at p=0.2 is discarded and the large model rewrites it.
    small = ScriptedEngine("small", params=100, token_probs=[0.9, 0.2, 0.9]).enqueue("Two and two.\n\n", "So 5?\n\n", "\\boxed{4}")
    large = ScriptedEngine("large", params=300).enqueue("Sum is 4.\n\n")
    events, result = run([small, large], make_router("trim", 0.5, "self"))
    assert [s.model for s in result.steps] == ["small", "large", "small"]
    assert [d.text for d in result.drafts] == ["So 5?\n\n"]
    assert result.steps[1].score == pytest.approx(0.2)
    assert [type(e).__name__ for e in events].count("Discarded") == 1
    # The discarded draft never reached the large model, and the small model no longer holds it.
    assert large.appended == ["Two and two.\n\n", "\\boxed{4}"]
    assert "So 5?" not in small.transcript and small.transcript.endswith("Sum is 4.\n\n\\boxed{4}")
    # Its tokens still count in the cost.
    assert result.cost.models[0].decoded_tokens == len("Two and two.\n\n") + len("So 5?\n\n") + len("\\boxed{4}")
    assert result.answer == "4"


def test_trim_min_scorer_reads_the_weakest_token():
    small = ScriptedEngine("small", token_probs=[0.6]).enqueue("x = 1\n\n")
    large = ScriptedEngine("large").enqueue("y = 2\n\n")
    _, mean = run([small, large], make_router("trim", 0.55, "self"))
    assert [s.model for s in mean.steps] == ["small"]
    small = ScriptedEngine("small", token_probs=[0.6]).enqueue("x = 1\n\n")
    _, minimum = run([small, ScriptedEngine("large").enqueue("y = 2\n\n")], make_router("trim", 0.61, "self-min"))
    assert [s.model for s in minimum.steps] == ["large"]


def test_trim_verify_asks_the_next_tier_to_score_without_decoding():
    small = ScriptedEngine("small", params=100).enqueue("a = 3\n\n", "b = 9\n\n")
    large = ScriptedEngine("large", params=300, verify_probs=[0.8, 0.1]).enqueue("b = 6\n\n")
    _, result = run([small, large], make_router("trim", 0.5, "verify"))
    assert [s.model for s in result.steps] == ["small", "large"]
    assert large.scored == ["a = 3\n\n", "b = 9\n\n"]
    # The accepted draft was read once (by scoring), not appended again; the rejected one was rewound.
    assert large.appended == ["a = 3\n\n", "b = 9\n\n"] and large.transcript.endswith("a = 3\n\nb = 6\n\n")
    assert result.cost.models[1].decoded_tokens == len("b = 6\n\n")
    assert result.answer == "6"


def test_trim_escalates_one_tier_at_a_time_over_three_tiers():
    t0 = ScriptedEngine("t0", token_probs=[0.1]).enqueue("guess 1\n\n")
    t1 = ScriptedEngine("t1", token_probs=[0.3]).enqueue("guess 2\n\n")
    t2 = ScriptedEngine("t2").enqueue("exact 3\n\n")
    events, result = run([t0, t1, t2], make_router("trim", 0.5, "self"))
    assert [s.model for s in result.steps] == ["t2"]
    assert [d.model for d in result.drafts] == ["t0", "t1"]
    assert [e.to_tier for e in events if isinstance(e, Discarded)] == [1, 2]
    assert result.answer == "3"


def test_trim_prm_scores_over_http(monkeypatch):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            reply = json.dumps({"score": 0.9 if "4" in body["step"] else 0.1}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STEER_PRM_URL", f"http://127.0.0.1:{server.server_port}/score")
    router = make_router("trim", 0.5, "prm")  # the endpoint comes from the environment, as for users
    small = ScriptedEngine("small").enqueue("2 + 2 = 4\n\n", "so 5\n\n")
    large = ScriptedEngine("large").enqueue("\\boxed{4}")
    _, result = run([small, large], router, problem="two plus two?")
    server.shutdown()
    assert [s.model for s in result.steps] == ["small", "large"]
    assert len(seen) == 2 and seen[0]["step"] == "2 + 2 = 4\n\n"
    assert seen[1] == {"problem": "two plus two?", "previous_steps": ["2 + 2 = 4\n\n"], "step": "so 5\n\n"}


def test_trim_prm_without_an_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("STEER_PRM_URL", raising=False)
    with pytest.raises(UsageError, match="STEER_PRM_URL"):
        make_router("trim", 0.5, "prm")
    router = make_router("trim", 0.5, "self")
    router.signal, router.prm_url = "prm", "http://127.0.0.1:9/score"
    with pytest.raises(SteerError, match="unreachable"):
        run([ScriptedEngine("s").enqueue("x\n\n"), ScriptedEngine("l")], router)


# -- cascade ----------------------------------------------------------------
def test_cascade_keeps_a_confident_small_answer():
    small = ScriptedEngine("small", token_probs=[0.5, 0.95]).enqueue("2 + 2 is four.\n\n", "\\boxed{4}")
    large = ScriptedEngine("large", params=300).enqueue("\\boxed{4}")
    _, result = run([small, large], make_router("cascade", 0.9))
    assert [s.model for s in result.steps] == ["small", "small"]
    assert result.answer_confidence == pytest.approx(0.95)  # one answer token ("4") at p=0.95
    assert result.cost.models[1].decoded_tokens == 0 and result.cost.models[1].evaluated_tokens == 0


def test_cascade_escalates_through_three_tiers_on_low_answer_confidence():
    t0 = ScriptedEngine("t0", token_probs=[0.3]).enqueue("\\boxed{12}")  # P(T) = 0.3^2
    t1 = ScriptedEngine("t1", token_probs=[0.8]).enqueue("\\boxed{13}")  # 0.64
    t2 = ScriptedEngine("t2", token_probs=[0.9]).enqueue("\\boxed{14}")
    events, result = run([t0, t1, t2], make_router("cascade", 0.7))
    assert result.answer == "14" and [s.model for s in result.steps] == ["t2"]
    assert [d.model for d in result.drafts] == ["t0", "t1"]
    scores = [e.score for e in events if isinstance(e, Discarded)]
    assert scores == pytest.approx([0.09, 0.64])
    # No tier ever saw another's answer: each solved the problem alone.
    assert t1.appended == [] and t2.appended == []


def test_answer_confidence_is_the_joint_probability_of_the_answer_tokens():
    small = ScriptedEngine("small", token_probs=[0.9, 0.5]).enqueue("Half of 60 is 30.\n\n", "\\boxed{30}")
    _, result = run([small, ScriptedEngine("large")], make_router("small"))
    assert answer_confidence(result.steps) == pytest.approx(0.25)
    _, none = run([ScriptedEngine("s").enqueue("no idea\n\n"), ScriptedEngine("l")], make_router("small"))
    assert none.answer is None and none.answer_confidence is None


def test_unknown_signal_for_a_router_names_the_choices():
    with pytest.raises(UsageError, match="self, self-min, verify"):
        make_router("trim", 0.5, "entropy")


def test_a_route_takes_what_was_left_unnamed_from_the_config_and_says_so():
    defaults = Defaults(thresholds={"steer": 0.14}, signals={"steer": "entropy"})
    assert fill(Route("steer"), defaults, {}).label == "steer:entropy@0.14"
    assert fill(Route("steer", 0.3, "margin"), defaults, {}).label == "steer:margin@0.3"  # named beats configured
    assert fill(Route("trim"), defaults, {}).label == "trim:self@0.5"  # nothing configured: the router's own default
    assert fill(Route("large"), defaults, {}).label == "large"
    with pytest.raises(UsageError, match="has no threshold"):  # fixed routers read nothing: said, not dropped
        fill(Route("large", 0.9, "entropy"), defaults, {})
    assert build(fill(Route("steer"), defaults, {}), {}).threshold == 0.14


class Says(ScriptedEngine):
    """Answers every problem with one step naming itself."""

    def start(self, problem):
        super().start(problem)
        self.queue = [f"{self.name} says \\boxed{{1}}"]


def test_mix_sends_a_fixed_share_of_whole_queries_to_the_top_tier_by_their_hash():
    from steer_cli.routers import mix_draw, spec
    from steer_cli.runs import solve_one
    from steer_cli.session import Session

    session = Session.of([Says("small"), Says("large")])
    route = session.route(Route("mix", 0.3))
    assert route.label == "mix@0.3"
    solver = session.solver(route)
    problems = [f"problem {i}" for i in range(300)]
    results = [solve_one(solver, p) for p in problems]
    for problem, result in zip(problems, results, strict=True):
        (tier,) = {s.tier for s in result.steps}  # one model writes the whole solution
        assert tier == (1 if mix_draw(problem) < 0.3 else 0)
        assert result.cost.models[1 - tier].decoded_tokens == 0  # the other never worked on it
        record = {"problem": problem, "steps": [vars(s) for s in result.steps]}
        assert spec("mix").stays_small(None, 0.3, record) == (tier == 0)  # what calibration predicts, without a run
    share = sum(r.steps[0].tier for r in results) / len(results)
    assert 0.22 < share < 0.38
    again = [solve_one(Session.of([Says("small"), Says("large")]).solver(route), p).steps[0].tier for p in problems[:20]]
    assert again == [r.steps[0].tier for r in results[:20]]  # reproducible: the same queries go up every run


def test_the_live_view_says_a_mixed_query_went_to_the_top_tier():
    from steer_cli.ui import render_discarded

    assert "mix draw 0.12: tier 2 solves the problem alone" in render_discarded(Discarded([], 0.12, 1, "mix")).plain
    assert "P(IK) 0.12: tier 1 skipped" in render_discarded(Discarded([], 0.12, 1, "pik")).plain
