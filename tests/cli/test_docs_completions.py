"""Docs and completions stay current with the app."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import KEYS
from supreme_cli.completions import SHELLS, script
from supreme_cli.exit_codes import ExitCode
from supreme_cli.main import app
from tests.cli.helpers import invoke

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_committed_completion_scripts_are_current(shell):
    assert (ROOT / "completions" / SHELLS[shell]).read_text() == script(shell)


def test_bash_completion_completes_real_commands():
    env = {**os.environ, "_SUPREME_COMPLETE": "complete_bash", "COMP_WORDS": "supreme r",
           "COMP_CWORD": "1"}
    bin_ = Path(sys.executable).with_name("supreme")
    out = subprocess.run([str(bin_)], env=env, capture_output=True, text=True)
    assert "run" in out.stdout.split()


def _commands():
    import typer.main

    group = typer.main.get_group(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub in subs:
                yield (name, sub)
        else:
            yield (name,)


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_command_has_help_an_example_and_a_readme_entry(path):
    r = invoke(*path, "--help")
    assert r.exit_code == 0
    assert "Example" in r.stdout
    assert f"supreme {' '.join(path)}" in README


@pytest.mark.parametrize("key", list(KEYS))
def test_every_configuration_key_is_documented(key):
    assert f"`{key}`" in README
    assert f"`{KEYS[key].env_var}`" in README


@pytest.mark.parametrize("code", list(ExitCode))
def test_every_exit_code_is_documented(code):
    assert f"| {int(code)} |" in README
