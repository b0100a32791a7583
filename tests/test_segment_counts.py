"""segment_counts: kept true by triggers through every kind of write, rebuilt after a bulk import, and a
segment count from it equal to a full count and to what the sender queues."""

from __future__ import annotations

import contextlib
import importlib.util
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter import deliveries, segments, subscribers
from newsletter.clock import FakeClock, utc_iso
from newsletter.csvimport import import_csv
from newsletter.db import LANGUAGES, SEED_INTERESTS, STATUSES, connect, segment_counts_live, \
    start_segment_counts, suspend_subscriber_upkeep, transaction
from newsletter.interests import Taxonomy
from newsletter.subscribers import Consent, SubscriberError
from newsletter.suppressions import suppress

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
GENERATOR = Path(__file__).parent.parent / "src" / "newsletter" / "samples" / "subscribers" / "generate.py"
COUNTRIES = ("BB", "TT", "BR", "MX", "HT", "")
SLUGS = [slug for slug, *_ in SEED_INTERESTS]
EXPRESSIONS = [
    "", "status:active", "status:paused", "status:active,paused", "status:pending,unsubscribed,bounced,complained",
    "language:es", "lang:en,pt", "country:BB,TT", "country:BR interest:security", "interest:policy,training",
    "interest:grants status:paused", "country:BB,TT,HT language:fr,en interest:infrastructure,security",
    "@caribbean", "@caribbean language:en status:active,paused",
]


def new_db(path: Path, clock: FakeClock):
    db = connect(path)
    segments.save(db, "caribbean", "country:BB,TT,HT interest:security,policy", clock=clock)
    return db


def full_count(db, expression: str, clock: FakeClock) -> int:
    """What the sender would queue, spelled out as a scan of every row: a pause that has ended is active."""
    where, params = segments.parse_segment(expression, db).where(Taxonomy.load(db))
    return db.execute(
        "SELECT count(*) FROM (SELECT CASE WHEN status = 'paused' AND paused_until <= ? THEN 'active' "
        f"ELSE status END AS status, country, language, interests FROM subscribers) WHERE {where}",
        [utc_iso(clock.now()), *params]).fetchone()[0]


def groups_in_table(db) -> list[tuple]:
    return db.execute("SELECT status, country, language, interests, n FROM segment_counts WHERE n != 0 "
                      "ORDER BY 1, 2, 3, 4").fetchall()


def groups_counted(db) -> list[tuple]:
    return db.execute("SELECT status, country, language, interests, count(*) FROM subscribers "
                      "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").fetchall()


def assert_counts_true(db, clock: FakeClock) -> None:
    assert groups_in_table(db) == groups_counted(db)
    for expression in EXPRESSIONS:
        assert segments.count(db, expression, clock=clock) == full_count(db, expression, clock), expression


def write_people(path: Path, rng: random.Random, count: int) -> Path:
    lines = ["email,name,country,language,interests,status"]
    for number in range(count):
        lines.append(",".join([
            f"Person{number}@Example.org" if number % 7 == 0 else f"person{number}@example.org",
            f"Person {number}", rng.choice(COUNTRIES), rng.choice(LANGUAGES + ("",)),
            "|".join(rng.sample(SLUGS, rng.randint(0, 3))), rng.choice(("active", "pending", "paused", ""))]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def random_change(db, rng: random.Random, clock: FakeClock, tmp_path: Path, step: int) -> None:
    """One change through the library, as the CLI, the web pages, the importer, the sender and bounces make
    them; each caller writes subscribers its own way, and none of them knows about segment_counts."""
    ids = [row[0] for row in db.execute("SELECT id FROM subscribers")]
    target = rng.choice(ids) if ids else None
    action = rng.randrange(11)
    if action == 0 or target is None:
        subscribers.add(db, f"new{step}@example.org", country=rng.choice(COUNTRIES), language=rng.choice(LANGUAGES),
                        interests=rng.sample(SLUGS, rng.randint(0, 2)), status=rng.choice(("active", "pending")),
                        clock=clock)
    elif action == 1:  # an existing address: only the fields given change (refused if it is suppressed)
        email = db.execute("SELECT email FROM subscribers WHERE id = ?", [target]).fetchone()[0]
        with contextlib.suppress(SubscriberError):
            subscribers.add(db, email.upper(), country=rng.choice(COUNTRIES), interests=rng.sample(SLUGS, 1),
                            clock=clock)
    elif action == 2:
        subscribers.set_status(db, target, rng.choice(STATUSES), clock=clock)
    elif action == 3:  # a pause that ends before or after the counts are taken
        subscribers.set_status(db, target, "paused", clock=clock,
                               paused_until=clock.now() + timedelta(hours=rng.choice((-30, -1, 1, 30))))
    elif action == 4:
        subscribers.update_preferences(db, target, country=rng.choice(COUNTRIES), language=rng.choice(LANGUAGES),
                                       interests=rng.sample(SLUGS, rng.randint(0, 4)), clock=clock)
    elif action == 5:
        subscribers.update_preferences(db, target, name=f"Renamed {step}", clock=clock)  # no group changes
    elif action == 6:
        subscribers.unsubscribe(db, target, clock=clock)
    elif action == 7:
        email = db.execute("SELECT email FROM subscribers WHERE id = ?", [target]).fetchone()[0]
        subscribers.erase(db, email, clock=clock)
    elif action == 8:
        subscribers.activate(db, target, Consent(source="form:test"), clock=clock)
    elif action == 9:
        email = db.execute("SELECT email FROM subscribers WHERE id = ?", [target]).fetchone()[0]
        subscribers.mark_bounced(db, email, rng.choice(("hard-bounce", "complaint")), "test", clock=clock)
    else:  # an import into a list that is not empty: inserts and updates row by row
        import_csv(db, write_people(tmp_path / f"more{step}.csv", rng, 12), clock=clock)
    clock.advance(rng.randint(60, 5400))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_stay_equal_to_a_full_count_through_many_random_changes(tmp_path, seed):
    rng = random.Random(seed)
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    import_csv(db, write_people(tmp_path / "first.csv", rng, 300), clock=clock)  # the bulk path: empty table
    assert segment_counts_live(db)
    assert_counts_true(db, clock)
    for step in range(300):
        random_change(db, rng, clock, tmp_path, step)
        if step % 25 == 0:
            assert_counts_true(db, clock)
    assert_counts_true(db, clock)
    assert db.execute("SELECT count(*) FROM subscribers WHERE status = 'paused' AND paused_until <= ?",
                      [utc_iso(clock.now())]).fetchone()[0] > 0, "the test should have pauses that ended"


def test_a_count_is_what_the_sender_queues_for_every_expression(tmp_path):
    rng = random.Random(7)
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    import_csv(db, write_people(tmp_path / "first.csv", rng, 400), clock=clock)
    for step in range(150):
        random_change(db, rng, clock, tmp_path, step)
    for number, expression in enumerate(EXPRESSIONS):
        expected = segments.count(db, expression, clock=clock)
        queued = deliveries.queue(db, f"campaign-{number}", segments.parse_segment(expression, db), clock)
        assert queued == expected, expression
        assert_counts_true(db, clock)  # queue made the ended pauses active: counts follow


def test_a_bulk_import_builds_the_counts_in_one_pass_and_leaves_the_triggers_on(tmp_path):
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    import_csv(db, write_people(tmp_path / "first.csv", random.Random(5), 500), clock=clock)
    db.conn.set_trace_callback(None)
    assert any(s.startswith("DROP TRIGGER IF EXISTS segment_counts_insert") for s in statements)
    assert not any("GROUP BY" in s for s in statements)  # counted as the rows went in
    assert segment_counts_live(db)
    assert_counts_true(db, clock)
    subscribers.add(db, "later@example.org", country="BB", clock=clock)  # the triggers carry on
    assert_counts_true(db, clock)


def test_an_import_that_fails_half_way_leaves_true_counts(tmp_path):
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    db.execute("""CREATE TEMP TRIGGER fail_late BEFORE INSERT ON subscribers
                  WHEN NEW.email = 'person450@example.org' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END""")
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        import_csv(db, write_people(tmp_path / "first.csv", random.Random(9), 500), batch_size=100, clock=clock)
    assert db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 400  # four whole batches
    assert segment_counts_live(db)
    assert_counts_true(db, clock)


def test_after_a_crash_with_the_counts_suspended_connect_rebuilds_them(tmp_path):
    """A bulk import killed between two batches leaves committed rows and no triggers; the next
    connect() counts afresh and switches them on."""
    clock = FakeClock(START)
    path = tmp_path / "newsletter.db"
    db = new_db(path, clock)
    subscribers.add(db, "ana@example.org", country="TT", language="es", clock=clock)
    with transaction(db):
        suspend_subscriber_upkeep(db)
        db.execute("INSERT INTO subscribers (email, country, status, created_at, updated_at) "
                   "VALUES ('bob@example.org', 'BB', 'active', 'x', 'x'), "
                   "('eve@example.org', 'BB', 'paused', 'x', 'x')")
    db.close()
    reader = connect(path, migrate_schema=False)  # a reader that repairs nothing still counts right
    assert not segment_counts_live(reader)
    assert segments.count(reader, "country:BB status:active,paused", clock=clock) == 2
    db = connect(path)
    assert segment_counts_live(db)
    assert_counts_true(db, clock)


def test_rebuilding_the_counts_twice_changes_nothing(db):
    clock = FakeClock(START)
    for number in range(5):
        subscribers.add(db, f"p{number}@example.org", country="TT", interests=["security"], clock=clock)
    before = groups_in_table(db)
    with transaction(db):
        start_segment_counts(db)
    assert groups_in_table(db) == before == [("active", "TT", "en", 2, 5)]


def test_a_count_reads_the_counts_table_and_the_index_of_pauses_only(db):
    clock = FakeClock(START)
    subscribers.add(db, "a@example.org", country="TT", interests=["security"], clock=clock)
    suppress(db, "gone@example.org", "erased", "test", clock=clock, keep_address=False)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        assert segments.count(db, "country:BB,TT interest:security status:active", clock=clock) == 1
    finally:
        db.conn.set_trace_callback(None)
    plans = [" | ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
             for sql in statements
             if sql.startswith("SELECT") and ("FROM subscribers" in sql or "FROM segment_counts" in sql)]
    assert plans, statements
    for plan in plans:
        assert "SCAN subscribers" not in plan, plan
        assert "segment_counts" in plan or "COVERING INDEX subscribers_pause_ends" in plan, plan


def subscriber_indexes(db) -> list[tuple[str, str]]:
    return db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'subscribers' "
                      "ORDER BY name").fetchall()


def test_a_bulk_import_makes_every_index_of_subscribers_again(tmp_path):
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    db.execute("CREATE INDEX subscribers_by_name ON subscribers (name)")  # one a later feature might add
    before = subscriber_indexes(db)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    import_csv(db, write_people(tmp_path / "first.csv", random.Random(4), 300), clock=clock)
    db.conn.set_trace_callback(None)
    assert any(s.startswith('DROP INDEX "subscribers_by_name"') for s in statements)
    assert subscriber_indexes(db) == before
    assert db.execute("SELECT count(*) FROM suspended_schema").fetchone()[0] == 0


def test_a_bulk_import_that_died_leaves_indexes_that_connect_makes_again(tmp_path):
    clock = FakeClock(START)
    path = tmp_path / "newsletter.db"
    db = new_db(path, clock)
    before = subscriber_indexes(db)
    with transaction(db):  # what a killed import leaves: its first transactions, committed, and no indexes
        suspend_subscriber_upkeep(db)
        db.conn.executemany("INSERT INTO subscribers (email, country, created_at, updated_at) "
                            "VALUES (?, 'TT', 'x', 'x')", [(f"person{number}@example.org",) for number in range(300)])
    db.close()
    assert [name for name, _ in subscriber_indexes(connect(path, migrate_schema=False))] == [
        "sqlite_autoindex_subscribers_1"]
    db = connect(path)
    assert subscriber_indexes(db) == before
    assert_counts_true(db, clock)


def test_a_write_by_another_connection_during_a_bulk_import_is_counted(tmp_path):
    """Counts taken as the rows go in are only exact while nobody else writes: a subscribe from the web
    between two transactions of the import must not be lost."""
    clock = FakeClock(START)
    path = tmp_path / "newsletter.db"
    db = new_db(path, clock)
    other = connect(path)
    written = []

    def web_subscribe_meanwhile(_: int) -> None:
        if not written:
            written.append(subscribers.add(other, "web@example.org", country="BB", interests=["security"],
                                           clock=clock))

    import_csv(db, write_people(tmp_path / "first.csv", random.Random(6), 500), batch_size=100, clock=clock,
               progress=web_subscribe_meanwhile)
    assert written
    assert_counts_true(db, clock)
    assert_counts_true(other, clock)


def test_a_bulk_import_of_clean_rows_counts_them_exactly(tmp_path):
    """Clean rows (every one on the fast path) are counted from their columns as they go in."""
    spec = importlib.util.spec_from_file_location("subscribers_generate", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    path = tmp_path / "clean.csv"
    generator.main(["--rows", "3000", "--seed", "8", "-o", str(path)])
    clock = FakeClock(START)
    db = new_db(tmp_path / "newsletter.db", clock)
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    report = import_csv(db, path, batch_size=1000, clock=clock)
    db.conn.set_trace_callback(None)
    assert report.inserted == 3000
    assert not any("GROUP BY" in s for s in statements)
    assert_counts_true(db, clock)
