"""Article parsing: the seeds as they arrived, further pages of the same site, Markdown, and teasers."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from seeds import PRESS_RELEASE, SCRAPED_PAGE, requires_seeds

from newsletter.articles import (
    Article,
    ArticleError,
    Author,
    Block,
    detect_language,
    parse_article,
    parse_plain_text,
    summarize,
)

CORPUS = Path(__file__).parent / "corpus" / "articles"

FURNITURE = [
    "Thumbnail", "Miniatura", "‹", "Back", "Volver", "Disclaimer", "Related articles", "Artículos relacionados",
    "Join the conversation", "Únete a la conversación", "About Internet Society", "Update on Latin America",
    "Putting the Internet at the Heart", "Four New IXPs", "Peering Basics", "Spectrum for Community",
    "Spam Filtering on a Budget", "Taller de DNSSEC",
]


def all_text(article: Article) -> str:
    authors = [f"{author.name} {author.role}" for author in article.authors]
    return "\n".join([article.title, article.category, *authors, *(block.text for block in article.blocks)])


def headings(article: Article) -> list[str]:
    return [block.text for block in article.blocks if block.kind == "heading"]


# --- the seeds --------------------------------------------------------------------------------------


@requires_seeds
def test_scraped_seed_gives_title_date_category_and_both_authors_with_roles():
    article = parse_article(SCRAPED_PAGE)
    assert article.title == "Building Strength in Latin America and Caribbean"
    assert article.date == date(2014, 3, 27)
    assert article.category == "Development"
    assert article.authors == [
        Author("Christian O'Flaherty", "Regional Vice President - Latin America and The Caribbean"),
        Author("Olga Cavalli", "Former Member, Internet Society Board of Trustees"),
    ]
    assert article.source == SCRAPED_PAGE


@requires_seeds
def test_scraped_seed_keeps_section_headings_and_every_body_paragraph():
    article = parse_article(SCRAPED_PAGE)
    assert headings(article) == [
        "Local Solutions Mean Reducing the Digital Divide",
        "Local, Regional and Cross-border Interconnection",
        "On Stability and Security",
    ]
    assert len(article.paragraphs) == 14
    assert article.paragraphs[0].startswith("Capacity building in developing countries")
    assert article.paragraphs[-1].startswith("To reach our vision of a world")
    assert article.blocks[3] == Block("heading", "Local Solutions Mean Reducing the Digital Divide")


@requires_seeds
def test_scraped_seed_carries_none_of_the_site_furniture():
    text = all_text(parse_article(SCRAPED_PAGE))
    for furniture in FURNITURE + ["By Christian", "CavalliFormer", "15 January 2019", "Growing the Internet"]:
        assert furniture not in text


@requires_seeds
def test_scraped_seed_text_has_plain_single_spaces():
    for block in parse_article(SCRAPED_PAGE).blocks:
        assert "\u00a0" not in block.text and "  " not in block.text and "\r" not in block.text
        assert block.text == block.text.strip()
    assert "programmes. FRIDA, the Regional Fund" in parse_article(SCRAPED_PAGE).paragraphs[6]


@requires_seeds
def test_scraped_seed_interests_follow_what_it_talks_about():
    article = parse_article(SCRAPED_PAGE)
    assert set(article.interests) >= {"infrastructure", "training", "security", "grants"}
    assert article.language == "en"


@requires_seeds
def test_bare_press_release_gives_paragraphs_no_title_and_inferred_interests():
    article = parse_article(PRESS_RELEASE)
    assert article.title == ""
    assert article.date is None and article.category == "" and article.authors == []
    assert len(article.paragraphs) == 6
    assert headings(article) == []
    assert article.paragraphs[0].startswith("The Caribbean Association of National Telecommunication")
    assert article.paragraphs[-1].endswith("in this beautiful region.”")
    assert "security" in article.interests  # SPAM, cybersecurity, hackers
    assert "training" in article.interests  # workshop
    assert article.language == "en"


# --- further pages of the same site ---------------------------------------------------------------

CORPUS_EXPECTATIONS = {
    "ixp-single-author.txt": dict(
        title="Three Exchange Points Go Live in the Eastern Caribbean",
        date=date(2022, 10, 12),
        category="Infrastructure and Community Development",
        authors=[Author("Mariana Quispe", "Interconnection Programme Lead")],
        headings=["Why Peering at Home Matters", "What the Operators Built"],
        paragraphs=4,
        language="en",
        interest="infrastructure",
    ),
    "policy-no-byline.txt": dict(
        title="Regulators and Operators Meet in Panama",
        date=date(2017, 9, 18),
        category="Public Policy",
        authors=[],
        headings=["What Comes Next?"],
        paragraphs=4,
        language="en",
        interest="policy",
    ),
    "security-crlf.txt": dict(
        title="Security Week Brings Operators Together",
        date=date(2019, 2, 4),
        category="Security",
        authors=[
            Author("Kwame Thompson", "Security Engineer, Caribbean Operations"),
            Author("Renée Duval", "Chair, Haiti Chapter"),
        ],
        headings=["Signing the Zones"],
        paragraphs=3,
        language="en",
        interest="security",
    ),
    "formacion-es.txt": dict(
        title="Escuela de Redes en Quito",
        date=date(2019, 5, 5),
        category="Desarrollo",
        authors=[Author("Lucía Benítez", "Coordinadora de Formación, Oficina Regional")],
        headings=["¿Por qué una escuela presencial?"],
        paragraphs=3,
        language="es",
        interest="training",
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS_EXPECTATIONS))
def test_other_pages_of_the_site_parse_into_clean_articles(name):
    expected = CORPUS_EXPECTATIONS[name]
    article = parse_article(CORPUS / name)
    assert article.title == expected["title"]
    assert article.date == expected["date"]
    assert article.category == expected["category"]
    assert article.authors == expected["authors"]
    assert headings(article) == expected["headings"]
    assert len(article.paragraphs) == expected["paragraphs"]
    assert article.language == expected["language"]
    assert article.interests[0] == expected["interest"]
    text = all_text(article)
    for furniture in FURNITURE:
        assert furniture not in text


def test_crlf_page_with_bom_and_hard_wraps_reads_as_clean_paragraphs():
    raw = (CORPUS / "security-crlf.txt").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw  # the fixture really is the awkward kind
    article = parse_article(CORPUS / "security-crlf.txt")
    assert all("\r" not in block.text and "  " not in block.text for block in article.blocks)
    assert article.paragraphs[1] == (
        "The exercises were built around real incidents from the region, with names and addresses removed, "
        "so that every team faced a problem it could meet at work the following Monday."
    )


def test_body_sentence_starting_with_by_is_not_mistaken_for_a_byline():
    article = parse_article(CORPUS / "security-crlf.txt")
    assert article.paragraphs[-1].startswith("By the end of the week, two country-code registries")
    assert len(article.authors) == 2


def test_dateline_accepts_category_run_into_the_date_and_month_first_dates():
    run_together = parse_plain_text("Growing the Internet7 June 2016\n\nA Title\n\nA first sentence.")
    assert (run_together.category, run_together.date, run_together.title) == (
        "Growing the Internet", date(2016, 6, 7), "A Title")
    month_first = parse_plain_text("IPv6 Day March 27, 2014\n\nAnother Title\n\nBody text here.")
    assert (month_first.category, month_first.date) == ("IPv6 Day", date(2014, 3, 27))


def test_impossible_date_in_dateline_is_an_error_naming_file_and_line(tmp_path):
    page = tmp_path / "bad-date.txt"
    page.write_text("‹ Back\nDevelopment 31 February 2014\n\nTitle\n\nBody.\n", encoding="utf-8")
    with pytest.raises(ArticleError, match=r"bad-date\.txt, line 2: bad date"):
        parse_article(page)


def test_byline_splits_name_from_role_without_breaking_names_like_mcdonald():
    article = parse_plain_text("Title Words Here\nBy Ian McDonaldDirector of Peering\n\nBody sentence.")
    assert article.authors == [Author("Ian McDonald", "Director of Peering")]
    pair = parse_plain_text("Title Words Here\nBy Ana Souza and Pedro Lima\n\nBody sentence.")
    assert pair.authors == [Author("Ana Souza"), Author("Pedro Lima")]


def test_first_paragraph_that_starts_with_the_title_words_is_not_read_as_a_byline():
    article = parse_plain_text("Internet Society\nInternet Society opens a new office in the region today.\n")
    assert article.title == "Internet Society" and article.authors == []
    assert article.paragraphs == ["Internet Society opens a new office in the region today."]


def test_language_is_guessed_from_common_words():
    assert detect_language("Os operadores da região e o governo discutem a rede com os parceiros.") == "pt"
    assert detect_language("Les opérateurs et le régulateur travaillent avec une association pour les réseaux.") == "fr"
    assert detect_language("Los operadores y el regulador trabajan con una asociación para las redes.") == "es"
    assert detect_language("") == "en"


# --- Markdown with front matter ------------------------------------------------------------------

MARKDOWN = """\
---
title: Peering in the Andes
date: 2026-11-20
authors:
  - name: Ana Souza
    role: Peering Coordinator
  - Pedro Lima, Chapter Chair
category: Infrastructure
interests: [infrastructure, training]
countries: [pe, BO]
url: https://lac.example.org/news/andes
summary: Operators in Peru and Bolivia compared notes.
language: en
---

# Peering in the Andes

Operators met in **La Paz** to talk about [exchange points](https://example.org) and `BGP`
communities.

## What they agreed

- A shared route server.
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_markdown_front_matter_fills_every_field_and_body_is_plain_text(tmp_path):
    article = parse_article(write(tmp_path, "andes.md", MARKDOWN))
    assert article.title == "Peering in the Andes"
    assert article.date == date(2026, 11, 20)
    assert article.authors == [Author("Ana Souza", "Peering Coordinator"), Author("Pedro Lima", "Chapter Chair")]
    assert article.category == "Infrastructure"
    assert article.interests == ["infrastructure", "training"]
    assert article.countries == ["PE", "BO"]
    assert article.url == "https://lac.example.org/news/andes"
    assert article.summary == "Operators in Peru and Bolivia compared notes."
    assert article.blocks == [
        Block("paragraph", "Operators met in La Paz to talk about exchange points and BGP communities."),
        Block("heading", "What they agreed"),
        Block("paragraph", "A shared route server."),
    ]


def test_markdown_without_front_matter_takes_title_from_heading_and_infers_the_rest(tmp_path):
    article = parse_article(write(tmp_path, "plain.md", "# Taller de seguridad\n\nLos operadores y el equipo "
                                  "de seguridad trabajaron con las redes del país.\n"))
    assert article.title == "Taller de seguridad"
    assert article.language == "es"
    assert "security" in article.interests and "training" in article.interests


@pytest.mark.parametrize(
    "front_matter, line, message",
    [
        ("title: [unclosed\n", 2, "not valid YAML"),
        ("title: Fine\ninterests: [security, gardening]\n", 3, "unknown interest 'gardening'"),
        ("title: Fine\ndate: 27/03/2014\n", 3, "date: '27/03/2014' is not a date"),
        ("title: Fine\nlanguage: de\n", 3, "unknown language 'de'"),
        ("title: Fine\nauthor: Someone\n", 3, "unknown front matter key 'author'"),
        ("title: Fine\ncountries: [XX]\n", 3, "'XX' is not an ISO 3166 alpha-2"),
    ],
)
def test_front_matter_errors_name_file_line_and_problem(tmp_path, front_matter, line, message):
    path = write(tmp_path, "broken.md", f"---\n{front_matter}---\n\nBody.\n")
    with pytest.raises(ArticleError) as caught:
        parse_article(path)
    assert f"broken.md, line {line}: " in str(caught.value)
    assert message in str(caught.value)


def test_unclosed_front_matter_and_unknown_file_type_are_errors(tmp_path):
    with pytest.raises(ArticleError, match="never closed"):
        parse_article(write(tmp_path, "open.md", "---\ntitle: x\n\nBody.\n"))
    with pytest.raises(ArticleError, match=r"notes\.docx: unknown article type"):
        parse_article(write(tmp_path, "notes.docx", "x"))


# --- teasers ------------------------------------------------------------------------------------


def test_summarize_prefers_the_articles_own_summary():
    article = Article(summary="Short and written by an editor.", blocks=[Block("paragraph", "Other text.")])
    assert summarize(article) == "Short and written by an editor."


@requires_seeds
def test_summarize_cuts_the_first_paragraph_at_a_sentence_boundary_within_the_limit():
    summary = summarize(parse_article(SCRAPED_PAGE), limit=200)
    assert summary == ("Capacity building in developing countries is both challenging and rewarding, "
                       "including in Latin America and the Caribbean.")
    assert len(summarize(parse_article(PRESS_RELEASE), limit=280)) <= 280


def test_summarize_with_no_sentence_end_in_reach_cuts_between_words_with_an_ellipsis():
    text = "word " * 100
    summary = summarize(Article(blocks=[Block("paragraph", text.strip())]), limit=50)
    assert summary.endswith("…") and len(summary) <= 50
    assert re.fullmatch(r"(word )*word…", summary)


def test_summarize_does_not_take_a_decimal_point_for_a_sentence_end():
    paragraph = "Traffic grew 3.5 times in a year while costs fell sharply across the region and beyond it all."
    summary = summarize(Article(blocks=[Block("paragraph", paragraph)]), limit=20)
    assert summary == "Traffic grew 3.5…"


def test_summarize_returns_a_short_paragraph_whole_and_nothing_for_no_body():
    assert summarize(Article(blocks=[Block("heading", "H"), Block("paragraph", "Just this.")])) == "Just this."
    assert summarize(Article()) == ""
