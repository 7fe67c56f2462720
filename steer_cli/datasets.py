"""Problem sets, read one way for every command: the GSM8K slices shipped in
the package, a user's JSONL file, or stdin.

Rows come in the common shapes: the text under `question`, `problem` or
`prompt`; the gold answer under `answer` (a string, GSM8K's `... #### N`
included, or a number) or, MATH-style, as the last `\\boxed{}` of `solution`;
an optional `id`. A row that cannot be used becomes an `Item` with `error`
set (its line named), so callers decide whether to stop (`--strict`) or go on,
and all of it happens before any model loads.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from steer_cli import jsonl
from steer_cli.errors import UsageError

SHIPPED = ("dev", "train")


@dataclass(frozen=True)
class Item:
    """One input row: a problem to solve, or the reason it cannot be."""

    id: str
    line: int
    question: str | None = None
    answer: str | None = None  # gold as written (GSM8K's '#### N' is read when grading)
    error: str | None = None

    @property
    def key(self) -> str:
        """What a record of this problem is found by: its content, so an
        edited or reordered file never reuses another problem's record."""
        return content_key(self.question or "", self.answer)


def content_key(question: str, answer: str | None) -> str:
    return hashlib.sha256(json.dumps([question, answer], ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def read_text(source: str) -> tuple[str, str]:
    """(text, id prefix) of a shipped slice, a file, or stdin ('-');
    anything unreadable is one UsageError naming the fix."""
    if source in SHIPPED:
        return files("steer_cli").joinpath("data", "gsm8k", f"{source}.jsonl").read_text(encoding="utf-8"), f"gsm8k-{source}-"
    if source == "-":
        return decode(sys.stdin.buffer.read(), "stdin"), ""
    path = Path(source)
    if path.is_dir():
        raise UsageError(f"{source} is a directory, not a JSONL file", "pass the path of a .jsonl file")
    if not path.is_file():
        raise UsageError(f"data file not found: {source}", f"pass a JSONL file, '-' for stdin, or one of: {', '.join(SHIPPED)}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}", "check the path and its permissions") from None
    return decode(raw, source), ""


def decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(f"{name} is not UTF-8 text (line {line}, byte {exc.start})", "re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None


def parse_rows(text: str, prefix: str = "") -> list[Item]:
    """Every non-blank line as an Item, bad ones carrying their error."""
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for n, raw in enumerate(jsonl.split(text), 1):
        if not raw.strip():
            continue
        item = _parse_row(raw, n, prefix)
        if item.error is None:
            seen = first_line.setdefault(item.id, n)
            if seen != n:
                what = "duplicate id" if not item.id.startswith("sha-") else "the same question and answer as line"
                detail = f"{item.id!r}" if not item.id.startswith("sha-") else str(seen)
                item = Item(id=f"line-{n}", line=n, error=f"line {n}: {what} {detail}")
        items.append(item)
    return items


def _parse_row(raw: str, n: int, prefix: str) -> Item:
    try:
        row = json.loads(raw)
    except json.JSONDecodeError as exc:
        return Item(id=f"line-{n}", line=n, error=f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(row, dict):
        return Item(id=f"line-{n}", line=n, error=f"line {n}: expected a JSON object, got {type(row).__name__}")
    question = next((row[k] for k in ("question", "problem", "prompt") if row.get(k) is not None), None)
    if not isinstance(question, str) or not question.strip():
        return Item(id=f"line-{n}", line=n, error=f"line {n}: no 'question', 'problem' or 'prompt' text")
    answer, problem = _gold(row)
    if problem:
        return Item(id=f"line-{n}", line=n, error=f"line {n}: {problem}")
    raw_id = row.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        return Item(id=f"line-{n}", line=n, error=f"line {n}: 'id' must be a string or a number, got {type(raw_id).__name__}")
    if raw_id is not None:
        item_id = str(raw_id)
    elif prefix:
        item_id = f"{prefix}{n:04d}"
    else:  # no id: known by content, so moving or inserting rows never misattributes
        item_id = "sha-" + content_key(question, answer)[:12]
    return Item(id=item_id, line=n, question=question, answer=answer)


def _gold(row: dict) -> tuple[str | None, str | None]:
    """(gold answer, problem with it): `answer` as a string or number, else
    the last \\boxed{} of a MATH-style `solution`."""
    answer = row.get("answer")
    if answer is not None:
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            return None, f"'answer' must be a string or a number, got {type(answer).__name__}"
        return (answer if isinstance(answer, str) else json.dumps(answer)), None
    solution = row.get("solution")
    if isinstance(solution, str):
        from steer_cli.answers import last_boxed

        boxed = last_boxed(solution)
        if boxed is None:
            return None, "'solution' has no \\boxed{} answer (add an 'answer' field)"
        return boxed, None
    return None, None


def load(source: str, limit: int | None = None) -> list[Item]:
    """The first `limit` rows of a problem set (bad rows included, as errors)."""
    text, prefix = read_text(source)
    items = parse_rows(text, prefix)
    return items if limit is None else items[:limit]


def problems(source: str, limit: int | None = None, strict: bool = False, need_gold: bool = False, warn=None) -> list[Item]:
    """The usable problems of a set, validated before any model loads: a bad
    row stops the command under `strict`, else it is reported and skipped."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit {limit} selects no problems", "pass 1 or more, or leave it out for all")
    items = load(source, limit)
    bad = [i for i in items if i.error is not None]
    if bad and strict:
        raise UsageError(f"{source}: {bad[0].error}", "fix that line, or drop --strict to skip bad lines")
    for item in bad:
        (warn or _stderr)(f"steer: {source}: {item.error} (skipped)")
    good = [i for i in items if i.error is None and (i.answer is not None or not need_gold)]
    if not good:
        if need_gold and any(i.error is None for i in items):
            raise UsageError(f"{source}: no problems with a gold 'answer'", "eval needs gold answers ('answer', or a \\boxed{} in 'solution'); use `steer batch` for unlabelled problems")
        raise UsageError(f"{source}: no usable problems in it", 'pass a JSONL with one {"question": ...} per line')
    return good


def _stderr(line: str) -> None:
    from steer_cli.output import Output

    Output().warn(line.removeprefix("steer: "))
