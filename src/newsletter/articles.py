"""Articles as the bureau receives them, turned into clean, structured content for an issue.

Two forms arrive: Markdown with YAML front matter (written for the newsletter), and plain text, either
a bare press release or a page scraped from the bureau's website with its navigation still in it. The
plain-text parser reads the site's page shape (thumbnail caption, "‹ Back", a category + date line,
title, bylines, body, disclaimer, related articles, footer) by the kind of each line, not by position,
so pages of other categories, authors and languages parse the same way.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pycountry
import yaml
from markdown_it import MarkdownIt

from newsletter.db import LANGUAGES, SEED_INTERESTS

INTERESTS: tuple[str, ...] = tuple(row[0] for row in SEED_INTERESTS)
FRONT_MATTER_KEYS = ("title", "date", "authors", "category", "interests", "countries", "url", "summary", "language",
                     "image", "image_alt")
LOCALIZABLE = ("title", "summary", "category")  # front matter and campaign.toml may give these per language
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")


class ArticleError(Exception):
    """An article file cannot be used as written; the message names the file, line and the fix."""

    def __init__(self, source: Path | str | None, line: int | None, problem: str) -> None:
        where = str(source) if source else "<text>"
        if line:
            where += f", line {line}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class Author:
    name: str
    role: str = ""


@dataclass(frozen=True)
class Block:
    kind: str  # "paragraph" | "heading"
    text: str


@dataclass
class Article:
    title: str = ""
    date: date | None = None
    authors: list[Author] = field(default_factory=list)
    category: str = ""
    interests: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    url: str = ""
    summary: str = ""
    language: str = "en"
    blocks: list[Block] = field(default_factory=list)
    source: Path | None = None
    image: str = ""  # a picture file beside the article; image_alt describes it for those who cannot see it
    image_alt: str = ""
    filing: str = ""  # why the article has its interests: front matter, campaign.toml or the words that matched
    localized: dict[str, dict[str, str]] = field(default_factory=dict)  # field -> language -> text
    translations: dict[str, "Article"] = field(default_factory=dict)  # language -> that language's version

    @property
    def paragraphs(self) -> list[str]:
        return [block.text for block in self.blocks if block.kind == "paragraph"]

    @property
    def slug(self) -> str:
        """The article's name in archive URLs: its file name without suffixes (growing-skills.es.md: growing-skills)."""
        return article_slug(self.source) if self.source else ""

    def languages(self) -> list[str]:
        """The languages this article is written in: its own and its translations'."""
        return list(dict.fromkeys([self.language, *self.translations]))

    def version(self, lang: str) -> "Article":
        """What a reader of `lang` gets: that language's version when there is one, else this one, with the
        texts given per language applied. Date, interests, countries, picture and slug stay this article's, so
        every language files the article under the same section."""
        base = self.translations.get(lang, self)
        shared = {"date": self.date or base.date, "interests": self.interests, "countries": self.countries,
                  "image": self.image, "image_alt": base.image_alt or self.image_alt, "filing": self.filing,
                  "url": base.url or self.url, "authors": base.authors or self.authors, "source": self.source,
                  "category": base.category or self.category}
        texts = {key: table[lang] for key, table in self.localized.items() if lang in table}
        return replace(base, **{**shared, **texts}, translations={}, localized={})


_LANGUAGE_SUFFIX = re.compile(r"\.(" + "|".join(LANGUAGES) + r")$")


def article_slug(path: Path) -> str:
    """growing-skills.es.md and growing-skills.txt are both 'growing-skills'."""
    return _LANGUAGE_SUFFIX.sub("", Path(path).stem)


def translation_language(path: Path) -> str | None:
    """The language a file name marks it as a translation into (news.es.md: es), or None."""
    match = _LANGUAGE_SUFFIX.search(Path(path).stem)
    return match.group(1) if match else None


def parse_article(path: Path | str) -> Article:
    """Read one article file; the suffix says which form it is in."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start}); re-save as UTF-8")
    except OSError as exc:
        raise ArticleError(path, None, f"cannot read the file: {exc.strerror}")
    if path.suffix.lower() == ".md":
        return parse_markdown(text, source=path)
    if path.suffix.lower() == ".txt":
        return parse_plain_text(text, source=path)
    raise ArticleError(path, None, "unknown article type; use .md (Markdown with front matter) or .txt (plain text)")


# ---------------------------------------------------------------------------------------------------
# Shared text helpers

_INVISIBLE = dict.fromkeys(map(ord, "\ufeff\u200b\u200c\u200d\u2060\u00ad"))
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")


def normalise_space(text: str) -> str:
    """One plain space between words: scraped text carries NBSPs, tabs, zero-width marks and doubled spaces."""
    text = unicodedata.normalize("NFC", text.translate(_INVISIBLE))
    return _SPACES.sub(" ", text).strip()


_STOP_WORDS = {
    "en": {"the", "and", "of", "to", "is", "that", "with", "for", "this", "are", "will", "from", "by", "it", "has"},
    "es": {"el", "los", "las", "y", "que", "para", "con", "una", "por", "del", "se", "es", "al", "como", "su"},
    "pt": {"o", "os", "e", "em", "para", "com", "uma", "não", "do", "da", "dos", "das", "ao", "um", "é", "no", "na"},
    "fr": {"le", "les", "des", "et", "pour", "avec", "une", "est", "du", "dans", "sur", "au", "qui", "un", "pas"},
}


def detect_language(text: str) -> str:
    """The language whose common words occur most often; English when nothing stands out."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    scores = {lang: sum(word in stop for word in words) for lang, stop in _STOP_WORDS.items()}
    return max(LANGUAGES, key=scores.__getitem__)  # max() keeps the first of equals: English


_INTEREST_KEYWORDS = {  # English, Spanish, Portuguese and French, as the bureau writes in all four
    "infrastructure": r"\bIXPs?\b|\binterconne[cx]\w*|\bpeering\b|exchange points?|puntos? de intercambio"
                      r"|pontos? de troca|points? d'échange",
    "security": r"\bDNSSEC\b|\b(?:cyber|ciber)?(?:security|seguridad|segurança|sécurité)\b|\bhackers?\b|\bspam\b",
    "policy": r"\bpolic(?:y|ies)\b|\bpolíticas?\b|\bpolitiques?\b|\bgo(?:bern|vern)an[cz]a\b|\bgovernance\b"
              r"|\bgouvernance\b|\bregula\w*|\bréglementation\b",
    "training": r"\btraining\b|capacity[- ]building|\bworkshops?\b|\btutorials?\b|\bformaci[óo]n\b|\bformação\b"
                r"|\bcapacita\w*|\btaller(?:es)?\b|\bateliers?\b|renforcement des capacités|\beducation(?:al)?\b"
                r"|\beducaci[óo]n\b|\beducação\b|\béducation\b|\bschools?\b|\bescuelas?\b|\bescolas?\b|\bécoles?\b",
    "grants": r"\bgrants?\b|\bfund(?:s|ed|ing)?\b|development program(?:me)?s?\b|\bsubven\w*|\bsubsídios?\b"
              r"|\bfondos?\b|\bfinanciamiento\b",
}
_INTEREST_PATTERNS = {slug: re.compile(pattern, re.IGNORECASE) for slug, pattern in _INTEREST_KEYWORDS.items()}
# Words met only in passing do not file an article: outside the lead an interest needs this many matches.
MIN_MATCHES_OUTSIDE_LEAD = 2


def _matched_words(pattern: re.Pattern, text: str) -> dict[str, int]:
    words: dict[str, int] = {}
    for match in pattern.finditer(text):
        word = match.group(0).lower()
        words[word] = words.get(word, 0) + 1
    return words


def infer_interests(lead: str, rest: str = "") -> tuple[list[str], str]:
    """Taxonomy slugs the text is about, the main one first, and a line saying which words decided.

    A news article says what it is about in its lead (title, summary, first paragraph), so interests named
    there come first; an interest met only further down needs MIN_MATCHES_OUTSIDE_LEAD matches, so that
    a partnership release that quotes someone on "hackers" is not filed under security. Ties: taxonomy order.
    """
    found = []
    for position, slug in enumerate(INTERESTS):
        in_lead = _matched_words(_INTEREST_PATTERNS[slug], lead)
        elsewhere = _matched_words(_INTEREST_PATTERNS[slug], rest)
        total = sum(in_lead.values()) + sum(elsewhere.values())
        if in_lead or total >= MIN_MATCHES_OUTSIDE_LEAD:
            found.append((not in_lead, -total, position, slug, in_lead, elsewhere))
    found.sort()
    interests = [entry[3] for entry in found]
    reasons = []
    for _, _, _, slug, in_lead, elsewhere in found:
        parts = [("in the lead: " if words is in_lead else "") + _word_counts(words)
                 for words in (in_lead, elsewhere) if words]
        reasons.append(f"{slug} ({'; then '.join(parts)})")
    return interests, ("matched words: " + "; ".join(reasons)) if reasons else "no interest's words matched"


def _word_counts(words: dict[str, int]) -> str:
    return ", ".join(f"{word} ×{count}" if count > 1 else word
                     for word, count in sorted(words.items(), key=lambda item: -item[1]))


def _lead_and_rest(article: "Article") -> tuple[str, str]:
    """The lead (title, summary, first paragraph) and everything after it."""
    first = next((index for index, block in enumerate(article.blocks) if block.kind == "paragraph"), None)
    lead = [article.title, article.summary] + ([article.blocks[first].text] if first is not None else [])
    rest = [block.text for index, block in enumerate(article.blocks) if index != first]
    return " ".join(lead), " ".join(rest)


def file_by_words(article: "Article") -> None:
    """Set the article's interests from its words, and say why."""
    article.interests, article.filing = infer_interests(*_lead_and_rest(article))


_SENTENCE_END = re.compile(r"[.!?…][\"”’»)\]]*(?=\s|$)")


def summarize(article: Article, limit: int = 280) -> str:
    """A teaser of at most `limit` characters that ends where a sentence ends, whenever one fits."""
    text = article.summary or next(iter(article.paragraphs), "")
    if len(text) <= limit:
        return text
    ends = [match.end() for match in _SENTENCE_END.finditer(text) if match.end() <= limit]
    if ends:
        return text[: ends[-1]]
    cut = text.rfind(" ", 0, limit)  # leave room for the ellipsis, never split a word
    head = text[:cut] if cut > 0 else text[: limit - 1]
    return head.rstrip(" ,;:-–—") + "…"


# ---------------------------------------------------------------------------------------------------
# Markdown with YAML front matter

_markdown = MarkdownIt("commonmark")


def parse_markdown(text: str, source: Path | None = None) -> Article:
    """Front matter gives the metadata; markdown-it's tokens give headings and paragraphs as plain text."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    meta, body = _split_front_matter(text, source)
    blocks = _markdown_blocks(body)
    article = Article(source=source, blocks=blocks)
    _apply_front_matter(article, meta, text, source)
    if not article.title and blocks and blocks[0].kind == "heading":
        article.title = blocks[0].text
    if blocks and blocks[0].kind == "heading" and blocks[0].text == article.title:
        article.blocks = blocks[1:]
    body_text = " ".join([article.title] + [block.text for block in article.blocks])
    if "interests" in meta:
        article.filing = "front matter"
    else:
        file_by_words(article)
    if "language" not in meta:
        article.language = detect_language(body_text)
    return article


def _split_front_matter(text: str, source: Path | None) -> tuple[dict, str]:
    lines = text.split("\n")
    if lines[0].strip() != "---":
        return {}, text
    for index in range(1, len(lines)):
        if lines[index].strip() in ("---", "..."):
            break
    else:
        raise ArticleError(source, 1, "front matter opened with '---' is never closed; add a '---' line after it")
    raw = "\n".join(lines[1:index])
    try:
        meta = yaml.safe_load(raw) if raw.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ArticleError(source, line, f"front matter is not valid YAML ({problem})")
    if not isinstance(meta, dict):
        raise ArticleError(source, 2, "front matter must be 'key: value' lines (a YAML mapping)")
    return meta, "\n".join(lines[index + 1:])


def _front_matter_line(text: str, key: str) -> int | None:
    match = re.search(rf"^{re.escape(key)}\s*:", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _apply_front_matter(article: Article, meta: dict, text: str, source: Path | None) -> None:
    for key, value in meta.items():
        line = _front_matter_line(text, str(key))
        if key not in FRONT_MATTER_KEYS:
            raise ArticleError(source, line, f"unknown front matter key {key!r}; known: {', '.join(FRONT_MATTER_KEYS)}")
        try:
            if key == "date":
                article.date = coerce_date(value)
            elif key == "authors":
                article.authors = coerce_authors(value)
            elif key == "interests":
                article.interests = coerce_interests(value)
            elif key == "countries":
                article.countries = coerce_countries(value)
            elif key == "language":
                article.language = coerce_language(value)
            elif key in LOCALIZABLE and isinstance(value, dict):
                article.localized[key] = coerce_texts(value)
            else:
                setattr(article, key, normalise_space(_require_text(value)))
        except ValueError as exc:
            raise ArticleError(source, line, f"{key}: {exc}")
    for key, texts in article.localized.items():  # the article's own language's text, else the first given
        setattr(article, key, texts.get(article.language) or texts.get("en") or next(iter(texts.values())))
    if article.image:  # image_alt alone is a translation's description of the default version's picture
        check_image(article.image, article.image_alt, source, _front_matter_line(text, "image"))


def _markdown_blocks(body: str) -> list[Block]:
    blocks: list[Block] = []
    tokens = _markdown.parse(body)
    for opening, inline in zip(tokens, tokens[1:]):
        if inline.type != "inline" or opening.type not in ("heading_open", "paragraph_open"):
            continue
        text = normalise_space(_inline_text(inline.children or []))
        if text:
            blocks.append(Block("heading" if opening.type == "heading_open" else "paragraph", text))
    return blocks


def _inline_text(children: list) -> str:
    parts = []
    for token in children:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.type == "image":
            parts.append(_inline_text(token.children or []))
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------
# Field coercion, shared with campaign overrides


def _require_text(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected text, got {type(value).__name__}")


def coerce_date(value: Any) -> date:
    """A date from YAML/TOML (already a date) or from text 'YYYY-MM-DD'."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-20")


def coerce_authors(value: Any) -> list[Author]:
    """Authors as 'Name', 'Name, Role' or {name, role}; one or a list."""
    items = value if isinstance(value, list) else [value]
    authors = []
    for item in items:
        if isinstance(item, dict) and set(item) <= {"name", "role"} and item.get("name"):
            authors.append(Author(normalise_space(str(item["name"])), normalise_space(str(item.get("role") or ""))))
        elif isinstance(item, str) and item.strip():
            name, _, role = item.partition(",")
            authors.append(Author(normalise_space(name), normalise_space(role)))
        else:
            raise ValueError(f"{item!r} is not an author; write 'Name, Role' or {{name: ..., role: ...}}")
    return authors


def coerce_interests(value: Any) -> list[str]:
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of interests, e.g. [security, training]; got {value!r}")
    unknown = [item for item in items if item not in INTERESTS]
    if unknown:
        raise ValueError(f"unknown interest {unknown[0]!r}; use one of: {', '.join(INTERESTS)}")
    return list(dict.fromkeys(items))


def coerce_countries(value: Any) -> list[str]:
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of ISO country codes, e.g. [TT, BB]; got {value!r}")
    codes = []
    for item in items:
        code = str(item).strip().upper()
        if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
            raise ValueError(f"{item!r} is not an ISO 3166 alpha-2 country code (e.g. TT, BB, AR)")
        codes.append(code)
    return list(dict.fromkeys(codes))


def coerce_texts(value: Any) -> dict[str, str]:
    """A text per language ({en: ..., es: ...}) or one text for every language (kept under "en")."""
    if isinstance(value, str):
        value = {"en": value}
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected text, or a text per language such as {{en: ..., es: ...}}; got {value!r}")
    texts = {}
    for lang, text in value.items():
        coerce_language(lang)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{lang}: must be non-empty text, got {text!r}")
        texts[lang] = normalise_space(text)
    return texts


def check_image(image: str, alt: str, source: Path | None, line: int | None) -> None:
    """A picture must be a file beside the article, of a kind every mail client shows, with a description."""
    if not alt.strip():
        raise ArticleError(source, line, f"image {image!r} has no image_alt; describe the picture in a sentence "
                                         "for readers who cannot see it (required)")
    if "/" in image or "\\" in image or image.startswith("."):
        raise ArticleError(source, line, f"image {image!r}: name a file in the campaign folder, without a path")
    if Path(image).suffix.lower() not in IMAGE_SUFFIXES:
        raise ArticleError(source, line, f"image {image!r}: use a {', '.join(IMAGE_SUFFIXES)} file")
    folder = source.parent if isinstance(source, Path) else None
    if folder is not None and not (folder / image).is_file():
        raise ArticleError(source, line, f"image {image!r} does not exist in {folder}")


def coerce_language(value: Any) -> str:
    if value not in LANGUAGES:
        raise ValueError(f"unknown language {value!r}; use one of: {', '.join(LANGUAGES)}")
    return value


# ---------------------------------------------------------------------------------------------------
# Plain text: bare press releases and scraped pages

_BACK = re.compile(r"^[‹«<]?\s*(back|volver|voltar|retour)$", re.IGNORECASE)
_THUMBNAIL = re.compile(r"^(?P<caption>.*?)\s*\b(thumbnail|miniatura|miniature|vignette)$", re.IGNORECASE)
_DISCLAIMER = re.compile(
    r"^(disclaimer|descargo de responsabilidad|aviso legal|isenção de responsabilidade|avertissement)\s*:",
    re.IGNORECASE,
)
# Everything from one of these lines on is the site's, not the article's.
_TRAILER = re.compile(
    r"^(related (articles|posts|stories)|artículos relacionados|artigos relacionados|articles (connexes|similaires)"
    r"|join the conversation|únete a la conversación|participe da conversa|rejoignez la conversation)\b",
    re.IGNORECASE,
)

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            "january jan enero janeiro janvier",
            "february feb febrero fevereiro février fevrier",
            "march mar marzo março marco mars",
            "april apr abril avril",
            "may mayo maio mai",
            "june jun junio junho juin",
            "july jul julio julho juillet",
            "august aug agosto août aout",
            "september sep sept septiembre setiembre setembro septembre",
            "october oct octubre outubro octobre",
            "november nov noviembre novembro novembre",
            "december dec diciembre dezembro décembre decembre",
        ],
        start=1,
    )
    for name in names.split()
}
_MONTH = "(?P<month>" + "|".join(sorted(map(re.escape, _MONTHS), key=len, reverse=True)) + r")\.?"
# "<Category> 27 March 2014", "<Category>7 June 2016", "Desarrollo 5 de mayo de 2019", "<Category> March 27, 2014"
_DATELINES = [
    re.compile(rf"^(?P<category>.*?)\s*(?<!\d)(?P<day>[0-3]?\d)(?:st|nd|rd|th|º)?\s+(?:de\s+)?{_MONTH},?\s+(?:de\s+)?(?P<year>\d{{4}})$",
               re.IGNORECASE),
    re.compile(rf"^(?P<category>.*?)\s*{_MONTH}\s+(?P<day>[0-3]?\d),?\s+(?P<year>\d{{4}})$", re.IGNORECASE),
]
_NAME_PARTICLES = {"de", "da", "do", "dos", "das", "del", "la", "le", "van", "von", "der", "y", "e", "di", "du"}
_SURNAME_PREFIXES = {"Mc", "Mac", "De", "Di", "Da", "Du", "La", "Le", "Van", "Von"}
_BY = re.compile(r"^(by|por|par)\s+", re.IGNORECASE)
_ROLE_SEPARATOR = re.compile(r"\s*(?:,|\s[-–—|]\s|\s·\s)\s*")
_RUN_TOGETHER = re.compile(r"(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ])")
_CO_AUTHORS = re.compile(r"\s+(?:and|&|y|e|et)\s+")
_CONTINUATION_WORDS = {"the", "a", "an", "of", "to", "in", "and", "or", "for", "with", "by", "on", "at", "as",
                       "de", "la", "el", "los", "las", "y", "e", "et", "o", "para", "com", "em", "du", "des", "les"}
_CLOSING = "\"”’»)]"


def parse_plain_text(text: str, source: Path | None = None) -> Article:
    """Recover title, category, date, authors and body blocks from the bureau's plain-text forms."""
    units = _text_units(text)
    article = Article(source=source)
    caption = ""
    in_header = True
    index = 0
    while index < len(units):
        line, unit = units[index]
        index += 1
        if _BACK.match(unit) or _DISCLAIMER.match(unit):
            continue
        if in_header:
            thumbnail = _THUMBNAIL.match(unit)
            if thumbnail and len(unit) <= 200:
                caption = caption or thumbnail.group("caption")
                continue
            dateline = _match_dateline(unit, line, source) if article.date is None else None
            if dateline:
                article.category, article.date = dateline
                continue
            role = _duplicated_name_role(unit, units[index][1]) if index < len(units) else None
            if role is not None:
                article.authors.append(Author(unit, role))
                index += 1
                continue
            byline = _split_byline(_BY.sub("", unit)) if _BY.match(unit) and len(unit) <= 200 else []
            if byline and all(_looks_like_name(author.name) for author in byline):
                article.authors.extend(byline)
                continue
            if _is_heading(unit) and not article.title:
                article.title = unit
                continue
            in_header = _is_heading(unit)
        article.blocks.append(Block("heading" if _is_heading(unit) else "paragraph", unit))
    article.title = article.title or caption
    body_text = " ".join([article.title] + [block.text for block in article.blocks])
    file_by_words(article)
    article.language = detect_language(body_text)
    return article


def _text_units(text: str) -> list[tuple[int, str]]:
    """Logical lines with their line numbers: whitespace cleaned, hard-wrapped lines rejoined, repeats and
    everything from "Related articles" on dropped."""
    raw_lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    units: list[tuple[int, str]] = []
    previous_blank = True
    for number, raw in enumerate(raw_lines, start=1):
        line = normalise_space(raw)
        if not line:
            previous_blank = True
            continue
        if units and _TRAILER.match(line) and _is_heading(line):
            break
        if units and not previous_blank and _continues(units[-1][1], line):
            units[-1] = (units[-1][0], f"{units[-1][1]} {line}")
        elif not (units and units[-1][1] == line):
            units.append((number, line))
        previous_blank = False
    return units


def _continues(previous: str, line: str) -> bool:
    """A line break inside a sentence: the line before stops mid-sentence and this one carries on."""
    if previous.endswith((".", "!", "?", "…", ":", *_CLOSING)):
        return False
    last_word = previous.rsplit(" ", 1)[-1].lower()
    return line[0].islower() or previous.endswith((",", ";", "-", "–", "—", "(")) or last_word in _CONTINUATION_WORDS


def _is_heading(text: str) -> bool:
    """Short, starts like a title and has no sentence-ending punctuation (a question is allowed)."""
    first = text.lstrip("¿¡\"“'‘(")[:1]
    if len(text) > 100 or len(text.split()) > 14 or not (first.isupper() or first.isdigit()):
        return False
    return not text.rstrip(_CLOSING).endswith((".", "!", ":", ";", ",", "…"))


def _match_dateline(unit: str, line: int, source: Path | None) -> tuple[str, date] | None:
    if len(unit) > 120:
        return None
    for pattern in _DATELINES:
        match = pattern.match(unit)
        if match:
            month = _MONTHS[match.group("month").lower()]
            try:
                when = date(int(match.group("year")), month, int(match.group("day")))
            except ValueError:
                raise ArticleError(source, line, f"bad date in {unit!r}: no such day; correct the day or month")
            return match.group("category").strip(" |-–—·,"), when
    return None


def _looks_like_name(text: str) -> bool:
    words = text.split()
    if not 2 <= len(words) <= 6 or len(text) > 60 or any(char.isdigit() for char in text):
        return False
    return all(word[0].isupper() or word.lower() in _NAME_PARTICLES for word in words)


def _duplicated_name_role(unit: str, following: str) -> str | None:
    """The site prints an author's name, then "By <name><role>" or "<name><role>" on the next line."""
    if not _looks_like_name(unit):
        return None
    rest = _BY.sub("", following)
    role = rest[len(unit):].strip(" ,|-–—·")
    if not rest.startswith(unit) or len(role) > 150 or role.rstrip(_CLOSING).endswith((".", "!", "?")):
        return None  # a sentence that merely starts with the same words
    return role


def _split_byline(byline: str) -> list[Author]:
    """Split "Name, Role", "Name - Role" and a role run into the name ("O'FlahertyRegional ...")."""
    cuts = [(match.start(), match.end()) for match in _ROLE_SEPARATOR.finditer(byline)]
    for match in _RUN_TOGETHER.finditer(byline):
        word = byline[: match.start()].rsplit(" ", 1)[-1]
        if " " in byline[: match.start()] and word not in _SURNAME_PREFIXES:
            cuts.append((match.start(), match.start()))
            break
    if not cuts:
        return [Author(name) for name in _CO_AUTHORS.split(byline) if name]
    start, end = min(cuts)
    return [Author(byline[:start].strip(), byline[end:].strip(" ,|-–—·"))]
