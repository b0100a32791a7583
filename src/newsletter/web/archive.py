"""/archive/<slug>/<lang>: the "view in browser" page of every mail, the same for everyone.

It shows the whole issue (every section) with a neutral greeting and no personal links: anyone can open
this address, so nothing in it may act on a subscriber. Only issues that went out to someone are shown:
a draft or a scheduled issue (whose name is easy to guess) gets the same 404 as an unknown name.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, url_for

from ..campaigns import Campaign, CampaignError
from ..db import LANGUAGES
from ..i18n import gettext_for
from ..render import IssueRenderer, greeting
from .issues import find_campaign
from .pages import PageError
from .state import current_taxonomy, database, state

blueprint = Blueprint("archive", __name__)

ARCHIVE_POLICY = ("default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
                  "base-uri 'none'; form-action 'none'")


def was_sent(slug: str) -> bool:
    """At least one delivery of the campaign has been sent (so its readers may open it here)."""
    return database().execute("SELECT EXISTS (SELECT 1 FROM deliveries WHERE campaign = ? AND status = 'sent')",
                              [slug]).fetchone()[0] == 1


def published_campaign(slug: str, lang: str) -> Campaign:
    """The campaign behind an archive URL, or the one 404 page for every reason it cannot be shown."""
    if lang not in LANGUAGES or not was_sent(slug):
        raise PageError(404, "not_found")
    try:
        return find_campaign(state().config, slug)
    except CampaignError as error:
        current_app.logger.error("archive page for %s: %s", slug, error)
        raise PageError(404, "not_found") from None


@blueprint.get("/archive/<slug>/<lang>")
def issue(slug: str, lang: str) -> Response:
    config = state().config
    campaign = published_campaign(slug, lang)
    taxonomy = current_taxonomy()
    variant = IssueRenderer(campaign, config, taxonomy).variant(lang, frozenset(taxonomy.slugs), "")
    _ = gettext_for(lang, "web")
    html, _plain = variant.fill({
        "greeting": greeting(lang, ""),
        "email": _("each subscriber"),
        "preferences_url": url_for("subscribe.form", lang=lang),
        "unsubscribe_url": "#",
    })
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ARCHIVE_POLICY
    return response
