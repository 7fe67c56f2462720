"""The route grammar: `router[:signal][@threshold][+pik[@threshold]]`.

The one place a route is parsed, filled with defaults, validated, labelled
and turned into a router (RouteLLM's controller is the model): the CLI's
--router options, eval's --routers, calibrate, serve's model field and the
benchmarks all come through here. A route that does not parse exactly is
refused; nothing given is ever silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from steer_cli import routers
from steer_cli.errors import UsageError
from steer_cli.routers import PIK, Router

FROM_FILE = -1.0  # "+pik" with no threshold: the calibrated one, else the P(IK) file's own
_GRAMMAR = re.compile(r"(?P<router>[a-z][a-z0-9_-]*)(?::(?P<signal>[a-z][a-z0-9-]*))?(?:@(?P<threshold>[^+@:]*))?(?P<gate>\+pik(?:@(?P<pik>[^+@:]*))?)?")
_FORM = "write router[:signal][@threshold][+pik[@threshold]], e.g. steer:entropy@0.4 or cascade@0.99+pik@0.2"


@dataclass(frozen=True)
class Route:
    """A router with its threshold and signal, and the P(IK) gate's threshold
    (None: no gate); `label` is what records, tables and serve go by."""

    router: str
    threshold: float | None = None
    signal: str | None = None
    pik: float | None = None

    @property
    def label(self) -> str:
        name = self.router if self.signal is None else f"{self.router}:{self.signal}"
        name = name if self.threshold is None else f"{name}@{self.threshold:g}"
        if self.pik is None:
            return name
        return f"{name}+pik" if self.pik == FROM_FILE else f"{name}+pik@{self.pik:g}"


def parse(text: str, where: str = "route") -> Route:
    """One route, exactly as written; `where` names it in errors (--routers, model)."""
    match = _GRAMMAR.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{where} {text!r} does not parse", _FORM)
    name = match["router"]
    if name not in routers.REGISTRY:
        raise UsageError(f"unknown router {name!r} in {where}", f"use one of: {', '.join(routers.names())}, e.g. steer@0.6")
    threshold = _number(match["threshold"], text, where, "threshold")
    pik = _number(match["pik"], text, where, "P(IK) threshold") if match["pik"] is not None else FROM_FILE if match["gate"] else None
    return check(Route(name, threshold, match["signal"], pik), where)


def parse_list(spec: str, where: str = "--routers") -> list[Route]:
    """Comma-separated routes: small,large,steer@0.4,trim:verify@0.6."""
    parts = [p.strip() for p in spec.split(",")]
    if not any(parts):
        raise UsageError(f"{where} names no route", "e.g. --routers small,large,steer@0.6")
    if not all(parts):
        raise UsageError(f"{where} {spec!r} has an empty entry", "separate routes by single commas, e.g. small,large,steer@0.6")
    return [parse(p, where) for p in parts]


def _number(value: str | None, text: str, where: str, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"{where} {text!r}: {what} {value!r} is not a number", _FORM) from None
    if not 0.0 <= number <= 1.0:  # NaN included
        raise UsageError(f"{where} {text!r}: {what} {value} is outside [0, 1]", "pass a value like 0.5")
    return number


def check(route: Route, where: str = "route") -> Route:
    """Refuse what the router would ignore: a threshold, signal or gate on a
    fixed router, a signal it does not read."""
    entry = routers.spec(route.router)
    others = ", ".join(routers.names(fixed=False))
    if entry.fixed and route.threshold is not None:
        raise UsageError(f"router {route.router} has no threshold, so {route.threshold:g} ({where}) would be ignored", f"drop it, or use one of: {others}")
    if entry.fixed and route.pik is not None:
        raise UsageError(f"router {route.router} does not read P(IK) ({where})", "put +pik on a routing router, e.g. steer+pik@0.2 or cascade@0.999+pik@0.2")
    if route.signal is not None and not entry.signals:
        raise UsageError(f"router {route.router} reads no signal, so {route.signal!r} ({where}) would be ignored",
                         f"drop it, or use one of: {', '.join(routers.with_signals())}")
    if route.signal is not None and route.signal not in entry.signals:
        raise UsageError(f"router {route.router} has no signal {route.signal!r} ({where})", f"use one of: {', '.join(entry.signals)}")
    return route


def from_options(router: str, threshold: float | None, signal: str | None, gated: bool, pik_threshold: float | None) -> Route:
    """The route of a single-route command: --router (a name or a whole
    route), with --threshold/--signal/--pik-threshold; each said once."""
    route = parse(router, "--router")
    for flag, given, written in (("--threshold", threshold, route.threshold), ("--signal", signal, route.signal)):
        if given is not None and written is not None:
            raise UsageError(f"{flag} and --router {router} both set it", f"name it once: drop {flag} or write the route without it")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold} is outside [0, 1]", "pass a value like 0.5")
    pik = route.pik
    if pik is None and (gated or pik_threshold is not None):
        pik = pik_threshold if pik_threshold is not None else FROM_FILE
    chosen = check(Route(route.router, threshold if threshold is not None else route.threshold, signal or route.signal, pik), "the options")
    if pik_threshold is not None and not gated:
        raise UsageError("--pik-threshold needs a P(IK) classifier", "pass --pik FILE too")
    return chosen


def signal_for(router: str, signal: str | None) -> str | None:
    """A --signal given to a whole eval applies to the routers that read it."""
    return signal if signal in routers.spec(router).signals else None


def fill(route: Route, defaults: Any, artifacts: dict[str, Any]) -> Route:
    """`route` with what was left unnamed taken from models.yaml's defaults,
    then the router's trained file, then the router's own, so a label always
    says what actually ran."""
    entry = routers.spec(route.router)
    check(route)
    if entry.fixed:
        return Route(route.router)
    threshold = route.threshold
    if threshold is None:
        threshold = defaults.thresholds.get(route.router)
    if threshold is None and entry.needs is not None and entry.needs.kind in artifacts:
        threshold = entry.needs.threshold(artifacts[entry.needs.kind], defaults)
    if threshold is None:
        threshold = entry.threshold
    pik = route.pik
    if pik == FROM_FILE:
        pik = PIK.threshold(_needed(PIK, artifacts, route), defaults)
    signal = route.signal or defaults.signals.get(route.router) or routers.default_signal(route.router)
    return Route(route.router, threshold, signal, pik)


def build(route: Route, artifacts: dict[str, Any], seed: int = 0) -> Router:
    """The router a filled route names, with the trained files it reads."""
    entry = routers.spec(route.router)
    artifact = _needed(entry.needs, artifacts, route) if entry.needs is not None else None
    router = routers.make_router(route.router, route.threshold, route.signal, seed, artifact)
    return router if route.pik is None else routers.Gated(router, _needed(PIK, artifacts, route), route.pik)


def record_key(route: Route, artifacts: dict[str, Any]) -> dict:
    """What of the trained files a route reads changes its records."""
    entry = routers.spec(route.router)
    keys = {}
    if route.pik is not None and PIK.kind in artifacts:
        keys[PIK.kind] = PIK.key(artifacts[PIK.kind])
    if entry.needs is not None and entry.needs.kind in artifacts:
        keys[entry.needs.kind] = entry.needs.key(artifacts[entry.needs.kind])
    return keys


def runnable(artifacts: dict[str, Any]) -> list[str]:
    """The routers whose trained file (if any) is loaded: what serve lists."""
    return [n for n, e in routers.REGISTRY.items() if e.needs is None or e.needs.kind in artifacts]


def _needed(kind: routers.ArtifactSpec, artifacts: dict[str, Any], route: Route) -> Any:
    if kind.kind not in artifacts:
        option = "--pik FILE" if kind is PIK else f"--trained {kind.kind}=FILE" + (" (or --policy FILE)" if kind.kind == "policy" else "")
        what = "a P(IK) classifier" if kind is PIK else f"a trained {kind.kind} file"
        raise UsageError(f"{route.label} needs {what}", f"pass {option} (from `{kind.train}`)")
    return artifacts[kind.kind]
