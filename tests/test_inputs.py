"""Bad input gets one line naming the problem and the fix, a non-zero exit,
and loses nothing already done: the cases users really hit, each reproduced."""

import json
import math

import pytest
from typer.testing import CliRunner

from fakes import ScriptedEngine
from steer_cli.cli import app
from steer_cli.session import unescape
from steer_cli.datasets import parse_rows
from steer_cli.routers import make_router
from steer_cli.solver import Solved, Solver, StepLimits

runner = CliRunner()


def models(tiny_small, tiny_large):
    return ["--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512"]


def one_line_error(result, code=2):
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("steer: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# 1. -o on a file that is not ours is refused before it is touched
@pytest.mark.parametrize("content", [b"my notes, no newline", b"a\nb\nc", b'{"name": "x"}\n{"name": "y"}\n', b'{"name": "x"}'])
def test_a_foreign_output_file_is_refused_untouched(tmp_path, content):
    src, out = tmp_path / "in.jsonl", tmp_path / "notes.txt"
    src.write_text('{"question": "2+2?"}\n')
    out.write_bytes(content)
    line = one_line_error(runner.invoke(app, ["batch", str(src), "-o", str(out), "--small", "/nonexistent.gguf"]))
    assert "is not a steer result file" in line
    assert out.read_bytes() == content


# 4. -o naming the input file, or a directory
def test_output_cannot_be_the_input_or_a_directory(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"question": "2+2?"}\n')
    assert "is the input file" in one_line_error(runner.invoke(app, ["batch", str(src), "-o", str(src)]))
    assert src.read_text() == '{"question": "2+2?"}\n'
    assert "is a directory" in one_line_error(runner.invoke(app, ["batch", str(src), "-o", str(tmp_path), "--small", "/nonexistent.gguf"]))


# 2. and 3. resume by content; error records are retried
def test_resume_is_by_content_and_retries_errors(tmp_path, tiny_small, tiny_large):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    args = ["batch", str(src), "-o", str(out), "-q", "--max-steps", "1", "--max-step-tokens", "2", *models(tiny_small, tiny_large)]
    src.write_text('{"question": "What is 1+1?"}\n{"question": "What is 2+2?"}\nnot json\n')
    assert runner.invoke(app, args).exit_code == 1  # the malformed line failed
    first = {r["problem"]: r for r in read(out) if "problem" in r}
    # A question inserted at the top, the malformed line fixed:
    src.write_text('{"question": "What is 9+9?"}\n{"question": "What is 1+1?"}\n{"question": "What is 2+2?"}\n{"question": "What is 3+3?"}\n')
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    solved = [rec for rec in read(out) if "problem" in rec]
    assert sorted(rec["problem"] for rec in solved) == ["What is 1+1?", "What is 2+2?", "What is 3+3?", "What is 9+9?"]  # each once
    by = {rec["problem"]: rec for rec in solved}
    assert by["What is 1+1?"] == first["What is 1+1?"]  # reused, not re-solved or misattributed
    assert len({rec["id"] for rec in solved}) == 4


# 5. no answer reached: say why, exit non-zero; never a truncated number
def test_context_overflow_says_so_and_exits_1(tiny_small, tiny_large):
    problem = "word " * 2000
    r = runner.invoke(app, ["ask", problem, "-q", "--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "256"])
    assert r.exit_code == 1 and r.stdout == ""
    assert "context window" in r.stderr and "Traceback" not in r.stderr


def test_a_solution_cut_off_mid_sentence_has_no_answer():
    small = ScriptedEngine("s").enqueue("1. First, we count")
    result = next(e.result for e in Solver([small], make_router("small"), StepLimits(max_steps=1, max_step_tokens=5)).solve("q") if isinstance(e, Solved))
    assert result.finish != "eos" and result.answer is None
    done = ScriptedEngine("s").enqueue("so the total is 12")
    result = next(e.result for e in Solver([done], make_router("small")).solve("q") if isinstance(e, Solved))
    assert result.finish == "eos" and result.answer == "12"


# 6. delimiters
@pytest.mark.parametrize("typed, meant", [("\\n\\n", "\n\n"), ("\\", "\\"), ("。", "。"), ("\\t", "\t"), ("a\\\\nb", "a\\nb"), ("é\\n", "é\n"), ("\\q", "\\q")])
def test_delimiter_escapes_keep_unicode(typed, meant):
    assert unescape(typed) == meant


# 7. non-UTF-8 input anywhere
def test_non_utf8_inputs_are_one_line(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"question": "caf\xe9"}\n'.encode("latin-1"))
    assert "not UTF-8" in one_line_error(runner.invoke(app, ["batch", str(bad), "--small", "/nonexistent.gguf"]))
    assert "not UTF-8" in one_line_error(runner.invoke(app, ["eval", "--data", str(bad), "--routers", "small", "--small", "/nonexistent.gguf"]))
    assert "not UTF-8" in one_line_error(runner.invoke(app, ["ask", "-", "--small", "/nonexistent.gguf"], input="caf\xe9".encode("latin-1")))
    assert "not UTF-8" in one_line_error(runner.invoke(app, ["batch", "-", "--small", "/nonexistent.gguf"], input=b'{"question": "caf\xe9"}\n'))
    config = tmp_path / "models.yaml"
    config.write_bytes("defaults: {router: caf\xe9}\n".encode("latin-1"))
    assert "not UTF-8" in one_line_error(runner.invoke(app, ["ask", "2+2?", "--config", str(config)]))


# 8. options validated before any model loads (a missing model would say so otherwise)
@pytest.mark.parametrize(
    "args, says",
    [
        (["ask", "2+2?", "--max-steps", "0"], "--max-steps 0"),
        (["ask", "2+2?", "--max-steps", "-3"], "--max-steps -3"),
        (["ask", "2+2?", "--max-step-tokens", "0"], "--max-step-tokens 0"),
        (["ask", "2+2?", "--router", "small", "--signal", "nosuch"], "reads no signal"),
        (["ask", "2+2?", "--router", "large", "--threshold", "0.3"], "has no threshold"),
        (["ask", "2+2?", "--router", "steer", "--signal", "nosuch"], "has no signal 'nosuch'"),
        (["ask", "2+2?", "--router", "steer", "--threshold", "1.5"], "outside [0, 1]"),
        (["ask", "2+2?", "--threads", "0"], "--threads 0"),
        (["ask", "2+2?", "--temperature", "-1"], "--temperature"),
        (["ask", "2+2?", "--router", "large", "--pik-threshold", "0.2"], "does not read P(IK)"),
        (["ask", "2+2?", "--router", "steer", "--pik-threshold", "0.2"], "--pik-threshold needs a P(IK) classifier"),
        (["batch", "-", "--max-step-tokens", "0"], "--max-step-tokens 0"),
        (["eval", "--limit", "0"], "--limit 0"),
        (["eval", "--routers", "small,trim:nosuch@0.5"], "has no signal 'nosuch'"),
        (["eval", "--routers", "small,steer@2"], "outside [0, 1]"),
        (["eval", "--routers", "small+pik@0.2"], "does not read P(IK)"),
        (["eval", "--routers", "small,steer+pik@0.2"], "needs a P(IK) classifier"),
        (["eval", "--routers", "small,cascade+pik@0.2"], "needs a P(IK) classifier"),
        (["ask", "2+2?", "--router", "cascade", "--pik", "/nonexistent/pik.json"], "P(IK) file not found"),
    ],
)
def test_bad_options_are_refused_before_any_model_loads(args, says):
    r = runner.invoke(app, [*args, "--small", "/nonexistent.gguf"], input="")
    assert says in one_line_error(r)


# 9. eval --out naming a file; models verify under a path source
def test_eval_out_naming_a_file_is_refused_before_running(tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("keep me")
    assert "is a file" in one_line_error(runner.invoke(app, ["eval", "--routers", "small", "--out", str(out), "--small", "/nonexistent.gguf"]))
    assert out.read_text() == "keep me"


def test_models_verify_checks_a_path_source_and_leaves_no_marker(tmp_path, tiny_small):
    import hashlib
    import shutil

    mine = tmp_path / "mine.gguf"
    shutil.copy(tiny_small, mine)
    good = hashlib.sha256(mine.read_bytes()).hexdigest()
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  checked: {{file: mine.gguf, sources: {{path: '{mine}', sha256: {good}}}}}\n  unchecked: {{file: mine.gguf, sources: {{path: '{mine}'}}}}\n")
    r = runner.invoke(app, ["models", "verify", "checked", "unchecked", "--config", str(config)])
    assert r.exit_code == 0, r.stderr
    assert "checked\tok" in r.stdout and "unchecked\tunverified" in r.stdout
    assert not (tmp_path / "mine.gguf.verified").exists()
    mine.write_bytes(mine.read_bytes()[:-1] + b"\0")
    r = runner.invoke(app, ["models", "verify", "checked", "--config", str(config)])
    assert r.exit_code == 1 and "checked\tBAD" in r.stdout


# 10. the same name in --json as on screen
def test_json_steps_carry_the_confidence_the_view_shows():
    small = ScriptedEngine("s", token_probs=[0.8]).enqueue("so the answer is 4")
    result = next(e.result for e in Solver([small], make_router("small")).solve("q") if isinstance(e, Solved))
    step = result.to_dict()["steps"][0]
    assert step["confidence"] == pytest.approx(0.8, abs=1e-4) and math.exp(step["mean_logprob"]) == pytest.approx(step["confidence"], abs=1e-4)
    assert "route_score" in step and "score" in step


def test_rows_are_validated_with_line_numbers():
    items = parse_rows('{"question": "a", "answer": 42}\n{"problem": "b", "solution": "so \\\\boxed{\\\\frac{1}{2}}"}\n'
                       '{"prompt": "c", "answer": [1]}\n{"question": "d", "id": {"x": 1}}\n{"question": "  "}\n3\n{"q": 1\n'
                       '{"id": 7, "question": "e"}\n{"id": "7", "question": "f"}\n{"question": "a", "answer": 42}\n')
    got = [(i.line, i.question, i.answer, i.error) for i in items]
    assert got[0] == (1, "a", "42", None) and got[1] == (2, "b", "\\frac{1}{2}", None)
    assert got[2][3] == "line 3: 'answer' must be a string or a number, got list"
    assert got[3][3] == "line 4: 'id' must be a string or a number, got dict"
    assert got[4][3] == "line 5: no 'question', 'problem' or 'prompt' text"
    assert got[5][3] == "line 6: expected a JSON object, got int"
    assert got[6][3].startswith("line 7: not valid JSON")
    assert items[7].id == "7" and got[8][3] == "line 9: duplicate id '7'"
    assert got[9][3] == "line 10: the same question and answer as line 1"
