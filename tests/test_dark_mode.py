"""In a real Chromium: the issue in light and in dark mode, from screenshots' pixels.

Clients that follow the reader's setting read prefers-color-scheme; Outlook.com marks its dark mode with
data-ogsc / data-ogsb attributes instead, which the test sets as Outlook.com does. In every case the page
must be dark or light as asked, its text readable, and the logo legible on the header.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter

import pytest
from chromium import launched_chromium, requires_chromium
from web_support import REPO, LiveSite

pytestmark = requires_chromium
SLUG = "2026-12-lac-digest"
LOGO = REPO / "src" / "newsletter" / "samples" / "logo.png"


def pixels(png: bytes) -> list[list[tuple[int, int, int]]]:
    """Rows of RGB pixels from an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data, header = 8, b"", None
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        chunk = png[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            data += chunk
        position += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    step = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(data), width * step, [], bytearray(width * step)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - corner
                best = min((abs(guess - left), 0, left), (abs(guess - up), 1, up), (abs(guess - corner), 2, corner))
                line[x] = (line[x] + best[2]) & 255
        rows.append([tuple(line[x:x + 3]) for x in range(0, stride, step)])
        previous = line
    return rows


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""
    def channel(value: int) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    r, g, b = (channel(value) for value in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(first: tuple[int, int, int], second: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(first), luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture(scope="module")
def browser():
    with launched_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with LiveSite.start(tmp_path_factory.mktemp("dark"), logo=LOGO,
                        postal_address="Rambla Example 1234\n11300 Montevideo, Uruguay") as live:
        live.mark_sent(SLUG)  # the archive shows only issues that went out
        yield live


def look(browser, site, scheme: str, outlook_hooks: bool = False, lang: str = "fr") -> dict:
    """Screenshots of the issue in one colour scheme; the colours found under its parts."""
    context = browser.new_context(viewport={"width": 600, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{site.url}/archive/{SLUG}/{lang}")
    page.wait_for_function("document.querySelector('img.logo').complete")
    assert page.evaluate("document.querySelector('img.logo').naturalWidth") == 384  # the logo was served
    if outlook_hooks:  # what Outlook.com does to a message in its dark mode
        page.evaluate("document.querySelectorAll('*').forEach(e => { e.setAttribute('data-ogsc', ''); "
                      "e.setAttribute('data-ogsb', ''); })")
    found = {}
    for name, selector in (("content", "td.content"), ("header", "td.header"), ("logo", "img.logo"),
                           ("title", "h1.title"), ("paragraph", "td.content > p")):
        box = page.locator(selector).first.bounding_box()
        clip = {**box, "height": min(box["height"], 120)}  # a strip is enough, and quick to decode
        found[name] = [pixel for row in pixels(page.screenshot(clip=clip)) for pixel in row]
    page.screenshot(path=str(site.config.database.parent / f"issue-{scheme}{'-outlook' if outlook_hooks else ''}.png"))
    context.close()
    return found


def most_common(colours: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return Counter(colours).most_common(1)[0][0]


def ink(colours: list[tuple[int, int, int]], background: tuple[int, int, int]) -> tuple[int, int, int]:
    """The colour that stands out most from the background: the text's or the picture's."""
    return max(set(colours), key=lambda colour: contrast(colour, background))


@pytest.mark.parametrize(("scheme", "outlook"), [("light", False), ("dark", False), ("light", True)])
def test_the_issue_is_readable_in_light_and_dark_and_the_logo_stays_legible(browser, site, scheme, outlook):
    parts = look(browser, site, scheme, outlook)
    dark = scheme == "dark" or outlook
    background = most_common(parts["content"])
    assert (luminance(background) < 0.05) if dark else (luminance(background) > 0.9), background
    for text in ("title", "paragraph"):
        assert contrast(ink(parts[text], background), background) >= 4.5, (text, background)
    header = most_common(parts["header"])
    assert luminance(header) < 0.05  # a dark band in both schemes, so the light logo always shows
    assert contrast(ink(parts["logo"], header), header) >= 7
