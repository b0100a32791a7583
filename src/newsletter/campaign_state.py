"""A campaign's state in the database (draft, scheduled, sending, paused, cancelled, sent) and the lease
that lets only one process send it at a time.

A pause has an owner: `paused_by` is "operator" (someone asked; only `resume` undoes it) or "fault" (the
relay or our own settings stopped the send: `pause_reason` says what to fix, and the next `send`, or the
scheduler after `fault_retry_at`, checks the relay again and carries on by itself once it answers).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

import sqlite_utils

from .campaigns import Campaign
from .clock import Clock, SystemClock, parse_utc, utc_iso
from .db import transaction

STATES = ("draft", "scheduled", "sending", "paused", "cancelled", "sent")
LEASE_SECONDS = 60
FAULT_RETRY_FIRST = 60.0  # seconds before the scheduler first tries a campaign paused by a fault again,
FAULT_RETRY_MAX = 3600.0  # doubling on each failed try up to this: a circuit breaker, not a retry storm
OPERATOR_PAUSE = "paused by an operator"


class StateError(ValueError):
    """A change that the campaign's current state does not allow; says what would."""


def register(db: sqlite_utils.Database, campaign: Campaign, clock: Clock = SystemClock()) -> dict:
    """Make sure the campaign has its row; the folder stays the source of its content."""
    now = utc_iso(clock.now())
    db.execute(
        """INSERT INTO campaigns (slug, title, state, segment, transport, send_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(slug) DO UPDATE SET title = excluded.title, segment = excluded.segment,
               transport = excluded.transport, updated_at = excluded.updated_at""",
        [campaign.slug, campaign.title, "scheduled" if campaign.send_at else "draft", campaign.segment,
         campaign.transport, utc_iso(campaign.send_at) if campaign.send_at else None, now, now],
    )
    db.execute("INSERT INTO campaign_history (slug, from_state, state, reason, at) SELECT slug, NULL, state, "
               "'built', ? FROM campaigns WHERE slug = ? AND NOT EXISTS (SELECT 1 FROM campaign_history "
               "WHERE slug = ?)", [now, campaign.slug, campaign.slug])
    return get(db, campaign.slug)


def history(db: sqlite_utils.Database, slug: str) -> list[dict]:
    """Every state the campaign went through, oldest first, with why (a pause's reason) where one was given."""
    return list(db.query("SELECT from_state, state, reason, at FROM campaign_history WHERE slug = ? ORDER BY id",
                         [slug]))


def get(db: sqlite_utils.Database, slug: str) -> dict | None:
    """The campaign's row: state, paused_by, pause_reason, fault_tries, fault_retry_at, times, last_error."""
    rows = list(db.query("SELECT * FROM campaigns WHERE slug = ?", [slug]))
    return rows[0] if rows else None


def paused_by_fault(row: dict | None) -> bool:
    return row is not None and row["state"] == "paused" and row["paused_by"] == "fault"


def set_state(db: sqlite_utils.Database, slug: str, state: str, *, clock: Clock = SystemClock(),
              allowed_from: tuple[str, ...] | None = None, reason: str = "", **columns) -> None:
    """Change the state and add it to campaign_history; `reason` (else pause_reason or last_error) is kept
    with the change."""
    if state not in STATES:
        raise StateError(f"unknown state {state!r}")
    row = get(db, slug)
    if row is None:
        raise StateError(f"campaign {slug!r} has not been built or sent yet; `newsletter campaign list` shows them")
    if allowed_from is not None and row["state"] not in allowed_from:
        raise StateError(f"campaign {slug} is {row['state']}; this needs it to be {' or '.join(allowed_from)}")
    columns.update(state=state, updated_at=utc_iso(clock.now()))
    assignments = ", ".join(f"{name} = ?" for name in columns)
    db.execute(f"UPDATE campaigns SET {assignments} WHERE slug = ?", [*columns.values(), slug])
    db.execute("INSERT INTO campaign_history (slug, from_state, state, reason, at) VALUES (?, ?, ?, ?, ?)",
               [slug, row["state"], state, reason or columns.get("pause_reason") or columns.get("last_error") or "", columns["updated_at"]])


def schedule(db: sqlite_utils.Database, slug: str, when: datetime, clock: Clock = SystemClock()) -> None:
    set_state(db, slug, "scheduled", clock=clock, allowed_from=("draft", "scheduled", "paused"),
              send_at=utc_iso(when))


def unschedule(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> None:
    set_state(db, slug, "draft", clock=clock, allowed_from=("scheduled",), send_at=None)


def pause(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock(), reason: str = OPERATOR_PAUSE) -> None:
    """An operator's pause: it stays until `resume`, whatever the relay does. Also takes over a fault's pause."""
    row = get(db, slug)
    allowed = ("sending", "scheduled", "paused") if paused_by_fault(row) else ("sending", "scheduled")
    set_state(db, slug, "paused", clock=clock, allowed_from=allowed, paused_by="operator", pause_reason=reason,
              fault_retry_at=None)


def pause_for_fault(db: sqlite_utils.Database, slug: str, reason: str, clock: Clock = SystemClock()) -> bool:
    """Pause a sending campaign because of the relay or our settings, with the reason; a campaign already
    paused by a fault gets the new reason and a longer wait. Returns False (and changes nothing) when an
    operator paused or cancelled it meanwhile, or it is not sending."""
    now = clock.now()
    with transaction(db):
        row = get(db, slug)
        if row is None or not (row["state"] == "sending" or paused_by_fault(row)):
            return False
        tries = row["fault_tries"] + 1
        wait = min(FAULT_RETRY_MAX, FAULT_RETRY_FIRST * 2 ** (tries - 1))
        set_state(db, slug, "paused", clock=clock, paused_by="fault", pause_reason=reason[:2000],
                  fault_tries=tries, fault_retry_at=utc_iso(now + timedelta(seconds=wait)))
    return True


def fault_cleared(db: sqlite_utils.Database, slug: str) -> None:
    """A message got through: the next fault starts the back-off from the beginning again."""
    db.execute("UPDATE campaigns SET fault_tries = 0 WHERE slug = ? AND fault_tries != 0", [slug])


def resume(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> None:
    set_state(db, slug, "sending", clock=clock, allowed_from=("paused",), paused_by=None, pause_reason=None,
              fault_retry_at=None)


def cancel(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> int:
    """Stop for good: what was not sent yet is marked skipped. Returns how many deliveries that was."""
    with transaction(db):
        set_state(db, slug, "cancelled", clock=clock, allowed_from=("draft", "scheduled", "sending", "paused"))
        return skip_unsent(db, slug, clock)


def skip_unsent(db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> int:
    """Mark every row of a cancelled campaign that is not sent yet skipped (also rows a sender gave back)."""
    return db.execute(
        "UPDATE deliveries SET status = 'skipped', last_text = 'campaign cancelled', updated_at = ? "
        "WHERE campaign = ? AND status IN ('queued', 'deferred')", [utc_iso(clock.now()), slug]
    ).rowcount


def due_campaigns(db: sqlite_utils.Database, now: datetime) -> list[str]:
    """Scheduled campaigns whose time has come, interrupted ones that must be finished, and campaigns
    paused by a fault whose next try has come."""
    stamp = utc_iso(now)
    return [row[0] for row in db.execute(
        "SELECT slug FROM campaigns WHERE (state = 'scheduled' AND send_at <= ?) OR state = 'sending' "
        "OR (state = 'paused' AND paused_by = 'fault' AND fault_retry_at <= ?) ORDER BY send_at, slug",
        [stamp, stamp]
    )]


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_is_dead(owner: str) -> bool:
    """A lease held by a process of this host that no longer runs can be taken at once."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire_lease(db: sqlite_utils.Database, slug: str, owner: str, clock: Clock = SystemClock()) -> bool:
    """Take or renew the right to send `slug`; False while another live process holds it."""
    now = clock.now()
    with transaction(db):
        row = db.execute("SELECT lease_owner, lease_until FROM campaigns WHERE slug = ?", [slug]).fetchone()
        if row is None:
            return False
        holder, until = row
        free = (holder is None or holder == owner or until is None or parse_utc(until) <= now
                or _owner_is_dead(holder))
        if free:
            db.execute("UPDATE campaigns SET lease_owner = ?, lease_until = ? WHERE slug = ?",
                       [owner, utc_iso(now + timedelta(seconds=LEASE_SECONDS)), slug])
        return free


def release_lease(db: sqlite_utils.Database, slug: str, owner: str) -> None:
    db.execute("UPDATE campaigns SET lease_owner = NULL, lease_until = NULL WHERE slug = ? AND lease_owner = ?",
               [slug, owner])
