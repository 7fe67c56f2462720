"""The one sink every command writes through (huggingface_hub's `Output`).

Three modes. human: results as text on stdout; notes, progress and the live
view of the steps on stderr. json: the result as one JSON document on stdout
(tables and notes on stderr). quiet: results only, nothing on stderr but
warnings and errors. stdout carries nothing but results, so commands compose
in pipelines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any


class Output:
    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.json, self.quiet = as_json, quiet

    def note(self, text: str) -> None:
        """Progress a person reads: stderr, unless quiet."""
        if not self.quiet:
            print(f"steer: {text}", file=sys.stderr)

    def warn(self, text: str) -> None:
        """Something the user must hear even when quiet (a failed line, no answer)."""
        print(f"steer: {text}", file=sys.stderr)

    def error(self, err: Exception) -> None:
        """The one line a failure gets (the error map in cli.main calls this)."""
        print(f"steer: error: {err}", file=sys.stderr)

    def result(self, payload: Any, text: str | None = None) -> None:
        """The command's result: JSON in json mode, else `text` (if any)."""
        if self.json:
            print(json.dumps(payload, ensure_ascii=False))
        elif text is not None:
            print(text)

    def record(self, payload: Any) -> None:
        """One JSON line of a stream of results (batch to stdout), flushed."""
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def table(self, text: str, to_stderr: bool = False) -> None:
        """A table (or a row of one): the result in human mode, beside it (stderr) in json mode."""
        print(text, file=sys.stderr if self.json or to_stderr else sys.stdout)

    def counter(self, name: str, total: int, every: int = 1, transient: bool = False, hide: bool = False, deadline: float | None = None) -> Any:
        from steer_cli.ui import Counter

        return Counter(name, total, quiet=self.quiet or hide, every=every, transient=transient, deadline=deadline)

    def steps(self, events: Iterable[Any], route: Any) -> Iterator[Any]:
        """A solution's events, drawn on stderr as they pass (not when quiet)."""
        if self.quiet:
            return iter(events)
        from steer_cli import ui

        console = ui.stderr_console()
        console.print(ui.legend(route.router, route.threshold, route.signal))
        return ui.show(events, console)


def aligned(body: list[tuple[str, ...]]) -> str:
    """Rows as plain columns, never cut to a terminal's width, so a pipe or file gets every cell whole."""
    widths = [max(len(r[i]) for r in body) for i in range(len(body[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in body)


def report(exc: Exception) -> int:
    """Print a known failure as its one line on stderr and return its exit code.

    An unknown exception is re-raised: a bug keeps its traceback. The CLI's
    error boundary and every benchmark script share this, so a user sees the
    same line whichever door they came in by."""
    from steer_cli.errors import translate

    err = translate(exc)
    if err is None:
        raise exc
    Output().error(err)
    return err.exit_code


def run_script(main: Callable[[], object]) -> None:
    """Run a script's main() behind the same error map as `steer` itself."""
    try:
        main()
    except KeyboardInterrupt:
        print("steer: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        sys.exit(report(exc))
