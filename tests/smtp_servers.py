"""Real SMTP servers on loopback that misbehave on request, so tests can prove how sending copes.

    with FaultServer() as server:
        server.fail("ana@example.org", USER_UNKNOWN)            # 550 5.1.1 at RCPT, every time
        server.fail("bo", TRY_AGAIN, at="DATA", times=2)         # by local part; 451 twice, then accepted
        server.drop_during_data("carla@example.org")             # socket closed mid-DATA, no reply
        server.delay("dan@example.org", 0.05)                    # slow answer, then accepted
        server.rate_limit(times=3)                               # every RCPT: 421 4.7.0 and hang up
        server.fail("*", REFUSED_BY_POLICY, at="DATA")           # "*": every recipient
        server.crash_at_data("erin@example.org")                 # "500 Error", transaction left open
        server.refuse_starttls()                                 # offers STARTTLS, answers 454 to it
        server.go_down(); server.come_back()                     # stops listening, then listens again
        ...
        server.accepted_for("ana@example.org")                   # the message bytes it took for her
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from newsletter.clock import Clock, SystemClock
from newsletter.mailsink import LenientSMTP, LoopbackController

SERVICE_CLOSING = "421 4.3.2 Service shutting down, closing connection"
TRY_AGAIN = "451 4.3.0 Temporary local problem, try again later"
OUT_OF_STORAGE = "452 4.2.2 Mailbox over quota, try again later"
USER_UNKNOWN = "550 5.1.1 User unknown"
MAILBOX_FULL = "552 5.2.2 Mailbox full"
REFUSED_BY_POLICY = "554 5.7.1 Message refused by policy"
RATE_LIMITED = "421 4.7.0 Too many messages, rate limit exceeded; try again later"
DROP_DURING_DATA = "DATA, then hang up"
CRASH = "raise in the handler"  # aiosmtpd answers "500 Error: (...)" and keeps the transaction open
TLS_REFUSED = "454 4.7.0 TLS not available due to local problem"


@dataclass
class Fault:
    """What the server does for one recipient at one stage, for `remaining` attempts (None: for ever)."""

    reply: str | None  # None: answer normally, after the delay
    at: str = "RCPT"  # "RCPT", "DATA" or DROP_DURING_DATA
    delay: float = 0.0
    remaining: int | None = None


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    over_tls: bool


class _FaultySMTP(LenientSMTP):
    """aiosmtpd that hangs up after a 421 (as real relays do) and can drop the line in the middle of DATA."""

    fault_server: FaultServer

    async def push(self, status: Any) -> None:
        await super().push(status)
        if isinstance(status, str) and status.startswith("421") and self.transport is not None:
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        fault = self.fault_server._take_fault(DROP_DURING_DATA, self.envelope.rcpt_tos if self.envelope else [])
        if fault is None:
            await super().smtp_DATA(arg)
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        await self._reader.read(64)  # part of the message has arrived...
        assert self.transport is not None
        self.transport.close()  # ...and the line goes dead, with no reply

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.fault_server.starttls_refused:
            await self.push(TLS_REFUSED)
            return
        await super().smtp_STARTTLS(arg)


class _FaultController(LoopbackController):
    def __init__(self, fault_server: FaultServer, **options: Any) -> None:
        super().__init__(fault_server, **options)
        self.fault_server = fault_server

    def factory(self) -> SMTP:
        smtp = _FaultySMTP(self.handler, **self.SMTP_kwargs)
        smtp.fault_server = self.fault_server
        with self.fault_server._lock:
            self.fault_server.connections += 1
            self.fault_server._sessions.append(smtp)
        return smtp


class FaultServer:
    """A programmable aiosmtpd server on 127.0.0.1; use it as a context manager.

    `tls_context` offers STARTTLS; `implicit_tls_context` makes it an smtps:// server; `credentials`
    (login, password) offers AUTH (over TLS only, unless `auth_over_plain`). `clock` measures
    rate_limit(seconds=...), so a FakeClock ends the limit when the test advances it. `pipelining`
    announces PIPELINING (RFC 2920), which aiosmtpd does not by itself although it reads pipelined
    commands correctly.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
        auth_over_plain: bool = False,
        clock: Clock | None = None,
        pipelining: bool = False,
    ) -> None:
        self.pipelining = pipelining
        self._lock = threading.Lock()
        self._sessions: list[_FaultySMTP] = []
        self._faults: dict[tuple[str, str], Fault] = {}
        self._rate_limit_remaining: int | None = 0
        self._rate_limit_until: float | None = None
        self._clock = clock or SystemClock()
        self.accepted: list[Received] = []
        self.connections = 0
        self.starttls_refused = False
        options: dict[str, Any] = {}
        if tls_context is not None:
            options["tls_context"] = tls_context
        if implicit_tls_context is not None:
            options["ssl_context"] = implicit_tls_context
        if credentials is not None:
            options["authenticator"] = _PasswordCheck(*credentials)
            options["auth_require_tls"] = not auth_over_plain
            options["auth_required"] = True  # a relay that has logins takes no mail without one
        self._options = options
        self._controller = _FaultController(self, **options)

    @property
    def host(self) -> str:
        return self._controller.hostname

    @property
    def port(self) -> int:
        return self._controller.port

    def url(self, scheme: str = "smtp") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> FaultServer:
        self._controller.start()
        with self._lock:
            self.connections = 0  # the controller's own start-up probe is not a client
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()

    # -- programming faults -------------------------------------------------------------------------

    def fail(
        self, recipient: str, reply: str, *, at: str = "RCPT", times: int | None = None, delay: float = 0.0
    ) -> None:
        """Answer `reply` at RCPT or DATA for `recipient` (address or local part); after `times`, accept."""
        self._set(recipient, Fault(reply, at=at, delay=delay, remaining=times))

    def drop_during_data(self, recipient: str, *, times: int | None = None) -> None:
        """Take part of the message, then close the socket without a reply."""
        self._set(recipient, Fault(None, at=DROP_DURING_DATA, remaining=times))

    def delay(self, recipient: str, seconds: float, *, at: str = "RCPT") -> None:
        """Wait `seconds` of real time before answering normally."""
        self._set(recipient, Fault(None, at=at, delay=seconds))

    def rate_limit(self, *, times: int | None = None, seconds: float | None = None) -> None:
        """Answer every RCPT with 421 4.7.0 and hang up: `times` times, for `seconds` on the clock, or until lifted."""
        with self._lock:
            self._rate_limit_remaining = times
            self._rate_limit_until = None if seconds is None else self._clock.monotonic() + seconds

    def clear_faults(self) -> None:
        """Answer everyone normally again (the relay was fixed)."""
        with self._lock:
            self._faults.clear()
            self.starttls_refused = False

    def crash_at_data(self, recipient: str, *, times: int | None = None) -> None:
        """Fail in the handler at end of DATA: aiosmtpd answers "500 Error: ..." and, like some real
        relays, keeps the transaction open, so a client that does not RSET gets "503 nested MAIL command"."""
        self._set(recipient, Fault(CRASH, at="DATA", remaining=times))

    def refuse_starttls(self) -> None:
        """Keep offering STARTTLS but answer it with 454, as a relay with a broken certificate setup does."""
        self.starttls_refused = True

    def go_down(self) -> None:
        """Stop listening and drop every connection, as a relay that crashes or restarts does."""
        self._controller.stop()

    def come_back(self) -> None:
        """Listen again on the same port, with the same faults and the same record of what arrived."""
        port, connections = self.port, self.connections
        self._controller = _FaultController(self, port=port, **self._options)
        self._controller.start()
        with self._lock:
            self.connections = connections  # the controller's start-up probe is not a client

    def lift_rate_limit(self) -> None:
        with self._lock:
            self._rate_limit_remaining = 0
            self._rate_limit_until = None

    def hang_up(self) -> None:
        """Close every open connection from the server side, as a relay does with idle clients."""
        asyncio.run_coroutine_threadsafe(self._close_sessions(), self._controller.loop).result(timeout=10)

    # -- what arrived -------------------------------------------------------------------------------

    def accepted_for(self, address: str) -> list[bytes]:
        with self._lock:
            return [message.data for message in self.accepted if address in message.rcpt_tos]

    # -- aiosmtpd handler hooks ---------------------------------------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this hook's duty, once it exists
        return [*responses[:-1], "250-PIPELINING", responses[-1]] if self.pipelining else responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self._take_rate_limit():
            return RATE_LIMITED
        reply = await self._apply("RCPT", [address])
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await self._apply("DATA", envelope.rcpt_tos)
        if reply == CRASH:
            raise RuntimeError("handler failed")
        if reply is not None:
            return reply
        over_tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        with self._lock:
            self.accepted.append(
                Received(envelope.mail_from or "", tuple(envelope.rcpt_tos), envelope.original_content or b"", over_tls)
            )
        return "250 2.0.0 OK: queued"

    # -- internals ----------------------------------------------------------------------------------

    async def _close_sessions(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            if session.transport is not None:
                session.transport.close()
        while any(session.transport is not None for session in sessions):
            await asyncio.sleep(0.001)  # until connection_lost has run for each

    def _set(self, recipient: str, fault: Fault) -> None:
        with self._lock:
            self._faults[(recipient.lower(), fault.at)] = fault

    async def _apply(self, stage: str, recipients: list[str]) -> str | None:
        fault = self._take_fault(stage, recipients)
        if fault is None:
            return None
        if fault.delay:
            await asyncio.sleep(fault.delay)
        return fault.reply

    def _take_fault(self, stage: str, recipients: list[str]) -> Fault | None:
        """The fault for the first recipient that has one at this stage, counting the attempt."""
        with self._lock:
            for address in recipients:
                address = address.lower()
                for key in (address, address.rpartition("@")[0], "*"):
                    fault = self._faults.get((key, stage))
                    if fault is None or fault.remaining == 0:
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
                    return fault
        return None

    def _take_rate_limit(self) -> bool:
        with self._lock:
            if self._rate_limit_until is not None:
                return self._clock.monotonic() < self._rate_limit_until
            if self._rate_limit_remaining is None:
                return True
            if self._rate_limit_remaining > 0:
                self._rate_limit_remaining -= 1
                return True
            return False


@dataclass(frozen=True)
class _PasswordCheck:
    login: str
    password: str

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = LoginPassword(self.login.encode(), self.password.encode())
        return AuthResult(success=isinstance(auth_data, LoginPassword) and auth_data == expected, handled=False)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1 and localhost, written to `folder`; needs the `cryptography` package."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def client_tls_context(cert_path: Path) -> ssl.SSLContext:
    """A verifying client context that trusts only the test certificate."""
    return ssl.create_default_context(cafile=str(cert_path))
