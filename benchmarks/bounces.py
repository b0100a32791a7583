"""How fast is `bounces process` over a Maildir of returned mail, and what does a 20 MB bounce cost?

    python benchmarks/bounces.py                     # 10,000 reports
    python benchmarks/bounces.py --reports 2000

In one run, over the same Maildir of reports (the corpus in tests/corpus/bounces: DSNs from Postfix and
Gmail, Exim and qmail prose, Exchange, ARF complaints, multi-recipient Yahoo reports without VERP,
out-of-office replies and human replies, each filled in for a real delivery row):

  floor  what any bounce processor must do at least: list the Maildir, read each file, parse it with
         email.message_from_bytes and rename it into .processed.
  ours   process_mailbox: trim to the relevant parts, classify, match (VERP, token, Message-ID, address),
         record the events and apply the policy in SQLite, file each message as processed or for review.

The Maildir is filled twice, once for each. Then one 20 MB prose bounce and one with a 20 MB attachment,
each parsed whole and run through flufl.bounce's detectors (what the parser did before it trimmed), and
analysed by bounceparse.analyse (ours: the whole classification, on the relevant parts only).
All timings are CPU time of this process (time.process_time).
"""

from __future__ import annotations

import argparse
import email
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from flufl.bounce import all_failures

from newsletter.bounceparse import analyse
from newsletter.bounces import process_mailbox
from newsletter.clock import FakeClock, utc_iso
from newsletter.config import BounceSettings, Config
from newsletter.db import connect
from newsletter.signing import UNSUBSCRIBE, Signer
from newsletter.verp import verp_address

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "bounces"
BOUNCE_ADDRESS = "bounces@lac.example.org"
SECRET = "benchmark-secret"
# Shapes in the proportions a bureau sees them: mostly DSNs and prose bounces, some complaints and replies.
MIX = ["postfix_user_unknown.eml", "postfix_mailbox_full_delayed.eml", "gmail_user_unknown.eml",
       "exim_unknown_user.eml", "qmail_user_unknown.eml", "exchange_ndr.eml", "arf_yahoo_complaint.eml",
       "yahoo_multi_recipient.eml", "dsn_no_recipient_fields_failed_permanently.eml", "out_of_office_en.eml",
       "arf_token_without_verp.eml", "human_reply.eml"]


def make_project(folder: Path, count: int) -> tuple[Config, list[tuple[int, int, str, str]]]:
    """A database with `count` subscribers, each with one sent delivery: (delivery id, subscriber id, email, mid)."""
    config = Config(database=folder / "newsletter.db", secret_key=SECRET, bounce_address=BOUNCE_ADDRESS,
                    bounces=BounceSettings(mailbox=f"maildir://{folder / 'mail'}"))
    db = connect(config.database)
    stamp = utc_iso(datetime(2026, 12, 1, tzinfo=timezone.utc))
    with db.conn:
        db.conn.executemany(
            "INSERT INTO subscribers (id, email, name, status, created_at, updated_at) VALUES (?, ?, '', 'active', ?, ?)",
            [(n, f"reader{n}@example.org", stamp, stamp) for n in range(1, count * 3 + 1)])
        db.conn.executemany(
            "INSERT INTO deliveries (id, campaign, subscriber_id, email, status, message_id, created_at, updated_at, "
            "sent_at) VALUES (?, 'bench', ?, ?, 'sent', ?, ?, ?, ?)",
            [(n, n, f"reader{n}@example.org", f"<bench.{n}.00ff00ff00ff@lac.example.org>", stamp, stamp, stamp)
             for n in range(1, count * 3 + 1)])
    rows = [tuple(row) for row in db.execute("SELECT id, subscriber_id, email, message_id FROM deliveries")]
    db.conn.close()
    return config, rows


def fill_maildir(root: Path, rows: list[tuple[int, int, str, str]], count: int) -> int:
    """`count` reports, each about its own subscribers; returns the bytes written."""
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True)
    templates = {name: (CORPUS / name).read_bytes() for name in MIX}
    signer = Signer(SECRET)
    written = 0
    for number in range(count):
        name = MIX[number % len(MIX)]
        delivery_id, subscriber_id, address, message_id = rows[number * 3]
        values = {b"{VERP}": verp_address(BOUNCE_ADDRESS, delivery_id, SECRET).encode(), b"{RCPT}": address.encode(),
                  b"{RCPT2}": rows[number * 3 + 1][2].encode(), b"{RCPT3}": rows[number * 3 + 2][2].encode(),
                  b"{TOKEN}": signer.sign(subscriber_id, UNSUBSCRIBE).encode(), b"{MESSAGE_ID}": message_id.encode()}
        raw = templates[name]
        for placeholder, value in values.items():
            raw = raw.replace(placeholder, value)
        (root / "new" / f"{number:06d}.bench").write_bytes(raw)
        written += len(raw)
    return written


def floor(root: Path) -> int:
    """List, read, parse and file away each message: the least any processor does."""
    processed = root / ".processed" / "cur"
    processed.mkdir(parents=True, exist_ok=True)
    count = 0
    for entry in sorted((root / "new").iterdir()):
        message = email.message_from_bytes(entry.read_bytes())
        message.get("Subject")
        os.replace(entry, processed / f"{entry.name}:2,S")
        count += 1
    return count


def timed(action) -> tuple[float, object]:
    start = time.process_time()
    result = action()
    return time.process_time() - start, result


def big_bounces() -> dict[str, bytes]:
    head = (b"From: MAILER-DAEMON@mx.example.org\nTo: bounces@lac.example.org\nSubject: Undeliverable\n"
            b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n"
            b"<ana@example.net>: 550 5.1.1 User unknown\n\n")
    line = b"quoted text of the original message, going on for megabytes; no addresses in it\n"
    prose = head + line * (20_000_000 // len(line)) + b"--zz--\n"
    attachment = (head + b"--zz\nContent-Type: application/pdf\nContent-Disposition: attachment\n"
                  b"Content-Transfer-Encoding: base64\n\n" + (b"QUJDRA" * 12 + b"\n") * (20_000_000 // 73) + b"--zz--\n")
    return {"20 MB prose bounce": prose, "20 MB attachment": attachment}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=10_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bounces-bench-"))
    try:
        config, rows = make_project(folder, args.reports)
        mail = folder / "mail"
        size = fill_maildir(mail, rows, args.reports)
        print(f"{args.reports:,} reports, {size / 1e6:.1f} MB, in a Maildir ({len(MIX)} shapes)")
        floor_seconds, floor_count = timed(lambda: floor(mail))
        fill_maildir(mail, rows, args.reports)
        db = connect(config.database)
        ours_seconds, summary = timed(lambda: process_mailbox(db, config, clock=FakeClock()))
        db.conn.close()
        assert summary.read == floor_count == args.reports
        print(f"  floor (read, parse, file away) {floor_seconds:7.2f} s CPU  {floor_count / floor_seconds:9,.0f} msg/s")
        print(f"  ours  (bounces process)        {ours_seconds:7.2f} s CPU  {summary.read / ours_seconds:9,.0f} msg/s"
              f"   {ours_seconds / floor_seconds:.1f}x the floor")
        print(f"  ours changed {len(summary.actions):,} subscribers, logged {summary.logged:,} events without a "
              f"change, kept {summary.unmatched:,} for review")
        for name, raw in big_bounces().items():
            whole, _ = timed(lambda: all_failures(email.message_from_bytes(raw)))
            ours, report = timed(lambda: analyse(raw, bounce_address=BOUNCE_ADDRESS, secret=SECRET))
            assert (report.kind, report.recipients) == ("hard", ["ana@example.net"]), report
            print(f"{name}: whole message through flufl.bounce {whole:6.3f} s CPU; analyse {ours:6.3f} s CPU "
                  f"({whole / ours:.0f}x less)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
