"""Problem sets: the GSM8K slice shipped in the package, or a user's JSONL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from steer_cli.errors import UsageError

SHIPPED = ("dev", "train")


@dataclass(frozen=True)
class Problem:
    id: str
    question: str
    answer: str | None = None


def load_problems(data: str, limit: int | None = None) -> list[Problem]:
    """`data` is a shipped slice name (dev, train) or a JSONL path."""
    if data in SHIPPED:
        text = files("steer_cli").joinpath("data", "gsm8k", f"{data}.jsonl").read_text(encoding="utf-8")
        prefix = f"gsm8k-{data}-"
    else:
        path = Path(data)
        if not path.is_file():
            raise UsageError(f"data file not found: {data}", f"pass a JSONL file or one of: {', '.join(SHIPPED)}")
        text, prefix = path.read_text(encoding="utf-8"), ""
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        question = row.get("question") or row.get("problem") or row.get("prompt")
        problems.append(Problem(id=str(row.get("id", f"{prefix}{n:04d}")), question=question, answer=row.get("answer")))
        if limit is not None and len(problems) >= limit:
            break
    return problems
