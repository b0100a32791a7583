"""What the bounce tests share: a project (config, database, bounce Maildir) that sends through a loopback SMTP
server, and the corpus's returned messages addressed to its deliveries' signed VERP return paths.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils
from sending_support import CAMPAIGNS_DIR, SLUG, write_config
from smtp_servers import FaultServer

from newsletter import subscribers
from newsletter.bounces import ProcessSummary, process_mailbox
from newsletter.clock import FakeClock
from newsletter.config import Config
from newsletter.db import connect
from newsletter.sender import send_campaign
from newsletter.suppressions import email_hash
from newsletter.verp import verp_address

CORPUS = Path(__file__).parent / "corpus" / "bounces"
LATER_SLUGS = ("2027-01-lac-digest", "2027-02-lac-digest")
START = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)
HOUR, DAY = 3600, 86400

# The "failed" mailbox-full report rewritten to the permanent code some servers give: 552 5.2.2.
MAILBOX_FULL_522 = "postfix_mailbox_full_failed.eml with 5.2.2"


def write_project(folder: Path, smtp_url: str, **bounce_settings: object) -> Config:
    """A config in `folder`: its own copies of the sample campaign (one per slug), the repository's templates,
    the database beside it and a bounce Maildir, loaded as the CLI would. `bounce_settings` go into [bounces]."""
    campaigns = folder / "campaigns"
    for slug in (SLUG, *LATER_SLUGS):
        shutil.copytree(CAMPAIGNS_DIR / SLUG, campaigns / slug)
    mailbox = make_maildir(folder / "bounces")
    settings = {"soft_threshold": 3, "soft_window_days": 30, **bounce_settings}
    return write_config(folder, smtp_url, campaigns_dir=campaigns, connections=2, bounces={
        "mailbox": f"maildir://{mailbox}", **settings})


def make_maildir(root: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def maildir_of(config: Config) -> Path:
    return Path(config.bounces.mailbox.removeprefix("maildir://"))


def returned_message(name: str, *, verp: str, recipient: str) -> bytes:
    """A corpus message as it would reach our bounce mailbox for one delivery."""
    if name == MAILBOX_FULL_522:
        raw = (CORPUS / "postfix_mailbox_full_failed.eml").read_bytes()
        raw = raw.replace(b"452", b"552").replace(b"4.2.2", b"5.2.2")
    else:
        raw = (CORPUS / name).read_bytes()
    tag = verp.partition("+")[2].partition("-")[0]
    tampered = verp.replace(f"+{tag}-", f"+{tag}z-")
    for placeholder, value in (("{VERP_TAMPERED}", tampered), ("{VERP}", verp), ("{RCPT}", recipient)):
        raw = raw.replace(placeholder.encode(), value.encode())
    return raw


_MESSAGE_NUMBERS = itertools.count(1)


def drop_in_maildir(config: Config, raw: bytes, label: str) -> Path:
    """Deliver one message into new/ the way an MTA does (unique name, written whole)."""
    path = maildir_of(config) / "new" / f"{next(_MESSAGE_NUMBERS):04d}.{label.replace(' ', '_')}"
    path.write_bytes(raw)
    return path


@dataclass
class Delivery:
    id: int
    email: str
    status: str
    verp: str


def delivery(db: sqlite_utils.Database, config: Config, email: str, slug: str = SLUG) -> Delivery:
    row = db.execute("SELECT id, email, status FROM deliveries WHERE campaign = ? AND email = ?",
                     [slug, email]).fetchone()
    assert row is not None, f"no delivery of {slug} to {email}"
    return Delivery(row[0], row[1], row[2], verp_address(config.bounce_address, row[0], config.secret_key))


def bounce_back(db: sqlite_utils.Database, config: Config, name: str, email: str, slug: str = SLUG) -> Path:
    """Return `name` from the corpus for the delivery of `slug` to `email`, into the bounce Maildir."""
    target = delivery(db, config, email, slug)
    return drop_in_maildir(config, returned_message(name, verp=target.verp, recipient=email), name)


def suppression_rows(db: sqlite_utils.Database, email: str) -> list[dict]:
    return list(db.query("SELECT reason, source, created_at FROM suppressions WHERE email_hash = ?",
                         [email_hash(email)]))


def suppression_reason(db: sqlite_utils.Database, email: str) -> str | None:
    rows = suppression_rows(db, email)
    return rows[0]["reason"] if rows else None


def status_of(db: sqlite_utils.Database, email: str) -> str:
    return subscribers.get(db, email)["status"]


def events_of(db: sqlite_utils.Database, email: str) -> list[dict]:
    return list(db.query("SELECT delivery_id, subscriber_id, kind, code, source FROM bounce_events "
                         "WHERE email = ? ORDER BY id", [email]))


class Newsroom:
    """One project on a fake clock: subscribers, a real loopback SMTP server, sends and bounce runs."""

    def __init__(self, folder: Path, server: FaultServer, **bounce_settings: object) -> None:
        self.server = server
        self.config = write_project(folder, server.url(), **bounce_settings)
        self.db = connect(self.config.database)
        self.clock = FakeClock(START)

    def subscribe(self, *addresses: str) -> None:
        for address in addresses:
            subscribers.add(self.db, address, name=address.partition("@")[0], country="TT", clock=self.clock)

    def send(self, slug: str = SLUG) -> None:
        summary = send_campaign(self.config, slug, clock=self.clock)
        assert summary.finished, summary

    def bounce(self, name: str, email: str, slug: str = SLUG) -> Path:
        return bounce_back(self.db, self.config, name, email, slug)

    def process(self) -> ProcessSummary:
        return process_mailbox(self.db, self.config, clock=self.clock)

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)
