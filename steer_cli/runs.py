"""Resumable runs over many problems: one JSON line out per line in.

Each result is appended and flushed as soon as it exists, so `kill -9` loses
at most the problem in flight; a rerun reads the output, skips every id
already there and trims a torn last line. Malformed input lines become error
records naming the line and the reason, and the run goes on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from collections.abc import Iterable, Iterator

from steer_cli.answers import answers_match, gold_answer
from steer_cli.errors import UsageError
from steer_cli.solver import Result, Solved, Solver


@dataclass(frozen=True)
class Item:
    """One input line: a problem to solve, or the reason it cannot be."""

    id: str
    line: int
    question: str | None = None
    answer: str | None = None
    error: str | None = None


def parse_lines(lines: Iterable[str]) -> Iterator[Item]:
    seen: set[str] = set()
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield Item(id=f"line-{n}", line=n, error=f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            yield Item(id=f"line-{n}", line=n, error=f"line {n}: expected a JSON object, got {type(row).__name__}")
            continue
        item_id = str(row["id"]) if row.get("id") is not None else f"line-{n}"
        question = row.get("question") or row.get("problem") or row.get("prompt")
        if item_id in seen:
            yield Item(id=f"line-{n}", line=n, error=f"line {n}: duplicate id {item_id!r}")
            continue
        seen.add(item_id)
        if not isinstance(question, str) or not question.strip():
            yield Item(id=item_id, line=n, error=f"line {n}: no 'question', 'problem' or 'prompt' text")
            continue
        answer = row.get("answer")
        yield Item(id=item_id, line=n, question=question, answer=None if answer is None else str(answer))


def read_done(path: Path) -> dict[str, dict]:
    """Records already in an output file, by id. A torn last line (the
    process died mid-write) is cut off so appending starts clean."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as f:
            f.truncate(keep)
    done: dict[str, dict] = {}
    for n, line in enumerate(data[:keep].decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{path} line {n} is not a result record", "pass a different -o file, or remove that line") from None
        done[str(record.get("id"))] = record
    return done


def result_record(item: Item, result: Result) -> dict:
    record = {"id": item.id, **result.to_dict()}
    if item.answer is not None:
        gold = gold_answer(item.answer)
        record["gold"] = gold
        record["correct"] = answers_match(result.answer, gold)
    return record


def error_record(item: Item) -> dict:
    return {"id": item.id, "line": item.line, "error": item.error}


def solve_one(solver: Solver, question: str) -> Result:
    return next(e.result for e in solver.solve(question) if isinstance(e, Solved))


def append(out: IO[str], record: dict) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def open_output(path: Path | None) -> tuple[IO[str], dict[str, dict]]:
    """The output stream and what it already holds (nothing for stdout)."""
    if path is None:
        import sys

        return sys.stdout, {}
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(path)
    return open(path, "a", encoding="utf-8"), done


@dataclass
class Tally:
    """Running figures for the progress bar."""

    done: int = 0
    failed: int = 0
    graded: int = 0
    correct: int = 0
    flops: float = 0.0
    large_only_flops: float = 0.0

    def add(self, record: dict) -> None:
        self.done += 1
        if "error" in record:
            self.failed += 1
            return
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
        cost = f"rel. cost {self.relative_cost:.2f}" if self.relative_cost is not None else "rel. cost -"
        failed = f" · {self.failed} failed" if self.failed else ""
        return f"{acc} · {cost}{failed}"


def fsync_quietly(out: IO[str]) -> None:
    try:
        os.fsync(out.fileno())
    except (OSError, ValueError):
        pass
