"""The learned control policy of policy-guided stepwise routing (arXiv 2605.06116).

At every step the policy makes up to three decisions, each a softmax over a
few actions, linear in cheap features of the reasoning trace:

- `pre`, before the step: let the small model `draft` it, or `escalate` (the
  next tier writes it);
- `draft`, after the small model drafted: `accept` it, pay for a `verify`
  (the next tier reads the draft by prefill: the verify scorer), or `reject`
  it (the next tier rewrites the step);
- `verified`, after a verification: `accept` or `reject`.

Deployed, the policy is deterministic: the cheap action (the first: draft,
accept) is taken when its probability reaches the threshold, else the likelier
of the others. A higher threshold spends more, so calibration moves it to a
cost target. In training (training.py) actions are sampled instead.

The features are built by one function (`features`) from a `Trace`, filled
the same way by the solver's router and by the training environment, so what
the policy saw in training is what it sees in use.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steer_cli.errors import UsageError

FORMAT = "steer-policy/1"
NODES: dict[str, tuple[str, ...]] = {
    "pre": ("draft", "escalate"),
    "draft": ("accept", "verify", "reject"),
    "verified": ("accept", "reject"),
}
FEATURES = (
    "bias", "entropy", "maxprob", "margin", "step", "tokens", "escalated_share",
    "prev_escalated", "prev_rejected", "prev_verified",
    "draft_mean", "draft_min", "draft_len", "draft_boxed", "verify_mean", "verify_min",
)
PREVIOUS = ("none", "accepted", "verified", "rejected", "escalated")


@dataclass
class Trace:
    """What the policy may look at when it decides."""

    signals: dict[str, float]  # the small model's next-token signals at the step start
    step: int  # index of this step
    tokens: int  # tokens accepted so far
    escalated: int  # steps so far written by a larger tier
    previous: str = "none"  # what happened to the previous step (PREVIOUS)
    draft_logprobs: list[float] | None = None  # the small model's draft, once drafted
    draft_text: str = ""
    verify_logprobs: list[float] | None = None  # the next tier's reading of it, once bought


def features(trace: Trace) -> np.ndarray:
    """The feature vector, every entry roughly in [-1, 1]; what a node cannot
    know yet (the draft before drafting, the verdict before verifying) is 0."""
    x = dict.fromkeys(FEATURES, 0.0)
    x["bias"] = 1.0
    x["entropy"] = min(trace.signals.get("entropy", 0.0) / 3.0, 2.0)
    x["maxprob"] = trace.signals.get("maxprob", 0.0)
    x["margin"] = trace.signals.get("margin", 0.0)
    x["step"] = min(trace.step / 10.0, 2.5)
    x["tokens"] = math.log1p(trace.tokens) / 7.0
    x["escalated_share"] = trace.escalated / trace.step if trace.step else 0.0
    x["prev_escalated"] = float(trace.previous == "escalated")
    x["prev_rejected"] = float(trace.previous == "rejected")
    x["prev_verified"] = float(trace.previous == "verified")
    if trace.draft_logprobs:
        x["draft_mean"] = math.exp(sum(trace.draft_logprobs) / len(trace.draft_logprobs))
        x["draft_min"] = math.exp(min(trace.draft_logprobs))
        x["draft_len"] = math.log1p(len(trace.draft_logprobs)) / 5.0
        x["draft_boxed"] = float("\\boxed" in trace.draft_text)
    if trace.verify_logprobs:
        x["verify_mean"] = math.exp(sum(trace.verify_logprobs) / len(trace.verify_logprobs))
        x["verify_min"] = math.exp(min(trace.verify_logprobs))
    return np.array([x[name] for name in FEATURES])


def softmax(z: np.ndarray) -> np.ndarray:
    """Over the last axis: one decision's logits, or a row per decision."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Policy:
    """Per node, a weight matrix (actions x features); `threshold` is the
    calibrated probability the cheap action needs."""

    weights: dict[str, np.ndarray] = field(default_factory=lambda: {n: np.zeros((len(a), len(FEATURES))) for n, a in NODES.items()})
    threshold: float = 0.5
    models: dict[str, str] = field(default_factory=dict)  # tier role -> model sha256 (or endpoint)
    model_names: dict[str, str] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # unit, target, lambda, curve, timings

    def probs(self, node: str, x: np.ndarray) -> np.ndarray:
        return softmax(self.weights[node] @ x)

    def act(self, node: str, x: np.ndarray, threshold: float | None = None) -> tuple[str, float]:
        """The deployed rule: (action, probability of the cheap action)."""
        p = self.probs(node, x)
        cheap = float(p[0])
        if cheap >= (self.threshold if threshold is None else threshold):
            return NODES[node][0], cheap
        return NODES[node][1 + int(np.argmax(p[1:]))], cheap

    def sample(self, node: str, x: np.ndarray, rng: np.random.Generator) -> tuple[int, np.ndarray]:
        p = self.probs(node, x)
        return int(rng.choice(len(p), p=p)), p

    # -- the file -----------------------------------------------------------------
    def body(self) -> dict:
        return {
            "format": FORMAT,
            "features": list(FEATURES),
            "nodes": {node: {"actions": list(NODES[node]), "weights": np.round(w, 6).tolist()} for node, w in self.weights.items()},
            "threshold": round(self.threshold, 6),
            "models": self.models,
            "model_names": self.model_names,
            "training": self.training,
        }

    def save(self, path: Path) -> None:
        body = self.body()
        body["sha256"] = _digest(body)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        tmp.replace(path)


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True).encode()).hexdigest()


def load(path: Path) -> Policy:
    """A policy file, checked whole: format, features, actions, shapes, finite
    weights, threshold, and its digest (an edited file is refused)."""
    fix = "train one with `steer policy train`"
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"policy file {path} does not exist", fix) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"policy file {path} is not readable JSON ({type(exc).__name__})", fix) from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise UsageError(f"{path} is not a steer policy file (format {FORMAT})", fix)
    if body.get("sha256") != _digest(body):
        raise UsageError(f"policy file {path} was changed after training (its digest does not match)", "retrain it, or restore the file as written")
    if body.get("features") != list(FEATURES):
        raise UsageError(f"policy file {path} was trained on other features than this steer computes", fix)
    weights = {}
    for node, actions in NODES.items():
        entry = (body.get("nodes") or {}).get(node) or {}
        w = np.asarray(entry.get("weights", []), dtype=float)
        if entry.get("actions") != list(actions) or w.shape != (len(actions), len(FEATURES)) or not np.isfinite(w).all():
            raise UsageError(f"policy file {path}: node {node!r} has the wrong actions or weights", fix)
        weights[node] = w
    threshold = body.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise UsageError(f"policy file {path}: threshold must be in [0, 1]", fix)
    return Policy(weights, float(threshold), dict(body.get("models") or {}), dict(body.get("model_names") or {}), dict(body.get("training") or {}))


def check_models(policy: Policy, identities: list[str], names: list[str]) -> None:
    """Refuse a policy trained for another model pair than the tiers it would route."""
    want = [policy.models.get("small"), policy.models.get("large")]
    have = [identities[0], identities[1] if len(identities) > 1 else None]
    if want != have:
        trained = " → ".join(policy.model_names.get(r, "?") for r in ("small", "large"))
        raise UsageError(f"the policy was trained for {trained}, not for {' → '.join(names[:2])}", "train one for these models with `steer policy train`")
