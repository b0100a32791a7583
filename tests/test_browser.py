"""In a real Chromium: a subscriber follows the preference link of a real mail, changes interests and
unsubscribes; staff preview an issue at phone width."""

from __future__ import annotations

import os
import re
import shutil
import struct
from email import message_from_bytes, policy

import pytest
from chromium import launched_chromium, requires_chromium
from smtp_servers import FaultServer
from web_support import REPO, LiveSite

from newsletter.campaigns import load_campaign
from newsletter.interests import Taxonomy
from newsletter.message import MessageFactory, new_message_id
from newsletter.render import IssueRenderer
from newsletter.transport import open_transport

pytestmark = requires_chromium
SLUG = "2026-12-lac-digest"
PHONE = {"width": 375, "height": 800}


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def site_settings(smtp):
    return {"smtp_url": smtp.url()}


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=PHONE, locale="es-ES")
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def mail_issue_to(site: LiveSite, smtp: FaultServer, subscriber: dict) -> bytes:
    """Render the sample issue for the subscriber, send it through the relay, and return what the relay received."""
    config = site.config
    campaign = load_campaign(config.campaigns_dir / SLUG, config.tz)
    variant = IssueRenderer(campaign, config, Taxonomy.load(site.db)).variant_for(subscriber)
    data = MessageFactory(config, site.signer).build(
        variant, subscriber, message_id=new_message_id(SLUG, 1, config.sender_domain), now=site.clock.now())
    transport = open_transport(config.smtp_url)
    try:
        assert transport.send(config.bounce_address, subscriber["email"], data).outcome == "sent"
    finally:
        transport.close()
    [received] = smtp.accepted_for(subscriber["email"])
    return received


def test_a_subscriber_changes_interests_then_unsubscribes_from_the_link_in_a_real_mail(site, smtp, page):
    from playwright.sync_api import expect

    ana = site.add_subscriber("ana@example.org", name="Ana Prieto", country="TT", language="es",
                              interests=["security"])
    message = message_from_bytes(mail_issue_to(site, smtp, ana), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    preferences_url = re.search(r'href="(http://127\.0\.0\.1:\d+/p/[^"]+)"', html).group(1)

    page.goto(preferences_url)
    expect(page.locator("h1")).to_have_text("Su suscripción")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing wider than a phone
    page.get_by_label("Seguridad y DNSSEC").uncheck()
    page.get_by_label("Subvenciones comunitarias y desarrollo").check()
    page.get_by_role("button", name="Guardar mis preferencias").click()
    expect(page.locator("#done")).to_have_text("Sus preferencias se han guardado.")
    assert Taxonomy.load(site.db).slugs_in(site.subscriber(ana["id"])["interests"]) == ["grants"]

    page.locator("#unsubscribe").get_by_role("button", name="Darme de baja").click()
    expect(page.locator("#done")).to_contain_text("Se ha dado de baja")
    assert site.subscriber(ana["id"])["status"] == "unsubscribed"


def test_the_preview_renders_an_issue_at_phone_width(site, page, tmp_path):
    from playwright.sync_api import expect

    site.add_subscriber("bo@example.org", name="Bo", country="BR", language="pt", interests=["training"])
    page.goto(f"{site.url}/preview/{SLUG}?email=bo@example.org")
    expect(page.get_by_role("button", name="Phone (375 px)")).to_have_attribute("aria-pressed", "true")
    issue = page.frame_locator("#issue-frame")
    expect(issue.locator("h1")).to_have_text("Boletim de dezembro de 2026")
    expect(issue.get_by_text("Olá, Bo,")).to_be_visible()
    assert page.locator("#issue-frame").bounding_box()["width"] <= PHONE["width"]

    screenshot = tmp_path / "preview-phone.png"
    page.screenshot(path=str(screenshot), full_page=True)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == PHONE["width"] and height >= PHONE["height"]
    assert len(data) > 20_000  # a rendered page, not a blank one


def test_the_preview_reloads_by_itself_when_an_article_file_changes(tmp_path, browser):
    shutil.copytree(REPO / "campaigns" / SLUG, tmp_path / "campaigns" / SLUG)
    article = tmp_path / "campaigns" / SLUG / "growing-skills.txt"
    with LiveSite.start(tmp_path, campaigns_dir=tmp_path / "campaigns") as site:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15_000)
        page.goto(f"{site.url}/preview/{SLUG}")
        with page.expect_navigation():  # the page's own polling notices the edit and reloads
            article.write_text(article.read_text(encoding="utf-8").replace(
                "Growing Skills Across Latin America", "Skills Grown Across Latin America"), encoding="utf-8")
            later = article.stat().st_mtime_ns + 5_000_000_000
            os.utime(article, ns=(later, later))
        page.frame_locator("#issue-frame").get_by_text("Skills Grown Across Latin America").first.wait_for()
        page.close()


def relative_luminance(rgb: tuple[int, int, int]) -> float:
    channels = []
    for value in rgb:
        c = value / 255
        channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


def contrast(a: str, b: str) -> float:
    parse = lambda css: tuple(int(n) for n in re.findall(r"\d+", css)[:3])  # noqa: E731
    high, low = sorted((relative_luminance(parse(a)), relative_luminance(parse(b))), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_spanish_preference_centre_fits_a_phone_with_a_long_address_and_a_visible_focus_ring(site, page):
    address = "mariafernandagonzalezrodriguez.secretaria@ministeriodetelecomunicaciones.example"  # no break point
    long = site.add_subscriber(address, name="María Fernanda", language="es", country="CO")
    page.goto(site.url + site.preferences_path(long["id"]))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.keyboard.press("Tab")
    ring = page.evaluate("""() => { const el = document.activeElement; const s = getComputedStyle(el);
        return [s.outlineStyle, s.outlineColor, getComputedStyle(document.body).backgroundColor,
                getComputedStyle(el.closest('.card') || document.body).backgroundColor]; }""")
    style, color, page_background, card_background = ring
    assert style == "solid"
    assert contrast(color, page_background) >= 3 and contrast(color, card_background) >= 3
