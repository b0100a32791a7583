"""The delivery log: one row per campaign x subscriber, the single record of what was sent to whom.

Statuses: queued -> sending -> sent | deferred (retried later) | failed | bounced | skipped.
'sending' marks rows a sender has claimed; a sender that starts on a campaign puts rows left 'sending'
by a crashed run back to 'queued' (it holds the campaign's lease, so no one else is sending them).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from typing import IO, NamedTuple

import sqlite_utils

from .clock import Clock, SystemClock, parse_utc, utc_iso
from .db import transaction
from .segments import Segment
from .interests import Taxonomy

STATUSES = ("queued", "sending", "sent", "deferred", "failed", "bounced", "skipped")


class Job(NamedTuple):
    """One claimed delivery, as the sender needs it (a tuple: made by the thousand per second)."""

    id: int
    subscriber_id: int
    email: str
    attempts: int


def queue(db: sqlite_utils.Database, slug: str, segment: Segment, clock: Clock = SystemClock()) -> int:
    """Add a row for every subscriber in the segment who has none yet; queuing twice adds nothing."""
    now = utc_iso(clock.now())
    where, params = segment.where(Taxonomy.load(db))
    with transaction(db):
        db.execute("UPDATE subscribers SET status = 'active', paused_until = NULL, updated_at = ? "
                   "WHERE status = 'paused' AND paused_until IS NOT NULL AND paused_until <= ?", [now, now])
        return db.execute(
            f"""INSERT OR IGNORE INTO deliveries (campaign, subscriber_id, email, status, created_at, updated_at)
                SELECT ?, id, email, 'queued', ?, ? FROM subscribers WHERE {where} ORDER BY id""",
            [slug, now, now, *params],
        ).rowcount


def reset_interrupted(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> int:
    return db.execute(
        "UPDATE deliveries SET status = 'queued', updated_at = ? WHERE campaign = ? AND status = 'sending'",
        [utc_iso(clock.now()), slug],
    ).rowcount


def claim(db: sqlite_utils.Database, slug: str, now: datetime, limit: int) -> list[Job]:
    """Mark up to `limit` due rows 'sending' and return them: new rows first, then retries that are due."""
    with transaction(db):
        rows = db.execute(
            "SELECT id, subscriber_id, email, attempts FROM deliveries WHERE campaign = ? AND status = 'queued' "
            "LIMIT ?", [slug, limit]).fetchall()
        if len(rows) < limit:
            rows += db.execute(
                "SELECT id, subscriber_id, email, attempts FROM deliveries WHERE campaign = ? "
                "AND status = 'deferred' AND next_attempt_at <= ? LIMIT ?",
                [slug, utc_iso(now), limit - len(rows)]).fetchall()
        if rows:
            db.conn.executemany("UPDATE deliveries SET status = 'sending' WHERE id = ?", [(r[0],) for r in rows])
    return [Job(*row) for row in rows]


def recipients(db: sqlite_utils.Database, jobs: list[Job]) -> dict[int, dict]:
    """The subscribers of claimed rows who should still get the campaign, by delivery id, in one query for
    the whole batch. Anyone who unsubscribed, bounced, complained, was erased or suppressed since the
    campaign was queued is missing: their row is skipped."""
    from .suppressions import email_hash

    if not jobs:
        return {}
    db.conn.create_function("email_hash", 1, email_hash, deterministic=True)
    rows = db.execute(
        # CROSS JOIN keeps the batch's rows as the outer loop, so the hash is computed for them alone
        f"SELECT d.id AS delivery_id, s.* FROM deliveries d CROSS JOIN subscribers s ON s.id = d.subscriber_id "
        f"WHERE d.id IN ({', '.join('?' * len(jobs))}) AND s.status = 'active' "
        f"AND NOT EXISTS (SELECT 1 FROM suppressions WHERE email_hash = email_hash(s.email))",
        [job.id for job in jobs])
    columns = [column[0] for column in rows.description]
    found = {}
    for row in rows:
        person = dict(zip(columns, row))
        found[person.pop("delivery_id")] = person
    return found


def audience_version(db: sqlite_utils.Database) -> int:
    """Moves on whenever someone's right to be mailed changes (see db._v7); cheap enough to read per message."""
    return db.execute("SELECT n FROM audience_version").fetchone()[0]


def due(db: sqlite_utils.Database, slug: str, now: datetime) -> bool:
    """Whether claim() would find work now."""
    return db.execute(
        "SELECT EXISTS (SELECT 1 FROM deliveries WHERE campaign = ? AND status = 'queued') OR EXISTS ("
        "SELECT 1 FROM deliveries WHERE campaign = ? AND status = 'deferred' AND next_attempt_at <= ?)",
        [slug, slug, utc_iso(now)]).fetchone()[0] == 1


def release(db: sqlite_utils.Database, job_ids: list[int]) -> None:
    """Give claimed rows back untouched (a stop before they were sent)."""
    db.conn.executemany("UPDATE deliveries SET status = 'queued' WHERE id = ? AND status = 'sending'",
                        [(job_id,) for job_id in job_ids])


def restore(db: sqlite_utils.Database, jobs: list[Job]) -> None:
    """Undo recorded refusals that were the relay's fault: queued again, with the attempts they had before."""
    db.conn.executemany(
        "UPDATE deliveries SET status = 'queued', attempts = ?, next_attempt_at = NULL WHERE id = ? "
        "AND status IN ('deferred', 'failed')", [(job.attempts, job.id) for job in jobs])


class Result(NamedTuple):
    """One attempt's outcome, as record() stores it."""

    job: Job
    status: str
    code: int | None = None
    enhanced: str = ""
    text: str = ""
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    count_attempt: bool = True


_RECORD = """UPDATE deliveries SET status = ?, attempts = attempts + ?, next_attempt_at = ?, last_code = ?,
               last_enhanced = ?, last_text = ?, message_id = coalesce(?, message_id), updated_at = ?,
               sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END
           WHERE id = ?"""


def record(db: sqlite_utils.Database, results: list[Result], *, now: datetime) -> None:
    """Store outcomes, in the caller's transaction: the crash-safety guarantee rests on each being durable
    before the same connection carries its next message."""
    stamp = utc_iso(now)
    db.conn.executemany(_RECORD, [
        (result.status, 1 if result.count_attempt else 0,
         utc_iso(result.next_attempt_at) if result.next_attempt_at else None, result.code, result.enhanced,
         result.text[:500], result.message_id, stamp, result.status, stamp, result.job.id)
        for result in results])


def counts(db: sqlite_utils.Database, slug: str) -> dict[str, int]:
    found = dict(db.execute("SELECT status, count(*) FROM deliveries WHERE campaign = ? GROUP BY status", [slug]))
    return {status: found.get(status, 0) for status in STATUSES}


def next_retry_at(db: sqlite_utils.Database, slug: str) -> datetime | None:
    row = db.execute("SELECT min(next_attempt_at) FROM deliveries WHERE campaign = ? AND status = 'deferred'",
                     [slug]).fetchone()
    return parse_utc(row[0]) if row and row[0] else None


def unfinished(db: sqlite_utils.Database, slug: str) -> int:
    return db.execute("SELECT count(*) FROM deliveries WHERE campaign = ? AND status IN ('queued', 'sending', "
                      "'deferred')", [slug]).fetchone()[0]


def problems(db: sqlite_utils.Database, slug: str, limit: int = 50) -> list[dict]:
    return list(db.query(
        "SELECT email, status, attempts, last_code, last_enhanced, last_text, updated_at FROM deliveries "
        "WHERE campaign = ? AND status IN ('failed', 'bounced', 'deferred') ORDER BY updated_at DESC LIMIT ?",
        [slug, limit]))


def reasons(db: sqlite_utils.Database, slug: str, limit: int = 20) -> list[dict]:
    """Failed, bounced and deferred deliveries grouped by the last reply (code, enhanced code, text), with
    counts, most frequent first: what a summary shows instead of one line per subscriber."""
    return list(db.query(
        "SELECT status, last_code, last_enhanced, last_text, count(*) AS n FROM deliveries "
        "WHERE campaign = ? AND status IN ('failed', 'bounced', 'deferred') "
        "GROUP BY status, last_code, last_enhanced, last_text ORDER BY n DESC, status LIMIT ?", [slug, limit]))


REQUEUE_STATUSES = ("failed", "deferred", "bounced")


@dataclass(frozen=True)
class Requeue:
    """What `requeue` did: rows queued again, and rows left alone because their subscriber is no longer
    active (unsubscribed, bounced, complained, erased) or their address is suppressed."""

    requeued: int
    refused: int
    state: str  # the campaign's state afterwards


def requeue(db: sqlite_utils.Database, slug: str, statuses: tuple[str, ...] = ("failed",),
            since: datetime | None = None, *, note: str = "", clock: Clock = SystemClock()) -> Requeue:
    """Queue deliveries again after an incident (attempts start afresh), record it in `requeues`, and
    reopen a campaign that was marked sent. Nobody who left or is suppressed since is ever requeued."""
    from . import campaign_state
    from .suppressions import email_hash

    unknown = set(statuses) - set(REQUEUE_STATUSES)
    if unknown or not statuses:
        raise ValueError(f"cannot requeue status {', '.join(sorted(unknown)) or '(none)'}; "
                         f"use {', '.join(REQUEUE_STATUSES)}")
    row = campaign_state.get(db, slug)
    if row is None:
        raise campaign_state.StateError(f"campaign {slug!r} has no deliveries; `newsletter campaign list` shows them")
    if row["state"] == "cancelled":
        raise campaign_state.StateError(f"campaign {slug} is cancelled; its deliveries cannot be requeued")
    db.conn.create_function("email_hash", 1, email_hash, deterministic=True)
    now = utc_iso(clock.now())
    chosen = (f"campaign = ? AND status IN ({', '.join('?' * len(statuses))}) "
              "AND (? IS NULL OR updated_at >= ?)")
    params = [slug, *statuses, utc_iso(since) if since else None, utc_iso(since) if since else None]
    still_wanted = ("EXISTS (SELECT 1 FROM subscribers s WHERE s.id = deliveries.subscriber_id "
                    "AND s.status = 'active' AND NOT EXISTS (SELECT 1 FROM suppressions "
                    "WHERE email_hash = email_hash(s.email)))")
    with transaction(db):
        candidates = db.execute(f"SELECT count(*) FROM deliveries WHERE {chosen}", params).fetchone()[0]
        requeued = db.execute(
            f"UPDATE deliveries SET status = 'queued', attempts = 0, next_attempt_at = NULL, updated_at = ? "
            f"WHERE {chosen} AND {still_wanted}", [now, *params]).rowcount
        if requeued and row["state"] == "sent":
            campaign_state.set_state(db, slug, "sending", clock=clock, finished_at=None)
        db.execute("INSERT INTO requeues (campaign, statuses, since, requeued, refused, note, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [slug, ",".join(statuses), utc_iso(since) if since else None, requeued, candidates - requeued,
                    note, now])
    return Requeue(requeued, candidates - requeued, campaign_state.get(db, slug)["state"])


EXPORT_COLUMNS = ["email", "status", "attempts", "last_code", "last_enhanced", "last_text", "message_id",
                  "created_at", "sent_at", "updated_at", "next_attempt_at"]


def export_csv(db: sqlite_utils.Database, slug: str, out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    rows = 0
    for row in db.query(f"SELECT {', '.join(EXPORT_COLUMNS)} FROM deliveries WHERE campaign = ? ORDER BY id",
                        [slug]):
        writer.writerow([row[c] if row[c] is not None else "" for c in EXPORT_COLUMNS])
        rows += 1
    return rows
