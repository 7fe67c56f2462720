"""The step loop and routers on scripted engines: exact decisions, hand-offs, cost."""

import pytest

from fakes import ScriptedEngine
from steer_cli.engine import Token
from steer_cli.errors import UsageError
from steer_cli.routers import make_router
from steer_cli.solver import Solver, StepFinished, StepLimits, TextDelta


def run(tiers, router, problem="two plus two?", limits=None):
    events = list(Solver(tiers, router, limits).solve(problem))
    return events, events[-1].result


def test_steer_sends_low_confidence_steps_to_the_large_model():
    small = ScriptedEngine("small", params=100, confidences=[0.9, 0.3, 0.8]).enqueue("Two plus two.\n\n", "Total 4.\n\n")
    large = ScriptedEngine("large", params=300).enqueue("Add them: 2 + 2 = 4.\n\n")
    _, result = run([small, large], make_router("steer", 0.5))
    assert [s.model for s in result.steps] == ["small", "large", "small"]
    assert [s.score for s in result.steps] == pytest.approx([0.9, 0.3, 0.8])
    assert result.answer == "4"
    assert result.finish == "eos"


def test_each_step_is_handed_to_every_other_tier_as_text():
    small = ScriptedEngine("small", confidences=[0.9, 0.1]).enqueue("A.\n\n")
    large = ScriptedEngine("large").enqueue("B = 7.\n\n")
    run([small, large], make_router("steer", 0.5))
    assert large.appended == ["A.\n\n"]
    assert small.appended == ["B = 7.\n\n"]
    assert small.transcript.endswith("A.\n\nB = 7.\n\n") and large.transcript.endswith("A.\n\nB = 7.\n\n")


def test_fixed_routers_never_consult_confidence():
    small, large = ScriptedEngine("small").enqueue("x\n\n"), ScriptedEngine("large").enqueue("y = 1\n\n")
    _, result = run([small, large], make_router("large"))
    assert [s.model for s in result.steps] == ["large"] and small.asked == 0
    small2 = ScriptedEngine("small").enqueue("z = 2\n\n")
    _, result = run([small2, ScriptedEngine("large")], make_router("small"))
    assert [s.model for s in result.steps] == ["small"] and result.answer == "2"


def test_three_tiers_escalate_one_tier_at_a_time():
    t0 = ScriptedEngine("t0", confidences=[0.2, 0.9]).enqueue("done 5\n\n")
    t1 = ScriptedEngine("t1", confidences=[0.7]).enqueue("mid 3\n\n")
    t2 = ScriptedEngine("t2")
    _, result = run([t0, t1, t2], make_router("steer", 0.5))
    assert [s.model for s in result.steps] == ["t1", "t0"]
    assert t2.asked == 0


def test_random_router_is_seeded_and_hits_its_rate():
    router_a, router_b = make_router("random", 0.3, seed=7), make_router("random", 0.3, seed=7)
    from steer_cli.routers import DecisionPoint

    point = DecisionPoint(0, 2, lambda t: None)
    a = [router_a.decide(point).tier for _ in range(2000)]
    b = [router_b.decide(point).tier for _ in range(2000)]
    assert a == b
    assert 0.26 < sum(a) / len(a) < 0.34


def test_relative_cost_compares_with_the_large_model_alone():
    small = ScriptedEngine("small", params=100).enqueue("abcd\n\n")
    large = ScriptedEngine("large", params=400)
    _, result = run([small, large], make_router("small"), problem="p")
    cost = result.cost
    small_tokens = len("Q: p\n") + len("abcd\n\n")
    assert cost.models[0].flops == 2 * 100 * small_tokens
    assert cost.large_only_flops == 2 * 400 * (len("Q: p\n") + len("abcd\n\n"))
    assert cost.relative_cost == pytest.approx(cost.flops / cost.large_only_flops, abs=1e-4)
    assert result.cost.models[1].decoded_tokens == 0


def test_steps_split_at_the_delimiter_only_after_content():
    small = ScriptedEngine("small").enqueue("\n\nfirst\n\nsecond 2\n\n")
    _, result = run([small, ScriptedEngine("large")], make_router("small"))
    assert [s.text for s in result.steps] == ["\n\nfirst\n\n", "second 2\n\n"]
    assert result.steps[0].finish == "delimiter"


def test_limits_stop_long_steps_and_long_runs():
    small = ScriptedEngine("small").enqueue("x" * 50, "y" * 50)
    _, result = run([small, ScriptedEngine("large")], make_router("small"), limits=StepLimits(max_step_tokens=10, max_steps=3))
    assert [s.tokens for s in result.steps] == [10, 10, 10]
    assert result.finish == "max_steps"
    small = ScriptedEngine("small").enqueue("x" * 50)
    _, result = run([small, ScriptedEngine("large")], make_router("small"), limits=StepLimits(max_step_tokens=20, max_tokens=25))
    assert sum(s.tokens for s in result.steps) == 25 and result.finish == "max_tokens"


def test_events_stream_in_order_and_rebuild_the_text():
    small = ScriptedEngine("small").enqueue("one 1\n\n", "two 2\n\n")
    events, result = run([small, ScriptedEngine("large")], make_router("small"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "StepStarted" and kinds[-1] == "Solved"
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed == result.text == "one 1\n\ntwo 2\n\n"
    assert sum(isinstance(e, StepFinished) for e in events) == len(result.steps) == 2


class SplitUtf8(ScriptedEngine):
    """Emits 'é' as two one-byte tokens, as byte-fallback vocabularies do."""

    def sample(self):
        if not hasattr(self, "_bytes"):
            self._bytes = list("café = 3\n\n".encode())
        if not self._bytes:
            return Token(id=0, piece=b"", logprob=0.0, eog=True)
        return Token(id=1, piece=bytes([self._bytes.pop(0)]), logprob=-0.1)


def test_partial_utf8_is_never_emitted_or_handed_off_broken():
    small, large = SplitUtf8("small"), ScriptedEngine("large")
    events, result = run([small, large], make_router("small"))
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "\ufffd" not in "".join(deltas)
    assert result.steps[0].text == "café = 3\n\n" and large.appended == ["café = 3\n\n"]


@pytest.mark.parametrize("name, kwargs", [("nope", {}), ("steer", {"threshold": 1.5}), ("steer", {"signal": "vibes"})])
def test_bad_router_settings_are_usage_errors(name, kwargs):
    with pytest.raises(UsageError):
        make_router(name, **kwargs)


class FillsContext(ScriptedEngine):
    def sample(self):
        if self.stats.decoded_tokens >= 6:  # two tokens into the second step
            from steer_cli.engine import ContextFull

            raise ContextFull("full")
        return super().sample()


def test_a_full_context_ends_the_run_and_keeps_the_partial_step():
    small = FillsContext("small").enqueue("ab\n\ncdef")
    _, result = run([small, ScriptedEngine("large")], make_router("small"))
    assert result.finish == "context"
    assert [s.text for s in result.steps] == ["ab\n\n", "cd"]


def test_small_steps_carry_free_signals_and_large_only_runs_never_ask_the_small_model():
    small = ScriptedEngine("small", confidences=[0.8, 0.3]).enqueue("a = 1\n\n")
    large = ScriptedEngine("large").enqueue("b = 2\n\n")
    _, result = run([small, large], make_router("steer", 0.5))
    assert result.steps[0].signals["maxprob"] == pytest.approx(0.8)
    assert result.steps[1].signals["maxprob"] == pytest.approx(0.3)  # the router asked: recorded too
    assert set(result.steps[0].signals) == {"maxprob", "margin", "entropy"}
    small, large = ScriptedEngine("small"), ScriptedEngine("large").enqueue("c = 3\n\n")
    _, result = run([small, large], make_router("large"))
    assert result.steps[0].signals is None and small.asked == 0
    small = ScriptedEngine("small", confidences=[0.7]).enqueue("d = 4\n\n")
    _, result = run([small, ScriptedEngine("large")], make_router("small"))
    assert result.steps[0].signals["maxprob"] == pytest.approx(0.7)
    assert small.asked == 2  # once per step start; the second start ends in EOS
