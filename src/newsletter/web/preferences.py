"""/p/<token>: the preference centre linked from every mail: country, interests, language, a pause, unsubscribe.

The link's token (PREFERENCES, no expiry) says who the visitor is. Every POST must also carry a hidden form
token bound to that subscriber and younger than two hours, so another site cannot change someone's
preferences by making their browser submit a form.
"""

from __future__ import annotations

import calendar
from datetime import datetime

from flask import Blueprint, Response, redirect, request, url_for

from ..clock import parse_utc
from ..db import LANGUAGES
from ..normalize import InvalidValue
from ..signing import PREFERENCES, BadToken
from ..subscribers import SubscriberError, get_by_id, set_status, update_preferences
from ..suppressions import is_suppressed
from ..unsubscribe_requests import FINAL_STATUSES, unsubscribe_subscriber
from .countries import LANGUAGE_NAMES, country_options
from .pages import PageError, render_page
from .subscribe import mail_confirmation
from .unsubscribe import TEST_RECIPIENT_ID, test_link_page
from .state import current_taxonomy, database, state
from .tokens import form_token, form_token_is_valid

blueprint = Blueprint("preferences", __name__)

PAUSE_MONTHS = (1, 2, 3)
DONE_KINDS = ("saved", "paused", "resumed", "unsubscribed", "confirm_sent")
RESUBSCRIBE_SOURCE = "preference centre: subscribe again"


def months_later(moment: datetime, months: int) -> datetime:
    """The same day `months` calendar months on (the month's last day when it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _subscriber(token: str) -> dict:
    try:
        subscriber_id = state().signer.unsign(token, PREFERENCES)
    except BadToken:
        raise PageError(404, "invalid_link") from None
    subscriber = get_by_id(database(), subscriber_id) if isinstance(subscriber_id, int) else None
    if subscriber is None:
        raise PageError(404, "invalid_link")
    return subscriber


def _test_link(token: str) -> bool:
    try:
        return state().signer.unsign(token, PREFERENCES) == TEST_RECIPIENT_ID
    except BadToken:
        return False


def _purpose(subscriber: dict) -> str:
    return f"preferences:{subscriber['id']}"


def _page(token: str, subscriber: dict, *, status: int = 200, done: str = "", error: str = "") -> Response:
    lang = subscriber["language"] or "en"
    taxonomy = current_taxonomy()
    chosen = set(taxonomy.slugs_in(subscriber["interests"]))
    paused_until = parse_utc(subscriber["paused_until"]).date() if subscriber["paused_until"] else None
    return render_page(
        "preferences.html", lang, status=status,
        subscriber=subscriber,
        action_url=url_for(".change", token=token),
        form_token=form_token(state().signer, _purpose(subscriber), state().clock),
        interests=[(slug, taxonomy.label(slug, lang), slug in chosen) for slug in taxonomy.slugs],
        country_options=country_options(lang, subscriber["country"]),
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        pause_months=PAUSE_MONTHS, paused_until=paused_until,
        can_resume=subscriber["status"] in ("paused", "unsubscribed") and not is_suppressed(database(),
                                                                                            subscriber["email"]),
        receiving=subscriber["status"] not in FINAL_STATUSES,
        done=done if done in DONE_KINDS else "", error=error,
    )


def _mail_resubscription(subscriber_id: int) -> None:
    subscriber = get_by_id(database(), subscriber_id)
    if subscriber is None or subscriber["status"] != "unsubscribed":
        return
    taxonomy = current_taxonomy()
    mail_confirmation(subscriber, name=subscriber["name"], country=subscriber["country"],
                      language=subscriber["language"] or "en",
                      interests=taxonomy.slugs_in(subscriber["interests"]), source=RESUBSCRIBE_SOURCE)


@blueprint.get("/p/<token>")
def show(token: str) -> Response:
    if _test_link(token):
        return test_link_page("preferences")
    return _page(token, _subscriber(token), done=request.args.get("done", ""))


@blueprint.post("/p/<token>")
def change(token: str) -> Response:
    if _test_link(token):
        return test_link_page("preferences")
    subscriber = _subscriber(token)
    lang = subscriber["language"] or "en"
    if not form_token_is_valid(state().signer, request.form.get("form_token"), _purpose(subscriber), state().clock):
        raise PageError(400, "bad_form", lang, retry_url=url_for(".show", token=token))
    action = request.form.get("action", "")
    db, clock = database(), state().clock
    if action == "save":
        try:
            update_preferences(db, subscriber["id"], country=request.form.get("country", ""),
                               language=request.form.get("language", lang),
                               interests=request.form.getlist("interests"), name=request.form.get("name", ""),
                               clock=clock)
        except (InvalidValue, SubscriberError):
            return _page(token, subscriber, status=400, error="bad_value")
        done = "saved"
    elif action == "pause" and request.form.get("months", "") in {str(n) for n in PAUSE_MONTHS}:
        if subscriber["status"] not in ("active", "paused"):
            return _page(token, subscriber, status=400, error="cannot_pause")
        until = months_later(clock.now(), int(request.form["months"]))
        set_status(db, subscriber["id"], "paused", paused_until=until, clock=clock)
        done = "paused"
    elif action == "resume":
        if subscriber["status"] not in ("paused", "unsubscribed") or is_suppressed(db, subscriber["email"]):
            return _page(token, subscriber, status=400, error="cannot_resume")
        if subscriber["status"] == "unsubscribed":  # a new subscription: a new opt-in and a new consent record
            state().background.submit(_mail_resubscription, subscriber["id"])
            done = "confirm_sent"
        else:
            set_status(db, subscriber["id"], "active", clock=clock)
            done = "resumed"
    elif action == "unsubscribe":
        unsubscribe_subscriber(db, subscriber, clock=clock)
        done = "unsubscribed"
    else:
        return _page(token, subscriber, status=400, error="bad_value")
    return redirect(url_for(".show", token=token, done=done), code=303)
