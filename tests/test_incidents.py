"""After an incident: the scheduler's circuit breaker for a campaign paused by a fault (tries with a growing
wait, each logged, and everyone sent once when the relay is fixed), the progress lines of a long send,
`deliveries retry`, `scheduler --next` and the digest row of `campaign list`. Real SQLite, real SMTP servers
on loopback, a FakeClock the test sets."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sending_support import SLUG, add_subscribers, delivery_rows, row_state, run_cli, write_config
from smtp_servers import MAILBOX_FULL, FaultServer

from newsletter import campaign_state, subscribers
from newsletter.clock import FakeClock, parse_utc
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.scheduler import campaign_overview, run_pass, schedule_campaign, upcoming
from newsletter.suppressions import suppress

START = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
SENT_ONCE = ("sent", 1, 250, "2.0.0", "OK: queued")
UNTOUCHED = ("queued", 0, None, None, None)
RULE = "first tuesday of each month at 09:00 America/Port_of_Spain"


def messages_per_address(server: FaultServer) -> Counter:
    return Counter(rcpt for message in server.accepted for rcpt in message.rcpt_tos)


def scheduler_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "newsletter.scheduler"]


def test_the_scheduler_retries_a_campaign_paused_by_a_fault_with_a_growing_wait_and_logs_each_try(
        tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    clock = FakeClock(START)
    with FaultServer(credentials=("news", "s3cret"), auth_over_plain=True) as server:
        wrong = write_config(tmp_path, f"smtp://news:typo@127.0.0.1:{server.port}")
        db = connect(wrong.database)
        addresses = add_subscribers(db, 8, clock=clock)
        schedule_campaign(wrong, db, SLUG, START + timedelta(minutes=5), clock=clock)
        tries_at = []

        for minute in range(5, 30):  # a pass a minute, as `newsletter scheduler` makes them
            clock.set(START + timedelta(minutes=minute))
            results = run_pass(wrong, clock=clock)
            if results:
                tries_at.append(minute)
                assert [(result.outcome, result.failed) for result in results] == [("paused by a fault", True)]
                assert "refused the login" in results[0].detail and "next try at" in results[0].detail

        assert tries_at == [5, 6, 8, 12, 20]  # 1, 2, 4, 8 minutes between tries: a breaker, not a storm
        row = campaign_state.get(db, SLUG)
        assert (row["state"], row["paused_by"], row["fault_tries"]) == ("paused", "fault", 5)
        assert parse_utc(row["fault_retry_at"]) == START + timedelta(minutes=20 + 16)
        assert {address: row_state(r) for address, r in delivery_rows(db).items()} == {
            address: UNTOUCHED for address in addresses}
        lines = scheduler_lines(caplog)
        assert [line for line in lines if "trying again" in line][-1].startswith(f"{SLUG}: trying again (try 5)")
        assert sum("paused by a fault" in line for line in lines) == 5

        fixed = write_config(tmp_path, f"smtp://news:s3cret@127.0.0.1:{server.port}")
        clock.set(START + timedelta(minutes=35))
        assert run_pass(fixed, clock=clock) == []  # the next try is not due yet
        clock.set(START + timedelta(minutes=36))
        [result] = run_pass(fixed, clock=clock)

        assert result.outcome == "sent" and not result.failed
        assert {address: row_state(r) for address, r in delivery_rows(db).items()} == {
            address: SENT_ONCE for address in addresses}
        assert messages_per_address(server) == Counter({address: 1 for address in addresses})
        row = campaign_state.get(db, SLUG)
        assert (row["state"], row["paused_by"], row["pause_reason"], row["fault_tries"]) == ("sent", None, None, 0)


def test_a_pause_by_an_operator_is_never_lifted_by_the_scheduler_or_send(tmp_path, smtp):
    clock = FakeClock(START)
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    add_subscribers(db, 3, clock=clock)
    schedule_campaign(config, db, SLUG, START + timedelta(minutes=5), clock=clock)
    campaign_state.pause(db, SLUG, clock)

    clock.set(START + timedelta(days=1))
    assert run_pass(config, clock=clock) == []
    result = run_cli(config, "send", SLUG)

    assert result.returncode == 3 and "paused" in result.stdout
    row = campaign_state.get(db, SLUG)
    assert (row["state"], row["paused_by"], row["pause_reason"]) == ("paused", "operator", "paused by an operator")
    assert smtp.accepted == []


def test_a_long_send_logs_progress_at_least_every_30_seconds(tmp_path, smtp, caplog):
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    clock = FakeClock(START)
    config = write_config(tmp_path, smtp.url(), connections=2, rate_per_second=2)
    db = connect(config.database)
    add_subscribers(db, 150, clock=clock)  # 75 s of sending at 2 a second, on the fake clock
    schedule_campaign(config, db, SLUG, START + timedelta(minutes=1), clock=clock)
    clock.set(START + timedelta(minutes=1))

    [result] = run_pass(config, clock=clock)

    assert result.outcome == "sent"
    progress = [line for line in scheduler_lines(caplog) if ": sending: " in line]
    assert len(progress) >= 2
    first = progress[0]
    assert first.startswith(f"{SLUG}: sending: ") and " sent, 0 deferred, 0 failed in this run; " in first
    assert "msg/s; ETA " in first and "ETA unknown" not in first


def test_deliveries_retry_requeues_the_failed_but_never_anyone_who_left_or_is_suppressed_since(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    addresses = add_subscribers(db, 8)
    full = addresses[:4]
    for address in full:
        smtp.fail(address, MAILBOX_FULL, at="DATA")
    assert run_cli(config, "send", SLUG).returncode == 3
    failed = ("failed", 1, 552, "5.2.2", "Mailbox full")
    assert {a: row_state(r) for a, r in delivery_rows(db).items()} == {
        a: failed if a in full else SENT_ONCE for a in addresses}
    subscribers.unsubscribe(db, subscribers.get(db, full[0])["id"])
    suppress(db, full[1], "manual", "test")
    smtp.clear_faults()

    result = run_cli(config, "deliveries", "retry", SLUG, "--note", "relay full for an hour")

    assert result.returncode == 0, result.stderr
    assert "2 deliveries queued again; 2 left alone" in result.stdout
    requeued = ("queued", 0, 552, "5.2.2", "Mailbox full")
    assert {a: row_state(r) for a, r in delivery_rows(db).items()} == {
        full[0]: failed, full[1]: failed, full[2]: requeued, full[3]: requeued,
        **{a: SENT_ONCE for a in addresses[4:]}}
    assert campaign_state.get(db, SLUG)["state"] == "sending"
    assert list(db.query("SELECT campaign, statuses, requeued, refused, note FROM requeues")) == [
        {"campaign": SLUG, "statuses": "failed", "requeued": 2, "refused": 2, "note": "relay full for an hour"}]

    assert run_cli(config, "send", SLUG).returncode == 3  # the two who left stay failed
    assert {a: row_state(r) for a, r in delivery_rows(db).items()} == {
        full[0]: failed, full[1]: failed, **{a: SENT_ONCE for a in addresses[2:]}}
    assert messages_per_address(smtp) == Counter({a: 1 for a in addresses[2:]})
    assert campaign_state.get(db, SLUG)["state"] == "sent"


def test_deliveries_retry_since_takes_only_rows_tried_at_or_after_that_time(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    addresses = add_subscribers(db, 4)
    for address in addresses:
        smtp.fail(address, MAILBOX_FULL, at="DATA")
    run_cli(config, "send", SLUG)
    db.execute("UPDATE deliveries SET updated_at = '2026-11-30T10:00:00Z' WHERE email IN (?, ?)", addresses[:2])
    db.execute("UPDATE deliveries SET updated_at = '2026-12-01T10:00:00Z' WHERE email IN (?, ?)", addresses[2:])

    result = run_cli(config, "deliveries", "retry", SLUG, "--since", "2026-12-01 00:00")  # in UTC here

    assert "2 deliveries queued again; 0 left alone" in result.stdout
    assert [delivery_rows(db)[a]["status"] for a in addresses] == ["failed", "failed", "queued", "queued"]


def test_deliveries_retry_refuses_a_cancelled_campaign_in_one_line(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    add_subscribers(db, 2)
    smtp.fail("*", MAILBOX_FULL, at="DATA")
    run_cli(config, "send", SLUG)
    campaign_state.set_state(db, SLUG, "cancelled")

    result = run_cli(config, "deliveries", "retry", SLUG)

    assert result.returncode == 1 and "is cancelled" in result.stderr and "Traceback" not in result.stderr


def with_digest_rule(config):
    text = config.path.read_text(encoding="utf-8").replace('timezone = ', 'timezone_unused = ')
    text = text.replace("[newsletter]\n", '[newsletter]\ntimezone = "America/Santiago"\n', 1)
    config.path.write_text(text + f'\n[digest]\nrules = ["{RULE}"]\n', encoding="utf-8")
    return load_config(config.path, environ={})


def test_scheduler_next_lists_digests_and_campaigns_in_the_rules_zone_and_the_bureaus(tmp_path, smtp):
    config = with_digest_rule(write_config(tmp_path, smtp.url()))
    db = connect(config.database)
    clock = FakeClock(START)  # Tuesday 1 December 2026, 09:00 in Port of Spain: the occurrence itself
    schedule_campaign(config, db, SLUG, datetime(2026, 12, 20, 15, 0, tzinfo=timezone.utc), clock=clock)

    runs = upcoming(config, db, clock)

    santiago, port_of_spain = ZoneInfo("America/Santiago"), ZoneInfo("America/Port_of_Spain")
    assert [(run.what, run.when, run.local) for run in runs] == [
        (SLUG, datetime(2026, 12, 20, 12, 0, tzinfo=santiago), datetime(2026, 12, 20, 12, 0, tzinfo=santiago)),
        ("digest", datetime(2027, 1, 5, 10, 0, tzinfo=santiago), datetime(2027, 1, 5, 9, 0, tzinfo=port_of_spain)),
        ("digest", datetime(2027, 2, 2, 10, 0, tzinfo=santiago), datetime(2027, 2, 2, 9, 0, tzinfo=port_of_spain)),
        ("digest", datetime(2027, 3, 2, 10, 0, tzinfo=santiago), datetime(2027, 3, 2, 9, 0, tzinfo=port_of_spain)),
    ]
    assert [entry["state"] for entry in campaign_overview(config, db, clock)] == ["scheduled", "digest"]
    digest_row = campaign_overview(config, db, clock)[-1]
    assert (digest_row["title"], digest_row["next_send"]) == (RULE, datetime(2027, 1, 5, 10, 0, tzinfo=santiago))

    shown = run_cli(config, "scheduler", "--next")
    assert shown.returncode == 0
    assert "digest" in shown.stdout and "AST" in shown.stdout and SLUG in shown.stdout
