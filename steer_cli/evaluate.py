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
        held, reuse = self.held(route, items), self.solo_reuse(route)
        return sum(item.key not in held and (reuse is None or reuse(item) is None) for item in items)

    def held(self, route: Route, items: list) -> dict[str, dict]:
        """The records of `items` already in the route's file, by problem key;
        nothing is solved."""
        from steer_cli.records import read_records

        held = read_records(self.path(route))
        return {item.key: held[item.key] for item in items if item.key in held}

    def solo_reuse(self, route: Route) -> Callable[[Any], dict | None] | None:
        """For a query-level route (`mix@p`, the P(T) cascade over two tiers)
        under greedy decoding and no budget: a query sent to one model is that
        model's solo run, so recorded solo runs are replayed (and marked) instead
        of solved again, exactly as calibrate's advisor prices them."""
        from steer_cli.advisor import combine
        from steer_cli.records import read_records
        from steer_cli.routers import mix_draw, mix_up

        session = self.session
        plain = session.temperature == 0 and not session.budget.active and route.pik is None and route.threshold is not None
        if not plain or route.router not in ("mix", "cascade") or (route.router == "cascade" and len(session.engines) != 2):
            return None
        solo = {name: read_records(self.path(Route(name))) for name in ("small", "large")}

        def attempt(tier: int, record: dict) -> dict:
            return {"tier": tier, "model": record["cost"]["models"][0]["name"], "answer": record.get("answer"), "confidence": record.get("answer_confidence")}

        def reuse(item: Any) -> dict | None:
            small, large = solo["small"].get(item.key), solo["large"].get(item.key)
            if route.router == "mix":
                up = mix_up(item.question, route.threshold)
                record = large if up else small
                skipped = [{"tier": 0, "model": small["cost"]["models"][0]["name"], "skipped": True, "mix": round(mix_draw(item.question), 6)}] if up and small else []
                return None if record is None else {**record, "router": "mix", "reused": "large" if up else "small", "attempts": skipped}
            if small is not None and (small.get("answer_confidence") or 0.0) >= route.threshold:
                return {**small, "router": "cascade", "reused": "small", "attempts": [attempt(0, small)]}
            if small is None or large is None:
                return None
            return {**combine(small, large), "router": "cascade", "reused": "small+large", "attempts": [attempt(0, small), attempt(1, large)],
                    "drafts": small["steps"] + small.get("drafts", [])}

        return reuse

    def gate_pass(self, items: list, tick: Callable[[bool], None] = lambda reused: None) -> list[dict] | None:
        """With a P(IK) file (--pik): each item's P(IK) and a record of what its
        pass cost (the bill a gated route pays before anything else), kept in
        --work beside the records so a second calibration reads them."""
        import hashlib
        import json
        from dataclasses import asdict

        from steer_cli.cost import ModelCost
        from steer_cli.routers import PIK

        model = self.session.artifacts.get(PIK.kind)
        if model is None:
            return None
        engine = self.session.engines[0]
        digest = hashlib.sha256(json.dumps([model.identity(), engine.identity], sort_keys=True).encode()).hexdigest()[:12]

        def measure(item: Any) -> dict:
            embedding, bill = ModelCost.billed(engine, lambda: engine.embed_prompt(item.question))
            pik = round(model.predict(embedding, item.question), 6)
            return {"pik": pik, "cost": {"models": [asdict(bill)], "flops": bill.flops, "wall_s": bill.wall_s, "price_usd": bill.price_usd}}

        self.work.mkdir(parents=True, exist_ok=True)
        passes = []
        with RecordFile(self.work / f"pik-pass-{digest}.jsonl") as store:
            for item in items:
                known = store.get(item.key)
                passes.append(known or store.add(item.key, measure(item)))
                tick(known is not None)
        return passes

    def records(self, route: Route, items: list, tick: Callable[[bool], None] = lambda reused: None, reuse: Callable[[Any], dict | None] | None = None) -> list[dict]:
        """Each item's record, solving only what the record file lacks; every
        finished problem is appended at once, so an interruption loses one.
        `reuse(item)` may supply a record known to be what solving would give.
        `tick(reused)` follows each item, the reused ones first."""
        from steer_cli import runs

        with RecordFile(self.path(route)) as store:
            known = {item.key: store.get(item.key) or (reuse(item) if reuse else None) for item in items}
            for item in items:  # what `reuse` knows is stored first
                if known[item.key] is not None and store.get(item.key) is None:
                    known[item.key] = store.add(item.key, known[item.key])
            todo = list({item.key: item for item in items if known[item.key] is None}.values())
            for _ in range(len(items) - len(todo)):
                tick(True)
            for item, result in self.session.solve_many(route, todo, lambda i: i.question):
                known[item.key] = store.add(item.key, runs.result_record(item, result))
                tick(False)
        return [{**known[item.key], "id": item.id} for item in items]

    def solo_runs(self, items: list, out: Any, what: str) -> dict[str, list[dict]]:
        """The small-only and large-only records of `items` (what every
        query-level route is priced from), with progress named `what`."""
        runs = {}
        for name in ("small", "large") if items else ():
            with out.counter(f"{what} {name}", len(items), every=10, transient=True) as bar:
                runs[name] = self.records(Route(name), items, lambda reused, bar=bar: bar.advance(reused=reused))
        return runs
