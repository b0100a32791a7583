"""Rewrite the settings tables of docs/campaigns.md from the config schema (run after changing config.py).

Each table of newsletter.toml has a block between `<!-- settings: NAME -->` and `<!-- end settings -->`,
written from the `setting(...)` fields of newsletter.config: key, type, default, example and what it does.
tests/test_campaigns_docs.py fails when a block is stale or a setting is missing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import MISSING
from pathlib import Path

from newsletter.config import SECTIONS, Config, settings_of, type_name

DOC = Path(__file__).with_name("campaigns.md")
BLOCK = re.compile(r"<!-- settings: (?P<name>\w+) -->\n.*?<!-- end settings -->", re.S)
TABLES = {"newsletter": Config, **SECTIONS}


def _default(spec) -> str:
    value = spec.default_factory() if spec.default is MISSING else spec.default
    if value is None:
        return "(none)"
    if isinstance(value, Path):
        return f'`"{value}"`'
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value!r}`".replace("'", '"')


def _notes(spec) -> str:
    meta = spec.metadata
    notes = [meta["doc"]]
    if meta["choices"]:
        notes.append("One of " + ", ".join(f"`{choice}`" for choice in meta["choices"]) + ".")
    limits = [f"at least {meta['minimum']:g}" if meta["minimum"] is not None else "",
              f"at most {meta['maximum']:g}" if meta["maximum"] is not None else ""]
    if any(limits):
        notes.append(" and ".join(limit for limit in limits if limit).capitalize() + ".")
    if meta["example"]:
        notes.append(f"Example: `{spec.name} = {meta['example']}`.")
    if meta["secret"]:
        notes.append("A secret: keep the file private (`init` writes it mode 600) or use the environment.")
    return " ".join(notes).replace("|", "\\|")


def render_block(name: str) -> str:
    rows = [f"<!-- settings: {name} -->", "", "| key | type | default | what it does |", "| --- | --- | --- | --- |"]
    for spec in settings_of(TABLES[name]):
        rows.append(f"| `{spec.name}` | {type_name(spec.type)} | {_default(spec)} | {_notes(spec)} |")
    return "\n".join(rows + ["", "<!-- end settings -->"])


def updated(text: str) -> str:
    return BLOCK.sub(lambda match: render_block(match.group("name")), text)


if __name__ == "__main__":
    original = DOC.read_text(encoding="utf-8")
    new = updated(original)
    missing = [name for name in TABLES if f"<!-- settings: {name} -->" not in new]
    for name in missing:
        new += f"\n### `[{name}]`\n\n{render_block(name)}\n"
    DOC.write_text(new, encoding="utf-8")
    print(f"updated {DOC}; added {len(missing)} tables", file=sys.stderr)
