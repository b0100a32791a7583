"""A campaign renders once per variant, with inlined styles, the right language, and the reader's order."""

from __future__ import annotations

import re
from html import escape, unescape
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.campaigns import load_campaign
from newsletter.config import Config
from newsletter.db import LANGUAGES, connect
from newsletter.i18n import gettext_for
from newsletter.interests import Taxonomy
from newsletter.render import IssueRenderer, check_html

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "campaigns" / "2026-12-lac-digest"


def config() -> Config:
    return Config(templates_dir=ROOT / "templates", secret_key="render-tests", base_url="https://news.example.org")


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory) -> Taxonomy:
    return Taxonomy.load(connect(tmp_path_factory.mktemp("render") / "newsletter.db"))


@pytest.fixture(scope="module")
def campaign():
    return load_campaign(CAMPAIGN, ZoneInfo("UTC"))


@pytest.fixture
def renderer(campaign, taxonomy) -> IssueRenderer:
    return IssueRenderer(campaign, config(), taxonomy)


def subscriber(taxonomy: Taxonomy, language: str, interests: list[str], country: str = "") -> dict:
    return {"id": 1, "email": "a@example.org", "name": "Ana", "language": language,
            "interests": taxonomy.mask(interests), "country": country}


def plain(text: str) -> str:
    return " ".join(text.split())


def test_rendering_the_same_key_twice_returns_the_same_variant(renderer):
    first = renderer.variant("es", frozenset({"security"}), "MX")
    assert renderer.variant("es", frozenset({"security"}), "MX") is first
    assert renderer.variant_count == 1


def test_subscribers_sharing_language_and_variant_key_share_one_variant(renderer, taxonomy):
    # policy and grants head no section of this campaign, and neither MX nor BR has local news in it.
    first = renderer.variant_for(subscriber(taxonomy, "pt", ["policy"], "BR"))
    second = renderer.variant_for(subscriber(taxonomy, "pt", ["grants"], "MX"))
    third = renderer.variant_for(subscriber(taxonomy, "pt", [], ""))
    assert first is second is third
    assert renderer.variant_count == 1


def test_different_languages_or_sections_get_different_variants(renderer, taxonomy):
    by_language = {lang: renderer.variant_for(subscriber(taxonomy, lang, ["security"])) for lang in LANGUAGES}
    assert len({id(variant) for variant in by_language.values()}) == len(LANGUAGES)
    assert len({variant.html for variant in by_language.values()}) == len(LANGUAGES)
    training_first = renderer.variant_for(subscriber(taxonomy, "en", ["training"]))
    with_country_note = renderer.variant_for(subscriber(taxonomy, "en", ["security"], "TT"))
    assert len({id(by_language["en"]), id(training_first), id(with_country_note)}) == 3
    assert renderer.variant_count == len(LANGUAGES) + 2


def test_html_has_inlined_styles_and_keeps_the_media_query(renderer):
    html = renderer.variant("en", frozenset(), "").html
    assert re.search(r'<td class="header"[^>]*\bstyle="[^"]*background-color:\s*#0b3d66', html)
    assert re.search(r'<h1 class="title"[^>]*\bstyle="[^"]*font-size:\s*26px', html)
    assert "@media only screen and (max-width: 620px)" in html
    assert "padding: 0 !important" in html
    assert ".article-cell { padding" not in html  # the inlined rules are gone from <style>


def test_the_sample_campaign_renders_without_warnings(renderer):
    for lang in LANGUAGES:
        renderer.variant(lang, frozenset(), "TT")
    assert renderer.warnings == []


def test_check_html_warns_about_images_without_alt_text():
    warnings = check_html('<p>NLPHunsubscribe_urlNLPH NLPHpreferences_urlNLPH</p>'
                          '<img src="logo.png"><img src="map.png" alt="Map of the region">')
    assert len(warnings) == 1 and "alt" in warnings[0] and "logo.png" in warnings[0]


def test_check_html_warns_when_the_unsubscribe_link_is_missing():
    warnings = check_html("<p>NLPHpreferences_urlNLPH</p>")
    assert any("unsubscribe" in warning for warning in warnings)


def write_long_campaign(folder: Path, articles: int) -> Path:
    folder.mkdir()
    (folder / "campaign.toml").write_text('title = "A very long issue"\n[subject]\nen = "Everything at once"\n',
                                          encoding="utf-8")
    summary = "Operators across the region met to compare notes on routing security and peering. " * 3
    for index in range(articles):
        (folder / f"article-{index:03}.md").write_text(
            f"---\ntitle: Regional news item number {index}\nurl: https://lac.example.org/news/{index}\n"
            f"date: 2026-11-01\ninterests: [security]\nsummary: {summary.strip()}\n---\n\nBody.\n",
            encoding="utf-8",
        )
    return folder


def test_an_issue_over_100_kb_of_html_warns_about_gmail_clipping(tmp_path, taxonomy):
    campaign = load_campaign(write_long_campaign(tmp_path / "2026-12-long", articles=120), ZoneInfo("UTC"))
    variant = IssueRenderer(campaign, config(), taxonomy).variant("en", frozenset(), "")
    assert len(variant.html.encode()) > 100 * 1024
    assert any("Gmail clips" in warning for warning in variant.warnings)


def test_an_ordinary_issue_does_not_warn_about_size(renderer):
    variant = renderer.variant("en", frozenset(), "")
    assert len(variant.html.encode()) < 100 * 1024
    assert not any("KB" in warning for warning in variant.warnings)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_language_gets_its_own_subject_and_intro(renderer, campaign, lang):
    variant = renderer.variant(lang, frozenset(), "")
    assert variant.subject == campaign.subject_for(lang) == campaign.subject[lang]
    assert unescape(re.search(r"<title>(.*?)</title>", variant.html).group(1)) == variant.subject
    assert f'<html lang="{lang}"' in variant.html
    intro = campaign.intro[lang]
    assert plain(intro) in plain(variant.text)
    assert plain(intro) in plain(unescape(variant.html))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_country_note_appears_only_for_its_countries(renderer, campaign, lang):
    note = campaign.country_blocks[0].text[lang]
    assert plain(note) in plain(renderer.variant(lang, frozenset(), "TT").text.replace("| ", ""))
    assert plain(note) not in plain(renderer.variant(lang, frozenset(), "MX").text.replace("| ", ""))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_sections_follow_the_subscribers_interests(renderer, taxonomy, lang):
    training = taxonomy.label("training", lang)
    more_news = gettext_for(lang)("More news")

    def order(interests: list[str]) -> list[str]:
        variant = renderer.variant_for(subscriber(taxonomy, lang, interests))
        headings = re.findall(r'<h2 class="section-label"[^>]*>([^<]*)</h2>', variant.html)
        text_headings = [line for line in variant.text.splitlines() if line in (training, more_news)]
        assert [unescape(heading) for heading in headings] == text_headings
        return [unescape(heading) for heading in headings]

    # The sample files both partnership and skills articles under training; the Montevideo meeting is general.
    assert order(["training"]) == [training, more_news]
    assert order(["security"]) == [training, more_news]  # no section of theirs: the editor's order
