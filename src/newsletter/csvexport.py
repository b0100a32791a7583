"""Export subscribers as CSV in the same columns the importer reads, so an export can be imported again."""

from __future__ import annotations

import csv
from typing import IO

import sqlite_utils

from .interests import Taxonomy
from .segments import Segment, iter_subscribers, parse_segment

COLUMNS = ["email", "name", "country", "language", "interests", "status", "consent_at", "consent_source",
           "consent_ip", "created_at", "updated_at"]


def export_csv(db: sqlite_utils.Database, out: IO[str], segment: Segment | str = "status:active") -> int:
    """Write the segment's subscribers to `out`, streamed; returns the number of rows."""
    segment = parse_segment(segment, db) if isinstance(segment, str) else segment
    taxonomy = Taxonomy.load(db)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = 0
    for subscriber in iter_subscribers(db, segment):
        values = dict(subscriber, interests="|".join(taxonomy.slugs_in(subscriber["interests"])))
        writer.writerow([_defuse(values[column]) for column in COLUMNS])
        rows += 1
    return rows


def _defuse(value) -> str:
    """Keep spreadsheets from running a cell as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
