"""The SQLite database: opening it the one right way, and forward migrations run on every start."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable, Mapping

import sqlite_utils

STATUSES = ("pending", "active", "paused", "unsubscribed", "bounced", "complained")
LANGUAGES = ("en", "es", "pt", "fr")

# The bureau's themes. Each has a fixed bit in subscribers.interests, so a segment on interests is a
# bitwise test inside a covering index rather than a join (see docs/design.md). Every segment names a
# status (active by default), so the one index led by status serves every segment query.
SEED_INTERESTS = [
    ("infrastructure", 0, "Infrastructure and IXPs", "Infraestructura e IXP", "Infraestrutura e IXPs",
     "Infrastructure et IXP"),
    ("security", 1, "Security and DNSSEC", "Seguridad y DNSSEC", "Segurança e DNSSEC", "Sécurité et DNSSEC"),
    ("policy", 2, "Policy and governance", "Políticas y gobernanza", "Políticas e governança",
     "Politiques et gouvernance"),
    ("training", 3, "Capacity building and training", "Fortalecimiento de capacidades y formación",
     "Capacitação e formação", "Renforcement des capacités et formation"),
    ("grants", 4, "Community grants and development", "Subvenciones comunitarias y desarrollo",
     "Subsídios comunitários e desenvolvimento", "Subventions communautaires et développement"),
]


def _v1(db: sqlite_utils.Database) -> None:
    # AUTOINCREMENT: ids are never reused after an erasure, so an old signed link or VERP address can
    # never come to name someone else.
    _execute_all(
        db,
        """
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL DEFAULT '',
            country TEXT NOT NULL DEFAULT '',
            language TEXT NOT NULL DEFAULT 'en',
            interests INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'active',
            paused_until TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            consent_at TEXT,
            consent_source TEXT,
            consent_ip TEXT,
            consent_user_agent TEXT,
            consent_wording TEXT,
            import_id INTEGER
        );
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            file TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            rows INTEGER NOT NULL DEFAULT 0,
            inserted INTEGER NOT NULL DEFAULT 0,
            updated INTEGER NOT NULL DEFAULT 0,
            merged INTEGER NOT NULL DEFAULT 0,
            suppressed INTEGER NOT NULL DEFAULT 0,
            rejected INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE interests (
            slug TEXT PRIMARY KEY,
            bit INTEGER NOT NULL UNIQUE CHECK (bit BETWEEN 0 AND 62),
            label_en TEXT NOT NULL,
            label_es TEXT NOT NULL,
            label_pt TEXT NOT NULL,
            label_fr TEXT NOT NULL
        );
        CREATE TABLE segments (
            name TEXT PRIMARY KEY,
            expression TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE suppressions (
            email_hash TEXT PRIMARY KEY,
            email TEXT,
            reason TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE TABLE campaigns (
            slug TEXT PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'draft',
            segment TEXT NOT NULL DEFAULT '',
            transport TEXT,
            send_at TEXT,
            queued_at TEXT,
            started_at TEXT,
            finished_at TEXT,
            lease_owner TEXT,
            lease_until TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            campaign TEXT NOT NULL,
            subscriber_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_code INTEGER,
            last_enhanced TEXT,
            last_text TEXT,
            message_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (campaign, subscriber_id)
        );
        CREATE INDEX deliveries_work ON deliveries (campaign, status, next_attempt_at);
        CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);
        CREATE TABLE bounce_events (
            id INTEGER PRIMARY KEY,
            delivery_id INTEGER,
            subscriber_id INTEGER,
            email TEXT NOT NULL,
            kind TEXT NOT NULL,
            code TEXT,
            diagnostic TEXT,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX bounce_events_subscriber ON bounce_events (subscriber_id, created_at);
        """
    )
    db.conn.executemany("INSERT INTO interests VALUES (?, ?, ?, ?, ?, ?)", SEED_INTERESTS)


def _execute_all(db: sqlite_utils.Database, script: str) -> None:
    """Run DDL statements one by one: executescript() would COMMIT the migration's transaction early."""
    for statement in script.split(";"):
        if statement.strip():
            db.conn.execute(statement)


def _v2(db: sqlite_utils.Database) -> None:
    """One row per occurrence of a recurring digest rule: the primary key makes a run happen once,
    however many schedulers are running and however long one was down."""
    _execute_all(
        db,
        """
        CREATE TABLE digest_runs (
            rule TEXT NOT NULL,
            occurrence TEXT NOT NULL,
            slug TEXT,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            PRIMARY KEY (rule, occurrence)
        )
        """,
    )


def _v3(db: sqlite_utils.Database) -> None:
    """Returned mail (see docs/bounces.md): how each bounce event was tied to its subscriber (a plain
    address match does not count towards the soft-bounce threshold); Message-IDs looked up when a report
    has no VERP address; reports that matched nobody, kept for review; provider webhook events already
    handled, so that a replay changes nothing."""
    _execute_all(
        db,
        """
        ALTER TABLE bounce_events ADD COLUMN matched_by TEXT NOT NULL DEFAULT '';
        CREATE INDEX deliveries_message_id ON deliveries (message_id) WHERE message_id IS NOT NULL;
        CREATE TABLE bounce_reviews (
            id INTEGER PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            mailbox_key TEXT NOT NULL,
            sender TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            recipients TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            message BLOB NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL
        );
        CREATE TABLE webhook_events (
            provider TEXT NOT NULL,
            event_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            PRIMARY KEY (provider, event_id)
        )
        """,
    )


def _v4(db: sqlite_utils.Database) -> None:
    """What the staff pages chart and tell, kept cheap to read at a million rows:

    - campaign_history: one row per state change (written by campaign_state), so a campaign page can say
      when it was built, scheduled, sent, and why it paused;
    - subscribers.status_changed_at, kept by a trigger on every status change whatever code made it, so
      losses can be counted per month and attributed to the campaign a person last received;
    - indexes for the per-minute delivery timeline, the monthly audience counts and bounces by delivery;
    - staff_sessions: staff logins, so that a logout or a new password ends a session for good."""
    _execute_all(
        db,
        """
        CREATE TABLE campaign_history (
            id INTEGER PRIMARY KEY,
            slug TEXT NOT NULL,
            from_state TEXT,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            at TEXT NOT NULL
        );
        CREATE INDEX campaign_history_slug ON campaign_history (slug, id);
        INSERT INTO campaign_history (slug, from_state, state, reason, at)
            SELECT slug, NULL, state, coalesce(last_error, ''), updated_at FROM campaigns;
        ALTER TABLE subscribers ADD COLUMN status_changed_at TEXT;
        UPDATE subscribers SET status_changed_at = updated_at WHERE status NOT IN ('active', 'pending');
        CREATE INDEX subscribers_created ON subscribers (created_at, status);
        CREATE INDEX subscribers_status_changed ON subscribers (status, status_changed_at);
        CREATE INDEX deliveries_timeline ON deliveries (campaign, status, updated_at);
        CREATE INDEX bounce_events_delivery ON bounce_events (delivery_id);
        CREATE TABLE staff_sessions (
            sid TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            ended_at TEXT
        )
        """,
    )
    db.conn.execute(  # one statement with ';' inside: not for _execute_all
        """CREATE TRIGGER subscribers_status_changed AFTER UPDATE OF status ON subscribers
           WHEN new.status IS NOT old.status
           BEGIN UPDATE subscribers SET status_changed_at = new.updated_at WHERE id = new.id; END""")


def _v5(db: sqlite_utils.Database) -> None:
    """segment_counts: how many subscribers share each (status, country, language, interests), kept true by
    triggers on every write from any caller, so a segment count sums a few thousand groups instead of reading
    up to a million index entries. The partial index finds pauses that have ended, which the sender treats as
    active (see segments.count)."""
    db.conn.execute(
        """CREATE TABLE segment_counts (
            status TEXT NOT NULL,
            country TEXT NOT NULL,
            language TEXT NOT NULL,
            interests INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (status, country, language, interests)
        ) WITHOUT ROWID"""
    )
    # status is a column too, although always 'paused': without it SQLite reads the table to check it.
    db.conn.execute("CREATE INDEX subscribers_pause_ends ON subscribers (paused_until, country, language, interests, "
                    "status) WHERE status = 'paused'")
    start_segment_counts(db)


def _v6(db: sqlite_utils.Database) -> None:
    """Why a campaign is paused (an operator, or a fault of the relay with its reason and the scheduler's
    back-off), and a record of every requeue after an incident (`newsletter deliveries retry`)."""
    _execute_all(
        db,
        """
        ALTER TABLE campaigns ADD COLUMN paused_by TEXT;
        ALTER TABLE campaigns ADD COLUMN pause_reason TEXT;
        ALTER TABLE campaigns ADD COLUMN fault_tries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE campaigns ADD COLUMN fault_retry_at TEXT;
        CREATE TABLE requeues (
            id INTEGER PRIMARY KEY,
            campaign TEXT NOT NULL,
            statuses TEXT NOT NULL,
            since TEXT,
            requeued INTEGER NOT NULL,
            refused INTEGER NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        )
        """,
    )


def _v7(db: sqlite_utils.Database) -> None:
    """Counts come from segment_counts, so the index (status, country, language, interests) only cost time: a
    bulk import had to build it, every write to keep it, and the planner took it to select a big segment in id
    order (a sort of most of the table). suspended_schema keeps the SQL of the indexes a bulk import drops
    for a while, so that connect() can make them again if the import died."""
    db.conn.execute("DROP INDEX IF EXISTS subscribers_segment")
    db.conn.execute("CREATE TABLE suspended_schema (name TEXT PRIMARY KEY, sql TEXT NOT NULL)")


def _v8(db: sqlite_utils.Database) -> None:
    """audience_version: a number that every change of who may be mailed moves on (a status change, an
    erasure, a suppression), kept by triggers whatever code made the change. A sender fetches a batch's
    subscribers once and reads only this number before each message, fetching again when it moved: an
    unsubscribe is still honoured by the very next message."""
    _execute_all(
        db,
        """
        CREATE TABLE audience_version (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL);
        INSERT INTO audience_version (id, n) VALUES (1, 0)
        """,
    )
    for trigger, event in (("audience_status", "AFTER UPDATE OF status ON subscribers WHEN new.status IS NOT old.status"),
                           ("audience_erased", "AFTER DELETE ON subscribers"),
                           ("audience_suppressed", "AFTER INSERT ON suppressions"),
                           ("audience_resuppressed", "AFTER UPDATE ON suppressions")):
        db.conn.execute(f"CREATE TRIGGER {trigger} {event} BEGIN UPDATE audience_version SET n = n + 1; END")


# Append new steps; never edit one that has shipped.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]


_GROUP = ("status = {row}.status AND country = {row}.country AND language = {row}.language "
          "AND interests = {row}.interests")
_ADD_NEW = ("INSERT INTO segment_counts VALUES (new.status, new.country, new.language, new.interests, 1) "
            "ON CONFLICT DO UPDATE SET n = n + 1;")
_REMOVE_OLD = f"UPDATE segment_counts SET n = n - 1 WHERE {_GROUP.format(row='old')};"
SEGMENT_COUNT_TRIGGERS = {
    "segment_counts_insert": f"AFTER INSERT ON subscribers BEGIN {_ADD_NEW} END",
    "segment_counts_delete": f"AFTER DELETE ON subscribers BEGIN {_REMOVE_OLD} END",
    "segment_counts_update": (
        "AFTER UPDATE OF status, country, language, interests ON subscribers WHEN old.status IS NOT new.status "
        "OR old.country IS NOT new.country OR old.language IS NOT new.language OR old.interests IS NOT new.interests "
        f"BEGIN {_REMOVE_OLD} {_ADD_NEW} END"
    ),
}


def segment_counts_live(db: sqlite_utils.Database) -> bool:
    """Whether the triggers keep segment_counts true (a bulk import suspends them while it fills an empty table)."""
    names = list(SEGMENT_COUNT_TRIGGERS)
    marks = ", ".join("?" * len(names))
    found = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({marks})", names)
    return found.fetchone()[0] == len(names)


def suspend_subscriber_upkeep(db: sqlite_utils.Database) -> None:
    """For a bulk load into an empty table: drop every index on subscribers but the unique email index (its SQL
    kept in suspended_schema), and the counts triggers, until resume_subscriber_upkeep(). Making an index in
    one sort at the end is cheaper than keeping it row by row. Call inside the load's transaction."""
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'subscribers' "
                         "AND sql IS NOT NULL").fetchall()
    for name, sql in indexes:
        db.conn.execute("INSERT OR REPLACE INTO suspended_schema VALUES (?, ?)", [name, sql])
        db.conn.execute(f'DROP INDEX "{name}"')
    for name in SEGMENT_COUNT_TRIGGERS:
        db.conn.execute(f"DROP TRIGGER IF EXISTS {name}")


def resume_subscriber_upkeep(db: sqlite_utils.Database,
                             counts: Mapping[tuple[str, str, str, int], int] | None = None) -> None:
    """Make the suspended indexes again and start the counts: from `counts` ((status, country, language,
    interests) -> subscribers) when the caller knows them exactly, else from one GROUP BY. Call inside a
    transaction."""
    for name, sql in db.execute("SELECT name, sql FROM suspended_schema").fetchall():
        if db.execute("SELECT NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?)",
                      [name]).fetchone()[0]:
            db.conn.execute(sql)
    db.conn.execute("DELETE FROM suspended_schema")
    start_segment_counts(db, counts)


def start_segment_counts(db: sqlite_utils.Database,
                         counts: Mapping[tuple[str, str, str, int], int] | None = None) -> None:
    """Fill segment_counts afresh (from `counts`, or counting every group in one GROUP BY) and let the
    triggers carry on from there; call inside a transaction."""
    db.conn.execute("DELETE FROM segment_counts")
    if counts is None:
        db.conn.execute("INSERT INTO segment_counts SELECT status, country, language, interests, count(*) "
                        "FROM subscribers GROUP BY status, country, language, interests")
    else:
        db.conn.executemany("INSERT INTO segment_counts VALUES (?, ?, ?, ?, ?)",
                            [(*group, n) for group, n in counts.items()])
    for name, body in SEGMENT_COUNT_TRIGGERS.items():
        db.conn.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")


def ensure_indexes(db: sqlite_utils.Database) -> None:
    """What a bulk import suspends while it fills an empty table, made again here if it died meanwhile."""
    def incomplete() -> bool:
        return bool(db.execute("SELECT EXISTS (SELECT 1 FROM suspended_schema)").fetchone()[0]) or \
            not segment_counts_live(db)

    if incomplete():
        with transaction(db):
            if incomplete():  # another process may have made them again meanwhile
                resume_subscriber_upkeep(db)


def schema_version(db: sqlite_utils.Database) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def migrate(db: sqlite_utils.Database) -> int:
    """Bring the schema up to date, one transaction per step; returns the version reached."""
    version = schema_version(db)
    for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
        with transaction(db):
            if schema_version(db) >= number:  # another process migrated meanwhile
                continue
            step(db)
            db.conn.execute(f"PRAGMA user_version = {number}")
    return schema_version(db)


BUSY_TIMEOUT_ENV = "NEWSLETTER_DB_TIMEOUT"  # seconds to wait for another process's write lock (default 30)


class DatabaseError(Exception):
    """The database cannot be used as it is; the message names the file and says what to do."""


def busy_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get(BUSY_TIMEOUT_ENV, "30")))
    except ValueError:
        raise DatabaseError(f"{BUSY_TIMEOUT_ENV}={os.environ[BUSY_TIMEOUT_ENV]!r} is not a number of seconds") from None


def connect(path: str | Path, *, migrate_schema: bool = True) -> sqlite_utils.Database:
    """Open the database with WAL, a busy timeout and foreign-key checks, migrated to the latest schema.

    A database whose file or folder cannot be written is opened read-only (`db.read_only` is True), so
    that commands that only read still work; the first write then fails with a clear error (explain()).
    """
    path = Path(path)
    if path.is_dir():
        raise DatabaseError(f"database {path} is a folder, not a file; set database in the config to a file "
                            f"such as {path / 'newsletter.db'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of database {path}: {exc.strerror or exc}") from None
    try:
        conn = _open(path)
        read_only = False
    except sqlite3.DatabaseError as exc:
        if not (path.is_file() and "unable to open" in str(exc)):
            raise DatabaseError(explain(exc, path) or f"cannot open database {path}: {exc}") from None
        conn = _open_read_only(path)
        read_only = True
    db = sqlite_utils.Database(conn)
    db.read_only = read_only
    try:
        if read_only:
            if migrate_schema and schema_version(db) < len(MIGRATIONS):
                raise DatabaseError(f"database {path} is read-only and needs upgrading to schema "
                                    f"{len(MIGRATIONS)}: run a command once with write access to it and its folder")
        elif migrate_schema:
            migrate(db)
            ensure_indexes(db)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(explain(exc, path) or f"cannot open database {path}: {exc}") from None
    return db


def _open(path: Path) -> sqlite3.Connection:
    timeout = busy_timeout()
    conn = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = FILE")
        conn.execute("PRAGMA secure_delete = ON")  # an erased person's bytes are overwritten, not left in free pages
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _open_read_only(path: Path) -> sqlite3.Connection:
    """A folder we may not write to leaves WAL no room for its -shm file: open the file as immutable,
    which is safe because no one can write to the database there either."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(explain(exc, path) or f"cannot open database {path}: {exc}") from None
    return conn


def explain(exc: sqlite3.Error, path: str | Path) -> str:
    """One line for a database error that is about the file, not about our code; "" for any other."""
    text = str(exc)
    if "file is not a database" in text or "malformed" in text:
        return (f"{path} is not a SQLite database (or it is damaged); point database in the config at the "
                f"newsletter's database, or move this file away to start a new one")
    if "database is locked" in text or "database table is locked" in text:
        return (f"database {path} stayed locked by another process for more than {busy_timeout():.0f} s; try "
                f"again when the other command (an import, a send) has finished")
    if "disk is full" in text or "disk I/O error" in text:
        return (f"cannot write to database {path}: {text}; free some disk space and run the command again "
                f"(what was being written was rolled back)")
    if "readonly database" in text or "read-only" in text:
        return (f"database {path} is read-only, and this command needs to write to it; run it as a user who "
                f"may write to the file and its folder")
    if "unable to open" in text:
        folder = Path(path).parent
        hint = "the folder is read-only" if not os.access(folder, os.W_OK) else text
        return f"cannot open database {path}: {hint}; check the database setting and the folder's permissions"
    return ""


class transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception: nothing is ever half-written."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.conn = db.conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
