"""Options declared once: a group's flags stand in each command's signature where the command
puts the group, and the command receives the group's value."""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from qwencli.cli import app
from qwencli.cli.options import with_options


def _pair(
    width: Annotated[int, typer.Option(help="Width.")] = 1,
    tall: Annotated[bool, typer.Option("--tall", help="Tall.")] = False,
) -> tuple[int, bool]:
    return width, tall


@with_options(size=_pair)
def _shape(
    name: Annotated[str, typer.Argument()],
    colour: Annotated[str, typer.Option()] = "red",
    *,
    size: tuple[int, bool],
) -> None:
    print(name, colour, size)


def test_a_group_stands_where_the_command_puts_it_and_arrives_as_one_value():
    assert list(inspect.signature(_shape).parameters) == ["name", "colour", "width", "tall"]
    toy = typer.Typer()
    toy.command("shape")(_shape)
    toy.command("other", hidden=True)(lambda: None)
    result = CliRunner().invoke(toy, ["shape", "box", "--width", "3", "--tall"])
    assert result.exit_code == 0, result.output
    assert result.output == "box red (3, True)\n"


def test_a_group_that_names_no_parameter_is_an_error_at_once():
    with pytest.raises(TypeError):
        with_options(nothing=_pair)(lambda name: None)


@pytest.mark.parametrize("command", ["run", "serve"])
def test_run_and_serve_share_the_load_flags(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    for flag in ("--ctx", "--threads", "--gpu-layers", "--backend", "--device", "--trust-remote-code",
                 "--allow-pickle", "--verbose"):
        assert flag in result.output
