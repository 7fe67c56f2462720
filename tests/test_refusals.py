"""The cases a user's probing found (issue 31): each refused before a model
runs, in one line naming the problem and the fix, or said where it was silent.
Every model path here is one that does not exist, so a refusal that came too
late would show up as "model file not found" instead."""

import json
import math
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.main import get_command
from typer.testing import CliRunner

from steer_cli.cli import app

runner = CliRunner()
MISSING = ["--small", "/nonexistent-small.gguf", "--large", "/nonexistent-large.gguf"]


def one_line(result, code: int = 2) -> str:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("steer: error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# 1. a busy port is said before any model loads, in one line, exit 1
def test_serve_on_a_busy_port_says_so_before_loading():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        line = one_line(runner.invoke(app, ["serve", "--port", str(port), *MISSING]), code=1)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "--port" in line


# 2. a P(IK) file's own bad threshold is harmless when a threshold is named
def pik_file(tmp_path, threshold: float):
    from steer_cli import pik as pk

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2 * 8 + len(pk.EXTRAS)))
    model = pk.train(x, (x[:, 0] > 0).astype(float), np.zeros(40, dtype=bool), "tiny", "0" * 64, 0.1, [f"k{i}" for i in range(40)])
    path = model.save(tmp_path / "pik.json")
    body = json.loads(path.read_text())
    body["threshold"] = threshold
    path.write_text(json.dumps(body))
    return path


def test_a_nan_pik_threshold_is_refused_only_where_it_would_be_used(tmp_path):
    path = pik_file(tmp_path, math.nan)
    used = runner.invoke(app, ["ask", "2+2?", "--router", "steer", "--pik", str(path), *MISSING])
    assert "threshold nan is outside [0, 1]" in one_line(used) and "--pik-threshold" in used.stderr
    named = runner.invoke(app, ["ask", "2+2?", "--router", "steer", "--pik", str(path), "--pik-threshold", "0.5", *MISSING])
    assert "model file not found" in one_line(named, code=1)  # past every check: only the missing model stops it


# 3. calibrate's options are checked before its long run starts
@pytest.mark.parametrize("extra, says", [
    (["--tolerance", "-1"], "--tolerance -1 is outside (0, 1)"),
    (["--tolerance", "nan"], "--tolerance nan"),
    (["--max-rounds", "0"], "--max-rounds 0"),
    (["--limit", "0"], "--limit 0"),
    (["--heldout-limit", "-3"], "--heldout-limit -3"),
])
def test_calibrate_refuses_bad_numbers_at_once(extra, says):
    assert says in one_line(runner.invoke(app, ["calibrate", "--target-cost", "0.5", "--dry-run", *extra, *MISSING]))


def _numeric_options() -> list[tuple[list[str], str, bool]]:
    """(command path, option flag, is float) for every number any command takes."""
    found = []

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        for param in getattr(command, "params", []):
            kind = param.type_descriptor.annotation  # typer's own record of the parameter's Python type
            if param.param_type_name == "option" and kind in (int, float):
                found.append((path, param.opts[0], kind is float))

    walk(get_command(app), [])
    return found


REQUIRED = {("ask",): ["2+2?"], ("batch",): ["-"], ("calibrate",): ["--target-cost", "0.5"], ("policy", "train"): ["--target-cost", "0.5"],
            ("bench",): ["/nonexistent-small.gguf"]}
NUMERIC = _numeric_options()


def test_the_numeric_options_are_all_found():
    flags = {(tuple(path), flag) for path, flag, _ in NUMERIC}
    assert {(("calibrate",), "--tolerance"), (("serve",), "--port"), (("ask",), "--seed"), (("policy", "train"), "--max-minutes"), (("pik", "train"), "--limit")} <= flags
    assert len(NUMERIC) > 60


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NUMERIC), st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-6, allow_infinity=False), st.just(math.nan)))
def test_every_numeric_option_refuses_a_negative_or_nan_before_any_model_loads(option, value):
    path, flag, is_float = option
    if not is_float and not (isinstance(value, int)):
        value = -1 if math.isnan(value) else math.floor(value)
    models = [] if path == ["bench"] else MISSING
    r = runner.invoke(app, [*path, *REQUIRED.get(tuple(path), []), flag, str(value), *models], input="")
    line = one_line(r)
    assert "model file not found" not in line


# 4. a route that does not parse exactly is refused, not filled in
@pytest.mark.parametrize("routes, says", [
    ("steer@", "threshold '' is not a number"),
    ("small:entropy", "reads no signal"),
    ("steer@0.5x", "is not a number"),
    ("steer,,large", "empty entry"),
    ("steer@0.4@0.5", "does not parse"),
    ("trim:verify@0.8+pik@", "P(IK) threshold '' is not a number"),
])
def test_a_route_that_does_not_parse_exactly_is_refused(routes, says):
    assert says in one_line(runner.invoke(app, ["eval", "--routers", routes, "--limit", "1", *MISSING]))


# 5. a raw U+2028 inside a JSON string is one row, not two
def test_a_row_holding_a_raw_line_separator_is_read_whole(tmp_path):
    from steer_cli import datasets, runs

    row = json.dumps({"id": "a", "question": "Line one\u2028line two: what is 2+2?", "answer": "4"}, ensure_ascii=False)
    path = tmp_path / "p.jsonl"
    path.write_text(row + "\n", encoding="utf-8")
    (item,) = datasets.problems(str(path), need_gold=True)
    assert item.error is None and "\u2028" in item.question
    out = tmp_path / "results.jsonl"
    out.write_text(json.dumps({"id": "a", "key": "k", "steps": [], "text": "x\u2028y"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert list(runs.read_done(out)) == ["k"]


# 6. an empty delimiter is defined, and said before the run
@pytest.mark.slow
def test_an_empty_delimiter_means_fixed_size_steps_and_says_so(tiny_small, tiny_large):
    r = runner.invoke(app, ["ask", "2+2?", "--delimiter", "", "--max-steps", "2", "--max-step-tokens", "5", "--small", str(tiny_small),
                            "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512", "--router", "small", "--json"])
    assert "every step is 5 tokens" in r.stderr
    steps = json.loads(r.stdout)["steps"]
    assert all(s["tokens"] == 5 for s in steps if s["finish"] == "step_tokens") and steps


# 7. a batch line that outgrows the context is said, and the batch exits 1
@pytest.mark.slow
def test_batch_says_when_a_problem_outgrows_the_context(tiny_small, tiny_large, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"id": "long", "question": "word " * 400}) + "\n")
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "256"])
    assert r.exit_code == 1
    assert "long: the solution outgrew the context window" in r.stderr and "1 out of context" in r.stderr
    assert json.loads(out.read_text())["finish"] == "context"


# 8. an empty batch is refused like an empty eval
@pytest.mark.parametrize("source", ["file", "stdin"])
def test_an_empty_batch_is_refused(tmp_path, source):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args = ["batch", str(empty)] if source == "file" else ["batch", "-"]
    assert "no problems in it" in one_line(runner.invoke(app, [*args, *MISSING], input=""))


# 9. an --out that cannot be written is found first
def test_eval_checks_out_before_solving(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line(runner.invoke(app, ["eval", "--routers", "small", "--limit", "1", "--out", str(blocker / "sub"), *MISSING]))
    assert "cannot be written" in line


# 10. price without prices: said from the config, before measuring anything
def test_calibrate_in_price_without_prices_is_refused_before_any_model_loads():
    line = one_line(runner.invoke(app, ["calibrate", "--target-cost", "0.5", "--cost-unit", "price", "--dry-run", *MISSING]))
    assert "bills nothing" in line and "price:" in line


# 11. the parameter count is read once per file
def test_the_parameter_count_is_cached(tiny_small, monkeypatch):
    import gguf

    from steer_cli.engine import gguf_param_count

    first = gguf_param_count(tiny_small)
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a, **k: pytest.fail("read the GGUF again"))
    assert gguf_param_count(tiny_small) == first > 0


# 12. a cost unit that cannot be priced yet is said, with why
@pytest.mark.slow
def test_ask_says_why_costs_are_not_in_time(tiny_small, tiny_large):
    r = runner.invoke(app, ["ask", "2+2?", "--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512",
                            "--max-steps", "2", "--max-step-tokens", "4", "--router", "small"])
    assert "relative cost in flops, not time: no machine profile" in r.stderr and "steer bench" in r.stderr


# 13. a profile measured while the machine was busy is not kept
def test_a_noisy_profile_is_remeasured_then_refused(tiny_small, monkeypatch):
    from steer_cli import profile
    from steer_cli.engine import LlamaEngine, LoadOptions

    calls = []

    def busy(engine, problems, tick=lambda: None):
        calls.append(1)
        return {"prefill": [90.0, 88.0, 91.0], "decode": [40.0, 3.2, 39.0], "score": [60.0, 61.0, 59.0],
                "seconds": {"prefill": [1.0] * 3, "decode": [2.4, 30.0, 2.5], "score": [1.0] * 3}}

    monkeypatch.setattr(profile, "timed_rates", busy)
    engine = LlamaEngine("tiny", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    said = []
    found = profile.for_engines([engine], ["a", "b", "c", "d"], say=said.append)
    assert found == {} and len(calls) == 2
    assert any("measured unsteadily (decode 3.2-40.0 tok/s" in line for line in said)
    assert profile.noisy({"decode": [40.0, 38.0], "seconds": {"decode": [2.0, 2.1]}}) is None
    assert profile.noisy({"decode": [400.0, 38.0], "seconds": {"decode": [0.01, 0.1]}}) is None  # too short to judge


# 16. wording that pointed at the wrong place
def test_calibrate_hint_names_a_command_that_takes_the_small_model():
    from steer_cli import calibrate as cal
    from steer_cli.errors import UsageError

    with pytest.raises(UsageError) as err:
        cal.search(lambda t: None, target=0.1, floor=0.5, to_threshold=lambda f: f)
    assert "ask/batch --router small" in str(err.value)


def test_bench_of_a_directory_says_it_is_a_directory(tmp_path):
    assert "is a directory, not a model file" in one_line(runner.invoke(app, ["bench", str(tmp_path)]), code=1)


def test_bench_refuses_a_bad_parallel_before_looking_up_a_model():
    """Found by the property test above: --parallel was checked after the models were looked up."""
    line = one_line(runner.invoke(app, ["bench", "/nonexistent-small.gguf", "--parallel", "-1"]))
    assert "--parallel" in line and "model file not found" not in line
