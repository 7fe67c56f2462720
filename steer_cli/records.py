"""Resumable record files for eval and calibrate, keyed by content.

A configuration's records live in one JSONL file whose name carries a digest
of everything that changes a run (models and their sha256, router, signal,
threshold, limits, sampling, prompt, budget) and nothing about which data
file it came from. Inside, each record is found by the hash of its problem's
text and gold answer, so an edited row is solved again, an unchanged row in
another file (or another order) is reused, and no two problems can ever
share a record. Paths never leave the work directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from steer_cli import jsonl
from steer_cli.errors import UsageError


def fingerprint_digest(fingerprint: dict) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record_path(work: Path, label: str, fingerprint: dict) -> Path:
    safe = "".join(c if c.isalnum() or c in "@:._-" else "_" for c in label)
    return work / f"{safe}-{fingerprint_digest({**fingerprint, 'config': label})}.jsonl"


class RecordFile:
    """One configuration's records by content key; appends flush at once, so
    an interruption loses at most the problem in flight."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.by_key: dict[str, dict] = read_records(path)
        self._out = jsonl.Appender(path)

    def get(self, key: str) -> dict | None:
        return self.by_key.get(key)

    def add(self, key: str, record: dict) -> dict:
        record = {**record, "key": key}
        self._out.append(record)
        self.by_key[key] = record
        return record

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> RecordFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(path: Path) -> dict[str, dict]:
    """Keyed records in `path`; a torn last line (the process died mid-write)
    is ignored and cut off before anything is appended."""
    lines, torn = jsonl.read(path)
    records: dict[str, dict] = {}
    for n, line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UsageError(f"{path} line {n} is not a record", "remove that line or the file; it is a cache and will be rebuilt") from None
        if isinstance(record, dict) and "key" in record and "error" not in record:
            records[record["key"]] = record
    jsonl.cut(path, torn)
    return records
