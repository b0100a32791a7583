"""The long-running scheduler: each pass builds the digest that a rule calls for and sends what is due.

Everything a pass decides is read from the database, so a pass is safe to repeat, to run after downtime and
to run in several processes at once:

- a digest occurrence is claimed by inserting its digest_runs row (the primary key lets one process win);
  only the latest occurrence at or before now is looked at, so after downtime one catch-up digest goes out,
  not one per missed month;
- a campaign is sent under its lease (sender.py), and a campaign left 'sending' by a crash is due again.

`schedule` only provides the wake-ups; the passes use the Clock they are given.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, TextIO
from zoneinfo import ZoneInfo

import schedule
import sqlite_utils

from . import campaign_state, deliveries
from .campaigns import CAMPAIGN_FILE, CampaignError, load_campaign
from .clock import Clock, SystemClock, parse_utc, utc_iso
from .config import Config, ConfigError
from .db import connect, transaction
from .digest import DigestError, build_digest, digest_window
from .recurrence import parse_rule
from .sender import SendSummary, send_campaign

log = logging.getLogger("newsletter.scheduler")

LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
LOG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# A 'building' claim older than this belongs to a scheduler that died mid-build; building takes seconds.
STALE_CLAIM = timedelta(minutes=15)
# Something due longer ago than this when the scheduler first sees it (a new folder's send_at, a rule's
# occurrence on the scheduler's first start) is recorded, not mailed to everyone late.
LATE_GRACE = timedelta(hours=24)
_SEND_AT_LINE = re.compile(r"^\s*send_at\s*=", re.MULTILINE)


# Errors whose message says what to fix (ValueError covers rule, state, segment and schedule errors).
EXPECTED_ERRORS = (CampaignError, DigestError, ConfigError, ValueError, OSError)


class ScheduleError(ValueError):
    """A send time or schedule request that cannot be used; the message says how to write it."""


@dataclass(frozen=True)
class PassResult:
    """One thing a pass did: `subject` is the campaign slug, or the digest rule when no campaign was built."""

    subject: str
    outcome: str
    detail: str = ""
    failed: bool = False

    def __str__(self) -> str:
        return f"{self.subject}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


# ---------------------------------------------------------------------------------------------------
# One pass


def run_pass(config: Config, *, clock: Clock = SystemClock(),
             stop_event: threading.Event | None = None) -> list[PassResult]:
    """Build due digests, pick up campaign folders that carry a send_at, then send every due campaign.

    A failure is logged, recorded and reported in the results; it never stops the rest of the pass.
    """
    results: list[PassResult] = []
    db = connect(config.database)
    try:
        for text in config.digest.rules:
            results += _guarded(text, lambda: run_digest_rule(config, db, text, clock))
        results += _guarded(str(config.campaigns_dir), lambda: register_scheduled_folders(config, db, clock))
        for slug in campaign_state.due_campaigns(db, clock.now()):
            if stop_event is not None and stop_event.is_set():
                break
            results.append(_logged(send_due_campaign(config, db, slug, clock, stop_event)))
    finally:
        db.conn.close()
    return results


def run_digest_rule(config: Config, db: sqlite_utils.Database, text: str, clock: Clock) -> list[PassResult]:
    """Build and schedule the digest for the rule's latest occurrence, unless some pass already did."""
    rule = parse_rule(text)
    now = clock.now()
    occurrence = rule.previous_at_or_before(now)
    first_start = db.execute("SELECT NOT EXISTS (SELECT 1 FROM digest_runs WHERE rule = ?)",
                             [str(rule)]).fetchone()[0]
    if occurrence is None or not _claim(db, str(rule), occurrence, now):
        return []
    key = [str(rule), utc_iso(occurrence)]
    if first_start and now - occurrence > LATE_GRACE:
        outcome = "skipped: before the scheduler's first start"
        detail = (f"the scheduler first ran {(now - occurrence).days} days after this occurrence; the next one "
                  f"is {rule.next_after(now).astimezone(config.tz):%Y-%m-%d %H:%M %Z}")
        _finish_run(db, key, None, outcome, detail)
        return [PassResult(str(rule), outcome, detail)]
    try:
        window = digest_window(config, occurrence, db)
        campaign = build_digest(config, occurrence, db)
        if campaign is None:
            since = window.after.isoformat() if window.after else "the first article"
            outcome = f"skipped: no new articles since {since}"
            detail = f"none dated after {since} up to {window.until.isoformat()} in {config.digest.articles_dir}"
            _finish_run(db, key, None, outcome, detail)
            return [PassResult(str(rule), outcome, detail)]
        detail = f"{len(campaign.articles)} articles for {occurrence.astimezone(config.tz):%Y-%m-%d %H:%M %Z}"
        with transaction(db):
            campaign_state.register(db, campaign, clock)
            campaign_state.schedule(db, campaign.slug, now, clock)
            _finish_run(db, key, campaign.slug, "scheduled", detail)
        return [PassResult(campaign.slug, "digest scheduled to send now", detail)]
    except Exception as exc:
        _finish_run(db, key, None, "failed", str(exc))
        raise


def _claim(db: sqlite_utils.Database, rule: str, occurrence: datetime, now: datetime) -> bool:
    """Take the occurrence: a new row, a failed attempt to retry, or a claim whose process died."""
    with transaction(db):
        if db.execute("INSERT INTO digest_runs (rule, occurrence, outcome, created_at) VALUES (?, ?, 'building', ?) "
                      "ON CONFLICT (rule, occurrence) DO NOTHING",
                      [rule, utc_iso(occurrence), utc_iso(now)]).rowcount:
            return True
        return db.execute(
            "UPDATE digest_runs SET outcome = 'building', detail = '', created_at = ? WHERE rule = ? AND occurrence = ? "
            "AND (outcome = 'failed' OR (outcome = 'building' AND created_at <= ?))",
            [utc_iso(now), rule, utc_iso(occurrence), utc_iso(now - STALE_CLAIM)]).rowcount == 1


def _finish_run(db: sqlite_utils.Database, key: list[str], slug: str | None, outcome: str, detail: str) -> None:
    db.execute("UPDATE digest_runs SET slug = ?, outcome = ?, detail = ? WHERE rule = ? AND occurrence = ?",
               [slug, outcome, detail[:2000], *key])


def register_scheduled_folders(config: Config, db: sqlite_utils.Database, clock: Clock) -> list[PassResult]:
    """Record campaign folders that are new to the database and carry a send_at, so that they go out on time.

    Folders without send_at are drafts and are left alone, so a half-written draft never fills the log. A
    send_at long past (an old folder copied in, say) makes a draft instead: sending it now would surprise.
    """
    folder_root = Path(config.campaigns_dir)
    if not folder_root.is_dir():
        return []
    known = {row[0] for row in db.execute("SELECT slug FROM campaigns")}
    results = []
    for toml_path in sorted(folder_root.glob(f"*/{CAMPAIGN_FILE}")):
        slug = toml_path.parent.name
        if slug in known or not _SEND_AT_LINE.search(toml_path.read_text(encoding="utf-8-sig", errors="replace")):
            continue
        try:
            campaign = load_campaign(toml_path.parent, config.tz)
        except CampaignError as exc:
            results.append(PassResult(slug, "failed: not registered", str(exc), failed=True))
            continue
        when = f"{campaign.send_at.astimezone(config.tz):%Y-%m-%d %H:%M %Z}"
        with transaction(db):
            campaign_state.register(db, campaign, clock)
            if campaign.send_at >= clock.now() - LATE_GRACE:
                results.append(PassResult(slug, "registered", f"scheduled for {when} by its send_at"))
                continue
            note = (f"send_at {when} had long passed when the scheduler first saw this folder, so it was not "
                    f"sent; schedule it again to send it")
            campaign_state.set_state(db, slug, "draft", clock=clock, send_at=None, last_error=note)
        results.append(PassResult(slug, "registered as a draft", note))
    return results


def send_due_campaign(config: Config, db: sqlite_utils.Database, slug: str, clock: Clock,
                      stop_event: threading.Event | None = None) -> PassResult:
    """Send one campaign; an error is kept in campaigns.last_error and the campaign is tried again next pass.

    A campaign paused by a fault is tried again here once its back-off has passed (each try is logged);
    a long send logs a progress line every HEARTBEAT_SECONDS.
    """
    row = campaign_state.get(db, slug)
    if campaign_state.paused_by_fault(row):
        log.info("%s: trying again (try %d) after: %s", slug, row["fault_tries"] + 1, row["pause_reason"])
    try:
        summary = send_campaign(config, slug, clock=clock, stop=_ChildStop(stop_event),
                                heartbeat=lambda progress: log.info("%s", progress))
    except Exception as exc:
        _trace_unexpected(slug, exc)
        db.execute("UPDATE campaigns SET last_error = ?, updated_at = ? WHERE slug = ?",
                   [f"{type(exc).__name__}: {exc}"[:2000], utc_iso(clock.now()), slug])
        return PassResult(slug, "failed", f"{type(exc).__name__}: {exc}", failed=True)
    db.execute("UPDATE campaigns SET last_error = NULL WHERE slug = ? AND last_error IS NOT NULL", [slug])
    if summary.stopped_reason == "fault":
        row = campaign_state.get(db, slug)
        retry_at = parse_utc(row["fault_retry_at"]).astimezone(config.tz) if row["fault_retry_at"] else None
        when = f"; next try at {retry_at:%Y-%m-%d %H:%M %Z}" if retry_at else ""
        return PassResult(slug, "paused by a fault", f"{summary.fault}{when}", failed=True)
    return PassResult(slug, *_describe(summary, config.tz))


def _describe(summary: SendSummary, tz: ZoneInfo) -> tuple[str, str]:
    tally = ", ".join(f"{count} {status}" for status, count in summary.counts.items() if count)
    detail = f"{summary.sent_now} sent in this pass; in all: {tally or 'no recipients'}"
    if summary.stopped_reason == "locked":
        return "skipped: another process is sending it", detail
    if summary.stopped_reason == "retries pending" and summary.next_retry_at:
        return f"waiting: next retry at {summary.next_retry_at.astimezone(tz):%Y-%m-%d %H:%M %Z}", detail
    if summary.stopped_reason:
        return f"stopped: {summary.stopped_reason}", detail
    return ("sent" if summary.finished else "sending"), detail


class _ChildStop(threading.Event):
    """Set when the scheduler stops, but setting it (as the sender does when a worker fails) stops only this
    campaign, not the whole scheduler."""

    def __init__(self, parent: threading.Event | None) -> None:
        super().__init__()
        self._parent = parent

    def is_set(self) -> bool:
        return super().is_set() or (self._parent is not None and self._parent.is_set())


def _guarded(subject: str, step: Callable[[], list[PassResult]]) -> list[PassResult]:
    """Run one step of a pass and log what it did; its failure becomes a result, not the end of the pass."""
    try:
        results = step()
    except Exception as exc:
        _trace_unexpected(subject, exc)
        results = [PassResult(subject, "failed", f"{type(exc).__name__}: {exc}", failed=True)]
    return [_logged(result) for result in results]


def _trace_unexpected(subject: str, exc: Exception) -> None:
    """Errors people can fix from their message get one line; anything else also gets its traceback."""
    if not isinstance(exc, EXPECTED_ERRORS):
        log.error("%s: unexpected error", subject, exc_info=exc)


def _logged(result: PassResult) -> PassResult:
    log.log(logging.ERROR if result.failed else logging.INFO, "%s", result)
    return result


# ---------------------------------------------------------------------------------------------------
# The service


def configure_logging(config: Config, stream: TextIO | None = None) -> list[logging.Handler]:
    """One format (UTC time, level, message) to stdout and, if set, config.log_file; safe to call again.

    Returns the handlers it put on the "newsletter" logger.
    """
    formatter = logging.Formatter(LOG_FORMAT, LOG_TIME_FORMAT)
    formatter.converter = time.gmtime
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stdout)]
    if config.log_file:
        Path(config.log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.WatchedFileHandler(config.log_file, encoding="utf-8"))  # logrotate-safe
    logger = logging.getLogger("newsletter")
    for old in [handler for handler in logger.handlers if getattr(handler, "newsletter_scheduler", False)]:
        logger.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.newsletter_scheduler = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handlers


def run_forever(config: Config, *, clock: Clock = SystemClock(), stop_event: threading.Event,
                interval_seconds: float = 30) -> None:
    """Run a pass at once and then every `interval_seconds` until `stop_event` is set (see stop_on_signals).

    Call configure_logging() first to see what each pass does.
    """
    for text in config.digest.rules:
        parse_rule(text)  # a mistyped rule stops start-up with its message, instead of failing every pass
    jobs = schedule.Scheduler()
    jobs.every(interval_seconds).seconds.do(_pass_that_survives, config, clock, stop_event)
    log.info("scheduler started: a pass every %ss, database %s, %d digest rule(s)", interval_seconds,
             config.database, len(config.digest.rules))
    jobs.run_all()
    while not stop_event.is_set():
        jobs.run_pending()
        clock.sleep(min(1.0, max(0.0, jobs.idle_seconds or 0.0)))
    log.info("scheduler stopped")


def _pass_that_survives(config: Config, clock: Clock, stop_event: threading.Event) -> None:
    """A pass that fails as a whole (the database is unreachable, say) is logged and tried at the next tick."""
    if stop_event.is_set():
        return
    try:
        run_pass(config, clock=clock, stop_event=stop_event)
    except Exception:
        log.exception("pass failed; trying again at the next tick")


def stop_on_signals(stop_event: threading.Event) -> None:
    """SIGTERM (systemctl stop) and SIGINT finish the message in hand and then stop; call from the main thread."""
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop_event.set())


# ---------------------------------------------------------------------------------------------------
# Helpers for the campaign commands


def parse_local_time(text: str, tz: ZoneInfo) -> datetime:
    """'2026-12-01 09:00' as wall-clock time in `tz` (or with an explicit offset) -> aware UTC datetime."""
    cleaned = text.strip()
    example = f"write it as \"2026-12-01 09:00\" (local time in {tz.key}) or with an offset, \"2026-12-01 09:00-04:00\""
    try:
        when = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ScheduleError(f"{text!r} is not a date and time; {example}") from None
    if ":" not in cleaned:
        raise ScheduleError(f"{text!r} has no time of day; {example}")
    if when.tzinfo is not None:
        return when.astimezone(timezone.utc)
    utc = when.replace(tzinfo=tz).astimezone(timezone.utc)
    if utc.astimezone(tz).replace(tzinfo=None) != when:
        raise ScheduleError(f"{text!r} does not exist in {tz.key} (the clocks skip it that day); pick a time "
                            f"after the change")
    return utc


def schedule_campaign(config: Config, db: sqlite_utils.Database, slug: str, when: datetime | None = None, *,
                      clock: Clock = SystemClock()) -> dict:
    """Schedule a campaign folder for `when`, or for the send_at in its campaign.toml; returns its row."""
    campaign = load_campaign(Path(config.campaigns_dir) / slug, config.tz)
    when = when or campaign.send_at
    if when is None:
        raise ScheduleError(f"{campaign.folder / CAMPAIGN_FILE}: no send_at; give a time "
                            f"(--at \"2026-12-01 09:00\") or add send_at = \"2026-12-01 09:00\" to the file")
    if when <= clock.now():
        raise ScheduleError(f"{when.astimezone(config.tz):%Y-%m-%d %H:%M %Z} is in the past; pick a later time, "
                            f"or send the campaign now")
    with transaction(db):
        campaign_state.register(db, campaign, clock)
        campaign_state.schedule(db, slug, when, clock)
    return campaign_state.get(db, slug)


def campaign_overview(config: Config, db: sqlite_utils.Database, clock: Clock = SystemClock()) -> list[dict]:
    """Every campaign in the database, then folders not recorded yet (state 'new'), then the next
    occurrence of each digest rule (state 'digest'), for `campaign list` and the staff pages.

    Each: slug, title, state, next_send (aware, in config.tz, or None), counts (per delivery status),
    last_error, paused_by and pause_reason (None unless paused).
    """
    tz = config.tz
    now = clock.now()
    overview = []
    empty = {status: 0 for status in deliveries.STATUSES}
    for row in db.query("SELECT * FROM campaigns ORDER BY coalesce(send_at, created_at), slug"):
        counts = deliveries.counts(db, row["slug"])
        overview.append({
            "slug": row["slug"], "title": row["title"], "state": row["state"],
            "next_send": _next_send(db, row, counts, now, tz), "counts": counts, "last_error": row["last_error"],
            "paused_by": row["paused_by"], "pause_reason": row["pause_reason"],
        })
    known = {entry["slug"] for entry in overview}
    folder_root = Path(config.campaigns_dir)
    folders = sorted(path.parent for path in folder_root.glob(f"*/{CAMPAIGN_FILE}")) if folder_root.is_dir() else []
    for folder in folders:
        if folder.name in known:
            continue
        entry = {"slug": folder.name, "title": "", "state": "new", "next_send": None, "counts": dict(empty),
                 "last_error": None, "paused_by": None, "pause_reason": None}
        try:
            campaign = load_campaign(folder, tz)
            entry.update(title=campaign.title, next_send=campaign.send_at.astimezone(tz) if campaign.send_at else None)
        except CampaignError as exc:
            entry["last_error"] = str(exc)
        overview.append(entry)
    for text in config.digest.rules:
        entry = {"slug": "(digest)", "title": text, "state": "digest", "next_send": None, "counts": dict(empty),
                 "last_error": None, "paused_by": None, "pause_reason": None}
        try:
            entry["next_send"] = parse_rule(text).next_after(now).astimezone(tz)
        except ValueError as exc:
            entry["last_error"] = str(exc)
        overview.append(entry)
    return overview


@dataclass(frozen=True)
class Upcoming:
    """One run the scheduler will make: `when` in the bureau's zone, `local` in the rule's own zone."""

    when: datetime
    local: datetime
    what: str  # the campaign slug, or "digest"
    detail: str


def upcoming(config: Config, db: sqlite_utils.Database, clock: Clock = SystemClock(),
             per_rule: int = 3) -> list[Upcoming]:
    """What the scheduler will do next, soonest first: scheduled campaigns, retries of campaigns paused by
    a fault, unfinished sends, and the next `per_rule` occurrences of each digest rule."""
    tz = config.tz
    now = clock.now()
    runs = []
    for row in db.query("SELECT slug, state, send_at, fault_retry_at, pause_reason FROM campaigns "
                        "WHERE state IN ('scheduled', 'sending') OR (state = 'paused' AND paused_by = 'fault')"):
        if row["state"] == "scheduled" and row["send_at"]:
            when, detail = parse_utc(row["send_at"]), "scheduled send"
        elif row["state"] == "paused":
            when, detail = parse_utc(row["fault_retry_at"]), f"retry after a fault: {row['pause_reason']}"
        else:
            when, detail = now, "unfinished send, resumed at the next pass"
        runs.append(Upcoming(when.astimezone(tz), when.astimezone(tz), row["slug"], detail))
    for text in config.digest.rules:
        rule = parse_rule(text)
        moment = now
        for _ in range(per_rule):
            moment = rule.next_after(moment)
            runs.append(Upcoming(moment.astimezone(tz), moment.astimezone(ZoneInfo(rule.timezone)), "digest",
                                 str(rule)))
    return sorted(runs, key=lambda run: (run.when, run.what))


def _next_send(db: sqlite_utils.Database, row: dict, counts: dict[str, int], now: datetime,
               tz: ZoneInfo) -> datetime | None:
    if row["state"] == "scheduled" and row["send_at"]:
        return parse_utc(row["send_at"]).astimezone(tz)
    if row["state"] == "sending":
        retry_at = deliveries.next_retry_at(db, row["slug"])
        waiting_only = not counts["queued"] and not counts["sending"] and retry_at is not None
        return (retry_at if waiting_only else now).astimezone(tz)
    return None
