"""What `outlier` itself answers: --version, --help, the two spellings of the
temperature flag, and a broken install failing loudly instead of hiding a command."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from outlier_tui.cli import build_parser, main


def test_version_prints_the_installed_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"outlier {version('outlier')}"


def test_help_says_a_bare_outlier_opens_the_app(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "A bare `outlier`" in text and "opens the chat app" in text


@pytest.mark.parametrize("command", ["generate", "chat"])
@pytest.mark.parametrize("flag", ["--temp", "--temperature"])
def test_both_temperature_spellings_work_everywhere(command, flag):
    extra = ["--prompt", "hi"] if command == "generate" else []
    args = build_parser().parse_args([command, *extra, flag, "0.7"])
    assert (args.temp if command == "generate" else args.temperature) == 0.7


def test_a_missing_subcommand_module_fails_at_import():
    """A broken install (a subcommand's module gone) must not quietly drop the command."""
    code = (
        "import sys; sys.modules['outlier_tui.commands.inspect'] = None\n"  # what a deleted file looks like
        "import outlier_tui.commands\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.returncode != 0
    assert "outlier_tui.commands.inspect" in done.stderr and "ModuleNotFoundError" in done.stderr
