"""The do-not-mail list. Keyed by a hash of the address, so an erased person leaves no readable trace,
yet an import or a subscribe form can still tell that the address must never be mailed again."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .clock import Clock, SystemClock, utc_iso

if TYPE_CHECKING:  # the CLI reads REASONS at start-up, which must not import sqlite-utils
    import sqlite_utils

REASONS = ("erased", "hard-bounce", "soft-bounce", "complaint", "manual", "unsubscribed")


def email_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def suppress(db: sqlite_utils.Database, email: str, reason: str, source: str = "",
             clock: Clock = SystemClock(), keep_address: bool = True) -> None:
    """Add (or refresh) a suppression. keep_address=False stores only the hash, as erasure requires."""
    if reason not in REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}; use one of {', '.join(REASONS)}")
    db.execute(
        """INSERT INTO suppressions (email_hash, email, reason, source, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(email_hash) DO UPDATE SET reason = excluded.reason, source = excluded.source,
           email = excluded.email, created_at = excluded.created_at""",
        [email_hash(email), email.strip().lower() if keep_address else None, reason, source, utc_iso(clock.now())],
    )


def is_suppressed(db: sqlite_utils.Database, email: str) -> bool:
    return db.execute("SELECT 1 FROM suppressions WHERE email_hash = ?", [email_hash(email)]).fetchone() is not None


def suppressed_hashes(db: sqlite_utils.Database, hashes: list[str]) -> set[str]:
    if not hashes:
        return set()
    rows = db.execute(
        f"SELECT email_hash FROM suppressions WHERE email_hash IN ({', '.join('?' * len(hashes))})", hashes
    )
    return {row[0] for row in rows}


def unsuppress(db: sqlite_utils.Database, email: str) -> bool:
    return db.execute("DELETE FROM suppressions WHERE email_hash = ?", [email_hash(email)]).rowcount > 0


def list_suppressions(db: sqlite_utils.Database, reason: str | None = None) -> list[dict]:
    where, params = ("WHERE reason = ?", [reason]) if reason else ("", [])
    return list(db.query(
        f"SELECT coalesce(email, '(erased: ' || substr(email_hash, 1, 12) || ')') AS email, reason, source, "
        f"created_at FROM suppressions {where} ORDER BY created_at DESC", params
    ))
