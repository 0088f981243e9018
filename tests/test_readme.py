"""The README's command-line examples name commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from service.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _examples() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#")[0]) if "clonefinder " in line else []
            if words and words[0].endswith("clonefinder"):
                commands.append(words[1:])
    return commands


def test_the_readme_has_command_line_examples() -> None:
    assert len(_examples()) >= 4


@pytest.mark.parametrize("words", _examples(), ids=lambda w: " ".join(w)[:40])
def test_each_example_uses_real_commands_and_options(words: list[str]) -> None:
    command, options = words[0], [w.split("=")[0] for w in words[1:] if w.startswith("--")]
    # A command group (`keys create`): the options belong to its sub-command.
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    if isinstance(root.commands.get(command), typer.core.TyperGroup):
        command = f"{words[0]} {words[1]}"
    result = CliRunner().invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"{command} has no option {option}"
