"""The sending engine: a campaign's delivery log worked through by several persistent SMTP connections.

Each message goes through small named steps, each testable alone (after Mailman's pipeline):

    claim (main thread)  ->  still_wanted  ->  compose  ->  transmit  ->  decide  ->  record

Crash safety: a result is committed before the same connection carries the next message, and a new run
first puts rows a dead run left 'sending' back to 'queued'. So a kill loses nothing, and a subscriber can
get a second copy only if the kill fell while their message was in the server's hands: at most one
message per open connection. See docs/sending.md.
"""

from __future__ import annotations

import queue
import random
import re
import threading
import time
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
from .deliveries import Job
from .interests import Taxonomy
from .message import DkimKey, MessageFactory, new_message_id
from .prerender import render_in_child
from .ratelimit import RateLimiter
from .render import IssueRenderer
from .segments import parse_segment
from .signing import Signer
from .subscribers import get as get_subscriber
from .transport import SESSION_STAGES, Reply, Transport, check_transport, open_transport, what_to_fix
from .verp import verp_address


RETRY_WAIT_STEP = 5.0  # seconds
HEARTBEAT_SECONDS = 30.0  # a progress line for the logs at least this often during a send
IDENTICAL_REFUSALS = 10  # the same refusal for this many messages in a row is the relay's, not theirs
SESSION_FAULTS_TO_PAUSE = 3  # 503s or lost sessions in a row on one connection before the campaign pauses
CONNECTION_BATCH = 64  # rows a connection claims at once (at most [sending] batch_size)
WATCH_SECONDS = 0.25  # how often the main thread looks at the lease and the campaign's state
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
    """Renders variants once and builds each recipient's bytes; shared by the sending threads."""

    def __init__(self, config: Config, campaign: Campaign, taxonomy: Taxonomy) -> None:
        self.config = config
        self.campaign = campaign
        self.renderer = IssueRenderer(campaign, config, taxonomy)
        dkim_key = None
        if config.dkim.private_key_file and config.dkim.domain and config.dkim.selector:
            dkim_key = DkimKey.from_file(config.dkim.domain, config.dkim.selector, config.dkim.private_key_file)
        self.signer = Signer(config.require_secret())
        self.factory = MessageFactory(config, self.signer, dkim_key)
        self._lock = threading.Lock()

    def load_variants(self, db: sqlite_utils.Database) -> None:
        """Render, in a child process, the variant of every profile still to be sent, so that this process
        never imports premailer (a profile that shows up later is still rendered here, on demand)."""
        profiles = [tuple(row) for row in db.execute(
            "SELECT DISTINCT s.language, s.interests, s.country FROM deliveries d "
            "JOIN subscribers s ON s.id = d.subscriber_id "
            "WHERE d.campaign = ? AND d.status IN ('queued', 'sending', 'deferred')", [self.campaign.slug])]
        if not profiles:
            return
        by_profile, variants = render_in_child(self.config, self.campaign, profiles, ())
        with self._lock:
            self.renderer._variants.update(variants)
            self.renderer._by_profile.update(by_profile)

    def compose(self, subscriber: dict, delivery_id: int, now: datetime) -> tuple[str, bytes]:
        with self._lock:  # render each variant once, even when several threads ask at the same moment
            variant = self.renderer.variant_for(subscriber)
        message_id = new_message_id(self.campaign.slug, delivery_id, self.config.sender_domain)
        return message_id, self.factory.build(variant, subscriber, message_id=message_id, now=now)

    def envelope_sender(self, delivery_id: int) -> str:
        """A per-delivery return path, so a bounce names its delivery whatever the remote server rewrote."""
        bounce = self.config.bounce_address
        if not bounce:
            return self.campaign.sender_address or self.config.sender_address
        return verp_address(bounce, delivery_id, self.config.require_secret())


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
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._run: list[Job] = []
        self.tripped: tuple | None = None

    def add(self, job: Job, reply: Reply, status: str) -> list[Job]:
        """Note one result; returns the jobs to give back (the whole run when it trips, or this one after)."""
        key = None
        if status in ("deferred", "failed") and reply.code:
            key = (reply.code, reply.enhanced, _ADDRESS.sub("<address>", reply.text))
        with self._lock:
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
    """One delivery's result on its way to the writer; `durable` is set once it is committed."""

    job: Job
    status: str
    reply: Reply | None = None
    message_id: str | None = None
    next_attempt_at: datetime | None = None
    bounce: bool = False
    text: str = ""
    restore: list[Job] = field(default_factory=list)  # rows of a breaker's run to give back, after this one
    durable: threading.Event = field(default_factory=threading.Event)


class _Writer:
    """The one thread that writes results: everything that is ready goes in one transaction (a group
    commit), and each connection waits for its previous result to be durable before its next MAIL, so a
    kill can still cost at most one second copy per open connection. After each commit it reads the
    campaign's state once, which is how a pause or cancel from anywhere reaches every connection."""

    def __init__(self, sender: CampaignSender) -> None:
        self.sender = sender
        self._queue: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self.failed = threading.Event()
        self._seen_version = -1

    def start(self) -> None:
        self._thread.start()

    def put(self, outcome: _Outcome) -> _Outcome:
        self._queue.put(outcome)
        return outcome

    def stop(self) -> None:
        """Write what is left, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def wait(self, outcome: _Outcome | None) -> None:
        """Until `outcome` is durable (or the writer failed, which halts the run)."""
        while outcome is not None and not outcome.durable.wait(0.5):
            if self.failed.is_set():
                return

    def _run(self) -> None:
        sender = self.sender
        db = connect(sender.config.database, migrate_schema=False)
        pending: list[_Outcome] = []
        try:
            while True:
                item = self._queue.get()
                done = item is None
                pending = [] if done else [item]
                while True:  # everything else that is ready joins the same commit
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        done = True
                    else:
                        pending.append(item)
                if pending:
                    self._commit(db, pending)
                    pending = []
                if done:
                    return
        except BaseException as exc:
            sender._errors.append(("writer", exc))
            sender._halt.set()
            self.failed.set()
            for outcome in pending:
                outcome.durable.set()
        finally:
            db.conn.close()

    def _commit(self, db: sqlite_utils.Database, outcomes: list[_Outcome]) -> None:
        sender = self.sender
        with transaction(db):
            for outcome in outcomes:
                reply = outcome.reply
                if outcome.status == "queued":
                    deliveries.release(db, [outcome.job.id])
                elif reply is None:
                    deliveries.record(db, outcome.job, outcome.status, now=sender.clock.now(), text=outcome.text,
                                      count_attempt=False)
                else:
                    deliveries.record(db, outcome.job, outcome.status, now=sender.clock.now(), code=reply.code,
                                      enhanced=reply.enhanced, text=reply.text, message_id=outcome.message_id,
                                      next_attempt_at=outcome.next_attempt_at)
                if outcome.restore:
                    deliveries.restore(db, outcome.restore)
        for outcome in outcomes:
            if outcome.bounce and outcome.reply is not None:  # its own transaction: the one bounce policy
                record_smtp_bounce(db, outcome.job, outcome.reply, clock=sender.clock)
            if outcome.status not in ("queued", "connection"):
                sender._count(outcome.status)
                if sender.progress:
                    sender.progress(outcome.status)
        sender._keep_lease(db)
        sender._beat(db)
        # Another connection committed since we last looked (a pause, a cancel, a claim): read the state.
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._seen_version:
            self._seen_version = version
            if campaign_state.get(db, sender.campaign.slug)["state"] in ("paused", "cancelled"):
                sender._said.set()
        for outcome in outcomes:
            outcome.durable.set()


class CampaignSender:
    """One run over one campaign's delivery log by N connections, each claiming its own batches.

    Before any row is claimed the relay is checked (connect, TLS, login, MAIL FROM); a fault of the
    connection, then or during the run, pauses the campaign with the reason and no recipient pays for it.
    Per batch: the subscribers and their suppressions in one query; per message: compose, wait until the
    previous result is durable, send; results go to one writer that commits whatever is ready at once.
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
        self._halt = threading.Event()  # ours: a thread failed or the relay is at fault; never the caller's
        self._said = threading.Event()  # the campaign was paused or cancelled (seen by the writer or the watch)
        self._last_renewal = 0.0
        self.progress = progress
        self.heartbeat = heartbeat
        self.heartbeat_seconds = heartbeat_seconds
        self.connections = max(1, connections or config.sending.connections)
        self.batch = max(1, min(config.sending.batch_size, CONNECTION_BATCH))
        self.transport_url = transport_url or campaign.transport or config.smtp_url
        self.db = connect(config.database)
        self.composer = Composer(config, campaign, Taxonomy.load(self.db))
        self.limiter = RateLimiter(clock, config.sending.rate_per_second, config.sending.rate_per_hour)
        self.owner = campaign_state.new_owner()
        self.rng = random.Random()
        self.sent_now = 0
        self.fault: str | None = None  # what the relay did wrong, when it paused the campaign
        self._transports: list[Transport | None] = [None] * self.connections
        self._writer: _Writer | None = None
        self._count_lock = threading.Lock()
        self._tally: dict[str, int] = {}
        self._errors: list[tuple[str, BaseException]] = []
        self._breaker = _Breaker()
        self._session = threading.local()  # each thread's last connection fault
        self._started_at = 0.0
        self._last_beat = 0.0
        self._lost_lease = False
        self._lease_lock = threading.Lock()

    # -- the steps, per message ---------------------------------------------------------------------

    def transmit(self, transport: Transport, job: Job, subscriber: dict, previous: _Outcome | None) -> _Outcome:
        """Compose, wait for the previous result to be durable, throttle, send, decide; the outcome goes
        to the writer. A connection fault gives the row back as it was (status "connection")."""
        writer = self._writer
        assert writer is not None
        now = self.clock.now()
        message_id, data = self.composer.compose(subscriber, job.id, now)
        writer.wait(previous)
        if self._stopping():
            return _Outcome(job, "stopped")
        self.limiter.acquire()
        reply = transport.send(self.composer.envelope_sender(job.id), subscriber["email"], data)
        if reply.outcome == "connection":
            self._session.reply = reply
            return writer.put(_Outcome(job, "queued"))
        decision = decide(reply, job.attempts, self.config.sending, self.clock.now(), self.rng)
        if decision.slow_down:
            self.limiter.slow_down()
        elif decision.status == "sent":
            self.limiter.succeeded()
        outcome = _Outcome(job, decision.status, reply, message_id, decision.next_attempt_at, decision.bounce)
        give_back = self._breaker.add(job, reply, decision.status)
        if give_back:
            outcome.restore = give_back
            writer.put(outcome)
            self._pause_for_fault(what_to_fix(reply, self.transport_url) +
                                  f"; {IDENTICAL_REFUSALS} refused in a row were given back uncounted")
            return outcome
        return writer.put(outcome)

    def _pause_for_fault(self, reason: str) -> None:
        """Stop the run and pause the campaign with `reason` (unless an operator paused or cancelled it)."""
        with self._count_lock:
            first = self.fault is None
            if first:
                self.fault = reason
        if first:
            db = connect(self.config.database, migrate_schema=False)
            try:
                campaign_state.pause_for_fault(db, self.campaign.slug, reason, self.clock)
            finally:
                db.conn.close()
        self._halt.set()

    def _stopping(self) -> bool:
        return self.stop.is_set() or self._halt.is_set() or self._said.is_set()

    # -- threads ------------------------------------------------------------------------------------

    def _worker(self, number: int) -> None:
        """One connection: claim a batch, fetch its people in one query, send it; until nothing is due."""
        db = None
        held: list[Job] = []  # claimed and not yet handed to the writer
        previous: _Outcome | None = None
        session_faults = 0  # in a row on this connection; a lone 503 is retried, a run of them pauses
        try:
            db = connect(self.config.database, migrate_schema=False)
            transport = self._transports[number]
            if transport is None:
                transport = self._transports[number] = open_transport(self.transport_url,
                                                                      starttls=self.config.sending.starttls)
            while not self._stopping():
                held = deliveries.claim(db, self.campaign.slug, self.clock.now(), self.batch)
                if not held:
                    return
                version = deliveries.audience_version(db)
                people = deliveries.recipients(db, held)
                while held and not self._stopping():
                    job = held.pop(0)
                    if deliveries.audience_version(db) != version:  # someone left since: ask again
                        version = deliveries.audience_version(db)
                        people = deliveries.recipients(db, [job, *held])
                    subscriber = people.get(job.id)
                    if subscriber is None:
                        self._writer.put(_Outcome(job, "skipped", text="not active or suppressed at send time"))
                        continue
                    outcome = self.transmit(transport, job, subscriber, previous)
                    if outcome.status == "stopped":
                        held.insert(0, job)
                        break
                    previous = outcome
                    if outcome.status != "queued":
                        session_faults = 0
                        continue
                    session_faults += 1
                    reply = self._session.reply
                    if session_faults >= SESSION_FAULTS_TO_PAUSE or self._is_setup_fault(reply):
                        self._pause_for_fault(what_to_fix(reply, self.transport_url))
        except BaseException as exc:  # report after the run; the rows stay claimable
            self._errors.append((threading.current_thread().name, exc))
            self._halt.set()
        finally:
            if db is not None:
                if held and not self._lost_lease:  # once another process holds the campaign, its rows are its own
                    deliveries.release(db, [job.id for job in held])
                db.conn.close()
            if self._writer is not None:
                self._writer.wait(previous)

    @staticmethod
    def _is_setup_fault(reply: Reply | None) -> bool:
        """Connecting, TLS and logging in fail the same way for every message: pause at the first."""
        return reply is not None and (reply.stage in SESSION_STAGES or reply.code == 530)

    def _count(self, status: str) -> None:
        with self._count_lock:
            self._tally[status] = self._tally.get(status, 0) + 1
            if status == "sent":
                self.sent_now += 1

    def _beat(self, db: sqlite_utils.Database | None = None) -> None:
        """Every heartbeat_seconds on the clock, hand a progress snapshot to `heartbeat` (the scheduler's log)."""
        if self.heartbeat is None:
            return
        with self._count_lock:
            now = self.clock.monotonic()
            if now - self._last_beat < self.heartbeat_seconds:
                return
            self._last_beat = now
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
            for transport in self._transports:
                if transport is not None:
                    transport.close()
            self.db.conn.close()

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
        self.composer.load_variants(self.db)
        self._writer = _Writer(self)
        self._writer.start()
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
            self._writer.stop()
            if not self._lost_lease:
                deliveries.reset_interrupted(self.db, slug, self.clock)
            if campaign_state.get(self.db, slug)["state"] == "cancelled":
                campaign_state.skip_unsent(self.db, slug, self.clock)

    def _round(self) -> str | None:
        """Start every connection and watch them until they run out of due rows; the reason if stopped."""
        if self._watch():
            return self._reason()
        workers = [threading.Thread(target=self._worker, args=(number,), name=f"smtp-{number}", daemon=True)
                   for number in range(self.connections)]
        try:
            for worker in workers:
                worker.start()
            while any(worker.is_alive() for worker in workers):
                for worker in workers:
                    worker.join(WATCH_SECONDS / len(workers))
                self._watch()
                self._beat()
        except KeyboardInterrupt:
            self._halt.set()
            self.stop.set()
        finally:
            for worker in workers:
                if worker.ident is not None:
                    worker.join()
        return self._reason() if self._stopping() else None

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
            raise SendError(f"{slug}: sending thread {name} failed: {type(error).__name__}: {error}; the rows it "
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
        another process holds it."""
        with self._lease_lock:
            if self._lost_lease:
                return False
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
            warnings=self.composer.renderer.warnings, fault=self.fault,
        )


def prepare_campaign(config: Config, db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> Campaign:
    """Load the folder, record the campaign and queue its segment (idempotent), and mark it sending.

    A campaign that cannot be rendered is refused here (RenderError), before anything is queued."""
    campaign = load_campaign(Path(config.campaigns_dir) / slug, config.tz)
    row = campaign_state.register(db, campaign, clock)
    if row["state"] in ("draft", "scheduled"):
        render_in_child(config, campaign, [], LANGUAGES)  # the check; the segment is read once: late subscribers wait for the next issue
        deliveries.queue(db, slug, parse_segment(campaign.segment, db), clock)
        campaign_state.set_state(db, slug, "sending", clock=clock, started_at=utc_iso(clock.now()))
    return campaign


def send_campaign(config: Config, slug: str, *, clock: Clock = SystemClock(), stop: threading.Event | None = None,
                  wait_for_retries: bool = False, progress: Callable[[str], None] | None = None,
                  connections: int | None = None, transport_url: str | None = None,
                  heartbeat: Callable[[SendProgress], None] | None = None) -> SendSummary:
    """Queue (once) and send a campaign; call again after a crash, a fault or a resumed pause to finish it.

    A campaign paused by a fault is checked against the relay again and carries on if it answers."""
    db = connect(config.database)
    try:
        campaign = prepare_campaign(config, db, slug, clock)
        row = campaign_state.get(db, slug)
        state = row["state"]
        if state in ("cancelled", "paused", "sent") and not campaign_state.paused_by_fault(row):
            return SendSummary(slug, deliveries.counts(db, slug), 0, 0.0, deliveries.unfinished(db, slug) == 0,
                               None if state == "sent" else state, deliveries.next_retry_at(db, slug))
    finally:
        db.conn.close()
    sender = CampaignSender(config, campaign, clock=clock, stop=stop, progress=progress, connections=connections,
                            transport_url=transport_url, heartbeat=heartbeat)
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
