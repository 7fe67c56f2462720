"""Comparing routes on problems with gold answers.

A route's records live in a content-keyed file (records.py), so a rerun
reuses finished problems and a changed setting or an edited problem never
reuses a stale one. The arithmetic is in stats.py, tables and plots in report.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steer_cli.errors import UsageError
from steer_cli.records import RecordFile, record_path
from steer_cli.routes import Route
from steer_cli.session import Session


@dataclass
class Bench:
    """Runs routes over problems in one session; one resumable record file
    per route, records found by problem content."""

    session: Session
    work: Path

    def __post_init__(self) -> None:
        if self.work.exists() and not self.work.is_dir():
            raise UsageError(f"--work {self.work} is a file", "pass a directory for the record files")

    def resolve(self, route: Route) -> Route:
        """The route with the defaults it would run with filled in."""
        return self.session.route(route)

    def path(self, route: Route) -> Path:
        return record_path(self.work, self.resolve(route).label, self.session.record_key(route))

    def missing(self, route: Route, items: list) -> int:
        """How many of `items` the route's record file does not hold yet."""
        from steer_cli.records import read_records

        held = read_records(self.path(route))
        return sum(item.key not in held for item in items)

    def records(self, route: Route, items: list, tick: Callable[[], None] = lambda: None, reuse: Callable[[Any], dict | None] | None = None) -> list[dict]:
        """Each item's record, solving only what the record file lacks; every
        finished problem is appended at once, so an interruption loses one.
        `reuse(item)` may supply a record known to be what solving would give."""
        from steer_cli import runs

        solver = self.session.solver(route)
        found = []
        with RecordFile(self.path(route)) as store:
            for item in items:
                record = store.get(item.key)
                if record is None:
                    known = reuse(item) if reuse else None
                    record = store.add(item.key, known if known is not None else runs.result_record(item, runs.solve_one(solver, item.question)))
                found.append({**record, "id": item.id})
                tick()
        return found
