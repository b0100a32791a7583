"""/archive/<slug>/<lang>: the "view in browser" page, the whole issue with nothing personal in it."""

from __future__ import annotations

import http.client
import re
import shutil
from html import escape
from urllib.parse import urlsplit
from xml.etree import ElementTree

import pytest
from seeds import PRESS_RELEASE, SCRAPED_PAGE, requires_seeds
from web_support import REPO, LiveSite

from newsletter import campaign_state
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
    site.mark_sent(slug)


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


# --- one article, whole; pictures; the feed -------------------------------------------------------


def test_an_article_page_shows_the_whole_article_in_the_language_with_links_between_versions(site):
    page = site.get(f"/archive/{SLUG}/es/growing-skills")
    assert page.status == 200 and '<html lang="es"' in page.text
    assert "<h1>Más capacidades en América Latina y el Caribe</h1>" in page.text
    spanish = load_campaign(site.config.campaigns_dir / SLUG, site.config.tz).articles[1].version("es")
    for block in spanish.blocks:  # every heading and paragraph, not a teaser
        assert escape(block.text, quote=False) in page.text
    assert f'href="{site.url}/archive/{SLUG}/es"' in page.text  # back to the whole issue
    assert f'href="{site.url}/archive/{SLUG}/fr/growing-skills" hreflang="fr"' in page.text
    assert not re.search(r'href="[^"]*/(u|p|confirm)/', page.text)


@pytest.mark.parametrize("path", [f"/archive/{SLUG}/en/nothing-here", f"/archive/{SLUG}/de/growing-skills",
                                  f"/archive/{SLUG}/en/..%2fcampaign.toml", f"/archive/{SLUG}/en/" + "x" * 300])
def test_unknown_articles_are_not_found(site, path):
    assert site.get(path).status == 404


def fetch(url: str) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_an_articles_picture_and_the_logo_are_served_with_their_type(site_with_logo):
    status, headers, body = fetch(f"{site_with_logo.url}/archive/{SLUG}/images/chapter-leaders.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and "max-age" in headers["Cache-Control"]
    assert body == (site_with_logo.config.campaigns_dir / SLUG / "chapter-leaders.png").read_bytes()
    status, headers, body = fetch(f"{site_with_logo.url}/archive/logo.png")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    for other in (f"/archive/{SLUG}/images/campaign.toml", f"/archive/{SLUG}/images/growing-skills.txt",
                  "/archive/logo.gif"):
        assert fetch(site_with_logo.url + other)[0] == 404


@pytest.fixture
def site_with_logo(tmp_path):
    with LiveSite.start(tmp_path, logo=REPO / "src" / "newsletter" / "samples" / "logo.png") as live:
        yield live


def test_the_feed_lists_sent_issues_only_in_the_language_asked_for(site):
    campaign = load_campaign(site.config.campaigns_dir / SLUG, site.config.tz)
    campaign_state.register(site.db, campaign, site.clock)
    draft = site.get("/archive/feed.xml?lang=fr")
    assert draft.status == 200 and draft.headers["Content-Type"].startswith("application/atom+xml")
    assert "<entry>" not in draft.text and "<ns0:" not in draft.text
    campaign_state.set_state(site.db, SLUG, "sent", clock=site.clock, finished_at="2026-12-01T13:30:00Z")
    feed = ElementTree.fromstring(site.get("/archive/feed.xml?lang=fr").text.encode())
    atom = "{http://www.w3.org/2005/Atom}"
    assert feed.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr"
    assert feed.find(f"{atom}title").text == "LAC Internet Digest"
    [entry] = feed.findall(f"{atom}entry")
    assert entry.find(f"{atom}title").text == "Lettre de décembre 2026"
    assert entry.find(f"{atom}link").get("href") == f"{site.url}/archive/{SLUG}/fr"
    assert entry.find(f"{atom}updated").text == "2026-12-01T13:30:00Z"
    assert f"{site.url}/archive/{SLUG}/fr/chapter-leaders" in entry.find(f"{atom}content").text
    assert site.get(entry.find(f"{atom}link").get("href")).status == 200
    assert site.get("/archive/feed.xml?lang=de").status == 404


@requires_seeds
def test_seed_articles_without_urls_get_working_archive_links(tmp_path):
    folder = tmp_path / "campaigns" / "2027-01-seeds"
    folder.mkdir(parents=True)
    shutil.copy(PRESS_RELEASE, folder / "canto.txt")
    shutil.copy(SCRAPED_PAGE, folder / "strength.txt")
    (folder / "campaign.toml").write_text('[subject]\nen = "Seeds"\n[[articles]]\nfile = "canto.txt"\n'
                                          'title = "CANTO and the Internet Society join forces"\n'
                                          '[[articles]]\nfile = "strength.txt"\n', encoding="utf-8")
    with LiveSite.start(tmp_path, campaigns_dir=tmp_path / "campaigns") as live:
        sent_to_someone(live, "2027-01-seeds")
        campaign = load_campaign(folder, live.config.tz)
        variant = IssueRenderer(campaign, live.config, Taxonomy.load(live.db)).variant("en", frozenset(), "")
        html_links = re.findall(r'href="([^"]+)"', variant.html)
        assert "" not in html_links
        read_more = re.findall(r"^Read more: (\S+)$", variant.text, re.M)
        assert read_more == [f"{live.url}/archive/2027-01-seeds/en/canto", f"{live.url}/archive/2027-01-seeds/en/strength"]
        for link, article in zip(read_more, campaign.articles):
            assert link in html_links
            page = live.get(link)
            assert page.status == 200
            for paragraph in article.paragraphs:
                assert escape(paragraph, quote=False) in page.text
