"""Segments: a small expression such as `country:BB,TT interest:security language:es status:active`.

Terms are ANDed; the comma-separated values of one term are ORed. `@name` includes a saved segment.
Quote a value that has spaces: `country:"Trinidad y Tobago",BB`.
With no status term a segment means active subscribers, so nobody unsubscribed is ever selected by
accident. A count sums the matching groups of the segment_counts table, which triggers keep true on every
write (db.py), so it costs the same for ten subscribers or a million; the subscribers of a segment are
read in id order, in one pass over the table.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Iterator

import sqlite_utils

from .clock import Clock, SystemClock, utc_iso
from .db import STATUSES, segment_counts_live
from .interests import Taxonomy
from .normalize import InvalidValue, normalize_country, normalize_language

_KEYS = {"country": "countries", "countries": "countries", "interest": "interests", "interests": "interests",
         "language": "languages", "lang": "languages", "status": "statuses"}


class SegmentError(ValueError):
    """An expression that cannot be understood; the message shows the term and a valid example."""


@dataclass
class Segment:
    countries: set[str] = field(default_factory=set)
    interests: set[str] = field(default_factory=set)
    languages: set[str] = field(default_factory=set)
    statuses: set[str] = field(default_factory=set)

    def __str__(self) -> str:
        parts = [
            f"{key}:{','.join(sorted(values))}"
            for key, values in (("country", self.countries), ("interest", self.interests),
                                ("language", self.languages), ("status", self.statuses))
            if values
        ]
        return " ".join(parts) or "status:active"

    def where(self, taxonomy: Taxonomy, alias: str = "") -> tuple[str, list]:
        """SQL condition and parameters selecting this segment's subscribers.

        The unary + keeps SQLite from reading the segment through an index led by status: subscribers are
        selected in id order, and for a segment of any size one pass over the table in that order is cheaper
        than an index search and a sort of most of it (about 3x at a million)."""
        prefix = f"{alias}." if alias else ""
        return self._condition(taxonomy, f"+{prefix}status", prefix)

    def _condition(self, taxonomy: Taxonomy, status: str, prefix: str = "") -> tuple[str, list]:
        statuses = sorted(self.statuses or {"active"})
        clauses, params = self._audience(taxonomy, prefix)
        return " AND ".join([f"{status} IN ({', '.join('?' * len(statuses))})", *clauses]), [*statuses, *params]

    def _audience(self, taxonomy: Taxonomy, prefix: str = "") -> tuple[list[str], list]:
        """The conditions on country, language and interests: everything but the status."""
        clauses, params = [], []
        for column, values in (("country", self.countries), ("language", self.languages)):
            if values:
                clauses.append(f"{prefix}{column} IN ({', '.join('?' * len(values))})")
                params.extend(sorted(values))
        if self.interests:
            clauses.append(f"({prefix}interests & ?) != 0")
            params.append(taxonomy.mask(self.interests))
        return clauses, params


def parse_segment(expression: str, db: sqlite_utils.Database | None = None, _seen: frozenset = frozenset()) -> Segment:
    """Parse an expression; `@name` terms are read from the saved segments in db.

    Plain terms are collected first and each saved segment then narrows them, so the order of the
    terms never changes the result.
    """
    segment = Segment()
    taxonomy = Taxonomy.load(db) if db is not None else None
    saved = []
    for term in _terms(expression):
        if term.startswith("@"):
            saved.append(term)
            continue
        key, sep, raw_values = term.partition(":")
        if not sep or key.lower() not in _KEYS or not raw_values:
            raise SegmentError(
                f"cannot read {term!r} in segment {expression!r}; write terms like "
                "country:BB,TT interest:security language:es status:active (or @saved-name)"
            )
        attribute = _KEYS[key.lower()]
        values = getattr(segment, attribute)
        for raw in raw_values.split(","):
            if raw.strip():
                values.add(_value(attribute, raw, taxonomy, term))
    for term in saved:
        _merge(segment, _saved(db, term[1:], _seen), term)
    return segment


def _terms(expression: str) -> list[str]:
    """Terms split on spaces, except inside quotes: country:"Trinidad y Tobago",BB is one term."""
    try:
        return shlex.split(expression)
    except ValueError:
        raise SegmentError(f"unbalanced quote in segment {expression!r}") from None


def _value(attribute: str, raw: str, taxonomy: Taxonomy | None, term: str) -> str:
    try:
        if attribute == "countries":
            return normalize_country(raw)
        if attribute == "languages":
            return normalize_language(raw)
        if attribute == "interests":
            return taxonomy.slug(raw) if taxonomy else raw.strip().lower()
    except InvalidValue as exc:
        raise SegmentError(f"in {term!r}: {exc}") from None
    status = raw.strip().lower()
    if status not in STATUSES:
        raise SegmentError(f"in {term!r}: unknown status {raw!r}; use one of {', '.join(STATUSES)}")
    return status


def _saved(db, name: str, seen: frozenset) -> Segment:
    if db is None:
        raise SegmentError(f"@{name}: saved segments need a database")
    if name in seen:
        raise SegmentError(f"saved segment @{name} refers to itself")
    row = db.execute("SELECT expression FROM segments WHERE name = ?", [name]).fetchone()
    if row is None:
        raise SegmentError(f"no saved segment named {name!r}; `newsletter segments list` shows them")
    return parse_segment(row[0], db, seen | {name})


def _merge(segment: Segment, other: Segment, term: str) -> None:
    for attribute in ("countries", "interests", "languages", "statuses"):
        mine, theirs = getattr(segment, attribute), getattr(other, attribute)
        if mine and theirs and not (mine & theirs):
            raise SegmentError(f"{term} selects {attribute} {sorted(theirs)}, which excludes {sorted(mine)}")
        setattr(segment, attribute, (mine & theirs) if mine and theirs else (mine or theirs))


def count(db: sqlite_utils.Database, segment: Segment | str, *, clock: Clock = SystemClock()) -> int:
    """How many subscribers the sender would queue for the segment now.

    The sum over the matching groups of segment_counts (a few thousand rows, whatever the list's size), or
    the full count while a bulk import has the counts suspended. A pause that has ended counts as active,
    as deliveries.queue makes it active before it selects.
    """
    segment = parse_segment(segment, db) if isinstance(segment, str) else segment
    taxonomy = Taxonomy.load(db)
    where, params = segment._condition(taxonomy, "status")  # segment_counts' key starts with status
    table, total = ("segment_counts", "sum(n)") if segment_counts_live(db) else ("subscribers", "count(*)")
    matched = db.execute(f"SELECT coalesce({total}, 0) FROM {table} WHERE {where}", params).fetchone()[0]
    statuses = segment.statuses or {"active"}
    if ("active" in statuses) != ("paused" in statuses):
        clauses, params = segment._audience(taxonomy)
        ended = db.execute(  # the index of pauses holds only paused rows; the planner would rather read them all
            " AND ".join(["SELECT count(*) FROM subscribers INDEXED BY subscribers_pause_ends "
                          "WHERE status = 'paused' AND paused_until <= ?", *clauses]),
            [utc_iso(clock.now()), *params]).fetchone()[0]
        matched += ended if "active" in statuses else -ended
    return matched


def iter_subscribers(db: sqlite_utils.Database, segment: Segment | str, batch: int = 2000) -> Iterator[dict]:
    """Stream a segment's subscribers in id order, a batch at a time: memory does not grow with the list."""
    segment = parse_segment(segment, db) if isinstance(segment, str) else segment
    where, params = segment.where(Taxonomy.load(db))
    last = 0
    while True:
        rows = list(db.query(
            f"SELECT * FROM subscribers WHERE {where} AND id > ? ORDER BY id LIMIT ?", [*params, last, batch]
        ))
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1]["id"]


def save(db: sqlite_utils.Database, name: str, expression: str, clock: Clock = SystemClock()) -> Segment:
    """Store an expression under a name (replacing an older one); it must parse first."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise SegmentError(f"segment name {name!r}: use letters, digits, - and _")
    segment = parse_segment(expression, db, frozenset({name}))
    db["segments"].upsert({"name": name, "expression": str(segment), "created_at": utc_iso(clock.now())}, pk="name")
    return segment


def saved_segments(db: sqlite_utils.Database) -> list[dict]:
    return list(db.query("SELECT name, expression, created_at FROM segments ORDER BY name"))


def delete(db: sqlite_utils.Database, name: str) -> bool:
    return db.execute("DELETE FROM segments WHERE name = ?", [name]).rowcount > 0

