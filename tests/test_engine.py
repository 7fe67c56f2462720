"""The engine against real llama.cpp: logprobs, prefix reuse, hand-offs."""

import numpy as np
import pytest

from steer_cli.engine import LlamaEngine, LoadOptions
from steer_cli.registry import load_registry
from steer_cli.routers import make_router
from steer_cli.solver import Solved, Solver, StepLimits
from tiny_gguf import param_count


def solve(tiers, router, problem, limits):
    return next(e.result for e in Solver(tiers, router, limits).solve(problem) if isinstance(e, Solved))


def test_logprobs_equal_llama_cpp_pythons_own_logits_all(tiny_small):
    from llama_cpp import Llama

    engine = LlamaEngine("tiny", tiny_small, LoadOptions(n_ctx=512, n_threads=1, top_k=3))
    engine.start("What is 1+2?")
    ours = [engine.sample() for _ in range(12)]
    reference = Llama(str(tiny_small), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    tokens = engine.tokens
    reference.eval(tokens)
    scores = np.asarray(reference.scores[: len(tokens)], dtype=np.float64)
    logprobs = scores - np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1, keepdims=True)) - scores.max(1, keepdims=True)
    start = engine.prompt_length() - 1
    for i, tok in enumerate(ours):
        row = logprobs[start + i]
        assert tok.id == int(row.argmax())  # greedy picks the reference argmax
        assert tok.logprob == pytest.approx(row[tok.id], abs=2e-3)
        top = np.argsort(-row)[:3]
        assert [a for a, _ in tok.alternatives] == [int(t) for t in top]
        assert [lp for _, lp in tok.alternatives] == pytest.approx(row[top], abs=2e-3)


def test_params_come_from_the_gguf(tiny_small):
    assert LlamaEngine("tiny", tiny_small).params == param_count()


def test_routed_run_evaluates_every_token_exactly_once(tiny_small, tiny_large):
    small = LlamaEngine("small", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    large = LlamaEngine("large", tiny_large, LoadOptions(n_ctx=512, n_threads=1))
    limits = StepLimits(max_steps=8, max_step_tokens=5, delimiter="")
    result = solve([small, large], make_router("random", 0.5, seed=3), "Add 2 and 2.", limits)
    assert {s.model for s in result.steps} == {"small", "large"}
    for engine in (small, large):
        assert engine.stats.evaluated_tokens == engine.stats.needed_tokens
        # The KV cache holds exactly the engine's token list (the last token is still pending).
        assert list(engine._llm._input_ids) == engine.tokens[: engine._llm.n_tokens]
    # Each list is the prompt plus each step: own tokens verbatim, others re-tokenized.
    expected = small.render_prompt("Add 2 and 2.")
    for step in result.steps:
        expected += small.tokens[len(expected): len(expected) + step.tokens] if step.model == "small" else small.tokenize_text(step.text)
    assert small.tokens == expected


def test_the_next_problem_reuses_the_shared_prompt_prefix(tiny_small):
    engine = LlamaEngine("small", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    limits = StepLimits(max_steps=2, max_step_tokens=4, delimiter="")
    solve([engine], make_router("small"), "First problem about apples.", limits)
    before = engine.stats.snapshot()
    solve([engine], make_router("small"), "Second problem about pears.", limits)
    delta = engine.stats.since(before)
    assert delta.reused_tokens > 0  # the template prefix stayed in the KV cache
    assert delta.evaluated_tokens == delta.needed_tokens
    # prompt + 8 sampled tokens, minus the cached prefix, minus the last (never evaluated) token
    assert delta.evaluated_tokens == engine.prompt_length() - delta.reused_tokens + 8 - 1


@pytest.mark.slow
def test_hand_off_between_different_tokenizers(smollm2_path, gemma_path):
    smol = LlamaEngine("smollm2", smollm2_path, LoadOptions(n_ctx=2048))
    template = load_registry().model("gemma-3-270m").chat_template  # this GGUF has none of its own
    gemma = LlamaEngine("gemma", gemma_path, LoadOptions(n_ctx=2048, chat_template=template))
    assert smol.n_vocab != gemma.n_vocab
    limits = StepLimits(max_steps=6, max_step_tokens=12, delimiter="")
    result = solve([smol, gemma], make_router("random", 0.5, seed=1), "Tom has 3 apples and buys 4 more. How many now?", limits)
    writers = [s.model for s in result.steps]
    assert "smollm2" in writers and "gemma" in writers
    for engine in (smol, gemma):
        assert engine.stats.evaluated_tokens == engine.stats.needed_tokens
        expected = engine.render_prompt("Tom has 3 apples and buys 4 more. How many now?")
        for step in result.steps:
            expected += engine.tokens[len(expected): len(expected) + step.tokens] if step.model == engine.name else engine.tokenize_text(step.text)
        assert engine.tokens == expected
    # Gemma's own chat template was used (its turn markers are in the prompt).
    prompt = gemma._llm.detokenize(gemma.render_prompt("x"), special=True).decode()
    assert prompt.startswith("<bos><start_of_turn>user\nx") and prompt.endswith("<start_of_turn>model\n")


def test_a_file_llama_cpp_cannot_load_is_one_clear_error(tmp_path):
    from steer_cli.errors import SteerError

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(SteerError, match="cannot load"):
        LlamaEngine("broken", bad)


def test_asking_the_same_problem_twice_evaluates_one_token_of_prompt(tiny_small):
    engine = LlamaEngine("small", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    engine.start("Same problem.")
    engine.next_token()
    before = engine.stats.snapshot()
    engine.start("Same problem.")
    engine.next_token()
    delta = engine.stats.since(before)
    assert (delta.evaluated_tokens, delta.needed_tokens, delta.reused_tokens) == (1, 1, engine.prompt_length() - 1)


def test_a_tier_never_used_in_a_problem_costs_nothing(tiny_small, tiny_large):
    small = LlamaEngine("small", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    large = LlamaEngine("large", tiny_large, LoadOptions(n_ctx=512, n_threads=1))
    limits = StepLimits(max_steps=2, max_step_tokens=3, delimiter="")
    solve([small, large], make_router("small"), "Warm the small model's cache.", limits)
    result = solve([small, large], make_router("large"), "Now only the large one works.", limits)
    small_cost = result.cost.models[0]
    assert (small_cost.evaluated_tokens, small_cost.reused_tokens, small_cost.flops) == (0, 0, 0.0)
    assert result.cost.relative_cost == pytest.approx(1.0, abs=0.01)


def test_score_text_matches_the_logprobs_the_model_sampled(smollm2_path):
    """A prefill-only scoring pass over text gives the same per-token log-probs
    the model reported while writing it, and leaves the cache in step."""
    writer = LlamaEngine("w", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    writer.start("Count to three.")
    sampled = [writer.sample() for _ in range(12)]
    text = b"".join(t.piece for t in sampled).decode("utf-8")
    scorer = LlamaEngine("s", smollm2_path, LoadOptions(n_ctx=512, n_threads=1))
    scorer.start("Count to three.")
    assert scorer.tokenize_text(text) == [t.id for t in sampled]
    scored = scorer.score_text(text)
    # Against llama-cpp-python's own logits_all pass over the same tokens.
    from llama_cpp import Llama

    reference = Llama(str(smollm2_path), n_ctx=512, n_threads=1, logits_all=True, verbose=False)
    tokens = scorer.tokens
    reference.eval(tokens)
    rows = np.asarray(reference.scores[: len(tokens)], dtype=np.float64)
    rows = rows - rows.max(1, keepdims=True)
    rows = rows - np.log(np.exp(rows).sum(1, keepdims=True))
    start = len(tokens) - len(sampled)
    assert scored == pytest.approx([rows[start - 1 + i, t.id] for i, t in enumerate(sampled)], abs=2e-2)
    # Batched prefill and one-token decoding differ only by kernel rounding.
    assert scored == pytest.approx([t.logprob for t in sampled], abs=0.2)
    assert scorer.stats.decoded_tokens == 0 and scorer.pending() == 0
    assert scorer.stats.evaluated_tokens == scorer.stats.needed_tokens
    assert list(scorer._llm._input_ids) == scorer.tokens[: scorer._llm.n_tokens]
    # Writing continues from the scored text with nothing evaluated twice.
    before = scorer.stats.evaluated_tokens
    assert scorer.sample().id == writer.sample().id
    assert scorer.stats.evaluated_tokens == before


def test_rewind_discards_a_draft_and_the_next_draft_is_evaluated_cleanly(tiny_small):
    engine = LlamaEngine("e", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    engine.start("Name a colour.")
    mark = engine.mark()
    first = [engine.sample().id for _ in range(6)]
    engine.rewind(mark)
    assert engine.tokens == engine.render_prompt("Name a colour.")
    again = [engine.sample().id for _ in range(6)]
    assert again == first  # greedy from the same state: the discarded draft left no trace
    fresh = LlamaEngine("f", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    fresh.start("Name a colour.")
    fresh.append_text("blue, green")
    mixed = LlamaEngine("m", tiny_small, LoadOptions(n_ctx=512, n_threads=1))
    mixed.start("Name a colour.")
    m = mixed.mark()
    mixed.append_text("red and yellow and")
    mixed.next_token()
    mixed.rewind(m)
    mixed.append_text("blue, green")
    assert mixed.next_token().top_ids == fresh.next_token().top_ids
