"""The `steer` command: a thin shell over the core. Heavy imports (llama_cpp,
huggingface_hub) happen inside commands so `steer --help` stays instant."""

from __future__ import annotations

import typer

from steer_cli import __version__
from steer_cli.commands import models
from steer_cli.commands.ask import ask
from steer_cli.commands.batch import batch
from steer_cli.commands.calibrate import calibrate
from steer_cli.commands.evaluate import evaluate

app = typer.Typer(
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
app.add_typer(models.app, name="models")


def _version(value: bool) -> None:
    if value:
        print(f"steer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")) -> None:
    """Answers go to stdout; progress, steps and errors to stderr."""


def main() -> None:
    app()
