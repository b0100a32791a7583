"""SMTP for the sending hot path: each message's envelope in one write, its bytes sent as they are.

Where the relay offers PIPELINING (RFC 2920), MAIL, RCPT and DATA leave in one write and their three
replies are read together, then the message and its terminating dot in a second write: two round trips
per message instead of smtplib's four, and no regular expression over the body (smtplib runs one over
every message to dot-stuff it: 50 to 150 µs for 13 KB on a 2-core machine). Without PIPELINING the same
commands go one at a time. Bytes built by message.py are SMTPReady: their line endings are CRLF and no line starts
with a dot, so they need no pass at all; any other bytes are normalised and dot-stuffed once on the way.

Connecting, EHLO, STARTTLS or implicit TLS, AUTH and QUIT stay with smtplib through SMTPTransport, and
every answer becomes transport.Reply with its classification: this module only replaces the transaction.
After any refusal the connection is reset (RSET) or, when that fails, closed before the next message.
"""

from __future__ import annotations

import smtplib

from .transport import _PLAIN_ADDRESS, Reply, SMTPTransport, _describe

TERMINATOR = b".\r\n"
MAX_REPLY_BYTES = 64 * 1024  # a reply longer than this is not SMTP
RECEIVE_BYTES = 64 * 1024


class SMTPReady(bytes):
    """Message bytes already in the form DATA carries them: CRLF line endings only, no line that starts
    with a dot, ending with CRLF. message.py builds its messages so (a leading dot is written =2E), which
    spares the transport a pass over every message."""

    __slots__ = ()


def data_form(message: bytes) -> bytes:
    """The message as DATA carries it, terminator included: CRLF line endings and every line that starts
    with a dot given a second one (RFC 5321 4.5.2); SMTPReady bytes only get the terminator."""
    if not isinstance(message, SMTPReady):
        line_feeds = message.count(b"\n")
        if not line_feeds == message.count(b"\r") == message.count(b"\r\n"):
            message = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        if message[:1] == b".":
            message = b"." + message
        message = message.replace(b"\r\n.", b"\r\n..")
        if not message.endswith(b"\r\n"):
            message += b"\r\n"
    return message + TERMINATOR


class ConnectionLost(OSError):
    """The relay closed the connection, or sent something that is not an SMTP reply."""


class _Wire:
    """One open connection after smtplib's handshake: its socket and the bytes received but not yet read."""

    __slots__ = ("smtp", "sock", "pipelining", "_pending")

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp
        self.sock = smtp.sock
        self.pipelining = smtp.has_extn("pipelining")
        self._pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, bytes]:
        """The next reply: its code and its text, the lines of a multi-line reply joined by LF."""
        buffer, start, lines = self._pending, 0, []
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > MAX_REPLY_BYTES:
                    raise ConnectionLost(f"reply longer than {MAX_REPLY_BYTES} bytes")
                received = self.sock.recv(RECEIVE_BYTES)
                if not received:
                    raise ConnectionLost("the relay closed the connection")
                buffer, start = buffer[start:] + received, 0
                continue
            line = buffer[start:end]
            start = end + 1
            code = line[:3]
            if not (code.isdigit() and line[3:4] in (b" ", b"-", b"\r", b"")):
                raise ConnectionLost(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:].rstrip(b"\r"))
            if line[3:4] != b"-":
                self._pending = buffer[start:]
                return int(code), b"\n".join(lines)


def _envelope_command(prefix: str, address: str, options: list[str], encoding: str) -> bytes | None:
    """`MAIL FROM:<address> OPTIONS` CRLF, or None when the address cannot be written in a command."""
    if _PLAIN_ADDRESS.fullmatch(address):
        quoted = f"<{address}>"
    elif "\r" in address or "\n" in address or "\0" in address:
        return None
    else:
        quoted = smtplib.quoteaddr(address)
    return f"{prefix}{quoted}{''.join(' ' + option for option in options)}\r\n".encode(encoding)


class WireTransport(SMTPTransport):
    """SMTPTransport with a leaner transaction; the same connection handling, replies and guarantees.

    Not thread-safe: give each sending thread its own transport.
    """

    _wire: _Wire | None = None
    _last_accepted: tuple[int, bytes, Reply] | None = None  # a relay says the same "250 2.0.0 Ok" each time

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"<WireTransport {scheme}://{self.host}:{self.port}>"

    def _send_once(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        failure = self._open()  # connect, EHLO, TLS, AUTH: a failure there is the connection's (transport.py)
        if failure is not None:
            return failure
        smtp = self._smtp
        assert smtp is not None
        wire = self._wire
        if wire is None or wire.smtp is not smtp:
            wire = self._wire = _Wire(smtp)

        options = self._mail_options(smtp, mail_from, rcpt, data)
        if isinstance(options, Reply):
            return options
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"  # _mail_options checked that ASCII will do
        mail = _envelope_command("MAIL FROM:", mail_from, options, encoding)
        recipient = _envelope_command("RCPT TO:", rcpt, [], encoding)
        if mail is None or recipient is None:
            return Reply(553, "5.1.3", "not sent: an address contains a line break",
                         "MAIL" if mail is None else "RCPT")
        if wire.pipelining:
            return self._pipelined(wire, mail, recipient, data)
        return self._lockstep(wire, mail, recipient, data)

    def _pipelined(self, wire: _Wire, mail: bytes, recipient: bytes, data: bytes) -> Reply:
        """MAIL, RCPT and DATA in one write (RFC 2920); the message once all three were accepted."""
        stage, refusal = "MAIL", None
        try:
            wire.send(mail + recipient + b"DATA\r\n")
            for stage, expected in (("MAIL", (250,)), ("RCPT", (250, 251)), ("DATA", (354,))):
                code, text = wire.reply()
                if code == 421:  # the relay hangs up after it: the replies that would follow never come
                    self._discard()
                    return Reply.from_smtp(*(refusal or (code, text, stage)))
                if code not in expected and refusal is None:
                    refusal = (code, text, stage)
            if refusal is not None:
                if code == 354:  # it waits for a message we will not send: only a new connection is clean
                    self._discard()
                    return Reply.from_smtp(*refusal)
                return self._refused_on(wire, *refusal)
            stage = "DATA"
            wire.send(data_form(data))
            code, text = wire.reply()
        except OSError as error:
            self._discard()
            if refusal is not None:
                return Reply.from_smtp(*refusal)
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        return self._finished(wire, code, text)

    def _lockstep(self, wire: _Wire, mail: bytes, recipient: bytes, data: bytes) -> Reply:
        """One command, one reply, for relays that do not offer PIPELINING."""
        stage = "MAIL"
        try:
            for stage, command, expected in (("MAIL", mail, (250,)), ("RCPT", recipient, (250, 251)),
                                             ("DATA", b"DATA\r\n", (354,))):
                wire.send(command)
                code, text = wire.reply()
                if code not in expected:
                    return self._refused_on(wire, code, text, stage)
            wire.send(data_form(data))
            code, text = wire.reply()
        except OSError as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        return self._finished(wire, code, text)

    def _discard(self) -> None:
        self._wire = None
        super()._discard()

    def _finished(self, wire: _Wire, code: int, text: bytes) -> Reply:
        """The relay's word on the message itself; after a refusal, the transaction is reset."""
        if code // 100 != 2:
            return self._refused_on(wire, code, text, "DATA")
        last = self._last_accepted
        if last is None or last[0] != code or last[1] != text:
            last = self._last_accepted = (code, text, Reply.from_smtp(code, text, "DATA"))
        return last[2]

    def _refused_on(self, wire: _Wire, code: int, text: bytes, stage: str) -> Reply:
        """Record a refusal and leave the connection clean (RSET) or closed: after a 421, a 503 (the session
        is out of step, whatever RSET says) or a RSET not answered with 250."""
        if code in (421, 503):
            self._discard()
        else:
            try:
                wire.send(b"RSET\r\n")
                if wire.reply()[0] != 250:
                    self._discard()
            except OSError:
                self._discard()
        return Reply.from_smtp(code, text, stage)
