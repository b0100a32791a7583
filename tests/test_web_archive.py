"""/archive/<slug>/<lang>: the "view in browser" page, the whole issue with nothing personal in it."""

from __future__ import annotations

import re

import pytest

from newsletter.campaigns import load_campaign
from newsletter.interests import Taxonomy
from newsletter.render import IssueRenderer

SLUG = "2026-12-lac-digest"


@pytest.fixture
def site(site):
    """The sample issue, sent to one subscriber: only sent issues are in the archive."""
    sent_to_someone(site, SLUG)
    return site


def sent_to_someone(site, slug: str) -> None:
    person = site.add_subscriber(f"reader-{slug[:20]}@example.org")
    site.db.execute("INSERT INTO deliveries (campaign, subscriber_id, email, status, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'sent', '2026-11-23T12:00:00Z', '2026-11-23T12:00:00Z')",
                    [slug, person["id"], person["email"]])


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


def test_an_issue_never_sent_is_not_in_the_archive_whatever_its_state(site, tmp_path):
    import shutil

    from web_support import LiveSite

    from newsletter import campaign_state

    root = tmp_path / "campaigns"
    for slug in ("2027-01-draft", "2027-02-scheduled"):
        shutil.copytree(site.config.campaigns_dir / SLUG, root / slug)
    with LiveSite.start(tmp_path / "other", campaigns_dir=root) as other:
        for slug in ("2027-01-draft", "2027-02-scheduled"):
            campaign_state.register(other.db, load_campaign(root / slug, other.config.tz))
        unknown = other.get("/archive/2099-01-nothing/en")
        for slug in ("2027-01-draft", "2027-02-scheduled"):
            page = other.get(f"/archive/{slug}/en")
            assert (page.status, page.text) == (unknown.status, unknown.text) == (404, unknown.text)
        sent_to_someone(other, "2027-01-draft")
        assert other.get("/archive/2027-01-draft/en").status == 200


@pytest.mark.parametrize("length", [255, 256, 300, 5000])
def test_a_very_long_campaign_name_is_a_404_not_a_500(site, length):
    for path in (f"/archive/{'a' * length}/en", f"/preview/{'a' * length}", f"/staff/campaigns/{'a' * length}"):
        assert site.get(path).status == 404
