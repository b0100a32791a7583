"""A campaign folder (campaign.toml + article files) read into one issue, and cut into per-subscriber sections.

Sections depend only on which of the campaign's interests a subscriber shares, which of its articles name
the subscriber's country, and which country blocks apply; variant_key() captures exactly that, so the
renderer can build each variant once and reuse it for every subscriber who shares the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from newsletter.articles import (
    Article,
    ArticleError,
    coerce_authors,
    coerce_countries,
    coerce_date,
    coerce_interests,
    normalise_space,
    parse_article,
)
from newsletter.db import LANGUAGES

CAMPAIGN_FILE = "campaign.toml"
ARTICLE_SUFFIXES = (".md", ".txt")
TOP_LEVEL_KEYS = ("title", "template", "segment", "send_at", "transport", "only_matching_interests", "sender_name",
                  "sender_address", "subject", "preheader", "intro", "sections", "articles", "country_blocks")
ARTICLE_KEYS = ("file", "title", "date", "url", "summary", "interests", "countries", "authors")
COUNTRY_BLOCK_KEYS = ("countries", "text")
GENERAL = ""  # the section of articles that have no interest: news for every subscriber


class CampaignError(Exception):
    """The campaign folder cannot be used as written; the message names the file, field and the fix."""


@dataclass(frozen=True)
class CountryBlock:
    countries: list[str]
    text: dict[str, str]


@dataclass
class Campaign:
    slug: str
    folder: Path
    title: str
    subject: dict[str, str]
    template: str = "digest"
    segment: str = "status:active"
    send_at: datetime | None = None
    transport: str | None = None
    only_matching_interests: bool = False
    sender_name: str | None = None
    sender_address: str | None = None
    preheader: dict[str, str] = field(default_factory=dict)
    intro: dict[str, str] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)  # interest order chosen by the editor; empty: by articles
    articles: list[Article] = field(default_factory=list)
    country_blocks: list[CountryBlock] = field(default_factory=list)

    def subject_for(self, lang: str) -> str:
        return self.subject.get(lang) or self.subject["en"]

    def preheader_for(self, lang: str) -> str:
        return self.preheader.get(lang) or self.preheader.get("en", "")

    def intro_for(self, lang: str) -> str:
        return self.intro.get(lang) or self.intro.get("en", "")


@dataclass
class Section:
    interest: str  # a taxonomy slug, or GENERAL
    articles: list[Article]


# ---------------------------------------------------------------------------------------------------
# Loading


def list_campaigns(campaigns_dir: Path, tz: ZoneInfo) -> list[Campaign]:
    """Every folder with a campaign.toml, by name (slugs start with the date, so this is by date)."""
    campaigns_dir = Path(campaigns_dir)
    if not campaigns_dir.is_dir():
        raise CampaignError(f"{campaigns_dir}: campaigns folder does not exist; create it or set campaigns_dir")
    folders = sorted(path.parent for path in campaigns_dir.glob(f"*/{CAMPAIGN_FILE}"))
    return [load_campaign(folder, tz) for folder in folders]


def load_campaign(folder: Path, tz: ZoneInfo) -> Campaign:
    """Read and check campaign.toml and its articles; send_at, written in local time, becomes UTC."""
    folder = Path(folder)
    reader = _Reader(folder / CAMPAIGN_FILE)
    data = reader.data
    reader.reject_unknown(data, TOP_LEVEL_KEYS, "")
    subject = reader.languages(data, "subject", required=True)
    campaign = Campaign(
        slug=folder.name,
        folder=folder,
        title=reader.text(data, "title", default=subject["en"]),
        subject=subject,
        template=reader.text(data, "template", default="digest", pattern=r"[\w-]+"),
        segment=reader.text(data, "segment", default="status:active"),
        send_at=_send_at(reader, data.get("send_at"), tz) if "send_at" in data else None,
        transport=reader.text(data, "transport", default=None),
        only_matching_interests=reader.flag(data, "only_matching_interests"),
        sender_name=reader.text(data, "sender_name", default=None),
        sender_address=reader.text(data, "sender_address", default=None),
        preheader=reader.languages(data, "preheader"),
        intro=reader.languages(data, "intro"),
        sections=reader.interests(data, "sections"),
    )
    campaign.articles = _articles(reader, folder, data.get("articles"))
    campaign.country_blocks = _country_blocks(reader, data.get("country_blocks", []))
    return campaign


class _Reader:
    """campaign.toml's content with checks whose errors point at the file, line and field."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.source = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CampaignError(f"{path}: no {CAMPAIGN_FILE} in {path.parent}; every campaign folder needs one")
        try:
            self.data = tomllib.loads(self.source)
        except tomllib.TOMLDecodeError as exc:
            raise CampaignError(f"{path}: not valid TOML: {exc}") from None

    def fail(self, name: str, problem: str, line: int | None = None) -> CampaignError:
        line = line or self.line_of(name)
        where = f"{self.path}, line {line}" if line else str(self.path)
        return CampaignError(f"{where}: {name}: {problem}")

    def line_of(self, name: str) -> int | None:
        """Where a top-level key or table is written; nested fields point at their table."""
        head = name.split(".")[0].split("[")[0]
        match = re.search(rf"^\s*(?:{re.escape(head)}\s*=|\[+\s*{re.escape(head)}\s*[\].])", self.source, re.MULTILINE)
        return self.source.count("\n", 0, match.start()) + 1 if match else None

    def table_line(self, table: str, index: int) -> int | None:
        """The line of the index-th [[table]] header."""
        headers = list(re.finditer(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", self.source, re.MULTILINE))
        return self.source.count("\n", 0, headers[index].start()) + 1 if index < len(headers) else None

    def reject_unknown(self, table: dict, known: tuple[str, ...], prefix: str, line: int | None = None) -> None:
        for key in table:
            if key not in known:
                raise self.fail(f"{prefix}{key}", f"unknown key; known keys here: {', '.join(known)}", line)

    def text(self, table: dict, key: str, default: str | None, pattern: str | None = None) -> str | None:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be non-empty text in quotes, got {value!r}")
        if pattern and not re.fullmatch(pattern, value):
            raise self.fail(key, f"{value!r} must be a plain name (letters, digits, '-' or '_')")
        return value.strip()

    def flag(self, table: dict, key: str) -> bool:
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false (no quotes), got {value!r}")
        return value

    def interests(self, table: dict, key: str) -> list[str]:
        try:
            return coerce_interests(table.get(key, []))
        except ValueError as exc:
            raise self.fail(key, str(exc))

    def languages(self, table: dict, key: str, required: bool = False, line: int | None = None) -> dict[str, str]:
        """A [key] table of texts per language; en must be there, the others fall back to it."""
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, f"must be a table of texts per language, e.g. [{key}] then en = \"...\"", line)
        self.reject_unknown(value, LANGUAGES, f"{key}.", line)
        for lang, text in value.items():
            if not isinstance(text, str) or not text.strip():
                raise self.fail(f"{key}.{lang}", f"must be non-empty text in quotes, got {text!r}", line)
        if (required or value) and "en" not in value:
            raise self.fail(f"{key}.en", "missing; English is required (other languages fall back to it)", line)
        return {lang: text.strip() for lang, text in value.items()}


def _send_at(reader: _Reader, value: Any, tz: ZoneInfo) -> datetime:
    """Local wall-clock time in the configured zone (or an explicit offset) as an aware UTC datetime."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            when = None
    if not isinstance(when, datetime):
        raise reader.fail("send_at", f"{value!r} is not a date and time; write it as \"2026-12-01 09:00\"")
    if when.tzinfo is not None:
        return when.astimezone(timezone.utc)
    local = when.replace(tzinfo=tz)
    utc = local.astimezone(timezone.utc)
    if utc.astimezone(tz).replace(tzinfo=None) != when:
        raise reader.fail("send_at", f"{value!r} does not exist in {tz.key} (the clocks skip it); pick another time")
    return utc


_OVERRIDES: dict[str, Callable[[Any], Any]] = {
    "title": lambda value: normalise_space(_string(value)),
    "url": lambda value: _string(value).strip(),
    "summary": lambda value: normalise_space(_string(value)),
    "date": coerce_date,
    "interests": coerce_interests,
    "countries": coerce_countries,
    "authors": coerce_authors,
}


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be text in quotes, got {value!r}")
    return value


def _articles(reader: _Reader, folder: Path, entries: Any) -> list[Article]:
    if entries is None:
        entries = [{"file": path.name} for path in sorted(folder.iterdir())
                   if path.suffix.lower() in ARTICLE_SUFFIXES and path.is_file()]
    elif not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise reader.fail("articles", "must be [[articles]] tables, each with file = \"...\"")
    articles = []
    for index, entry in enumerate(entries):
        line = reader.table_line("articles", index)
        name = f"articles[{index + 1}]"
        reader.reject_unknown(entry, ARTICLE_KEYS, f"{name}.", line)
        file = entry.get("file")
        if not isinstance(file, str) or not file.strip():
            raise reader.fail(f"{name}.file", "missing; name the article file, e.g. file = \"news.md\"", line)
        path = folder / file
        if not path.is_file():
            raise reader.fail(f"{name}.file", f"{file!r} does not exist in {folder}; check the name", line)
        try:
            article = parse_article(path)
        except ArticleError as exc:
            raise CampaignError(f"{exc} (article {index + 1} of {reader.path})") from exc
        overrides = {}
        for key, convert in _OVERRIDES.items():
            if key in entry:
                try:
                    overrides[key] = convert(entry[key])
                except ValueError as exc:
                    raise reader.fail(f"{name}.{key}", str(exc), line)
        article = replace(article, **overrides)
        if not article.title:
            raise reader.fail(f"{name}.title", f"{file} has no title; add title = \"...\" to its [[articles]] "
                              "entry (or a title to the file)", line)
        articles.append(article)
    return articles


def _country_blocks(reader: _Reader, entries: Any) -> list[CountryBlock]:
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise reader.fail("country_blocks", "must be [[country_blocks]] tables with countries and [country_blocks.text]")
    blocks = []
    for index, entry in enumerate(entries):
        line = reader.table_line("country_blocks", index)
        name = f"country_blocks[{index + 1}]"
        reader.reject_unknown(entry, COUNTRY_BLOCK_KEYS, f"{name}.", line)
        try:
            countries = coerce_countries(entry.get("countries", []))
        except ValueError as exc:
            raise reader.fail(f"{name}.countries", str(exc), line)
        if not countries:
            raise reader.fail(f"{name}.countries", "missing; list the countries, e.g. countries = [\"TT\", \"BB\"]", line)
        text = reader.languages({f"{name}.text": entry.get("text", {})}, f"{name}.text", required=True, line=line)
        blocks.append(CountryBlock(countries, text))
    return blocks


# ---------------------------------------------------------------------------------------------------
# Per-subscriber content


def section_order(campaign: Campaign) -> list[str]:
    """The editor's `sections` order, else each article's main (first) interest in article order."""
    if campaign.sections:
        return list(campaign.sections)
    return list(dict.fromkeys(article.interests[0] for article in campaign.articles if article.interests))


def _campaign_sections(campaign: Campaign) -> list[Section]:
    """Each article once, under its first interest that the campaign has a section for; the rest last."""
    order = section_order(campaign)
    sections = {interest: Section(interest, []) for interest in [*order, GENERAL]}
    for article in campaign.articles:
        home = next((interest for interest in article.interests if interest in order), GENERAL)
        sections[home].articles.append(article)
    return [section for section in sections.values() if section.articles]


def build_sections(campaign: Campaign, interests: frozenset[str], country: str) -> list[Section]:
    """Sections for one subscriber: their interests first, and within a section, news about their country first.

    With only_matching_interests the other interests' sections are left out (general news stays); a
    subscriber who matches none gets the whole issue rather than an empty one.
    """
    country = country.upper()
    sections = [
        Section(section.interest, sorted(section.articles, key=lambda article: country not in article.countries))
        for section in _campaign_sections(campaign)
    ]
    matching = [section for section in sections if section.interest in interests]
    others = [section for section in sections if section.interest not in interests]
    if not campaign.only_matching_interests or not matching:
        return matching + others
    return matching + [section for section in others if section.interest == GENERAL]


def country_blocks_for(campaign: Campaign, country: str, lang: str) -> list[str]:
    """The notes meant for subscribers in this country, in their language or else English."""
    country = country.upper()
    return [block.text.get(lang) or block.text["en"] for block in campaign.country_blocks if country in block.countries]


def variant_key(campaign: Campaign, interests: frozenset[str], country: str) -> tuple:
    """Everything build_sections() and country_blocks_for() look at, and nothing more.

    Language is not part of it: cache per (language, variant_key).
    """
    country = country.upper()
    shared_interests = tuple(sorted({section.interest for section in _campaign_sections(campaign)} & set(interests)))
    local_articles = tuple(index for index, article in enumerate(campaign.articles) if country in article.countries)
    local_blocks = tuple(index for index, block in enumerate(campaign.country_blocks) if country in block.countries)
    return shared_interests, local_articles, local_blocks
