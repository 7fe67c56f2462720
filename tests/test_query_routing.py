"""benchmarks/query_routing.py (#29 item 5): the predictor it fits ranks what it
was shown to rank, and its route sends exactly the share it names and pays for
the predictor's reading of every question."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from steer_cli import pik

spec = importlib.util.spec_from_file_location("query_routing", Path(__file__).parent.parent / "benchmarks" / "query_routing.py")
qr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qr)


def rows(n, width, rng):
    """Hidden states in which one direction, among `width` noisy ones, tells the label."""
    y = rng.random(n) < 0.3
    x = rng.normal(size=(n, width))
    x[:, 7] += np.where(y, 1.5, -1.5)
    return x, y


def test_a_predictor_fitted_on_wide_states_ranks_fresh_questions():
    rng = np.random.default_rng(0)
    x, y = rows(150, 400, rng)  # wider than the rows are many, as the models' states are
    fresh, labels = rows(300, 400, rng)
    # One telling direction among 400 noisy ones, from 150 rows: a linear model does far better than chance (0.5).
    assert pik.auroc(qr.fit_and_score(x, y, fresh), labels) > 0.65
    assert abs(pik.auroc(qr.fit_and_score(x, rng.permutation(y), fresh), labels) - 0.5) < 0.1  # shuffled labels teach nothing
    assert np.all(qr.fit_and_score(x, np.zeros(150, dtype=bool), fresh) == 0)  # one class: every question rated alike


def record(key, right, decoded, wall):
    bill = {"name": "m", "params": 1, "prefill_tokens": 10, "decoded_tokens": decoded, "flops": 2.0 * decoded, "wall_s": wall, "price_usd": None}
    return {"key": key, "correct": right, "cost": {"models": [bill], "flops": bill["flops"], "wall_s": wall, "price_usd": None}}


def test_the_route_sends_the_share_it_names_and_bills_the_reading():
    small = [record(f"k{i}", False, 10, 1.0) for i in range(10)]
    large = [record(f"k{i}", True, 30, 3.0) for i in range(10)]
    reading = {"name": "m", "params": 1, "prefill_tokens": 40, "decoded_tokens": 0, "flops": 80.0, "wall_s": 0.5, "price_usd": None}
    need = np.arange(10.0)  # the last questions need the large model most
    out = qr.routed(small, large, need, 0.3, [[reading]] * 10)
    assert [r["correct"] for r in out] == [False] * 7 + [True] * 3
    assert [r["cost"]["wall_s"] for r in out] == [1.5] * 7 + [3.5] * 3
    assert all(len(r["cost"]["models"]) == 2 for r in out)


@pytest.mark.slow
@pytest.mark.usefixtures("profiled")
def test_the_study_runs_end_to_end_with_only_the_options_given_and_resumes(tmp_path, monkeypatch, capsys, tiny_small, smollm2_path):
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(1, 5)))
    argv = ["query_routing.py", "--train", str(data), "--train-limit", "3", "--dev", str(data), "--dev-limit", "2", "--work", str(tmp_path / "W"),
            "--out", str(tmp_path / "R"), "--small", str(tiny_small), "--large", str(smollm2_path), "--threads", "1", "-q"]
    monkeypatch.setattr(sys, "argv", argv)  # no --max-steps and the like: steer's defaults, as a user runs it
    qr.main()
    result = json.loads((tmp_path / "R" / "query-routing.json").read_text())
    assert (result["n_train"], result["n_dev"]) == (3, 2)
    assert len(result["auroc_dev"]) == len(qr.LABELS) * len(qr.FEATURES)
    assert [r["config"] for r in result["routes"][:2]] == ["small", "large"]
    assert "Trained on 3 train problems, scored on 2 dev problems." in capsys.readouterr().out
    kept = sorted(p.name for p in (tmp_path / "W").iterdir())
    assert sum(name.startswith("embeddings-") for name in kept) == 2  # one file of question states per model
    qr.main()  # everything from the records: the same result, nothing solved again
    assert json.loads((tmp_path / "R" / "query-routing.json").read_text()) == result
    assert sorted(p.name for p in (tmp_path / "W").iterdir()) == kept


def test_a_bad_model_name_is_one_line_and_exit_2_not_a_traceback(tmp_path):
    import subprocess

    script = Path(__file__).parent.parent / "benchmarks" / "query_routing.py"
    got = subprocess.run([sys.executable, str(script), "--small", "no-such-model", "--work", str(tmp_path / "W"), "-q"],
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 2
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("steer: error:") and "no-such-model" in lines[0], got.stderr
    assert not (tmp_path / "W").exists() or not any((tmp_path / "W").iterdir())  # refused before any record was opened


def test_an_unknown_failure_keeps_its_traceback():
    from steer_cli.output import report

    with pytest.raises(ZeroDivisionError):
        report(ZeroDivisionError("a bug"))
