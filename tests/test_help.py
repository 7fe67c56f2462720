"""The README and `steer --help` name the same commands, and every command's help says what it writes and how long it takes."""

import re
from pathlib import Path

import typer
from typer.main import get_command

from steer_cli.cli import app

README = Path(__file__).parent.parent / "README.md"


def leaf_commands():
    """(name, help) of every runnable command, groups opened."""
    root = get_command(app)
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for sub, leaf in subcommands.items():
                yield f"{name} {sub}", leaf.help or ""
        else:
            yield name, command.help or ""


def test_the_readme_command_table_lists_exactly_the_commands_of_steer_help():
    text = README.read_text()
    table = text[text.index("| command | what it does |"):]
    table = table[: table.index("\n\n")]
    documented = {re.match(r"\| `([a-z ]+)`", row).group(1).split()[0] for row in table.splitlines()[2:]}
    assert documented == set(get_command(app).commands)


def test_every_command_says_what_it_writes_and_how_long_it_takes():
    for name, text in leaf_commands():
        assert re.search(r"stdout|stderr|prints?|print|writes?|saves?|stored|-o\b", text), f"steer {name}: its help does not say what it writes"
        assert re.search(r"[Ii]nstant|\bs\b|seconds?|minutes?|\bmin\b|\bh\b|hours?", text), f"steer {name}: its help does not say how long it takes"


def test_the_readme_stays_short_and_dated():
    text = README.read_text()
    assert len(text.splitlines()) <= 350
    assert not re.search(r"\b(this|previous|earlier|last) round\b", text)
    for link in re.findall(r"\]\((docs/[^)#]+)\)", text):  # every page the README points to exists
        assert (README.parent / link).exists(), link
    assert isinstance(app, typer.Typer)
