"""The recurring digest: the articles published since the last digest, written out as an ordinary campaign folder.

A digest is a campaign like any other (campaigns_dir/digest-YYYY-MM/ with a campaign.toml and copies of its
articles), so an editor can read, preview or resend it with the usual commands. Its window runs from the
previous digest's occurrence (exclusive) to this one (inclusive), compared as dates in the configured zone,
because article files carry a date and no time. After downtime the previous digest is the last one actually
built, so articles from the months the scheduler missed still go out, in the one catch-up digest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlite_utils
from babel.dates import format_skeleton

from .articles import Article, ArticleError, article_slug, parse_article, translation_language
from .campaigns import ARTICLE_SUFFIXES, CAMPAIGN_FILE, Campaign, is_translation, load_campaign
from .clock import parse_utc, utc_iso
from .config import Config
from .db import LANGUAGES
from .recurrence import parse_rule

SLUG_PREFIX = "digest-"

# Per language: {month} is babel's month-and-year for that locale ("diciembre de 2026").
TITLES = {"en": "{Month} digest", "es": "Boletín de {month}", "pt": "Boletim de {month}", "fr": "Lettre de {month}"}
SUBJECTS = {"en": "{list_name}: {Month}", "es": "{list_name}: {Month}", "pt": "{list_name}: {Month}",
            "fr": "{list_name} : {Month}"}
PREHEADERS = {
    "en": "News from the region's Internet community, {month}.",
    "es": "Noticias de la comunidad de Internet de la región, {month}.",
    "pt": "Notícias da comunidade de Internet da região, {month}.",
    "fr": "Les nouvelles de la communauté Internet de la région, {month}.",
}
INTROS = {
    "en": "Welcome to the {month} digest: everything the bureau has published since our last issue, in one message.",
    "es": "Le damos la bienvenida al boletín de {month}: todo lo que la oficina ha publicado desde nuestro último "
          "número, en un solo mensaje.",
    "pt": "Boas-vindas ao boletim de {month}: tudo o que o escritório publicou desde a última edição, numa só "
          "mensagem.",
    "fr": "Bienvenue dans la lettre de {month} : tout ce que le bureau a publié depuis notre dernier numéro, en un "
          "seul message.",
}


class DigestError(Exception):
    """The digest cannot be built as configured; the message names the file or setting and the fix."""


@dataclass(frozen=True)
class Window:
    """Articles dated after `after` (None: no lower bound) and on or before `until`, as local dates."""

    after: date | None
    until: date

    def __contains__(self, day: date) -> bool:
        return (self.after is None or day > self.after) and day <= self.until


def digest_slug(config: Config, occurrence: datetime) -> str:
    """digest-YYYY-MM, by the occurrence's month in the configured zone."""
    return f"{SLUG_PREFIX}{occurrence.astimezone(config.tz):%Y-%m}"


def previous_digest_at(config: Config, occurrence: datetime, db: sqlite_utils.Database) -> datetime | None:
    """The last digest built before `occurrence`; without one, the latest earlier occurrence of any digest rule.

    Skipped and failed runs do not count: their articles (if any arrive late) belong to the next digest.
    """
    row = db.execute("SELECT max(occurrence) FROM digest_runs WHERE slug IS NOT NULL AND occurrence < ?",
                     [utc_iso(occurrence)]).fetchone()
    if row[0]:
        return parse_utc(row[0])
    just_before = occurrence - timedelta(seconds=1)
    earlier = [parse_rule(text).previous_at_or_before(just_before) for text in config.digest.rules]
    return max((moment for moment in earlier if moment is not None), default=None)


def digest_window(config: Config, occurrence: datetime, db: sqlite_utils.Database) -> Window:
    previous = previous_digest_at(config, occurrence, db)
    return Window(after=previous.astimezone(config.tz).date() if previous else None,
                  until=occurrence.astimezone(config.tz).date())


def articles_in_window(config: Config, window: Window) -> list[Article]:
    """The window's articles, newest first; an unreadable or undated file stops the build so it gets fixed."""
    folder = config.digest.articles_dir
    where = f"{config.path or 'newsletter.toml'} [digest] articles_dir"
    if folder is None:
        raise DigestError(f"{where} is not set; name the folder that holds the articles, e.g. articles_dir = \"articles\"")
    if not folder.is_dir():
        raise DigestError(f"{where}: {folder} is not a folder; create it or correct the setting")
    chosen = []
    files = [path for path in sorted(folder.iterdir()) if path.suffix.lower() in ARTICLE_SUFFIXES and path.is_file()]
    names = {path.name for path in files}
    for path in files:
        if is_translation(path, names):  # news.es.md goes with news.md (copied along by build_digest)
            continue
        try:
            article = parse_article(path)
        except ArticleError as exc:
            raise DigestError(f"{exc} (digest articles in {folder})") from exc
        if article.date is None:
            raise DigestError(f"{path}: no date; add `date: YYYY-MM-DD` to its front matter (or a dateline to the "
                              f"text) so the digest knows which issue it belongs to")
        if article.date in window:
            chosen.append(article)
    return sorted(chosen, key=lambda article: (-article.date.toordinal(), article.source.name))


def build_digest(config: Config, occurrence: datetime, db: sqlite_utils.Database) -> Campaign | None:
    """Write campaigns_dir/digest-YYYY-MM/ for this occurrence and load it; None when no article is new.

    Building the same occurrence again rewrites the same folder with the same content.
    """
    slug = digest_slug(config, occurrence)
    other = db.execute("SELECT occurrence FROM digest_runs WHERE slug = ? AND occurrence != ?",
                       [slug, utc_iso(occurrence)]).fetchone()
    if other:
        raise DigestError(f"{slug} was already built for the occurrence at {other[0]}, in the same month as "
                          f"{utc_iso(occurrence)}; a digest goes out once a month, so keep one rule per month in "
                          f"{config.path or 'newsletter.toml'} [digest] rules")
    window = digest_window(config, occurrence, db)
    articles = articles_in_window(config, window)
    if not articles:
        return None
    folder = Path(config.campaigns_dir) / slug
    folder.mkdir(parents=True, exist_ok=True)
    keep = set()
    for article in articles:
        for path in [article.source, *translations_beside(article.source)]:
            _write_if_changed(folder / path.name, path.read_bytes())
            keep.add(path.name)
    _write_if_changed(folder / CAMPAIGN_FILE,
                      campaign_toml(config, occurrence, window, articles).encode("utf-8"))
    for stale in folder.iterdir():
        if stale.suffix.lower() in ARTICLE_SUFFIXES and stale.name not in keep:
            stale.unlink()
    return load_campaign(folder, config.tz)


def translations_beside(source: Path) -> list[Path]:
    """The versions of an article in other languages, named like it (news.es.md beside news.md)."""
    return [path for path in sorted(source.parent.glob(f"{article_slug(source)}.*.*"))
            if path != source and translation_language(path) and article_slug(path) == article_slug(source)
            and path.suffix.lower() in ARTICLE_SUFFIXES]


def month_names(occurrence: datetime, config: Config) -> dict[str, str]:
    """The occurrence's month and year as each language writes it."""
    local_day = occurrence.astimezone(config.tz).date()
    return {lang: format_skeleton("yMMMM", local_day, locale=lang) for lang in LANGUAGES}


def campaign_toml(config: Config, occurrence: datetime, window: Window, articles: list[Article]) -> str:
    months = month_names(occurrence, config)

    def texts(table: str, phrases: dict[str, str]) -> list[str]:
        lines = [f"[{table}]"]
        for lang in LANGUAGES:
            month = months[lang]
            text = phrases[lang].format(list_name=config.list_name_for(lang), month=month,
                                        Month=month[:1].upper() + month[1:])
            if lang == "fr" and month[:1] in "aeiouâéèêîôû":  # "lettre d'avril 2027", not "de avril"
                text = text.replace(f"de {month}", f"d'{month}")
            lines.append(f"{lang} = {_toml_string(text)}")
        return [*lines, ""]

    since = f"after {window.after.isoformat()}" if window.after else "any date"
    lines = [
        f"# Built by the digest scheduler for {occurrence.astimezone(config.tz):%Y-%m-%d %H:%M} {config.timezone}: "
        f"articles dated {since}, up to {window.until.isoformat()},",
        f"# copied from {config.digest.articles_dir}. Building this occurrence again rewrites the folder.",
        f"template = {_toml_string(config.digest.template)}",
        f"segment = {_toml_string(config.digest.segment)}",
        "",
        *texts("title", TITLES),
        *texts("subject", SUBJECTS),
        *texts("preheader", PREHEADERS),
        *texts("intro", INTROS),
    ]
    for article in articles:
        lines += ["[[articles]]", f"file = {_toml_string(article.source.name)}", ""]
    return "\n".join(lines)


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes (\\" \\\\ \\n \\uXXXX) are all valid TOML escapes."""
    return json.dumps(text, ensure_ascii=False)


def _write_if_changed(path: Path, content: bytes) -> None:
    """Replace the file in one step, so a reader never sees half of it; leave it alone when it is the same."""
    if path.is_file() and path.read_bytes() == content:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)
