"""Cost units (time, decode, flops, price), budgets in each, and the loop guard."""

import pytest

from fakes import ScriptedEngine
from steer_cli.budget import Budget
from steer_cli.errors import UsageError
from steer_cli.profile import Profile
from steer_cli.registry import Price
from steer_cli.routers import make_router
from steer_cli.solver import Solved, Solver, StepLimits
from steer_cli.units import Meter, rates


def profile(name: str, prefill: float, decode: float, score: float) -> Profile:
    return Profile(name, "0" * 64, 2, 0, "x", prefill, decode, score, 0.0)


def solve(tiers, router, budget=None, meter=None, limits=None):
    solver = Solver(tiers, router, limits or StepLimits(max_step_tokens=12), budget, meter)
    return next(e.result for e in solver.solve("p") if isinstance(e, Solved))


def test_every_cost_block_carries_every_unit_it_can_count():
    small = ScriptedEngine("small", params=100).enqueue("a = 1\n\n", "b = 2\n\n")
    large = ScriptedEngine("large", params=400).enqueue("the answer is 2")
    meter = Meter("time", {"small": profile("small", 100, 20, 50), "large": profile("large", 50, 10, 25)})
    result = solve([small, large], make_router("steer", 0.5), meter=meter)
    c = result.cost
    assert set(c.relative) == {"time", "decode", "flops", "price"} and c.relative["price"] is None  # no prices
    assert c.unit == "time" and c.relative_cost == c.relative["time"]
    assert c.relative["flops"] == pytest.approx(c.flops / c.large_only_flops, abs=1e-3)


def test_decode_units_count_writing_only_and_price_bills_both_ways():
    r = rates("decode", 1000)
    assert (r.prefill, r.decode) == (0.0, 2000.0)
    p = rates("price", 1000, Price(input_per_m=1.0, output_per_m=4.0))
    assert p.prefill == pytest.approx(1e-6) and p.decode == pytest.approx(4e-6)
    assert rates("time", 1000) is None and rates("price", 1000) is None  # no profile, no price: not computable


def test_a_budget_in_decode_units_lets_a_late_large_tier_read_for_free():
    def run(unit):
        small = ScriptedEngine("small", params=100).enqueue(*["x" * 20 + "\n\n"] * 3, "the answer is 3")
        large = ScriptedEngine("large", params=400).enqueue("L" * 30 + "\n\n", "M" * 30 + "\n\n")
        return solve([small, large], make_router("large"), Budget(relative=0.5, reference_tokens=40, unit=unit))

    flops, decode = run("flops"), run("decode")
    (f,), (d,) = flops.cost.budget, decode.cost.budget
    assert f["unit"] == "flops" and d["unit"] == "decode" and f["spent"] <= f["cap"] and d["spent"] <= d["cap"]
    large_tokens = [sum(s.tokens for s in r.steps if s.tier == 1) for r in (flops, decode)]
    assert large_tokens[1] > large_tokens[0]  # reading the prompt costs nothing in decode units


def test_a_budget_in_time_needs_a_profile_and_says_how_to_get_one():
    small, large = ScriptedEngine("small"), ScriptedEngine("large")
    with pytest.raises(UsageError, match="needs a profile for large") as err:
        Solver([small, large], make_router("large"), budget=Budget(relative=0.5, unit="time"))
    assert "steer bench" in err.value.fix
    with pytest.raises(UsageError, match="unknown cost unit"):
        Budget(relative=0.5, unit="furlongs")


def test_a_budget_in_time_caps_the_seconds_the_profile_predicts():
    small = ScriptedEngine("small", params=100).enqueue(*["s" * 10 + "\n\n"] * 4, "the answer is 4")
    large = ScriptedEngine("large", params=400).enqueue(*["L" * 30 + "\n\n"] * 4)
    meter = Meter("time", {"small": profile("small", 100, 20, 50), "large": profile("large", 50, 10, 25)})
    result = solve([small, large], make_router("large"), Budget(relative=0.4, reference_tokens=40, unit="time"), meter)
    (report,) = result.cost.budget
    assert report["unit"] == "time" and 0 < report["spent"] <= report["cap"] and result.budget_bound


def test_a_looping_step_is_stopped_and_recorded():
    loop = "the same words again " * 30
    small = ScriptedEngine("small").enqueue("first step\n\n", loop + "\n\n")
    result = solve([small], make_router("small"), limits=StepLimits(max_step_tokens=2000))
    assert result.finish == "repetition" and result.steps[-1].finish == "repetition"
    assert result.steps[-1].tokens < len(loop)  # cut as soon as the loop showed, not at the cap


def test_a_repeated_step_ends_the_solution():
    step = "We add the two numbers together to get 12.\n\n"
    small = ScriptedEngine("small").enqueue(step, "Then we check it.\n\n", step, step, step)
    result = solve([small], make_router("small"), limits=StepLimits(max_step_tokens=100))
    assert result.finish == "repetition" and len(result.steps) == 3 and result.answer is None


def test_the_guard_can_be_turned_off():
    step = "We add the two numbers together to get 12.\n\n"
    small = ScriptedEngine("small").enqueue(step, step, "the answer is 12")
    result = solve([small], make_router("small"), limits=StepLimits(max_step_tokens=100, stop_repetition=False))
    assert result.finish != "repetition"


def test_a_price_budget_on_free_local_models_is_refused_in_one_line():
    small, large = ScriptedEngine("small"), ScriptedEngine("large")
    small.price = large.price = Price(input_per_m=0, output_per_m=0)
    with pytest.raises(UsageError, match="bills nothing"):
        Solver([small, large], make_router("large"), budget=Budget(relative=0.5, unit="price"))
    large.price = Price(input_per_m=0.1, output_per_m=0.4)
    solve([small.__class__("small").enqueue("the answer is 1"), large], make_router("small"), Budget(relative=0.5, unit="price"))
