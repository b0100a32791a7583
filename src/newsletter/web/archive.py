"""The public archive: every issue and every article as readers got them, their pictures, and an Atom feed.

/archive/<slug>/<lang> is the "view in browser" page of every mail: the whole issue (every section) with a
neutral greeting and no personal links, since anyone can open this address and nothing in it may act on a
subscriber. /archive/<slug>/<lang>/<article> is the whole article, the target of "Read more" for articles
that have no page elsewhere. /archive/feed.xml?lang=xx lists the issues that were sent, newest first.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from xml.etree import ElementTree

from flask import Blueprint, Response, current_app, request, send_file, url_for

from ..articles import IMAGE_SUFFIXES
from ..campaigns import Campaign, CampaignError
from ..clock import parse_utc
from ..db import LANGUAGES
from ..i18n import gettext_for, web_environment
from ..images import MEDIA_TYPES
from ..render import IssueRenderer, archive_url, greeting
from .issues import find_campaign
from .pages import PageError
from .staff_access import is_staff
from .state import current_taxonomy, database, state

blueprint = Blueprint("archive", __name__)

ARCHIVE_POLICY = ("default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
                  "base-uri 'none'; form-action 'none'")
FEED_ENTRIES = 50
ATOM = "http://www.w3.org/2005/Atom"
_ARTICLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
IMAGE_MAX_AGE = 7 * 24 * 3600  # pictures are named by the campaign and file; a week's caching spares the server
ElementTree.register_namespace("", ATOM)  # the feed's elements without a prefix


def was_sent(slug: str) -> bool:
    """At least one delivery of the campaign has been sent (so its readers may open it here)."""
    return database().execute("SELECT EXISTS (SELECT 1 FROM deliveries WHERE campaign = ? AND status = 'sent')",
                              [slug]).fetchone()[0] == 1


def _campaign(slug: str, lang: str, *, for_staff: bool = False) -> Campaign:
    """The campaign behind an archive URL, or the one 404 page for every reason it cannot be shown: only
    issues that went out to someone are public (a draft's or a scheduled issue's name is easy to guess).
    `for_staff`: staff see a draft's pictures too (the preview of a draft shows them from here)."""
    if lang not in LANGUAGES or not (was_sent(slug) or (for_staff and is_staff())):
        raise PageError(404, "not_found")
    try:
        return find_campaign(state().config, slug)
    except CampaignError as error:
        current_app.logger.error("archive page for %s: %s", slug, error)
        raise PageError(404, "not_found") from None


def _renderer(campaign: Campaign) -> IssueRenderer:
    return IssueRenderer(campaign, state().config, current_taxonomy())


@blueprint.get("/archive/<slug>/<lang>")
def issue(slug: str, lang: str) -> Response:
    campaign = _campaign(slug, lang)
    renderer = _renderer(campaign)
    variant = renderer.variant(lang, frozenset(renderer.taxonomy.slugs), "")
    _ = gettext_for(lang, "web")
    subscribe = url_for("subscribe.form", lang=lang)
    html, _plain = variant.fill({
        "greeting": greeting(lang, ""),
        "email": _("each subscriber"),
        "preferences_url": subscribe,
        "unsubscribe_url": subscribe,
    })
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ARCHIVE_POLICY
    return response


@blueprint.get("/archive/<slug>/<lang>/<article>")
def article(slug: str, lang: str, article: str) -> Response:
    """The whole article in the reader's language (or the campaign's default version of it)."""
    campaign = _campaign(slug, lang)
    found = next((item for item in campaign.articles if item.slug == article), None) \
        if _ARTICLE.fullmatch(article) else None
    if found is None:
        raise PageError(404, "not_found", lang=lang)
    renderer = _renderer(campaign)
    version = found.version(lang)
    config = state().config
    environment = web_environment(config.templates_dir, lang)
    html = environment.get_template("archive_article.html").render(
        list_name=config.list_name_for(lang), url_for=url_for, article=version, view=renderer.article_view(found, lang),
        issue_title=campaign.title_for(lang), issue_url=archive_url(config.base_url, slug, lang),
        feed_url=f"{config.base_url.rstrip('/')}{url_for('archive.feed', lang=lang)}",
        subscribe_url=url_for("subscribe.form", lang=lang),
        other_languages=[(other, archive_url(config.base_url, slug, other, found.slug))
                         for other in found.languages() if other != lang],
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ARCHIVE_POLICY
    return response


@blueprint.get("/archive/<slug>/images/<name>")
def image(slug: str, name: str) -> Response:
    """A picture an article of this campaign shows; nothing else in the folder is served."""
    campaign = _campaign(slug, "en", for_staff=True)
    if not any(item.image == name for item in campaign.articles):
        raise PageError(404, "not_found")
    return _picture(campaign.folder / name)


@blueprint.get("/archive/logo<suffix>")
def logo(suffix: str) -> Response:
    configured = state().config.logo
    if configured is None or suffix != configured.suffix.lower() or not configured.is_file():
        raise PageError(404, "not_found")
    return _picture(configured)


def _picture(path) -> Response:
    if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
        raise PageError(404, "not_found")
    response = send_file(path, mimetype=MEDIA_TYPES[path.suffix.lower()], max_age=IMAGE_MAX_AGE, conditional=True)
    response.headers["Cache-Control"] = f"public, max-age={IMAGE_MAX_AGE}"
    return response


@blueprint.get("/archive/feed.xml")
def feed() -> Response:
    """Atom, one feed per language (?lang=es), of the issues that were sent: never drafts or scheduled ones."""
    lang = request.args.get("lang", "en")
    if lang not in LANGUAGES:
        raise PageError(404, "not_found")
    config = state().config
    base = config.base_url.rstrip("/")
    rows = database().execute(
        "SELECT slug, finished_at FROM campaigns WHERE state = 'sent' AND finished_at IS NOT NULL "
        "ORDER BY finished_at DESC LIMIT ?", [FEED_ENTRIES]).fetchall()
    root = ElementTree.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": lang})
    self_url = f"{base}{url_for('archive.feed', lang=lang)}"
    _add(root, "title", config.list_name_for(lang))
    _add(root, "id", self_url)
    _add(root, "link", rel="self", type="application/atom+xml", href=self_url)
    _add(root, "link", rel="alternate", type="text/html", href=f"{base}{url_for('subscribe.form', lang=lang)}")
    _add(root, "updated", _atom_time(parse_utc(rows[0][1]) if rows else datetime(2000, 1, 1, tzinfo=timezone.utc)))
    author = _add(root, "author")
    _add(author, "name", config.sender_name)
    for slug, finished_at in rows:
        try:
            campaign = find_campaign(config, slug)
        except (CampaignError, PageError) as error:  # its folder was removed or broken since: leave it out
            current_app.logger.warning("feed: leaving out %s: %s", slug, error)
            continue
        url = archive_url(config.base_url, slug, lang)
        entry = _add(root, "entry")
        _add(entry, "title", campaign.title_for(lang))
        _add(entry, "id", url)
        _add(entry, "link", rel="alternate", type="text/html", href=url)
        _add(entry, "updated", _atom_time(parse_utc(finished_at)))
        _add(entry, "summary", campaign.preheader_for(lang))
        _add(entry, "content", _contents(campaign, lang), type="html")
    body = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(body, mimetype="application/atom+xml")


def _contents(campaign: Campaign, lang: str) -> str:
    """The issue's intro and its articles' titles with their links, as HTML (escaped once more by the XML)."""
    from html import escape

    renderer = _renderer(campaign)
    items = []
    for article in campaign.articles:
        view = renderer.article_view(article, lang)
        items.append(f'<li><a href="{escape(view.url)}">{escape(view.title)}</a></li>')
    intro = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in campaign.intro_for(lang).split("\n\n") if paragraph)
    return f"{intro}<ul>{''.join(items)}</ul>"


def _add(parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def _atom_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
