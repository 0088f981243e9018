"""What every `clonefinder` command shares: --version, shell completion, --data-dir before the
command, --json on stdout with messages on stderr, and exit statuses a script can tell apart.
Only commands that open the store alone run here, so no embedding model is loaded."""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from service.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env, prog_name="clonefinder")


def test_version_is_the_package_version_from_pyproject() -> None:
    result = _run("--version")
    assert result.exit_code == 0, result.output
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert declared["project"]["version"] == version("clonefinder")
    assert result.stdout == f"clonefinder {version('clonefinder')}\n"


def test_shell_completion_completes_commands_and_subcommands() -> None:
    # `--show-completion` detects the shell it runs in (sh under make, which has no
    # completion); the script it would print for bash is this one.
    from typer.completion import get_completion_script

    script = get_completion_script(
        prog_name="clonefinder", complete_var="_CLONEFINDER_COMPLETE", shell="bash"
    )
    assert "complete -o default -F _clonefinder_completion clonefinder" in script

    def complete(words: str) -> list[str]:
        env = {
            "_CLONEFINDER_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        return _run(env=env).stdout.split()

    assert complete("clonefinder ca") == ["case"]
    assert complete("clonefinder case ex") == ["export"]


def test_data_dir_before_the_command_is_used_unless_the_command_names_its_own(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    made = _run("--data-dir", first, "keys", "create", "--role", "admin", "--name", "ops")
    assert made.exit_code == 0, made.output
    assert (first / "clonefinder.db").is_file()

    def names(*args: str | Path, env: dict[str, str] | None = None) -> list[str]:
        listed = _run(*args, env=env)
        assert listed.exit_code == 0, listed.output
        return [json.loads(line)["name"] for line in listed.stdout.splitlines()]

    assert names("keys", "list", "--json", "--data-dir", first) == ["ops"]
    assert names("--data-dir", first, "keys", "list", "--json") == ["ops"]
    # The command's own option wins over the one before it, and both over the environment.
    assert names("--data-dir", first, "keys", "list", "--json", "--data-dir", second) == []
    env = {"CLONEFINDER_DATA_DIR": str(second)}
    assert names("--data-dir", first, "keys", "list", "--json", env=env) == ["ops"]
    assert names("keys", "list", "--json", env=env) == []


def test_keys_json_is_one_document_on_stdout_and_the_note_on_stderr(tmp_path: Path) -> None:
    created = _run(
        "keys", "create", "--role", "platform", "--name", "acme", "--json", "--data-dir", tmp_path
    )
    assert created.exit_code == 0, created.output
    document = json.loads(created.stdout)
    assert document["name"] == "acme" and document["role"] == "platform"
    assert document["key"].startswith(document["prefix"]) and document["revoked_at"] is None
    assert "shown only now" in created.stderr

    revoked = _run("keys", "revoke", "acme", "--json", "--data-dir", tmp_path)
    assert revoked.exit_code == 0, revoked.output
    shown = json.loads(revoked.stdout)
    assert shown["name"] == "acme" and shown["revoked_at"] is not None
    assert "key" not in shown

    plain = _run("keys", "revoke", "acme", "--data-dir", tmp_path)
    assert plain.stdout.startswith("revoked key 'acme'"), plain.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["keys", "revoke", "nobody"], 4),
        (["case", "show", "7"], 4),
        (["keys", "create", "--role", "root", "--name", "x"], 2),
    ],
)
def test_not_found_exits_4_and_invalid_input_2(tmp_path: Path, args: list[str], code: int) -> None:
    result = _run(*args, "--data-dir", tmp_path)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error:") and result.stdout == ""
