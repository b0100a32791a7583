"""How long do the staff pages' aggregates take on 1,000,000 subscribers and 1,000,000 deliveries?

    python benchmarks/charts.py                       # 1,000,000 of each
    python benchmarks/charts.py --rows 200000

The rows are generated in SQL (created over three years, 88 % active, a few per cent unsubscribed, bounced,
complained and pending; one campaign sent to everyone over three hours, 1 % each deferred, failed and
bounced, with bounce events and unsubscribes after it). Then each figure of newsletter.stats is timed (CPU
seconds, median of 5), and beside it a baseline: the same figure computed the naive way, fetching the rows
into Python and counting there. Prints both and the ratio. The staff pages keep a computed report until its
fingerprint changes (web/staff.py): the "shown again" lines are what a reload of an unchanged page costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from newsletter import stats
from newsletter.clock import utc_iso
from newsletter.db import connect

SLUG = "bench-campaign"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
REPEATS = 5


def fill(db, rows: int) -> None:
    conn = db.conn
    conn.execute("BEGIN")
    conn.execute(
        """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
           INSERT INTO subscribers (email, name, country, language, interests, status, created_at, updated_at,
                                    status_changed_at)
           SELECT 'person' || i || '@example.org', 'Person ' || i,
                  substr('TTBBJMBRMXARCLCOPEGYHTDOCRPAUYPYBOECSVGT', 1 + (i * 7 % 20) * 2, 2),
                  CASE i % 4 WHEN 0 THEN 'en' WHEN 1 THEN 'es' WHEN 2 THEN 'pt' ELSE 'fr' END,
                  i * 2654435761 % 32,
                  CASE WHEN i % 100 < 88 THEN 'active' WHEN i % 100 < 93 THEN 'unsubscribed'
                       WHEN i % 100 < 96 THEN 'bounced' WHEN i % 100 < 97 THEN 'complained' ELSE 'pending' END,
                  strftime('%Y-%m-%dT%H:%M:%SZ', '2023-12-01', '+' || (i * 1000 / ?) || ' days', '+' || (i % 86400) || ' seconds'),
                  '2026-12-01T00:00:00Z',
                  CASE WHEN i % 100 BETWEEN 88 AND 96
                       THEN strftime('%Y-%m-%dT%H:%M:%SZ', '2026-11-20', '+' || (i % 12) || ' days') END
           FROM n""", [rows, rows])
    conn.execute(
        """INSERT INTO deliveries (campaign, subscriber_id, email, status, attempts, last_code, last_enhanced,
                                   last_text, created_at, updated_at, sent_at)
           SELECT ?, id, email,
                  CASE WHEN id % 100 < 97 THEN 'sent' WHEN id % 100 = 97 THEN 'deferred'
                       WHEN id % 100 = 98 THEN 'failed' ELSE 'bounced' END, 1,
                  CASE WHEN id % 100 < 97 THEN 250 WHEN id % 100 = 97 THEN 451 ELSE 550 END,
                  CASE WHEN id % 100 < 97 THEN '2.0.0' WHEN id % 100 = 97 THEN '4.7.1' ELSE '5.1.1' END,
                  CASE WHEN id % 100 < 97 THEN 'OK' WHEN id % 100 = 97 THEN 'try later'
                       ELSE 'mailbox ' || (id % 7) || ' unknown' END,
                  '2026-11-20T09:00:00Z',
                  strftime('%Y-%m-%dT%H:%M:%SZ', '2026-11-20T09:00:00', '+' || (id * 10800 / ?) || ' seconds'),
                  strftime('%Y-%m-%dT%H:%M:%SZ', '2026-11-20T09:00:00', '+' || (id * 10800 / ?) || ' seconds')
           FROM subscribers""", [SLUG, rows, rows])
    conn.execute(
        """INSERT INTO bounce_events (delivery_id, subscriber_id, email, kind, code, diagnostic, source, created_at)
           SELECT id, subscriber_id, email, CASE WHEN id % 3 = 0 THEN 'soft' WHEN id % 3 = 1 THEN 'hard'
                  ELSE 'complaint' END, '5.1.1', 'user unknown ' || (id % 5), 'dsn', updated_at
           FROM deliveries WHERE id % 100 = 99""")
    conn.execute("INSERT INTO campaigns (slug, title, state, created_at, updated_at, started_at, finished_at) "
                 "VALUES (?, 'Bench', 'sent', ?, ?, ?, ?)", [SLUG, utc_iso(NOW), utc_iso(NOW), utc_iso(NOW),
                                                            utc_iso(NOW)])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")


def cpu(step) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return statistics.median(times)


def naive_timeline(db):
    return Counter((status, at[:16]) for status, at in db.execute(
        "SELECT status, updated_at FROM deliveries WHERE campaign = ?", [SLUG]))


def naive_report(db):
    """The same figures from rows fetched into Python: outcomes, language and country, bounce kinds and
    replies, and unsubscribes attributed to the last campaign each person received before leaving."""
    figures = Counter()
    for status, language, country in db.execute(
            "SELECT d.status, s.language, s.country FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign = ?", [SLUG]):
        figures[status] += 1
        if status == "sent":
            figures["lang:" + language] += 1
            figures["country:" + country] += 1
    for kind, diagnostic, campaign in db.execute(
            "SELECT e.kind, e.diagnostic, d.campaign FROM bounce_events e JOIN deliveries d ON d.id = e.delivery_id"):
        if campaign == SLUG:
            figures[f"{kind}:{diagnostic}"] += 1
    left = dict(db.execute("SELECT id, status_changed_at FROM subscribers WHERE status = 'unsubscribed'"))
    last: dict[int, tuple[str, str]] = {}
    for subscriber, campaign, sent_at in db.execute(
            "SELECT subscriber_id, campaign, sent_at FROM deliveries WHERE status = 'sent'"):
        if subscriber in left and sent_at <= left[subscriber] and sent_at > last.get(subscriber, ("", ""))[1]:
            last[subscriber] = (campaign, sent_at)
    figures["unsubscribes"] = sum(1 for campaign, _ in last.values() if campaign == SLUG)
    return figures


def naive_history(db):
    return Counter((created[:7], status, (changed or "")[:7]) for created, status, changed in db.execute(
        "SELECT created_at, status, status_changed_at FROM subscribers"))


def naive_breakdowns(db):
    countries, interests = Counter(), Counter()
    for country, mask in db.execute("SELECT country, interests FROM subscribers WHERE status = 'active'"):
        countries[country] += 1
        for bit in range(5):
            if mask & (1 << bit):
                interests[bit] += 1
    return countries, interests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="newsletter-charts-") as folder:
        db = connect(Path(folder) / "bench.db")
        started = time.monotonic()
        fill(db, args.rows)
        print(f"{args.rows:,} subscribers and {args.rows:,} deliveries generated in {time.monotonic() - started:.1f} s")
        figures = [
            ("live progress (counts + sent last minute)", lambda: stats.progress(db, SLUG, NOW), None),
            ("deliveries over time", lambda: stats.timeline(db, SLUG), lambda: naive_timeline(db)),
            ("campaign report (outcomes, bounces, unsubscribes, language/country)",
             lambda: stats.campaign_report(db, SLUG), lambda: naive_report(db)),
            ("campaign page shown again (fingerprint check only)", lambda: stats.campaign_fingerprint(db, SLUG),
             None),
            ("dashboard: last campaigns", lambda: stats.recent_campaigns(db), None),
            ("audience: month-end counts, new and lost", lambda: stats.audience_history(db, NOW),
             lambda: naive_history(db)),
            ("audience page shown again (fingerprint check only)", lambda: stats.audience_fingerprint(db), None),
            ("audience: by country and interest",
             lambda: (stats.active_by_country(db), stats.active_by_interest(db)), lambda: naive_breakdowns(db)),
        ]
        print(f"{'figure':<72} {'ours':>9} {'naive':>9} {'ratio':>6}   (CPU s, median of {REPEATS})")
        for name, ours, naive in figures:
            ours_s = cpu(ours)
            naive_s = cpu(naive) if naive else None
            ratio = f"{naive_s / ours_s:5.1f}x" if naive_s and ours_s else ""
            print(f"{name:<72} {ours_s:9.3f} {naive_s if naive_s is not None else float('nan'):9.3f} {ratio:>6}")
        db.conn.close()


if __name__ == "__main__":
    main()
