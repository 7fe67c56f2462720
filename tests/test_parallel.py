"""Many problems at once (`--parallel`): the same records, nothing lost or twice, refused when it cannot fit."""

import json

import pytest
from typer.testing import CliRunner

from steer_cli.cli import app

runner = CliRunner()


def models(tiny_small, tiny_large):
    return ["--small", str(tiny_small), "--large", str(tiny_large), "--threads", "1", "--n-ctx", "512"]


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def questions(tmp_path, n):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n" for i in range(n)))
    return src


def test_batch_in_parallel_gives_the_sequential_answers(tmp_path, tiny_small, tiny_large):
    src = questions(tmp_path, 6)
    common = [str(src), "-q", "--router", "steer@0.5", "--max-steps", "3", "--max-step-tokens", "8", *models(tiny_small, tiny_large)]
    one = runner.invoke(app, ["batch", *common, "-o", str(tmp_path / "one.jsonl")])
    many = runner.invoke(app, ["batch", *common, "-o", str(tmp_path / "many.jsonl"), "--parallel", "3"])
    assert one.exit_code == 0 and many.exit_code == 0, many.stderr
    by_one = {r["id"]: r for r in read(tmp_path / "one.jsonl")}
    by_many = {r["id"]: r for r in read(tmp_path / "many.jsonl")}
    assert sorted(by_many) == sorted(by_one)
    text = lambda r: [s["text"] for s in r["steps"]]  # noqa: E731
    # Batched kernels add in another order: a near-tie (common in these random-weight models) may break the other way.
    same = sum(text(by_one[i])[:2] == text(by_many[i])[:2] for i in by_one)
    assert same >= 5, f"{same}/6 solutions begin as the sequential ones do"
    for i in by_one:  # every problem is billed its own tokens, not its neighbours'
        if text(by_one[i]) == text(by_many[i]):
            assert [m["decoded_tokens"] for m in by_one[i]["cost"]["models"]] == [m["decoded_tokens"] for m in by_many[i]["cost"]["models"]]
            assert [s["mean_logprob"] for s in by_one[i]["steps"]] == pytest.approx([s["mean_logprob"] for s in by_many[i]["steps"]], abs=0.01)


def test_eval_in_parallel_writes_the_records_a_sequential_rerun_reuses(tmp_path, tiny_small, tiny_large):
    src = questions(tmp_path, 5)
    args = ["eval", "--routers", "small,trim:verify@0.5", "--data", str(src), "--work", str(tmp_path / "work"), "-q", "--max-steps", "2", "--max-step-tokens", "6", *models(tiny_small, tiny_large)]
    first = runner.invoke(app, [*args, "--parallel", "4", "--json"])
    assert first.exit_code == 0, first.stderr
    assert [s["n"] for s in json.loads(first.stdout)] == [5, 5]
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "work").iterdir()}
    again = runner.invoke(app, [*args, "--json"])  # the records key nothing about --parallel
    assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(first.stdout)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "work").iterdir()} == stamps


def test_a_parallel_that_cannot_fit_is_refused_before_any_model_loads(tmp_path, tiny_small, tiny_large):
    src = questions(tmp_path, 2)
    for flag, words in (("0", "outside [1, 64]"), ("65", "outside [1, 64]")):
        r = runner.invoke(app, ["batch", str(src), "--parallel", flag, *models(tiny_small, tiny_large)])
        assert r.exit_code != 0 and words in r.stderr and "Traceback" not in r.stderr
    huge = runner.invoke(app, ["batch", str(src), "-o", str(tmp_path / "o.jsonl"), "--parallel", "64", *models(tiny_small, tiny_large)[:-1], "100000000"])
    assert huge.exit_code != 0 and "exceed" in huge.stderr and "lower --parallel" in huge.stderr
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""


def test_a_new_lane_reads_the_chat_template_from_another_lane_and_the_model_sees_the_same(smollm2_path):
    import numpy as np

    from steer_cli.batching import lanes
    from steer_cli.engine import LlamaEngine, LoadOptions

    first, second = "What is 2 + 3?", "Tom has 4 apples and buys 5 more. How many apples does he have?"
    answer = "Tom starts with 4 apples and buys 5 more, so he has 4 + 5 = 9 apples.\n\nThe answer is \\boxed{9}."
    engine = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    [[one], [two]], scheduler = lanes([engine], 2)
    with scheduler.working():
        one.start(first)
        one.next_token()
        two.start(second)
        batched = np.array(two.score_text(answer))

    def alone_with(question: str) -> tuple[np.ndarray, LlamaEngine]:
        alone = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
        alone.start(question)
        return np.array(alone.score_text(answer)), alone

    right, alone = alone_with(second)
    wrong, _ = alone_with(first)
    # Batched kernels round differently (measured: up to 0.25 nats a token on an AVX-512 CPU;
    # on AVX2 even the greedy tokens matched), so greedy tokens may part at a near-tie; a copied KV of the wrong prompt costs ~30 nats over this answer.
    assert np.abs(batched - right).max() < 1.0 and abs(batched.sum() - right.sum()) < 3.0
    assert abs(wrong.sum() - right.sum()) > 10.0
    template = next(i for i, (a, b) in enumerate(zip(alone.render_prompt(first), alone.render_prompt(second))) if a != b)
    assert template >= 16 and one.core.copied == template  # the system prompt and the user header, once
    assert two.stats.prefill_tokens == alone.stats.prefill_tokens  # billed as if computed: records do not depend on --parallel


def test_lanes_that_start_at_once_compute_the_chat_template_once(smollm2_path):
    import threading

    from steer_cli.batching import lanes
    from steer_cli.engine import LlamaEngine, LoadOptions

    problems = ["What is 2 + 3?", "Tom has 4 apples and buys 5 more. How many apples does he have?", "A train goes 60 km in an hour. How far in 3 hours?"]
    engine = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    sets, scheduler = lanes([engine], 3)
    together, firsts = threading.Barrier(3), {}

    def solve(lane: int) -> None:
        with scheduler.working():
            together.wait()  # all three lanes are working before any asks: their prompts share one pass
            (tier,) = sets[lane]
            tier.start(problems[lane])
            firsts[lane] = tier.next_token()

    threads = [threading.Thread(target=solve, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    alone = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    for lane, problem in enumerate(problems):
        alone.start(problem)
        expected = alone.next_token()
        # Batched kernels move log-probs by up to ~0.15 here (and may swap a near-tie); a lane missing its template ranks other tokens.
        ranked = dict(zip(firsts[lane].top_ids, firsts[lane].top_logprobs))
        assert set(firsts[lane].top_ids[:3]) == set(expected.top_ids[:3])
        assert [ranked[t] for t in expected.top_ids[:3]] == pytest.approx(expected.top_logprobs[:3], abs=0.25)
    template = next(i for i, (a, b) in enumerate(zip(alone.render_prompt(problems[0]), alone.render_prompt(problems[1]))) if a != b)
    assert sets[0][0].core.copied == 2 * template  # one lane computed it, two copied it


def test_a_long_read_and_a_short_one_in_one_round_each_come_out_as_alone(smollm2_path):
    """One lane reads a long answer (past READ_ALONE tokens: a pass of its own) in the round
    where the other lane reads a few tokens: both lanes see what they see alone, within the
    rounding that batched kernels add (see the tests above)."""
    import threading

    from steer_cli.batching import READ_ALONE, lanes
    from steer_cli.engine import LlamaEngine, LoadOptions

    problems = ["What is 2 + 3?", "Tom has 4 apples and buys 5 more. How many apples does he have?"]
    answer = "Tom starts with 4 apples. He buys 5 more apples at the shop, so now he has 4 + 5 = 9 apples in all.\n\nThe answer is \\boxed{9}."
    engine = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    assert engine.count_tokens(answer) > READ_ALONE
    sets, scheduler = lanes([engine], 2)
    (decoder,), (reader,) = sets
    got: dict[str, object] = {}
    ready = threading.Barrier(2)

    def decode() -> None:
        with scheduler.working():
            decoder.start(problems[0])
            decoder.next_token()
            ready.wait()
            decoder.append_text(" 2 + 3 =")
            got["next"] = decoder.next_token()

    def read() -> None:
        with scheduler.working():
            reader.start(problems[1])
            reader.next_token()
            ready.wait()
            reader.append_text(answer)
            got["after"] = reader.next_token()

    threads = [threading.Thread(target=decode), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    alone = LlamaEngine("smol", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    alone.start(problems[0])
    alone.append_text(" 2 + 3 =")
    expected = alone.next_token()
    alone.start(problems[1])
    alone.append_text(answer)
    for lane, wanted in (("next", expected), ("after", alone.next_token())):
        ranked = dict(zip(got[lane].top_ids, got[lane].top_logprobs))
        assert list(got[lane].top_ids[:2]) == list(wanted.top_ids[:2])
        assert [ranked[t] for t in wanted.top_ids[:2]] == pytest.approx(wanted.top_logprobs[:2], abs=0.25)
