"""Translations come straight from the .po files, and every message the mails use is translated."""

from __future__ import annotations

import datetime
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from newsletter.i18n import (
    SUPPORTED_LANGUAGES,
    CatalogError,
    catalog_path,
    compile_catalog,
    email_environment,
    gettext_for,
    negotiate,
    translations,
    web_environment,
)

REPO = Path(__file__).resolve().parents[1]
TRANSLATED_LANGUAGES = [lang for lang in SUPPORTED_LANGUAGES if lang != "en"]
# render.py builds the greeting in Python; the extractor reads render.py too once it exists.
MSGIDS_USED_BY_RENDER = {"Hello %(name)s,", "Hello,"}


def extracted_msgids() -> set[str | tuple[str, str]]:
    """Every msgid that `pybabel extract -F babel.cfg` finds in the repository."""
    with (REPO / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    found: set[str | tuple[str, str]] = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        str(REPO), method_map, options_map
    ):
        found.add(message if isinstance(message, str) else tuple(message))
    return found


def test_babel_cfg_extracts_the_messages_of_every_email_template():
    msgids = extracted_msgids()
    assert {"Read more", "Unsubscribe", "Manage preferences", "Confirm my subscription"} <= msgids
    assert ("%(num)d article", "%(num)d articles") in msgids


@pytest.mark.parametrize("lang", TRANSLATED_LANGUAGES)
def test_every_extracted_msgid_has_a_translation(lang):
    path = catalog_path(lang)
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=lang)
    missing = []
    for msgid in sorted(extracted_msgids() | MSGIDS_USED_BY_RENDER, key=str):
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = catalog.get(key)
        strings = message.string if message else ""
        strings = strings if isinstance(strings, tuple) else (strings,)
        if message is None or message.fuzzy or not all(strings):
            missing.append(msgid)
    assert not missing, (
        f"{path}: no translation for {missing}. Run `pybabel extract -F babel.cfg -o email.pot .` and "
        "`pybabel update -D email -i email.pot -d src/newsletter/locales`, then fill in each msgstr "
        "and remove any '#, fuzzy' flag."
    )


@pytest.mark.parametrize("lang", TRANSLATED_LANGUAGES)
def test_translations_keep_the_placeholders_of_their_msgid(lang):
    with catalog_path(lang).open("rb") as po_file:
        catalog = read_po(po_file, locale=lang)
    problems = [(message.id, errors) for message, errors in catalog.check()]
    assert not problems, f"{catalog_path(lang)}: {problems}"


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("es", "Leer más"), ("pt", "Leia mais"), ("fr", "Lire la suite"), ("en", "Read more")],
)
def test_translations_are_read_from_the_po_files(lang, expected):
    assert translations(lang).gettext("Read more") == expected


def test_plural_forms_follow_the_language_rules():
    french = translations("fr")
    assert french.ngettext("%(num)d article", "%(num)d articles", 1) == "%(num)d article"
    assert french.ngettext("%(num)d article", "%(num)d articles", 0) == "%(num)d article"
    assert translations("es").ngettext("%(num)d article", "%(num)d articles", 0) == "%(num)d artículos"


def test_unknown_language_falls_back_to_the_msgid():
    assert translations("de").gettext("Unsubscribe") == "Unsubscribe"
    assert translations("es", domain="no-such-domain").gettext("Unsubscribe") == "Unsubscribe"


def test_regional_codes_use_their_language_catalogue():
    assert translations("pt_BR").gettext("Unsubscribe") == "Cancelar inscrição"
    assert gettext_for("es-MX")("Hello %(name)s,") % {"name": "Ana"} == "Hola, Ana:"


def test_fuzzy_entries_are_not_used(tmp_path):
    po = tmp_path / "email.po"
    po.write_text('#, fuzzy\nmsgid "Unsubscribe"\nmsgstr "Darse de baja"\n\nmsgid "Read more"\nmsgstr "Leer más"\n')
    compiled = compile_catalog(po, "es", "email")
    assert compiled.gettext("Unsubscribe") == "Unsubscribe"
    assert compiled.gettext("Read more") == "Leer más"


def test_a_broken_po_file_is_reported_with_its_path(tmp_path):
    po = tmp_path / "email.po"
    po.write_text('msgid "Unsubscribe"\nmsgstr "Darse de baja"\nthis line is not gettext\n')
    with pytest.raises(CatalogError, match=r"email\.po: .*misformatted"):
        compile_catalog(po, "es", "email")


def test_translations_are_loaded_once_per_language():
    assert translations("fr") is translations("fr")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es", "es"),
        ("pt_BR", "pt"),
        ("pt-BR,pt;q=0.9,en;q=0.8", "pt"),
        ("de-DE,de;q=0.9,fr;q=0.5", "fr"),
        ("en;q=0.5, es", "es"),
        ("fr;q=0, es;q=0.1", "es"),
        ("*", "en"),
        ("xx-YY", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_negotiate_picks_the_best_supported_language(header, expected):
    assert negotiate(header) == expected


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("es", "27 de marzo de 2014"),
        ("pt", "27 de março de 2014"),
        ("fr", "27 mars 2014"),
        ("en", "March 27, 2014"),
    ],
)
def test_date_long_filter_formats_per_locale(tmp_path, lang, expected):
    environment = email_environment(tmp_path, lang)
    assert environment.from_string("{{ d|date_long }}").render(d=datetime.date(2014, 3, 27)) == expected


def test_date_medium_filter_is_shorter(tmp_path):
    environment = email_environment(tmp_path, "es")
    assert environment.from_string("{{ d|date_medium }}").render(d=datetime.date(2014, 3, 27)) == "27 mar 2014"


def test_environment_is_built_once_per_folder_and_language(tmp_path):
    assert email_environment(tmp_path, "es") is email_environment(tmp_path / ".", "es")
    assert email_environment(tmp_path, "es") is not email_environment(tmp_path, "fr")
    assert email_environment(tmp_path, "fr").globals["lang"] == "fr"


def test_html_templates_are_escaped_and_text_templates_are_not(tmp_path):
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "x.html").write_text("{{ v }}")
    (tmp_path / "email" / "x.txt").write_text("{{ v }}")
    environment = email_environment(tmp_path, "en")
    assert environment.get_template("x.html").render(v="<b>") == "&lt;b&gt;"
    assert environment.get_template("x.txt").render(v="<b>") == "<b>"
    assert environment.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;"


def test_missing_template_variables_fail_loudly(tmp_path):
    with pytest.raises(jinja2.UndefinedError):
        email_environment(tmp_path, "en").from_string("{{ nothing_here }}").render()


def test_web_environment_reads_the_web_folder(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "page.html").write_text('<html lang="{{ lang }}">{{ _("No catalogue has this") }} {{ v }}</html>')
    page = web_environment(tmp_path, "pt").get_template("page.html").render(v="<i>")
    assert page == '<html lang="pt">No catalogue has this &lt;i&gt;</html>'


@pytest.mark.parametrize("lang", ["es", "pt", "fr"])
@pytest.mark.parametrize("domain", ["email", "web"])
def test_the_wheels_compiled_catalogue_says_what_the_po_file_says(tmp_path, lang, domain):
    """setup.py writes .mo files into the wheel with babel; an installed newsletter loads them with gettext."""
    import gettext

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    from newsletter.i18n import catalog_path, compile_catalog

    po = catalog_path(lang, domain)
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=lang, domain=domain, abort_invalid=True)
    mo = tmp_path / f"{domain}.mo"
    with mo.open("wb") as handle:
        write_mo(handle, catalog)
    with mo.open("rb") as handle:
        installed = gettext.GNUTranslations(handle)
    in_memory = compile_catalog(po, lang, domain)
    ids = [message.id for message in catalog if message.id and isinstance(message.id, str)]
    assert ids and [installed.gettext(i) for i in ids] == [in_memory.gettext(i) for i in ids]
