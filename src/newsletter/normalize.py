"""Turn what staff and subscribers type into the canonical values the database stores.

Each function returns the clean value or raises InvalidValue with a reason a person can act on. They
are called once per imported row, so the common cases take a fast path (a regex, a dict) and only the
unusual ones pay for the thorough check.
"""

from __future__ import annotations

import difflib
import functools
import gettext
import re
import unicodedata
from datetime import date, datetime, timezone
from typing import Sequence

import pycountry

from .db import LANGUAGES


class InvalidValue(ValueError):
    """A value that cannot be stored; str() is the reason, written for the person who typed it."""


# Addresses that surely pass email-validator unchanged: a lower-case ASCII dot-atom of at most 64 characters
# before the @, plain DNS labels after it with an alphabetic TLD that is not a special-use name (arpa, test...).
# Everything else goes through email-validator itself, which also explains what is wrong. The check is split
# so that a million rows pay for a short regex each, and each domain is checked once.
_CLEAN_LOCAL_AT = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@").match


@functools.cache
def _clean_domain():
    """The domain check, made on first use: email-validator is imported only when an address needs it,
    not by a segment count or --help."""
    import email_validator

    return re.compile(
        r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
        + "".join(rf"(?<!\.{re.escape(name)})" for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    ).fullmatch


@functools.lru_cache(maxsize=65536)
def _is_clean_domain(domain: str) -> bool:
    return _clean_domain()(domain) is not None


def is_clean_email(text: str) -> bool:
    """Whether normalize_email(text) is text itself, told cheaply (False only means: ask normalize_email)."""
    local_at = _CLEAN_LOCAL_AT(text)
    return (local_at is not None and len(text) <= 254 and text[0] != "." and ".." not in text and ".@" not in text
            and _is_clean_domain(text[local_at.end():]))


_CLEAN_EMAIL_LINES = re.compile(r"(?:[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[a-z0-9.-]{1,253}\n)*").fullmatch
_DOMAINS_OF_LINES = re.compile(r"@([a-z0-9.-]*)\n").findall


def all_clean_emails(values: Sequence[str]) -> bool:
    """Whether is_clean_email holds for every value, told by a few passes over the joined column instead of a
    call per value (for an import's batch of rows)."""
    joined = "\n".join(values) + "\n"
    return (joined.count("\n") == len(values) and _CLEAN_EMAIL_LINES(joined) is not None
            and max(map(len, values), default=0) <= 254 and joined[0] != "." and "\n." not in joined
            and ".." not in joined and ".@" not in joined
            and all(map(_is_clean_domain, set(_DOMAINS_OF_LINES(joined)))))


def normalize_email(raw: str) -> str:
    """Lower-cased, trimmed, validated address (syntax only: no DNS look-ups on import)."""
    text = raw.strip().lower()
    if text[:1] == "<" or text[-1:] == ">":
        text = text.strip("<>").strip()
    if not text:
        raise InvalidValue("email is empty")
    if is_clean_email(text):
        return text
    import email_validator

    try:
        result = email_validator.validate_email(text, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InvalidValue(f"{raw.strip()!r} is not a valid address: {exc}") from None
    return result.normalized.lower()


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]")


def normalize_name(raw: str) -> str:
    """Collapse white space; refuse line breaks and control characters, which could forge mail headers."""
    if raw.isprintable():
        return " ".join(raw.split()) if len(raw) <= 200 else _too_long(raw)
    if _CONTROL.search(raw.strip()):
        raise InvalidValue("contains a line break or control character; put the name on one line")
    name = " ".join(raw.split())
    return name if len(name) <= 200 else _too_long(name)


def is_clean_name(raw: str) -> bool:
    """Whether normalize_name(raw) is raw itself: printable (so its only white space is the plain space),
    at most 200 characters, no space at either end or twice in a row."""
    return raw.isprintable() and len(raw) <= 200 and "  " not in raw and raw[:1] != " " and raw[-1:] != " "


def all_clean_names(values: Sequence[str]) -> bool:
    """Whether is_clean_name holds for every value, told over the joined column (a name with a '|' next to a
    space is sent to the per-value check)."""
    joined = "|".join(values)
    return (joined.isprintable() and max(map(len, values), default=0) <= 200 and "  " not in joined
            and "| " not in joined and " |" not in joined and joined[:1] != " " and joined[-1:] != " ")


def _too_long(name: str) -> str:
    name = " ".join(name.split())
    if len(name) > 200:
        raise InvalidValue(f"is {len(name)} characters long; at most 200")
    return name


def fold(text: str) -> str:
    """Lower case without accents or punctuation, for matching names typed in any of our languages."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


@functools.cache
def _country_names() -> dict[str, str]:
    """Every spelling we accept, folded, mapped to the alpha-2 code: names in en/es/pt/fr and codes."""
    names: dict[str, str] = {}
    catalogs = [gettext.NullTranslations()] + [
        gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[lang], fallback=True)
        for lang in ("es", "pt", "fr")
    ]
    for country in pycountry.countries:
        code = country.alpha_2
        spellings = {country.name, getattr(country, "official_name", ""), getattr(country, "common_name", "")}
        for catalog in catalogs:
            spellings |= {catalog.gettext(s) for s in list(spellings) if s}
        names[fold(code)] = code
        names[fold(country.alpha_3)] = code
        for spelling in spellings:
            if spelling:
                names.setdefault(fold(spelling), code)
    names.update({"uk": "GB", "usa": "US", "eeuu": "US", "ee uu": "US", "us": "US", "venezuela": "VE",
                  "bolivia": "BO", "trinidad": "TT", "st lucia": "LC", "st kitts and nevis": "KN",
                  "st vincent and the grenadines": "VC", "antigua": "AG", "curacao": "CW"})
    return names


@functools.lru_cache(maxsize=4096)
def normalize_country(raw: str) -> str:
    """ISO 3166-1 alpha-2 from a code in any case, an alpha-3 code, or a name in en/es/pt/fr."""
    text = raw.strip()
    if not text:
        return ""
    names = _country_names()
    key = fold(text)
    if key in names:
        return names[key]
    close = difflib.get_close_matches(key, names.keys(), n=1, cutoff=0.8)
    hint = f"; did you mean {names[close[0]]} ({close[0].title()})?" if close else "; use an ISO code such as TT or BR"
    raise InvalidValue(f"unknown country {text!r}{hint}")


@functools.cache
def country_codes() -> frozenset[str]:
    """The values normalize_country returns unchanged: alpha-2 codes in capitals, and the empty string."""
    return frozenset(code for key, code in _country_names().items() if key == code.lower()) | {""}


_LANGUAGE_NAMES = {
    "en": "en english ingles inglés anglais", "es": "es spanish espanol español castellano espagnol espanhol",
    "pt": "pt portuguese portugues português portugais", "fr": "fr french frances francés francais français frances",
}
_LANGUAGE_INDEX = {fold(word): code for code, words in _LANGUAGE_NAMES.items() for word in words.split()}


@functools.lru_cache(maxsize=256)
def normalize_language(raw: str) -> str:
    """One of en/es/pt/fr from a code (any case, with region: pt-BR, es_MX) or the language's name."""
    text = raw.strip()
    if not text:
        return ""
    key = fold(re.split(r"[-_]", text, maxsplit=1)[0])
    if key in _LANGUAGE_INDEX:
        return _LANGUAGE_INDEX[key]
    raise InvalidValue(f"unsupported language {text!r}; use one of {', '.join(LANGUAGES)}")


_PORTUGUESE = {"BR", "AO", "MZ", "PT", "CV"}
_FRENCH = {"HT", "FR", "GP", "MQ", "GF", "BL", "MF"}
_ENGLISH = {"AG", "AI", "BB", "BM", "BS", "BZ", "DM", "GD", "GY", "JM", "KN", "KY", "LC", "MS", "TC", "TT",
            "VC", "VG", "VI", "US", "GB", "CA", "SR"}


def default_language(country: str) -> str:
    """The language most people in a country of the region read, for rows that name none."""
    if country in _PORTUGUESE:
        return "pt"
    if country in _FRENCH:
        return "fr"
    if country in _ENGLISH or not country:
        return "en"
    return "es" if country in _SPANISH_SPEAKING else "en"


_SPANISH_SPEAKING = {"AR", "BO", "CL", "CO", "CR", "CU", "DO", "EC", "ES", "GT", "HN", "MX", "NI", "PA", "PE",
                     "PR", "PY", "SV", "UY", "VE", "GQ"}


_CANONICAL_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Timestamps that parse_timestamp returns unchanged: our UTC form with a real day (February 29th only in leap
# years: divisible by 4, centuries only when divisible by 400) and a real time of day.
_CLEAN_TIMESTAMP = (
    r"(?:(?!0000)[0-9]{4}-"
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"
)
is_clean_timestamp = re.compile(_CLEAN_TIMESTAMP).fullmatch
_CLEAN_TIMESTAMP_LINES = re.compile(rf"(?:(?:{_CLEAN_TIMESTAMP})?\n)*").fullmatch


def all_clean_timestamps(values: Sequence[str]) -> bool:
    """Whether every value is empty or passes is_clean_timestamp, told over the joined column."""
    joined = "\n".join(values) + "\n"
    return joined.count("\n") == len(values) and _CLEAN_TIMESTAMP_LINES(joined) is not None


def parse_timestamp(raw: str) -> str:
    """An ISO date or date-time (naive means UTC) as the database's UTC text form."""
    text = raw.strip()
    if _CANONICAL_TIMESTAMP.fullmatch(text):  # already in our form (our own exports): only check it is a date
        try:
            datetime.fromisoformat(text[:-1])
            return text
        except ValueError:
            raise InvalidValue(f"{text!r} is not a real date and time") from None
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        raise InvalidValue(f"{text!r} is not a date; use ISO form like 2026-11-23 or 2026-11-23T14:05:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
