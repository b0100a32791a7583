"""Bounce and complaint policy: one place that decides when an address is suppressed, whether the news
came from an SMTP reply during sending, a returned message, or a feedback-loop complaint.

- hard bounce: suppress at once;
- soft bounce: suppress after `soft_threshold` soft bounces within `soft_window_days`, counting only
  those after the subscriber's last successful delivery (a delivery resets the count);
- complaint: unsubscribe at once and mark the subscriber as complained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import sqlite_utils

from .bounceparse import BounceReport, analyse
from .clock import Clock, SystemClock, utc_iso
from .config import BounceSettings, Config
from .deliveries import Job
from .mailboxes import iter_mailbox
from .subscribers import mark_bounced
from .transport import Reply

KINDS = ("hard", "soft", "complaint")


def record_event(db: sqlite_utils.Database, *, kind: str, email: str, delivery_id: int | None,
                 subscriber_id: int | None, code: str, diagnostic: str, source: str,
                 settings: BounceSettings = BounceSettings(), clock: Clock = SystemClock()) -> str | None:
    """Store the event against its delivery and apply the policy; returns the action taken, if any."""
    now = clock.now()
    db.execute(
        "INSERT INTO bounce_events (delivery_id, subscriber_id, email, kind, code, diagnostic, source, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [delivery_id, subscriber_id, email, kind, code, diagnostic[:500], source, utc_iso(now)],
    )
    if kind == "hard":
        if delivery_id is not None:
            db.execute("UPDATE deliveries SET status = 'bounced', last_enhanced = ?, last_text = ?, updated_at = ? "
                       "WHERE id = ?", [code, diagnostic[:500], utc_iso(now), delivery_id])
        mark_bounced(db, email, "hard-bounce", f"{source}: {code} {diagnostic}"[:200], clock=clock)
        return "suppressed (hard bounce)"
    if kind == "complaint":
        mark_bounced(db, email, "complaint", f"{source}: {diagnostic}"[:200], clock=clock)
        return "unsubscribed (complaint)"
    if kind != "soft":
        return None
    count = _soft_count(db, subscriber_id, settings, now)
    if count >= settings.soft_threshold:
        mark_bounced(db, email, "soft-bounce",
                     f"{settings.soft_threshold} soft bounces within {settings.soft_window_days} days", clock=clock)
        return "suppressed (repeated soft bounces)"
    return f"soft bounce {count} of {settings.soft_threshold} logged"


def _soft_count(db: sqlite_utils.Database, subscriber_id: int, settings: BounceSettings, now) -> int:
    """Soft bounces inside the window and after the last delivery that was not itself returned
    (a relay's 250 marks a row 'sent' before the remote server bounces it)."""
    since = utc_iso(now - timedelta(days=settings.soft_window_days))
    last_success = db.execute(
        "SELECT max(sent_at) FROM deliveries d WHERE subscriber_id = ? AND status = 'sent' AND NOT EXISTS ("
        "SELECT 1 FROM bounce_events e WHERE e.subscriber_id = d.subscriber_id AND e.delivery_id = d.id)",
        [subscriber_id]).fetchone()[0]
    if last_success and last_success > since:
        since = last_success
    return db.execute("SELECT count(*) FROM bounce_events WHERE subscriber_id = ? AND kind = 'soft' "
                      "AND created_at >= ?", [subscriber_id, since]).fetchone()[0]


def record_smtp_bounce(db: sqlite_utils.Database, job: Job, reply: Reply, *, clock: Clock = SystemClock()) -> None:
    """A mailbox error (5.1.x, 5.2.1) given while sending: the same policy as a returned message."""
    record_event(db, kind="hard", email=job.email, delivery_id=job.id, subscriber_id=job.subscriber_id,
                 code=reply.enhanced or str(reply.code), diagnostic=reply.text, source="smtp", clock=clock)


@dataclass
class ProcessSummary:
    read: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    unmatched: int = 0


def policy_kind(report: BounceReport) -> str:
    """The kind the policy acts on: a full mailbox (5.2.2) is soft even when reported as permanent."""
    return "soft" if report.kind == "hard" and report.status == "5.2.2" else report.kind


def apply_report(db: sqlite_utils.Database, config: Config, report: BounceReport,
                 clock: Clock = SystemClock()) -> str | None:
    """Map a parsed returned message to its delivery (by VERP) and subscriber, then apply the policy."""
    if report.kind not in KINDS:
        return None
    kind = policy_kind(report)
    row = None
    if report.delivery_id is not None:
        row = db.execute("SELECT id, subscriber_id, email FROM deliveries WHERE id = ?",
                         [report.delivery_id]).fetchone()
    if row is None and report.recipients and not config.bounce_address:  # with VERP only a signed id counts
        row = db.execute("SELECT NULL, id, email FROM subscribers WHERE email = ?",
                         [report.recipients[0].lower()]).fetchone()
    if row is None:
        return None
    delivery_id, subscriber_id, email = row
    return record_event(db, kind=kind, email=email, delivery_id=delivery_id, subscriber_id=subscriber_id,
                        code=report.status, diagnostic=report.diagnostic, source=report.source,
                        settings=config.bounces, clock=clock)


def process_mailbox(db: sqlite_utils.Database, config: Config, mailbox_url: str | None = None,
                    clock: Clock = SystemClock()) -> ProcessSummary:
    """Read returned mail and complaints; each message is removed from the mailbox once recorded."""
    url = mailbox_url or config.bounces.mailbox
    if not url:
        raise ValueError("no bounce mailbox: set [bounces] mailbox in the config or pass --mailbox")
    summary = ProcessSummary()
    secret = config.require_secret()
    for _key, raw, done in iter_mailbox(url):
        summary.read += 1
        report = analyse(raw, bounce_address=config.bounce_address or config.sender_address, secret=secret)
        kind = policy_kind(report)
        summary.by_kind[kind] = summary.by_kind.get(kind, 0) + 1
        action = apply_report(db, config, report, clock)
        if report.kind in KINDS and action is None:
            summary.unmatched += 1
        if action:
            summary.actions.append(f"{', '.join(report.recipients) or '?'}: {action}")
        if report.kind != "unknown":  # a human reply stays in the mailbox for a person to read
            done()
    return summary

