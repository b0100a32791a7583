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
from typing import Generator

from .transport import _PLAIN_ADDRESS, Reply, SMTPTransport, _describe, worth_a_fresh_connection

TERMINATOR = b".\r\n"
MAX_REPLY_BYTES = 64 * 1024  # a reply longer than this is not SMTP
RECEIVE_BYTES = 64 * 1024

# A transaction in progress: it yields when it needs the next reply, is sent that (code, text), and
# returns the Reply for the message.
Exchange = Generator[None, tuple[int, bytes], Reply]


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

    def receive(self) -> None:
        """Read what the socket has (blocking until something comes), including what TLS holds decrypted."""
        received = self.sock.recv(RECEIVE_BYTES)
        if not received:
            raise ConnectionLost("the relay closed the connection")
        pending = getattr(self.sock, "pending", None)
        while pending is not None and pending():
            received += self.sock.recv(RECEIVE_BYTES)
        self._pending += received

    def next_reply(self) -> tuple[int, bytes] | None:
        """The next complete reply received (its code and its text, the lines of a multi-line reply joined
        by LF), or None until all of it has come."""
        buffer, start, lines = self._pending, 0, []
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) > MAX_REPLY_BYTES:
                    raise ConnectionLost(f"reply longer than {MAX_REPLY_BYTES} bytes")
                return None
            line = buffer[start:end]
            start = end + 1
            code = line[:3]
            if not (code.isdigit() and line[3:4] in (b" ", b"-", b"\r", b"")):
                raise ConnectionLost(f"not an SMTP reply: {line[:80]!r}")
            lines.append(line[4:].rstrip(b"\r"))
            if line[3:4] != b"-":
                self._pending = buffer[start:]
                return int(code), b"\n".join(lines)

    def reply(self) -> tuple[int, bytes]:
        """The next reply, waiting for it."""
        while (reply := self.next_reply()) is None:
            self.receive()
        return reply


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

    Two ways to drive it: send() waits for the relay's word; start() and readable() let one thread carry
    many connections (the sender's event loop): start() writes the envelope and returns, readable() takes
    what arrived on fileno() and returns the Reply once the transaction is over. Both run the same
    exchange, a generator that yields whenever it needs the next reply.

    Not thread-safe: give each sending thread its own transport.
    """

    _wire: _Wire | None = None
    _last_accepted: tuple[int, bytes, Reply] | None = None  # a relay says the same "250 2.0.0 Ok" each time
    _exchange: Exchange | None = None  # the transaction in flight, between start() and its Reply
    _again: tuple[str, str, bytes] | None = None  # what to send once more if a reused connection had gone

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"<WireTransport {scheme}://{self.host}:{self.port}>"

    def _send_once(self, mail_from: str, rcpt: str, data: bytes) -> Reply:
        exchange = self._begin(mail_from, rcpt, data)
        if isinstance(exchange, Reply):
            return exchange
        wire = self._wire
        assert wire is not None
        try:
            next(exchange)
            while True:
                try:
                    reply = wire.reply()
                except OSError as error:
                    exchange.throw(error)
                else:
                    exchange.send(reply)
        except StopIteration as done:
            return done.value

    # -- one thread, many connections ----------------------------------------------------------------

    def fileno(self) -> int:
        """The socket to wait on while a transaction is in flight."""
        assert self._wire is not None
        return self._wire.sock.fileno()

    def start(self, mail_from: str, rcpt: str, data: bytes) -> Reply | None:
        """Open the connection if need be (blocking: connect, EHLO, TLS, AUTH), write the envelope and
        return None, or the Reply at once when the message cannot go (a refused connection, say)."""
        self._again = (mail_from, rcpt, data) if self._smtp is not None else None
        return self._start_once(mail_from, rcpt, data)

    def readable(self) -> Reply | None:
        """Take what arrived: the Reply once the transaction is over, None while it still waits."""
        exchange, wire = self._exchange, self._wire
        assert exchange is not None and wire is not None
        try:
            try:
                wire.receive()
                while (reply := wire.next_reply()) is not None:
                    exchange.send(reply)
            except OSError as error:
                exchange.throw(error)
        except StopIteration as done:
            self._exchange = None
            return self._retried(done.value)
        return None

    @property
    def timeout(self) -> float:
        return self._timeout

    def timed_out(self) -> Reply:
        """The relay said nothing for longer than the timeout while a transaction waited: give it up."""
        exchange = self._exchange
        assert exchange is not None
        self._exchange, self._again = None, None
        try:
            exchange.throw(TimeoutError(f"no reply within {self._timeout:g} s"))
        except StopIteration as done:
            return done.value
        raise AssertionError("an exchange goes on after a timeout")  # pragma: no cover

    def _start_once(self, mail_from: str, rcpt: str, data: bytes) -> Reply | None:
        exchange = self._begin(mail_from, rcpt, data)
        if isinstance(exchange, Reply):
            return self._retried(exchange)
        try:
            next(exchange)
        except StopIteration as done:  # the envelope could not even be written
            return self._retried(done.value)
        self._exchange = exchange
        return None

    def _retried(self, reply: Reply) -> Reply | None:
        """send()'s one retry on a fresh connection when a reused one had gone before we spoke."""
        again, self._again = self._again, None
        if again is not None and worth_a_fresh_connection(reply):
            return self._start_once(*again)
        return reply

    # -- the exchange ----------------------------------------------------------------------------------

    def _begin(self, mail_from: str, rcpt: str, data: bytes) -> Exchange | Reply:
        """The transaction as an Exchange, or the Reply that says why it cannot start."""
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

    def _pipelined(self, wire: _Wire, mail: bytes, recipient: bytes, data: bytes) -> Exchange:
        """MAIL, RCPT and DATA in one write (RFC 2920); the message once all three were accepted."""
        stage, refusal = "MAIL", None
        try:
            wire.send(mail + recipient + b"DATA\r\n")
            for stage, expected in (("MAIL", (250,)), ("RCPT", (250, 251)), ("DATA", (354,))):
                code, text = yield
                if code == 421:  # the relay hangs up after it: the replies that would follow never come
                    self._discard()
                    return Reply.from_smtp(*(refusal or (code, text, stage)))
                if code not in expected and refusal is None:
                    refusal = (code, text, stage)
            if refusal is not None:
                if code == 354:  # it waits for a message we will not send: only a new connection is clean
                    self._discard()
                    return Reply.from_smtp(*refusal)
                return (yield from self._refused_on(wire, *refusal))
            stage = "DATA"
            wire.send(data_form(data))
            code, text = yield
        except OSError as error:
            self._discard()
            if refusal is not None:
                return Reply.from_smtp(*refusal)
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        return (yield from self._finished(wire, code, text))

    def _lockstep(self, wire: _Wire, mail: bytes, recipient: bytes, data: bytes) -> Exchange:
        """One command, one reply, for relays that do not offer PIPELINING."""
        stage = "MAIL"
        try:
            for stage, command, expected in (("MAIL", mail, (250,)), ("RCPT", recipient, (250, 251)),
                                             ("DATA", b"DATA\r\n", (354,))):
                wire.send(command)
                code, text = yield
                if code not in expected:
                    return (yield from self._refused_on(wire, code, text, stage))
            wire.send(data_form(data))
            code, text = yield
        except OSError as error:
            self._discard()
            return Reply(0, "", f"connection lost: {_describe(error)}", stage)
        return (yield from self._finished(wire, code, text))

    def _discard(self) -> None:
        self._wire = None
        self._exchange = None
        super()._discard()

    def _finished(self, wire: _Wire, code: int, text: bytes) -> Exchange:
        """The relay's word on the message itself; after a refusal, the transaction is reset."""
        if code // 100 != 2:
            return (yield from self._refused_on(wire, code, text, "DATA"))
        last = self._last_accepted
        if last is None or last[0] != code or last[1] != text:
            last = self._last_accepted = (code, text, Reply.from_smtp(code, text, "DATA"))
        return last[2]

    def _refused_on(self, wire: _Wire, code: int, text: bytes, stage: str) -> Exchange:
        """Record a refusal and leave the connection clean (RSET) or closed: after a 421, a 503 (the session
        is out of step, whatever RSET says) or a RSET not answered with 250."""
        if code in (421, 503):
            self._discard()
        else:
            try:
                wire.send(b"RSET\r\n")
                if (yield)[0] != 250:
                    self._discard()
            except OSError:
                self._discard()
        return Reply.from_smtp(code, text, stage)
