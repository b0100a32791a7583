"""/subscribe and /confirm/<token>: double opt-in from a public form.

Whatever is typed, the visitor sees the same "check your inbox" page: whether the address was new, already
subscribed or suppressed is never shown, so the form cannot be used to find out who reads the newsletter.
A new address is stored as 'pending'; an existing row is not touched until the mailbox owner confirms, so a
stranger cannot change someone's name or interests by typing their address. The choices made on the form
travel inside the signed confirmation token and are applied when the link is used.

The answer does not wait for the database lookups or the mail: they run in the background (background.py),
so the page takes the same time for every address. A confirmation link works once: it carries a digest of
the subscriber's row as it was when the link was made, and any change since (the confirmation itself, a
later unsubscribe or preference change) makes it refuse.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from flask import Blueprint, Response, current_app, request, url_for

from ..db import LANGUAGES
from ..i18n import gettext_for, negotiate
from ..interests import Taxonomy
from ..normalize import InvalidValue, normalize_country, normalize_email, normalize_name
from ..signing import CONFIRM, PREFERENCES, BadToken
from ..subscribers import Consent, SubscriberError, activate, add, get, get_by_id, update_preferences
from ..suppressions import email_hash, is_suppressed
from .client import client_address
from .confirmation import confirmation_message, send_confirmation
from .countries import LANGUAGE_NAMES, country_options
from .pages import PageError, render_page, visitor_language
from .state import current_taxonomy, database, state
from .tokens import CONFIRM_MAX_AGE, read_dated, sign_dated

blueprint = Blueprint("subscribe", __name__)

HONEYPOT = "website"  # hidden from people by CSS; a bot filling every field fills it too
FORM_SOURCE = "web form /subscribe"


def consent_wording(lang: str) -> str:
    """The sentence beside the consent box, exactly as shown: it is stored as the record of what was agreed to."""
    _ = gettext_for(lang, "web")
    return _("Yes, please send %(list_name)s to this address. I can unsubscribe at any time with the link "
             "in every issue.") % {"list_name": state().config.list_name_for(lang)}


@dataclass
class Submission:
    email: str = ""
    name: str = ""
    country: str = ""
    language: str = "en"
    interests: list[str] = field(default_factory=list)
    consent: bool = False
    errors: set[str] = field(default_factory=set)  # names of the fields to correct


def _read_form(taxonomy: Taxonomy, lang: str) -> Submission:
    form = request.form
    entry = Submission(email=form.get("email", "").strip(), name=form.get("name", ""),
                       country=form.get("country", ""), language=lang,
                       interests=[slug for slug in form.getlist("interests") if slug in taxonomy.bits],
                       consent=form.get("consent") == "yes")
    for name, check in (("email", normalize_email), ("name", normalize_name), ("country", normalize_country)):
        try:
            setattr(entry, name, check(getattr(entry, name)))
        except InvalidValue:
            entry.errors.add(name)
    if not entry.consent:
        entry.errors.add("consent")
    return entry


def _form_page(lang: str, entry: Submission, status: int = 200) -> Response:
    taxonomy = current_taxonomy()
    return render_page(
        "subscribe.html", lang, status=status, entry=entry, honeypot=HONEYPOT,
        action_url=url_for(".submit", lang=lang),
        interests=[(slug, taxonomy.label(slug, lang), slug in entry.interests) for slug in taxonomy.slugs],
        country_options=country_options(lang, entry.country),
        languages=[(code, LANGUAGE_NAMES[code]) for code in LANGUAGES],
        consent_wording=consent_wording(lang),
    )


@blueprint.get("/subscribe")
def form() -> Response:
    lang = visitor_language()
    return _form_page(lang, Submission(language=lang))


@blueprint.post("/subscribe")
def submit() -> Response:
    chosen = request.form.get("language", "")
    lang = chosen if chosen in LANGUAGES else visitor_language()
    if request.form.get(HONEYPOT):
        return render_page("subscribe_done.html", lang)
    entry = _read_form(current_taxonomy(), lang)
    if entry.errors:
        return _form_page(lang, entry, status=400)
    if not state().subscribe_throttle.allow(f"address:{entry.email}", f"ip:{client_address()}"):
        raise PageError(429, "too_many", lang)
    state().background.submit(_start_confirmation, entry, client_address(), request.user_agent.string)
    return render_page("subscribe_done.html", lang)


def _start_confirmation(entry: Submission, ip: str, user_agent: str) -> None:
    """Store a new address as pending and mail the confirmation link; a suppressed address gets nothing."""
    db, clock = database(), state().clock
    if is_suppressed(db, entry.email):
        return
    subscriber = get(db, entry.email)
    if subscriber is None:
        consent = Consent(source=FORM_SOURCE + " (not yet confirmed)", at=clock.now(), ip=ip,
                          user_agent=user_agent, wording=consent_wording(entry.language))
        try:
            subscriber = add(db, entry.email, name=entry.name, country=entry.country, language=entry.language,
                             interests=entry.interests, status="pending", consent=consent, clock=clock)
        except SubscriberError:  # suppressed since the check above
            return
    mail_confirmation(subscriber, name=entry.name, country=entry.country, language=entry.language,
                      interests=entry.interests, source=FORM_SOURCE)


def mail_confirmation(subscriber: dict, *, name: str, country: str, language: str, interests: list[str],
                      source: str) -> None:
    """Mail `subscriber` a link that, once used, applies these choices and records a new consent (with the
    wording shown on the page, and `source`). For the subscribe form and "subscribe again"."""
    config, clock = state().config, state().clock
    choices = {"i": subscriber["id"], "h": _address_check(subscriber["email"]), "n": name, "c": country,
               "l": language, "t": interests, "w": consent_wording(language), "src": source,
               "r": row_digest(subscriber)}
    token = sign_dated(state().signer, choices, CONFIRM, clock)
    confirm_url = f"{config.base_url.rstrip('/')}/confirm/{token}"
    data = confirmation_message(config, lang=language, name=name, address=subscriber["email"],
                                confirm_url=confirm_url, clock=clock)
    reply = send_confirmation(config, subscriber["email"], data)
    if reply.outcome != "sent":
        current_app.logger.error("confirmation mail to subscriber %s not sent: %s %s %s",
                                 subscriber["id"], reply.code, reply.enhanced, reply.text)


_ROW_FIELDS = ("status", "name", "country", "language", "interests", "paused_until", "consent_at",
               "consent_source")


def row_digest(subscriber: dict) -> str:
    """What a confirmation link remembers of the row it was made for: using the link changes the row, and
    so does anything the person does later, so an old link can never undo those changes."""
    text = "\x1f".join(str(subscriber[name]) for name in _ROW_FIELDS)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _confirmation(token: str) -> tuple[dict, dict]:
    """(the choices in the token, the subscriber) or a problem page: invalid, or expired with an offer to retry."""
    try:
        dated = read_dated(state().signer, token, CONFIRM, state().clock)
    except BadToken:
        raise PageError(404, "invalid_link") from None
    choices = dated.value
    if not isinstance(choices, dict) or not isinstance(choices.get("i"), int):
        raise PageError(404, "invalid_link")
    lang = negotiate(choices.get("l"))
    if dated.age_seconds > CONFIRM_MAX_AGE:
        raise PageError(400, "expired_confirmation", lang)
    subscriber = get_by_id(database(), choices["i"])
    if (subscriber is None or choices.get("h") != _address_check(subscriber["email"])
            or is_suppressed(database(), subscriber["email"])):
        raise PageError(400, "expired_confirmation", lang)
    if not hmac.compare_digest(str(choices.get("r", "")), row_digest(subscriber)):
        raise PageError(400, "used_confirmation", lang)
    return choices, subscriber


def _address_check(email: str) -> str:
    """Binds a token to the address it was mailed to: a row id can be reused after a subscriber is erased."""
    return email_hash(email)[:16]


@blueprint.get("/confirm/<token>")
def ask_confirmation(token: str) -> Response:
    """Only shows a button: mail scanners open every link, and a scanner must not give consent for anyone."""
    choices, subscriber = _confirmation(token)
    return render_page("confirm.html", negotiate(choices.get("l")), subscriber=subscriber,
                       action_url=url_for(".confirm", token=token))


@blueprint.post("/confirm/<token>")
def confirm(token: str) -> Response:
    choices, subscriber = _confirmation(token)
    db, clock = database(), state().clock
    lang = negotiate(choices.get("l"))
    try:
        update_preferences(db, subscriber["id"], name=choices.get("n", ""), country=choices.get("c", ""),
                           language=lang, interests=choices.get("t", []), clock=clock)
    except (InvalidValue, SubscriberError):  # the taxonomy changed since the form was sent: keep what is stored
        pass
    source = str(choices.get("src") or FORM_SOURCE)
    consent = Consent(source=source + ", confirmed by the emailed link", at=clock.now(),
                      ip=client_address(), user_agent=request.user_agent.string,
                      wording=str(choices.get("w", "")))
    activate(db, subscriber["id"], consent, clock=clock)
    return render_page("confirmed.html", lang, subscriber=get_by_id(db, subscriber["id"]),
                       preferences_url=url_for("preferences.show",
                                               token=state().signer.sign(subscriber["id"], PREFERENCES)))
