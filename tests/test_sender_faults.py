"""How the sending engine copes with what relays answer: one real campaign through a misbehaving SMTP server
on loopback, one subscriber per fault, then the final state of every delivery row. Also the pure decision
table and the growth of the back-off."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sending_support import SLUG, add_subscribers, delivery_rows, row_state, write_config
from smtp_servers import (
    MAILBOX_FULL,
    OUT_OF_STORAGE,
    RATE_LIMITED,
    REFUSED_BY_POLICY,
    SERVICE_CLOSING,
    TRY_AGAIN,
    USER_UNKNOWN,
    FaultServer,
)

from newsletter import campaign_state, subscribers
from newsletter.clock import FakeClock, parse_utc
from newsletter.config import SendingSettings
from newsletter.db import connect
from newsletter.sender import Decision, decide, send_campaign
from newsletter.suppressions import is_suppressed
from newsletter.transport import Reply

MAX_ATTEMPTS = 4
RETRY_BASE = 60.0
HEALTHY = 12

# address -> (status, attempts, last_code, last_enhanced, last_text) once the run has waited out every retry;
# the text of a dropped connection is compared by its start, as the socket error depends on timing
EXPECTED = {
    "closing@example.org": ("failed", MAX_ATTEMPTS, 421, "4.3.2", "Service shutting down, closing connection"),
    "try-again@example.org": ("failed", MAX_ATTEMPTS, 451, "4.3.0", "Temporary local problem, try again later"),
    "over-quota@example.org": ("failed", MAX_ATTEMPTS, 452, "4.2.2", "Mailbox over quota, try again later"),
    "unknown@example.org": ("bounced", 1, 550, "5.1.1", "User unknown"),
    "full@example.org": ("failed", 1, 552, "5.2.2", "Mailbox full"),
    "policy@example.org": ("failed", 1, 554, "5.7.1", "Message refused by policy"),
    "dropped@example.org": ("failed", MAX_ATTEMPTS, 0, "", "connection lost: "),
    "slow@example.org": ("sent", 1, 250, "2.0.0", "OK: queued"),
    "twice@example.org": ("sent", 3, 250, "2.0.0", "OK: queued"),
}
DELIVERED_IN_THE_END = ("slow@example.org", "twice@example.org")
REFUSED_FOR_GOOD = [address for address in EXPECTED if address not in DELIVERED_IN_THE_END]


@pytest.fixture(scope="module", params=[False, True], ids=["lockstep", "pipelining"])
def campaign_run(tmp_path_factory, request):
    """Send the sample campaign once through every fault, waiting out the retries on a fake clock; once
    to a relay that offers PIPELINING (the envelope in one write) and once to one that does not."""
    folder = tmp_path_factory.mktemp("faults")
    with FaultServer(pipelining=request.param) as server:
        server.fail("closing@example.org", SERVICE_CLOSING)
        server.fail("try-again@example.org", TRY_AGAIN)
        server.fail("over-quota@example.org", OUT_OF_STORAGE, at="DATA")
        server.fail("unknown@example.org", USER_UNKNOWN)
        server.fail("full@example.org", MAILBOX_FULL, at="DATA")
        server.fail("policy@example.org", REFUSED_BY_POLICY, at="DATA")
        server.drop_during_data("dropped@example.org")
        server.delay("slow@example.org", 0.05)
        server.fail("twice@example.org", TRY_AGAIN, at="DATA", times=2)
        config = write_config(folder, server.url(), connections=3, max_attempts=MAX_ATTEMPTS,
                              retry_base_seconds=RETRY_BASE)
        db = connect(config.database)
        clock = FakeClock(datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc))
        healthy = add_subscribers(db, HEALTHY, clock=clock)
        for number, address in enumerate(EXPECTED):
            subscribers.add(db, address, name=address.partition("@")[0], country=("TT", "BR", "MX")[number % 3],
                            clock=clock)
        summary = send_campaign(config, SLUG, clock=clock, wait_for_retries=True)
    yield {"db": db, "server": server, "summary": summary, "healthy": healthy, "clock": clock}
    db.conn.close()


@pytest.mark.parametrize("address", EXPECTED)
def test_each_fault_leaves_its_delivery_row_in_the_documented_final_state(campaign_run, address):
    row = delivery_rows(campaign_run["db"])[address]
    *outcome, text = row_state(row)
    *expected_outcome, expected_text = EXPECTED[address]
    assert outcome == expected_outcome
    assert text.startswith(expected_text) if expected_text.endswith(": ") else text == expected_text
    assert row["next_attempt_at"] is None


def test_a_refused_recipient_does_not_stop_the_others_each_of_whom_gets_exactly_one_message(campaign_run):
    rows, server = delivery_rows(campaign_run["db"]), campaign_run["server"]
    for address in campaign_run["healthy"]:
        assert row_state(rows[address]) == ("sent", 1, 250, "2.0.0", "OK: queued")
        assert len(server.accepted_for(address)) == 1
    for address in DELIVERED_IN_THE_END:
        assert len(server.accepted_for(address)) == 1
    for address in REFUSED_FOR_GOOD:
        assert server.accepted_for(address) == []


def test_the_run_ends_finished_and_the_campaign_is_marked_sent(campaign_run):
    summary = campaign_run["summary"]
    assert summary.finished and summary.stopped_reason is None and summary.next_retry_at is None
    assert summary.counts["sent"] == HEALTHY + len(DELIVERED_IN_THE_END)
    assert summary.counts["bounced"] == 1 and summary.counts["failed"] == len(REFUSED_FOR_GOOD) - 1
    assert campaign_state.get(campaign_run["db"], SLUG)["state"] == "sent"


def test_an_unknown_mailbox_at_smtp_time_bounces_the_subscriber_suppresses_the_address_and_logs_the_event(
        campaign_run):
    db = campaign_run["db"]
    row = delivery_rows(db)["unknown@example.org"]
    assert subscribers.get(db, "unknown@example.org")["status"] == "bounced"
    assert list(db.query("SELECT reason FROM suppressions WHERE email = 'unknown@example.org'")) == [
        {"reason": "hard-bounce"}]
    events = list(db.query("SELECT delivery_id, subscriber_id, kind, code, source FROM bounce_events"))
    assert events == [{"delivery_id": row["id"], "subscriber_id": row["subscriber_id"], "kind": "hard",
                       "code": "5.1.1", "source": "smtp"}]


@pytest.mark.parametrize("address", [a for a in REFUSED_FOR_GOOD if a != "unknown@example.org"])
def test_other_refusals_fail_the_delivery_but_leave_the_subscriber_active_and_unsuppressed(campaign_run, address):
    db = campaign_run["db"]
    assert subscribers.get(db, address)["status"] == "active"
    assert not is_suppressed(db, address)


def test_retries_wait_a_growing_back_off_on_the_clock(campaign_run):
    """Attempt n waits base x 2^(n-1), plus up to a quarter of jitter; the fake clock shows the sum."""
    rows = delivery_rows(campaign_run["db"])
    twice = rows["twice@example.org"]
    waited = (parse_utc(twice["sent_at"]) - parse_utc(twice["created_at"])).total_seconds()
    assert RETRY_BASE * (1 + 2) <= waited <= RETRY_BASE * (1 + 2) * 1.25 + 10
    given_up = rows["try-again@example.org"]
    waited = (parse_utc(given_up["updated_at"]) - parse_utc(given_up["created_at"])).total_seconds()
    assert RETRY_BASE * (1 + 2 + 4) <= waited <= RETRY_BASE * (1 + 2 + 4) * 1.25 + 10


# -- decide(): the reply -> next state table, without any server ------------------------------------------

SETTINGS = SendingSettings(max_attempts=MAX_ATTEMPTS, retry_base_seconds=RETRY_BASE, retry_max_seconds=3600.0)
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class FixedJitter(random.Random):
    """A random source that always draws the same fraction, to pin the jitter at its bounds."""

    def __init__(self, fraction: float) -> None:
        super().__init__()
        self.fraction = fraction

    def random(self) -> float:
        return self.fraction


@pytest.mark.parametrize("reply, decision", [
    (Reply(250, "2.0.0", "OK", "DATA"), Decision("sent")),
    (Reply(550, "5.1.1", "User unknown", "RCPT"), Decision("bounced", bounce=True)),
    (Reply(550, "", "No such user here", "RCPT"), Decision("bounced", bounce=True)),
    (Reply(552, "5.2.2", "Mailbox full", "DATA"), Decision("failed")),
    (Reply(554, "5.7.1", "Message refused by policy", "DATA"), Decision("failed")),
    (Reply(550, "5.1.1", "Sender address rejected", "MAIL"), Decision("failed")),
    (Reply(553, "5.1.8", "Bad sender domain", "RCPT"), Decision("failed")),
], ids=["250", "550-5.1.1", "550-prose-unknown", "552-5.2.2", "554-5.7.1", "5.1.1-at-MAIL", "5.1.8-our-sender"])
def test_decide_maps_final_replies_to_a_final_status(reply, decision):
    assert decide(reply, 0, SETTINGS, NOW, FixedJitter(0.5)) == decision


@pytest.mark.parametrize("reply, slow_down", [
    (Reply(421, "4.3.2", "Service shutting down", "RCPT"), False),
    (Reply(451, "4.3.0", "Try again later", "DATA"), False),
    (Reply(452, "4.2.2", "Over quota", "DATA"), False),
    (Reply(0, "", "connection lost", "DATA"), False),
    (Reply(421, "4.7.0", "Too many messages, rate limit exceeded", "RCPT"), True),
], ids=["421", "451", "452", "dropped", "421-rate-limit"])
def test_decide_defers_temporary_replies_and_asks_to_slow_down_only_for_policy(reply, slow_down):
    decision = decide(reply, 0, SETTINGS, NOW, FixedJitter(0.0))
    assert decision == Decision("deferred", next_attempt_at=NOW + timedelta(seconds=RETRY_BASE), slow_down=slow_down)


def test_decide_gives_up_on_a_temporary_reply_at_the_last_attempt():
    reply = Reply(451, "4.3.0", "Try again later", "DATA")
    assert decide(reply, MAX_ATTEMPTS - 2, SETTINGS, NOW).status == "deferred"
    assert decide(reply, MAX_ATTEMPTS - 1, SETTINGS, NOW) == Decision("failed")
    assert decide(Reply.from_smtp(421, RATE_LIMITED[4:], "RCPT"), MAX_ATTEMPTS - 1, SETTINGS, NOW) == Decision(
        "failed", slow_down=True)


def test_back_off_doubles_per_attempt_within_a_quarter_of_jitter_and_stops_growing_at_the_cap():
    settings = SendingSettings(max_attempts=20, retry_base_seconds=RETRY_BASE, retry_max_seconds=3600.0)
    reply = Reply(451, "4.3.0", "Try again later", "DATA")
    rng = random.Random(20261201)
    for attempts_before in range(12):
        expected = min(3600.0, RETRY_BASE * 2 ** attempts_before)
        for _ in range(50):
            delay = (decide(reply, attempts_before, settings, NOW, rng).next_attempt_at - NOW).total_seconds()
            assert expected <= delay <= expected * 1.25
        low = decide(reply, attempts_before, settings, NOW, FixedJitter(0.0)).next_attempt_at
        high = decide(reply, attempts_before, settings, NOW, FixedJitter(0.999999)).next_attempt_at
        assert (low - NOW).total_seconds() == expected
        assert (high - NOW).total_seconds() == pytest.approx(expected * 1.25, rel=1e-5)


def test_jitter_spreads_retries_of_a_batch_that_failed_together():
    reply = Reply(451, "4.3.0", "Try again later", "DATA")
    rng = random.Random(7)
    times = {decide(reply, 2, SETTINGS, NOW, rng).next_attempt_at for _ in range(100)}
    assert len(times) > 90
