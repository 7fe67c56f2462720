"""`steer batch` and `steer eval`: nothing lost, nothing twice, honest numbers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from steer_cli.cli import app

runner = CliRunner()


def models(tiny_small, tiny_large):
    return ["--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512"]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_malformed_lines_become_error_records_and_the_run_goes_on(tmp_path, tiny_small, tiny_large):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "question": "2+2?", "answer": "#### 4"}\nnot json\n\n{"id": "b", "problem": "1+1?"}\n{"id": "a", "question": "again"}\n[1, 2]\n')
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["batch", str(src), "-o", str(out), "-q", "--max-steps", "2", "--max-step-tokens", "3", *models(tiny_small, tiny_large)])
    assert r.exit_code == 1  # some lines failed
    records = read(out)
    assert [rec["id"] for rec in records] == ["a", "line-2", "b", "line-5", "line-6"]
    assert records[0]["gold"] == "4" and records[0]["correct"] is False and records[0]["steps"]
    assert records[1]["error"].startswith("line 2: not valid JSON")
    assert records[3]["error"] == "line 5: duplicate id 'a'"
    assert records[4]["error"] == "line 6: expected a JSON object, got list"
    assert "correct" not in records[2]  # no gold, no grade


def test_strict_refuses_a_bad_line_before_solving_and_keeps_what_was_written(tmp_path, tiny_small, tiny_large):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "question": "2+2?"}\n')
    out = tmp_path / "out.jsonl"
    args = ["batch", str(src), "-o", str(out), "-q", "--strict", "--max-steps", "1", "--max-step-tokens", "2", *models(tiny_small, tiny_large)]
    assert runner.invoke(app, args).exit_code == 0
    before = out.read_bytes()
    src.write_text('{"id": "a", "question": "2+2?"}\n{"id": "b"}\n{"id": "c", "question": "3+3?"}\n')
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "line 2: no 'question'" in r.stderr
    assert out.read_bytes() == before  # nothing solved, nothing lost


def test_stdin_to_stdout_is_pure_jsonl(tiny_small, tiny_large):
    r = runner.invoke(app, ["batch", "-", "-q", "--max-steps", "1", "--max-step-tokens", "2", *models(tiny_small, tiny_large)], input='{"question": "2+2?"}\n{"question": "3+3?"}\n')
    assert r.exit_code == 0, r.stderr
    ids = [json.loads(line)["id"] for line in r.stdout.splitlines()]
    assert len(set(ids)) == 2 and all(i.startswith("sha-") for i in ids)  # rows without ids are known by content


def test_a_torn_last_line_is_trimmed_and_the_rest_resumed(tmp_path, tiny_small, tiny_large):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "question": f"{i}+1?"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    args = ["batch", str(src), "-o", str(out), "-q", "--max-steps", "1", "--max-step-tokens", "2", *models(tiny_small, tiny_large)]
    assert runner.invoke(app, args).exit_code == 0
    first = out.read_text().splitlines()
    out.write_text(first[0] + "\n" + first[1][:25])  # as if killed mid-write
    assert runner.invoke(app, args).exit_code == 0
    assert [rec["id"] for rec in read(out)] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("parallel", ["1", "4"])  # under --parallel, finished lines land in any order: still each once
def test_kill_9_then_rerun_answers_every_input_exactly_once(tmp_path, tiny_small, tiny_large, parallel):
    src = tmp_path / "in.jsonl"
    ids = [f"q{i}" for i in range(12)]
    src.write_text("".join(json.dumps({"id": i, "question": f"What is {n} + {n}?"}) + "\n" for n, i in enumerate(ids)))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "steer_cli", "batch", str(src), "-o", str(out), "-q", "--max-steps", "4", "--max-step-tokens", "40", "--delimiter", "", "--parallel", parallel, *models(tiny_small, tiny_large)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n")
    assert 3 <= partial < len(ids), "the kill should land mid-run"
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(rec["id"] for rec in read(out)) == sorted(ids)


def test_eval_reports_each_configuration_and_reuses_records(tmp_path, tiny_small, tiny_large):
    data = tmp_path / "gold.jsonl"
    data.write_text('{"id": "x", "question": "2+2?", "answer": "4"}\n{"id": "y", "question": "3+3?", "answer": "#### 6"}\n')
    args = ["eval", "--routers", "small,large,steer@0.5,random@0.5", "--data", str(data), "--out", str(tmp_path / "report"), "--work", str(tmp_path / "work"), "-q", "--max-steps", "2", "--max-step-tokens", "3", *models(tiny_small, tiny_large)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["config", "n", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == ["small", "large", "steer:entropy@0.5", "random@0.5"]  # the signal that ran
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    by = {s["config"]: s for s in summary}
    assert by["large"]["relative_cost"] == pytest.approx(1.0, abs=0.02) and by["large"]["large_step_share"] == 1.0
    assert by["small"]["large_step_share"] == 0.0 and by["small"]["large_decoded_per_problem"] == 0
    assert by["large"]["decode_cost"] == 1.0 and by["small"]["decode_cost"] == pytest.approx(1.0)  # equal-size tiny models
    assert (tmp_path / "report" / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report" / "summary.csv").read_text().startswith("config,n,correct,accuracy")
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "work").iterdir()}
    again = runner.invoke(app, args)
    assert again.stdout == r.stdout  # same numbers, from the stored records
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "work").iterdir()} == stamps
    piped = runner.invoke(app, [*args, "--json"])  # for a pipeline: the summaries on stdout, the table on stderr
    assert json.loads(piped.stdout) == summary and piped.stderr.splitlines()[0].split()[:3] == ["config", "n", "accuracy"]
    alone = runner.invoke(app, [*args[:2], "steer@0.5", *args[3:5], *args[7:], "--json"])  # no large beside it, no --out
    (steer,) = json.loads(alone.stdout)
    assert steer["reference"] == "measured" and steer["relative_cost"] == by["steer:entropy@0.5"]["relative_cost"]  # the recorded large run


def test_eval_rejects_bad_router_specs():
    r = runner.invoke(app, ["eval", "--routers", "small,oracle@0.3"])
    assert r.exit_code == 2 and "unknown router 'oracle'" in r.stderr


@pytest.mark.usefixtures("profiled")
def test_eval_runs_trim_and_cascade_and_scores_them_against_random(tmp_path, tiny_small, smollm2_path):
    data = tmp_path / "gold.jsonl"
    data.write_text('{"id": "x", "question": "2+2?", "answer": "4"}\n{"id": "y", "question": "3+3?", "answer": "6"}\n')
    args = ["eval", "--routers", "small,large,trim:verify@0.5,trim:self@0.5,cascade@0.5", "--data", str(data), "--out", str(tmp_path / "report"),
            "--work", str(tmp_path / "work"), "-q", "--max-steps", "2", "--max-step-tokens", "4",
            "--small", str(tiny_small), "--large", str(smollm2_path), "--threads", "1", "--n-ctx", "1024"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert "vs random (time) [95% CI]" in r.stdout.splitlines()[0]  # the default unit leads
    table = (tmp_path / "report" / "summary.md").read_text()
    assert all(f"vs random ({u}) [95% CI]" in table for u in ("time", "decode", "FLOPs", "price"))
    priced_by = json.loads((tmp_path / "report" / "profiles.json").read_text())  # the machine the time column is true of
    assert priced_by["cpu"] and sorted(p["decode_tok_s"] for p in priced_by["profiles"].values()) == [50.0, 400.0]
    by = {s["config"]: s for s in json.loads((tmp_path / "report" / "summary.json").read_text())}
    assert set(by) == {"small", "large", "trim:verify@0.5", "trim:self@0.5", "cascade:answer@0.5"}
    # The random line runs through the small and large points themselves.
    assert by["small"]["vs_random"]["diff"] == 0 and by["large"]["vs_random"]["diff"] == pytest.approx(0)
    assert by["trim:verify@0.5"]["vs_random"]["low"] <= by["trim:verify@0.5"]["vs_random"]["diff"] <= by["trim:verify@0.5"]["vs_random"]["high"]
    assert by["small"]["reference"] == "measured" and by["large"]["time_cost"] == pytest.approx(1.0) and by["large"]["wall_cost"] == pytest.approx(1.0)
    assert by["small"]["vs_random_by_unit"]["flops"]["diff"] == 0 and by["small"]["vs_random_by_unit"]["price"] is None  # no prices here
    assert all("cost_se" in s for s in by.values())
    records = {p.name.rsplit("-", 1)[0]: read(p) for p in (tmp_path / "work").iterdir()}
    assert all("attempts" in rec and len(rec["attempts"]) >= 1 for rec in records["cascade:answer@0.5"])


def test_eval_records_are_keyed_by_content_so_an_edited_row_reruns_alone(tmp_path, tiny_small, tiny_large):
    data, work = tmp_path / "a.jsonl", tmp_path / "work"
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "--routers", "small", "--data", str(data), "--work", str(work), "-q", "--max-steps", "1", "--max-step-tokens", "3", *models(tiny_small, tiny_large)]
    assert runner.invoke(app, args).exit_code == 0
    (records,) = work.iterdir()
    assert len(read(records)) == 3
    rows[1]["question"] = "What is 7 + 7?"  # one row edited
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert runner.invoke(app, args).exit_code == 0
    after = read(records)
    assert len(after) == 4 and after[-1]["problem"] == "What is 7 + 7?"  # only the edited row was solved
    twice = runner.invoke(app, [*args[:2], "small,small", *args[3:7], *args[8:], "--json"])  # one route named twice is solved and counted once
    assert "eval: 0 of 3 route-problems to solve" in twice.stderr and [s["config"] for s in json.loads(twice.stdout)] == ["small"]
    other = tmp_path / "b.jsonl"  # same row count, other problems: nothing reused
    other.write_text("".join(json.dumps({"question": f"Name {i}.", "answer": "1"}) + "\n" for i in range(4)))
    assert runner.invoke(app, [*args[:3], "--data", str(other), *args[5:]]).exit_code == 0
    assert len(read(records)) == 8
    moved = tmp_path / "c.jsonl"  # known problems in another order and file: all reused
    moved.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    assert runner.invoke(app, [*args[:3], "--data", str(moved), *args[5:]]).exit_code == 0
    assert len(read(records)) == 8


def test_eval_grades_a_math_style_file(tmp_path, tiny_small, tiny_large):
    from pathlib import Path

    sample = Path(__file__).parent / "data" / "math_sample.jsonl"
    r = runner.invoke(app, ["eval", "--routers", "small,large", "--data", str(sample), "--out", str(tmp_path / "r"), "--work", str(tmp_path / "w"), "-q",
                            "--max-steps", "1", "--max-step-tokens", "4", *models(tiny_small, tiny_large)])
    assert r.exit_code == 0, r.stderr
    by = {s["config"]: s for s in json.loads((tmp_path / "r" / "summary.json").read_text())}
    assert by["small"]["n"] == 25 and by["large"]["n"] == 25
    golds = {rec["gold"] for p in (tmp_path / "w").iterdir() for rec in read(p)}
    assert {"\\frac{3}{4}", "5\\sqrt{2}", "\\left( 3, \\frac{\\pi}{2} \\right)", "120"} <= golds  # LaTeX golds from solutions, cleaned
