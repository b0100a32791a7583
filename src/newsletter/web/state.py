"""What every view needs from the application: settings, clock, signer, throttles and this request's database
(lent from a pool of open connections)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils
from flask import current_app, g

from ..clock import Clock
from ..config import Config
from ..db import connect
from ..interests import Taxonomy
from ..signing import Signer
from .throttle import Throttle

if TYPE_CHECKING:
    from .background import Background
    from .staff_access import LoginThrottle

EXTENSION_KEY = "newsletter"


@dataclass
class WebState:
    config: Config
    clock: Clock
    signer: Signer
    subscribe_throttle: Throttle
    login_throttle: "LoginThrottle"
    background: "Background | None" = None  # set by create_app
    pool: "ConnectionPool | None" = None  # set by create_app


def state() -> WebState:
    return current_app.extensions[EXTENSION_KEY]


class ConnectionPool:
    """Open SQLite connections kept between requests, one lent to each request that needs one.

    Opening a connection runs the PRAGMAs and the migration check, and closing the last one checkpoints
    the WAL with an fsync: per request, that was most of the one-click unsubscribe's time
    (benchmarks/web.py). The schema is migrated once, by create_app, before the first request.
    """

    def __init__(self, path: Path, keep: int = 16) -> None:
        self.path = path
        self.keep = keep
        self._idle: list[sqlite_utils.Database] = []
        self._lock = threading.Lock()

    def take(self) -> sqlite_utils.Database:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return connect(self.path, migrate_schema=False)

    def give_back(self, db: sqlite_utils.Database) -> None:
        if db.conn.in_transaction:  # a request that failed half-way: nothing of it may stay
            db.conn.rollback()
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(db)
                return
        db.conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for db in idle:
            db.conn.close()


_taxonomy_lock = threading.Lock()
_taxonomies: dict[str, tuple[str, Taxonomy]] = {}  # database path -> (fingerprint, taxonomy)


def current_taxonomy() -> Taxonomy:
    """The interests, read once and kept while their rows stay the same: a page needs them on every view,
    and building the spelling index costs more than the rest of the preference page's logic."""
    fingerprint = database().execute(
        "SELECT group_concat(slug || '|' || bit || '|' || label_en || '|' || label_es || '|' || label_pt || '|' "
        "|| label_fr, char(30)) FROM (SELECT * FROM interests ORDER BY bit)").fetchone()[0] or ""
    key = str(state().config.database)
    with _taxonomy_lock:
        cached = _taxonomies.get(key)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    loaded = Taxonomy.load(database())
    with _taxonomy_lock:
        _taxonomies[key] = (fingerprint, loaded)
    return loaded


def database() -> sqlite_utils.Database:
    """One connection per request, taken from the pool on first use and given back when the request ends."""
    if "db" not in g:
        g.db = state().pool.take()
    return g.db


def close_database(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        state().pool.give_back(db)
