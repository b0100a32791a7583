"""Every personalised message parses back as a correct bulk mail, and its fast path equals the slow one."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import datetime, timezone
from email.message import EmailMessage
from html import escape, unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest

from newsletter.campaigns import build_sections, load_campaign
from newsletter.config import Config
from newsletter.db import connect
from newsletter.i18n import gettext_for
from newsletter.interests import Taxonomy
from newsletter.message import MessageFactory, new_message_id
from newsletter.render import IssueRenderer, RenderedVariant, greeting
from newsletter.signing import PREFERENCES, UNSUBSCRIBE, Signer
from newsletter.smtpwire import SMTPReady

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = ROOT / "campaigns" / "2026-12-lac-digest"
SECRET = "test-secret-for-message-tests"
BASE_URL = "https://news.lac.example.org"  # another host than the articles', so links tell apart
NOW = datetime(2026, 12, 1, 13, 0, 5, tzinfo=timezone.utc)
SUBSCRIBERS = {
    "en": {"id": 11, "email": "chloe@example.org", "name": "Chloé O'Neil", "language": "en",
           "interests": ["security"], "country": "TT"},
    "es": {"id": 12, "email": "jose@example.org", "name": "José Núñez", "language": "es",
           "interests": ["training"], "country": "MX"},
    "pt": {"id": 13, "email": "joao@example.net", "name": "João Conceição", "language": "pt",
           "interests": ["training", "security"], "country": "BR"},
    "fr": {"id": 14, "email": "gaelle@example.com", "name": "Gaëlle Jean-Baptiste", "language": "fr",
           "interests": [], "country": "HT"},
}


class Setup:
    def __init__(self, db_path: Path) -> None:
        self.config = Config(templates_dir=ROOT / "templates", secret_key=SECRET, base_url=BASE_URL,
                             unsubscribe_mailto="unsubscribe@lac.example.org")
        self.taxonomy = Taxonomy.load(connect(db_path))
        self.campaign = load_campaign(CAMPAIGN, ZoneInfo("UTC"))
        self.renderer = IssueRenderer(self.campaign, self.config, self.taxonomy)
        self.signer = Signer(SECRET)

    def subscriber(self, lang: str, **changes) -> dict:
        row = dict(SUBSCRIBERS[lang], **changes)
        return dict(row, interests=self.taxonomy.mask(row["interests"]))

    def factory(self) -> MessageFactory:
        return MessageFactory(self.config, self.signer)

    def build(self, subscriber: dict, variant: RenderedVariant | None = None,
              factory: MessageFactory | None = None) -> bytes:
        variant = variant or self.renderer.variant_for(subscriber)
        message_id = new_message_id(self.campaign.slug, subscriber["id"], "lac.example.org")
        return (factory or self.factory()).build(variant, subscriber, message_id=message_id, now=NOW)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    return Setup(tmp_path_factory.mktemp("message") / "newsletter.db")


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def bodies(message: EmailMessage) -> tuple[str, str]:
    """Decoded text and HTML, with the MIME canonical CRLF turned back into the templates' LF."""
    text, html = message.iter_parts()
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


class Links(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "a" and dict(attrs).get("href"):
            self.hrefs.append(dict(attrs)["href"])


def unsubscribe_targets(message: EmailMessage) -> tuple[str, str]:
    """The https link and the mailto of List-Unsubscribe, in the order the header gives them."""
    targets = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    web = [t for t in targets if t.startswith(("https://", "http://"))]
    mailto = [t for t in targets if t.startswith("mailto:")]
    assert len(web) == 1 and len(mailto) == 1, targets
    return web[0], mailto[0]


def collapse(text: str) -> str:
    return " ".join(text.split())


LANGS = sorted(SUBSCRIBERS)


@pytest.mark.parametrize("lang", LANGS)
def test_message_has_every_header_a_bulk_sender_needs(setup, lang):
    subscriber = setup.subscriber(lang)
    message = parse(setup.build(subscriber))
    for name in ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "List-Id",
                 "List-Unsubscribe", "List-Unsubscribe-Post"):
        assert len(message.get_all(name, [])) == 1, f"{name}: want exactly one"
    assert message["Subject"] == setup.campaign.subject_for(lang)
    assert message["From"].addresses[0].addr_spec == setup.config.sender_address
    assert message["To"].addresses[0].addr_spec == subscriber["email"]
    assert message["Date"].datetime == NOW
    assert message["MIME-Version"] == "1.0"
    assert setup.config.list_id in message["List-Id"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_non_ascii_subject_decodes_back_exactly(setup):
    raw = setup.build(setup.subscriber("fr"))
    subject_line = re.search(rb"^Subject:.*?(?=\r\n\S)", raw, re.M | re.S).group(0)
    assert subject_line.isascii() and b"=?utf-8?" in subject_line
    assert parse(raw)["Subject"] == "Lettre Internet ALC : partenaires, écoles et une rencontre à Montevideo"


def test_message_id_differs_between_two_builds_for_the_same_delivery(setup):
    subscriber = setup.subscriber("en")
    first, second = parse(setup.build(subscriber)), parse(setup.build(subscriber))
    assert first["Message-ID"] != second["Message-ID"]
    assert re.fullmatch(r"<[^<>@\s]+@lac\.example\.org>", str(first["Message-ID"]))


@pytest.mark.parametrize("lang", LANGS)
def test_message_is_multipart_alternative_text_then_html_in_utf8(setup, lang):
    message = parse(setup.build(setup.subscriber(lang)))
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert [part.get_content_charset() for part in parts] == ["utf-8", "utf-8"]


@pytest.mark.parametrize("lang", LANGS)
def test_message_uses_crlf_only_and_keeps_line_lengths_within_the_rfc(setup, lang):
    raw = setup.build(setup.subscriber(lang))
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.count(b"\r") == raw.count(b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert all(len(line) <= 78 for line in body.split(b"\r\n"))
    assert raw.endswith(b"\r\n")


@pytest.mark.parametrize("lang", LANGS)
def test_unsubscribe_link_in_header_and_bodies_is_the_same_signed_link(setup, lang):
    subscriber = setup.subscriber(lang)
    message = parse(setup.build(subscriber))
    web, mailto = unsubscribe_targets(message)
    text, html = bodies(message)
    assert web.startswith(BASE_URL + "/u/")
    assert web in text.split()
    assert web in Links(html).hrefs
    token = web.rsplit("/", 1)[1]
    assert setup.signer.unsign(token, UNSUBSCRIBE) == subscriber["id"]
    mail = urlsplit(mailto)
    assert mail.path == setup.config.unsubscribe_mailto
    assert parse_qs(mail.query)["subject"] == [f"unsubscribe {token}"]


@pytest.mark.parametrize("lang", LANGS)
def test_preferences_link_in_both_bodies_carries_the_subscribers_signed_id(setup, lang):
    subscriber = setup.subscriber(lang)
    text, html = bodies(parse(setup.build(subscriber)))
    in_text = [word for word in text.split() if word.startswith(BASE_URL + "/p/")]
    in_html = [href for href in Links(html).hrefs if href.startswith(BASE_URL + "/p/")]
    assert len(in_text) == 1 and in_text == in_html
    assert setup.signer.unsign(in_text[0].rsplit("/", 1)[1], PREFERENCES) == subscriber["id"]


@pytest.mark.parametrize("lang", LANGS)
def test_text_and_html_carry_the_same_articles_in_the_subscribers_language(setup, lang):
    subscriber = setup.subscriber(lang)
    text, html = bodies(parse(setup.build(subscriber)))
    sections = build_sections(setup.campaign, frozenset(SUBSCRIBERS[lang]["interests"]), subscriber["country"])
    articles = [article.version(lang) for section in sections for article in section.articles]
    expected_urls = [article.url for article in articles if article.url]
    text_urls = [w for w in text.split() if w.startswith("https://") and not w.startswith(BASE_URL)]
    html_urls = [h for h in Links(html).hrefs if h.startswith("https://") and not h.startswith(BASE_URL)]
    assert list(dict.fromkeys(text_urls)) == expected_urls
    assert list(dict.fromkeys(html_urls)) == expected_urls
    plain_html = collapse(unescape(re.sub(r"<[^>]+>", " ", html)))
    for article in articles:
        assert collapse(article.title) in collapse(text)
        assert collapse(article.title) in plain_html
    for section in sections:
        label = setup.taxonomy.label(section.interest, lang) if section.interest else gettext_for(lang)("More news")
        assert f"\n{label}\n" in text and escape(label) in html


@pytest.mark.parametrize("lang", LANGS)
def test_greeting_names_the_subscriber_in_their_language(setup, lang):
    subscriber = setup.subscriber(lang)
    text, html = bodies(parse(setup.build(subscriber)))
    expected = greeting(lang, subscriber["name"])
    assert subscriber["name"].split()[0] in expected and subscriber["name"] not in expected  # the first name
    assert expected in text.splitlines()
    assert re.search(rf"<p\b[^>]*>{re.escape(escape(expected))}</p>", html)


@pytest.mark.parametrize("name", ["<script>alert(1)</script>", "<b>Bold</b> & Co"])
def test_markup_in_a_name_is_escaped_in_the_html_part(setup, name):
    text, html = bodies(parse(setup.build(setup.subscriber("en", name=name))))
    assert "<script>" not in html and "<b>" not in html
    assert escape(greeting("en", name)) in html
    assert greeting("en", name) in text  # plain text shows the name as typed


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r", "\u2028", "\r\n\r\n"])
def test_a_line_break_in_the_name_cannot_add_a_header(setup, breaker):
    subscriber = setup.subscriber("en", name=f"Mallory{breaker}Bcc: victim@example.net")
    raw = setup.build(subscriber)
    message = parse(raw)
    assert "Bcc" not in message and not message.defects
    to = message["To"]
    assert to.addresses[0].addr_spec == subscriber["email"]
    assert "\n" not in to.addresses[0].display_name and "\r" not in to.addresses[0].display_name
    assert raw.count(b"\r") == raw.count(b"\n") == raw.count(b"\r\n")  # no bare CR or LF anywhere


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
def test_a_line_break_in_the_subject_cannot_add_a_header(setup, breaker):
    subscriber = setup.subscriber("es")
    variant = replace(setup.renderer.variant_for(subscriber), subject=f"Boletín{breaker}Bcc: victim@example.net")
    message = parse(setup.build(subscriber, variant=variant))
    assert "Bcc" not in message
    assert collapse(message["Subject"]) == "Boletín Bcc: victim@example.net"


def test_a_line_break_in_the_address_cannot_add_a_header(setup):
    subscriber = setup.subscriber("en", email="ana@example.org\r\nBcc: victim@example.net")
    message = parse(setup.build(subscriber))
    assert "Bcc" not in message
    assert len(message.get_all("To")) == 1


@pytest.mark.parametrize("lang", LANGS)
def test_non_ascii_names_are_rfc2047_encoded_and_decode_back(setup, lang):
    subscriber = setup.subscriber(lang)
    raw = setup.build(subscriber)
    to_line = re.search(rb"^To:.*?(?=\r\n\S)", raw, re.M | re.S).group(0)
    assert to_line.isascii() and b"=?utf-8?" in to_line
    assert parse(raw)["To"].addresses[0].display_name == subscriber["name"]


@pytest.mark.parametrize("name", ['Ana "La Flaca" Pérez', "Smith, John", "Ann (admin) Lee", "Zoë <zoe@evil>"])
def test_display_names_with_address_syntax_stay_one_mailbox(setup, name):
    subscriber = setup.subscriber("en", name=name)
    to = parse(setup.build(subscriber))["To"]
    assert len(to.addresses) == 1
    assert to.addresses[0].addr_spec == subscriber["email"]
    assert to.addresses[0].display_name == name


@pytest.mark.parametrize("lang", LANGS)
def test_fast_path_bodies_equal_the_variants_own_fill(setup, lang):
    subscriber = setup.subscriber(lang, name="Zoë <b>&</b> O'Neil")
    factory = setup.factory()
    variant = setup.renderer.variant_for(subscriber)
    links = factory.links(subscriber["id"])
    expected_html, expected_text = variant.fill({
        "greeting": greeting(lang, subscriber["name"]), "email": subscriber["email"],
        "preferences_url": links["preferences_url"], "unsubscribe_url": links["unsubscribe_url"],
    })
    text, html = bodies(parse(setup.build(subscriber, variant=variant, factory=factory)))
    assert html == expected_html
    assert text == expected_text


def test_each_variant_gets_its_own_skeleton_even_when_an_earlier_one_was_freed(setup):
    """Staff test sends build short-lived copies of variants (a "[TEST]" subject); a copy made after
    another was garbage-collected may land at the same id()."""
    factory = setup.factory()
    variants = [setup.renderer.variant(lang, frozenset(), "") for lang in LANGS]
    subscriber = setup.subscriber("en")
    built = [factory.build(replace(variants[i % 4], subject=f"[TEST] {i}"), subscriber,
                           message_id=f"<{i}@lac.example.org>", now=NOW) for i in range(24)]
    messages = [parse(data) for data in built]
    assert [m["Subject"] for m in messages] == [f"[TEST] {i}" for i in range(24)]
    assert [m["Content-Language"] for m in messages] == [LANGS[i % 4] for i in range(24)]


def test_no_line_starts_with_a_dot_so_the_bytes_go_into_smtp_data_unchanged(setup):
    """Lines that start with dots, in the issue's text and HTML and in what a subscriber typed, are
    written =2E, so SMTP needs no dot-stuffing pass; decoded, the parts are exactly what fill() gives."""
    subscriber = setup.subscriber("en", name=".Dot", email=".dot@example.org")
    plain = setup.renderer.variant_for(subscriber)
    dotted = "\n".join([".", "..", ". leading", "." + "x" * 80, "." * 90, "NLPHgreetingNLPH"])
    variant = replace(plain, text=dotted + "\n" + plain.text, html=dotted.replace("\n", "\n.") + plain.html)
    factory = setup.factory()
    data = setup.build(subscriber, variant=variant, factory=factory)
    assert isinstance(data, SMTPReady)
    assert not data.startswith(b".") and b"\n." not in data
    assert max(len(line) for line in data.partition(b"\r\n\r\n")[2].split(b"\r\n")) <= 76
    links = factory.links(subscriber["id"])
    expected_html, expected_text = variant.fill({
        "greeting": greeting("en", subscriber["name"]), "email": subscriber["email"],
        "preferences_url": links["preferences_url"], "unsubscribe_url": links["unsubscribe_url"],
    })
    text, html = bodies(parse(data))
    assert (text, html) == (expected_text, expected_html)
