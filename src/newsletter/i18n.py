"""Translations and Jinja2 environments per language.

The .po files under newsletter/locales are the source of truth. A wheel carries them compiled (.mo,
written by setup.py at build time), which the standard library loads in a millisecond; a checkout has
only the .po files, which are compiled in memory on first use, so a translator's edit shows up without
a build step.
"""

from __future__ import annotations

import datetime
import gettext
import io
import re
import textwrap
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import jinja2
from babel.core import Locale
from babel.dates import format_date
from babel.lists import format_list

from newsletter.db import LANGUAGES
from newsletter.packaged import template_search_path

SUPPORTED_LANGUAGES: tuple[str, ...] = LANGUAGES  # the languages a subscriber can choose
DEFAULT_LANGUAGE = "en"
LOCALES_DIR = Path(__file__).parent / "locales"

_LANGUAGE_RANGE = re.compile(r"^\s*([A-Za-z]{1,8})(?:[-_][A-Za-z0-9]{1,8})*\s*$")


class CatalogError(Exception):
    """A .po file cannot be read; the message names the file and line and says how to fix it."""


def negotiate(lang_header_or_code: str | None) -> str:
    """The supported language that best fits a code ("pt_BR", "es") or an Accept-Language header.

    Anything unrecognised falls back to English, so callers never have to handle a miss.
    """
    if not lang_header_or_code:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(lang_header_or_code.split(",")):
        tag, _, params = item.partition(";")
        match = _LANGUAGE_RANGE.match(tag)
        if not match:
            continue
        quality = _quality(params)
        if quality > 0:
            ranked.append((-quality, position, match.group(1).lower()))
    for _, _, primary in sorted(ranked):
        if primary in SUPPORTED_LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def _quality(params: str) -> float:
    """The q= weight of one Accept-Language entry; a malformed weight counts as 0 (not acceptable)."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def catalog_path(lang: str, domain: str = "email") -> Path:
    """Where the .po file of one language and domain lives."""
    return LOCALES_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


def translations(lang: str, domain: str = "email") -> gettext.NullTranslations:
    """The translations for lang, or the msgids themselves for English and unknown languages."""
    return _load_translations(negotiate(lang), domain)


@lru_cache(maxsize=None)
def _load_translations(lang: str, domain: str) -> gettext.NullTranslations:
    path = catalog_path(lang, domain)
    if lang == DEFAULT_LANGUAGE or not path.is_file():
        return gettext.NullTranslations()
    compiled = path.with_suffix(".mo")
    if compiled.is_file():
        with compiled.open("rb") as mo_file:
            return gettext.GNUTranslations(mo_file)
    return compile_catalog(path, lang, domain)


def compile_catalog(path: Path, lang: str, domain: str) -> gettext.GNUTranslations:
    """Compile one .po file in memory; fuzzy entries are left out, as msgfmt would."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import PoFileError, read_po
    from babel.support import Translations

    with path.open("rb") as po_file:
        try:
            catalog = read_po(po_file, locale=lang, domain=domain, abort_invalid=True)
        except PoFileError as error:
            raise CatalogError(
                f"{path}: {error} (babel counts lines from 0); correct that entry's msgid/msgstr lines"
            ) from error
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def gettext_for(lang: str, domain: str = "email") -> Callable[[str], str]:
    """A plain gettext function for Python code that builds text outside templates (greetings)."""
    return translations(lang, domain).gettext


def paragraphs(text: str) -> list[str]:
    """Split text on blank lines, so authors write paragraphs the way they would in a plain mail."""
    return [block.strip() for block in re.split(r"\n\s*\n", text or "") if block.strip()]


def wrap(text: str, width: int = 72, prefix: str = "") -> str:
    """Reflow plain text for the text/plain part; long words (URLs) are never broken."""
    return textwrap.fill(
        text,
        width=width,
        initial_indent=prefix,
        subsequent_indent=prefix,
        break_long_words=False,
        break_on_hyphens=False,
    )


def language_name(code: str) -> str:
    """A language's name as its own speakers write it ("español"), for links between versions."""
    return Locale.parse(code).get_display_name(code) or code


def _environment(search_path: tuple[Path, ...], lang: str, domain: str) -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(search_path)),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    environment.install_gettext_translations(translations(lang, domain), newstyle=True)
    environment.policies["ext.i18n.trimmed"] = True
    locale = Locale.parse(lang)

    def date_long(value: datetime.date) -> str:
        return format_date(value, format="long", locale=locale)

    def date_medium(value: datetime.date) -> str:
        return format_date(value, format="medium", locale=locale)

    def join_names(names: list[str]) -> str:
        return format_list(list(names), locale=locale)

    environment.filters.update(
        date_long=date_long, date_medium=date_medium, join_names=join_names, paragraphs=paragraphs, wrap=wrap,
        language_name=language_name,
    )
    environment.globals["lang"] = lang
    return environment


def email_environment(templates_dir: Path | None, lang: str) -> jinja2.Environment:
    """The Jinja2 environment for email templates in one language: templates_dir/email first, then the
    packaged defaults (cached: build once, render many)."""
    return _cached_environment(tuple(template_search_path(templates_dir, "email")), negotiate(lang), "email")


def web_environment(templates_dir: Path | None, lang: str) -> jinja2.Environment:
    """The Jinja2 environment for pages in one language, with the "web" catalogue; overrides as for email."""
    return _cached_environment(tuple(template_search_path(templates_dir, "web")), negotiate(lang), "web")


@lru_cache(maxsize=None)
def _cached_environment(search_path: tuple[Path, ...], lang: str, domain: str) -> jinja2.Environment:
    return _environment(search_path, lang, domain)
