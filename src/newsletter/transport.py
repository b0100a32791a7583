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


@dataclass(frozen=True)
class Reply:
    """The relay's last word on one message, with the enhanced status code (RFC 3463) split out.

    `stage` is the SMTP step that answered ("connect", "MAIL", "RCPT", "DATA"); a refusal at MAIL FROM is
    about our sender, never about the subscriber, so it can never count as a hard bounce.
    """

    code: int
    enhanced: str
    text: str
    stage: str = ""

    @classmethod
    def from_smtp(cls, code: int, message: bytes | str, stage: str = "") -> Reply:
        """Split "5.1.1 User unknown" (possibly over several lines) into the enhanced code and the prose."""
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        enhanced = ""
        if lines and (match := _ENHANCED_CODE.match(lines[0])) and match.group(1) == str(code)[:1]:
            enhanced = match.group(0)
            lines = [line[len(enhanced):].strip() if line.startswith(enhanced) else line for line in lines]
        return cls(code, enhanced, " ".join(lines), stage)

    @property
    def outcome(self) -> str:
        """One of "sent", "bounced", "policy", "deferred", "failed": what the sending engine must do."""
        code_class = self.code // 100
        if self.code == 0:
            return "deferred"
        if code_class == 2:
            return "sent"
        if code_class not in (4, 5):
            return "failed"
        outcome = self._classify_enhanced(code_class) or self._classify_prose(code_class)
        if outcome == "bounced" and self.stage == "MAIL":
            return "policy"
        return outcome

    @property
    def retryable(self) -> bool:
        """True when the same message may be tried again later (4xx answers and lost connections)."""
        outcome = self.outcome
        return outcome == "deferred" or (outcome == "policy" and self.code // 100 == 4)

    def _classify_enhanced(self, code_class: int) -> str | None:
        if not self.enhanced:
            return None
        _, subject, detail = (int(part) for part in self.enhanced.split("."))
        if subject == 7 or (subject, detail) in _SENDER_ADDRESS_STATUSES:
            return "policy"
        if subject == 0:
            return None  # "other or undefined": the prose is all there is to go on
        if code_class == 5 and (subject == 1 or (subject, detail) == (2, 1)):
            return "bounced"
        return "deferred" if code_class == 4 else "failed"

    def _classify_prose(self, code_class: int) -> str:
        if _POLICY_PROSE.search(self.text):
            return "policy"
        if self.code in (550, 551, 553) and _UNKNOWN_MAILBOX_PROSE.search(self.text):
            return "bounced"
        return "deferred" if code_class == 4 else "failed"


class Transport(Protocol):
    def send(self, mail_from: str, rcpt: str, data: bytes) -> Reply: ...

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
        if reused and reply.code in (0, 421) and reply.stage == "MAIL":
            # The relay closed an idle connection before we spoke: nothing was sent, so try a fresh one.
            reply = self._send_once(mail_from, rcpt, data)
        return reply

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def _send_once(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        try:
            smtp = self._connection()
        except smtplib.SMTPResponseException as error:
            self._discard()
            return Reply.from_smtp(error.smtp_code, error.smtp_error, "connect")
        except (smtplib.SMTPException, OSError, UnicodeError) as error:  # UnicodeError: non-ASCII login
            self._discard()
            return Reply(0, "", f"cannot connect to {self.host}:{self.port}: {_describe(error)}", "connect")

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
            code, message = smtp.data(data)
        except smtplib.SMTPServerDisconnected as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        except smtplib.SMTPResponseException as error:
            return self._refused(smtp, error.smtp_code, error.smtp_error, stage)
        except (smtplib.SMTPException, OSError) as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        if code == 421:
            self._discard()
        return Reply.from_smtp(code, message, stage)

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        # Both constructors connect and raise SMTPConnectError unless the greeting is 220.
        if self.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, self._local_hostname, timeout=self._timeout, context=self._tls_context()
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, self._local_hostname, timeout=self._timeout)
        self._smtp = smtp
        smtp.ehlo_or_helo_if_needed()
        if not self.implicit_tls and self.starttls != "never":
            if smtp.has_extn("starttls"):
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            elif self.starttls == "always":
                raise smtplib.SMTPNotSupportedError(
                    "the relay does not offer STARTTLS and starttls is 'always'; "
                    "use starttls='never' to send in clear, or smtps:// for implicit TLS"
                )
        if self._username:
            smtp.login(self._username, self._password or "")
        return smtp

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
        """Record a refusal and leave the connection clean (RSET) or closed (421) for the next message."""
        if code == 421:
            self._discard()
        else:
            try:
                smtp.rset()
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
    return str(error) or type(error).__name__
