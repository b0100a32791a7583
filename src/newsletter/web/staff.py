"""/staff/: where the bureau's staff run the newsletter: what goes out next, a live send, reports, the audience.

Views only translate: figures come from newsletter.stats (SQL aggregates), actions from the same library
calls as the CLI (campaign_state, scheduler.schedule_campaign, sender.send_test, deliveries.requeue).
Every action is two steps without JavaScript: a page that says what will happen, then a POST (with the
session's CSRF token) that does it and redirects back (POST, redirect, GET: a reload repeats nothing).
"""

from __future__ import annotations

import csv
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, Response, abort, jsonify, redirect, request, url_for

from .. import campaign_state, deliveries, stats
from ..campaigns import CampaignError, load_campaign
from ..clock import parse_utc
from ..db import connect
from ..i18n import web_environment
from ..recurrence import RuleError, parse_rule
from ..segments import SegmentError, count as segment_count, parse_segment, saved_segments
from . import charts
from .issues import campaign_folder
from .pages import PageError, render_page
from .staff_access import check_csrf, csrf_token, password_is_set, require_staff
from .preview import test_recipients
from .state import current_taxonomy, database, state
from .tokens import signed_notice

blueprint = Blueprint("staff", __name__, url_prefix="/staff")
blueprint.before_request(require_staff)

NOTICE = "staff-notice"
DIGEST_OCCURRENCES = 3
LIVE_REFRESH_SECONDS = 3
LIVE_STATES = ("sending", "paused")


class ReportCache:
    """Reports kept in memory until the fingerprint of what they count changes: on a million deliveries a
    report takes a second or two to compute, and staff reload a finished campaign's page far more often
    than its figures change."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: OrderedDict[tuple, tuple[tuple, object]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, fingerprint: tuple, compute):
        with self._lock:
            found = self._entries.get(key)
            if found is not None and found[0] == fingerprint:
                self._entries.move_to_end(key)
                return found[1]
        value = compute()
        with self._lock:
            self._entries[key] = (fingerprint, value)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


REPORTS = ReportCache()


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    explains: str
    allowed_from: tuple[str, ...]
    danger: bool = False


ACTIONS = {action.name: action for action in (
    Action("schedule", "Schedule", "The scheduler sends the campaign at the time you give (in {tz}).",
           ("new", "draft", "scheduled", "paused")),
    Action("unschedule", "Unschedule", "The campaign goes back to draft; nothing is sent.", ("scheduled",)),
    Action("pause", "Pause", "Sending stops within seconds; what was sent stays sent. Resume continues.",
           ("sending", "scheduled")),
    Action("resume", "Resume", "The campaign is sending again: the scheduler (or `newsletter send`) continues "
           "with the deliveries not sent yet.", ("paused",)),
    Action("cancel", "Cancel", "Stops for good: every delivery not sent yet is marked skipped. This cannot be "
           "undone.", ("draft", "scheduled", "sending", "paused"), danger=True),
    Action("retry", "Retry failed", "Deliveries that failed (not those that bounced, nor people who unsubscribed "
           "since) are queued again, and the campaign is sending until they are done.",
           ("sent", "sending", "paused")),
    Action("test", "Send a test", "The real message, marked [TEST], goes to the addresses you give; its links "
           "act on nobody. Nothing is written to the delivery log.",
           ("new", "draft", "scheduled", "sending", "paused", "sent", "cancelled")),
)}


def _page(template: str, **context) -> Response:
    response = render_page(template, "en", csrf_token=csrf_token(), logged_in=password_is_set(),
                           tz=state().config.timezone, **context)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    return response


def _local(text: str | None) -> str:
    if not text:
        return ""
    return f"{parse_utc(text).astimezone(state().config.tz):%Y-%m-%d %H:%M %Z}"


def _back(slug: str, notice: str) -> Response:
    return redirect(url_for(".campaign", slug=slug, notice=state().signer.sign(notice, NOTICE)), code=303)


# --- the dashboard ---------------------------------------------------------------------------------------


def next_sends(now: datetime) -> list[dict]:
    """Scheduled campaigns and the next occurrences of every digest rule, soonest first, in the bureau's zone."""
    config, db = state().config, database()
    upcoming = [{"at": parse_utc(row["send_at"]), "what": row["title"] or row["slug"], "slug": row["slug"],
                 "kind": "campaign"}
                for row in db.query("SELECT slug, title, send_at FROM campaigns WHERE state = 'scheduled' "
                                    "AND send_at IS NOT NULL ORDER BY send_at")]
    for text in config.digest.rules:
        try:
            rule = parse_rule(text)
        except RuleError as error:
            upcoming.append({"at": None, "what": f"digest rule {text!r}: {error}", "slug": "", "kind": "error"})
            continue
        moment = now
        for _ in range(DIGEST_OCCURRENCES):
            moment = rule.next_after(moment)
            upcoming.append({"at": moment, "what": f"digest ({rule})", "slug": "", "kind": "digest"})
    upcoming.sort(key=lambda entry: (entry["at"] is not None, entry["at"] or now))
    for entry in upcoming:
        entry["local"] = f"{entry['at'].astimezone(config.tz):%a %Y-%m-%d %H:%M %Z}" if entry["at"] else ""
    return upcoming


def _live(slug: str) -> dict:
    row = campaign_state.get(database(), slug)
    progress = stats.progress(database(), slug, state().clock.now())
    counts = progress.counts
    return {
        "slug": slug, "state": row["state"] if row else "new", "total": progress.total, "done": progress.done,
        "sent": counts["sent"], "queued": counts["queued"] + counts["sending"], "deferred": counts["deferred"],
        "failed": counts["failed"] + counts["bounced"], "skipped": counts["skipped"],
        "percent": round(100 * progress.done / progress.total, 1) if progress.total else 0.0,
        "rate_per_second": round(progress.rate_per_second, 3),
        "rate": (f"{progress.rate_per_second:,.1f}/s" if progress.rate_per_second >= 1
                 else f"{progress.sent_last_minute}/min"),
        "eta": _duration(progress.eta_seconds) if progress.eta_seconds else "",
        "reason": (row.get("pause_reason") or row["last_error"] or "") if row else "",
    }


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes} min {int(seconds % 60)} s" if minutes else f"{int(seconds)} s"


def _running() -> list[str]:
    return [row[0] for row in database().execute(
        "SELECT slug FROM campaigns WHERE state IN ('sending', 'paused') ORDER BY updated_at DESC")]


@blueprint.get("/")
def dashboard() -> Response:
    now = state().clock.now()
    from ..scheduler import campaign_overview

    db, path = database(), str(state().config.database)
    recent = [REPORTS.get(("summary", path, row["slug"], row["state"]), stats.campaign_fingerprint(db, row["slug"]),
                          lambda row=row: stats.summarize(db, row)) for row in stats.recent_campaign_rows(db)]
    return _page("staff/dashboard.html", upcoming=next_sends(now), live=[_live(slug) for slug in _running()],
                 recent=recent, local=_local, refresh=LIVE_REFRESH_SECONDS,
                 campaigns=campaign_overview(state().config, database(), state().clock))


@blueprint.get("/live.json")
def live() -> Response:
    """What the dashboard's and campaign page's few lines of script poll every few seconds."""
    slug = request.args.get("slug")
    slugs = [slug] if slug else _running()
    return jsonify(campaigns=[_live(one) for one in slugs if campaign_state.get(database(), one)])


# --- one campaign -----------------------------------------------------------------------------------------


def _campaign_or_404(slug: str) -> tuple[dict | None, object | None, str]:
    """(its database row or None, the loaded folder or None, the folder's error text)."""
    row = campaign_state.get(database(), slug)
    campaign, error = None, ""
    try:
        campaign = load_campaign(campaign_folder(state().config, slug), state().config.tz)
    except PageError:
        if row is None:
            raise
        error = "its folder is gone from the campaigns folder"
    except CampaignError as problem:
        error = str(problem)
    return row, campaign, error


def _campaign_charts(slug: str, report: stats.CampaignReport) -> list[charts.Chart]:
    timeline = stats.timeline(database(), slug)
    per = "minute" if timeline.bucket_minutes == 1 else f"{timeline.bucket_minutes} minutes"
    drawn = []
    if timeline.labels:
        drawn.append(charts.over_time(f"Deliveries per {per} (UTC)", timeline.labels, timeline.series,
                                      label_header="from (UTC)"))
    outcomes = [(status, count) for status, count in report.counts.items() if count]
    if outcomes:
        drawn.append(charts.bars("Outcome of every delivery", [s for s, _ in outcomes],
                                 {"deliveries": [c for _, c in outcomes]}, horizontal=True, label_header="status"))
    if report.by_language:
        drawn.append(charts.bars("Sent, by language", [lang for lang, _ in report.by_language],
                                 {"sent": [n for _, n in report.by_language]}, label_header="language"))
    if report.by_country:
        top = report.by_country[:15]
        drawn.append(charts.bars("Sent, by country (top 15)", [c for c, _ in top], {"sent": [n for _, n in top]},
                                 horizontal=True, label_header="country"))
    return drawn


@blueprint.get("/campaigns/<slug>")
def campaign(slug: str) -> Response:
    row, folder, error = _campaign_or_404(slug)
    current = row["state"] if row else "new"
    report, drawn = None, []
    if row:
        db = database()

        def compute():
            fresh = stats.campaign_report(db, slug)
            return fresh, _campaign_charts(slug, fresh) if sum(fresh.counts.values()) else []

        report, drawn = REPORTS.get(("campaign", str(state().config.database), slug),
                                    stats.campaign_fingerprint(db, slug), compute)
    return _page(
        "staff/campaign.html", slug=slug, row=row, campaign=folder, folder_error=error, current=current,
        history=[dict(entry, local=_local(entry["at"])) for entry in campaign_state.history(database(), slug)],
        actions=[action for action in ACTIONS.values() if current in action.allowed_from
                 and (action.name != "retry" or (report and report.counts["failed"]))],
        report=report, charts=drawn,
        live=_live(slug) if row else None, local=_local, notice=signed_notice(state().signer, request.args.get("notice"), NOTICE), refresh=LIVE_REFRESH_SECONDS,
    )


@blueprint.get("/campaigns/<slug>/confirm/<action>")
def confirm(slug: str, action: str) -> Response:
    row, folder, _error = _campaign_or_404(slug)
    chosen = ACTIONS.get(action)
    if chosen is None:
        abort(404)
    default_at = ""
    if folder is not None and folder.send_at:
        default_at = f"{folder.send_at.astimezone(state().config.tz):%Y-%m-%dT%H:%M}"
    return _page("staff/confirm.html", slug=slug, action=chosen, current=row["state"] if row else "new",
                 explains=chosen.explains.format(tz=state().config.timezone), default_at=default_at,
                 staff_addresses=state().config.web.staff_addresses,
                 counts=deliveries.counts(database(), slug) if row else None)


@blueprint.post("/campaigns/<slug>/<action>")
def act(slug: str, action: str) -> Response:
    check_csrf()
    chosen = ACTIONS.get(action)
    if chosen is None:
        abort(404)
    _campaign_or_404(slug)
    db, clock = database(), state().clock
    try:
        if action == "schedule":
            notice = _schedule(slug)
        elif action == "test":
            notice = _send_test(slug)
        elif action == "cancel":
            skipped = campaign_state.cancel(db, slug, clock)
            notice = f"Cancelled; {skipped:,} deliveries not sent yet were marked skipped."
        elif action == "retry":
            done = deliveries.requeue(db, slug, ("failed",), note="staff page: retry failed", clock=clock)
            left = f" ({done.refused:,} left alone: unsubscribed, bounced or suppressed since)" if done.refused else ""
            notice = (f"{done.requeued:,} failed deliveries queued again; the scheduler sends them{left}."
                      if done.requeued else f"No failed delivery could be retried{left}.")
        else:
            getattr(campaign_state, action)(db, slug, clock)
            notice = {"unschedule": "Unscheduled: back to draft.", "resume": "Resumed: sending continues.",
                      "pause": "Paused: sending stops within seconds."}[action]
    except (campaign_state.StateError, ValueError, CampaignError) as problem:
        notice = f"Not done: {problem}"
    return _back(slug, notice)


def _schedule(slug: str) -> str:
    from ..scheduler import parse_local_time, schedule_campaign

    config = state().config
    typed = request.form.get("at", "").replace("T", " ").strip()
    when = parse_local_time(typed, config.tz) if typed else None
    row = schedule_campaign(config, database(), slug, when, clock=state().clock)
    return f"Scheduled for {_local(row['send_at'])}."


def _send_test(slug: str) -> str:
    from ..sender import send_test

    recipients, refused = test_recipients(request.form)
    if refused:
        return f"Not sent: {', '.join(refused)} is not a valid address."
    if not recipients:
        return "Not sent: choose or type at least one address."
    outcomes = []
    for address, reply in send_test(state().config, slug, list(dict.fromkeys(recipients))):
        outcomes.append(f"{address}: sent" if reply.outcome == "sent"
                        else f"{address}: NOT sent ({reply.code} {reply.enhanced} {reply.text})".strip())
    return "Test: " + "; ".join(outcomes)


@blueprint.get("/campaigns/<slug>/report.csv")
def report_csv(slug: str) -> Response:
    """The whole delivery log with the columns of `newsletter report --csv`, streamed in chunks."""
    if campaign_state.get(database(), slug) is None:
        abort(404)
    path = state().config.database

    def chunks():  # its own connection: the request's is closed before a streamed body is read
        db = connect(path, migrate_schema=False)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(deliveries.EXPORT_COLUMNS)
        for number, row in enumerate(db.execute(
                f"SELECT {', '.join(deliveries.EXPORT_COLUMNS)} FROM deliveries WHERE campaign = ? ORDER BY id",
                [slug]), start=1):
            writer.writerow(["" if value is None else value for value in row])
            if number % 2000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        db.conn.close()
        yield buffer.getvalue()

    return Response(chunks(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{slug}-deliveries.csv"'})


# --- the audience -----------------------------------------------------------------------------------------


def _audience_charts() -> list[charts.Chart]:
    db = database()
    now = state().clock.now()
    history = REPORTS.get(("audience", str(state().config.database), f"{now:%Y-%m}"), stats.audience_fingerprint(db),
                          lambda: stats.audience_history(db, now))
    drawn = []
    if history.months:
        drawn.append(charts.over_time("Subscribers by status at each month end", history.months,
                                      history.at_month_end, stacked_area=True, label_header="month"))
        drawn.append(charts.bars("New and lost per month", history.months,
                                 {"new": history.joined, **{f"lost: {s}": v for s, v in history.lost.items()}},
                                 label_header="month"))
    countries = stats.active_by_country(db)
    if countries:
        drawn.append(charts.bars("Active subscribers by country", [c for c, _ in countries],
                                 {"active": [n for _, n in countries]}, horizontal=True, label_header="country"))
    interests = stats.active_by_interest(db)
    if interests:
        taxonomy = current_taxonomy()
        drawn.append(charts.bars("Active subscribers by interest", [taxonomy.label(s, "en") for s, _ in interests],
                                 {"active": [n for _, n in interests]}, horizontal=True, label_header="interest"))
    return drawn


def _count(expression: str) -> dict:
    if not expression.strip():
        return {"expression": "", "count": None, "error": ""}
    try:
        return {"expression": expression, "count": segment_count(database(), parse_segment(expression, database())),
                "error": ""}
    except SegmentError as error:
        return {"expression": expression, "count": None, "error": str(error)}


@blueprint.get("/audience")
def audience() -> Response:
    return _page("staff/audience.html", charts=_audience_charts(), segment=_count(request.args.get("segment", "")),
                 saved=saved_segments(database()))


@blueprint.get("/audience/count")
def audience_count() -> Response:
    """The segment box's live count: {count, error} for the expression as typed so far."""
    return jsonify(_count(request.args.get("segment", "")))


# --- the page's own script -------------------------------------------------------------------------------


@blueprint.get("/staff.js")
def script() -> Response:
    """The few lines of the pages' own script, found like the page templates (an override first)."""
    environment = web_environment(state().config.templates_dir, "en")
    source, _name, _uptodate = environment.loader.get_source(environment, "staff/staff.js")
    response = Response(source, mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    return response
