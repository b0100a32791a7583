"""The rate limiter on a fake clock: even spacing, a rolling hour, and the pause that grows while the relay
keeps pushing back; then the whole engine held to its rate through a real SMTP server."""

from __future__ import annotations

import heapq
import random

import pytest
from sending_support import SLUG, add_subscribers, status_counts, write_config
from smtp_servers import FaultServer

from newsletter.clock import FakeClock
from newsletter.db import connect
from newsletter.ratelimit import RateLimiter
from newsletter.sender import send_campaign


def test_per_second_spacing_holds_over_a_hundred_acquires():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=20)
    moments = []
    for _ in range(100):
        limiter.acquire()
        moments.append(clock.monotonic())
    assert moments[0] == 0.0
    assert clock.monotonic() == pytest.approx(99 / 20)
    assert all(later - earlier == pytest.approx(1 / 20) for earlier, later in zip(moments, moments[1:]))


def test_reserve_takes_a_slot_that_has_come_and_otherwise_says_how_long_without_taking_it():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=4)  # a slot every 0.25 s, a burst of one
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.25)
    assert limiter.reserve() == pytest.approx(0.25)  # asking again took nothing
    clock.advance(0.1)
    assert limiter.reserve() == pytest.approx(0.15)
    clock.advance(0.15)
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(0.25)


def test_without_limits_acquire_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for _ in range(1000):
        limiter.acquire()
    assert clock.monotonic() == 0.0


def test_per_hour_lets_a_burst_through_then_waits_for_the_oldest_to_leave_the_window():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_hour=3)
    moments = []
    for _ in range(7):
        limiter.acquire()
        moments.append(clock.monotonic())
    assert moments == [0.0, 0.0, 0.0, 3600.0, 3600.0, 3600.0, 7200.0]


def test_per_hour_window_rolls_rather_than_resetting_on_the_hour():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_hour=2)
    limiter.acquire()
    clock.advance(1800)
    limiter.acquire()
    limiter.acquire()  # the first one leaves the window at 3600
    assert clock.monotonic() == 3600.0
    limiter.acquire()  # and the second at 1800 + 3600
    assert clock.monotonic() == 5400.0


def test_slow_down_pauses_every_sender_doubling_each_time_up_to_the_cap():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=100, backoff_start=5, backoff_max=30)
    assert [limiter.slow_down() for _ in range(5)] == [5, 10, 20, 30, 30]
    limiter.acquire()
    assert clock.monotonic() == 30.0


def test_a_message_that_gets_through_resets_the_pause_to_its_start():
    clock = FakeClock()
    limiter = RateLimiter(clock, backoff_start=5, backoff_max=600)
    assert limiter.slow_down() == 5
    limiter.acquire()
    assert clock.monotonic() == 5.0
    assert limiter.slow_down() == 10
    limiter.acquire()
    assert clock.monotonic() == 15.0
    limiter.succeeded()
    assert limiter.slow_down() == 5
    limiter.acquire()
    assert clock.monotonic() == 20.0


def test_the_engine_keeps_to_rate_per_second_50_over_200_messages_on_one_connection(tmp_path):
    clock = FakeClock()
    with FaultServer() as server:
        config = write_config(tmp_path, server.url(), connections=1, rate_per_second=50)
        db = connect(config.database)
        add_subscribers(db, 200)
        started = clock.monotonic()
        summary = send_campaign(config, SLUG, clock=clock)
    assert summary.finished and summary.sent_now == 200 and len(server.accepted) == 200
    assert clock.monotonic() - started == pytest.approx(199 / 50, abs=0.01)


def test_a_relay_rate_limit_slows_the_engine_down_and_every_message_still_arrives_once(tmp_path):
    clock = FakeClock()
    with FaultServer() as server:
        server.rate_limit(times=3)
        config = write_config(tmp_path, server.url(), connections=1, retry_base_seconds=60)
        db = connect(config.database)
        addresses = add_subscribers(db, 10)
        summary = send_campaign(config, SLUG, clock=clock, wait_for_retries=True)
        assert sorted(rcpt for message in server.accepted for rcpt in message.rcpt_tos) == addresses
    assert summary.finished and status_counts(db) == {"sent": 10}
    retried = db.execute("SELECT count(*) FROM deliveries WHERE attempts = 2 AND last_code = 250").fetchone()[0]
    assert retried == 3
    assert clock.monotonic() >= 5 + 10 + 20  # three push-backs in a row: 5 s, then 10 s, then 20 s


# -- the rate held over a minute, whatever the connections are doing ---------------------------------------


def relay_latency(rng: random.Random) -> float:
    """How long one message keeps a connection busy: mostly a few ms, one in ten a slow answer."""
    return rng.uniform(0.001, 0.008) if rng.random() < 0.9 else rng.uniform(0.020, 0.060)


CAPACITY_PER_CONNECTION = 1 / (0.9 * 0.0045 + 0.1 * 0.040)  # about 125 messages a second


def simulate(rate: float, connections: int, seconds: float, seed: int, acquire_rule=None) -> list[float]:
    """Moments (on a FakeClock) at which `connections` senders got a slot, each then busy for a relay's
    latency, so that at times every connection is busy when a slot comes due. `acquire_rule`, when given,
    replaces the limiter (the old rule, as a reference)."""
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=rate)
    acquire = acquire_rule(clock, rate) if acquire_rule else limiter.acquire
    rng = random.Random(seed)
    free = [(0.0, number) for number in range(connections)]
    heapq.heapify(free)
    moments = []
    while True:
        ready, number = heapq.heappop(free)
        if ready > clock.monotonic():
            clock.advance(ready - clock.monotonic())
        acquire()
        now = clock.monotonic()
        if now >= seconds:
            return moments
        moments.append(now)
        heapq.heappush(free, (now + relay_latency(rng), number))


def slots_from_whoever_asks(clock: FakeClock, rate: float):
    """The rule before issue 11: the next slot counted from the moment a sender noticed the free one."""
    state = {"next": 0.0}

    def acquire() -> None:
        now = clock.monotonic()
        if state["next"] > now:
            clock.advance(state["next"] - now)
        state["next"] = clock.monotonic() + 1 / rate

    return acquire


def per_window(moments: list[float], window: float, seconds: float) -> list[int]:
    counts = [0] * int(seconds // window)
    for moment in moments:
        if moment < len(counts) * window:
            counts[int(moment // window)] += 1
    return counts


@pytest.mark.parametrize("rate", [1, 10, 100, 500])
@pytest.mark.parametrize("connections", [1, 4, 8])
def test_the_rate_holds_within_2_percent_over_every_minute_from_1_to_500_a_second(rate, connections):
    if connections * CAPACITY_PER_CONNECTION < rate * 1.2:
        pytest.skip(f"{connections} connections cannot carry {rate} msg/s at this relay's latency")
    seconds = 300 if rate < 10 else 180
    moments = simulate(rate, connections, seconds, seed=rate * 10 + connections)
    for count in per_window(moments, 60, seconds):
        assert abs(count - rate * 60) <= rate * 60 * 0.02, (count, rate * 60)


@pytest.mark.parametrize("rate, connections", [(100, 1)])
def test_the_old_rule_loses_the_time_when_every_sender_is_busy(rate, connections):
    """The same load through the rule this replaced undershoots by far more than 2 %: the test can fail."""
    moments = simulate(rate, connections, 60, seed=1, acquire_rule=slots_from_whoever_asks)
    assert len(moments) < rate * 60 * 0.95


def test_a_burst_after_a_stall_never_runs_ahead_of_the_schedule():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=100)
    limiter.acquire()
    clock.advance(5.0)  # every connection stalled for five seconds
    moments = []
    for _ in range(300):
        limiter.acquire()
        moments.append(clock.monotonic())
    made_up = sum(1 for moment in moments if moment == 5.0)
    assert made_up == limiter.burst + 1  # a few lost slots are made up at once, not five seconds' worth
    assert moments[-1] == pytest.approx(5.0 + (300 - made_up) / 100)


def test_no_burst_after_the_relay_asked_us_to_slow_down():
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=100, backoff_start=5)
    limiter.acquire()
    limiter.slow_down()
    moments = []
    for _ in range(3):
        limiter.acquire()
        moments.append(clock.monotonic())
    assert moments == pytest.approx([5.0, 5.01, 5.02])
