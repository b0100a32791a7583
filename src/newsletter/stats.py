"""The figures behind the staff pages: live progress, a campaign's report, the audience over time.

Every figure is one SQL aggregate over an index (see db._v3), never a Python loop over rows, so that a
page stays fast with a million subscribers and a million deliveries (benchmarks/charts.py measures it).
Timestamps are the ISO text of clock.utc_iso, so a month is substr(t, 1, 7) and a minute substr(t, 1, 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlite_utils

from . import deliveries
from .clock import parse_utc, utc_iso
from .db import STATUSES, segment_counts_live
from .interests import Taxonomy

LOST_STATUSES = ("unsubscribed", "bounced", "complained")
OUTCOMES_OVER_TIME = ("sent", "deferred", "failed", "bounced")
RATE_WINDOW = timedelta(minutes=1)
MAX_TIMELINE_BUCKETS = 120


@dataclass
class Progress:
    """A campaign's deliveries right now, read from the delivery log (not from the sending process)."""

    counts: dict[str, int]
    sent_last_minute: int
    total: int
    done: int  # sent, failed, bounced or skipped: nothing more will happen to them
    rate_per_second: float
    eta_seconds: float | None


def progress(db: sqlite_utils.Database, slug: str, now: datetime) -> Progress:
    counts = deliveries.counts(db, slug)
    recent = db.execute(
        "SELECT count(*) FROM deliveries WHERE campaign = ? AND status = 'sent' AND updated_at > ?",
        [slug, utc_iso(now - RATE_WINDOW)]).fetchone()[0]
    total = sum(counts.values())
    done = counts["sent"] + counts["failed"] + counts["bounced"] + counts["skipped"]
    rate = recent / RATE_WINDOW.total_seconds()
    remaining = total - done
    return Progress(counts, recent, total, done, rate, remaining / rate if rate > 0 and remaining else None)


@dataclass
class Timeline:
    """Deliveries per time bucket and outcome; bucket_minutes grows with the length of the send so that a
    chart never has more than MAX_TIMELINE_BUCKETS points."""

    bucket_minutes: int
    labels: list[str]  # bucket starts, "YYYY-MM-DD HH:MM" UTC
    series: dict[str, list[int]]  # outcome -> count per bucket


def timeline(db: sqlite_utils.Database, slug: str) -> Timeline:
    marks = ", ".join("?" * len(OUTCOMES_OVER_TIME))
    first, last = db.execute(
        f"SELECT min(updated_at), max(updated_at) FROM deliveries WHERE campaign = ? AND status IN ({marks})",
        [slug, *OUTCOMES_OVER_TIME]).fetchone()
    if first is None:
        return Timeline(1, [], {outcome: [] for outcome in OUTCOMES_OVER_TIME})
    start, end = parse_utc(first).replace(second=0), parse_utc(last)
    minutes = int((end - start).total_seconds() // 60) + 1
    bucket = next(size for size in (1, 2, 5, 10, 15, 30, 60, 120, 240, 360, 720, 1440, 10080, 10 ** 9)
                  if minutes / size <= MAX_TIMELINE_BUCKETS)
    # Grouped by the stamp itself, the index's own order: no sort, and at most one row per second and outcome
    # (a send takes longer than it has seconds only at thousands of messages a second); minutes are then
    # put in buckets here.
    rows = db.execute(
        f"""SELECT status, updated_at, count(*) FROM deliveries WHERE campaign = ? AND status IN ({marks})
            GROUP BY status, updated_at""", [slug, *OUTCOMES_OVER_TIME]).fetchall()
    slots = (minutes - 1) // bucket + 1
    series = {outcome: [0] * slots for outcome in OUTCOMES_OVER_TIME}
    slot_of: dict[str, int] = {}
    for status, stamp, count in rows:
        minute = stamp[:16]
        slot = slot_of.get(minute)
        if slot is None:
            offset = int((datetime.fromisoformat(minute + ":00+00:00") - start).total_seconds() // 60)
            slot = slot_of[minute] = min(slots - 1, offset // bucket)
        series[status][slot] += count
    labels = [f"{start + timedelta(minutes=slot * bucket):%Y-%m-%d %H:%M}" for slot in range(slots)]
    return Timeline(bucket, labels, series)


@dataclass
class Reply:
    count: int
    code: str
    text: str


@dataclass
class CampaignReport:
    counts: dict[str, int]
    bounce_kinds: dict[str, int]  # from bounce_events matched to this campaign's deliveries
    top_replies: dict[str, list[Reply]]  # kind (hard, soft, complaint, refused at sending) -> most frequent
    unsubscribes: int  # people whose last mail before they unsubscribed was this campaign
    complaints: int
    by_language: list[tuple[str, int]] = field(default_factory=list)
    by_country: list[tuple[str, int]] = field(default_factory=list)


def campaign_report(db: sqlite_utils.Database, slug: str, *, top: int = 5) -> CampaignReport:
    counts = deliveries.counts(db, slug)
    # bounce_events first (few), each matched to its delivery by primary key: CROSS JOIN fixes that order
    kinds = dict(db.execute(
        "SELECT e.kind, count(*) FROM bounce_events e CROSS JOIN deliveries d ON d.id = e.delivery_id "
        "WHERE d.campaign = ? GROUP BY e.kind", [slug]).fetchall())
    replies: dict[str, list[Reply]] = {}
    for kind, code, text, count in db.execute(
            "SELECT e.kind, coalesce(e.code, ''), coalesce(e.diagnostic, ''), count(*) AS n FROM bounce_events e "
            "CROSS JOIN deliveries d ON d.id = e.delivery_id WHERE d.campaign = ? GROUP BY 1, 2, 3 "
            "ORDER BY n DESC", [slug]):
        if len(replies.setdefault(kind, [])) < top:
            replies[kind].append(Reply(count, code, text))
    refused = [Reply(count, f"{code or ''} {enhanced or ''}".strip(), text or "") for code, enhanced, text, count in
               db.execute("SELECT last_code, last_enhanced, last_text, count(*) AS n FROM deliveries "
                          "WHERE campaign = ? AND status IN ('failed', 'bounced') GROUP BY 1, 2, 3 "
                          "ORDER BY n DESC LIMIT ?", [slug, top])]
    if refused:
        replies["refused when sending"] = refused
    complaints = db.execute(
        "SELECT count(DISTINCT e.subscriber_id) FROM bounce_events e CROSS JOIN deliveries d "
        "ON d.id = e.delivery_id WHERE d.campaign = ? AND e.kind = 'complaint'", [slug]).fetchone()[0]
    return CampaignReport(counts, kinds, replies, attributed_unsubscribes(db, slug), complaints,
                          *audience_of(db, slug))


def attributed_unsubscribes(db: sqlite_utils.Database, slug: str) -> int:
    """Unsubscribed people whose last mail received before they left was this campaign.

    Starts from the unsubscribed (index on status, status_changed_at) since the campaign's first delivery,
    and looks up each one's deliveries by subscriber: cost grows with the losses, not the list."""
    first = db.execute("SELECT min(sent_at) FROM deliveries WHERE campaign = ? AND status = 'sent'",
                       [slug]).fetchone()[0]
    if first is None:
        return 0
    return db.execute(
        """SELECT count(*) FROM subscribers s
           WHERE s.status = 'unsubscribed' AND s.status_changed_at >= ?
             AND (SELECT d.campaign FROM deliveries d WHERE d.subscriber_id = s.id AND d.status = 'sent'
                  AND d.sent_at <= s.status_changed_at ORDER BY d.sent_at DESC LIMIT 1) = ?""",
        [first, slug]).fetchone()[0]


def audience_of(db: sqlite_utils.Database, slug: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(by language, by country) of the people this campaign was sent to, largest first."""
    rows = db.execute(
        "SELECT s.language, s.country, count(*) FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
        "WHERE d.campaign = ? AND d.status = 'sent' GROUP BY s.language, s.country", [slug]).fetchall()
    languages: dict[str, int] = {}
    countries: dict[str, int] = {}
    for language, country, count in rows:
        languages[language] = languages.get(language, 0) + count
        countries[country or "?"] = countries.get(country or "?", 0) + count
    ordered = lambda found: sorted(found.items(), key=lambda pair: (-pair[1], pair[0]))  # noqa: E731
    return ordered(languages), ordered(countries)


@dataclass
class CampaignSummary:
    slug: str
    title: str
    state: str
    finished_at: str | None
    sent: int
    bounced: int
    complaints: int
    unsubscribes: int


def recent_campaigns(db: sqlite_utils.Database, limit: int = 10) -> list[CampaignSummary]:
    """The campaigns that sent something, newest first, each with its headline figures."""
    return [summarize(db, row) for row in recent_campaign_rows(db, limit)]


def recent_campaign_rows(db: sqlite_utils.Database, limit: int = 10) -> list[dict]:
    return list(db.query(
        "SELECT slug, title, state, coalesce(finished_at, started_at, updated_at) AS at FROM campaigns "
        "WHERE state IN ('sending', 'paused', 'sent', 'cancelled') ORDER BY at DESC LIMIT ?", [limit]))


def summarize(db: sqlite_utils.Database, row: dict) -> CampaignSummary:
    counts = deliveries.counts(db, row["slug"])
    complaints = db.execute(
        "SELECT count(DISTINCT e.subscriber_id) FROM bounce_events e CROSS JOIN deliveries d "
        "ON d.id = e.delivery_id WHERE d.campaign = ? AND e.kind = 'complaint'", [row["slug"]]).fetchone()[0]
    return CampaignSummary(row["slug"], row["title"], row["state"], row["at"], counts["sent"],
                           counts["bounced"] + counts["failed"], complaints, attributed_unsubscribes(db, row["slug"]))


@dataclass
class AudienceHistory:
    months: list[str]  # "YYYY-MM", every month from the first subscriber to now
    joined: list[int]  # confirmed subscribers created that month (pending ones are not counted)
    lost: dict[str, list[int]]  # lost status -> how many reached it that month
    at_month_end: dict[str, list[int]]  # "subscribed", "pending", each lost status -> count at month end


def audience_history(db: sqlite_utils.Database, now: datetime) -> AudienceHistory:
    """Month-end counts by status, from each row's created_at and status_changed_at.

    A subscriber counts as subscribed from the month they were created until the month their status went
    to a lost one (unsubscribed, bounced, complained), and in that status after it. Pauses are counted as
    subscribed, and an earlier unsubscribe followed by a re-subscription is not seen (only the latest status
    change is kept)."""
    marks = ", ".join("?" * len(LOST_STATUSES))
    lost_rows = db.execute(f"SELECT status, substr(status_changed_at, 1, 7) AS month, count(*) FROM subscribers "
                           f"WHERE status IN ({marks}) GROUP BY status, month", list(LOST_STATUSES)).fetchall()
    first = db.execute("SELECT min(created_at) FROM subscribers").fetchone()[0]
    known = ([first[:7]] if first else []) + [row[1] for row in lost_rows if row[1]]
    if not known:
        return AudienceHistory([], [], {s: [] for s in LOST_STATUSES}, {})
    months = _months(min(known), max(max(known), f"{now:%Y-%m}"))
    index = {month: i for i, month in enumerate(months)}
    joined, pending = [0] * len(months), [0] * len(months)
    # one index range per month (subscribers_created): no sort of a million rows, as GROUP BY month would need
    for i, month in enumerate(months):
        following = months[i + 1] if i + 1 < len(months) else "9999"
        created, waiting = db.execute("SELECT count(*), total(status = 'pending') FROM subscribers "
                                      "WHERE created_at >= ? AND created_at < ?", [month, following]).fetchone()
        joined[i], pending[i] = created - int(waiting), int(waiting)
    lost = {status: [0] * len(months) for status in LOST_STATUSES}
    for status, month, count in lost_rows:
        lost[status][index[month or months[0]]] += count
    # a lost subscriber was created as a subscriber, so it is in `joined` of its creation month
    at_end = {"subscribed": _running(joined), "pending": _running(pending)}
    for status in LOST_STATUSES:
        at_end[status] = _running(lost[status])
        at_end["subscribed"] = [have - gone for have, gone in zip(at_end["subscribed"], at_end[status])]
    return AudienceHistory(months, joined, lost, at_end)


def campaign_fingerprint(db: sqlite_utils.Database, slug: str) -> tuple:
    """Changes whenever a campaign's report may have changed: the count and newest stamp per status (one
    pass over the campaign's index entries, no table rows), the bounce events and the unsubscribes.
    web/staff.py shows a kept report again until then."""
    newest = db.execute("SELECT status, count(*), max(updated_at) FROM deliveries WHERE campaign = ? "
                        "GROUP BY status", [slug]).fetchall()
    events = db.execute("SELECT max(id), count(*) FROM bounce_events").fetchone()
    left = db.execute("SELECT count(*), max(status_changed_at) FROM subscribers WHERE status = 'unsubscribed'"
                      ).fetchone()
    return tuple(newest), tuple(events), tuple(left)


def audience_fingerprint(db: sqlite_utils.Database) -> tuple:
    """Changes whenever a subscriber is added or changes status (what audience_history counts), reading
    small index ranges only: the newest id, the newest status change per status, and the count of every
    status but the large ones (active and paused follow from the rest). An erasure is seen at the next
    change."""
    small = [status for status in STATUSES if status not in ("active", "paused")]
    newest = db.execute("SELECT max(id), " + ", ".join(
        [f"(SELECT max(status_changed_at) FROM subscribers WHERE status = '{status}')" for status in STATUSES]
        + [f"(SELECT count(*) FROM subscribers WHERE status = '{status}')" for status in small])
        + " FROM subscribers").fetchone()
    return tuple(newest)


def _months(first: str, last: str) -> list[str]:
    year, month = int(first[:4]), int(first[5:7])
    months = []
    while f"{year:04d}-{month:02d}" <= last:
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _running(values: list[int]) -> list[int]:
    total, out = 0, []
    for value in values:
        total += value
        out.append(total)
    return out


def active_by_country(db: sqlite_utils.Database, limit: int = 20) -> list[tuple[str, int]]:
    """Active subscribers per country, largest first; the rest summed as "other"."""
    table, total = ("segment_counts", "sum(n)") if segment_counts_live(db) else ("subscribers", "count(*)")
    rows = db.execute(f"SELECT country, {total} AS n FROM {table} WHERE status = 'active' "
                      "GROUP BY country HAVING n > 0 ORDER BY n DESC, country").fetchall()
    shown = [(country or "?", count) for country, count in rows[:limit]]
    rest = sum(count for _, count in rows[limit:])
    return shown + ([("other", rest)] if rest else [])


def active_by_interest(db: sqlite_utils.Database) -> list[tuple[str, int]]:
    """Active subscribers per interest (one person may count under several), in one pass over the segment
    counts."""
    taxonomy = Taxonomy.load(db)
    slugs = taxonomy.slugs
    if not slugs:
        return []
    table, weight = ("segment_counts", "n") if segment_counts_live(db) else ("subscribers", "1")
    sums = ", ".join(f"sum((interests & {taxonomy.mask([slug])} != 0) * {weight})" for slug in slugs)
    row = db.execute(f"SELECT {sums} FROM {table} WHERE status = 'active'").fetchone()
    return [(slug, row[i] or 0) for i, slug in enumerate(slugs)]
