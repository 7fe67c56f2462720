"""Resumable runs over many problems: one JSON line out per line in.

Each result is appended and flushed as soon as it exists, so `kill -9` loses
at most the problem in flight; a rerun reads the output (refusing a file that
is not steer's before touching it), skips every row already answered (by id
and content, never by line number), retries error records and trims a torn
last line. Malformed input lines become error records naming the line and the
reason, and the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from steer_cli import jsonl
from steer_cli.answers import answers_match, gold_answer
from steer_cli.datasets import Item
from steer_cli.errors import UsageError
from steer_cli.solver import Event, Result, Solved, Solver


def batch_key(item: Item) -> str:
    """What a batch result is found by on resume: the row's id (given, or
    derived from its content) and its content, so an edited row is solved
    again and an inserted row never takes another row's result."""
    return f"{item.id}:{item.key}"


def read_done(path: Path) -> dict[str, dict]:
    """Finished results already in an output file, by batch key. The file
    must be a steer result file, checked before anything is changed; then a
    torn last line (the process died mid-write) is cut off so appending
    starts clean. Error records are not finished: a rerun retries them."""
    if path.is_dir():
        raise UsageError(f"-o {path} is a directory", "pass a file path for the results, e.g. -o results.jsonl")
    lines, torn = jsonl.read(path)
    done: dict[str, dict] = {}
    for n, line in lines:
        record = _record(line)
        if record is None:
            raise UsageError(f"-o {path} is not a steer result file (line {n} is not a result record)", "pass a new or earlier `steer batch` output file")
        if "error" not in record and "key" in record:
            done[record["key"]] = record
    if torn.strip() and not torn.startswith(b'{"id":'):
        raise UsageError(f"-o {path} is not a steer result file (its last line is not a result record)", "pass a new or earlier `steer batch` output file")
    jsonl.cut(path, torn)
    return done


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "id" not in record or not ("steps" in record or "error" in record):
        return None
    return record


def pending(items: list[Item], done: dict[str, dict], tally: Tally) -> list[Item]:
    """The items a rerun still has to do; the finished ones are tallied."""
    todo = []
    for item in items:
        record = done.get(batch_key(item)) if item.error is None else None
        if record is not None:
            tally.add(record)
        else:
            todo.append(item)
    return todo


def result_record(item: Item, result: Result, key: str | None = None) -> dict:
    record = {"id": item.id, **({"key": key} if key else {}), **result.to_dict()}
    if item.answer is not None:
        gold = gold_answer(item.answer)
        record["gold"] = gold
        record["correct"] = answers_match(result.answer, gold)
    return record


def error_record(item: Item, error: str | None = None) -> dict:
    return {"id": item.id, "line": item.line, "error": error or item.error}


def solve_one(solver: Solver, question: str) -> Result:
    return solve_events(solver.solve(question))


def solve_events(events: Iterable[Event]) -> Result:
    """The result at the end of a solution's events (drawing them as they pass, if they are drawn)."""
    return next(e.result for e in events if isinstance(e, Solved))


def open_output(path: Path | None) -> tuple[jsonl.Appender, dict[str, dict]]:
    """The results sink and what it already holds (nothing for stdout)."""
    if path is None:
        import sys

        return jsonl.Appender(None, sys.stdout), {}
    return jsonl.Appender(path), read_done(path)


@dataclass
class Tally:
    """Running figures for the progress bar."""

    done: int = 0
    failed: int = 0
    overflowed: int = 0  # out of context before an answer
    graded: int = 0
    correct: int = 0
    flops: float = 0.0
    large_only_flops: float = 0.0

    def add(self, record: dict) -> None:
        self.done += 1
        if "error" in record:
            self.failed += 1
            return
        self.overflowed += record.get("finish") == "context"  # solved, but cut off: the user must hear it
        if "correct" in record:
            self.graded += 1
            self.correct += bool(record["correct"])
        self.flops += record["cost"]["flops"]
        self.large_only_flops += record["cost"]["large_only_flops"]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def relative_cost(self) -> float | None:
        return self.flops / self.large_only_flops if self.large_only_flops else None

    def line(self) -> str:
        acc = f"acc {self.accuracy:.1%}" if self.accuracy is not None else "acc -"
        cost = f"rel. FLOPs {self.relative_cost:.2f}" if self.relative_cost is not None else "rel. FLOPs -"
        failed = f" · {self.failed} failed" if self.failed else ""
        overflowed = f" · {self.overflowed} out of context" if self.overflowed else ""
        return f"{acc} · {cost}{failed}{overflowed}"
