"""Campaign folders: loading and checking campaign.toml, and cutting the issue into per-subscriber sections."""

from __future__ import annotations

import itertools
import re
import shutil
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from seeds import SEEDS, requires_seeds

from newsletter.articles import Author, parse_article
from newsletter.campaigns import (
    GENERAL,
    CampaignError,
    build_sections,
    country_blocks_for,
    list_campaigns,
    load_campaign,
    missing_languages,
    placements,
    variant_key,
)

PORT_OF_SPAIN = ZoneInfo("America/Port_of_Spain")
SHIPPED = Path(__file__).parents[1] / "campaigns"
CORPUS = Path(__file__).parent / "corpus" / "articles"

MINIMAL = '[subject]\nen = "Hello"\n'


def article_md(title: str, interests: list[str], countries: list[str] | None = None) -> str:
    lines = ["---", f"title: {title}", f"interests: [{', '.join(interests)}]"]
    if countries:
        lines.append(f"countries: [{', '.join(countries)}]")
    return "\n".join(lines + ["---", "", f"Body of {title}.", ""])


def make_campaign(tmp_path: Path, toml: str, files: dict[str, str] | None = None, slug: str = "2026-12-test") -> Path:
    folder = tmp_path / slug
    folder.mkdir(parents=True)
    (folder / "campaign.toml").write_text(toml, encoding="utf-8")
    for name, text in (files or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def load(folder: Path):
    return load_campaign(folder, PORT_OF_SPAIN)


# --- loading ---------------------------------------------------------------------------------------


def test_campaign_toml_fields_load_and_send_at_local_time_becomes_utc(tmp_path):
    folder = make_campaign(tmp_path, """
title = "December digest"
template = "announcement"
segment = "status:active country:TT"
send_at = "2026-12-01 09:00"
transport = "smtp://mail.example.org:587"
only_matching_interests = true
sender_name = "Caribbean desk"
sender_address = "caribbean@lac.example.org"
[subject]
en = "News"
es = "Noticias"
[preheader]
en = "Short"
[intro]
en = "Hello"
fr = "Bonjour"
""", {"a.md": article_md("A", ["security"])})
    campaign = load(folder)
    assert campaign.slug == "2026-12-test" and campaign.folder == folder
    assert campaign.title == "December digest"
    assert campaign.template == "announcement"
    assert campaign.segment == "status:active country:TT"
    assert campaign.send_at == datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
    assert campaign.transport == "smtp://mail.example.org:587"
    assert campaign.only_matching_interests is True
    assert (campaign.sender_name, campaign.sender_address) == ("Caribbean desk", "caribbean@lac.example.org")
    assert [article.title for article in campaign.articles] == ["A"]


def test_texts_per_language_fall_back_to_english(tmp_path):
    campaign = load(make_campaign(tmp_path, '[subject]\nen = "News"\nes = "Noticias"\n[intro]\nen = "Hi"\nfr = "Salut"\n'))
    assert (campaign.subject_for("es"), campaign.subject_for("pt")) == ("Noticias", "News")
    assert (campaign.intro_for("fr"), campaign.intro_for("pt")) == ("Salut", "Hi")
    assert campaign.preheader_for("es") == "Hi"  # no [preheader]: the intro's first sentence, never filler alone


def test_preheader_falls_back_to_the_intros_first_sentence_then_the_title(tmp_path):
    campaign = load(make_campaign(tmp_path / "a", 'title = "December digest"\n[subject]\nen = "News"\n[intro]\n'
                                  'en = "Two partners sign up. Three schools open in March!\\n\\nMore below."\n'))
    assert campaign.preheader_for("en") == "Two partners sign up."
    assert load(make_campaign(tmp_path / "b", 'title = "December digest"\n' + MINIMAL)).preheader_for("pt") \
        == "December digest"


def test_defaults_when_only_the_subject_is_given(tmp_path):
    campaign = load(make_campaign(tmp_path, MINIMAL))
    assert (campaign.title, campaign.template, campaign.segment) == ("Hello", "digest", "status:active")
    assert campaign.send_at is None and campaign.transport is None and campaign.only_matching_interests is False
    assert campaign.articles == [] and campaign.country_blocks == []


def test_send_at_with_explicit_offset_or_toml_datetime_is_honoured(tmp_path):
    with_offset = load(make_campaign(tmp_path / "a", 'send_at = "2026-12-01T09:00:00-05:00"\n' + MINIMAL))
    assert with_offset.send_at == datetime(2026, 12, 1, 14, 0, tzinfo=timezone.utc)
    native = load(make_campaign(tmp_path / "b", "send_at = 2026-12-01T09:30:00\n" + MINIMAL))
    assert native.send_at == datetime(2026, 12, 1, 13, 30, tzinfo=timezone.utc)


def test_without_an_articles_list_every_md_and_txt_file_is_an_article_in_name_order(tmp_path):
    folder = make_campaign(tmp_path, MINIMAL, {
        "b-second.md": article_md("Second", ["policy"]),
        "a-first.txt": "First Title Here\n\nA body paragraph.\n",
        "notes.csv": "not,an,article\n",
    })
    assert [article.title for article in load(folder).articles] == ["First Title Here", "Second"]


def test_articles_list_sets_order_and_overrides_what_the_file_says(tmp_path):
    folder = make_campaign(tmp_path, MINIMAL + """
[[articles]]
file = "b.md"
title = "Better title"
date = 2026-11-30
url = "https://lac.example.org/b"
summary = "Editor's teaser."
interests = ["grants"]
countries = ["tt"]
authors = ["Ana Souza, Editor", { name = "Pedro Lima" }]

[[articles]]
file = "a.md"
""", {"a.md": article_md("A", ["security"]), "b.md": article_md("B", ["policy"])})
    first, second = load(folder).articles
    assert (first.title, first.date, first.url, first.summary) == (
        "Better title", date(2026, 11, 30), "https://lac.example.org/b", "Editor's teaser.")
    assert (first.interests, first.countries) == (["grants"], ["TT"])
    assert first.authors == [Author("Ana Souza", "Editor"), Author("Pedro Lima")]
    assert second.title == "A"


@requires_seeds
def test_bare_press_release_gets_its_title_from_the_campaign(tmp_path):
    folder = make_campaign(tmp_path, MINIMAL + '[[articles]]\nfile = "canto.txt"\ntitle = "CANTO and ISOC join forces"\n')
    shutil.copy(SEEDS / "000_19bb182bab9ed61b.txt", folder / "canto.txt")
    (article,) = load(folder).articles
    assert article.title == "CANTO and ISOC join forces"
    assert len(article.paragraphs) == 6


def test_list_campaigns_loads_every_campaign_folder_by_name(tmp_path):
    make_campaign(tmp_path, MINIMAL, slug="2026-12-b")
    make_campaign(tmp_path, MINIMAL, slug="2026-11-a")
    (tmp_path / "drafts-without-toml").mkdir()
    assert [campaign.slug for campaign in list_campaigns(tmp_path, PORT_OF_SPAIN)] == ["2026-11-a", "2026-12-b"]
    with pytest.raises(CampaignError, match="does not exist"):
        list_campaigns(tmp_path / "missing", PORT_OF_SPAIN)


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml, files, expected",
    [
        ('colour = "red"\n' + MINIMAL, {}, r"campaign\.toml, line 1: colour: unknown key"),
        ('[subject]\nes = "Hola"\n', {}, r"campaign\.toml, line 1: subject\.en: missing; English is required"),
        ('[subject]\nen = "Hi"\nde = "Hallo"\n', {}, r"subject\.de: unknown key"),
        ('[preheader]\nfr = "Salut"\n' + MINIMAL, {}, r"preheader\.en: missing"),
        (MINIMAL + '[[articles]]\nfile = "ghost.md"\n', {}, r"line 3: articles\[1\]\.file: 'ghost\.md' does not exist"),
        (MINIMAL + '[[articles]]\ntitle = "No file"\n', {}, r"articles\[1\]\.file: missing"),
        (MINIMAL + '[[articles]]\nfile = "a.md"\nsubtitle = "x"\n', {"a.md": article_md("A", [])},
         r"articles\[1\]\.subtitle: unknown key"),
        (MINIMAL + '[[articles]]\nfile = "bare.txt"\n', {"bare.txt": "Just a sentence.\n"},
         r"articles\[1\]\.title: bare\.txt has no title; add title"),
        (MINIMAL + '[[articles]]\nfile = "a.md"\ninterests = ["cats"]\n', {"a.md": article_md("A", [])},
         r"articles\[1\]\.interests: unknown interest 'cats'"),
        (MINIMAL + '[[articles]]\nfile = "a.md"\ndate = "soon"\n', {"a.md": article_md("A", [])},
         r"articles\[1\]\.date: 'soon' is not a date"),
        ('send_at = "next tuesday"\n' + MINIMAL, {}, r"line 1: send_at: 'next tuesday' is not a date and time"),
        ('send_at = 2026-12-01\n' + MINIMAL, {}, r"send_at: .* is not a date and time"),
        ('only_matching_interests = "yes"\n' + MINIMAL, {}, r"only_matching_interests: must be true or false"),
        ('template = "../../etc/passwd"\n' + MINIMAL, {}, r"template: .* must be a plain name"),
        ('sections = ["security", "knitting"]\n' + MINIMAL, {}, r"sections: unknown interest 'knitting'"),
        (MINIMAL + '[[country_blocks]]\ncountries = ["TT"]\n[country_blocks.text]\nes = "Hola"\n', {},
         r"line 3: country_blocks\[1\]\.text\.en: missing"),
        (MINIMAL + '[[country_blocks]]\ncountries = ["Trinidad"]\n[country_blocks.text]\nen = "Hi"\n', {},
         r"country_blocks\[1\]\.countries: 'Trinidad' is not an ISO 3166 alpha-2"),
        ('title = "unclosed\n' + MINIMAL, {}, r"campaign\.toml: not valid TOML"),
        (MINIMAL + '[[articles]]\nfile = "a.md"\n', {"a.md": "---\ndate: someday\n---\nBody.\n"},
         r"a\.md, line 2: date: 'someday' is not a date"),
    ],
)
def test_campaign_errors_name_the_file_and_field(tmp_path, toml, files, expected):
    folder = make_campaign(tmp_path, toml, files)
    with pytest.raises(CampaignError, match=expected) as caught:
        load(folder)
    assert str(folder) in str(caught.value)


def test_send_at_in_a_skipped_daylight_saving_hour_is_an_error(tmp_path):
    folder = make_campaign(tmp_path, 'send_at = "2026-03-08 02:30"\n' + MINIMAL)
    with pytest.raises(CampaignError, match="does not exist in America/New_York"):
        load_campaign(folder, ZoneInfo("America/New_York"))


def test_folder_without_campaign_toml_is_an_error(tmp_path):
    with pytest.raises(CampaignError, match=r"no campaign\.toml in"):
        load(tmp_path)


# --- sections for a subscriber --------------------------------------------------------------------

MIXED = {
    "1-ixp.md": article_md("IXP news", ["infrastructure"]),
    "2-dnssec.md": article_md("DNSSEC news", ["security", "training"]),
    "3-school.md": article_md("School news", ["training", "security"], countries=["TT"]),
    "4-lab.md": article_md("Lab news", ["training"]),
    "5-hello.md": article_md("Hello from the bureau", []),
    "6-ixp-tt.md": article_md("IXP in Trinidad", ["infrastructure"], countries=["TT"]),
}


def titles(sections) -> list[tuple[str, list[str]]]:
    return [(section.interest, [article.title for article in section.articles]) for section in sections]


def test_articles_group_under_their_first_interest_in_campaign_order_and_appear_once(tmp_path):
    campaign = load(make_campaign(tmp_path, MINIMAL, MIXED))
    assert titles(build_sections(campaign, frozenset(), "AR")) == [
        ("infrastructure", ["IXP news", "IXP in Trinidad"]),
        ("security", ["DNSSEC news"]),
        ("training", ["School news", "Lab news"]),
        (GENERAL, ["Hello from the bureau"]),
    ]


def test_explicit_sections_order_decides_where_multi_interest_articles_go(tmp_path):
    campaign = load(make_campaign(tmp_path, 'sections = ["training", "infrastructure"]\n' + MINIMAL, MIXED))
    assert titles(build_sections(campaign, frozenset(), "AR")) == [
        ("training", ["DNSSEC news", "School news", "Lab news"]),
        ("infrastructure", ["IXP news", "IXP in Trinidad"]),
        (GENERAL, ["Hello from the bureau"]),
    ]


def test_subscribers_matching_sections_come_first_and_their_country_leads_each_section(tmp_path):
    campaign = load(make_campaign(tmp_path, MINIMAL, MIXED))
    assert titles(build_sections(campaign, frozenset({"training", "grants"}), "tt")) == [
        ("training", ["School news", "Lab news"]),
        ("infrastructure", ["IXP in Trinidad", "IXP news"]),
        ("security", ["DNSSEC news"]),
        (GENERAL, ["Hello from the bureau"]),
    ]


def test_only_matching_interests_keeps_matching_sections_and_general_news(tmp_path):
    campaign = load(make_campaign(tmp_path, "only_matching_interests = true\n" + MINIMAL, MIXED))
    assert titles(build_sections(campaign, frozenset({"security", "infrastructure"}), "AR")) == [
        ("infrastructure", ["IXP news", "IXP in Trinidad"]),
        ("security", ["DNSSEC news"]),
        (GENERAL, ["Hello from the bureau"]),
    ]


def test_only_matching_interests_never_sends_an_empty_issue(tmp_path):
    campaign = load(make_campaign(tmp_path, "only_matching_interests = true\n" + MINIMAL, MIXED))
    assert [section.interest for section in build_sections(campaign, frozenset({"grants"}), "AR")] == [
        "infrastructure", "security", "training", GENERAL]


def test_country_blocks_go_to_their_countries_in_the_subscribers_language(tmp_path):
    campaign = load(make_campaign(tmp_path, MINIMAL + """
[[country_blocks]]
countries = ["TT", "BB"]
[country_blocks.text]
en = "Caribbean note"
es = "Nota caribeña"

[[country_blocks]]
countries = ["TT"]
[country_blocks.text]
en = "Trinidad note"
"""))
    assert country_blocks_for(campaign, "tt", "es") == ["Nota caribeña", "Trinidad note"]
    assert country_blocks_for(campaign, "BB", "pt") == ["Caribbean note"]
    assert country_blocks_for(campaign, "AR", "en") == []


def test_subscribers_with_the_same_variant_key_get_identical_sections_and_blocks(tmp_path):
    campaign = load(make_campaign(tmp_path, "only_matching_interests = true\n" + MINIMAL + """
[[country_blocks]]
countries = ["TT", "BB"]
[country_blocks.text]
en = "Caribbean note"
""", MIXED))
    slugs = ["infrastructure", "security", "policy", "training", "grants"]
    subscribers = [
        (frozenset(combo), country)
        for size in range(len(slugs) + 1)
        for combo in itertools.combinations(slugs, size)
        for country in ("TT", "BB", "AR", "")
    ]
    rendered: dict = {}
    for interests, country in subscribers:
        key = variant_key(campaign, interests, country)
        hash(key)
        output = (titles(build_sections(campaign, interests, country)), country_blocks_for(campaign, country, "en"))
        assert rendered.setdefault(key, output) == output
    # Interests the campaign has no section for, and countries it never names, share variants.
    assert len(rendered) < len(subscribers) / 4
    assert variant_key(campaign, frozenset({"policy"}), "AR") == variant_key(campaign, frozenset(), "MX")
    assert variant_key(campaign, frozenset({"security"}), "AR") != variant_key(campaign, frozenset(), "AR")


# --- the shipped sample -------------------------------------------------------------------------


def test_shipped_sample_campaign_loads_with_all_languages_and_every_article():
    campaign = load_campaign(SHIPPED / "2026-12-lac-digest", PORT_OF_SPAIN)
    for lang in ("en", "es", "pt", "fr"):
        assert lang in campaign.subject and lang in campaign.preheader and lang in campaign.intro
        assert lang in campaign.titles
    assert missing_languages(campaign) == {lang: [] for lang in ("en", "es", "pt", "fr")}
    markdown, plain, pictured = campaign.articles
    assert pictured.image and pictured.image_alt and not pictured.url
    assert markdown.source.suffix == ".md" and plain.source.suffix == ".txt"
    assert "CANTO" in markdown.title and plain.title and plain.date and len(plain.authors) == 2
    assert [block.kind for block in plain.blocks].count("heading") >= 3
    for text in [plain.title, *plain.paragraphs]:
        assert not re.search(r"Thumbnail|‹|Disclaimer|Related articles|Join the conversation", text)
    assert country_blocks_for(campaign, "TT", "pt") and country_blocks_for(campaign, "BB", "fr")
    assert campaign.send_at == datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
    assert [campaign.slug for campaign in list_campaigns(SHIPPED, PORT_OF_SPAIN)] == ["2026-12-lac-digest"]


def test_shipped_sample_articles_are_filed_by_their_lead_not_by_words_in_passing():
    """The partnership release mentions spam, hackers and cybersecurity, and the skills article names
    exchange points often; both are about education and training, as their leads say."""
    found = {placement.article.slug: placement for placement in
             placements(load_campaign(SHIPPED / "2026-12-lac-digest", PORT_OF_SPAIN))}
    assert found["canto-internet-society"].section == "training"
    assert found["growing-skills"].section == "training"
    assert found["chapter-leaders"].section == GENERAL
    assert "matched words: training (in the lead: education" in found["canto-internet-society"].reason


@requires_seeds
def test_shipped_sample_articles_are_written_afresh_not_copied_from_the_seeds():
    def shingles(text: str) -> set[tuple[str, ...]]:
        """Runs of ten words: long enough to let names and job titles recur, short enough to catch a sentence."""
        words = re.findall(r"\w+", text.lower())
        return {tuple(words[index:index + 10]) for index in range(len(words) - 9)}

    seed_shingles = set().union(*(shingles(" ".join(parse_article(seed).paragraphs)) for seed in SEEDS.iterdir()))
    for article in load_campaign(SHIPPED / "2026-12-lac-digest", PORT_OF_SPAIN).articles:
        copied = shingles(" ".join(article.paragraphs)) & seed_shingles
        assert not copied, f"{article.source.name} repeats seed wording: {sorted(copied)[:3]}"
