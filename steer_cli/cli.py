"""The `steer` command: a thin shell over the core. Heavy imports (llama_cpp,
huggingface_hub) happen inside commands so `steer --help` stays instant."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from steer_cli import __version__
from steer_cli.errors import SteerError
from steer_cli.routers import load_plugins

try:  # before the commands declare their options, so --router's help names every router
    load_plugins()
    _plugin_error: SteerError | None = None
except SteerError as err:
    _plugin_error = err

from steer_cli.commands import models, pik, policy  # noqa: E402
from steer_cli.commands.ask import ask  # noqa: E402
from steer_cli.commands.batch import batch  # noqa: E402
from steer_cli.commands.bench import bench  # noqa: E402
from steer_cli.commands.calibrate import calibrate  # noqa: E402
from steer_cli.commands.evaluate import evaluate  # noqa: E402
from steer_cli.commands.serve import serve  # noqa: E402

class OneLineErrors(TyperGroup):
    """The one error map, applied around every command: a known failure
    (SteerError, or a library error errors.translate knows) and a mistyped
    command line are each one line on stderr naming the problem and the fix,
    with a non-zero exit; Ctrl-C exits 130 like any well-behaved Unix tool."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        from typer.core import _click  # typer vendors click; its exceptions live there

        from steer_cli.output import Output, report

        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except (KeyboardInterrupt, typer.Abort):
            print("steer: interrupted", file=sys.stderr)
            code = 130
        except typer.Exit as exc:
            code = exc.exit_code
        except _click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            code = exc.exit_code
        except _click.exceptions.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f"see `{ctx.command_path} --help`" if ctx is not None else "see `steer --help`"
            Output().error(f"{exc.format_message()} ({where})")
            code = exc.exit_code
        except Exception as exc:
            code = report(exc)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="steer",
    help="Local routed reasoning: each step of a solution is written by a small or a large GGUF model, chosen step by step.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(ask)
app.command()(batch)
app.command("eval")(evaluate)
app.command()(calibrate)
app.command()(serve)
app.command()(bench)
app.add_typer(models.app, name="models")
app.add_typer(pik.app, name="pik")
app.add_typer(policy.app, name="policy")


def _version(value: bool) -> None:
    if value:
        print(f"steer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")) -> None:
    """Answers go to stdout; progress, steps and errors to stderr."""


def main() -> None:
    from steer_cli.output import Output

    if _plugin_error is not None:
        Output().error(_plugin_error)
        sys.exit(_plugin_error.exit_code)
    app()
