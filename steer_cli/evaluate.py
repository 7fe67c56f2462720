"""Comparing router configurations on problems with gold answers.

A configuration is a route, `router[:signal][@threshold]` (e.g. `steer:entropy@0.6`).
Its records live in a content-keyed file (records.py), so a rerun reuses
finished problems and a changed setting or an edited problem never reuses a
stale one. The arithmetic is in stats.py, tables and plots in report.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from steer_cli.errors import UsageError
from steer_cli.records import RecordFile, record_path
from steer_cli.routers import ROUTER_SIGNALS, ROUTERS, Route, fill, refuse_fixed_pik


def parse_configs(spec: str) -> list[Route]:
    """`router[:signal][@threshold]`, comma-separated: small,large,steer@0.4,trim:verify@0.6."""
    configs = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        part, plus, pik = part.partition("+pik")
        pik_threshold = None
        if plus:
            try:
                pik_threshold = float(pik.removeprefix("@")) if pik.removeprefix("@") else FROM_FILE
            except ValueError:
                raise UsageError(f"bad P(IK) threshold {pik!r} in --routers", "write it like cascade@0.999+pik@0.2") from None
        head, _, value = part.partition("@")
        name, _, signal = head.partition(":")
        if name not in ROUTERS:
            raise UsageError(f"unknown router {name!r} in --routers", f"use one of: {', '.join(ROUTERS)}, e.g. small,large,steer@0.6")
        try:
            threshold = float(value) if value else None
        except ValueError:
            raise UsageError(f"bad threshold {value!r} in --routers", "write it like steer@0.6") from None
        configs.append(Route(name, threshold, signal or None, pik_threshold))
    if not configs:
        raise UsageError("--routers names no configuration", "e.g. --routers small,large,steer@0.6")
    return configs


FROM_FILE = -1.0  # "+pik" with no threshold: the P(IK) file's own


def with_pik(route: Route, pik, defaults) -> Route:
    """A +pik route with its threshold, where unnamed, from models.yaml's
    calibrated value or else the P(IK) file's own."""
    if route.pik is None:
        return route
    refuse_fixed_pik(route.router, True)
    if pik is None:
        raise UsageError(f"{route.router}+pik needs a P(IK) classifier", "pass --pik FILE (from `steer pik train`)")
    if route.pik != FROM_FILE:
        return route
    from steer_cli.pik import default_threshold

    return replace(route, pik=default_threshold(pik, defaults))


def signal_for(router: str, signal: str | None) -> str | None:
    """A --signal given to a whole eval applies to the routers that can read it."""
    return signal if signal in ROUTER_SIGNALS.get(router, ()) else None


@dataclass
class Bench:
    """Runs configurations over problems with loaded engines; one resumable
    record file per configuration, records found by problem content."""

    engines: list
    defaults: Any  # registry defaults: thresholds and signals left unnamed
    limits: Any
    fingerprint: dict
    work: Path
    seed: int = 0
    budget: Any = None
    pik: Any = None  # a loaded P(IK) classifier for +pik routes
    meter: Any = None  # units.Meter: the cost unit and the machine profiles
    policy: Any = None  # a loaded routing policy for policy routes

    def resolve(self, config: Route) -> Route:
        """The configuration with the defaults it would run with filled in."""
        return fill(config, self.defaults, self.policy)

    def path(self, config: Route) -> Path:
        config = self.resolve(config)
        keyed = self.fingerprint if config.pik is None or self.pik is None else {**self.fingerprint, "pik": self.pik.to_json()}
        if config.router == "policy" and self.policy is not None:
            keyed = {**keyed, "policy": self.policy.body()}
        return record_path(self.work, config.label, keyed)

    def records(self, config: Route, items: list, tick: Callable[[], None] = lambda: None, reuse: Callable[[Any], dict | None] | None = None) -> list[dict]:
        """Each item's record, solving only what the record file lacks; every
        finished problem is appended at once, so an interruption loses one.
        `reuse(item)` may supply a record known to be what solving would give."""
        from steer_cli import runs
        from steer_cli.solver import Solver

        config = self.resolve(config)
        solver = Solver(self.engines, config.build(self.seed, self.pik, self.policy), self.limits, self.budget, self.meter)
        found = []
        with RecordFile(self.path(config)) as store:
            for item in items:
                record = store.get(item.key)
                if record is None:
                    known = reuse(item) if reuse else None
                    record = store.add(item.key, known if known is not None else runs.result_record(item, runs.solve_one(solver, item.question)))
                found.append({**record, "id": item.id})
                tick()
        return found


