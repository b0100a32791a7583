"""The digest and confirmation mails render in every language, safely, and survive premailer."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import premailer
import pytest

from newsletter.i18n import SUPPORTED_LANGUAGES, email_environment

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
PLACEHOLDERS = {
    "greeting": "NLPH0GREETING",
    "email": "NLPH0EMAIL",
    "preferences_url": "NLPH0PREFERENCES",
    "unsubscribe_url": "NLPH0UNSUBSCRIBE",
    "web_url": "NLPH0WEBVERSION",
}


@dataclass
class Article:
    title: str
    url: str
    date: datetime.date | None
    authors: list[str]
    category: str
    summary: str
    image: object = None


@dataclass
class Section:
    label: str
    articles: list[Article]


@dataclass
class Recipient:
    greeting: str = PLACEHOLDERS["greeting"]
    email: str = PLACEHOLDERS["email"]
    preferences_url: str = PLACEHOLDERS["preferences_url"]
    unsubscribe_url: str = PLACEHOLDERS["unsubscribe_url"]
    web_url: str = PLACEHOLDERS["web_url"]


@dataclass
class DigestContext:
    lang: str
    sections: list[Section]
    title: str = "March digest"
    list_name: str = "LAC Internet Digest"
    subject: str = "March digest: IPv6 grows in the Caribbean"
    preheader: str = "IPv6 grows, a training in Quito, and a policy forum"
    intro: str = "Welcome to the March issue.\n\nWe bring news from three countries."
    country_blocks: list[str] = field(default_factory=lambda: ["Members in Brazil: the forum meets in May."])
    sender_name: str = "LAC Bureau"
    sender_address: str = "news@lac.example.org"
    postal_address: str = "Av. Example 123\nMontevideo, Uruguay"
    base_url: str = "https://lac.example.org/"
    logo: object = None
    recipient: Recipient = field(default_factory=Recipient)


def sample_sections(first_title: str = "IPv6 deployment doubles across the Caribbean region this year") -> list[Section]:
    return [
        Section(
            "Infrastructure",
            [
                Article(
                    first_title,
                    "https://lac.example.org/articles/ipv6-caribbean?src=digest&issue=3",
                    datetime.date(2014, 3, 27),
                    ["Ana Souza", "Bruno Díaz", "Carla Pérez"],
                    "Infrastructure",
                    "Operators in five countries doubled their IPv6 traffic in one year, and the exchange "
                    "points of the region report steady growth with new peers every month.\n\n"
                    "A second paragraph of the summary.",
                ),
                Article(
                    "Security training in Quito",
                    "https://lac.example.org/articles/quito-training",
                    None,
                    ["Diego Mena"],
                    "",
                    "Forty engineers trained.",
                ),
            ],
        ),
        Section(
            "Policy",
            [
                Article(
                    "Regional policy forum",
                    "https://lac.example.org/articles/policy-forum",
                    datetime.date(2024, 1, 5),
                    [],
                    "Policy",
                    "Short summary.",
                )
            ],
        ),
    ]


def render(name: str, lang: str, context: object) -> str:
    return email_environment(TEMPLATES, lang).get_template(name).render(vars(context))


def render_digest(lang: str, **overrides) -> tuple[str, str]:
    context = DigestContext(lang=lang, sections=overrides.pop("sections", sample_sections()), **overrides)
    return render("digest.html", lang, context), render("digest.txt", lang, context)


@dataclass
class ConfirmContext:
    lang: str
    name: str
    list_name: str = "LAC Internet Digest"
    confirm_url: str = "https://lac.example.org/confirm?token=abc.def"
    sender_name: str = "LAC Bureau"


class LinkCollector(HTMLParser):
    """Collects link targets and the text of article titles, as a reader of the html part sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.titles: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a" and not attributes.get("href", "#").startswith("#"):
            self.hrefs.append(attributes["href"])
        if tag == "h3":
            self._in_title = True
            self.titles.append("")

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.titles[-1] += data


def collapse(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("lang", SUPPORTED_LANGUAGES)
def test_digest_renders_in_every_language_with_each_placeholder_once(lang):
    html, text = render_digest(lang)
    assert f'<html lang="{lang}"' in html
    for placeholder in PLACEHOLDERS.values():
        assert html.count(placeholder) == 1, placeholder
        assert text.count(placeholder) == 1, placeholder


@pytest.mark.parametrize(
    ("lang", "read_more", "by_line", "unsubscribe", "toc"),
    [
        ("en", "Read more", "By Ana Souza, Bruno Díaz, and Carla Pérez", "Unsubscribe", "In this issue"),
        ("es", "Leer más", "Por Ana Souza, Bruno Díaz y Carla Pérez", "Darse de baja", "En este número"),
        ("pt", "Leia mais", "Por Ana Souza, Bruno Díaz e Carla Pérez", "Cancelar inscrição", "Nesta edição"),
        ("fr", "Lire la suite", "Par Ana Souza, Bruno Díaz et Carla Pérez", "Se désabonner", "Dans ce numéro"),
    ],
)
def test_digest_text_is_translated(lang, read_more, by_line, unsubscribe, toc):
    html, text = render_digest(lang)
    for part in (html, text):
        assert read_more in part
        assert by_line in part
        assert unsubscribe in part
        assert toc in part


@pytest.mark.parametrize(
    ("lang", "first_date", "second_date"),
    [
        ("en", "March 27, 2014", "January 5, 2024"),
        ("es", "27 de marzo de 2014", "5 de enero de 2024"),
        ("pt", "27 de março de 2014", "5 de janeiro de 2024"),
        ("fr", "27 mars 2014", "5 janvier 2024"),
    ],
)
def test_article_dates_are_formatted_per_locale(lang, first_date, second_date):
    html, text = render_digest(lang)
    for part in (html, text):
        assert first_date in part
        assert second_date in part


def test_intro_paragraphs_become_separate_paragraphs():
    html, _ = render_digest("en")
    assert "<p>Welcome to the March issue.</p>\n<p>We bring news from three countries.</p>" in html


def test_text_part_has_every_article_title_and_link_of_the_html_part():
    html, text = render_digest("es")
    collector = LinkCollector()
    collector.feed(html)
    assert len(collector.titles) == 3
    for title in collector.titles:
        assert collapse(title) in collapse(text)
    assert collector.hrefs, "the html part should have links"
    for href in collector.hrefs:
        assert href in text.split(), f"{href} missing from the text part, or wrapped"


def test_text_part_wraps_prose_but_never_urls_or_placeholders():
    _, text = render_digest("pt")
    for line in text.splitlines():
        if "://" in line or "NLPH0" in line:
            continue
        assert len(line) <= 72, line
    summary = sample_sections()[0].articles[0].summary.split("\n\n")[0]
    assert summary not in text
    assert summary in collapse(text)


def test_table_of_contents_only_when_there_are_several_sections():
    html, text = render_digest("en", sections=sample_sections()[:1])
    assert "In this issue" not in html
    assert "In this issue" not in text
    html, text = render_digest("en")
    # Each entry links to the article itself: in-page anchors do nothing in many mail clients.
    assert '<li>Policy: <a href="https://lac.example.org/articles/policy-forum">Regional policy forum</a></li>' in html
    assert 'href="#' not in html
    assert "  - Infrastructure (2 articles)" in text


def test_footer_has_visible_preference_and_unsubscribe_links_and_sender_address():
    html, text = render_digest("fr")
    assert f'<a href="{PLACEHOLDERS["preferences_url"]}">Gérer mes préférences</a>' in html
    assert f'<a href="{PLACEHOLDERS["unsubscribe_url"]}">Se désabonner</a>' in html
    assert "parce que votre adresse est inscrite à LAC Internet Digest" in collapse(html)
    assert "LAC Bureau<br>\nAv. Example 123<br>\nMontevideo, Uruguay" in html
    assert f"Se désabonner\u00a0: {PLACEHOLDERS['unsubscribe_url']}" in text
    assert "Av. Example 123\nMontevideo, Uruguay" in text


def test_script_in_a_title_is_escaped_in_html():
    html, text = render_digest("en", sections=sample_sections("Breaking <script>alert(1)</script> news"))
    assert "<script>" not in html
    assert "Breaking &lt;script&gt;alert(1)&lt;/script&gt; news" in html
    assert "Breaking <script>alert(1)</script> news" in text
    assert 'href="https://lac.example.org/articles/ipv6-caribbean?src=digest&amp;issue=3"' in html


def test_missing_context_field_is_an_error_not_an_empty_string():
    context = vars(DigestContext(lang="en", sections=sample_sections()))
    del context["sender_address"]
    with pytest.raises(jinja2.UndefinedError, match="sender_address"):
        email_environment(TEMPLATES, "en").get_template("digest.html").render(context)


def test_premailer_inlines_styles_and_keeps_the_phone_layout():
    html, _ = render_digest("es")
    inlined = premailer.transform(html)
    assert re.search(r'<td class="article-cell" style="[^"]*padding', inlined)
    assert re.search(r'<td class="header" style="[^"]*background-color:#0b3d66', inlined)
    assert "@media only screen and (max-width: 620px)" in inlined
    assert ".content { padding: 20px 16px 8px 16px !important; }" in inlined
    style_blocks = re.findall(r"<style[^>]*>(.*?)</style>", inlined, flags=re.S)
    assert len(style_blocks) == 1
    for placeholder in PLACEHOLDERS.values():
        assert inlined.count(placeholder) == 1, f"premailer changed or duplicated {placeholder}"
        assert placeholder not in style_blocks[0]


@pytest.mark.parametrize(
    ("lang", "greeting", "button", "ignore_hint"),
    [
        ("en", "Hello Ana,", "Confirm my subscription", "If you did not ask for this, simply ignore"),
        ("es", "Hola, Ana:", "Confirmar mi suscripción", "Si no lo pidió, ignore este mensaje"),
        ("pt", "Olá, Ana,", "Confirmar minha inscrição", "Se você não pediu isso, simplesmente ignore"),
        ("fr", "Bonjour Ana,", "Confirmer mon abonnement", "Si vous n’avez rien demandé, ignorez"),
    ],
)
def test_confirmation_mail_asks_to_confirm_in_every_language(lang, greeting, button, ignore_hint):
    context = ConfirmContext(lang=lang, name="Ana")
    html = render("confirm.html", lang, context)
    text = render("confirm.txt", lang, context)
    assert f'<html lang="{lang}"' in html
    assert f'<a class="button-link" href="https://lac.example.org/confirm?token=abc.def">{button}</a>' in html
    assert "https://lac.example.org/confirm?token=abc.def" in text.splitlines()
    for part in (html, text):
        assert greeting in part
        assert button in part
        assert ignore_hint in collapse(part)


def test_confirmation_mail_without_a_name_greets_plainly():
    context = ConfirmContext(lang="es", name="")
    assert "<p>Hola:</p>" in render("confirm.html", "es", context)
    assert "\nHola:\n" in render("confirm.txt", "es", context)


def test_script_in_a_name_is_escaped_in_the_confirmation_mail():
    html = render("confirm.html", "en", ConfirmContext(lang="en", name="<script>x()</script>"))
    assert "<script>" not in html
    assert "Hello &lt;script&gt;x()&lt;/script&gt;," in html
