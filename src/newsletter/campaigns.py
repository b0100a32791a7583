"""A campaign folder (campaign.toml + article files) read into one issue, and cut into per-subscriber sections.

Sections depend only on which of the campaign's interests a subscriber shares, which of its articles name
the subscriber's country, and which country blocks apply; variant_key() captures exactly that, so the
renderer can build each variant once and reuse it for every subscriber who shares the key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

from newsletter.articles import (
    INTERESTS,
    Article,
    ArticleError,
    article_slug,
    check_image,
    coerce_authors,
    coerce_countries,
    coerce_date,
    coerce_interests,
    coerce_texts,
    normalise_space,
    parse_article,
    translation_language,
)
from newsletter.db import LANGUAGES

CAMPAIGN_FILE = "campaign.toml"
ARTICLE_SUFFIXES = (".md", ".txt")
TOP_LEVEL_KEYS = ("title", "template", "segment", "send_at", "transport", "only_matching_interests", "sender_name",
                  "sender_address", "subject", "preheader", "intro", "sections", "section_labels", "period_days",
                  "articles", "country_blocks")
ARTICLE_KEYS = ("file", "title", "date", "url", "summary", "category", "interests", "countries", "authors", "image",
                "image_alt", "translations")
COUNTRY_BLOCK_KEYS = ("countries", "text")
GENERAL = ""  # the section of articles that have no interest: news for every subscriber
GENERAL_KEY = "general"  # how campaign.toml's section_labels names that section
DEFAULT_PERIOD_DAYS = 31
DEFAULT_LANGUAGE = "en"


class CampaignError(Exception):
    """The campaign folder cannot be used as written; the message names the file, field and the fix."""


@dataclass(frozen=True)
class CountryBlock:
    countries: list[str]
    text: dict[str, str]


@dataclass
class Campaign:
    """Texts given per language are dicts language -> text with English always present; *_for(lang) picks
    the reader's language, else English."""

    slug: str
    folder: Path
    title: str  # the English title; titles has every language's
    subject: dict[str, str]
    titles: dict[str, str] = field(default_factory=dict)
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
    section_labels: dict[str, dict[str, str]] = field(default_factory=dict)  # interest or GENERAL -> texts
    period_days: int = DEFAULT_PERIOD_DAYS  # articles older than this before send_at draw a warning
    articles: list[Article] = field(default_factory=list)
    country_blocks: list[CountryBlock] = field(default_factory=list)

    def subject_for(self, lang: str) -> str:
        return self.subject.get(lang) or self.subject["en"]

    def title_for(self, lang: str) -> str:
        return self.titles.get(lang) or self.title

    def preheader_for(self, lang: str) -> str:
        """The preheader, else the intro's first sentence (never the filler alone), else the title."""
        given = self.preheader.get(lang) or self.preheader.get("en")
        return given or first_sentence(self.intro_for(lang)) or self.title_for(lang)

    def intro_for(self, lang: str) -> str:
        return self.intro.get(lang) or self.intro.get("en", "")

    def section_label(self, interest: str, lang: str) -> str | None:
        """The editor's label for a section in campaign.toml, or None for the taxonomy's own."""
        texts = self.section_labels.get(interest)
        return (texts.get(lang) or texts.get("en")) if texts else None


_SENTENCE = re.compile(r"(.{12,}?[.!?…])(?=\s|$)", re.DOTALL)  # "Dr." alone is no sentence


def first_sentence(text: str) -> str:
    """The first sentence of a text (the whole first paragraph when it has no full stop)."""
    paragraph = text.strip().split("\n\n")[0].strip()
    match = _SENTENCE.match(paragraph)
    return " ".join((match.group(1) if match else paragraph).split())


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
    titles = reader.languages(data, "title") or dict(subject)  # no title: each language's subject
    campaign = Campaign(
        slug=folder.name,
        folder=folder,
        title=titles["en"],
        titles=titles,
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
        section_labels=_section_labels(reader, data.get("section_labels", {})),
        period_days=reader.positive_int(data, "period_days", DEFAULT_PERIOD_DAYS),
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

    def positive_int(self, table: dict, key: str, default: int) -> int:
        value = table.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail(key, f"must be a whole number of days (no quotes), e.g. {key} = 31; got {value!r}")
        return value

    def languages(self, table: dict, key: str, required: bool = False, line: int | None = None) -> dict[str, str]:
        """A [key] table of texts per language (en must be there, the others fall back to it), or one text
        in quotes for every language."""
        value = table.get(key, {})
        if isinstance(value, str):
            value = {"en": value}
        if not isinstance(value, dict):
            raise self.fail(key, f"must be text in quotes or a table of texts per language, e.g. [{key}] then "
                                 f"en = \"...\"", line)
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


_LOCALIZED_OVERRIDES = ("title", "summary", "category")  # a text, or a table of texts per language
_OVERRIDES: dict[str, Callable[[Any], Any]] = {
    "url": lambda value: _string(value).strip(),
    "image": lambda value: _string(value).strip(),
    "image_alt": lambda value: normalise_space(_string(value)),
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
    """The [[articles]] entries (or every article file in the folder, translations aside), each with the
    versions in other languages found beside it (news.es.md for news.md) or named in `translations`."""
    if entries is None:
        files = [path for path in sorted(folder.iterdir()) if path.suffix.lower() in ARTICLE_SUFFIXES and path.is_file()]
        bases = {path.name for path in files if translation_language(path) is None}
        entries = [{"file": path.name} for path in files if not is_translation(path, bases)]
    elif not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise reader.fail("articles", "must be [[articles]] tables, each with file = \"...\"")
    articles: list[Article] = []
    for index, entry in enumerate(entries):
        line = reader.table_line("articles", index)
        name = f"articles[{index + 1}]"
        reader.reject_unknown(entry, ARTICLE_KEYS, f"{name}.", line)
        file = entry.get("file")
        if not isinstance(file, str) or not file.strip():
            raise reader.fail(f"{name}.file", "missing; name the article file, e.g. file = \"news.md\"", line)
        article = _read_article(reader, folder, file, f"{name}.file", index, line)
        overrides = {}
        for key, convert in _OVERRIDES.items():
            if key in entry:
                try:
                    overrides[key] = convert(entry[key])
                except ValueError as exc:
                    raise reader.fail(f"{name}.{key}", str(exc), line)
        if "interests" in entry:
            overrides["filing"] = "campaign.toml"
        article = replace(article, **overrides)
        for key in _LOCALIZED_OVERRIDES:
            if key in entry:
                try:
                    texts = coerce_texts(entry[key])
                except ValueError as exc:
                    raise reader.fail(f"{name}.{key}", str(exc), line)
                if isinstance(entry[key], str):
                    texts = {article.language: texts["en"]}
                article.localized[key] = {**article.localized.get(key, {}), **texts}
                setattr(article, key, texts.get(article.language) or getattr(article, key) or texts.get("en", ""))
        if article.image and ("image" in entry or "image_alt" in entry):
            try:
                check_image(article.image, article.image_alt, folder / file, None)
            except ArticleError as exc:
                raise reader.fail(f"{name}.image", exc.problem, line)
        article.translations = _translations(reader, folder, file, entry.get("translations"), name, index, line)
        if not article.title:
            raise reader.fail(f"{name}.title", f"{file} has no title; add title = \"...\" to its [[articles]] "
                              "entry (or a title to the file)", line)
        clash = next((other for other in articles if other.slug == article.slug), None)
        if clash is not None:
            raise reader.fail(f"{name}.file", f"{file} and {clash.source.name} have the same name in the archive "
                              f"({article.slug!r}); rename one of them", line)
        articles.append(article)
    return articles


def is_translation(path: Path, bases: set[str]) -> bool:
    """news.es.md is a translation when news.md or news.txt is among `bases` (the names beside it)."""
    lang = translation_language(path)
    return lang is not None and any(f"{article_slug(path)}{suffix}" in bases for suffix in ARTICLE_SUFFIXES)


def _read_article(reader: _Reader, folder: Path, file: str, field_name: str, index: int, line: int | None) -> Article:
    path = folder / file
    if not path.is_file():
        raise reader.fail(field_name, f"{file!r} does not exist in {folder}; check the name", line)
    try:
        return parse_article(path)
    except ArticleError as exc:
        raise CampaignError(f"{exc} (article {index + 1} of {reader.path})") from exc


def _translations(reader: _Reader, folder: Path, file: str, given: Any, name: str, index: int,
                  line: int | None) -> dict[str, Article]:
    """Versions in other languages: files named like the article plus .<lang>, and the translations table."""
    stem = article_slug(Path(file))
    files = {lang: path.name for path in sorted(folder.glob(f"{stem}.*.*"))
             if (lang := translation_language(path)) and path.suffix.lower() in ARTICLE_SUFFIXES
             and article_slug(path) == stem and path.name != file}
    if given is not None:
        if not isinstance(given, dict):
            raise reader.fail(f"{name}.translations", "must be a table of files per language, e.g. "
                              "translations = { es = \"news-es.md\" }", line)
        for lang, other in given.items():
            if lang not in LANGUAGES:
                raise reader.fail(f"{name}.translations.{lang}", f"unknown language; use one of {', '.join(LANGUAGES)}",
                                  line)
            if not isinstance(other, str) or not other.strip():
                raise reader.fail(f"{name}.translations.{lang}", "must be a file name in quotes", line)
            files[lang] = other.strip()
    versions = {}
    for lang, other in files.items():
        version = _read_article(reader, folder, other, f"{name}.translations.{lang}", index, line)
        version.language = lang
        if not version.title:
            raise reader.fail(f"{name}.translations.{lang}", f"{other} has no title; give it one", line)
        versions[lang] = version
    return versions


def _section_labels(reader: _Reader, value: Any) -> dict[str, dict[str, str]]:
    """[section_labels] security = "Safer networks", or [section_labels.security] with a text per language."""
    if not isinstance(value, dict):
        raise reader.fail("section_labels", "must be a table: [section_labels] then security = \"...\"")
    labels = {}
    for key, texts in value.items():
        if key != GENERAL_KEY and key not in INTERESTS:
            raise reader.fail(f"section_labels.{key}", f"unknown section; use {GENERAL_KEY} or one of "
                              f"{', '.join(INTERESTS)}")
        labels[GENERAL if key == GENERAL_KEY else key] = reader.languages(value, key)
    return labels


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


@dataclass(frozen=True)
class Placement:
    """Where one article goes in the issue, and why: what `campaign build` tells the editor."""

    article: Article
    section: str  # a taxonomy slug, or GENERAL
    reason: str


def placements(campaign: Campaign) -> list[Placement]:
    """Each article once, under its first interest that the campaign has a section for; the rest in GENERAL."""
    order = section_order(campaign)
    result = []
    for article in campaign.articles:
        home = next((interest for interest in article.interests if interest in order), GENERAL)
        if not article.interests:
            why = f"no interest: {article.filing}" if article.filing else "no interest"
        else:
            why = f"interests {', '.join(article.interests)} from {article.filing}"
            if home == GENERAL:
                why += "; none of them has a section in this campaign's sections"
            elif home != article.interests[0]:
                why += f"; {home} is the first of them with a section in this campaign's sections"
        result.append(Placement(article, home, why))
    return result


def _campaign_sections(campaign: Campaign) -> list[Section]:
    """Each article once, under its first interest that the campaign has a section for; the rest last."""
    sections = {interest: Section(interest, []) for interest in [*section_order(campaign), GENERAL]}
    for placement in placements(campaign):
        sections[placement.section].articles.append(placement.article)
    return [section for section in sections.values() if section.articles]


def content_warnings(campaign: Campaign, today: date) -> list[str]:
    """What an editor should look at before sending: stale articles and sections without articles."""
    warnings = []
    issue_day = campaign.send_at.date() if campaign.send_at else today
    for article in campaign.articles:
        if article.date and (issue_day - article.date).days > campaign.period_days:
            warnings.append(f"{article.source.name} is dated {article.date.isoformat()}, "
                            f"{(issue_day - article.date).days:,} days before this issue ({issue_day.isoformat()}); "
                            f"the campaign's period is {campaign.period_days} days (period_days in campaign.toml)")
    filled = {placement.section for placement in placements(campaign)}
    for interest in campaign.sections:
        if interest not in filled:
            warnings.append(f"section {interest!r} (in sections of campaign.toml) has no article and is left out")
    return warnings


def missing_languages(campaign: Campaign) -> dict[str, list[str]]:
    """Per language, what its readers get in another language; an empty list: the language is complete."""
    missing: dict[str, list[str]] = {lang: [] for lang in LANGUAGES}
    for lang in LANGUAGES:
        if lang == DEFAULT_LANGUAGE:
            continue
        for name, texts in (("subject", campaign.subject), ("title", campaign.titles), ("intro", campaign.intro),
                            ("preheader", campaign.preheader)):
            if texts and lang not in texts:
                missing[lang].append(name)
        for interest, texts in campaign.section_labels.items():
            if lang not in texts:
                missing[lang].append(f"section label {interest or GENERAL_KEY}")
        for index, block in enumerate(campaign.country_blocks):
            if lang not in block.text:
                missing[lang].append(f"country_blocks[{index + 1}]")
    for article in campaign.articles:
        for lang in LANGUAGES:
            if lang not in article.languages():
                missing[lang].append(f"article {article.slug}")
            elif article.category and lang != article.language and lang not in article.localized.get("category", {}) \
                    and not (lang in article.translations and article.translations[lang].category):
                missing[lang].append(f"category of {article.slug}")
    return missing


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
