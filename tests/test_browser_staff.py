"""In a real Chromium: staff watch a real send to a real SMTP server on the dashboard, pause and resume it
from the campaign page, then read the campaign report and the audience page at desktop and phone width.
Every chart must be drawn (an svg with data in it), and no request may leave this machine."""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest
from chromium import launched_chromium, requires_chromium
from web_support import LiveSite, make_config

from newsletter import campaign_state, deliveries
from newsletter.clock import SystemClock
from newsletter.sender import CampaignSender, prepare_campaign

pytestmark = requires_chromium
SLUG = "2026-12-lac-digest"
SUBSCRIBERS = 240
WIDTHS = (1280, 375)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as browser:
        yield browser


class Sending:
    """The real engine in a thread, as the scheduler would run it, throttled so that the send lasts a while."""

    def __init__(self, site: LiveSite) -> None:
        self.site = site
        self.summaries = []
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        campaign = prepare_campaign(self.site.config, self.site.db, SLUG)
        self.thread = threading.Thread(target=lambda: self.summaries.append(
            CampaignSender(self.site.config, campaign, connections=2).run()), daemon=True)
        self.thread.start()

    def join(self):
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return self.summaries[-1]


def watch_requests(page, site: LiveSite) -> list[str]:
    """Every URL the page asks for; the test fails on any outside this site."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def assert_local(urls: list[str], site: LiveSite) -> None:
    ours = urlsplit(site.url).netloc
    outside = [url for url in urls if urlsplit(url).scheme not in ("data", "about") and urlsplit(url).netloc != ours]
    assert outside == [], f"requests that left the machine: {outside}"


def assert_charts_drawn(page, minimum: int) -> None:
    """Each chart figure holds a visible svg with drawn data (bars or lines), and a table of its figures."""
    figures = page.locator("figure.chart")
    assert figures.count() >= minimum
    for index in range(figures.count()):
        figure = figures.nth(index)
        svg = figure.locator("svg:visible")
        assert svg.count() == 1, f"chart {index} has no visible drawing"
        box = svg.bounding_box()
        assert box["width"] > 200 and box["height"] > 100
        marks = svg.locator("rect.rect, path.line, .bar rect, .histogram rect, path.area").count()
        assert marks > 0, f"chart {index} draws no data"
        assert figure.locator("details table tbody tr").count() > 0


def test_staff_watch_pause_and_resume_a_real_send_then_read_the_reports(tmp_path, smtp, browser):
    from playwright.sync_api import expect

    config = make_config(tmp_path, smtp_url=smtp.url())
    config.sending.rate_per_second = 20  # about 12 s for everyone: long enough to watch, pause and resume
    with LiveSite(config, SystemClock()) as site:
        for number in range(SUBSCRIBERS):
            site.add_subscriber(f"reader{number}@example.org", name=f"Reader {number}",
                                country=("TT", "BB", "BR", "MX", "CO")[number % 5],
                                language=("en", "es", "pt", "fr")[number % 4],
                                interests=[("security", "training", "grants", "policy")[number % 4]])
        sending = Sending(site)
        sending.start()

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        requests = watch_requests(page, site)
        page.goto(f"{site.url}/staff/")
        live = page.locator(f'[data-live-slug="{SLUG}"]')
        expect(live).to_be_visible()
        page.evaluate("window.notReloaded = true")
        first = int(live.locator('[data-field="sent"]').inner_text().replace(",", ""))
        # the page's script fetches the counts again every few seconds; the count grows without a reload
        page.wait_for_function(
            f"""() => Number(document.querySelector('[data-live-slug="{SLUG}"] [data-field="sent"]')
                .textContent.replace(/,/g, '')) > {first} && window.notReloaded === true""")
        expect(live.locator('[data-field="rate"]')).not_to_have_text("0/min")

        live.get_by_role("link", name=SLUG).click()
        page.locator("#action-pause").click()
        page.get_by_role("button", name="Yes, pause").click()
        expect(page.locator("#notice")).to_contain_text("Paused")
        expect(page.locator("#state")).to_have_text("paused")
        summary = sending.join()
        assert summary.stopped_reason == "paused"
        sent_at_pause = deliveries.counts(site.db, SLUG)["sent"]
        assert 0 < sent_at_pause < SUBSCRIBERS
        expect(page.locator("#history")).to_contain_text("paused")

        page.locator("#action-resume").click()
        page.get_by_role("button", name="Yes, resume").click()
        expect(page.locator("#notice")).to_contain_text("Resumed")
        assert campaign_state.get(site.db, SLUG)["state"] == "sending"
        sending.start()  # what the scheduler does with a campaign in 'sending'
        assert sending.join().finished
        assert deliveries.counts(site.db, SLUG)["sent"] == SUBSCRIBERS
        assert len(smtp.accepted) == SUBSCRIBERS
        assert_local(requests, site)
        context.close()

        for width in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 900})
            context.set_default_timeout(30_000)
            page = context.new_page()
            requests = watch_requests(page, site)
            page.goto(f"{site.url}/staff/campaigns/{SLUG}")
            expect(page.locator("#state")).to_have_text("sent")
            expect(page.locator("#outcome")).to_contain_text(f"{SUBSCRIBERS:,}")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            assert_charts_drawn(page, 4)  # deliveries over time, outcome, language, country
            page.screenshot(path=str(tmp_path / f"campaign-{width}.png"), full_page=True)

            page.goto(f"{site.url}/staff/audience")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            assert_charts_drawn(page, 4)  # status over time, new and lost, country, interest
            box = page.locator("#segment")
            box.fill("country:TT")
            expect(page.locator("#segment-result")).to_have_text(f"{SUBSCRIBERS // 5} subscribers")
            box.fill("planet:mars")
            expect(page.locator("#segment-result .field-error")).to_contain_text("planet")
            page.screenshot(path=str(tmp_path / f"audience-{width}.png"), full_page=True)
            assert_local(requests, site)
            context.close()
