"""Fuzzing every parser and validator that takes user input: whatever comes
in, the answer is a value or one line on stderr with exit 1 or 2, never a
traceback, and nothing already written changes. Bounded example counts keep
it a CI test."""

import json

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from steer_cli.answers import answers_match, extract_answer
from steer_cli.cli import app
from steer_cli.session import unescape
from steer_cli.datasets import parse_rows
from steer_cli.errors import UsageError
from steer_cli.registry import load_registry

runner = CliRunner()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLI = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20), lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3), max_leaves=8)
rows = st.dictionaries(st.sampled_from(["id", "question", "problem", "prompt", "answer", "solution", "x"]), json_values, max_size=5)
lines = st.one_of(rows.map(json.dumps), st.text(max_size=40), json_values.map(json.dumps))


def assert_one_line(result):
    assert result.exit_code in (1, 2), (result.exit_code, result.stderr, result.exception)
    shown = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("steer: error: ") and "Traceback" not in result.stderr, result.stderr


@FAST
@given(st.lists(lines, max_size=8))
def test_any_problem_file_parses_to_items_or_line_numbered_errors(content):
    for item in parse_rows("\n".join(content)):
        if item.error is None:
            assert isinstance(item.question, str) and item.question.strip() and isinstance(item.id, str)
            assert item.answer is None or isinstance(item.answer, str)
        else:
            assert item.error.startswith(f"line {item.line}: ")


@FAST
@given(st.text(max_size=80), st.text(max_size=20))
def test_answer_checking_never_raises(text, gold):
    answer = extract_answer(text)
    assert answer is None or isinstance(answer, str)
    assert answers_match(answer, gold) in (True, False)


@FAST
@given(st.text(max_size=12))
def test_any_delimiter_unescapes(text):
    assert isinstance(unescape(text), str)


@FAST
@given(st.dictionaries(st.sampled_from(["models", "tiers", "defaults", "other"]), json_values, max_size=3))
@example({"models": {"\n": None}})  # found by hypothesis: a model name holding a newline split the error
def test_any_models_yaml_loads_or_is_one_usage_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "models.yaml"
    path.write_text(yaml.safe_dump(content))
    try:
        load_registry(path)
    except UsageError as exc:
        assert "\n" not in str(exc)


numbers = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "1e9", "-0", "0.5", ""]))


@CLI
@given(st.sampled_from(["small", "large", "steer", "trim", "cascade", "random", "nope"]), numbers, numbers, st.one_of(st.none(), st.floats(-2, 2)),
       st.one_of(st.none(), st.sampled_from(["entropy", "verify", "answer", "bad"])), st.text(max_size=4))
def test_any_ask_options_end_in_one_line(router, steps, step_tokens, threshold, signal, delimiter):
    args = ["ask", "2+2?", "--router", router, "--max-steps", str(steps), "--max-step-tokens", str(step_tokens), "--delimiter", delimiter or "\\n", "--small", "/nonexistent.gguf"]
    if threshold is not None:
        args += ["--threshold", str(threshold)]
    if signal is not None:
        args += ["--signal", signal]
    assert_one_line(runner.invoke(app, args))


@CLI
@given(st.lists(lines, min_size=1, max_size=5))
def test_any_batch_input_leaves_an_existing_output_unchanged(tmp_path_factory, content):
    folder = tmp_path_factory.mktemp("batch")
    src, out = folder / "in.jsonl", folder / "out.jsonl"
    src.write_text("\n".join(content) + "\n")
    done = json.dumps({"id": "old", "key": "old:0", "problem": "kept", "steps": []}) + "\n"
    out.write_text(done)
    result = runner.invoke(app, ["batch", str(src), "-o", str(out), "-q", "--strict", "--small", "/nonexistent.gguf"])
    if result.exit_code != 0:
        assert_one_line(result)
    assert out.read_text() == done
