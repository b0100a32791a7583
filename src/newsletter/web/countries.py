"""The country list of the forms: the bureau's region first, then every other country, named in the page's language."""

from __future__ import annotations

from functools import lru_cache

import pycountry
from babel import Locale
from markupsafe import Markup, escape

from ..i18n import gettext_for
from ..normalize import fold

# Latin America and the Caribbean: the countries and territories the bureau serves.
REGION = frozenset({
    "AG", "AI", "AR", "AW", "BB", "BL", "BO", "BQ", "BR", "BS", "BZ", "CL", "CO", "CR", "CU", "CW", "DM", "DO",
    "EC", "FK", "GD", "GF", "GP", "GT", "GY", "HN", "HT", "JM", "KN", "KY", "LC", "MF", "MQ", "MS", "MX", "NI",
    "PA", "PE", "PR", "PY", "SR", "SV", "SX", "TC", "TT", "UY", "VC", "VE", "VG", "VI",
})

LANGUAGE_NAMES = {"en": "English", "es": "Español", "pt": "Português", "fr": "Français"}


@lru_cache(maxsize=8)
def country_choices(lang: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(region, others): (code, name) pairs sorted by their name in `lang`."""
    territories = Locale.parse(lang).territories
    named = [(country.alpha_2, territories.get(country.alpha_2) or country.name) for country in pycountry.countries]
    named.sort(key=lambda pair: fold(pair[1]))
    return [pair for pair in named if pair[0] in REGION], [pair for pair in named if pair[0] not in REGION]


@lru_cache(maxsize=8)
def _options_html(lang: str) -> str:
    region, others = country_choices(lang)
    _ = gettext_for(lang, "web")
    option = lambda code, name: f'<option value="{escape(code)}">{escape(name)}</option>'  # noqa: E731
    return "".join([
        f'<option value="">{escape(_("Not specified"))}</option>',
        f'<optgroup label="{escape(_("Latin America and the Caribbean"))}">',
        *(option(code, name) for code, name in region), "</optgroup>",
        f'<optgroup label="{escape(_("Other countries"))}">',
        *(option(code, name) for code, name in others), "</optgroup>",
    ])


def country_options(lang: str, selected: str) -> Markup:
    """The <option>s of the country list in `lang` with `selected` chosen: built once per language (escaping
    some 250 names on every view was most of the preference page's CPU), then one marked per call."""
    html = _options_html(lang)
    marker = f'<option value="{escape(selected or "")}">'
    return Markup(html.replace(marker, marker[:-1] + " selected>", 1))
