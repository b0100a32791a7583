"""Render a campaign into per-variant HTML and text, once per (language, sections) variant.

Jinja2 and premailer are the expensive steps (about a millisecond per issue), so they run once for each
variant: every subscriber sharing a language and a variant_key() gets the same compiled output. The
per-recipient values reach the template as opaque placeholders that message.py fills in later.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit


from .articles import Article, summarize
from .campaigns import (
    GENERAL,
    Campaign,
    CampaignError,
    Placement,
    build_sections,
    content_warnings,
    country_blocks_for,
    missing_languages,
    placements,
    variant_key,
)
from .config import Config
from .i18n import email_environment, gettext_for
from .images import LAYOUT_WIDTH, LOGO_MAX_HEIGHT, ImageError, fit, image_size
from .interests import Taxonomy

SLOTS = ("greeting", "email", "preferences_url", "unsubscribe_url")
PLACEHOLDER = re.compile(r"NLPH(" + "|".join(SLOTS) + r")NLPH")
TEST_SUBJECT_PREFIX = "[TEST] "
GMAIL_CLIP_BYTES = 102 * 1024
WARN_BYTES = 100 * 1024


def placeholder(slot: str) -> str:
    return f"NLPH{slot}NLPH"


@dataclass
class RenderedVariant:
    """One language x sections variant, fully rendered except for the per-recipient slots."""

    campaign: Campaign
    lang: str
    key: tuple
    subject: str
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)

    def for_test(self) -> "RenderedVariant":
        """The same message for staff: the subject says it is a test."""
        return replace(self, subject=TEST_SUBJECT_PREFIX + self.subject)

    def fill(self, values: dict[str, str]) -> tuple[str, str]:
        """HTML and text with real values, for previews and tests (the sender uses message.py's fast path)."""
        from html import escape

        html = PLACEHOLDER.sub(lambda m: escape(values[m.group(1)]), self.html)
        text = PLACEHOLDER.sub(lambda m: values[m.group(1)], self.text)
        return html, text


def first_name(name: str) -> str:
    """The given name from a stored name: "Ana Lucía Prieto" gives Ana, "Prieto, Ana" gives Ana."""
    name = " ".join((name or "").split())
    if "," in name:
        name = name.split(",", 1)[1].strip()
    return name.split(" ", 1)[0] if name else ""


def greeting(lang: str, name: str) -> str:
    """Hello with the first name when we know it."""
    with_name, without = _greetings(lang)
    given = first_name(name)
    return with_name % {"name": given} if given else without


@functools.lru_cache(maxsize=64)
def _greetings(lang: str) -> tuple[str, str]:
    """Both forms of the greeting in one language: looked up once, not once per message."""
    _ = gettext_for(lang)
    return _("Hello %(name)s,"), _("Hello,")


def archive_url(base_url: str, slug: str, lang: str, article: str | None = None) -> str:
    """The public page of an issue (or of one of its articles) in one language."""
    return f"{base_url.rstrip('/')}/archive/{slug}/{lang}" + (f"/{article}" if article else "")


def image_url(base_url: str, slug: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/archive/{slug}/images/{name}"


def logo_url(base_url: str, logo: Path) -> str:
    return f"{base_url.rstrip('/')}/archive/logo{logo.suffix.lower()}"


class IssueRenderer:
    """Caches rendered variants of one campaign; safe to share by the threads of one sender."""

    def __init__(self, campaign: Campaign, config: Config, taxonomy: Taxonomy) -> None:
        self.campaign = campaign
        self.config = config
        self.taxonomy = taxonomy
        self._variants: dict[tuple, RenderedVariant] = {}
        self._by_profile: dict[tuple, RenderedVariant] = {}

    def variant_for(self, subscriber: dict) -> RenderedVariant:
        """Looked up per message, so remembered per (language, interest mask, country) as stored."""
        key = (subscriber["language"] or "en", subscriber["interests"], subscriber["country"] or "")
        found = self._by_profile.get(key)
        if found is None:
            interests = frozenset(self.taxonomy.slugs_in(key[1]))
            found = self._by_profile[key] = self.variant(key[0], interests, key[2])
        return found

    def variant(self, lang: str, interests: frozenset[str], country: str) -> RenderedVariant:
        key = (lang, variant_key(self.campaign, interests, country))
        cached = self._variants.get(key)
        if cached is None:
            cached = self._variants[key] = self._render(lang, key, interests, country)
        return cached

    def full_issue(self, lang: str) -> RenderedVariant:
        """Every section, no country block: what `campaign build` writes for review."""
        return self.variant(lang, frozenset(self.taxonomy.slugs), "")

    def check(self, langs: tuple[str, ...]) -> None:
        """Render each language's full issue, so that a template or content fault refuses a send before a
        single delivery is queued (RenderError names the template and line)."""
        for lang in langs:
            self.full_issue(lang)

    @property
    def variant_count(self) -> int:
        return len(self._variants)

    @property
    def warnings(self) -> list[str]:
        return list(dict.fromkeys(w for variant in self._variants.values() for w in variant.warnings))

    def section_label(self, interest: str, lang: str) -> str:
        own = self.campaign.section_label(interest, lang)
        if own:
            return own
        return self.taxonomy.label(interest, lang) if interest != GENERAL else gettext_for(lang)("More news")

    def article_view(self, article: Article, lang: str) -> SimpleNamespace:
        """What the templates show of one article in one language; its link is never empty."""
        version = article.version(lang)
        base_url, slug = self.config.base_url, self.campaign.slug
        image = None
        if version.image:
            width, height = fit(self._size(self.campaign.folder / version.image, f"{article.source.name}: image"))
            image = SimpleNamespace(url=image_url(base_url, slug, version.image), width=width, height=height,
                                    alt=version.image_alt)
        return SimpleNamespace(
            title=version.title, url=version.url or archive_url(base_url, slug, lang, article.slug),
            date=version.date, authors=[author.name for author in version.authors], category=version.category,
            summary=summarize(version), image=image, language=version.language,
        )

    def logo(self, lang: str) -> SimpleNamespace | None:
        logo = self.config.logo
        if logo is None:
            return None
        width, height = fit(self._size(logo, "[newsletter] logo"), LAYOUT_WIDTH, LOGO_MAX_HEIGHT)
        return SimpleNamespace(url=logo_url(self.config.base_url, logo), width=width, height=height,
                               alt=self.config.list_name_for(lang))

    @staticmethod
    def _size(path: Path, what: str) -> tuple[int, int]:
        try:
            return image_size(path)
        except ImageError as exc:
            raise RenderError(f"{what}: {exc}") from None

    def _render(self, lang: str, key: tuple, interests: frozenset[str], country: str) -> RenderedVariant:
        campaign = self.campaign
        sections = [
            SimpleNamespace(label=self.section_label(section.interest, lang),
                            articles=[self.article_view(article, lang) for article in section.articles])
            for section in build_sections(campaign, interests, country)
        ]
        context = {
            "lang": lang,
            "list_name": self.config.list_name_for(lang),
            "logo": self.logo(lang),
            "title": campaign.title_for(lang),
            "subject": campaign.subject_for(lang),
            "preheader": campaign.preheader_for(lang),
            "intro": campaign.intro_for(lang),
            "sections": sections,
            "country_blocks": country_blocks_for(campaign, country, lang),
            "sender_name": campaign.sender_name or self.config.sender_name,
            "sender_address": campaign.sender_address or self.config.sender_address,
            "postal_address": self.config.postal_address,
            "base_url": self.config.base_url,
            "recipient": SimpleNamespace(
                web_url=archive_url(self.config.base_url, campaign.slug, lang),
                **{slot: placeholder(slot) for slot in SLOTS},
            ),
        }
        environment = email_environment(self.config.templates_dir, lang)
        html = inline_css(self._template(environment, f"{campaign.template}.html", context))
        text = self._template(environment, f"{campaign.template}.txt", context)
        empty = [link for link in links_in(html) if not link.strip()]
        if empty:
            raise RenderError(f"{campaign.folder}: the {lang} issue has {len(empty)} link(s) with an empty href "
                              f"(template {campaign.template}.html); every link must go somewhere, so nothing "
                              "was sent")
        variant = RenderedVariant(campaign, lang, key, context["subject"], html, text)
        variant.warnings = check_html(html)
        return variant


    def _template(self, environment, name: str, context: dict) -> str:
        """One template rendered; its faults (missing, bad syntax, unknown variable) as one RenderError."""
        import jinja2

        try:
            return environment.get_template(name).render(context)
        except jinja2.TemplateNotFound:
            raise RenderError(f"email template {name!r} not found (campaign {self.campaign.slug}: template = "
                              f"{self.campaign.template!r}); `newsletter templates list` shows the packaged "
                              "ones") from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename or name}, line {exc.lineno}: {exc.message}; fix that line, or "
                              "delete your copy to use the packaged template") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"email template {name}: {exc.message} (in language {context['lang']}); the "
                              "template uses a value the campaign does not give") from None
        except RenderError:
            raise
        except Exception as exc:  # the template's own arithmetic or filter misuse: still the content's fault
            raise RenderError(f"email template {name}{_template_line(exc, name)}: {type(exc).__name__}: {exc} "
                              f"(in language {context['lang']}); fix the template") from None


def _template_line(exc: BaseException, name: str) -> str:
    """', line N' of the template where a render failed (Jinja2 rewrites tracebacks to template lines)."""
    import traceback

    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename.endswith(name)]
    return f", line {frames[-1].lineno}" if frames else ""


class RenderError(CampaignError):
    """A template cannot be rendered for this campaign: a content fault, refused before sending."""


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(value or "" for name, value in attrs if name == "href")


def links_in(html: str) -> list[str]:
    """Every <a href> of a page, as written (empty ones included)."""
    parser = _Links()
    parser.feed(html)
    return parser.links


def unresolved_links(html: str) -> list[str]:
    """Links a reader's mail client cannot follow: empty, in-page, relative, or not web/mail addresses."""
    found = []
    for link in links_in(html):
        if PLACEHOLDER.fullmatch(link.strip()):
            continue
        scheme = urlsplit(link.strip()).scheme.lower()
        if scheme not in ("http", "https", "mailto"):
            found.append(link)
    return list(dict.fromkeys(found))


def inline_css(html: str) -> str:
    """Move the <style> rules into style attributes, as mail clients need; @media rules stay in <style>."""
    import premailer  # with lxml and cssutils, 36 MB: only where a variant is rendered (see prerender.py)

    return premailer.Premailer(
        html, keep_style_tags=False, strip_important=False, disable_validation=True, allow_network=False,
        cssutils_logging_level=logging.CRITICAL, disable_leftover_css=False,
        disable_basic_attributes=["width", "height"],  # keep the pixel sizes written on <img>
    ).transform()


def check_html(html: str) -> list[str]:
    """What a sender should hear about before mailing: clipping by Gmail, images without alt text."""
    warnings = []
    size = len(html.encode("utf-8"))
    if size > WARN_BYTES:
        warnings.append(f"HTML is {size / 1024:.0f} KB; Gmail clips messages over about "
                        f"{GMAIL_CLIP_BYTES // 1024} KB and hides the unsubscribe link with the rest")
    for tag in re.findall(r"<img\b[^>]*>", html, flags=re.I):
        if not re.search(r"\balt\s*=", tag, flags=re.I):
            warnings.append(f"image without alt text: {tag[:80]}")
    for slot in ("unsubscribe_url", "preferences_url"):
        if placeholder(slot) not in html:
            warnings.append(f"the template shows no {slot.replace('_', ' ')}; bulk mail must carry one")
    return warnings


def postal_address_warning(config: Config) -> str | None:
    """Bulk mail must say where the sender can be found (CAN-SPAM; most providers' policies)."""
    if config.postal_address.strip():
        return None
    return (f"postal_address is empty in {config.path or 'newsletter.toml'} [newsletter]: the footer shows no postal "
            "address, which CAN-SPAM and most mail providers require; add the bureau's address")


@dataclass
class BuildReport:
    """What `campaign build` tells the editor, beyond the files it wrote."""

    files: list[Path]
    placements: list[Placement]
    missing: dict[str, list[str]]  # language -> what its readers get in another language
    unresolved: dict[str, list[str]]  # language -> links a mail client cannot follow
    warnings: list[str]


def build_campaign(renderer: IssueRenderer, out_dir: Path, langs: tuple[str, ...], today: date) -> BuildReport:
    """Render the review copies and check the issue: where each article went and why, languages, links."""
    files = render_campaign_files(renderer, out_dir, langs)
    unresolved = {lang: unresolved_links(renderer.full_issue(lang).html) for lang in langs}
    warnings = [*content_warnings(renderer.campaign, today), *renderer.warnings]
    postal = postal_address_warning(renderer.config)
    if postal:
        warnings.append(postal)
    return BuildReport(files, placements(renderer.campaign), missing_languages(renderer.campaign),
                       {lang: links for lang, links in unresolved.items() if links}, warnings)


def render_campaign_files(renderer: IssueRenderer, out_dir: Path, langs: tuple[str, ...]) -> list[Path]:
    """Write each language's full-issue variant (all sections) for review: `campaign build`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for lang in langs:
        variant = renderer.full_issue(lang)
        sample = {"greeting": greeting(lang, "Ana"), "email": "ana@example.org",
                  "preferences_url": "#preferences", "unsubscribe_url": "#unsubscribe"}
        html, text = variant.fill(sample)
        for suffix, content in ((".html", html), (".txt", text)):
            path = out_dir / f"{renderer.campaign.slug}.{lang}{suffix}"
            path.write_text(content, encoding="utf-8")
            written.append(path)
    return written
