"""Reading and changing one subscriber: the calls shared by the CLI, the web pages and the sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from .clock import Clock, SystemClock, utc_iso
from .db import LANGUAGES, STATUSES, transaction
from .interests import Taxonomy
from .normalize import InvalidValue, default_language, normalize_country, normalize_email, normalize_language, \
    normalize_name
from .suppressions import email_hash, is_suppressed, suppress


class SubscriberError(ValueError):
    """A change refused for a reason the person asking can act on."""


@dataclass(frozen=True)
class Consent:
    """What the law asks us to be able to show: when, where, from which address, and what was shown."""

    source: str
    at: datetime | None = None
    ip: str = ""
    user_agent: str = ""
    wording: str = ""


def get(db: sqlite_utils.Database, email: str) -> dict | None:
    try:
        address = normalize_email(email)
    except InvalidValue:
        return None
    rows = list(db.query("SELECT * FROM subscribers WHERE email = ?", [address]))
    return rows[0] if rows else None


def get_by_id(db: sqlite_utils.Database, subscriber_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM subscribers WHERE id = ?", [subscriber_id]))
    return rows[0] if rows else None


def add(db: sqlite_utils.Database, email: str, *, name: str = "", country: str = "", language: str = "",
        interests: list[str] | None = None, status: str = "active", consent: Consent | None = None,
        clock: Clock = SystemClock()) -> dict:
    """Create a subscriber, or update the fields given for an existing one (never a second row).

    For an existing subscriber, empty fields and interests=None leave what is stored; status and consent
    are only set on creation (a re-subscribe goes through opt-in, not through this call)."""
    address = normalize_email(email)
    if is_suppressed(db, address):
        raise SubscriberError(f"{address} is on the suppression list; `newsletter suppressions remove` first")
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    country = normalize_country(country)
    given_language = normalize_language(language)
    mask = Taxonomy.load(db).mask(interests or [])
    now = utc_iso(clock.now())
    consent = consent or Consent(source="manual")
    with transaction(db):
        db.execute(
            """INSERT INTO subscribers (email, name, country, language, interests, status, created_at, updated_at,
                   consent_at, consent_source, consent_ip, consent_user_agent, consent_wording)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(email) DO UPDATE SET name = coalesce(nullif(excluded.name, ''), name),
                   country = coalesce(nullif(excluded.country, ''), country),
                   language = CASE WHEN ? THEN excluded.language ELSE language END,
                   interests = CASE WHEN ? THEN excluded.interests ELSE interests END,
                   updated_at = excluded.updated_at""",
            [address, normalize_name(name), country, given_language or default_language(country), mask, status,
             now, now,
             utc_iso(consent.at) if consent.at else now, consent.source, consent.ip, consent.user_agent,
             consent.wording, bool(given_language), interests is not None],
        )
    return get(db, address)


def set_status(db: sqlite_utils.Database, subscriber_id: int, status: str, *, clock: Clock = SystemClock(),
               paused_until: datetime | None = None) -> None:
    """Change the status; an unsubscribe takes effect for the very next message the sender picks up."""
    if status not in STATUSES:
        raise SubscriberError(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    db.execute(
        "UPDATE subscribers SET status = ?, paused_until = ?, updated_at = ? WHERE id = ?",
        [status, utc_iso(paused_until) if paused_until else None, utc_iso(clock.now()), subscriber_id],
    )


def activate(db: sqlite_utils.Database, subscriber_id: int, consent: Consent, *,
             clock: Clock = SystemClock()) -> None:
    """Confirmed opt-in: active from now on, with the proof of consent (when, from where, with which
    browser, on which form, agreeing to what) kept beside it."""
    with transaction(db):
        db.execute(
            "UPDATE subscribers SET status = 'active', paused_until = NULL, updated_at = ?, consent_at = ?, "
            "consent_source = ?, consent_ip = ?, consent_user_agent = ?, consent_wording = ? WHERE id = ?",
            [utc_iso(clock.now()), utc_iso(consent.at or clock.now()), consent.source, consent.ip,
             consent.user_agent, consent.wording, subscriber_id],
        )


def update_preferences(db: sqlite_utils.Database, subscriber_id: int, *, country: str | None = None,
                       language: str | None = None, interests: list[str] | None = None, name: str | None = None,
                       clock: Clock = SystemClock()) -> dict:
    """Apply the preference centre's form; unknown values are refused, not guessed."""
    current = get_by_id(db, subscriber_id)
    if current is None:
        raise SubscriberError("no such subscriber")
    changes: dict = {"updated_at": utc_iso(clock.now())}
    if country is not None:
        changes["country"] = normalize_country(country)
    if language is not None:
        lang = normalize_language(language)
        if lang not in LANGUAGES:
            raise SubscriberError(f"unsupported language {language!r}")
        changes["language"] = lang
    if interests is not None:
        changes["interests"] = Taxonomy.load(db).mask(interests)
    if name is not None:
        changes["name"] = normalize_name(name)
    assignments = ", ".join(f"{column} = ?" for column in changes)
    db.execute(f"UPDATE subscribers SET {assignments} WHERE id = ?", [*changes.values(), subscriber_id])
    return get_by_id(db, subscriber_id)


def unsubscribe(db: sqlite_utils.Database, subscriber_id: int, *, clock: Clock = SystemClock()) -> None:
    set_status(db, subscriber_id, "unsubscribed", clock=clock)


def erase(db: sqlite_utils.Database, email: str, *, clock: Clock = SystemClock()) -> bool:
    """GDPR erasure: delete every row about the person, keep only a hashed suppression so we never mail them."""
    address = normalize_email(email)
    row = get(db, address)
    with transaction(db):
        if row is not None:
            db.execute("DELETE FROM deliveries WHERE subscriber_id = ?", [row["id"]])
            db.execute("DELETE FROM bounce_events WHERE subscriber_id = ?", [row["id"]])
            db.execute("DELETE FROM subscribers WHERE id = ?", [row["id"]])
        db.execute("DELETE FROM bounce_events WHERE email = ?", [address])
        suppress(db, address, "erased", "erasure request", clock=clock, keep_address=False)
    return row is not None


def export_person(db: sqlite_utils.Database, email: str) -> dict:
    """Everything held about one person (a subject access request), as plain JSON-ready data."""
    address = normalize_email(email)
    row = get(db, address)
    suppression = list(db.query(
        "SELECT reason, source, created_at FROM suppressions WHERE email_hash = ?", [email_hash(address)]
    ))
    if row is None:
        return {"email": address, "subscriber": None, "suppression": suppression[0] if suppression else None}
    taxonomy = Taxonomy.load(db)
    subscriber = dict(row)
    subscriber["interests"] = taxonomy.slugs_in(row["interests"])
    return {
        "email": address,
        "subscriber": subscriber,
        "deliveries": list(db.query(
            "SELECT campaign, status, attempts, last_code, last_text, message_id, created_at, sent_at "
            "FROM deliveries WHERE subscriber_id = ? ORDER BY id", [row["id"]])),
        "bounce_events": list(db.query(
            "SELECT kind, code, diagnostic, source, created_at FROM bounce_events WHERE subscriber_id = ? "
            "ORDER BY id", [row["id"]])),
        "suppression": suppression[0] if suppression else None,
    }


def mark_bounced(db: sqlite_utils.Database, email: str, reason: str, source: str, *,
                 clock: Clock = SystemClock()) -> None:
    """Suppress an address and set the subscriber's status, in one place for every bounce path."""
    status = {"complaint": "complained"}.get(reason, "bounced")
    with transaction(db):
        if is_suppressed(db, email):  # the first cause stays the record; later events are in bounce_events
            return
        db.execute("UPDATE subscribers SET status = ?, updated_at = ? WHERE email = ?",
                   [status, utc_iso(clock.now()), email])
        suppress(db, email, reason, source, clock=clock)
