"""`steer ask` through the real CLI: stdout carries only the answer / JSON."""

import json

import pytest
from typer.testing import CliRunner

from steer_cli.cli import app

runner = CliRunner()
FAST = ["--max-steps", "3", "--max-step-tokens", "4", "--delimiter", "", "--threads", "1", "--n-ctx", "512"]


def ask(*args, input=None):
    return runner.invoke(app, ["ask", *args], input=input)


def assert_finished(r):
    """Solved: an answer (exit 0), or, as random-weight models often do, none,
    said in one line (exit 1) with the JSON or steps still written."""
    assert r.exit_code == 0 or (r.exit_code == 1 and "steer: no answer: " in r.stderr), (r.exit_code, r.stderr)


def test_json_goes_to_stdout_and_steps_to_stderr(tiny_small, tiny_large):
    r = ask("What is 2 + 2?", "--small", str(tiny_small), "--large", str(tiny_large), "--router", "random", "-t", "0.5", "--json", *FAST)
    assert_finished(r)
    out = json.loads(r.stdout)  # stdout is exactly one JSON object
    assert out["problem"] == "What is 2 + 2?"
    assert len(out["steps"]) == 3
    assert {"model", "text", "score", "tokens", "mean_logprob"} <= set(out["steps"][0])
    cost = out["cost"]
    assert cost["relative_cost"] == pytest.approx(cost["flops"] / cost["large_only_flops"], abs=1e-3)
    assert [m["name"] for m in out["cost"]["models"]] == ["tiny-small", "tiny-large"]
    assert "tiny-small" in r.stderr or "tiny-large" in r.stderr  # step badges
    assert "relative cost" in r.stderr


def test_stdin_dash_and_quiet(tiny_small, tiny_large):
    r = ask("-", "--small", str(tiny_small), "--large", str(tiny_large), "--router", "large", "-q", *FAST, input="Add 3 and 4.\n")
    assert_finished(r)
    if r.exit_code == 0:
        assert r.stderr == "" and r.stdout.count("\n") == 1  # just the answer line
    else:
        assert r.stdout == "" and r.stderr.count("\n") == 1  # just why there is none
    r = ask("-", "--small", str(tiny_small), "--large", str(tiny_large), "-q", "--json", *FAST, input="Add 3 and 4.\n")
    assert json.loads(r.stdout)["problem"] == "Add 3 and 4."


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["   "], 2, "the problem is empty"),
        (["-"], 2, "the problem is empty"),
        (["2+2?", "--small", "/nonexistent/model.gguf"], 1, "model file not found: /nonexistent/model.gguf"),
        (["2+2?", "--router", "oracle"], 2, "unknown router 'oracle'"),
        (["2+2?", "--small", "qwen-tiny-typo"], 2, "unknown model 'qwen-tiny-typo'"),
        (["2+2?", "--router", "steer", "-t", "3"], 2, "threshold 3.0 is outside [0, 1]"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, code, needle, tiny_small):
    extra = [] if "--small" in args else ["--small", str(tiny_small)]
    r = ask(*args, *extra, "--large", str(tiny_small), input="")
    assert r.exit_code == code
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("steer: error:")


def test_missing_registry_model_names_the_command_that_fetches_it():
    r = ask("2+2?", "--small", "qwen2.5-3b-instruct")
    assert r.exit_code == 1
    assert "run `steer models pull qwen2.5-3b-instruct`" in r.stderr


def test_help_is_instant_and_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "ask" in r.stdout and "models" in r.stdout


def test_models_list_shows_the_registry_and_what_is_here(tmp_path):
    r = runner.invoke(app, ["models", "list", "--json", "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    names = [row["name"] for row in rows]
    assert "qwen2.5-coder-0.5b-instruct" in names and "llama-3.2-1b-instruct" in names
    small = next(row for row in rows if row["name"] == "qwen2.5-coder-0.5b-instruct")
    assert small["sources"] == ["hf", "pypi"] and small["present"] is False and small["size"] == 491_400_064
    table = runner.invoke(app, ["models", "list", "--cache-dir", str(tmp_path)])
    assert "qwen2.5-coder-1.5b-instruct" in table.stdout


def test_models_list_piped_keeps_every_name_and_path_whole(tmp_path):
    gguf = tmp_path / "a" / "deeply" / "nested" / "folder" / "for" / "local" / "weights" / "my-own-finetune-q4_k_m.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    config = tmp_path / "models.yaml"
    config.write_text(f"models:\n  my-own-finetune-of-qwen2.5-coder-1.5b:\n    params: 1500000000\n    file: my-own-finetune-q4_k_m.gguf\n    sources: {{path: {gguf}}}\n")
    table = runner.invoke(app, ["models", "list", "--config", str(config), "--cache-dir", str(tmp_path)])
    assert table.exit_code == 0, table.stderr
    line = next(row for row in table.stdout.splitlines() if row.startswith("my-own-finetune"))
    assert line.split() == ["my-own-finetune-of-qwen2.5-coder-1.5b", "1.5G", "4B", "path", "yes", str(gguf)]  # nothing cut to 80 columns


def test_models_pull_unknown_name_fails_before_any_download():
    r = runner.invoke(app, ["models", "pull", "qwen2.5-coder-1.5b-instruct", "qwen-typo"])
    assert r.exit_code == 2
    assert "unknown model 'qwen-typo'" in r.stderr and r.stdout == ""


def test_max_large_tokens_caps_the_large_model_and_is_reported(tiny_small, tiny_large):
    r = ask("2+2?", "--small", str(tiny_small), "--large", str(tiny_large), "--router", "large", "--max-large-tokens", "3", "--json", "-q", *FAST)
    assert_finished(r)
    out = json.loads(r.stdout)
    assert out["cost"]["models"][1]["decoded_tokens"] == 3 and out["budget_bound"] is True
    assert [s["tier"] for s in out["steps"]] == [1, 0, 0]


@pytest.fixture
def three_tiers(tmp_path, monkeypatch, tiny_small, tiny_large, smollm2_path):
    """A user models.yaml with a 3-tier set of small real GGUFs on disk."""
    home = tmp_path / "steer-home"
    home.mkdir(exist_ok=True)
    entries = {"t0": tiny_small, "t1": tiny_large, "t2": smollm2_path}
    models = "".join(f"  {n}:\n    file: {p.name}\n    n_ctx: 1024\n    sources: {{path: '{p}'}}\n" for n, p in entries.items())
    (home / "models.yaml").write_text(f"models:\n{models}tiers:\n  three: [t0, t1, t2]\n")
    return ["--tiers", "three", "--threads", "1"]


def test_cascade_escalates_a_whole_answer_through_three_real_tiers(three_tiers):
    # Threshold 1: no answer is ever sure enough, so every tier solves it and the top one is kept.
    r = ask("What is 2 + 2?", *three_tiers, "--router", "cascade", "-t", "1", "--json", "--max-steps", "2", "--max-step-tokens", "6", "--delimiter", "")
    assert_finished(r)
    out = json.loads(r.stdout)
    assert {s["model"] for s in out["steps"]} == {"t2"}
    assert [d["model"] for d in out["drafts"]] == ["t0", "t0", "t1", "t1"]
    assert all(m["decoded_tokens"] == 12 for m in out["cost"]["models"])  # discarded answers are paid for
    assert "discarded" in r.stderr


def test_trim_verify_rewrites_rejected_drafts_a_tier_up(three_tiers):
    r = ask("What is 2 + 2?", *three_tiers, "--router", "trim", "--signal", "verify", "-t", "1", "--json", "--max-steps", "2", "--max-step-tokens", "5", "--delimiter", "")
    assert_finished(r)
    out = json.loads(r.stdout)
    assert [s["model"] for s in out["steps"]] == ["t2", "t2"]
    assert [d["model"] for d in out["drafts"]] == ["t0", "t1", "t0", "t1"]
    models = out["cost"]["models"]
    assert models[0]["decoded_tokens"] == 10 and models[1]["decoded_tokens"] == 10
    assert models[2]["decoded_tokens"] == 10 and models[2]["evaluated_tokens"] > models[2]["decoded_tokens"]  # scored t1's drafts
    assert all(0 < s["score"] < 1 for s in out["steps"])


@pytest.mark.usefixtures("profiled")
def test_budget_flag_binds_and_is_reported(tiny_small, smollm2_path):
    r = ask("2+2?", "--small", str(tiny_small), "--large", str(smollm2_path), "--router", "large", "--budget", "0.05", "--json", "-q", *FAST)
    assert_finished(r)
    out = json.loads(r.stdout)
    assert out["budget_bound"] is True and {s["model"] for s in out["steps"]} == {"tiny-small"}
    bad = ask("2+2?", "--small", str(tiny_small), "--large", str(smollm2_path), "--budget", "-1", *FAST)
    assert bad.exit_code == 2 and "--budget -1.0 is not a relative cost" in bad.stderr


@pytest.mark.usefixtures("profiled")
@pytest.mark.parametrize("router", ["trim", "cascade"])
def test_calibrate_runs_trim_and_cascade_on_three_tiers(three_tiers, tmp_path, router):
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n" for i in range(3)))
    r = runner.invoke(app, ["calibrate", "--target-cost", "0.9", "--router", router, *three_tiers, "--data", str(data), "--limit", "2",
                            "--heldout", str(data), "--heldout-limit", "1", "--max-rounds", "2", "--dry-run", "--json", "-q",
                            "--work", str(tmp_path / "work"), "--max-steps", "2", "--max-step-tokens", "4", "--delimiter", ""])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["router"] == router and out["saved_to"] is None and 1 <= len(out["probes"]) <= 2
    assert out["heldout"]["n"] == 1 and out["calibration"]["n"] == 2


def test_bench_measures_a_profile_once_and_eval_predicts_from_it(tiny_small, tmp_path):
    r = runner.invoke(app, ["bench", str(tiny_small), "--json", "--threads", "1"])
    assert r.exit_code == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["prefill_tok_s"] > 0 and first["decode_tok_s"] > 0 and first["score_tok_s"] > 0 and first["threads"] == 1
    assert "measuring tiny-small" in r.stderr
    again = runner.invoke(app, ["bench", str(tiny_small), "--json", "--threads", "1"])
    assert json.loads(again.stdout) == first and "measuring" not in again.stderr  # stored, reused
    data = tmp_path / "d.jsonl"
    data.write_text('{"question": "2+2?", "answer": "4"}\n')
    ev = runner.invoke(app, ["eval", "--routers", "small", "--data", str(data), "--small", str(tiny_small), "--large", str(tiny_small),
                             "--threads", "1", "--n-ctx", "512", "--max-steps", "2", "--max-step-tokens", "4", "--work", str(tmp_path / "w"), "-q", "--out", str(tmp_path / "r")])
    assert ev.exit_code == 0, ev.stderr
    (summary,) = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["predicted_s_per_problem"] > 0


def test_bench_measures_what_parallel_lanes_gain_once_and_estimates_use_it(tiny_small):
    """`steer bench --parallel 2` keeps in the profile how many times sooner two
    problems finish at once than one after another; duration estimates at
    --parallel 2 use it, and say how to get it where it is missing."""
    from steer_cli import profile
    from steer_cli.engine import LlamaEngine, LoadOptions
    from steer_cli.session import Session
    from steer_cli.units import Meter

    r = runner.invoke(app, ["bench", str(tiny_small), "--json", "--threads", "1", "--parallel", "2"])
    assert r.exit_code == 0, r.stderr
    measured = json.loads(r.stdout)
    assert measured["batched"]["2"] > 0 and "at --parallel 2" in r.stderr
    again = runner.invoke(app, ["bench", str(tiny_small), "--json", "--threads", "1", "--parallel", "2"])
    assert json.loads(again.stdout) == measured and "measuring" not in again.stderr
    engine = LlamaEngine("tiny-small", tiny_small, LoadOptions(n_threads=1))
    profiles = profile.for_engines([engine], [], measure_missing=False)
    at_two = Session.of([engine], Meter("decode", profiles), parallel=2).expected(10)
    assert "at --parallel 2" in at_two and f"{measured['batched']['2']:.2f}x, measured" in at_two
    assert "steer bench --parallel 3" in Session.of([engine], Meter("decode", profiles), parallel=3).expected(10)
