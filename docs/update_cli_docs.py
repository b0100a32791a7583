"""Rewrite the `--help` blocks of docs/cli.md from the commands themselves (run after changing the CLI).

Each command has a section whose heading is the command in backquotes; between the markers
`<!-- help: newsletter ... -->` and `<!-- end help -->` sits its current --help output.
tests/test_cli_docs.py fails when a command has no section or its block is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from newsletter.cli import cli

DOC = Path(__file__).with_name("cli.md")
BLOCK = re.compile(r"<!-- help: (?P<name>[^>]+?) -->\n.*?<!-- end help -->", re.S)


def all_commands(group: click.Group = cli, prefix: str = "newsletter") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, path))
    return found


def help_text(path: str) -> str:
    result = CliRunner().invoke(cli, path.split()[1:] + ["--help"], terminal_width=100)
    return result.output


def render_block(path: str) -> str:
    return f"<!-- help: {path} -->\n```\n{help_text(path).rstrip()}\n```\n<!-- end help -->"


def updated(text: str) -> str:
    return BLOCK.sub(lambda match: render_block(match.group("name")), text)


if __name__ == "__main__":
    original = DOC.read_text(encoding="utf-8")
    new = updated(original)
    missing = [path for path, _ in all_commands() if f"<!-- help: {path} -->" not in new]
    for path in missing:
        new += f"\n## `{path}`\n\n{render_block(path)}\n"
    DOC.write_text(new, encoding="utf-8")
    print(f"updated {DOC}; added sections for {len(missing)} commands", file=sys.stderr)
