"""Every message of the web pages is translated into each subscriber language, placeholders intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from newsletter.i18n import SUPPORTED_LANGUAGES, catalog_path, translations

REPO = Path(__file__).resolve().parents[1]
TRANSLATED = [lang for lang in SUPPORTED_LANGUAGES if lang != "en"]


def web_msgids() -> set[str]:
    """What `pybabel extract -F babel-web.cfg` finds (the singular of a plural stands for both)."""
    with (REPO / "babel-web.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    return {message if isinstance(message, str) else message[0]
            for _file, _line, message, _comments, _context in extract_from_dir(str(REPO), method_map, options_map)}


def test_the_extractor_finds_the_pages_and_the_python_messages():
    msgids = web_msgids()
    assert {"Your subscription", "Unsubscribe", "Check your inbox", "each subscriber", "Skip the next month"} <= msgids
    assert any(msgid.startswith("Yes, please send %(list_name)s") for msgid in msgids)


@pytest.mark.parametrize("lang", TRANSLATED)
def test_every_web_message_has_a_translation(lang):
    path = catalog_path(lang, "web")
    with path.open("rb") as po_file:
        catalog = read_po(po_file, locale=lang)
    missing = []
    for msgid in sorted(web_msgids()):
        message = catalog.get(msgid)
        strings = message.string if message else ""
        strings = strings if isinstance(strings, tuple) else (strings,)
        if message is None or message.fuzzy or not all(strings):
            missing.append(msgid)
    assert not missing, (
        f"{path}: no translation for {missing}. Run `pybabel extract -F babel-web.cfg -o web.pot .` and "
        "`pybabel update -D web -i web.pot -d src/newsletter/locales`, then fill in each msgstr."
    )
    problems = [(message.id, errors) for message, errors in catalog.check()]
    assert not problems, f"{path}: {problems}"


@pytest.mark.parametrize(("lang", "expected"), [("es", "Darme de baja"), ("pt", "Cancelar inscrição"),
                                                ("fr", "Me désabonner"), ("en", "Unsubscribe")])
def test_the_web_catalogue_is_read_from_its_po_file(lang, expected):
    assert translations(lang, "web").gettext("Unsubscribe") == expected
