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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from steer_cli.answers import answers_match, gold_answer
from steer_cli.datasets import Item
from steer_cli.errors import UsageError
from steer_cli.solver import Result, Solved, Solver


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
    if not path.exists():
        return {}
    if path.is_dir():
        raise UsageError(f"-o {path} is a directory", "pass a file path for the results, e.g. -o results.jsonl")
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    done: dict[str, dict] = {}
    for n, line in enumerate(data[:keep].decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        record = _record(line)
        if record is None:
            raise UsageError(f"-o {path} is not a steer result file (line {n} is not a result record)", "pass a new or earlier `steer batch` output file")
        if "error" not in record and "key" in record:
            done[record["key"]] = record
    torn = data[keep:]
    if torn.strip():
        if not torn.startswith(b'{"id":'):
            raise UsageError(f"-o {path} is not a steer result file (its last line is not a result record)", "pass a new or earlier `steer batch` output file")
        with path.open("r+b") as f:
            f.truncate(keep)
    return done


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or "id" not in record or not ("steps" in record or "error" in record):
        return None
    return record


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
    return next(e.result for e in solver.solve(question) if isinstance(e, Solved))


def append(out: IO[str], record: dict) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def open_output(path: Path | None) -> tuple[IO[str], dict[str, dict]]:
    """The output stream and what it already holds (nothing for stdout)."""
    if path is None:
        import sys

        return sys.stdout, {}
    done = read_done(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
        cost = f"rel. FLOPs {self.relative_cost:.2f}" if self.relative_cost is not None else "rel. FLOPs -"
        failed = f" · {self.failed} failed" if self.failed else ""
        return f"{acc} · {cost}{failed}"


def fsync_quietly(out: IO[str]) -> None:
    try:
        os.fsync(out.fileno())
    except (OSError, ValueError):
        pass
