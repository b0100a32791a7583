"""The scheduler: digests built once per occurrence, due campaigns sent once, failures contained.

Time is a FakeClock the test sets; mail goes to a real SMTP server on loopback.
"""

from __future__ import annotations

import email
import io
import json
import logging
import socket
import subprocess
import sys
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from smtp_servers import FaultServer

from newsletter import campaign_state, subscribers
from newsletter.campaigns import load_campaign
from newsletter.clock import FakeClock, utc_iso
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.scheduler import (
    ScheduleError,
    campaign_overview,
    configure_logging,
    parse_local_time,
    run_forever,
    run_pass,
    schedule_campaign,
)
from newsletter.sender import prepare_campaign

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "scheduler_runner.py"
RULE = "day 1 of each month at 09:00 America/Port_of_Spain"  # 13:00 UTC all year (no daylight saving)
PORT_OF_SPAIN = ZoneInfo("America/Port_of_Spain")
PEOPLE = [(f"reader{number}@example.org", ("en", "es", "pt", "fr")[number % 4]) for number in range(12)]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


@pytest.fixture
def config(tmp_path, smtp):
    (tmp_path / "articles").mkdir()
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "newsletter.toml").write_text(f"""
[newsletter]
database = "newsletter.db"
campaigns_dir = "campaigns"
templates_dir = "{REPO / 'templates'}"
timezone = "America/Port_of_Spain"
smtp_url = "{smtp.url()}"
secret_key = "scheduler-test-secret"
log_file = "logs/scheduler.log"

[sending]
connections = 2
starttls = "never"

[digest]
rules = ["{RULE}"]
articles_dir = "articles"
""", encoding="utf-8")
    loaded = load_config(tmp_path / "newsletter.toml", environ={})
    db = connect(loaded.database)
    for address, language in PEOPLE:
        subscribers.add(db, address, name=address.split("@")[0], language=language, country="TT")
    db.conn.close()
    return loaded


def write_article(config, name: str, day: str) -> None:
    (config.digest.articles_dir / name).write_text(
        f"---\ntitle: News {name}\ndate: {day}\ninterests: [infrastructure]\n---\n\nWhat happened in {name}.\n",
        encoding="utf-8")


def write_campaign(config, slug: str, title: str = "Special issue", send_at: str | None = None) -> Path:
    folder = config.campaigns_dir / slug
    folder.mkdir()
    when = f'send_at = "{send_at}"\n' if send_at else ""
    (folder / "campaign.toml").write_text(f'title = "{title}"\n{when}[subject]\nen = "{title}"\n', encoding="utf-8")
    (folder / "note.md").write_text("---\ntitle: A note\ndate: 2026-11-02\n---\n\nA short note.\n", encoding="utf-8")
    return folder


def received(smtp: FaultServer) -> Counter:
    """How many messages each (campaign, recipient) got, read from the Message-IDs the sender writes."""
    tally: Counter = Counter()
    for message in smtp.accepted:
        slug = email.message_from_bytes(message.data)["Message-ID"].strip("<>").partition("@")[0].rsplit(".", 2)[0]
        for rcpt in message.rcpt_tos:
            tally[slug, rcpt] += 1
    return tally


def everyone_once(slug: str) -> Counter:
    return Counter({(slug, address): 1 for address, _ in PEOPLE})


def digest_runs(config) -> list[dict]:
    db = connect(config.database)
    try:
        return list(db.query("SELECT * FROM digest_runs ORDER BY occurrence"))
    finally:
        db.conn.close()


def campaign_row(config, slug: str) -> dict:
    db = connect(config.database)
    try:
        return campaign_state.get(db, slug)
    finally:
        db.conn.close()


# ---------------------------------------------------------------------------------------------------
# Digests


def test_a_due_digest_is_built_scheduled_and_sent_to_every_subscriber_once(config, smtp):
    write_article(config, "peering.md", "2026-11-20")
    clock = FakeClock(utc(2026, 12, 1, 13, 5))

    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome) for result in results] == [
        ("digest-2026-12", "digest scheduled to send now"), ("digest-2026-12", "sent")]
    assert received(smtp) == everyone_once("digest-2026-12")
    assert campaign_row(config, "digest-2026-12")["state"] == "sent"
    assert run_pass(config, clock=clock) == []  # the next tick finds nothing to do


def test_a_run_missed_during_three_months_of_downtime_is_sent_once_as_the_latest_digest(config, smtp):
    write_article(config, "august.md", "2026-08-20")
    clock = FakeClock(utc(2026, 9, 1, 13, 1))
    run_pass(config, clock=clock)
    write_article(config, "september.md", "2026-09-15")
    write_article(config, "october.md", "2026-10-15")
    write_article(config, "november.md", "2026-11-15")

    clock.set(utc(2026, 12, 3, 8, 0))  # down through the October, November and December occurrences
    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome) for result in results] == [
        ("digest-2026-12", "digest scheduled to send now"), ("digest-2026-12", "sent")]
    assert [(run["occurrence"], run["slug"]) for run in digest_runs(config)] == [
        ("2026-09-01T13:00:00Z", "digest-2026-09"), ("2026-12-01T13:00:00Z", "digest-2026-12")]
    assert sorted(path.name for path in config.campaigns_dir.iterdir()) == ["digest-2026-09", "digest-2026-12"]
    catch_up = load_campaign(config.campaigns_dir / "digest-2026-12", config.tz)
    assert {article.source.name for article in catch_up.articles} == {"september.md", "october.md", "november.md"}
    assert received(smtp) == everyone_once("digest-2026-09") + everyone_once("digest-2026-12")


def test_a_digest_with_no_new_articles_is_skipped_and_the_reason_recorded(config, smtp):
    write_article(config, "old.md", "2026-10-15")
    clock = FakeClock(utc(2026, 12, 1, 14, 0))

    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome) for result in results] == [
        (RULE, "skipped: no new articles since 2026-11-01")]
    [run] = digest_runs(config)
    assert (run["slug"], run["outcome"]) == (None, "skipped: no new articles since 2026-11-01")
    assert "up to 2026-12-01" in run["detail"]
    assert smtp.accepted == [] and not (config.campaigns_dir / "digest-2026-12").exists()
    assert run_pass(config, clock=clock) == []  # decided once; not retried every tick


def test_a_failed_digest_build_is_recorded_and_retried_at_the_next_pass(config, smtp):
    (config.digest.articles_dir / "undated.md").write_text("---\ntitle: No date\n---\n\nText.\n", encoding="utf-8")
    clock = FakeClock(utc(2026, 12, 1, 14, 0))

    [failure] = run_pass(config, clock=clock)
    assert failure.failed and "undated.md: no date" in failure.detail
    assert digest_runs(config)[0]["outcome"] == "failed"

    write_article(config, "undated.md", "2026-11-25")  # the editor adds the date
    results = run_pass(config, clock=clock)

    assert [result.outcome for result in results] == ["digest scheduled to send now", "sent"]
    assert received(smtp) == everyone_once("digest-2026-12")


# ---------------------------------------------------------------------------------------------------
# Campaigns


def test_a_campaign_whose_folder_broke_is_recorded_as_failed_and_the_next_campaign_still_goes_out(config, smtp):
    config.digest.rules = []
    clock = FakeClock(utc(2026, 11, 10, 12, 0))
    db = connect(config.database)
    for slug, minutes in (("2026-11-broken", 1), ("2026-11-fine", 2)):
        write_campaign(config, slug)
        schedule_campaign(config, db, slug, clock.now() + timedelta(minutes=minutes), clock=clock)
    (config.campaigns_dir / "2026-11-broken" / "campaign.toml").write_text("title = [unclosed\n", encoding="utf-8")
    clock.advance(600)

    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome, result.failed) for result in results] == [
        ("2026-11-broken", "failed", True), ("2026-11-fine", "sent", False)]
    assert "campaign.toml: not valid TOML" in campaign_row(config, "2026-11-broken")["last_error"]
    assert campaign_row(config, "2026-11-broken")["state"] == "scheduled"  # tried again next pass
    assert received(smtp) == everyone_once("2026-11-fine")


def test_a_campaign_left_sending_by_a_dead_scheduler_is_finished_by_the_next_pass_without_repeats(config, smtp):
    config.digest.rules = []
    clock = FakeClock(utc(2026, 11, 10, 12, 0))
    write_campaign(config, "2026-11-interrupted")
    db = connect(config.database)
    prepare_campaign(config, db, "2026-11-interrupted", clock)  # queued and 'sending'
    first_rows = [row[0] for row in db.execute("SELECT id FROM deliveries ORDER BY id LIMIT 5")]
    db.execute(f"UPDATE deliveries SET status = 'sent' WHERE id IN ({','.join('?' * 5)})", first_rows)
    db.execute("UPDATE deliveries SET status = 'sending' WHERE status = 'queued' AND id % 2 = 0")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    db.execute("UPDATE campaigns SET lease_owner = ?, lease_until = ? WHERE slug = ?",
               [f"{socket.gethostname()}:{dead.stdout.strip()}:gone", utc_iso(clock.now() + timedelta(minutes=1)),
                "2026-11-interrupted"])

    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome) for result in results] == [("2026-11-interrupted", "sent")]
    already_sent = {row[0] for row in db.execute("SELECT email FROM deliveries WHERE id IN (?, ?, ?, ?, ?)",
                                                 first_rows)}
    expected = Counter({("2026-11-interrupted", address): 1 for address, _ in PEOPLE if address not in already_sent})
    assert received(smtp) == expected


def test_a_campaign_folder_with_send_at_is_registered_and_sent_when_due(config, smtp):
    config.digest.rules = []
    write_campaign(config, "2026-11-announcement", send_at="2026-11-10 09:00")
    write_campaign(config, "2026-11-draft")  # no send_at: left alone
    clock = FakeClock(utc(2026, 11, 10, 12, 0))  # 08:00 in Port of Spain

    results = run_pass(config, clock=clock)
    assert [(result.subject, result.outcome) for result in results] == [("2026-11-announcement", "registered")]
    assert "2026-11-10 09:00 AST" in results[0].detail
    clock.set(utc(2026, 11, 10, 13, 0))
    results = run_pass(config, clock=clock)

    assert [(result.subject, result.outcome) for result in results] == [("2026-11-announcement", "sent")]
    assert campaign_row(config, "2026-11-draft") is None
    assert received(smtp) == everyone_once("2026-11-announcement")


def test_a_new_folder_whose_send_at_passed_long_ago_becomes_a_draft_instead_of_going_out(config, smtp):
    config.digest.rules = []
    write_campaign(config, "2025-01-archive", send_at="2025-01-15 09:00")
    clock = FakeClock(utc(2026, 11, 10, 12, 0))

    [result] = run_pass(config, clock=clock)

    assert (result.subject, result.outcome) == ("2025-01-archive", "registered as a draft")
    row = campaign_row(config, "2025-01-archive")
    assert (row["state"], row["send_at"]) == ("draft", None)
    assert "send_at 2025-01-15 09:00 AST had long passed" in row["last_error"]
    assert run_pass(config, clock=clock) == [] and smtp.accepted == []


def test_two_scheduler_processes_on_one_database_send_each_campaign_once(config, smtp):
    write_article(config, "peering.md", "2026-11-20")
    clock = FakeClock(utc(2026, 11, 30, 12, 0))
    db = connect(config.database)
    for slug in ("2026-11-alpha", "2026-11-beta"):
        write_campaign(config, slug)
        schedule_campaign(config, db, slug, clock.now() + timedelta(minutes=5), clock=clock)
    db.conn.close()
    when = "2026-12-01T13:00:30Z"

    processes = [subprocess.Popen([sys.executable, str(RUNNER), str(config.path), when], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=REPO) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    results = [json.loads(line) for out, _ in outputs for line in out.splitlines()]
    assert not [result for result in results if result["failed"]]
    built = [result for result in results if result["outcome"] == "digest scheduled to send now"]
    assert len(built) == 1 and len(digest_runs(config)) == 1
    assert received(smtp) == (everyone_once("2026-11-alpha") + everyone_once("2026-11-beta")
                                + everyone_once("digest-2026-12"))
    for slug in ("2026-11-alpha", "2026-11-beta", "digest-2026-12"):
        assert campaign_row(config, slug)["state"] == "sent"


# ---------------------------------------------------------------------------------------------------
# The service and the helpers for the campaign commands


class StopAfterFirstSleep(FakeClock):
    """Ends run_forever after its first pass: the loop sleeps once, and that sets the stop event."""

    def __init__(self, start: datetime, stop_event: threading.Event) -> None:
        super().__init__(start)
        self.stop_event = stop_event

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.stop_event.set()


def test_run_forever_passes_at_start_logs_time_campaign_and_outcome_and_stops_on_the_event(config, smtp):
    write_article(config, "peering.md", "2026-11-20")
    stop_event = threading.Event()
    stdout = io.StringIO()
    handlers = configure_logging(config, stream=stdout)
    try:
        run_forever(config, clock=StopAfterFirstSleep(utc(2026, 12, 1, 13, 5), stop_event), stop_event=stop_event)
    finally:
        for handler in handlers:
            logging.getLogger("newsletter").removeHandler(handler)
            handler.close()

    logged = config.log_file.read_text(encoding="utf-8")
    assert logged == stdout.getvalue()
    assert "INFO digest-2026-12: digest scheduled to send now (1 articles for 2026-12-01 09:00 AST)" in logged
    lines = [line for line in logged.splitlines() if "digest-2026-12: sent" in line]
    assert len(lines) == 1 and lines[0][:20].endswith("Z") and lines[0][4] == "-"
    assert logged.splitlines()[-1].endswith("scheduler stopped")
    assert received(smtp) == everyone_once("digest-2026-12")


def test_a_mistyped_rule_stops_run_forever_before_anything_is_sent(config, smtp):
    config.digest.rules = ["every second blue moon"]
    with pytest.raises(ValueError, match="cannot read the rule 'every second blue moon'"):
        run_forever(config, clock=FakeClock(), stop_event=threading.Event())


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01 09:00", utc(2026, 12, 1, 13, 0)),
    ("2026-12-01T09:00:30", utc(2026, 12, 1, 13, 0, 30)),
    ("2026-12-01 09:00-03:00", utc(2026, 12, 1, 12, 0)),
    ("2026-12-01 09:00Z", utc(2026, 12, 1, 9, 0)),
])
def test_local_send_times_are_read_in_the_configured_zone_unless_an_offset_is_given(text, expected):
    assert parse_local_time(text, PORT_OF_SPAIN) == expected


@pytest.mark.parametrize("text, message", [
    ("next tuesday", "is not a date and time; write it as \"2026-12-01 09:00\" (local time in America/Port_of_Spain)"),
    ("2026-12-01", "has no time of day"),
    ("2026-13-01 09:00", "is not a date and time"),
])
def test_unreadable_send_times_say_how_to_write_one(text, message):
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_local_time(text, PORT_OF_SPAIN)


def test_a_send_time_skipped_by_daylight_saving_is_refused():
    with pytest.raises(ScheduleError, match="does not exist in America/New_York"):
        parse_local_time("2026-03-08 02:30", ZoneInfo("America/New_York"))


def test_scheduling_in_the_past_is_refused(config):
    write_campaign(config, "2026-11-late")
    clock = FakeClock(utc(2026, 11, 10, 12, 0))
    db = connect(config.database)
    with pytest.raises(ScheduleError, match="2026-11-10 07:00 AST is in the past"):
        schedule_campaign(config, db, "2026-11-late", parse_local_time("2026-11-10 07:00", config.tz), clock=clock)


def test_campaign_overview_lists_states_local_send_times_counts_and_unrecorded_folders(config, smtp):
    config.digest.rules = []
    clock = FakeClock(utc(2026, 11, 10, 12, 0))
    db = connect(config.database)
    write_campaign(config, "2026-11-later", title="Later")
    schedule_campaign(config, db, "2026-11-later", parse_local_time("2026-12-05 10:30", config.tz), clock=clock)
    write_campaign(config, "2026-11-sent", title="Sent already")
    schedule_campaign(config, db, "2026-11-sent", clock.now() + timedelta(minutes=1), clock=clock)
    clock.advance(120)
    run_pass(config, clock=clock)
    write_campaign(config, "2026-11-new", title="Not recorded")

    overview = {entry["slug"]: entry for entry in campaign_overview(config, db, clock)}

    later = overview["2026-11-later"]
    assert (later["title"], later["state"]) == ("Later", "scheduled")
    assert later["next_send"].strftime("%Y-%m-%d %H:%M %Z") == "2026-12-05 10:30 AST"
    sent = overview["2026-11-sent"]
    assert (sent["state"], sent["next_send"], sent["counts"]["sent"]) == ("sent", None, len(PEOPLE))
    new = overview["2026-11-new"]
    assert (new["title"], new["state"], new["next_send"]) == ("Not recorded", "new", None)


def test_a_first_start_long_after_an_occurrence_records_it_instead_of_mailing_everyone_late(config, smtp):
    write_article(config, "november.md", "2026-11-20")
    clock = FakeClock(utc(2026, 12, 9, 10, 0))  # installed eight days after the December occurrence

    results = run_pass(config, clock=clock)

    assert [result.outcome for result in results] == ["skipped: before the scheduler's first start"]
    assert received(smtp) == Counter()
    assert [(run["occurrence"], run["slug"], run["outcome"]) for run in digest_runs(config)] == [
        ("2026-12-01T13:00:00Z", None, "skipped: before the scheduler's first start")]
    write_article(config, "december.md", "2026-12-15")
    clock.set(utc(2027, 1, 1, 13, 1))  # the next occurrence goes out, with the articles since December's
    results = run_pass(config, clock=clock)
    assert ("digest-2027-01", "sent") in [(result.subject, result.outcome) for result in results]
    january = load_campaign(config.campaigns_dir / "digest-2027-01", config.tz)
    assert [article.source.name for article in january.articles] == ["december.md"]
