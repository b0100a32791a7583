"""The rate limit as the relay sees it: `[sending] rate_per_second` held over every 10-second window.

    python benchmarks/ratelimit.py                           # 100 msg/s, 4 connections, 30 s per rule
    python benchmarks/ratelimit.py --rate 500 --connections 8 --seconds 60

Sends the sample campaign through the real engine (send_campaign on a database of generated subscribers)
into an aiosmtpd server on loopback that stamps each message as it arrives, twice in one run:

  ours  the engine's RateLimiter: each slot scheduled from the previous one, with a small burst allowance
  old   the same engine with the rule it replaced: the next slot counted from when a sender noticed the
        free one, so time lost while every connection is busy is never made up

and prints, for each, the messages per 10-second window at the server, the overall rate, and its ratio to
the target. The aim (issue 11) is the target within ±2 % over a 60-second window. Each rule gets as many
subscribers as the target rate allows in --seconds, so a run takes about twice --seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLUG = "2026-12-lac-digest"
DOMAIN = "lac.example.org"
WINDOW = 10.0


def load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StampingSink:
    """aiosmtpd on 127.0.0.1:0 that keeps the monotonic time each message arrived."""

    def __init__(self) -> None:
        from newsletter.mailsink import LoopbackController

        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self._controller = LoopbackController(self)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.arrivals.append(time.monotonic())
        return "250 2.0.0 OK"

    def __enter__(self) -> "StampingSink":
        self._controller.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._controller.stop()

    @property
    def port(self) -> int:
        return self._controller.port


class OldRule:
    """The limiter before issue 11, kept here only as the baseline: slot = max(now, next); next = now + 1/r."""

    def __init__(self, limiter) -> None:
        self.interval = limiter.interval
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                if self._next <= now:
                    self._next = now + self.interval
                    return
                wait = self._next - now
            time.sleep(wait)

    def slow_down(self) -> float:
        return 0.0

    def succeeded(self) -> None:
        pass


def make_database(folder: Path, count: int) -> Path:
    from newsletter import subscribers
    from newsletter.db import connect

    path = folder / "newsletter.db"
    db = connect(path)
    countries = ("TT", "BB", "BR", "MX", "HT")
    with db.conn:
        for number in range(count):
            subscribers.add(db, f"reader{number:06d}@example.org", name=f"Reader {number}",
                            country=countries[number % len(countries)])
    db.conn.close()
    return path


def run(rule: str, rate: float, connections: int, seconds: float, scratch: Path) -> list[float]:
    from newsletter.config import Config, SendingSettings
    from newsletter.sender import CampaignSender, prepare_campaign
    from newsletter.db import connect

    folder = scratch / rule
    folder.mkdir()
    database = make_database(folder, int(rate * seconds))
    with StampingSink() as sink:
        config = Config(database=database, campaigns_dir=ROOT / "campaigns", templates_dir=ROOT / "templates",
                        secret_key="benchmark-secret", base_url=f"https://{DOMAIN}", sender_address=f"news@{DOMAIN}",
                        unsubscribe_mailto=f"unsubscribe@{DOMAIN}", bounce_address=f"bounces@{DOMAIN}",
                        smtp_url=f"smtp://127.0.0.1:{sink.port}",
                        sending=SendingSettings(connections=connections, rate_per_second=rate, starttls="never"))
        db = connect(database)
        campaign = prepare_campaign(config, db, SLUG)
        db.conn.close()
        sender = CampaignSender(config, campaign)
        if rule == "old":
            sender.limiter = OldRule(sender.limiter)
        summary = sender.run()
        if not summary.finished:
            sys.exit(f"{rule}: the send did not finish ({summary.stopped_reason})")
        return sorted(sink.arrivals)


def windows(arrivals: list[float]) -> list[int]:
    start = arrivals[0]
    counts = [0] * int((arrivals[-1] - start) // WINDOW)
    for moment in arrivals:
        index = int((moment - start) // WINDOW)
        if index < len(counts):
            counts[index] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="rate_per_second (default 100)")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections (default 4)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run (default 30)")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="newsletter-ratelimit-"))
    try:
        print(f"target {options.rate:g} msg/s over {options.connections} connections, "
              f"{options.seconds:g} s per rule; messages per {WINDOW:g} s window at the server")
        for rule in ("ours", "old"):
            arrivals = run(rule, options.rate, options.connections, options.seconds, scratch)
            counts = windows(arrivals)
            overall = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            per_window = " ".join(f"{count / WINDOW:7.1f}" for count in counts)
            print(f"{rule:>5}: {per_window}  | overall {overall:8.2f} msg/s = {overall / options.rate:.3f} "
                  f"of the target")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
