"""POST /hooks/<provider>: bounce, complaint and unsubscribe events from Amazon SES (through SNS), Postmark,
SendGrid and Mailgun, for bureaus that relay through an email service instead of their own MTA.

Each request is verified first (newsletter.webhooks) and refused with nothing changed when its signature,
credentials or timestamp are wrong. A verified event whose id was already handled is a replay: it changes
nothing, and a request made only of replays is answered 409. No CSRF token: providers send none; the
signature is what proves the request. Answers are short JSON for the provider's logs.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ..bounces import apply_provider_event
from ..clock import utc_iso
from ..webhooks import Refused, SnsCertificates, receive, utc_now
from .state import database, state

blueprint = Blueprint("hooks", __name__)
CERTIFICATES_KEY = "newsletter.sns_certificates"
MAX_BODY_BYTES = 4 * 1024 * 1024  # SendGrid batches many events in one request


def use_sns_certificates(app: Flask, certificates: SnsCertificates) -> None:
    """Fetch SNS signing certificates this way (tests serve their own from a local server)."""
    app.extensions[CERTIFICATES_KEY] = certificates


def _certificates() -> SnsCertificates:
    return current_app.extensions.setdefault(CERTIFICATES_KEY, SnsCertificates())


@blueprint.post("/hooks/<provider>")
def hook(provider: str) -> Response:
    request.max_content_length = MAX_BODY_BYTES
    web = state()
    now = utc_now(web.clock.now())
    try:
        received = receive(provider, request.get_data(), dict(request.headers), web.config.webhooks, now,
                           _certificates())
        if received.confirm_url:
            _certificates().confirm(received.confirm_url)
            return _answer(200, "SNS subscription confirmed")
    except Refused as refused:
        current_app.logger.warning("webhook %s refused: %s", provider, refused)
        return _answer(refused.status, str(refused))
    db = database()
    handled = replays = changed = 0
    for event in received.events:
        seen = db.execute("SELECT 1 FROM webhook_events WHERE provider = ? AND event_id = ?",
                          [provider, event.event_id]).fetchone()
        if seen:
            replays += 1
            continue
        outcome = apply_provider_event(db, web.config, provider, event, clock=web.clock)
        # Recorded after the event is applied: a crash in between means the provider's retry applies it again
        # (suppression is idempotent), never that an event is marked handled but lost.
        db.execute("INSERT OR IGNORE INTO webhook_events (provider, event_id, received_at) VALUES (?, ?, ?)",
                   [provider, event.event_id, utc_iso(now)])
        handled += 1
        changed += bool(outcome and outcome.changed)
    if replays and not handled:
        return _answer(409, f"{replays} events already handled: a replay, nothing changed")
    return _answer(200, f"{handled} events handled, {changed} subscribers changed, {replays} replays ignored")


def _answer(status: int, message: str) -> Response:
    response = jsonify({"status": status, "message": message})
    response.status_code = status
    return response
