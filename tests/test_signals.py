import math

import numpy as np
import pytest

from steer_cli.signals import SIGNALS, greedy, summarize, top_alternatives


def reference_logprobs(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    return x - (x.max() + np.log(np.exp(x - x.max()).sum()))


def test_summary_matches_a_float64_reference():
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal(50_000) * 4).astype(np.float32)
    ref = reference_logprobs(logits)
    info = summarize(logits, k=5)
    order = np.argsort(-ref)[:5]
    assert list(info.top_ids) == [int(i) for i in order]
    assert np.allclose(info.top_logprobs, ref[order], atol=1e-4)
    p = np.exp(ref)
    assert info.entropy == pytest.approx(float(-(p * ref).sum()), abs=1e-3)


def test_greedy_returns_argmax_and_its_logprob():
    logits = np.array([0.0, 3.0, 1.0, 3.0 - 1e-3], dtype=np.float32)
    token, lp = greedy(logits)
    assert token == 1
    assert lp == pytest.approx(reference_logprobs(logits)[1], abs=1e-6)
    assert top_alternatives(logits, 2)[1][0] == 3


def test_signals_are_confidences_in_unit_interval_and_order_sensibly():
    sharp = summarize(np.array([10.0, 0.0, 0.0, 0.0], dtype=np.float32))
    flat = summarize(np.zeros(4, dtype=np.float32))
    for name, fn in SIGNALS.items():
        assert 0.0 <= fn(flat) <= 1.0 and 0.0 <= fn(sharp) <= 1.0
        assert fn(sharp) > fn(flat), name
    assert SIGNALS["entropy"](flat) == pytest.approx(math.exp(-math.log(4)), rel=1e-4)
    assert SIGNALS["margin"](flat) == pytest.approx(0.0, abs=1e-6)
