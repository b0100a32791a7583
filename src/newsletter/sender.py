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
from .db import LANGUAGES, connect
from .deliveries import Job
from .interests import Taxonomy
from .message import DkimKey, MessageFactory, new_message_id
from .ratelimit import RateLimiter
from .render import IssueRenderer
from .segments import parse_segment
from .signing import Signer
from .subscribers import get as get_subscriber
from .suppressions import is_suppressed
from .transport import Reply, Transport, open_transport
from .verp import verp_address


RETRY_WAIT_STEP = 5.0  # seconds


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
    back-off and jitter, stop on 5xx, and never blame the subscriber for a policy refusal."""
    outcome = reply.outcome
    if outcome == "sent":
        return Decision("sent")
    if outcome == "bounced":
        return Decision("bounced", bounce=True)
    slow_down = outcome == "policy"
    if reply.retryable:
        attempt = attempts_before + 1
        if attempt >= settings.max_attempts:
            return Decision("failed", slow_down=slow_down)
        delay = min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** (attempt - 1))
        delay *= 1 + rng.random() * 0.25
        return Decision("deferred", next_attempt_at=now + timedelta(seconds=delay), slow_down=slow_down)
    return Decision("failed", slow_down=slow_down)


def still_wanted(db: sqlite_utils.Database, job: Job) -> dict | None:
    """The subscriber's current row if they should still get this campaign; None if they unsubscribed,
    bounced, were suppressed or erased after the campaign was queued."""
    rows = db.execute("SELECT * FROM subscribers WHERE id = ?", [job.subscriber_id])
    columns = [c[0] for c in rows.description]
    row = rows.fetchone()
    if row is None:
        return None
    subscriber = dict(zip(columns, row))
    if subscriber["status"] != "active" or is_suppressed(db, subscriber["email"]):
        return None
    return subscriber


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


class CampaignSender:
    """One run over one campaign's delivery log: the main thread claims rows, N threads send them."""

    def __init__(self, config: Config, campaign: Campaign, *, clock: Clock = SystemClock(),
                 stop: threading.Event | None = None, progress: Callable[[str], None] | None = None,
                 connections: int | None = None, transport_url: str | None = None) -> None:
        self.config = config
        self.campaign = campaign
        self.clock = clock
        self.stop = stop or threading.Event()  # the caller's: Ctrl-C, a scheduler shutting down
        self._halt = threading.Event()  # ours: a thread failed; never set on the caller's event
        self._last_renewal = 0.0
        self.progress = progress
        self.connections = max(1, connections or config.sending.connections)
        self.transport_url = transport_url or campaign.transport or config.smtp_url
        self.db = connect(config.database)
        self.composer = Composer(config, campaign, Taxonomy.load(self.db))
        self.limiter = RateLimiter(clock, config.sending.rate_per_second, config.sending.rate_per_hour)
        self.owner = campaign_state.new_owner()
        self.rng = random.Random()
        self.sent_now = 0
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=self.connections * 8)
        self._count_lock = threading.Lock()
        self._errors: list[BaseException] = []

    # -- the steps, per message ---------------------------------------------------------------------

    def process(self, db: sqlite_utils.Database, transport: Transport, job: Job) -> str:
        now = self.clock.now()
        subscriber = still_wanted(db, job)
        if subscriber is None:
            deliveries.record(db, job, "skipped", now=now, text="not active or suppressed at send time",
                              count_attempt=False)
            return "skipped"
        message_id, data = self.composer.compose(subscriber, job.id, now)
        self.limiter.acquire()
        reply = transport.send(self.composer.envelope_sender(job.id), subscriber["email"], data)
        now = self.clock.now()
        decision = decide(reply, job.attempts, self.config.sending, now, self.rng)
        if decision.slow_down:
            self.limiter.slow_down()
        elif decision.status == "sent":
            self.limiter.succeeded()
        deliveries.record(db, job, decision.status, now=now, code=reply.code, enhanced=reply.enhanced,
                          text=reply.text, message_id=message_id, next_attempt_at=decision.next_attempt_at)
        if decision.bounce:
            record_smtp_bounce(db, job, reply, clock=self.clock)
        return decision.status

    def _stopping(self) -> bool:
        return self.stop.is_set() or self._halt.is_set()

    # -- threads ------------------------------------------------------------------------------------

    def _worker(self) -> None:
        db = connect(self.config.database, migrate_schema=False)
        transport = open_transport(self.transport_url, starttls=self.config.sending.starttls)
        try:
            while True:
                job = self._jobs.get()
                try:
                    if job is None:
                        return
                    state = campaign_state.get(db, self.campaign.slug)["state"]
                    if self._stopping() or state == "paused":
                        deliveries.release(db, [job.id])
                        continue
                    if state == "cancelled":
                        deliveries.record(db, job, "skipped", now=self.clock.now(), text="campaign cancelled",
                                          count_attempt=False)
                        continue
                    status = self.process(db, transport, job)
                    if status == "sent":
                        with self._count_lock:
                            self.sent_now += 1
                    if self.progress:
                        self.progress(status)
                except BaseException as exc:  # keep the row claimable; report after the run
                    self._errors.append(exc)
                    self._halt.set()
                    if job is not None:
                        deliveries.release(db, [job.id])
                finally:
                    self._jobs.task_done()
        finally:
            transport.close()
            db.conn.close()

    def run(self, *, wait_for_retries: bool = False) -> SendSummary:
        try:
            return self._run(wait_for_retries)
        finally:
            self.db.conn.close()

    def _run(self, wait_for_retries: bool) -> SendSummary:
        started = time.monotonic()
        slug = self.campaign.slug
        if not campaign_state.acquire_lease(self.db, slug, self.owner, self.clock):
            return self._summary(started, "locked")
        reason = None
        workers = [threading.Thread(target=self._worker, name=f"smtp-{i}", daemon=True)
                   for i in range(self.connections)]
        try:
            deliveries.reset_interrupted(self.db, slug, self.clock)
            for worker in workers:
                worker.start()
            reason = self._dispatch(wait_for_retries)
        except KeyboardInterrupt:
            reason = "interrupted"
            self._halt.set()
        finally:
            for _ in workers:
                self._jobs.put(None)
            for worker in workers:
                worker.join()
            deliveries.reset_interrupted(self.db, slug, self.clock)
            campaign_state.release_lease(self.db, slug, self.owner)
        return self._finish(started, reason)

    def _finish(self, started: float, reason: str | None) -> SendSummary:
        slug = self.campaign.slug
        if self._errors:
            raise self._errors[0]
        if reason is None:
            state = campaign_state.get(self.db, slug)["state"]
            if state in ("paused", "cancelled"):  # said while the last results were coming in
                reason = state
            elif deliveries.unfinished(self.db, slug) == 0:
                campaign_state.set_state(self.db, slug, "sent", clock=self.clock,
                                         finished_at=utc_iso(self.clock.now()))
        return self._summary(started, reason)

    def _dispatch(self, wait_for_retries: bool) -> str | None:
        """Claim due rows in batches and feed them to the threads until none are left or we must stop."""
        slug = self.campaign.slug
        self._last_renewal = self.clock.monotonic()
        while True:
            if self._stopping():
                return "interrupted"
            state = campaign_state.get(self.db, slug)["state"]
            if state in ("paused", "cancelled"):
                return state
            if not self._keep_lease():
                return "locked"
            jobs = deliveries.claim(self.db, slug, self.clock.now(), self.config.sending.batch_size)
            if not jobs:
                self._jobs.join()  # results of the last batch may have deferred rows that are due now
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
                continue
            for job in jobs:
                while True:
                    if not self._keep_lease():  # another process holds the rows now: neither send nor release
                        self._halt.set()
                        return "locked"
                    try:
                        self._jobs.put(job, timeout=0.5)
                        break
                    except queue.Full:
                        if self._stopping():
                            break
                if self._stopping():
                    deliveries.release(self.db, [j.id for j in jobs])
                    return "interrupted"

    def _keep_lease(self) -> bool:
        """Renew the lease well before it runs out, also while a long batch is being handed out."""
        if self.clock.monotonic() - self._last_renewal <= campaign_state.LEASE_SECONDS / 3:
            return True
        if not campaign_state.acquire_lease(self.db, self.campaign.slug, self.owner, self.clock):
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
            warnings=self.composer.renderer.warnings,
        )


def prepare_campaign(config: Config, db: sqlite_utils.Database, slug: str, clock: Clock = SystemClock()) -> Campaign:
    """Load the folder, record the campaign and queue its segment (idempotent), and mark it sending.

    A campaign that cannot be rendered is refused here (RenderError), before anything is queued."""
    campaign = load_campaign(Path(config.campaigns_dir) / slug, config.tz)
    row = campaign_state.register(db, campaign, clock)
    if row["state"] in ("draft", "scheduled"):
        IssueRenderer(campaign, config, Taxonomy.load(db)).check(LANGUAGES)  # the segment is read once: late subscribers wait for the next issue
        deliveries.queue(db, slug, parse_segment(campaign.segment, db), clock)
        campaign_state.set_state(db, slug, "sending", clock=clock, started_at=utc_iso(clock.now()))
    return campaign


def send_campaign(config: Config, slug: str, *, clock: Clock = SystemClock(), stop: threading.Event | None = None,
                  wait_for_retries: bool = False, progress: Callable[[str], None] | None = None,
                  connections: int | None = None, transport_url: str | None = None) -> SendSummary:
    """Queue (once) and send a campaign; call again after a crash or a pause to finish it."""
    db = connect(config.database)
    try:
        campaign = prepare_campaign(config, db, slug, clock)
        state = campaign_state.get(db, slug)["state"]
        if state in ("cancelled", "paused", "sent"):
            return SendSummary(slug, deliveries.counts(db, slug), 0, 0.0, deliveries.unfinished(db, slug) == 0,
                               None if state == "sent" else state, deliveries.next_retry_at(db, slug))
    finally:
        db.conn.close()
    sender = CampaignSender(config, campaign, clock=clock, stop=stop, progress=progress, connections=connections,
                            transport_url=transport_url)
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
