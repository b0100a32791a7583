"""Steering a campaign that is being sent: queuing, unsubscribes at send time, pause and resume, cancel,
Ctrl-C, the lease that keeps a second sender out, staff test sends, and VERP return paths. Every run goes
through a real SMTP server on loopback; the other party (the operator, a second process) acts from a
progress callback, that is from a sending thread with its own database connection, mid-run."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sending_support import BOUNCE_ADDRESS, SECRET, SLUG, add_subscribers, delivery_rows, status_counts, \
    write_config
from smtp_servers import FaultServer

from newsletter import campaign_state, deliveries, subscribers
from newsletter.campaigns import load_campaign
from newsletter.clock import FakeClock
from newsletter.config import Config
from newsletter.db import connect
from newsletter.segments import parse_segment
from newsletter.sender import CampaignSender, prepare_campaign, send_campaign, send_test
from newsletter.verp import parse_verp


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_config(tmp_path: Path, smtp: FaultServer, **sending) -> Config:
    return write_config(tmp_path, smtp.url(), **sending)


def messages_per_address(smtp: FaultServer) -> Counter:
    return Counter(rcpt for message in smtp.accepted for rcpt in message.rcpt_tos)


def after(count: int, action):
    """A progress callback that runs `action` (with its own database connection) once `count` results are in."""
    seen = []
    lock = threading.Lock()

    def progress(status: str) -> None:
        with lock:
            seen.append(status)
            if len(seen) != count:
                return
        action()

    return progress


def test_queuing_twice_adds_nothing_and_a_second_send_sends_nothing(tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp)
    db = connect(config.database)
    addresses = add_subscribers(db, 15)
    prepare_campaign(config, db, SLUG, clock)
    prepare_campaign(config, db, SLUG, clock)
    assert deliveries.queue(db, SLUG, parse_segment("status:active", db), clock) == 0
    assert status_counts(db) == {"queued": 15}

    first = send_campaign(config, SLUG, clock=clock)
    second = send_campaign(config, SLUG, clock=clock)

    assert (first.sent_now, second.sent_now) == (15, 0)
    assert second.finished and second.stopped_reason is None
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})


def test_a_subscriber_who_unsubscribes_after_queuing_is_skipped_at_send_time_and_gets_nothing(tmp_path, smtp,
                                                                                              clock):
    config = make_config(tmp_path, smtp)
    db = connect(config.database)
    addresses = add_subscribers(db, 6)
    prepare_campaign(config, db, SLUG, clock)
    leaver = subscribers.get(db, addresses[2])
    subscribers.unsubscribe(db, leaver["id"], clock=clock)

    summary = send_campaign(config, SLUG, clock=clock)

    row = delivery_rows(db)[leaver["email"]]
    assert (row["status"], row["attempts"], row["last_text"]) == (
        "skipped", 0, "not active or suppressed at send time")
    assert smtp.accepted_for(leaver["email"]) == []
    assert summary.counts["sent"] == 5 and summary.finished


def test_an_unsubscribe_during_the_run_is_honoured_for_a_row_already_claimed(tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp, connections=1)
    db = connect(config.database)
    addresses = add_subscribers(db, 30)
    last = subscribers.get(db, addresses[-1])

    summary = send_campaign(config, SLUG, clock=clock, progress=after(
        3, lambda: subscribers.unsubscribe(connect(config.database), last["id"], clock=clock)))

    assert delivery_rows(db)[last["email"]]["status"] == "skipped"
    assert smtp.accepted_for(last["email"]) == []
    assert summary.counts["sent"] == 29 and summary.finished


def test_pause_from_another_connection_stops_the_run_and_resume_finishes_with_everyone_exactly_once(
        tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp, connections=2, batch_size=4)
    db = connect(config.database)
    addresses = add_subscribers(db, 60)
    pause = after(5, lambda: campaign_state.pause(connect(config.database), SLUG, clock))

    paused = send_campaign(config, SLUG, clock=clock, progress=pause)

    counts = status_counts(db)
    assert paused.stopped_reason == "paused" and not paused.finished
    assert "sending" not in counts and counts["queued"] > 0
    assert campaign_state.get(db, SLUG)["state"] == "paused"
    assert send_campaign(config, SLUG, clock=clock).stopped_reason == "paused"  # stays paused until resumed
    assert counts["sent"] == len(smtp.accepted)

    campaign_state.resume(db, SLUG, clock)
    finished = send_campaign(config, SLUG, clock=clock)

    assert finished.finished and finished.stopped_reason is None
    assert status_counts(db) == {"sent": 60}
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})
    assert campaign_state.get(db, SLUG)["state"] == "sent"


@pytest.mark.parametrize("control", ["pause", "cancel"])
def test_pause_and_cancel_take_effect_within_the_messages_already_on_their_way(tmp_path, smtp, clock, control):
    """With the default batch size a whole batch (500) was claimed before the state was looked at again.
    Once the pause is committed, each connection may finish the one message it has on the wire, no more."""
    connections = 2
    config = make_config(tmp_path, smtp, connections=connections)
    db = connect(config.database)
    add_subscribers(db, 80)
    accepted_when_said = []

    def say() -> None:
        getattr(campaign_state, control)(connect(config.database), SLUG, clock)
        accepted_when_said.append(len(smtp.accepted))

    summary = send_campaign(config, SLUG, clock=clock, progress=after(5, say))

    assert summary.stopped_reason == {"pause": "paused", "cancel": "cancelled"}[control]
    assert len(smtp.accepted) <= accepted_when_said[0] + connections
    assert "sending" not in status_counts(db)


def test_cancel_marks_everything_not_yet_sent_skipped_and_nothing_more_is_sent(tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp, connections=2, batch_size=4)
    db = connect(config.database)
    add_subscribers(db, 60)
    cancel = after(5, lambda: campaign_state.cancel(connect(config.database), SLUG, clock))

    summary = send_campaign(config, SLUG, clock=clock, progress=cancel)
    again = send_campaign(config, SLUG, clock=clock)

    counts = status_counts(db)
    assert summary.stopped_reason == "cancelled" and again.stopped_reason == "cancelled"
    assert set(counts) == {"sent", "skipped"} and counts["skipped"] > 0
    assert counts["sent"] == len(smtp.accepted) and again.sent_now == 0
    for address, row in delivery_rows(db).items():
        assert len(smtp.accepted_for(address)) == (1 if row["status"] == "sent" else 0)
    assert campaign_state.get(db, SLUG)["state"] == "cancelled"


def test_a_cancel_while_the_last_batch_is_on_its_way_ends_the_run_cancelled_not_sent(tmp_path, smtp, clock):
    """Five rows fit the threads' queue at once, so the main thread is already waiting for the last results."""
    config = make_config(tmp_path, smtp, connections=1)
    db = connect(config.database)
    add_subscribers(db, 5)
    cancel = after(2, lambda: campaign_state.cancel(connect(config.database), SLUG, clock))

    summary = send_campaign(config, SLUG, clock=clock, progress=cancel)

    assert summary.stopped_reason == "cancelled"
    assert campaign_state.get(db, SLUG)["state"] == "cancelled"
    assert len(smtp.accepted) <= 3


def test_the_stop_event_ctrl_c_sets_leaves_a_consistent_log_that_a_second_run_finishes(tmp_path, smtp, clock):
    connections = 3
    config = make_config(tmp_path, smtp, connections=connections)
    db = connect(config.database)
    addresses = add_subscribers(db, 50)
    stop = threading.Event()
    accepted_when_stopped = []

    def ctrl_c() -> None:
        stop.set()
        accepted_when_stopped.append(len(smtp.accepted))

    interrupted = send_campaign(config, SLUG, clock=clock, stop=stop, progress=after(7, ctrl_c))

    counts = status_counts(db)
    assert interrupted.stopped_reason == "interrupted" and not interrupted.finished
    assert set(counts) == {"sent", "queued"}
    assert counts["sent"] == len(smtp.accepted) <= accepted_when_stopped[0] + connections
    assert campaign_state.get(db, SLUG)["lease_owner"] is None

    finished = send_campaign(config, SLUG, clock=clock)

    assert finished.finished and status_counts(db) == {"sent": 50}
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})


def second_sender(config: Config, clock: FakeClock, results: list):
    def run() -> None:
        campaign = load_campaign(config.campaigns_dir / SLUG, config.tz)
        results.append(CampaignSender(config, campaign, clock=clock, connections=1).run())
    return run


def test_a_second_sender_is_locked_out_while_the_first_holds_the_lease(tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp, connections=2)
    db = connect(config.database)
    addresses = add_subscribers(db, 30)
    results = []

    first = send_campaign(config, SLUG, clock=clock, progress=after(10, second_sender(config, clock, results)))

    assert [summary.stopped_reason for summary in results] == ["locked"]
    assert results[0].sent_now == 0
    assert first.finished and first.stopped_reason is None
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})
    assert campaign_state.get(db, SLUG)["lease_owner"] is None


def test_the_lease_is_renewed_while_a_slow_batch_is_sent_so_no_second_sender_takes_it_over(tmp_path, smtp, clock):
    """At one message a second, a 100-message batch outlives the 60 s lease unless the sender renews it."""
    config = make_config(tmp_path, smtp, connections=1, rate_per_second=1)
    db = connect(config.database)
    addresses = add_subscribers(db, 100)
    results = []

    send_campaign(config, SLUG, clock=clock, progress=after(70, second_sender(config, clock, results)))

    assert [summary.stopped_reason for summary in results] == ["locked"]
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})


def test_a_test_send_reaches_staff_with_a_test_subject_and_adds_no_delivery_rows(tmp_path, smtp):
    config = make_config(tmp_path, smtp)
    db = connect(config.database)
    add_subscribers(db, 3)
    staff = ["editor@lac.example.org", "reader0002@example.org"]

    results = send_test(config, SLUG, staff)

    assert [(address, reply.code) for address, reply in results] == [(address, 250) for address in staff]
    assert messages_per_address(smtp) == Counter(staff)
    for address in staff:
        assert b"Subject: [TEST] " in smtp.accepted_for(address)[0]
    assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


def test_each_message_carries_a_verp_return_path_that_maps_back_to_its_delivery(tmp_path, smtp, clock):
    config = make_config(tmp_path, smtp, connections=2)
    db = connect(config.database)
    add_subscribers(db, 20)

    send_campaign(config, SLUG, clock=clock)

    rows = delivery_rows(db)
    assert len(smtp.accepted) == 20
    for message in smtp.accepted:
        (address,) = message.rcpt_tos
        assert message.mail_from.startswith("bounces+d") and message.mail_from.endswith("@lac.example.org")
        assert parse_verp(message.mail_from, BOUNCE_ADDRESS, SECRET) == rows[address]["id"]
    assert len({message.mail_from for message in smtp.accepted}) == 20


def test_a_pause_is_seen_while_the_run_waits_for_a_retry(tmp_path, smtp):
    """With --wait, a run sleeping until a retry is due still stops soon after a pause."""
    from newsletter import campaign_state
    from newsletter.clock import FakeClock
    from newsletter.db import connect
    from newsletter.sender import send_campaign

    from sending_support import add_subscribers, write_config

    config = write_config(tmp_path, smtp.url(), retry_base_seconds=3600)
    db = connect(config.database)
    [address] = add_subscribers(db, 1)
    smtp.fail(address, "451 4.3.0 Try again later", times=None)
    clock = FakeClock()
    started = clock.now()

    class PausingClock(FakeClock):
        def sleep(self, seconds):
            clock.sleep(seconds)
            campaign_state.pause(db, "2026-12-lac-digest")

        def now(self):
            return clock.now()

        def monotonic(self):
            return clock.monotonic()

    summary = send_campaign(config, "2026-12-lac-digest", clock=PausingClock(), wait_for_retries=True)
    assert summary.stopped_reason == "paused"
    # the retry was an hour away: the run noticed the pause after one short step, not after the hour
    assert (clock.now() - started).total_seconds() < 60
