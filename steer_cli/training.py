"""Training the control policy under a cost constraint.

The objective is the constrained one of policy-guided routing: maximise
accuracy subject to E[relative cost] <= target. Its Lagrangian,
E[correct - lambda x cost], is maximised by policy improvement on branched
rollouts (every action tried at a decision, the values compared, Adam steps
toward the better ones), while lambda follows dual ascent: it rises while the
policy overspends and falls while it underspends. The deployed policy is
deterministic; its threshold is then set by bisection so that the mean cost
on the training problems meets the target.

`episode(i, choose)` runs one rollout of problem i, asking `choose(node, x)`
(x: the decision's features) for each action; rollouts.Rollouts is the real
one (the solver itself), tests use a synthetic one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from steer_cli import jsonl
from steer_cli.policy import FEATURES, NODES, Policy, softmax
from steer_cli.rollouts import Choose, Episode
EpisodeFn = Callable[[int, Choose], Episode]
Task = Callable[[EpisodeFn], Any]
RunAll = Callable[[list[Task]], list]  # runs each task with an episode function; the results in task order


def one_by_one(episode: EpisodeFn) -> RunAll:
    return lambda tasks: [task(episode) for task in tasks]


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
    deadline: float | None = None  # time.monotonic() after which no further batch starts
    explore: float = 0.0  # share of sampled actions drawn uniformly (branching already tries every action)
    batch: int | None = None  # problems per update (None: one update per epoch); smaller learns more per outcome computed
    focus: float | None = None  # branch where the policy is unsure: weight 1 - max prob + focus (None: uniform)
    replay: int = 0  # Adam steps per update over every branch point gathered so far (0: one step on the batch's own)
    seed: int = 0


@dataclass
class Point:
    """A branch point: every action tried at one decision, each rolled out to
    its end. Kept as (correct, cost) per action, not as values, so a replayed
    point is valued at the current lambda."""

    node: str
    x: np.ndarray
    outcomes: np.ndarray  # (actions, 2): correct, relative cost

    def row(self) -> dict:
        return {"node": self.node, "x": np.round(self.x, 6).tolist(), "outcomes": np.round(self.outcomes, 6).tolist()}


def load_points(path: Path) -> list[Point]:
    """Branch points an earlier run kept (a torn or foreign line is skipped:
    points are only training data, never a result)."""
    points = []
    for row in jsonl.rows(path):
        try:
            point = Point(row["node"], np.asarray(row["x"], dtype=float), np.asarray(row["outcomes"], dtype=float))
        except (ValueError, KeyError, TypeError):
            continue
        if point.node in NODES and point.x.shape == (len(FEATURES),) and point.outcomes.shape == (len(NODES[point.node]), 2):
            points.append(point)
    return points


def keep_points(path: Path) -> Callable[[list[Point]], None]:
    def keep(points: list[Point]) -> None:
        with jsonl.Appender(path) as out:
            for point in points:
                out.append(point.row())

    return keep


def prior() -> Policy:
    """A start that already behaves like a cautious router (draft, accept),
    so the first rollouts are cheap and the tree grows where it matters."""
    policy = Policy()
    policy.weights["pre"][0, 0] = 1.0
    policy.weights["draft"][0, 0] = 1.0
    policy.weights["verified"][0, 0] = 1.0
    return policy


def sampler(policy: Policy, rng: np.random.Generator, explore: float = 0.0) -> Choose:
    def choose(node: str, x: np.ndarray) -> int:
        if explore and rng.random() < explore:
            return int(rng.integers(len(NODES[node])))
        return policy.sample(node, x, rng)[0]

    return choose


def deterministic(policy: Policy, threshold: float) -> Choose:
    return lambda node, x: NODES[node].index(policy.act(node, x, threshold)[0])


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

    def choose(node: str, x: np.ndarray) -> int:
        for action in rest:
            return action
        return then(node, x)

    return choose


def train(episode: EpisodeFn, n: int, settings: Settings, policy: Policy | None = None,
          progress: Callable[[dict], None] = lambda row: None, tick: Callable[[], None] = lambda: None,
          points: list[Point] | None = None, keep: Callable[[list[Point]], None] = lambda fresh: None,
          run_all: RunAll | None = None) -> tuple[Policy, list[dict]]:
    """Policy improvement on the Lagrangian with branched rollouts ("vine"
    sampling, as deterministic greedy decoding allows): per problem, one
    sampled rollout, then at `rollouts - 1` of its decisions (`_branch_points`)
    every action is tried and the rest rolled out, so
    the branches differ by that action alone and revisit cached transcripts.
    A terminal, all-or-nothing reward (is the answer right?) needs this: a
    single rollout rarely shows which step made the difference. Updates come
    every `batch` problems; lambda moves with each batch's cost. With
    `replay`, each update takes that many steps over every branch point so far
    (`points`, which an earlier run may pass in and which grows in place): the
    engines' outcomes are dear, gradient steps are not. Returns the policy and
    its curve (per epoch: accuracy, cost, reward, lambda; per update in
    `policy.training["updates"]`); `tick` is called after each problem's
    rollouts (from any thread), `keep` with each batch's new points. With
    `run_all` a batch's problems may be played at once (--parallel): each
    then draws from a seed of its own, so neither how many run at once nor
    which finishes first changes what is learned (one at a time, they draw
    from one stream)."""
    rng = np.random.default_rng(settings.seed)
    policy = policy or prior()
    adam = _Adam({k: w.shape for k, w in policy.weights.items()}, settings.lr)
    lam = settings.initial_lambda
    batch = min(settings.batch or n, n)
    points = [] if points is None else points
    curve, updates = [], []  # per epoch; per update (a run shorter than an epoch still has a curve)
    for epoch in range(settings.epochs):
        if _late(settings):
            break
        costs, rights = [], []
        order = rng.permutation(n) if batch < n else np.arange(n)
        for start in range(0, n, batch):
            if _late(settings):
                break
            chunk = order[start : start + batch]
            fresh, chunk_costs = _collect(episode, run_all, chunk, policy, settings, rng if run_all is None else len(updates), rights, tick)
            costs += chunk_costs
            points += fresh
            keep(fresh)
            for _ in range(max(1, settings.replay)):
                adam.ascend(policy.weights, _gradient(policy, points if settings.replay else fresh, lam, settings))
            lam = max(0.0, lam + settings.lambda_lr * len(chunk) / n * (float(np.mean(chunk_costs)) - settings.target))
            updates.append({"problems": epoch * n + start + len(chunk), "accuracy": round(float(np.mean(rights[-len(chunk):])), 4),
                            "cost": round(float(np.mean(chunk_costs)), 4), "lambda": round(lam, 4)})
        if not costs:
            break
        cost, accuracy = float(np.mean(costs)), float(np.mean(rights))
        row = {"epoch": epoch + 1, "accuracy": round(accuracy, 4), "cost": round(cost, 4), "reward": round(accuracy - lam * cost, 4), "lambda": round(lam, 4)}
        curve.append(row)
        progress(row)
    policy.training["lambda"] = round(lam, 4)
    policy.training["updates"] = updates
    return policy, curve


def _late(settings: Settings) -> bool:
    return settings.deadline is not None and time.monotonic() > settings.deadline


def _collect(episode: EpisodeFn, run_all: RunAll | None, chunk, policy: Policy, settings: Settings, stream: np.random.Generator | int,
             rights: list[float], tick: Callable[[], None]) -> tuple[list[Point], list[float]]:
    """One sampled rollout per problem and its branch points; returns the points
    and the rollouts' costs. `stream`: the run's generator (one problem after
    another), or the update's number (with `run_all`: a seed per problem)."""

    def play(i: int, episode: EpisodeFn, rng: np.random.Generator) -> tuple[Episode, list[Point]]:
        main = episode(i, sampler(policy, rng, settings.explore))
        points = []
        for m in _branch_points(main.decisions, policy, settings, rng):
            node, x, _ = main.decisions[m]
            prefix = [a for _, _, a in main.decisions[:m]]
            seed = int(rng.integers(1 << 31))
            ends = [episode(i, scripted(prefix + [a], _finisher(policy, settings, seed))) for a in range(len(NODES[node]))]
            points.append(Point(node, np.asarray(x, dtype=float), np.array([[float(e.correct), e.cost] for e in ends])))
        tick()
        return main, points

    if isinstance(stream, np.random.Generator):
        played = [play(int(i), episode, stream) for i in chunk]
    else:
        assert run_all is not None
        played = run_all([lambda ep, i=int(i): play(i, ep, np.random.default_rng([settings.seed, stream, i])) for i in chunk])
    rights += [float(main.correct) for main, _ in played]
    return [p for _, points in played for p in points], [main.cost for main, _ in played]


def _branch_points(decisions: list, policy: Policy, settings: Settings, rng: np.random.Generator) -> list[int]:
    """Where to try every action: distinct decisions drawn uniformly, or with
    `focus` weighted toward those the policy is least sure of (on the synthetic
    process that did not help, so it is off by default)."""
    if not decisions:
        return []
    k = min(len(decisions), max(1, settings.rollouts - 1))
    if settings.focus is None:
        return list(rng.choice(len(decisions), size=k, replace=False))
    weight = np.array([1.0 - float(policy.probs(node, x).max()) + settings.focus for node, x, _ in decisions])
    return list(rng.choice(len(decisions), size=k, replace=False, p=weight / weight.sum()))


def _finisher(policy: Policy, settings: Settings, seed: int) -> Choose:
    # The deterministic policy finishing a branch revisits the same transcripts
    # until the policy changes, and the cache answers; sampling learns more.
    return deterministic(policy, 0.5) if settings.greedy_branches else sampler(policy, np.random.default_rng(seed), settings.explore)


def _gradient(policy: Policy, points: list[Point], lam: float, settings: Settings) -> dict[str, np.ndarray]:
    """Move toward the actions that did best at each point (a soft greedy step
    of policy iteration), as far as the choice matters: unlike the plain
    gradient p x advantage it does not vanish where the policy has all but
    ruled an action out. Plus an entropy bonus that keeps it exploring.
    Averaged over the points."""
    grads = {node: np.zeros_like(w) for node, w in policy.weights.items()}
    for node in grads:
        mine = [p for p in points if p.node == node]
        if not mine:
            continue
        x = np.stack([p.x for p in mine])
        outcomes = np.stack([p.outcomes for p in mine])
        values = outcomes[:, :, 0] - lam * outcomes[:, :, 1]
        p = softmax(x @ policy.weights[node].T)
        spread = values.max(axis=1) - values.min(axis=1)
        scale = settings.temperature * np.where(spread > 1e-9, spread, 1.0)
        target = softmax((values - values.max(axis=1, keepdims=True)) / scale[:, None])
        logp = np.log(p + 1e-12)
        entropy = -p * (logp + (-(p * logp).sum(axis=1, keepdims=True)))
        pull = np.where(spread[:, None] > 1e-9, spread[:, None] * (target - p), 0.0)
        grads[node] = (pull + settings.entropy * entropy).T @ x
    return {node: g / max(len(points), 1) for node, g in grads.items()}


def evaluate(episode: EpisodeFn, n: int, policy: Policy, threshold: float, run_all: RunAll | None = None) -> tuple[float, float]:
    """(accuracy, mean cost) of the deterministic policy at `threshold`."""
    choose = deterministic(policy, threshold)
    episodes = (run_all or one_by_one(episode))([lambda play, i=i: play(i, choose) for i in range(n)])
    return float(np.mean([e.correct for e in episodes])), float(np.mean([e.cost for e in episodes]))


def calibrate(episode: EpisodeFn, n: int, policy: Policy, target: float, rounds: int = 6,
              tolerance: float = 0.0, deadline: float | None = None, run_all: RunAll | None = None) -> tuple[float, float, float]:
    """The threshold whose deterministic mean cost is closest to `target`
    without exceeding it where possible (bisection: cost rises with the
    threshold), stopping early once within `tolerance` under it (every round
    plays the problems anew, on transcripts the cache may not hold) or once
    past `deadline` (time.monotonic()); returns (threshold, accuracy, cost)."""
    low, high = 0.0, 1.0
    best = (0.0, *evaluate(episode, n, policy, 0.0, run_all))
    for _ in range(rounds):
        if deadline is not None and time.monotonic() > deadline:
            break
        mid = (low + high) / 2
        accuracy, cost = evaluate(episode, n, policy, mid, run_all)
        if cost <= target:
            low = mid
            if cost >= best[2]:
                best = (mid, accuracy, cost)
            if cost >= target - tolerance:
                break
        else:
            high = mid
    return best
