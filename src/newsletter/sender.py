"""The sending engine: a campaign's delivery log worked through by several persistent SMTP connections,
carried by one event loop per process (and more processes for a big send: sendhelpers.py).

Each message goes through small named steps, each testable alone (after Mailman's pipeline):

    claim (a batch)  ->  still_wanted  ->  compose  ->  transmit  ->  decide  ->  record (a group commit)

Crash safety: a result is committed before the same connection carries the next message, and a new run
first puts rows a dead run left 'sending' back to 'queued'. So a kill loses nothing, and a subscriber can
get a second copy only if the kill fell while their message was in the server's hands: at most one
message per open connection. See docs/sending.md.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import sqlite_utils

from . import campaign_state, deliveries
from .bounces import record_smtp_bounce
from .campaigns import Campaign, load_campaign
from .clock import Clock, SystemClock, utc_iso
from .config import Config, SendingSettings
from .db import LANGUAGES, connect, transaction
from .deliveries import Job, Result
from .interests import Taxonomy
from .message import DkimKey, MessageFactory, new_message_id
from .prerender import render_in_child
from .ratelimit import RateLimiter
from .render import IssueRenderer
from .segments import parse_segment
from .sendhelpers import Helper, Share, shares
from .signing import Signer
from .subscribers import get as get_subscriber
from .transport import SESSION_STAGES, Reply, Transport, check_transport, open_transport, what_to_fix
from .verp import verp_address


RETRY_WAIT_STEP = 5.0  # seconds
HEARTBEAT_SECONDS = 30.0  # a progress line for the logs at least this often during a send
IDENTICAL_REFUSALS = 10  # the same refusal for this many messages in a row is the relay's, not theirs
SESSION_FAULTS_TO_PAUSE = 3  # 503s or lost sessions in a row on one connection before the campaign pauses
ROWS_PER_PROCESS = 2000  # a helper process costs a start-up: only for sends with this many rows each
CONNECTION_BATCH = 64  # rows a connection claims at once (at most [sending] batch_size)
GROUP_WAIT = 0.001  # seconds a commit may wait for more replies while fewer than half the connections answered
WATCH_SECONDS = 0.25  # how often the loop looks at the lease and the campaign's state
_ADDRESS = re.compile(r"<?[^\s<>@]+@[^\s<>@]+>?")


@dataclass
class SendSummary:
    slug: str
    counts: dict[str, int]
    sent_now: int
    elapsed: float
    finished: bool
    stopped_reason: str | None
    next_retry_at: datetime | None
    warnings: list[str] = field(default_factory=list)
    fault: str | None = None  # with stopped_reason "fault": what is wrong with the relay and what to fix
    processes: int = 1  # the most processes that carried one round ([sending] processes)


@dataclass(frozen=True)
class Decision:
    """What to write for one attempt."""

    status: str
    next_attempt_at: datetime | None = None
    bounce: bool = False
    slow_down: bool = False


def decide(reply: Reply, attempts_before: int, settings: SendingSettings, now: datetime,
           rng: random.Random = random.Random()) -> Decision:
    """Map a relay's reply to the row's next state: retry 4xx and lost connections with exponential
    back-off and jitter, stop on 5xx, and never blame the subscriber for a policy refusal.

    Only a temporary policy reply (421 4.7.0 rate limit, say) slows every connection down: waiting helps
    there. A final one does not get better by waiting; a run of them pauses the campaign instead (_Breaker).
    Connection faults never reach here: the row goes back untouched."""
    outcome = reply.outcome
    if outcome == "sent":
        return Decision("sent")
    if outcome == "bounced":
        return Decision("bounced", bounce=True)
    slow_down = outcome == "policy" and reply.code // 100 == 4
    if reply.retryable:
        attempt = attempts_before + 1
        if attempt >= settings.max_attempts:
            return Decision("failed", slow_down=slow_down)
        delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
        delay *= 1 + rng.random() * 0.25
        return Decision("deferred", next_attempt_at=now + timedelta(seconds=delay), slow_down=slow_down)
    return Decision("failed", slow_down=slow_down)


class Composer:
    """Renders variants once and builds each recipient's bytes."""

    def __init__(self, config: Config, campaign: Campaign, taxonomy: Taxonomy) -> None:
        self.config = config
        self.campaign = campaign
        self.renderer = IssueRenderer(campaign, config, taxonomy)
        dkim_key = None
        if config.dkim.private_key_file and config.dkim.domain and config.dkim.selector:
            dkim_key = DkimKey.from_file(config.dkim.domain, config.dkim.selector, config.dkim.private_key_file)
        self.signer = Signer(config.require_secret())
        self.factory = MessageFactory(config, self.signer, dkim_key)

    def load_variants(self, db: sqlite_utils.Database) -> None:
        """Render, in a child process, the variant of every profile still to be sent, so that this process
        never imports premailer (a profile that shows up later is still rendered here, on demand)."""
        known = self.renderer._by_profile
        profiles = [tuple(row) for row in db.execute(
            "SELECT DISTINCT s.language, s.interests, s.country FROM deliveries d "
            "JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign = ? AND d.status IN ('queued', 'sending', 'deferred')", [self.campaign.slug])
            if (row[0] or "en", row[1], row[2] or "") not in known]
        if not profiles:
            return
        self.adopt(render_in_child(self.config, self.campaign, profiles, ()))

    def rendered(self) -> tuple[dict, dict]:
        """The variants rendered so far, as adopt() takes them (for a helper process)."""
        return self.renderer._by_profile, self.renderer._variants

    def adopt(self, rendered: tuple[dict, dict]) -> None:
        by_profile, variants = rendered
        self.renderer._variants.update(variants)
        self.renderer._by_profile.update(by_profile)

    def compose(self, subscriber: dict, delivery_id: int, now: datetime) -> tuple[str, bytes]:
        variant = self.renderer.variant_for(subscriber)
        message_id = new_message_id(self.campaign.slug, delivery_id, self.config.sender_domain)
        return message_id, self.factory.build(variant, subscriber, message_id=message_id, now=now)

    def envelope_sender(self, delivery_id: int) -> str:
        """A per-delivery return path, so a bounce names its delivery whatever the remote server rewrote."""
        bounce = self.config.bounce_address
        if not bounce:
            return self.campaign.sender_address or self.config.sender_address
        return verp_address(bounce, delivery_id, self.config.require_secret())


class HelperFailed(RuntimeError):
    """What a helper process reported (or how it ended) when it failed."""


class SendError(RuntimeError):
    """A sending thread failed on something unexpected; the rows it held were put back, nothing is lost."""


@dataclass(frozen=True)
class SendProgress:
    """A snapshot for the logs of a long send: this run's results so far, and what is left."""

    slug: str
    sent: int
    deferred: int
    failed: int
    left: int
    rate: float  # messages recorded per second in this run, on the engine's clock
    eta_seconds: float | None

    def __str__(self) -> str:
        if self.eta_seconds is None:
            eta = "unknown"
        else:
            eta = f"{self.eta_seconds:.0f} s" if self.eta_seconds < 90 else f"{self.eta_seconds / 60:.0f} min"
        return (f"{self.slug}: sending: {self.sent:,} sent, {self.deferred:,} deferred, {self.failed:,} failed in "
                f"this run; {self.left:,} left; {self.rate:,.1f} msg/s; ETA {eta}")


class _Breaker:
    """Trips when the relay refuses IDENTICAL_REFUSALS messages in a row with the same words: it refuses
    everyone alike, so those rows are given back uncounted and the campaign pauses (the relay's fault)."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._run: list[Job] = []
        self.tripped: tuple | None = None

    def add(self, job: Job, reply: Reply, status: str) -> list[Job]:
        """Note one result; returns the jobs to give back (the whole run when it trips, or this one after)."""
        key = None
        if status in ("deferred", "failed") and reply.code:
            key = (reply.code, reply.enhanced, _ADDRESS.sub("<address>", reply.text))
        if self.tripped is not None:
            return [job] if key == self.tripped else []
        if key is None or key != self._key:
            self._key, self._run = key, []
        if key is None:
            return []
        self._run.append(job)
        if len(self._run) < IDENTICAL_REFUSALS:
            return []
        self.tripped, run, self._run = key, self._run, []
        return run


@dataclass
class _Outcome:
    """One delivery's result, on its way into the next group commit."""

    job: Job
    status: str
    reply: Reply | None = None
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    bounce: bool = False
    text: str = ""
    restore: list[Job] = field(default_factory=list)  # rows of a breaker's run to give back, after this one


class _Connection:
    """One SMTP connection carried by the loop, and the message it has in flight."""

    __slots__ = ("name", "transport", "job", "message_id", "ready", "unrecorded", "deadline", "session_faults",
                 "fault")

    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport
        self.job: Job | None = None  # composed or in flight
        self.message_id: str | None = None
        self.ready: tuple[str, bytes] | None = None  # (recipient, bytes) composed and not yet started
        self.unrecorded = False  # its last result is not committed yet: no next MAIL until it is
        self.deadline = 0.0  # time.monotonic() by which the relay must have answered
        self.session_faults = 0  # in a row; a lone 503 is retried, a run of them pauses the campaign
        self.fault: Reply | None = None  # the last connection fault

    def fileno(self) -> int:
        return self.transport.fileno()

    def needs_work(self) -> bool:
        return self.ready is None and self.job is None

    def startable(self) -> bool:
        return self.ready is not None and not self.unrecorded


class _Rows:
    """The rows this process claimed and the people they go to, handed out one at a time.

    Rows are claimed a batch at a time and their subscribers and suppressions read in one query; when
    anyone's right to be mailed changes meanwhile (audience_version moves), the rest are read again."""

    def __init__(self, sender: CampaignSender, db: sqlite_utils.Database, size: int) -> None:
        self.sender, self.db, self.size = sender, db, size
        self.jobs: deque[Job] = deque()
        self.people: dict[int, dict] = {}
        self.version = -1
        self.exhausted = False

    def next(self) -> tuple[Job, dict | None] | None:
        """The next row and its subscriber (None: not to be mailed any more), or None when none are due."""
        if not self.jobs:
            if self.exhausted:
                return None
            sender = self.sender
            held = deliveries.claim(self.db, sender.campaign.slug, sender.clock.now(), self.size)
            if not held:
                self.exhausted = True
                return None
            self.version = deliveries.audience_version(self.db)
            self.people = deliveries.recipients(self.db, held)
            self.jobs.extend(held)
        job = self.jobs.popleft()
        return job, self.people.get(job.id)

    def put_back(self, job: Job) -> None:
        self.jobs.appendleft(job)

    def recheck(self) -> None:
        if self.jobs and deliveries.audience_version(self.db) != self.version:
            self.version = deliveries.audience_version(self.db)
            self.people = deliveries.recipients(self.db, list(self.jobs))

    def release(self) -> None:
        """Give back what was claimed and not started (a stop)."""
        if self.jobs:
            deliveries.release(self.db, [job.id for job in self.jobs])
            self.jobs.clear()


class CampaignSender:
    """One run over one campaign's delivery log by N connections, carried by one thread's event loop.

    Before any row is claimed the relay is checked (connect, TLS, login, MAIL FROM); a fault of the
    connection, then or during the run, pauses the campaign with the reason and no recipient pays for it.
    Per batch: the subscribers and their suppressions in one query; per message: compose, throttle, write
    the envelope; whenever replies come in, their results go into one transaction (a group commit), and a
    connection starts its next message only once its previous result is committed.
    """

    def __init__(self, config: Config, campaign: Campaign, *, clock: Clock = SystemClock(),
                 stop: threading.Event | None = None, progress: Callable[[str], None] | None = None,
                 connections: int | None = None, transport_url: str | None = None,
                 heartbeat: Callable[[SendProgress], None] | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.config = config
        self.campaign = campaign
        self.clock = clock
        self.stop = stop or threading.Event()  # the caller's: Ctrl-C, a scheduler shutting down
        self._halt = threading.Event()  # ours: the relay is at fault or the lease is lost; never the caller's
        self._said = threading.Event()  # the campaign was paused or cancelled (seen after a commit or the watch)
        self._last_renewal = 0.0
        self.progress = progress
        self.heartbeat = heartbeat
        self.heartbeat_seconds = heartbeat_seconds
        self.total_connections = max(1, connections or config.sending.connections)
        self.connections = self.total_connections  # this process's share (_share_out)
        self.batch = max(1, min(config.sending.batch_size, CONNECTION_BATCH))
        self.transport_url = transport_url or campaign.transport or config.smtp_url
        self.db = connect(config.database)
        self.composer = Composer(config, campaign, Taxonomy.load(self.db))
        self._limiter = RateLimiter(clock, config.sending.rate_per_second, config.sending.rate_per_hour)
        self.limiter = self._limiter  # this process's, with its share of the rate (_share_out)
        self.owner = campaign_state.new_owner()
        self.rng = random.Random()
        self.sent_now = 0
        self.fault: str | None = None  # what the relay did wrong, when it paused the campaign
        self._transports: list[Transport] = []
        self._tally: dict[str, int] = {}
        self._errors: list[tuple[str, BaseException]] = []
        self._breaker = _Breaker()
        self._started_at = 0.0
        self._last_beat = 0.0
        self._lost_lease = False
        self._lease_elsewhere: threading.Event | None = None  # a helper's: set when the parent lost the lease
        self._seen_version = -1
        self._count_lock = threading.Lock()  # helpers' counts arrive on their reader threads
        self._helper_shares: list[Share] = []
        self.processes_used = 1

    @classmethod
    def helper(cls, config: Config, campaign: Campaign, rendered: tuple[dict, dict], share: Share, *,
               transport_url: str, clock: Clock, stop: threading.Event, lost_lease: threading.Event,
               progress: Callable[[str], None]) -> "CampaignSender":
        """The sender of a helper process (sendhelpers.py): its share of the connections and the rate, the
        variants the parent rendered, no lease of its own (the parent holds the campaign's)."""
        sender = cls(config, campaign, clock=clock, stop=stop, progress=progress, connections=share.connections,
                     transport_url=transport_url)
        sender.limiter = RateLimiter(clock, share.rate_per_second, share.rate_per_hour)
        sender.composer.adopt(rendered)
        sender._lease_elsewhere = lost_lease
        return sender

    def carry(self) -> None:
        """A helper's whole part: its connections until no row is due or it is told to stop."""
        self._started_at = self._last_beat = self.clock.monotonic()
        self._carry(self.db)

    @property
    def errors(self) -> list[tuple[str, BaseException]]:
        return self._errors

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self.db.conn.close()

    # -- the steps, per message ---------------------------------------------------------------------

    def compose_for(self, connection: _Connection, job: Job, subscriber: dict) -> None:
        """Build the message `connection` carries next; nothing goes out yet (so it may be done while the
        connection's previous result waits for its commit)."""
        connection.message_id, data = self.composer.compose(subscriber, job.id, self.clock.now())
        connection.job = job
        connection.ready = (subscriber["email"], data)

    def transmit(self, connection: _Connection) -> _Outcome | None:
        """Hand the composed message to the relay: its outcome when the relay answered at once (or the
        transport is not one the loop can wait on), else None until the loop sees the reply."""
        assert connection.ready is not None and connection.job is not None
        (rcpt, data), connection.ready = connection.ready, None
        transport = connection.transport
        mail_from = self.composer.envelope_sender(connection.job.id)
        if not hasattr(transport, "start"):  # smtplib's SMTPTransport, a Maildir: they answer as they send
            return self.decide_on(connection, transport.send(mail_from, rcpt, data))
        reply = transport.start(mail_from, rcpt, data)
        if reply is not None:
            return self.decide_on(connection, reply)
        connection.deadline = time.monotonic() + transport.timeout
        return None

    def decide_on(self, connection: _Connection, reply: Reply) -> _Outcome:
        """The relay answered for the message `connection` carried: what to record, and whether the
        relay (not the recipient) is at fault. A connection fault gives the row back as it was."""
        job = connection.job
        assert job is not None
        connection.job = None
        if reply.outcome == "connection":
            connection.fault = reply
            connection.session_faults += 1
            if connection.session_faults >= SESSION_FAULTS_TO_PAUSE or self._is_setup_fault(reply):
                self._pause_for_fault(what_to_fix(reply, self.transport_url))
            return _Outcome(job, "queued")
        connection.session_faults = 0
        decision = decide(reply, job.attempts, self.config.sending, self.clock.now(), self.rng)
        if decision.slow_down:
            self.limiter.slow_down()
        elif decision.status == "sent":
            self.limiter.succeeded()
        outcome = _Outcome(job, decision.status, reply, connection.message_id, decision.next_attempt_at,
                           decision.bounce)
        give_back = self._breaker.add(job, reply, decision.status)
        if give_back:
            outcome.restore = give_back
            self._pause_for_fault(what_to_fix(reply, self.transport_url) +
                                  f"; {IDENTICAL_REFUSALS} refused in a row were given back uncounted")
        return outcome

    def record(self, db: sqlite_utils.Database, outcomes: list[_Outcome]) -> None:
        """One transaction for every result that is ready (a group commit), then what follows from them:
        bounces, counts, progress, the lease, and a look at the campaign's state if anyone else wrote."""
        results, given_back = [], []
        for outcome in outcomes:
            reply = outcome.reply
            if outcome.status == "queued":
                given_back.append(outcome.job.id)
            elif reply is None:
                results.append(Result(outcome.job, outcome.status, text=outcome.text, count_attempt=False))
            else:
                results.append(Result(outcome.job, outcome.status, reply.code, reply.enhanced, reply.text,
                                      outcome.message_id, outcome.next_attempt_at))
        with transaction(db):
            deliveries.record(db, results, now=self.clock.now())
            if given_back:
                deliveries.release(db, given_back)
            for outcome in outcomes:
                if outcome.restore:  # after the run's own results: they are what is undone
                    deliveries.restore(db, outcome.restore)
        for outcome in outcomes:
            if outcome.bounce and outcome.reply is not None:  # its own transaction: the one bounce policy
                record_smtp_bounce(db, outcome.job, outcome.reply, clock=self.clock)
            if outcome.status != "queued":
                self._count(outcome.status)
        self._keep_lease(db)
        self._beat(db)
        # Another connection committed since we last looked (a pause, a cancel, a claim): read the state.
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen_version:
            self._seen_version = version
            if campaign_state.get(db, self.campaign.slug)["state"] in ("paused", "cancelled"):
                self._said.set()

    def _pause_for_fault(self, reason: str) -> None:
        """Stop the run and pause the campaign with `reason` (unless an operator paused or cancelled it)."""
        if self.fault is None:
            self.fault = reason
            campaign_state.pause_for_fault(self.db, self.campaign.slug, reason, self.clock)
        self._halt.set()

    def _stopping(self) -> bool:
        return self.stop.is_set() or self._halt.is_set() or self._said.is_set()

    # -- the loop -----------------------------------------------------------------------------------

    def _carry(self, db: sqlite_utils.Database) -> None:
        """Every connection, in this thread, until no row is due or the run stops. Each turn: compose the
        next message of every connection that has none, commit every result that came in (one
        transaction), start the composed messages of connections whose last result is now durable, and
        wait for replies."""
        if len(self._transports) < self.connections:
            self._transports += [open_transport(self.transport_url, starttls=self.config.sending.starttls)
                                 for _ in range(self.connections - len(self._transports))]
        connections = [_Connection(f"smtp-{number}", transport)
                       for number, transport in enumerate(self._transports[:self.connections])]
        busy: dict[int, _Connection] = {}  # by socket: a message in flight
        rows = _Rows(self, db, self.batch * self.connections)
        results: list[_Outcome] = []
        next_watch = self.clock.monotonic() + WATCH_SECONDS
        try:
            while True:
                if not self._stopping():
                    self._compose_ahead(connections, rows, results)
                if results:
                    # replies that come in meanwhile join the same commit: waiting a moment for them costs
                    # a message's round trip less than a commit costs CPU
                    if busy:
                        self._collect(busy, results, 0.0 if len(results) * 2 > len(busy) else GROUP_WAIT)
                    self.record(db, results)
                    results.clear()
                    for connection in connections:
                        connection.unrecorded = False
                wait = 0.0
                for connection in connections:
                    if self._stopping() or not connection.startable():
                        continue
                    wait = self.limiter.reserve()
                    if wait > 0:
                        break
                    try:
                        outcome = self.transmit(connection)
                    except Exception as exc:  # reported after the run; what is in flight is still recorded
                        self._failed(connection.name, exc)
                        break
                    if outcome is None:
                        busy[connection.fileno()] = connection
                    else:
                        results.append(outcome)
                        connection.unrecorded = True
                if results:
                    continue
                if not busy:
                    if self._stopping() or not wait:
                        return
                    self.clock.sleep(wait)
                    continue
                if not self._collect(busy, results, min(wait or WATCH_SECONDS, WATCH_SECONDS)):
                    self._give_up_on_silent(busy, results)
                if self.clock.monotonic() >= next_watch:
                    next_watch = self.clock.monotonic() + WATCH_SECONDS
                    self._watch()
                    self._beat(db)
        finally:
            if results:
                self.record(db, results)
            for connection in connections:
                if connection.ready is not None and connection.job is not None:
                    rows.put_back(connection.job)
            if not self._lost_lease:  # once another process holds the campaign, its rows are its own
                rows.release()

    def _compose_ahead(self, connections: list[_Connection], rows: _Rows, results: list[_Outcome]) -> None:
        """A next message for every connection with nothing in flight and nothing composed."""
        waiting = [connection for connection in connections if connection.needs_work()]
        if not waiting:
            return
        rows.recheck()
        for connection in waiting:
            while (found := rows.next()) is not None and found[1] is None:
                results.append(_Outcome(found[0], "skipped", text="not active or suppressed at send time"))
            if found is None:
                return
            try:
                self.compose_for(connection, *found)
            except Exception as exc:  # reported after the run; what is in flight is still recorded
                rows.put_back(found[0])
                self._failed(connection.name, exc)
                return

    def _collect(self, busy: dict[int, _Connection], results: list[_Outcome], timeout: float) -> bool:
        """Wait up to `timeout` for replies and decide on every message the relay has answered; False if
        nothing at all came in."""
        ready, _, _ = select.select(list(busy), [], [], timeout)
        for fileno in ready:
            connection = busy[fileno]
            reply = connection.transport.readable()
            if reply is not None:
                del busy[fileno]
                results.append(self.decide_on(connection, reply))
                connection.unrecorded = True
        return bool(ready)

    def _give_up_on_silent(self, busy: dict[int, _Connection], results: list[_Outcome]) -> None:
        """A relay that stays silent past the transport's timeout has lost the connection."""
        now = time.monotonic()
        for fileno, connection in list(busy.items()):
            if now >= connection.deadline:
                del busy[fileno]
                results.append(self.decide_on(connection, connection.transport.timed_out()))
                connection.unrecorded = True

    def _failed(self, name: str, error: Exception) -> None:
        """Something unexpected (a variant that cannot be rendered): stop the run, report it at the end."""
        self._errors.append((name, error))
        self._halt.set()

    @staticmethod
    def _is_setup_fault(reply: Reply | None) -> bool:
        """Connecting, TLS and logging in fail the same way for every message: pause at the first."""
        return reply is not None and (reply.stage in SESSION_STAGES or reply.code == 530)

    def _count(self, status: str, n: int = 1) -> None:
        with self._count_lock:
            self._tally[status] = self._tally.get(status, 0) + n
            if status == "sent":
                self.sent_now += n
        if self.progress:
            for _ in range(n):
                self.progress(status)

    def _beat(self, db: sqlite_utils.Database | None = None) -> None:
        """Every heartbeat_seconds on the clock, hand a progress snapshot to `heartbeat` (the scheduler's log)."""
        if self.heartbeat is None:
            return
        now = self.clock.monotonic()
        if now - self._last_beat < self.heartbeat_seconds:
            return
        self._last_beat = now
        with self._count_lock:
            tally = dict(self._tally)
        done = sum(tally.values())
        elapsed = max(now - self._started_at, 1e-9)
        rate = done / elapsed
        left = deliveries.unfinished(db or self.db, self.campaign.slug)
        self.heartbeat(SendProgress(self.campaign.slug, tally.get("sent", 0), tally.get("deferred", 0),
                                    tally.get("failed", 0) + tally.get("bounced", 0), left, rate,
                                    left / rate if rate > 0 else None))

    def run(self, *, wait_for_retries: bool = False) -> SendSummary:
        try:
            return self._run(wait_for_retries)
        finally:
            self.close()

    def _run(self, wait_for_retries: bool) -> SendSummary:
        started = time.monotonic()
        slug = self.campaign.slug
        if not campaign_state.acquire_lease(self.db, slug, self.owner, self.clock):
            return self._summary(started, "locked")
        try:
            row = campaign_state.get(self.db, slug)
            if row["state"] == "sending" or campaign_state.paused_by_fault(row):
                if not self._relay_answers():
                    return self._summary(started, "fault")
                if campaign_state.paused_by_fault(row):
                    campaign_state.resume(self.db, slug, self.clock)
            reason = self._send_all(wait_for_retries)
        finally:
            campaign_state.release_lease(self.db, slug, self.owner)
        return self._finish(started, reason)

    def _relay_answers(self) -> bool:
        """The check `newsletter smtp check` does, before any row is claimed; a failure pauses the campaign."""
        sender = self.config.bounce_address or self.campaign.sender_address or self.config.sender_address
        check = check_transport(self.transport_url, sender, starttls=self.config.sending.starttls)
        if check.ok:
            return True
        assert check.failure is not None
        self._pause_for_fault(what_to_fix(check.failure, self.transport_url))
        return False

    def _send_all(self, wait_for_retries: bool) -> str | None:
        """Rounds of connections until nothing is due; between rounds, wait for retries if asked to."""
        slug = self.campaign.slug
        self._started_at = self._last_beat = self._last_renewal = self.clock.monotonic()
        deliveries.reset_interrupted(self.db, slug, self.clock)
        self.composer.load_variants(self.db)  # those no one rendered yet
        try:
            while True:
                reason = self._round()
                if reason is not None:
                    return reason
                if deliveries.due(self.db, slug, self.clock.now()):
                    continue
                retry_at = deliveries.next_retry_at(self.db, slug)
                if retry_at is None:
                    return None
                if not wait_for_retries:
                    return "retries pending"
                # in short steps, so that a pause, a cancel or a stop is seen while waiting for a retry
                wait = max(0.0, (retry_at - self.clock.now()).total_seconds()) + 0.001
                self.clock.sleep(min(wait, RETRY_WAIT_STEP))
        finally:
            if not self._lost_lease:
                deliveries.reset_interrupted(self.db, slug, self.clock)
            if campaign_state.get(self.db, slug)["state"] == "cancelled":
                campaign_state.skip_unsent(self.db, slug, self.clock)

    def _round(self) -> str | None:
        """Carry every connection until they run out of due rows; the reason if stopped.

        A first Ctrl-C stops the run gently: messages in flight get their answer and are recorded (a
        second one interrupts at once; the next run puts back what was left 'sending')."""
        if self._watch():
            return self._reason()
        self._share_out(deliveries.unfinished(self.db, self.campaign.slug))
        helpers = [Helper(f"process-{number}", (self.config, self.campaign, self.composer.rendered(), share,
                                                self.transport_url, self.clock, os.getpid()), self._count)
                   for number, share in enumerate(self._helper_shares, start=2)]
        try:
            with _first_interrupt_sets(self.stop):
                self._carry(self.db)
                while (running := [helper for helper in helpers if helper.alive()]):  # keep the lease meanwhile
                    if self._watch():
                        break
                    self._beat()
                    running[0].wait_a_moment(WATCH_SECONDS)
        finally:
            for helper in helpers:
                if self._stopping() or helper.alive():
                    helper.stop(lost_lease=self._lost_lease)
            for helper in helpers:
                helper.wait()
                self.fault = self.fault or helper.fault
                if helper.error:
                    self._errors.append((helper.name, HelperFailed(helper.error)))
        if self.fault is not None:
            self._halt.set()
        return self._reason() if self._stopping() else None

    def _share_out(self, unfinished: int) -> None:
        """Decide, each round, how many processes carry it ([sending] processes; 0 is one per core): no
        more than there are connections, and no helper for fewer than ROWS_PER_PROCESS rows each. Only the
        real clock can be shared with other processes."""
        settings = self.config.sending
        processes = settings.processes or os.cpu_count() or 1
        processes = min(processes, self.total_connections, max(1, unfinished // ROWS_PER_PROCESS))
        if processes <= 1 or not isinstance(self.clock, SystemClock):
            self.connections, self.limiter, self._helper_shares = self.total_connections, self._limiter, []
            return
        own, *others = shares(self.total_connections, processes, settings.rate_per_second, settings.rate_per_hour)
        self.connections = own.connections
        self.limiter = RateLimiter(self.clock, own.rate_per_second, own.rate_per_hour)
        self._helper_shares = others
        self.processes_used = max(self.processes_used, processes)

    def _watch(self) -> bool:
        """Look at the lease and the campaign's state (a pause or cancel said elsewhere); True to stop."""
        self._keep_lease()
        state = campaign_state.get(self.db, self.campaign.slug)["state"]
        if state in ("paused", "cancelled"):
            self._said.set()
        return self._stopping()

    def _reason(self) -> str:
        if self.stop.is_set():
            return "interrupted"
        if self._lost_lease:
            return "locked"
        if self._said.is_set():
            return campaign_state.get(self.db, self.campaign.slug)["state"]
        return "interrupted"

    def _finish(self, started: float, reason: str | None) -> SendSummary:
        slug = self.campaign.slug
        if self._errors:
            name, error = self._errors[0]
            raise SendError(f"{slug}: sender {name} failed: {type(error).__name__}: {error}; the rows it "
                            f"held are queued again, so `newsletter send {slug}` carries on") from error
        if self.sent_now:
            campaign_state.fault_cleared(self.db, slug)
        if self.fault is not None:
            reason = "fault"
        elif reason is None:
            state = campaign_state.get(self.db, slug)["state"]
            if state in ("paused", "cancelled"):  # said while the last results were coming in
                reason = state
            elif deliveries.unfinished(self.db, slug) == 0:
                campaign_state.set_state(self.db, slug, "sent", clock=self.clock,
                                         finished_at=utc_iso(self.clock.now()))
        return self._summary(started, reason)

    def _keep_lease(self, db: sqlite_utils.Database | None = None) -> bool:
        """Renew the lease well before it runs out; called by the watch and after each group commit, so
        that it is renewed on the clock whatever pace the messages go at. False (and the run halts) once
        another process holds it. A helper holds none: its parent tells it when the lease is lost."""
        if self._lease_elsewhere is not None:
            self._lost_lease = self._lease_elsewhere.is_set()
        if self._lost_lease or self._lease_elsewhere is not None:
            return not self._lost_lease
        if self.clock.monotonic() - self._last_renewal <= campaign_state.LEASE_SECONDS / 3:
            return True
        if not campaign_state.acquire_lease(db or self.db, self.campaign.slug, self.owner, self.clock):
            self._lost_lease = True
            self._halt.set()
            return False
        self._last_renewal = self.clock.monotonic()
        return True

    def _summary(self, started: float, reason: str | None) -> SendSummary:
        slug = self.campaign.slug
        counts = deliveries.counts(self.db, slug)
        return SendSummary(
            slug=slug, counts=counts, sent_now=self.sent_now, elapsed=time.monotonic() - started,
            finished=deliveries.unfinished(self.db, slug) == 0, stopped_reason=reason,
            next_retry_at=deliveries.next_retry_at(self.db, slug),
            warnings=self.composer.renderer.warnings, fault=self.fault, processes=self.processes_used,
        )


class _first_interrupt_sets:
    """While the loop runs in the main thread, a first SIGINT sets `stop` instead of raising."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._interrupted)

    def _interrupted(self, number, frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def prepare_campaign(config: Config, db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> Campaign:
    """Load the folder, record the campaign and queue its segment (idempotent), and mark it sending.

    A campaign that cannot be rendered is refused here (RenderError), before anything is queued."""
    return _prepare(config, db, slug, clock)[0]


def _prepare(config: Config, db: sqlite_utils.Database, slug: str, clock: Clock) -> tuple[Campaign, tuple | None]:
    """prepare_campaign, and the variants of everyone queued when it queued them: the one child process
    that checks each language's full issue renders them too (else the sender renders them in a second)."""
    campaign = load_campaign(Path(config.campaigns_dir) / slug, config.tz)
    row = campaign_state.register(db, campaign, clock)
    if row["state"] not in ("draft", "scheduled"):
        return campaign, None
    segment = parse_segment(campaign.segment, db)  # read once: late subscribers wait for the next issue
    where, params = segment.where(Taxonomy.load(db))
    profiles = [tuple(profile) for profile in db.execute(
        f"SELECT DISTINCT language, interests, country FROM subscribers WHERE {where}", params)]
    rendered = render_in_child(config, campaign, profiles, LANGUAGES)
    deliveries.queue(db, slug, segment, clock)
    campaign_state.set_state(db, slug, "sending", clock=clock, started_at=utc_iso(clock.now()))
    return campaign, rendered


def send_campaign(config: Config, slug: str, *, clock: Clock = SystemClock(), stop: threading.Event | None = None,
                  wait_for_retries: bool = False, progress: Callable[[str], None] | None = None,
                  connections: int | None = None, transport_url: str | None = None,
                  heartbeat: Callable[[SendProgress], None] | None = None) -> SendSummary:
    """Queue (once) and send a campaign; call again after a crash, a fault or a resumed pause to finish it.

    A campaign paused by a fault is checked against the relay again and carries on if it answers."""
    db = connect(config.database)
    try:
        campaign, rendered = _prepare(config, db, slug, clock)
        row = campaign_state.get(db, slug)
        state = row["state"]
        if state in ("cancelled", "paused", "sent") and not campaign_state.paused_by_fault(row):
            return SendSummary(slug, deliveries.counts(db, slug), 0, 0.0, deliveries.unfinished(db, slug) == 0,
                               None if state == "sent" else state, deliveries.next_retry_at(db, slug))
    finally:
        db.conn.close()
    sender = CampaignSender(config, campaign, clock=clock, stop=stop, progress=progress, connections=connections,
                            transport_url=transport_url, heartbeat=heartbeat)
    if rendered is not None:
        sender.composer.adopt(rendered)
    return sender.run(wait_for_retries=wait_for_retries)


def send_test(config: Config, slug: str, addresses: list[str], *, transport_url: str | None = None,
              lang: str | None = None) -> list[tuple[str, Reply]]:
    """Send the real rendered message to staff, outside the delivery log. A staff address that is a
    subscriber gets their own variant; others get the full issue in `lang` (default: English)."""
    db = connect(config.database)
    campaign = load_campaign(Path(config.campaigns_dir) / slug, config.tz)
    composer = Composer(config, campaign, Taxonomy.load(db))
    transport = open_transport(transport_url or campaign.transport or config.smtp_url,
                               starttls=config.sending.starttls)
    results = []
    try:
        for address in addresses:
            subscriber = get_subscriber(db, address) or {"id": 0, "email": address.strip().lower(), "name": "",
                                              "language": lang or "en", "country": "",
                                              "interests": (1 << 63) - 1}
            if lang:
                subscriber = dict(subscriber, language=lang)
            variant = composer.renderer.variant_for(subscriber)
            data = composer.factory.build(variant.for_test(), subscriber,
                                          message_id=new_message_id(slug, 0, config.sender_domain),
                                          now=SystemClock().now())
            results.append((address, transport.send(campaign.sender_address or config.sender_address,
                                                     subscriber["email"], data)))
    finally:
        transport.close()
        db.conn.close()
    return results
