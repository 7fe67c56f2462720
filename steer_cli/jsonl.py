"""JSON Lines on disk: the one reader and appender behind every store
(eval's records, batch results, policy outcomes and branch points) and the
data loader.

Lines split on "\\n" alone: `str.splitlines` also splits on U+2028, U+2029
and U+0085, which `json.dumps(..., ensure_ascii=False)` leaves raw inside
strings. A last line without its newline was torn by an interruption; it is
cut off before anything is appended, so a rerun appends to clean lines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def split(text: str) -> list[str]:
    """The lines of `text`, on "\\n" only ("\\r\\n" files too)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read(path: Path) -> tuple[list[tuple[int, str]], bytes]:
    """The complete non-blank lines of `path` with their numbers, and the torn
    tail after the last newline (b"" when there is none or no file)."""
    if not path.exists():
        return [], b""
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    lines = [(n, line) for n, line in enumerate(split(data[:keep].decode("utf-8", "replace")), 1) if line.strip()]
    return lines, data[keep:]


def cut(path: Path, torn: bytes) -> None:
    """Drop a torn tail that `read` found, so appending starts on a clean line."""
    if torn:
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size - len(torn))


def rows(path: Path) -> Iterator[dict]:
    """Every object in a cache file; unreadable lines are skipped (a cache is
    rebuilt, never trusted) and a torn tail is cut."""
    lines, torn = read(path)
    cut(path, torn)
    for _, line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            yield row


def dumps(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False)


class Appender:
    """Appends one JSON object a line, flushed at once so an interruption
    loses at most the line in flight; the file opens on the first write."""

    def __init__(self, path: Path | None, stream: IO[str] | None = None) -> None:
        self.path, self._stream = path, stream

    def append(self, record: Any) -> None:
        if self._stream is None:
            assert self.path is not None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._stream = open(self.path, "a", encoding="utf-8")
        self._stream.write(dumps(record) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """fsync and close a file this appender opened (a given stream stays open)."""
        if self._stream is None or self.path is None:
            return
        try:
            os.fsync(self._stream.fileno())
        except (OSError, ValueError):
            pass
        self._stream.close()
        self._stream = None

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
