"""--max-large-tokens: never exceeded, whatever the router wants."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import ScriptedEngine
from steer_cli.budget import Budget
from steer_cli.errors import UsageError
from steer_cli.routers import make_router
from steer_cli.solver import Solved, Solver, StepLimits


def solve(tiers, router, budget, limits=None):
    return next(e.result for e in Solver(tiers, router, limits or StepLimits(max_step_tokens=12), budget).solve("p") if isinstance(e, Solved))


@settings(max_examples=150, deadline=None)
@given(
    n_tiers=st.integers(2, 3),
    steps=st.lists(st.integers(1, 11), min_size=1, max_size=8),
    confidences=st.lists(st.floats(0, 1), min_size=30, max_size=30),
    router=st.sampled_from(["large", "steer", "random"]),
    cap=st.integers(0, 40),
)
def test_the_larger_tiers_never_decode_past_the_cap(n_tiers, steps, confidences, router, cap):
    texts = ["x" * (n - 1) + "\n\n" if n > 1 else "y" for n in steps]
    tiers = [ScriptedEngine(f"t{i}", params=100 * (i + 1), confidences=list(confidences)).enqueue(*texts) for i in range(n_tiers)]
    result = solve(tiers, make_router(router, 0.5, seed=len(steps)), Budget(cap))
    assert sum(m.decoded_tokens for m in result.cost.models[1:]) <= cap
    assert sum(s.tokens for s in result.steps if s.tier > 0) <= cap
    if cap == 0:
        assert all(s.tier == 0 for s in result.steps)


def test_the_cap_cuts_the_large_step_and_the_rest_goes_small():
    small = ScriptedEngine("small", params=100).enqueue("s1 = 1\n\n", "s2 = 2\n\n")
    large = ScriptedEngine("large", params=300).enqueue("large writes a long step\n\n", "again\n\n")
    result = solve([small, large], make_router("large"), Budget(10))
    assert [s.model for s in result.steps] == ["large", "small", "small"]
    assert result.steps[0].tokens == 10 and result.steps[0].finish == "step_tokens"
    assert result.cost.models[1].decoded_tokens == 10
    assert result.budget_bound is True and result.answer == "2"


def test_an_unused_cap_does_not_bind():
    small = ScriptedEngine("small", params=100)
    large = ScriptedEngine("large", params=300).enqueue("x = 5\n\n")
    result = solve([small, large], make_router("large"), Budget(100))
    assert result.budget_bound is False and result.answer == "5"


def test_a_negative_cap_is_a_usage_error():
    with pytest.raises(UsageError):
        Budget(-1)
