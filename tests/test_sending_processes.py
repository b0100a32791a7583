"""[sending] processes: one campaign carried by several sender processes (the parent and its helpers,
src/newsletter/sendhelpers.py) against a real relay. Everyone gets the issue once, the connection
limit stays a total, and a pause, a relay fault and a kill reach every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sending_support import SLUG, add_subscribers, status_counts, write_config

from newsletter import campaign_state, deliveries
from newsletter.db import connect
from newsletter.sender import ROWS_PER_PROCESS, send_campaign
from newsletter.sendhelpers import Share, shares

ROWS = 2 * ROWS_PER_PROCESS + 100  # enough for a second process
CONNECTIONS = 4
GUARD_SECONDS = 120


def per_address(smtp) -> Counter:
    return Counter(rcpt for message in smtp.accepted for rcpt in message.rcpt_tos)


def after(count: int, action):
    """A progress callback that runs `action` once, when `count` results have been recorded."""
    seen = 0

    def progress(status: str) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            action()
    return progress


@pytest.fixture
def big_campaign(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url(), connections=CONNECTIONS, processes=2)
    db = connect(config.database)
    return config, db, add_subscribers(db, ROWS)


def test_shares_split_connections_evenly_and_the_rates_in_proportion():
    assert shares(5, 2, 10.0, 100.0) == [Share(3, 6.0, 60.0), Share(2, 4.0, 40.0)]
    assert shares(1, 4, 0.0, 0.0) == [Share(1, 0.0, 0.0)]  # never more processes than connections
    assert sum(share.connections for share in shares(7, 3, 0, 0)) == 7


def test_two_processes_send_everyone_once_and_open_no_more_connections_than_the_total(big_campaign, smtp):
    config, db, addresses = big_campaign

    summary = send_campaign(config, SLUG)

    assert summary.processes == 2 and summary.stopped_reason is None and summary.sent_now == ROWS
    assert per_address(smtp) == Counter({address: 1 for address in addresses})
    assert status_counts(db) == {"sent": ROWS}
    assert smtp.connections <= 1 + CONNECTIONS  # the relay check's, then four among both processes
    row = campaign_state.get(db, SLUG)
    assert row["state"] == "sent" and row["lease_owner"] is None


def test_one_process_when_the_config_says_so_or_the_send_is_small(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url(), connections=CONNECTIONS, processes=1)
    db = connect(config.database)
    add_subscribers(db, ROWS)
    assert send_campaign(config, SLUG).processes == 1

    small = tmp_path / "small"
    small.mkdir()
    config = write_config(small, smtp.url(), connections=CONNECTIONS, processes=2)
    add_subscribers(connect(config.database), ROWS_PER_PROCESS)
    assert send_campaign(config, SLUG).processes == 1


def test_a_pause_said_elsewhere_stops_every_process_and_resuming_sends_the_rest_once(big_campaign, smtp):
    config, db, addresses = big_campaign
    other = connect(config.database)

    summary = send_campaign(config, SLUG, progress=after(500, lambda: campaign_state.pause(other, SLUG)))

    assert summary.stopped_reason == "paused" and summary.processes == 2
    counts = status_counts(db)
    assert set(counts) == {"sent", "queued"}  # nothing left 'sending' by either process
    assert counts["sent"] == len(smtp.accepted) < ROWS
    campaign_state.resume(other, SLUG)
    assert send_campaign(config, SLUG).stopped_reason is None
    assert per_address(smtp) == Counter({address: 1 for address in addresses})


def test_a_relay_that_goes_down_pauses_the_campaign_from_any_process_and_nobody_is_lost(big_campaign, smtp):
    config, db, addresses = big_campaign

    summary = send_campaign(config, SLUG, progress=after(500, smtp.go_down))

    assert summary.stopped_reason == "fault" and summary.fault
    row = campaign_state.get(db, SLUG)
    assert row["state"] == "paused" and row["paused_by"] == "fault"
    counts = status_counts(db)
    assert set(counts) <= {"sent", "queued", "deferred"}  # a fault is nobody's final verdict
    assert counts.get("deferred", 0) <= CONNECTIONS  # at most the message on each connection's wire
    smtp.come_back()
    deliveries.requeue(db, SLUG, ("deferred",))  # what `newsletter deliveries retry` does
    assert send_campaign(config, SLUG).stopped_reason is None
    arrived = per_address(smtp)
    assert set(arrived) == set(addresses)
    assert sum(arrived.values()) - ROWS <= CONNECTIONS  # a message the relay took as it went down, at most
    assert status_counts(db) == {"sent": ROWS}


def helper_pids(parent: int) -> list[int]:
    """The processes whose parent is `parent` (its sender helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has already died


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_kill_of_the_parent_kills_its_helpers_and_the_next_run_loses_nobody(big_campaign, smtp, tmp_path):
    config, db, addresses = big_campaign
    runner = Path(__file__).with_name("crash_runner.py")
    log = tmp_path / "runner.log"
    with open(log, "w") as output:
        sender = subprocess.Popen([sys.executable, str(runner), str(config.path), SLUG], stdout=output,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + GUARD_SECONDS
    helpers: list[int] = []
    while len(smtp.accepted) < 300 or not helpers:
        assert sender.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline
        helpers = [pid for pid in helper_pids(sender.pid)
                   if b"newsletter.sendhelpers" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        time.sleep(0.01)
    os.kill(sender.pid, signal.SIGKILL)
    sender.wait(timeout=GUARD_SECONDS)
    while not all(gone(pid) for pid in helpers):
        assert time.monotonic() < deadline, f"helpers {helpers} outlived their parent"
        time.sleep(0.01)

    assert send_campaign(config, SLUG).stopped_reason is None
    arrived = per_address(smtp)
    assert set(arrived) == set(addresses)
    assert sum(arrived.values()) - ROWS <= CONNECTIONS  # at most one per open connection per kill
    assert status_counts(db) == {"sent": ROWS}
