"""Training the control policy: REINFORCE under a cost constraint.

The objective is the constrained one of policy-guided routing: maximise
accuracy subject to E[relative cost] <= target. Its Lagrangian,
E[correct - lambda x cost], is maximised by policy gradient (REINFORCE, with
the leave-one-out mean of the problem's other rollouts as the baseline, and
Adam steps), while lambda follows dual ascent: it rises while the policy
overspends and falls while it underspends. The deployed policy is
deterministic; its threshold is then set by bisection so that the mean cost
on the training problems meets the target.

`episode(i, choose)` runs one rollout of problem i, asking `choose(node, trace)`
for each action; rollouts.TreeEnv is the real one, tests use a synthetic one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from steer_cli.policy import NODES, Policy, Trace, features
from steer_cli.policy import softmax as softmax_of
from steer_cli.rollouts import Episode

Choose = Callable[[str, Trace], int]
EpisodeFn = Callable[[int, Choose], Episode]


@dataclass
class Settings:
    target: float  # relative cost to meet in expectation
    epochs: int = 40
    rollouts: int = 4  # per problem and epoch: one sampled, and branch points for the rest
    lr: float = 0.05
    lambda_lr: float = 0.05  # slow against the policy's own steps, or the two chase each other
    initial_lambda: float = 1.0  # a point of accuracy is worth the top tier's whole cost
    entropy: float = 0.01
    temperature: float = 0.1  # softness of the target over actions, relative to their value spread
    greedy_branches: bool = False  # finish branches with the deterministic policy: cheaper, but it learns less (tests)
    deadline: float | None = None  # time.monotonic() after which no further epoch starts
    explore: float = 0.0  # share of sampled actions drawn uniformly (branching already tries every action)
    seed: int = 0


def prior() -> Policy:
    """A start that already behaves like a cautious router (draft, accept),
    so the first rollouts are cheap and the tree grows where it matters."""
    policy = Policy()
    policy.weights["pre"][0, 0] = 1.0
    policy.weights["draft"][0, 0] = 1.0
    policy.weights["verified"][0, 0] = 1.0
    return policy


def sampler(policy: Policy, rng: np.random.Generator, explore: float = 0.0) -> Choose:
    def choose(node: str, trace: Trace) -> int:
        if explore and rng.random() < explore:
            return int(rng.integers(len(NODES[node])))
        return policy.sample(node, features(trace), rng)[0]

    return choose


def deterministic(policy: Policy, threshold: float) -> Choose:
    return lambda node, trace: NODES[node].index(policy.act(node, features(trace), threshold)[0])


class _Adam:
    def __init__(self, shapes: dict[str, tuple[int, ...]], lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m = {k: np.zeros(s) for k, s in shapes.items()}
        self.v = {k: np.zeros(s) for k, s in shapes.items()}

    def ascend(self, weights: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            m, v = self.m[k] / (1 - 0.9**self.t), self.v[k] / (1 - 0.999**self.t)
            weights[k] += self.lr * m / (np.sqrt(v) + 1e-8)


def scripted(prefix: list[int], then: Choose) -> Choose:
    """Replay `prefix` (a deterministic environment returns to the same state), then `then`."""
    rest = iter(prefix)

    def choose(node: str, trace: Trace) -> int:
        for action in rest:
            return action
        return then(node, trace)

    return choose


def train(episode: EpisodeFn, n: int, settings: Settings, policy: Policy | None = None,
          progress: Callable[[dict], None] = lambda row: None) -> tuple[Policy, list[dict]]:
    """Policy gradient on the Lagrangian with branched rollouts ("vine"
    sampling, as deterministic greedy decoding allows): per problem, one
    sampled rollout, then at `rollouts - 1` of its decisions every action is
    tried and the rest rolled out with the deterministic policy (so they
    differ by the action alone, and revisit cached transcripts). The gradient at such a decision
    weighs every action by its advantage over the policy's own mean, which a
    terminal, all-or-nothing reward (is the answer right?) needs: a single
    rollout rarely shows which step made the difference. Returns the policy
    and its curve (per epoch: accuracy, cost, reward, lambda)."""
    rng = np.random.default_rng(settings.seed)
    policy = policy or prior()
    adam = _Adam({k: w.shape for k, w in policy.weights.items()}, settings.lr)
    lam = settings.initial_lambda
    curve = []
    for epoch in range(settings.epochs):
        if settings.deadline is not None and time.monotonic() > settings.deadline:
            break
        grads = {node: np.zeros_like(w) for node, w in policy.weights.items()}
        costs, rights, points = [], [], 0
        for i in range(n):
            main = episode(i, sampler(policy, rng, settings.explore))
            costs.append(main.cost)
            rights.append(float(main.correct))
            picks = rng.choice(len(main.decisions), size=min(len(main.decisions), max(1, settings.rollouts - 1)), replace=False) if main.decisions else []
            for m in picks:
                node, x, _ = main.decisions[m]
                prefix = [a for _, _, a in main.decisions[:m]]
                seed = int(rng.integers(1 << 31))

                def then(seed: int = seed) -> Choose:
                    # The deterministic policy finishes a branch: greedy decoding then revisits
                    # the same transcripts until the policy changes, and the cache answers.
                    return deterministic(policy, 0.5) if settings.greedy_branches else sampler(policy, np.random.default_rng(seed), settings.explore)

                values = np.array([_value(episode(i, scripted(prefix + [a], then())), lam) for a in range(len(NODES[node]))])
                p = policy.probs(node, x)
                # Move toward the actions that did best here (a soft greedy step of
                # policy iteration), as far as the choice matters: unlike the plain
                # gradient p * A it does not vanish where the policy has all but
                # ruled an action out.
                spread = float(values.max() - values.min())
                if spread > 1e-9:
                    target = softmax_of((values - values.max()) / (settings.temperature * spread))
                    grads[node] += spread * np.outer(target - p, x)
                h = -p * (np.log(p + 1e-12) + float(-(p * np.log(p + 1e-12)).sum()))
                grads[node] += settings.entropy * np.outer(h, x)
                points += 1
        for node in grads:
            grads[node] /= max(points, 1)
        adam.ascend(policy.weights, grads)
        cost, accuracy = float(np.mean(costs)), float(np.mean(rights))
        lam = max(0.0, lam + settings.lambda_lr * (cost - settings.target))
        row = {"epoch": epoch + 1, "accuracy": round(accuracy, 4), "cost": round(cost, 4), "reward": round(accuracy - lam * cost, 4), "lambda": round(lam, 4)}
        curve.append(row)
        progress(row)
    policy.training["lambda"] = round(lam, 4)
    return policy, curve


def _value(e: Episode, lam: float) -> float:
    return float(e.correct) - lam * e.cost


def evaluate(episode: EpisodeFn, n: int, policy: Policy, threshold: float) -> tuple[float, float]:
    """(accuracy, mean cost) of the deterministic policy at `threshold`."""
    choose = deterministic(policy, threshold)
    episodes = [episode(i, choose) for i in range(n)]
    return float(np.mean([e.correct for e in episodes])), float(np.mean([e.cost for e in episodes]))


def calibrate(episode: EpisodeFn, n: int, policy: Policy, target: float, rounds: int = 8) -> tuple[float, float, float]:
    """The threshold whose deterministic mean cost is closest to `target`
    without exceeding it where possible (bisection: cost rises with the
    threshold); returns (threshold, accuracy, cost)."""
    low, high = 0.0, 1.0
    best = (0.0, *evaluate(episode, n, policy, 0.0))
    for _ in range(rounds):
        mid = (low + high) / 2
        accuracy, cost = evaluate(episode, n, policy, mid)
        if cost <= target:
            low = mid
            if cost >= best[2]:
                best = (mid, accuracy, cost)
        else:
            high = mid
    return best
