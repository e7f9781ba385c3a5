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


def test_each_command_name_is_owned_by_the_module_that_registers_it():
    """`main()` builds only the named command's module (cli/__init__.py): the table must name every
    command of the full app, and each owner's app must hold that command with the same parameters."""
    import typer.main

    from qwencli import cli

    full = typer.main.get_command(app)
    assert set(cli.OWNER) == set(full.commands)
    for name, module in cli.OWNER.items():
        alone = typer.main.get_command(cli.build((module,)))
        assert name in alone.commands, name
        assert [p.name for p in alone.commands[name].params] == [p.name for p in full.commands[name].params]


def test_a_named_command_runs_through_its_own_app(monkeypatch, capsys):
    from qwencli import cli

    built = []
    monkeypatch.setattr(cli, "build", lambda modules=cli.MODULES: built.append(modules) or cli.app)
    monkeypatch.setattr("sys.argv", ["qwen", "list", "--help"])
    with pytest.raises(SystemExit):
        cli.main()
    assert built == [(cli.OWNER["list"],)]
    assert "list [OPTIONS]" in capsys.readouterr().out
