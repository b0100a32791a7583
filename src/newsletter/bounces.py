"""Bounce and complaint policy: one place that decides when an address is suppressed, whether the news
came from an SMTP reply during sending, a returned message, a feedback-loop complaint or a provider's
webhook.

- hard bounce (final): suppress at once;
- soft bounce: suppress after `soft_threshold` soft bounces within `soft_window_days`, counting only
  those after the subscriber's last successful delivery (a delivery resets the count);
- complaint: unsubscribe at once and mark the subscriber as complained.

A returned message is tied to its subscriber by the strongest clue it carries: the signed VERP
address, else a signed unsubscribe token in the returned copy, else its Message-ID in the delivery
log, else (when `match_plain_address` allows) a recipient address that is a subscriber. A plain address
can be forged by anyone, so it acts only on final (hard) failures and complaints; a soft bounce matched
that way is logged but never counts towards suppression. A report that matches nobody is kept in
`bounce_reviews` (and filed in the review folder) instead of vanishing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

import sqlite_utils

from .bounceparse import AUTOREPLY, COMPLAINT, HARD, NOTICE, SOFT, BounceReport, Failure, analyse
from .clock import Clock, SystemClock, utc_iso
from .config import BounceSettings, Config
from .deliveries import Job
from .mailboxes import file_reviewed, iter_mailbox
from .signing import UNSUBSCRIBE, BadToken, Signer
from .subscribers import get_by_id, mark_bounced
from .suppressions import is_suppressed
from .transport import Reply
from .unsubscribe_requests import unsubscribe_subscriber

KINDS = (HARD, SOFT, COMPLAINT)
ADDRESS = "address"  # matched_by of an event tied to its subscriber by a plain address only


@dataclass
class Outcome:
    """What one event did to one subscriber; changed is False when their state stayed as it was."""

    email: str
    action: str
    changed: bool

    def line(self) -> str:
        return f"{self.email}: {self.action}"


def record_event(db: sqlite_utils.Database, *, kind: str, email: str, delivery_id: int | None,
                 subscriber_id: int | None, code: str, diagnostic: str, source: str, matched_by: str = "",
                 settings: BounceSettings = BounceSettings(), clock: Clock = SystemClock()) -> Outcome | None:
    """Store the event against its delivery and apply the policy; returns what it did, if anything."""
    now = clock.now()
    db.execute(
        "INSERT INTO bounce_events (delivery_id, subscriber_id, email, kind, code, diagnostic, source, matched_by, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [delivery_id, subscriber_id, email, kind, code, diagnostic[:500], source, matched_by, utc_iso(now)],
    )
    already = is_suppressed(db, email)
    if kind == HARD:
        if delivery_id is not None:
            db.execute("UPDATE deliveries SET status = 'bounced', last_enhanced = ?, last_text = ?, updated_at = ? "
                       "WHERE id = ?", [code, diagnostic[:500], utc_iso(now), delivery_id])
        mark_bounced(db, email, "hard-bounce", f"{source}: {code} {diagnostic}"[:200], clock=clock)
        return Outcome(email, "suppressed (hard bounce)" if not already else "hard bounce logged (already suppressed)",
                       not already)
    if kind == COMPLAINT:
        mark_bounced(db, email, "complaint", f"{source}: {diagnostic}"[:200], clock=clock)
        return Outcome(email, "unsubscribed (complaint)" if not already else "complaint logged (already suppressed)",
                       not already)
    if kind != SOFT:
        return None
    if matched_by == ADDRESS:
        return Outcome(email, "soft bounce logged (matched by address only; not counted)", False)
    count = _soft_count(db, subscriber_id, settings, now)
    if count >= settings.soft_threshold and not already:
        mark_bounced(db, email, "soft-bounce",
                     f"{settings.soft_threshold} soft bounces within {settings.soft_window_days} days", clock=clock)
        return Outcome(email, f"suppressed ({count} soft bounces)", True)
    return Outcome(email, f"soft bounce {count} of {settings.soft_threshold} logged", False)


def _soft_count(db: sqlite_utils.Database, subscriber_id: int | None, settings: BounceSettings, now) -> int:
    """Soft bounces inside the window and after the last delivery that was not itself returned
    (a relay's 250 marks a row 'sent' before the remote server bounces it). Events matched by a plain
    address only do not count: anyone can forge those."""
    since = utc_iso(now - timedelta(days=settings.soft_window_days))
    last_success = db.execute(
        "SELECT max(sent_at) FROM deliveries d WHERE subscriber_id = ? AND status = 'sent' AND NOT EXISTS ("
        "SELECT 1 FROM bounce_events e WHERE e.subscriber_id = d.subscriber_id AND e.delivery_id = d.id)",
        [subscriber_id]).fetchone()[0]
    if last_success and last_success > since:
        since = last_success
    return db.execute("SELECT count(*) FROM bounce_events WHERE subscriber_id = ? AND kind = 'soft' "
                      "AND matched_by != ? AND created_at >= ?", [subscriber_id, ADDRESS, since]).fetchone()[0]


def record_smtp_bounce(db: sqlite_utils.Database, job: Job, reply: Reply, *, clock: Clock = SystemClock()) -> None:
    """A mailbox error (5.1.x, 5.2.1) given while sending: the same policy as a returned message."""
    record_event(db, kind=HARD, email=job.email, delivery_id=job.id, subscriber_id=job.subscriber_id,
                 code=reply.enhanced or str(reply.code), diagnostic=reply.text, source="smtp", matched_by="smtp",
                 clock=clock)


@dataclass
class Match:
    """The delivery (when known) and subscriber a report is about, and the clue that tied them."""

    delivery_id: int | None
    subscriber_id: int
    email: str
    matched_by: str


@dataclass
class ReportResult:
    outcomes: list[Outcome] = field(default_factory=list)
    unmatched: str = ""  # why nothing could be done, when the report should have been about someone


def identify(db: sqlite_utils.Database, report: BounceReport, signer: Signer) -> Match | None:
    """The delivery a report is about, by the clues nobody can forge without our key or our mail."""
    if report.delivery_id is not None:
        row = db.execute("SELECT id, subscriber_id, email FROM deliveries WHERE id = ?",
                         [report.delivery_id]).fetchone()
        if row is not None:
            return Match(*row, "verp")
    for token in report.unsubscribe_tokens:
        try:
            subscriber_id = signer.unsign(token, UNSUBSCRIBE)
        except BadToken:
            continue
        if not isinstance(subscriber_id, int):
            continue
        row = db.execute("SELECT id, email FROM subscribers WHERE id = ?", [subscriber_id]).fetchone()
        if row is not None:
            return Match(_delivery_of(db, report.message_ids, row[0]), row[0], row[1], "token")
    for message_id in report.message_ids:
        row = by_message_id(db, message_id)
        if row is not None:
            return Match(*row, "message-id")
    return None


def by_message_id(db: sqlite_utils.Database, message_id: str) -> tuple[int, int, str] | None:
    """(delivery id, subscriber id, address) of the delivery that went out with this Message-ID."""
    return db.execute("SELECT id, subscriber_id, email FROM deliveries WHERE message_id = ?",
                      [message_id.strip()]).fetchone()


def _delivery_of(db: sqlite_utils.Database, message_ids: list[str], subscriber_id: int) -> int | None:
    for message_id in message_ids:
        row = by_message_id(db, message_id)
        if row is not None and row[1] == subscriber_id:
            return row[0]
    return None


def apply_report(db: sqlite_utils.Database, config: Config, report: BounceReport, *, signer: Signer,
                 clock: Clock = SystemClock()) -> ReportResult:
    """Tie a parsed returned message to its subscriber(s), then apply the policy to each one."""
    if report.kind in (AUTOREPLY, NOTICE):
        return ReportResult()
    if report.kind not in KINDS:
        return ReportResult(unmatched=_unreadable_reason(report))
    match = identify(db, report, signer)
    if match is not None:
        failure = _failure_for(report, match.email)
        outcome = record_event(db, kind=failure.kind, email=match.email, delivery_id=match.delivery_id,
                               subscriber_id=match.subscriber_id, code=failure.status,
                               diagnostic=failure.diagnostic, source=report.source, matched_by=match.matched_by,
                               settings=config.bounces, clock=clock)
        return ReportResult([outcome] if outcome else [])
    if report.forged_verp:
        return ReportResult(unmatched="its VERP tag does not verify (forged, or signed with an earlier secret key)")
    named = _named_failures(report)
    if not config.bounces.match_plain_address:
        return ReportResult(unmatched="no VERP address, unsubscribe token or known Message-ID, and "
                                      "match_plain_address is off")
    outcomes = []
    for failure in named:
        row = db.execute("SELECT id, email FROM subscribers WHERE email = ?", [failure.recipient.lower()]).fetchone()
        if row is None:
            continue
        outcome = record_event(db, kind=failure.kind, email=row[1], delivery_id=None, subscriber_id=row[0],
                               code=failure.status, diagnostic=failure.diagnostic, source=report.source,
                               matched_by=ADDRESS, settings=config.bounces, clock=clock)
        if outcome:
            outcomes.append(outcome)
    if outcomes:
        return ReportResult(outcomes)
    named_addresses = ", ".join(f.recipient for f in named)
    return ReportResult(unmatched=f"names no delivery or subscriber we know ({named_addresses or 'no recipient found'})")


def _failure_for(report: BounceReport, email: str) -> Failure:
    """The failure of this subscriber's address, else the worst one (an alias that forwards elsewhere)."""
    if report.kind == COMPLAINT:
        return Failure(email, COMPLAINT, report.status, report.diagnostic)
    own = [f for f in report.failures if f.recipient.lower() == email.lower()]
    for candidates in (own, report.failures):
        for kind in (HARD, SOFT):
            found = next((f for f in candidates if f.kind == kind), None)
            if found is not None:
                return found
    return Failure(email, report.kind, report.status, report.diagnostic)


def _named_failures(report: BounceReport) -> list[Failure]:
    if report.kind == COMPLAINT:
        return [Failure(address, COMPLAINT, "", report.diagnostic) for address in report.recipients]
    return [f for f in report.failures if f.recipient]


def _unreadable_reason(report: BounceReport) -> str:
    if report.source == "error":
        return report.diagnostic
    if report.diagnostic == "report lists no failure":
        return "a delivery-status report that lists no failure"
    if report.source == "arf":
        return f"a feedback report that is not a complaint ({report.diagnostic})"
    return "not a bounce or complaint we can read (a person's reply, or a new kind of report)"


def apply_provider_event(db: sqlite_utils.Database, config: Config, provider: str, event, *,
                         clock: Clock = SystemClock()) -> Outcome | None:
    """One verified event from a provider's webhook (webhooks.ProviderEvent), through the same policy and
    into the same bounce_events. The provider vouches for the address, so it is trusted like VERP: by the
    Message-ID we sent when the provider reports it, else by the address. None when it is nobody we know."""
    row = by_message_id(db, event.message_id) if event.message_id else None
    if row is None or row[2].lower() != event.email.lower():
        found = db.execute("SELECT id, email FROM subscribers WHERE email = ?", [event.email.strip().lower()]).fetchone()
        if found is None:
            return None
        row = (None, found[0], found[1])
    delivery_id, subscriber_id, email = row
    if event.kind == "unsubscribe":
        db.execute("INSERT INTO bounce_events (delivery_id, subscriber_id, email, kind, code, diagnostic, source, "
                   "matched_by, created_at) VALUES (?, ?, ?, 'unsubscribe', '', ?, ?, 'webhook', ?)",
                   [delivery_id, subscriber_id, email, event.diagnostic[:500], provider, utc_iso(clock.now())])
        subscriber = get_by_id(db, subscriber_id)
        changed = subscriber is not None and unsubscribe_subscriber(db, subscriber, clock=clock)
        return Outcome(email, "unsubscribed (provider)" if changed else "unsubscribe logged (already not mailed)",
                       changed)
    return record_event(db, kind=event.kind, email=email, delivery_id=delivery_id, subscriber_id=subscriber_id,
                        code=event.status, diagnostic=event.diagnostic, source=provider, matched_by="webhook",
                        settings=config.bounces, clock=clock)


@dataclass
class ProcessSummary:
    read: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)  # one line per subscriber whose state changed
    logged: int = 0  # events recorded that changed no one's state
    unmatched: int = 0  # reports kept for review


def process_mailbox(db: sqlite_utils.Database, config: Config, mailbox_url: str | None = None,
                    clock: Clock = SystemClock()) -> ProcessSummary:
    """Read returned mail and complaints. A handled message is filed as processed once recorded; one that
    matched nobody is recorded in bounce_reviews and filed in the review folder (or left in place)."""
    url = mailbox_url or config.bounces.mailbox
    if not url:
        raise ValueError("no bounce mailbox: set [bounces] mailbox in the config or pass --mailbox")
    summary = ProcessSummary()
    secret = config.require_secret()
    signer = Signer(secret)
    bounce_address = config.bounce_address or config.sender_address
    for key, raw, remove in iter_mailbox(url):
        summary.read += 1
        report = analyse(raw, bounce_address=bounce_address, secret=secret)
        summary.by_kind[report.kind] = summary.by_kind.get(report.kind, 0) + 1
        result = apply_report(db, config, report, signer=signer, clock=clock)
        _count(summary, result)
        digest = hashlib.sha256(raw).hexdigest()
        if result.unmatched:
            keep_for_review(db, digest, key, report, result.unmatched, clock)
            remove(config.bounces.review_folder)  # "" leaves it in place
            continue
        db.execute("DELETE FROM bounce_reviews WHERE digest = ?", [digest])  # left in place earlier, handled now
        remove()
    return summary


def _count(summary: ProcessSummary, result: ReportResult) -> None:
    summary.actions += [outcome.line() for outcome in result.outcomes if outcome.changed]
    summary.logged += sum(1 for outcome in result.outcomes if not outcome.changed)
    summary.unmatched += bool(result.unmatched)


def keep_for_review(db: sqlite_utils.Database, digest: str, key: str, report: BounceReport, reason: str,
                    clock: Clock) -> None:
    """One row per message, however often it is read: what a person needs to decide about it."""
    now = utc_iso(clock.now())
    recipients = ", ".join(report.recipients)
    db.execute(
        "INSERT INTO bounce_reviews (digest, mailbox_key, sender, subject, recipients, kind, reason, message, "
        "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(digest) DO UPDATE SET "
        "kind = excluded.kind, reason = excluded.reason, recipients = excluded.recipients, last_seen = excluded.last_seen",
        [digest, key, report.sender[:300], report.subject[:300], recipients[:1000], report.kind, reason[:500],
         report.relevant, now, now])


def reprocess_reviews(db: sqlite_utils.Database, config: Config, clock: Clock = SystemClock()) -> ProcessSummary:
    """Run every report kept for review through the policy again (after a config change, an import, a fix):
    a row that now matches is handled and removed, and its message filed from the review folder as processed."""
    summary = ProcessSummary()
    secret = config.require_secret()
    signer = Signer(secret)
    bounce_address = config.bounce_address or config.sender_address
    ids = [row[0] for row in db.execute("SELECT id FROM bounce_reviews ORDER BY id")]
    for review_id in ids:
        row = db.execute("SELECT digest, mailbox_key, message FROM bounce_reviews WHERE id = ?", [review_id]).fetchone()
        if row is None:
            continue
        digest, key, message = row
        summary.read += 1
        report = analyse(message, bounce_address=bounce_address, secret=secret)
        summary.by_kind[report.kind] = summary.by_kind.get(report.kind, 0) + 1
        result = apply_report(db, config, report, signer=signer, clock=clock)
        _count(summary, result)
        if result.unmatched:
            keep_for_review(db, digest, key, report, result.unmatched, clock)
            continue
        db.execute("DELETE FROM bounce_reviews WHERE id = ?", [review_id])
        if config.bounces.mailbox and config.bounces.review_folder:
            file_reviewed(config.bounces.mailbox, config.bounces.review_folder, key)
    return summary


def unmatched_reports(db: sqlite_utils.Database):
    """The reports kept for review, oldest first, streamed."""
    return db.query("SELECT id, first_seen, last_seen, sender, subject, recipients, kind, reason FROM bounce_reviews "
                    "ORDER BY id")
