"""What the user sees on stderr while steer works.

A terminal gets a live view: finished steps are printed once above a small
live region holding the step being written and a cost footer. Anything else
(a pipe, a file, CI) gets one plain line per step, no animation. stdout is
never touched here; it belongs to answers and JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from rich.console import Console, Group
from rich.live import Live
from rich.progress import Progress
from rich.text import Text

from steer_cli.solver import Discarded, Event, Result, Solved, Step, StepFinished, StepStarted, TextDelta

# Step confidence = geometric-mean probability of the step's tokens.
GREEN, YELLOW = 0.85, 0.6
TIER_STYLES = ("cyan", "magenta", "blue", "bright_red")


_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if chr(c) not in "\n\t"} | {0x7F: "\\x7f"}


def printable(text: str) -> str:
    """Model text may hold control bytes (even escape sequences); never let
    them drive the user's terminal."""
    return text.translate(_CONTROL)


def confidence_style(conf: float) -> str:
    return "green" if conf >= GREEN else "yellow" if conf >= YELLOW else "red"


def step_confidence(step: Step) -> float:
    return math.exp(step.mean_logprob)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def legend(router: str, threshold: float | None, signal: str | None) -> Text:
    text = Text("colour = step confidence: ", style="dim")
    text.append(f"≥{GREEN}", style="green").append(" / ", style="dim")
    text.append(f"≥{YELLOW}", style="yellow").append(" / ", style="dim")
    text.append(f"<{YELLOW}", style="red")
    from steer_cli.routers import REGISTRY

    rule = REGISTRY[router].rule if router in REGISTRY else ""
    if rule and threshold is not None:
        text.append(f"   router {router}: {rule.format(signal=signal, threshold=threshold)}", style="dim")
    else:
        text.append(f"   router {router}", style="dim")
    return text


def _badge(index: int, tier: int, model: str, score: float | None) -> Text:
    badge = Text(f" {index + 1:>2} ", style="bold reverse")
    badge.append(f" {model} ", style=f"bold {TIER_STYLES[tier % len(TIER_STYLES)]}")
    if score is not None:
        badge.append(f"route_score {score:.2f} ", style="dim")
    return badge


def render_step(step: Step) -> Text:
    conf = step_confidence(step)
    line = _badge(step.index, step.tier, step.model, step.score)
    line.append(f"confidence {conf:.2f}  ", style=confidence_style(conf))
    line.append(printable(step.text.strip()), style=confidence_style(conf))
    return line


def render_discarded(event: Discarded) -> Text:
    """A rejected draft (TRIM) or a whole answer (cascade), struck through."""
    score = "-" if event.score is None else f"{event.score:.2f}"
    if event.by == "mix":  # random mixing drew this query for the top tier
        return Text(f"  ↷ mix draw {score}: tier {event.to_tier + 1} solves the problem alone", style="dim")
    if not event.steps:  # P(IK) sent the query past a tier before it wrote anything
        return Text(f"  ↷ P(IK) {score}: tier {event.to_tier} skipped, tier {event.to_tier + 1} solves the problem", style="dim")
    line = Text("  ✗ ", style="bold red")
    line.append(f"{event.steps[0].model} discarded (score {score}), tier {event.to_tier + 1} takes over: ", style="dim")
    line.append(printable(" ".join(s.text.strip() for s in event.steps))[:200], style="dim strike")
    return line


def footer(steps: list[Step]) -> Text:
    """Tokens written so far, per model."""
    per_model: dict[str, int] = {}
    for s in steps:
        per_model[s.model] = per_model.get(s.model, 0) + s.tokens
    parts = [f"{m}: {n} tok" for m, n in per_model.items()] or ["starting"]
    return Text("  " + " · ".join(parts), style="dim")


def summary(result: Result) -> Text:
    c = result.cost
    text = Text(f"answer: {result.answer}", style="bold")
    large_steps = sum(1 for s in result.steps if s.tier == len(c.models) - 1)
    dropped = f", {len(result.drafts)} discarded" if result.drafts else ""
    bound = " · budget bound" if result.budget_bound else ""
    for cap in c.budget:
        bound += f" · larger tiers spent {cap['spent'] / cap['cap']:.0%} of the {cap['unit']} cap" if cap["cap"] else ""
    text.append(
        f"   steps {len(result.steps)} ({large_steps} on the top tier{dropped}){bound} · relative cost {c.relative_cost:.2f} in {c.unit}"
        f"{_other_units(c)} · {c.wall_s:.1f}s",
        style="dim",
    )
    return text


def _other_units(cost) -> str:
    others = [f"{unit} {value:.2f}" for unit, value in cost.relative.items() if unit != cost.unit and value is not None]
    return f" ({', '.join(others)})" if others else ""


_UNANSWERED = {
    "context": "the transcript outgrew the context window (raise --n-ctx or n_ctx in models.yaml, or shorten the problem)",
    "max_tokens": "the solution reached the per-problem token limit before stating an answer (raise --max-steps or --max-step-tokens)",
    "max_steps": "the solution reached --max-steps before stating an answer (raise --max-steps)",
    "repetition": "the model started repeating itself before stating an answer",
}


def why_unanswered(result: Result) -> str:
    """One line on why a solution has no answer, with what to change."""
    if result.finish in _UNANSWERED:
        return _UNANSWERED[result.finish]
    return "the model finished without stating a final answer (try --router large, or another model)"


def show(events: Iterable[Event], console: Console, live: bool | None = None) -> Iterator[Event]:
    """Pass events through while drawing them; live only on a terminal."""
    use_live = console.is_terminal if live is None else live
    return _show_live(events, console) if use_live else _show_plain(events, console)


def _show_plain(events: Iterable[Event], console: Console) -> Iterator[Event]:
    for event in events:
        if isinstance(event, StepFinished):
            console.print(render_step(event.step))
        elif isinstance(event, Discarded):
            console.print(render_discarded(event))
        elif isinstance(event, Solved):
            console.print(summary(event.result))
        yield event


def _show_live(events: Iterable[Event], console: Console) -> Iterator[Event]:
    done: list[Step] = []
    current = Text()
    with Live(console=console, refresh_per_second=12, transient=True) as live:
        for event in events:
            if isinstance(event, StepStarted):
                current = _badge(event.index, event.tier, event.model, event.score)
            elif isinstance(event, TextDelta):
                current.append(printable(event.text).replace("\n", " "))
            elif isinstance(event, StepFinished):
                done.append(event.step)
                live.console.print(render_step(event.step))
                current = Text()
            elif isinstance(event, Discarded):
                live.console.print(render_discarded(event))
                current = Text()
            elif isinstance(event, Solved):
                live.update(Text())
                live.console.print(summary(event.result))
            live.update(Group(current, footer(done)))
            yield event


def duration(seconds: float) -> str:
    """Seconds as a person says them: 40 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Counter:
    """Progress over a known number of items, on stderr: a rich bar on a
    terminal, a plain line every `every` items elsewhere, nothing when quiet.
    With a `deadline` (time.monotonic()) the work stops there, so the time
    left is never said to be longer."""

    def __init__(self, name: str, total: int, quiet: bool = False, every: int = 1, transient: bool = False, deadline: float | None = None) -> None:
        self.name, self.total, self.quiet, self.every, self.transient = name, total, quiet, every, transient
        self.deadline = deadline
        self.console = stderr_console()
        self.bar: Progress | None = None
        self._first: tuple[float, int] | None = None  # (time, count) the pace is measured from
        self.done = 0

    def __enter__(self) -> Counter:
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

            eta = [] if self.deadline is not None else [TimeRemainingColumn()]  # the note says the capped time left instead
            self.bar = Progress(
                TextColumn(self.name), BarColumn(), MofNCompleteColumn(), *eta, TextColumn("{task.fields[note]}"),
                console=self.console, transient=self.transient,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.name, total=self.total, note="")
        return self

    def update(self, done: int, note: str = "") -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, note=f"{note}{self._eta(done)}" if self.deadline is not None else note)
        elif not self.quiet and done and done % self.every == 0:
            self.console.print(f"steer: {self.name} {done}/{self.total}{self._eta(done)} · {note}", highlight=False)

    def advance(self, note: str = "", reused: bool = False) -> None:
        """One more item done. A reused one (read from records at once) moves
        the point the pace is measured from, so the time left is the solving pace's."""
        import time

        self.done += 1
        if reused:
            self._first = (time.monotonic(), self.done)
        self.update(self.done, note)

    def _eta(self, done: int) -> str:
        """Time left at the pace so far (plain lines; the bar shows its own)."""
        import time

        now = time.monotonic()
        if self._first is None:
            self._first = (now, done)
            return ""
        start, at = self._first
        left = (now - start) / (done - at) * (self.total - done) if at < done < self.total else 0.0
        if self.deadline is not None:
            left = min(left, max(0.0, self.deadline - now))
        return f" · about {duration(left)} left" if left >= 1 else ""

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
