"""Hand finished message bytes to a relay (SMTP) or a local Maildir, and say what became of each one.

Nothing here raises for a delivery problem: every answer, refusal or dropped connection comes back as a
Reply whose `outcome` tells the sending engine what to do next (record, retry, slow down, suppress).
"""

from __future__ import annotations

import os
import re
import smtplib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol
from urllib.parse import SplitResult, unquote, urlsplit

STARTTLS_MODES = ("auto", "always", "never")
ACCEPTED_URL_FORMS = "smtp://[user:pass@]host[:port], smtps://[user:pass@]host[:port] or maildir:///absolute/path"

_ENHANCED_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_POLICY_PROSE = re.compile(
    r"\brate\b|rate.?limit|too many (?:connections|messages|mails|recipients per)|throttl|polic(?:y|ies)"
    r"|\bspam|\bblock(?:ed|list|listed)?\b|black.?list|reputation|\bdnsbl\b|\brbl\b",
    re.IGNORECASE,
)
_UNKNOWN_MAILBOX_PROSE = re.compile(
    r"user unknown|unknown user|no such user|mailbox unavailable|no such mailbox|mailbox not found"
    r"|recipient unknown|unknown recipient|does not exist|account (?:is )?disabled",
    re.IGNORECASE,
)
# RFC 3463: x.1.7 and x.1.8 are about OUR sender address, so a refusal with them says nothing of the subscriber.
_SENDER_ADDRESS_STATUSES = {(1, 7), (1, 8)}


# Stages of the session that come before any message: a refusal there is about the connection or our
# credentials, never about a recipient.
SESSION_STAGES = ("connect", "TLS", "AUTH")
OUTCOMES = ("sent", "bounced", "policy", "deferred", "failed", "connection")
# 503 (bad sequence) and 530 (authentication required) say the session is in the wrong state, whoever the
# recipient is; 421 at the greeting is a refusal of the connection itself.
_SESSION_CODES = {503, 530}


def classify(code: int, enhanced: str, text: str, stage: str) -> str:
    """Whose fault a reply is, as one of OUTCOMES; the one table every SMTP client of the project shares.

    - "sent": accepted (2xx).
    - "bounced": the recipient's mailbox does not exist (5.1.x, 5.2.1, or such prose at 550/551/553).
    - "policy": a refusal about us (x.7.x, rate, spam, blocking; anything at MAIL FROM); slow down.
    - "deferred": temporary (4xx, or a connection lost once the recipient was accepted); retry later.
    - "failed": final for this message (other 5xx).
    - "connection": the connection's or the operator's fault: a refused or failed connection, TLS, login,
      503 or 530, or a connection lost before any recipient was accepted. No recipient pays for it.
    """
    code_class = code // 100
    if stage in SESSION_STAGES and code_class != 2:
        return "connection"
    if code in _SESSION_CODES:
        return "connection"
    if code == 0:
        return "connection" if stage == "MAIL" else "deferred"
    if code_class == 2:
        return "sent"
    if code_class not in (4, 5):
        return "failed"
    outcome = _classify_enhanced(code_class, enhanced) or _classify_prose(code, code_class, text)
    if outcome == "bounced" and stage == "MAIL":
        return "policy"
    return outcome


def _classify_enhanced(code_class: int, enhanced: str) -> str | None:
    if not enhanced:
        return None
    _, subject, detail = (int(part) for part in enhanced.split("."))
    if subject == 7 or (subject, detail) in _SENDER_ADDRESS_STATUSES:
        return "policy"
    if subject == 0:
        return None  # "other or undefined": the prose is all there is to go on
    if code_class == 5 and (subject == 1 or (subject, detail) == (2, 1)):
        return "bounced"
    return "deferred" if code_class == 4 else "failed"


def _classify_prose(code: int, code_class: int, text: str) -> str:
    if _POLICY_PROSE.search(text):
        return "policy"
    if code in (550, 551, 553) and _UNKNOWN_MAILBOX_PROSE.search(text):
        return "bounced"
    return "deferred" if code_class == 4 else "failed"


def split_enhanced(code: int, message: bytes | str) -> tuple[str, str]:
    """("5.1.1", "User unknown") from "5.1.1 User unknown", over several lines; ("", text) without one."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    enhanced = ""
    if lines and (match := _ENHANCED_CODE.match(lines[0])) and match.group(1) == str(code)[:1]:
        enhanced = match.group(0)
        lines = [line[len(enhanced):].strip() if line.startswith(enhanced) else line for line in lines]
    return enhanced, " ".join(lines)


@dataclass(frozen=True)
class Reply:
    """The relay's last word on one message, with the enhanced status code (RFC 3463) split out.

    `stage` is the SMTP step that answered ("connect", "TLS", "AUTH", "MAIL", "RCPT", "DATA"); a refusal at
    MAIL FROM is about our sender, never about the subscriber, so it can never count as a hard bounce.
    """

    code: int
    enhanced: str
    text: str
    stage: str = ""

    @classmethod
    def from_smtp(cls, code: int, message: bytes | str, stage: str = "") -> Reply:
        """Split "5.1.1 User unknown" (possibly over several lines) into the enhanced code and the prose."""
        enhanced, text = split_enhanced(code, message)
        return cls(code, enhanced, text, stage)

    @property
    def outcome(self) -> str:
        """One of OUTCOMES: what the sending engine must do (see classify)."""
        return classify(self.code, self.enhanced, self.text, self.stage)

    @property
    def retryable(self) -> bool:
        """True when the same message may be tried again later (4xx answers, lost connections, session faults)."""
        outcome = self.outcome
        return outcome in ("deferred", "connection") or (outcome == "policy" and self.code // 100 == 4)

    def __str__(self) -> str:
        """"535 5.7.8 Authentication failed (at AUTH)", as a person reads it in a log."""
        code = f"{self.code} " if self.code else ""
        enhanced = f"{self.enhanced} " if self.enhanced else ""
        return f"{code}{enhanced}{self.text}" + (f" (at {self.stage})" if self.stage else "")


@dataclass(frozen=True)
class CheckStep:
    """One step of a transport check: what was done, and the relay's answer or our error."""

    name: str
    ok: bool
    detail: str


def worth_a_fresh_connection(reply: Reply) -> bool:
    """On a reused connection: the relay closed it while idle, or lost track of it, before we spoke.
    Nothing was sent, so the message is tried once more on a fresh connection."""
    return reply.stage == "MAIL" and reply.code in (0, 421, 503)


class Transport(Protocol):
    def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply: ...

    def check(self, mail_from: str) -> tuple[list[CheckStep], Reply | None]: ...

    def close(self) -> None: ...


class SMTPTransport:
    """One persistent SMTP connection, opened on first use and reopened after a drop or a 421.

    Not thread-safe: give each sending thread its own transport.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: str = "auto",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30,
        local_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if starttls not in STARTTLS_MODES:
            raise ValueError(f"starttls={starttls!r}: use one of {', '.join(STARTTLS_MODES)}")
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self._username = username
        self._password = password
        self._timeout = timeout
        self._local_hostname = local_hostname or socket.getfqdn()
        self._ssl_context = ssl_context
        self._smtp: smtplib.SMTP | None = None

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"<SMTPTransport {scheme}://{self.host}:{self.port}>"

    def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        """Deliver complete CRLF message bytes to one recipient; never raises for SMTP or network trouble."""
        reused = self._smtp is not None
        reply = self._send_once(mail_from, rcpt, data)
        if reused and worth_a_fresh_connection(reply):
            reply = self._send_once(mail_from, rcpt, data)
        return reply

    def check(self, mail_from: str) -> tuple[list[CheckStep], Reply | None]:
        """Connect, EHLO, STARTTLS or TLS, AUTH as configured, then MAIL FROM and RSET: nothing is sent.

        Returns the steps taken and, if one failed, the Reply that says why (its outcome is "connection"
        for a session fault, "policy" for a refused MAIL FROM). The connection is closed afterwards.
        """
        steps: list[CheckStep] = []
        self._discard()
        try:
            failure = self._open(steps)
            if failure is not None:
                return steps, failure
            assert self._smtp is not None
            try:
                code, message = _envelope_command(self._smtp, "mail", "FROM:", mail_from, [])
                steps.append(CheckStep("MAIL FROM", code == 250, f"<{mail_from}>: {code} {_text(message)}"))
                if code != 250:
                    return steps, Reply.from_smtp(code, message, "MAIL")
                code, message = self._smtp.rset()
                steps.append(CheckStep("RSET", code == 250, f"{code} {_text(message)}"))
                if code != 250:
                    return steps, Reply.from_smtp(code, message, "MAIL")
            except (smtplib.SMTPException, OSError) as error:
                steps.append(CheckStep("MAIL FROM", False, f"connection lost: {_describe(error)}"))
                return steps, Reply(0, "", f"connection lost: {_describe(error)}", "MAIL")
            return steps, None
        finally:
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def _send_once(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        failure = self._open()
        if failure is not None:
            return failure
        smtp = self._smtp
        assert smtp is not None
        stage = "MAIL"
        try:
            options = self._mail_options(smtp, mail_from, rcpt, data)
            if isinstance(options, Reply):
                return options
            if "SMTPUTF8" in options:  # smtplib switches its command encoding to UTF-8 for these
                code, message = smtp.mail(mail_from, options)
            else:
                code, message = _envelope_command(smtp, "mail", "FROM:", mail_from, options)
            if code != 250:
                return self._refused(smtp, code, message, stage)
            stage = "RCPT"
            code, message = (smtp.rcpt(rcpt) if "SMTPUTF8" in options
                             else _envelope_command(smtp, "rcpt", "TO:", rcpt, []))
            if code not in (250, 251):
                return self._refused(smtp, code, message, stage)
            stage = "DATA"
            code, message = smtp.data(data)  # raises for a refused DATA command, returns the end-of-data reply
        except smtplib.SMTPServerDisconnected as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        except smtplib.SMTPResponseException as error:
            return self._refused(smtp, error.smtp_code, error.smtp_error, stage)
        except (smtplib.SMTPException, OSError) as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        if code // 100 != 2:
            return self._refused(smtp, code, message, stage)
        return Reply.from_smtp(code, message, stage)

    def _open(self, steps: list[CheckStep] | None = None) -> Reply | None:
        """Make sure a logged-in connection is open; None when it is, else the Reply of the step that failed.

        Every failure here is the connection's or the operator's (outcome "connection"), and leaves no
        connection behind. `steps`, when given, receives each step as it is taken (for `smtp check`).
        """
        if self._smtp is not None:
            return None
        record = steps.append if steps is not None else (lambda step: None)
        where = f"{self.host}:{self.port}"
        stage = "connect"
        try:
            # Both constructors connect and raise SMTPConnectError unless the greeting is 220.
            if self.implicit_tls:
                stage = "TLS"
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, self._local_hostname, timeout=self._timeout, context=self._tls_context()
                )
                record(CheckStep("connect", True, f"{where}, TLS from the first byte"))
            else:
                smtp = smtplib.SMTP(self.host, self.port, self._local_hostname, timeout=self._timeout)
                record(CheckStep("connect", True, where))
            self._smtp = smtp
            stage = "connect"
            code, message = smtp.ehlo()
            if code != 250:
                code, message = smtp.helo()
                if code != 250:
                    raise smtplib.SMTPHeloError(code, message)
            record(CheckStep("EHLO", True, f"{code}; offers {', '.join(sorted(smtp.esmtp_features)) or 'nothing'}"))
            if not self.implicit_tls and self.starttls != "never":
                if smtp.has_extn("starttls"):
                    stage = "TLS"
                    smtp.starttls(context=self._tls_context())
                    smtp.ehlo()
                    record(CheckStep("STARTTLS", True, "TLS established"))
                elif self.starttls == "always":
                    stage = "TLS"
                    raise smtplib.SMTPNotSupportedError(
                        "the relay does not offer STARTTLS and starttls is 'always'; "
                        "use starttls='never' to send in clear, or smtps:// for implicit TLS"
                    )
            if self._username:
                stage = "AUTH"
                smtp.login(self._username, self._password or "")
                record(CheckStep("AUTH", True, f"logged in as {self._username}"))
        except smtplib.SMTPResponseException as error:
            self._discard()
            reply = Reply.from_smtp(error.smtp_code, error.smtp_error, stage)
            record(CheckStep(stage, False, str(reply)))
            return reply
        except (smtplib.SMTPException, OSError, UnicodeError, ValueError) as error:  # UnicodeError: non-ASCII login
            self._discard()
            verb = "cannot connect to" if stage == "connect" else f"{stage} with"
            reply = Reply(0, "", f"{verb} {where} failed: {_describe(error)}" if stage != "connect"
                          else f"{verb} {where}: {_describe(error)}", stage)
            record(CheckStep(stage, False, reply.text))
            return reply
        return None

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    @staticmethod
    def _mail_options(smtp: smtplib.SMTP, mail_from: str, rcpt: str, data: bytes) -> list[str] | Reply:
        options = []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        if not data.isascii() and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (mail_from.isascii() and rcpt.isascii()):
            if not smtp.has_extn("smtputf8"):
                return Reply(553, "5.6.7", "not sent: non-ASCII address and the relay does not offer SMTPUTF8", "MAIL")
            options.append("SMTPUTF8")
        return options

    def _refused(self, smtp: smtplib.SMTP, code: int, message: bytes, stage: str) -> Reply:
        """Record a refusal and leave the connection clean for the next message: RSET after any refused
        transaction (a relay may keep it open after a 5xx at end of DATA), or a new connection after a
        421 or a 503 (a session out of step), or when the RSET itself is not answered with 250."""
        if code in (421, 503):
            self._discard()
        else:
            try:
                if smtp.rset()[0] != 250:
                    self._discard()
            except (smtplib.SMTPException, OSError):
                self._discard()
        return Reply.from_smtp(code, message, stage)

    def _discard(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()


_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]+")


def _envelope_command(smtp: smtplib.SMTP, verb: str, prefix: str, address: str,
                      options: list[str]) -> tuple[int, bytes]:
    """MAIL FROM / RCPT TO. Our addresses are already normalised, so the common case skips smtplib's
    address parser (a fifth of the sender's CPU); anything unusual still goes through smtplib."""
    if not _PLAIN_ADDRESS.fullmatch(address):
        return smtp.mail(address, options) if verb == "mail" else smtp.rcpt(address, options)
    smtp.putcmd(verb, f"{prefix}<{address}>{''.join(' ' + option for option in options)}")
    return smtp.getreply()


class MaildirTransport:
    """Delivers into a Maildir (created if missing), as a local delivery agent would: for demos and previews."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        for folder in ("tmp", "new", "cur"):
            (self.path / folder).mkdir(parents=True, exist_ok=True)
        self._hostname = socket.gethostname().replace("/", "\\057").replace(":", "\\072")

    def __repr__(self) -> str:
        return f"<MaildirTransport {self.path}>"

    def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        """Store one copy for `rcpt`, with local (LF) line endings and the envelope as trace headers."""
        trace = f"Return-Path: <{mail_from}>\nDelivered-To: {rcpt}\n".encode()
        name = f"{time.time_ns()}.{uuid.uuid4().hex}.{self._hostname}"
        temporary = self.path / "tmp" / name
        try:
            with open(temporary, "xb") as file:
                file.write(trace + data.replace(b"\r\n", b"\n"))
            os.rename(temporary, self.path / "new" / name)
        except OSError as error:
            return Reply(0, "", f"cannot store in maildir {self.path}: {_describe(error)}")
        return Reply(250, "2.0.0", f"stored new/{name}")

    def check(self, mail_from: str) -> tuple[list[CheckStep], Reply | None]:
        """Write and remove a file in the Maildir's tmp/, so that a store we cannot write to is found first."""
        probe = self.path / "tmp" / f"check.{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            text = f"cannot store in maildir {self.path}: {_describe(error)}"
            return [CheckStep("write", False, text)], Reply(0, "", text, "connect")
        return [CheckStep("write", True, f"{self.path} is writable")], None

    def close(self) -> None:
        """Nothing stays open between messages."""


def open_transport(
    url: str,
    *,
    starttls: str = "auto",
    timeout: float = 30,
    local_hostname: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """A transport for smtp://[user:pass@]host[:port], smtps://... or maildir:///absolute/path.

    `ssl_context` replaces the system trust store, e.g. to trust a relay's private certificate.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "maildir":
        return _open_maildir(url, parts)
    if scheme not in ("smtp", "smtps"):
        _reject(url, f"unknown scheme {parts.scheme!r}" if parts.scheme else "no scheme")
    if not parts.hostname:
        _reject(url, "no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        _reject(url, "a relay URL takes no path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        _reject(url, "the port is not a number from 0 to 65535")
    from .smtpwire import WireTransport  # the hot path's SMTPTransport (issue 14); imports this module

    return WireTransport(
        parts.hostname,
        port or (465 if scheme == "smtps" else 25),
        implicit_tls=scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
        local_hostname=local_hostname,
        ssl_context=ssl_context,
    )


@dataclass(frozen=True)
class TransportCheck:
    """What `newsletter smtp check` and every send do before the first message."""

    url: str  # with any password hidden
    steps: list[CheckStep]
    failure: Reply | None  # None when every step passed

    @property
    def ok(self) -> bool:
        return self.failure is None


def check_transport(url: str, mail_from: str, *, starttls: str = "auto", timeout: float = 30,
                    ssl_context: ssl.SSLContext | None = None) -> TransportCheck:
    """Open the transport as a send would and go as far as MAIL FROM and RSET, sending nothing.

    A URL that cannot be used (an unknown scheme, say) is a failed first step, not an exception.
    """
    try:
        transport = open_transport(url, starttls=starttls, timeout=timeout, ssl_context=ssl_context)
    except (ValueError, OSError) as error:
        text = str(error)
        return TransportCheck(_redacted(url), [CheckStep("URL", False, text)], Reply(0, "", text, "connect"))
    steps, failure = transport.check(mail_from)
    return TransportCheck(_redacted(url), steps, failure)


def what_to_fix(reply: Reply, url: str) -> str:
    """One line for an operator: what went wrong with the relay at `url`, and where to put it right."""
    shown = _redacted(url)
    if reply.stage == "AUTH" or reply.code == 530 or reply.code == 535:
        if reply.code == 530 or "required" in reply.text.lower():
            return (f"the relay at {shown} needs a login ({reply}); put user:password in smtp_url "
                    f"(smtp://user:password@host:port)")
        return f"the relay at {shown} refused the login ({reply}); check the user and password in smtp_url"
    if reply.stage == "TLS":
        return (f"TLS with the relay at {shown} failed ({reply}); check [sending] starttls, the relay's "
                f"certificate, or use smtps:// for implicit TLS")
    if reply.stage == "connect":
        if reply.text.startswith("transport URL") or reply.text.startswith("cannot store"):
            return reply.text
        return (f"cannot reach the relay at {shown} ({reply}); is it running, and are the host and port in "
                f"smtp_url right?")
    return f"the relay at {shown} refuses every message alike ({reply}); this is not about the recipients"


def _open_maildir(url: str, parts: SplitResult) -> MaildirTransport:
    if parts.netloc:
        _reject(url, f"maildir URLs have no host ({parts.netloc!r}); write three slashes: maildir:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/"):
        _reject(url, "the maildir path must be absolute: maildir:///absolute/path")
    return MaildirTransport(Path(path))


def _reject(url: str, reason: str) -> NoReturn:
    raise ValueError(f"transport URL {_redacted(url)!r}: {reason}; accepted forms: {ACCEPTED_URL_FORMS}")


def _redacted(url: str) -> str:
    """The URL with any password replaced, so that errors and logs can show it."""
    scheme, separator, rest = url.partition("://")
    userinfo, at, location = rest.rpartition("@")
    if not (separator and at and ":" in userinfo):
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{location}"


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return str(error) or type(error).__name__


def _text(message: bytes | str) -> str:
    return (message.decode("utf-8", "replace") if isinstance(message, bytes) else message).replace("\n", " ")
