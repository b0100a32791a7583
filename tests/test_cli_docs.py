"""Every command explains itself (--help) and is documented in docs/cli.md with its current help."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
import update_cli_docs  # noqa: E402

COMMANDS = update_cli_docs.all_commands()
DOC = update_cli_docs.DOC.read_text(encoding="utf-8")


@pytest.mark.parametrize("path, command", COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_has_help_text(path, command):
    assert (command.help or "").strip(), f"{path} has no help text: give it a docstring"


@pytest.mark.parametrize("path, command", COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_has_a_section_in_the_docs(path, command):
    assert f"<!-- help: {path} -->" in DOC, f"docs/cli.md lacks {path}: run python docs/update_cli_docs.py"


@pytest.mark.parametrize("path, command", COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_option_has_help_text(path, command):
    undocumented = [p.name for p in command.params if getattr(p, "help", "x") is None and p.name != "help"
                    and not p.param_type_name == "argument"]
    assert not undocumented, f"{path}: options without help: {undocumented}"


def test_the_documented_help_is_current():
    assert update_cli_docs.updated(DOC) == DOC, "docs/cli.md is stale: run python docs/update_cli_docs.py"
