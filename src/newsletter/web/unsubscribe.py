"""/u/<token>: the unsubscribe link of every mail, and the target of RFC 8058 one-click POSTs.

GET only asks: mail scanners and link previewers fetch every URL in a message, and must not unsubscribe
anyone by doing so. POST unsubscribes at once, with no cookie, login or CSRF token, because a mailbox
provider's one-click request (body "List-Unsubscribe=One-Click", url-encoded or multipart) brings none.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from ..signing import PREFERENCES, BadToken
from ..unsubscribe_requests import subscriber_for_token, unsubscribe_subscriber
from .pages import PageError, render_page
from .state import database, state

blueprint = Blueprint("unsubscribe", __name__)


def _subscriber(token: str) -> dict:
    try:
        subscriber = subscriber_for_token(database(), state().signer, token)
    except BadToken:
        raise PageError(404, "invalid_link") from None
    if subscriber is None:
        raise PageError(404, "invalid_link")
    return subscriber


@blueprint.get("/u/<token>")
def ask(token: str) -> Response:
    subscriber = _subscriber(token)
    return render_page("unsubscribe.html", subscriber["language"] or "en", subscriber=subscriber,
                       already=subscriber["status"] in ("unsubscribed", "bounced", "complained"),
                       action_url=url_for(".confirm", token=token))


@blueprint.post("/u/<token>")
def confirm(token: str) -> Response:
    subscriber = _subscriber(token)
    request.get_data()  # drain the body (either encoding; its content changes nothing) so keep-alive stays in step
    unsubscribe_subscriber(database(), subscriber, clock=state().clock)
    preferences = state().signer.sign(subscriber["id"], PREFERENCES)
    return render_page("unsubscribed.html", subscriber["language"] or "en", subscriber=subscriber,
                       preferences_url=url_for("preferences.show", token=preferences))
