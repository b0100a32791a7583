"""/u/<token>: the unsubscribe link of every mail, and the target of RFC 8058 one-click POSTs.

GET only asks: mail scanners and link previewers fetch every URL in a message, and must not unsubscribe
anyone by doing so. POST unsubscribes at once, with no cookie, login or CSRF token, because a mailbox
provider's one-click request (body "List-Unsubscribe=One-Click", url-encoded or multipart) brings none.
"""

from __future__ import annotations

from flask import Blueprint, Response, request, url_for

from ..signing import PREFERENCES, UNSUBSCRIBE, BadToken
from ..subscribers import get_by_id
from ..unsubscribe_requests import unsubscribe_subscriber
from .pages import PageError, render_page
from .state import database, state

blueprint = Blueprint("unsubscribe", __name__)

TEST_RECIPIENT_ID = 0  # the id test sends sign their links for (preview.py, sender.send_test)


def _subscriber(token: str) -> dict | None:
    """The subscriber the link names; None for the links of a test mail (signed for id 0, nobody)."""
    try:
        subscriber_id = state().signer.unsign(token, UNSUBSCRIBE)
    except BadToken:
        raise PageError(404, "invalid_link") from None
    if subscriber_id == TEST_RECIPIENT_ID:
        return None
    subscriber = get_by_id(database(), subscriber_id) if type(subscriber_id) is int else None
    if subscriber is None:
        raise PageError(404, "invalid_link")
    return subscriber


def test_link_page(kind: str) -> Response:
    """What the links of a test mail open: a plain statement that they act on nobody."""
    return render_page("test_link.html", "en", kind=kind)


@blueprint.get("/u/<token>")
def ask(token: str) -> Response:
    subscriber = _subscriber(token)
    if subscriber is None:
        return test_link_page("unsubscribe")
    return render_page("unsubscribe.html", subscriber["language"] or "en", subscriber=subscriber,
                       already=subscriber["status"] in ("unsubscribed", "bounced", "complained"),
                       action_url=url_for(".confirm", token=token))


@blueprint.post("/u/<token>")
def confirm(token: str) -> Response:
    subscriber = _subscriber(token)
    request.get_data()  # drain the body (either encoding; its content changes nothing) so keep-alive stays in step
    if subscriber is None:
        return test_link_page("unsubscribe")
    unsubscribe_subscriber(database(), subscriber, clock=state().clock)
    preferences = state().signer.sign(subscriber["id"], PREFERENCES)
    return render_page("unsubscribed.html", subscriber["language"] or "en", subscriber=subscriber,
                       preferences_url=url_for("preferences.show", token=preferences))
