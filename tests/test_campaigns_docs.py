"""docs/campaigns.md describes every key the loaders accept, and its settings tables match the schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from newsletter.articles import FRONT_MATTER_KEYS
from newsletter.campaigns import ARTICLE_KEYS, COUNTRY_BLOCK_KEYS, TOP_LEVEL_KEYS
from newsletter.config import SECTIONS, Config, settings_of

sys.path.insert(0, str(Path(__file__).parents[1] / "docs"))
from update_config_docs import TABLES, updated  # noqa: E402

DOC_PATH = Path(__file__).parents[1] / "docs" / "campaigns.md"
DOC = DOC_PATH.read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text under one heading, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\n(.*?)(?=^#{{1,{3}}} |\Z)", DOC, re.S | re.M)
    assert match, f"docs/campaigns.md has no heading {heading!r}"
    return match.group(2)


def documented_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))


@pytest.mark.parametrize("heading, keys", [
    ("`campaign.toml`: the top level", TOP_LEVEL_KEYS),
    ("`[[articles]]`", ARTICLE_KEYS),
    ("`[[country_blocks]]`", COUNTRY_BLOCK_KEYS),
    ("Article front matter (`.md` files)", FRONT_MATTER_KEYS),
])
def test_every_campaign_key_the_loader_accepts_is_documented(heading, keys):
    missing = set(keys) - documented_keys(section(heading))
    assert not missing, f"docs/campaigns.md, {heading}: document {', '.join(sorted(missing))}"


@pytest.mark.parametrize("table", ["newsletter", *SECTIONS])
def test_every_setting_has_a_row_with_its_type_default_and_purpose(table):
    rows = documented_keys(section(f"`[{table}]`"))
    names = {spec.name for spec in settings_of(TABLES[table])}
    assert names <= rows, f"run python docs/update_config_docs.py: [{table}] lacks {names - rows}"
    for spec in settings_of(TABLES[table]):
        assert spec.metadata.get("doc"), f"[{table}] {spec.name}: give it a doc in config.py's setting()"


def test_the_settings_tables_are_current():
    assert updated(DOC) == DOC, "docs/campaigns.md is stale: run python docs/update_config_docs.py"


def test_every_config_field_is_a_documented_setting_or_a_table():
    plain = {spec.name for spec in settings_of(Config)}
    assert {f for f in Config.__dataclass_fields__} == plain | set(SECTIONS) | {"path", "list_names"}  # list_names: list_name's table
