"""/archive/<slug>/<lang>: the "view in browser" page, the whole issue with nothing personal in it."""

from __future__ import annotations

import re

import pytest

from newsletter.campaigns import load_campaign
from newsletter.interests import Taxonomy
from newsletter.render import IssueRenderer

SLUG = "2026-12-lac-digest"


@pytest.mark.parametrize(("lang", "hello", "section"), [
    ("en", "Hello,", "Capacity building and training"),
    ("es", "Hola:", "Fortalecimiento de capacidades y formación"),
    ("pt", "Olá,", "Capacitação e formação"),
    ("fr", "Bonjour,", "Renforcement des capacités et formation"),
])
def test_the_whole_issue_is_shown_in_the_language_with_a_neutral_greeting(site, lang, hello, section):
    page = site.get(f"/archive/{SLUG}/{lang}")
    assert page.status == 200
    assert f'<html lang="{lang}"' in page.text
    assert re.search(rf"<p[^>]*>{hello}</p>", page.text) and section in page.text
    assert f"/archive/{SLUG}/{lang}/chapter-leaders" in page.text  # its article without a URL links here


def test_nothing_on_the_page_can_act_on_a_subscriber(site):
    page = site.get(f"/archive/{SLUG}/es")
    assert not re.search(r'href="[^"]*/(u|p|confirm)/', page.text)
    assert "NLPH" not in page.text
    assert 'href="/subscribe?lang=es"' in page.text


def test_the_view_in_browser_link_of_a_mail_opens_this_page(site):
    campaign = load_campaign(site.config.campaigns_dir / SLUG, site.config.tz)
    variant = IssueRenderer(campaign, site.config, Taxonomy.load(site.db)).variant("pt", frozenset(), "BR")
    link = re.search(r"http://127\.0\.0\.1:\d+/archive/\S+", variant.text).group(0)
    assert link == f"{site.url}/archive/{SLUG}/pt"
    assert site.get(link).status == 200


@pytest.mark.parametrize("path", ["/archive/2099-01-nothing/en", f"/archive/{SLUG}/de", "/archive/../en"])
def test_only_existing_campaigns_and_languages_are_served(site, path):
    assert site.get(path, Accept_Language="fr").status == 404
