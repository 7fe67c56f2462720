"""P(IK): "I know this", a classifier that predicts before answering whether
a tier will get a query right (the confidence cascade's second signal, arXiv
2602.22090), so a query that is hopeless for the small tier skips it.

Features come from the model itself: its last hidden state over the rendered
question, mean-pooled and at the last token (llama.cpp's embeddings mode, in a
context of its own so the generation context's prefix cache is never
disturbed), plus two cheap text extras. The classifier is an L2-regularised logistic regression in numpy; the
file it is saved to is validated on load (format, feature names, the model
it was trained for, sizes), so a tampered or mismatched file is refused.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from steer_cli.errors import UsageError

if TYPE_CHECKING:
    from llama_cpp import Llama

FORMAT = "steer-pik/1"
EXTRAS = ("log_question_chars", "numbers_in_question")


class PromptEmbedder:
    """The last hidden state at every token of a token list, pooled two ways:
    the mean over the question, and the last token's (the state right before
    answering). It runs in a second llama.cpp context, in embeddings mode, on
    the generation handle's own loaded weights: no second copy in memory."""

    def __init__(self, llm: Llama, n_threads: int, n_ctx: int = 2048) -> None:
        self.llm, self.n_threads, self.n_ctx = llm, n_threads, n_ctx
        self._ctx: Any = None
        self._batch: Any = None

    def _open(self) -> None:
        if self._ctx is None:
            import llama_cpp
            from llama_cpp._internals import LlamaBatch, LlamaContext

            params = llama_cpp.llama_context_default_params()
            params.n_ctx = params.n_batch = params.n_ubatch = self.n_ctx
            params.n_threads = params.n_threads_batch = self.n_threads
            params.embeddings = True
            params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_NONE
            # As llama-cpp-python's own embeddings handle (what the shipped
            # classifiers were trained on): flash attention's sums differ.
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
            # llama-cpp-python frees this context before the model it shares.
            self._ctx = LlamaContext(model=self.llm._model, params=params, verbose=False)
            self._batch = LlamaBatch(n_tokens=self.n_ctx, embd=0, n_seq_max=1, verbose=False)

    def embed(self, tokens: list[int]) -> np.ndarray:
        """[mean of the token states, the last token's state]."""
        import llama_cpp

        self._open()
        tokens = tokens[: self.n_ctx]
        self._ctx.kv_cache_clear()
        self._batch.set_batch(batch=tokens, n_past=0, logits_all=True)
        self._ctx.decode(self._batch)
        ptr = llama_cpp.llama_get_embeddings(self._ctx.ctx)
        states = np.ctypeslib.as_array(ptr, shape=(len(tokens), self.llm.n_embd())).astype(np.float64)
        return np.concatenate([states.mean(axis=0), states[-1]])


def text_extras(question: str) -> list[float]:
    return [math.log1p(len(question)), float(len(re.findall(r"\d+(?:\.\d+)?", question)))]


def feature_vector(embedding: np.ndarray, question: str) -> np.ndarray:
    return np.concatenate([np.asarray(embedding, dtype=np.float64), np.asarray(text_extras(question))])


# -- the classifier -----------------------------------------------------------
def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float, steps: int = 300) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression on
    standardised features, by Newton's method: exact, and fast in whichever
    of rows and features is the smaller."""
    if len(x) < x.shape[1]:
        return _fit_dual(x, y, l2, steps)
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) / n + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / n + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def _fit_dual(x: np.ndarray, y: np.ndarray, l2: float, steps: int) -> tuple[np.ndarray, float]:
    """The same regression with w = xᵀα (its minimiser lies in the rows'
    span): Newton's method on n+1 unknowns instead of d+1."""
    n = len(y)
    gram = x @ x.T
    alpha, bias = np.zeros(n), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(gram @ alpha + bias, -30, 30)))
        residual = (p - y) / n
        weight = p * (1 - p) / n
        jacobian = np.empty((n + 1, n + 1))
        jacobian[:n, :n] = weight[:, None] * gram + l2 * np.eye(n)
        jacobian[:n, n] = weight
        jacobian[n, :n] = weight @ gram
        jacobian[n, n] = weight.sum() + 1e-12
        step = np.linalg.solve(jacobian, np.append(residual + l2 * alpha, residual.sum()))
        alpha -= step[:n]
        bias -= step[n]
        if np.abs(step).max() < 1e-10:
            break
    return x.T @ alpha, float(bias)


def auroc(scores: list[float] | np.ndarray, labels: list[bool] | np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties half)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def choose_l2(x: np.ndarray, y: np.ndarray, grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0), folds: int = 5) -> float:
    """The penalty with the best cross-validated AUROC on the training rows."""
    n = len(y)
    fold = np.arange(n) % folds
    best, best_auc = grid[-1], -1.0
    for l2 in grid:
        scores = np.empty(n)
        for k in range(folds):
            w, b = fit_logistic(x[fold != k], y[fold != k], l2)
            scores[fold == k] = x[fold == k] @ w + b
        value = auroc(scores, y)
        if value > best_auc:
            best, best_auc = l2, value
    return best


@dataclass
class PikModel:
    """A trained P(IK) for one model; `threshold`: below it the query skips that tier."""

    model: str
    model_sha256: str
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    heldout_auroc: float | None = None
    n_train: int = 0
    trained_on: frozenset[str] = frozenset()  # the training problems' content keys; empty in files written before steer kept them
    source: str = "the P(IK) file"  # where it was loaded from, for messages

    def predict(self, embedding: np.ndarray, question: str) -> float:
        z = (feature_vector(embedding, question) - self.mean) / self.scale
        return float(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, float(z @ self.weights) + self.bias)))))

    def to_json(self) -> dict:
        return {
            "format": FORMAT, "model": self.model, "model_sha256": self.model_sha256, "features": self.features,
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(), "bias": self.bias,
            "threshold": self.threshold, "heldout_auroc": self.heldout_auroc, "n_train": self.n_train,
            **({"trained_on": sorted(self.trained_on)} if self.trained_on else {}),
        }

    def identity(self) -> dict:
        """What its predictions depend on (not which problems it learnt from)."""
        return {k: v for k, v in self.to_json().items() if k != "trained_on"}

    def seen(self, items: list) -> int:
        """How many of `items` it was trained on: figures on them are in-sample."""
        return sum(item.key in self.trained_on for item in items)

    def save(self, path: Path) -> Path:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n")
        tmp.replace(path)
        return path


def default_threshold(pik: PikModel, defaults) -> float:
    """The P(IK) threshold a route uses when none is named: the calibrated
    one in models.yaml (`calibrate --pik` saves it), else the file's own,
    which is checked only here: a named threshold makes a bad one harmless."""
    if "pik" in defaults.thresholds:
        return defaults.thresholds["pik"]
    if not 0.0 <= pik.threshold <= 1.0:  # NaN included
        raise UsageError(f"{pik.source}: threshold {pik.threshold} is outside [0, 1]", "train it again, or name one: --pik-threshold 0.2 (or +pik@0.2)")
    return pik.threshold


def check_engine(pik: PikModel, engine: Any) -> None:
    """Refuse a P(IK) file trained for another model than the smallest tier."""
    path = getattr(engine, "path", None)
    if path is None:
        raise UsageError(f"the small tier {engine.name} is remote: P(IK) needs its hidden state", "use a local GGUF as the small tier with --pik")
    if pik.model_sha256 != engine.identity:
        raise UsageError(f"the P(IK) file was trained for {pik.model} ({pik.model_sha256[:12]}…), not for the small tier {engine.name} ({engine.identity[:12]}…)",
                         "train one for this model with `steer pik train`")


def feature_names(n_embd: int) -> list[str]:
    return [f"hidden_mean_{i}" for i in range(n_embd)] + [f"hidden_last_{i}" for i in range(n_embd)] + list(EXTRAS)


def train(x: np.ndarray, y: np.ndarray, heldout: np.ndarray, model: str, sha256: str, skip_share: float, keys: list[str]) -> PikModel:
    """Fit on the rows not held out (penalty chosen by cross-validation
    there), report AUROC on the held-out rows, and set the threshold so that
    `skip_share` of the training queries would skip the tier."""
    train_rows = ~heldout
    mean = x[train_rows].mean(axis=0)
    scale = x[train_rows].std(axis=0) + 1e-6
    z = (x - mean) / scale
    l2 = choose_l2(z[train_rows], y[train_rows])
    w, b = fit_logistic(z[train_rows], y[train_rows], l2)
    scores = 1.0 / (1.0 + np.exp(-np.clip(z @ w + b, -30, 30)))
    held_auc = auroc(scores[heldout], y[heldout]) if heldout.any() else None
    threshold = float(np.quantile(scores[train_rows], skip_share)) if skip_share > 0 else 0.0
    return PikModel(model, sha256, feature_names((x.shape[1] - len(EXTRAS)) // 2), mean, scale, w, b, round(threshold, 6),
                    None if held_auc is None or math.isnan(held_auc) else round(held_auc, 4), int(train_rows.sum()),
                    frozenset(k for k, held in zip(keys, heldout, strict=True) if not held))


def load(path: Path, model: str | None = None, sha256: str | None = None) -> PikModel:
    """A P(IK) file, checked whole; refused in one line when it is not one,
    was altered, or belongs to another model than the tier it would judge."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"P(IK) file not found: {path}", "train one with `steer pik train -o pik.json`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not a P(IK) file ({type(exc).__name__})", "train one with `steer pik train -o pik.json`") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{path} is not a {FORMAT} file", "train one with `steer pik train -o pik.json`")
    try:
        pik = PikModel(
            str(raw["model"]), str(raw["model_sha256"]), [str(f) for f in raw["features"]],
            np.asarray(raw["mean"], dtype=float), np.asarray(raw["scale"], dtype=float), np.asarray(raw["weights"], dtype=float),
            float(raw["bias"]), float(raw["threshold"]), raw.get("heldout_auroc"), int(raw.get("n_train", 0)),
            frozenset(str(k) for k in raw.get("trained_on", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{path}: malformed P(IK) file ({exc})", "train it again with `steer pik train`") from None
    d = len(pik.features)
    if pik.features[-len(EXTRAS):] != list(EXTRAS) or pik.features != feature_names((d - len(EXTRAS)) // 2):
        raise UsageError(f"{path}: unknown feature names", "train it again with this version of steer")
    if not (pik.mean.shape == pik.scale.shape == pik.weights.shape == (d,)) or not np.all(np.isfinite(pik.weights)) or np.any(pik.scale <= 0):
        raise UsageError(f"{path}: sizes or values do not fit its {d} features (altered?)", "train it again with `steer pik train`")
    pik.source = str(path)
    if sha256 is not None and pik.model_sha256 != sha256:
        raise UsageError(f"{path} was trained for {pik.model} ({pik.model_sha256[:12]}…), not for this small tier ({model})", "train a P(IK) for this model with `steer pik train`")
    return pik


class Embedded:
    """Embeds a LlamaEngine's rendered prompt on that engine's weights, in a
    context of its own; the engine books the pass (real prefill the user pays for)."""

    def __init__(self, engine, llm: Llama, n_threads: int) -> None:
        self.engine = engine
        self.embedder = PromptEmbedder(llm, n_threads, n_ctx=engine.options.n_ctx)

    def __call__(self, question: str) -> tuple[np.ndarray, int, float]:
        """The embedding, the tokens it read and the seconds it took."""
        tokens = self.engine.render_prompt(question)
        self.embedder._open()  # loading the context is a one-off, not this question's cost
        started = time.perf_counter()
        vector = self.embedder.embed(tokens)
        return vector, len(tokens), time.perf_counter() - started
