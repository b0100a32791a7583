"""Charts for the staff pages: SVG drawn on the server by pygal, each with the same figures as a table.

The SVG is put inline in the page, so it needs no network, no file of ours and no JavaScript to be seen.
pygal's own script tag (tooltips loaded from a CDN, and its inline config) is left out: the page's CSP
would refuse it anyway. The table is the fallback for screen readers and for anyone who wants the numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pygal
from markupsafe import Markup
from pygal.style import Style

_SCRIPTS = re.compile(r"<script\b.*?</script>", re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)

# The pages' own palette; colours chosen to stay apart for the common colour-vision deficiencies.
PALETTE = dict(
    background="#ffffff", plot_background="#ffffff", foreground="#1f2933", foreground_strong="#0b3d66",
    foreground_subtle="#7b8794", font_family="system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif",
    colors=("#0b5cad", "#e69f00", "#a61b1b", "#6c3483", "#1e7b3c", "#4a5561"), title_font_size=16,
    value_font_size=12, tooltip_font_size=13,
)


@dataclass
class Chart:
    """One figure: its SVG and the table of the same numbers."""

    title: str
    svg: Markup
    headers: list[str]
    rows: list[list[str]]


# Drawn twice, for a wide screen and for a phone (the page's CSS shows one): an SVG scales its text with its
# width, so one drawing would have unreadable labels at 375 px or huge ones at 1280 px.
SIZES = {"wide": (800, 340, 13), "narrow": (420, 340, 13)}


def _svg(kind, labels: list[str], series: dict[str, list[int]], *, horizontal: bool = False, **options) -> Markup:
    drawings = []
    for size, (width, height, font) in SIZES.items():
        if horizontal:
            height = max(220, 26 * len(labels) * max(1, len(series)) + 100)
        elif size == "narrow" and len(labels) > 20:
            height = 380
        if len(series) > 1:  # room for the legend's rows below the plot
            height += 22 * -(-len(series) // (2 if size == "narrow" else 4))
        chart = kind(style=Style(**PALETTE, label_font_size=font, major_label_font_size=font,
                                 legend_font_size=font + 1),
                     js=[], disable_xml_declaration=True, explicit_size=False, width=width, height=height,
                     legend_at_bottom=True, legend_at_bottom_columns=2 if size == "narrow" else 4,
                     show_legend=len(series) > 1, show_minor_x_labels=False, truncate_label=-1, margin=10,
                     include_x_axis=True, x_label_rotation=0 if horizontal or len(labels) * 9 < width / 10 else 35,
                     **options)
        shown = list(reversed(labels)) if horizontal else labels  # pygal draws the first label at the bottom
        chart.x_labels = shown
        if not horizontal:
            step = max(1, len(labels) // (6 if size == "narrow" else 12))
            chart.x_labels_major = labels[::step]
        for name, values in series.items():
            chart.add(name, list(reversed(values)) if horizontal else values)
        text = _COMMENTS.sub("", _SCRIPTS.sub("", chart.render(is_unicode=True)))
        drawings.append(f'<div class="svg-{size}">' + text.replace(
            "<svg ", '<svg role="img" aria-hidden="true" focusable="false" ', 1) + "</div>")
    return Markup("".join(drawings))


def _table(labels: list[str], series: dict[str, list[int]]) -> list[list[str]]:
    return [[label, *(f"{values[i]:,}" for values in series.values())] for i, label in enumerate(labels)]


def over_time(title: str, labels: list[str], series: dict[str, list[int]], *, stacked_area: bool = False,
              label_header: str = "") -> Chart:
    """Counts over time: stacked bars per period, or a stacked area for month-end levels."""
    if stacked_area and len(labels) > 1:
        svg = _svg(pygal.StackedLine, labels, series, fill=True, show_dots=False)
    else:
        svg = _svg(pygal.StackedBar, labels, series)
    return Chart(title, svg, [label_header, *series], _table(labels, series))


def bars(title: str, labels: list[str], series: dict[str, list[int]], *, horizontal: bool = False,
         label_header: str = "") -> Chart:
    """Grouped bars, one group per label; horizontal for long category names (countries, interests)."""
    svg = _svg(pygal.HorizontalBar if horizontal else pygal.Bar, labels, series, horizontal=horizontal)
    return Chart(title, svg, [label_header, *series], _table(labels, series))
