"""The comparison arithmetic: the random line, gap recovered, cost error bars."""

import random

import pytest

from steer_cli.stats import Summary, add_baselines, ratio_se


def summary(config, accuracy, cost, time=None):
    return Summary(config, 100, int(accuracy * 100), accuracy, 0, 1, relative_cost=cost, cost_se=0.0, decode_cost=cost, time_cost=time, price_cost=None,
                   wall_cost=None, reference="estimated", large_decoded_per_problem=0, large_step_share=0, wall_s=0, wall_s_per_problem=0)


def outcomes(right: int, n: int = 100) -> dict[str, bool]:
    return {f"p{i}": i < right for i in range(n)}


def test_random_line_gap_recovered_and_paired_intervals():
    rows = [summary("small", 0.30, 0.35), summary("large", 0.60, 1.00), summary("cascade@0.9", 0.50, 0.675), summary("steer@0.3", 0.33, 0.99)]
    right = {"small": outcomes(30), "large": outcomes(60), "cascade@0.9": outcomes(50), "steer@0.3": outcomes(33)}
    add_baselines(rows, right)
    by = {s.config: s for s in rows}
    assert by["small"].vs_random.diff == 0 and by["large"].vs_random.diff == pytest.approx(0)
    # Half way in cost between small and large, random query routing scores 45%.
    assert by["cascade@0.9"].vs_random.diff == pytest.approx(0.05) and by["cascade@0.9"].gap_recovered == pytest.approx(2 / 3)
    assert by["steer@0.3"].vs_random.diff == pytest.approx(0.33 - (0.30 + 0.64 / 0.65 * 0.30))
    # Paired: cascade is right on a superset of small's problems, 20 more of 100.
    vs_small = by["cascade@0.9"].vs_small
    assert vs_small.diff == pytest.approx(0.20) and vs_small.low > 0.1 and vs_small.high < 0.3 and vs_small.n == 100
    assert by["steer@0.3"].vs_small.low < 0 < by["steer@0.3"].vs_small.high  # 3 more of 100: noise
    assert "[" in str(vs_small) and str(vs_small).startswith("+20.0%")


def test_the_random_line_is_drawn_in_every_unit_that_can_be_counted():
    # In time the router is cheap (the large model's reading is fast), in FLOPs it is not.
    rows = [summary("small", 0.30, 0.35, time=0.30), summary("large", 0.60, 1.00, time=1.0), summary("trim@0.5", 0.50, 1.00, time=0.5)]
    add_baselines(rows, {"small": outcomes(30), "large": outcomes(60), "trim@0.5": outcomes(50)}, unit="time")
    trim = rows[2]
    assert trim.vs_random_by_unit["flops"].diff == pytest.approx(-0.10)  # at the large model's FLOPs: 60%
    assert trim.vs_random_by_unit["time"].diff == pytest.approx(0.50 - (0.30 + 0.2 / 0.7 * 0.30))
    assert trim.vs_random is trim.vs_random_by_unit["time"] and trim.vs_random_by_unit["price"] is None


def test_no_baseline_without_small_and_large():
    rows = [summary("steer@0.3", 0.33, 0.99)]
    add_baselines(rows)
    assert rows[0].vs_random is None and rows[0].gap_recovered is None


def test_ratio_se_matches_the_spread_over_resampled_problems():
    rng = random.Random(1)
    costs = [(rng.uniform(0.3, 1.3) * y, y) for y in (rng.uniform(100, 600) for _ in range(60))]
    xs, ys = [c[0] for c in costs], [c[1] for c in costs]
    boot = []
    for _ in range(3000):
        pick = [rng.randrange(60) for _ in range(60)]
        boot.append(sum(xs[i] for i in pick) / sum(ys[i] for i in pick))
    mean = sum(boot) / len(boot)
    spread = (sum((b - mean) ** 2 for b in boot) / len(boot)) ** 0.5
    assert ratio_se(xs, ys) == pytest.approx(spread, rel=0.1)
    assert ratio_se([1.0], [2.0]) == 0.0


def test_the_time_left_after_resuming_is_the_pace_of_solving_not_of_reading_records(monkeypatch, capsys):
    import time

    from steer_cli import ui

    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with ui.Counter("eval", 20) as progress:
        for _ in range(10):
            progress.advance("small", reused=True)  # read from the records at once
        for _ in range(3):
            clock[0] += 40.0
            progress.advance("large")
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == "steer: eval 13/20 · about 5 min left · large"  # 7 to go at 40 s each, not at the 10 s a pace over all 13 says
