"""The hot-path SMTP client against real servers on loopback: aiosmtpd with and without PIPELINING and with
every fault it can play, a strict pipelining server written here, Postfix's smtp-sink and a real Postfix."""

from __future__ import annotations

import re
import select
import smtplib
import socket
import socketserver
import sys
import threading
from contextlib import closing

import pytest
from postfix_servers import POSTFIX, SMTP_SINK, PostfixServer, SmtpSink
from smtp_servers import (
    MAILBOX_FULL,
    OUT_OF_STORAGE,
    REFUSED_BY_POLICY,
    SERVICE_CLOSING,
    TRY_AGAIN,
    USER_UNKNOWN,
    FaultServer,
    client_tls_context,
    self_signed_certificate,
    server_tls_context,
)

from newsletter.smtpwire import SMTPReady, WireTransport, data_form
from newsletter.transport import Reply, open_transport

SENDER = "news@lac.example.org"
needs_smtp_sink = pytest.mark.skipif(SMTP_SINK is None, reason="smtp-sink not installed (Debian package postfix)")


def message(to: str, body: str = "Hello.") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: Digest\r\n\r\n{body}\r\n".encode()


def wire(url: str, **options) -> WireTransport:
    transport = open_transport(url, **options)
    assert isinstance(transport, WireTransport)
    return transport


def send(transport, to: str, body: str = "Hello.") -> Reply:
    if DRIVER == "loop" and isinstance(transport, WireTransport):
        return by_the_loop(transport, SENDER, to, message(to, body))
    return transport.send(SENDER, to, message(to, body))


def by_the_loop(transport: WireTransport, mail_from: str, rcpt: str, data: bytes) -> Reply:
    """As the sender's event loop drives a transport: start, wait on its socket, readable() until the Reply,
    timed_out() when the relay stays silent for the timeout."""
    reply = transport.start(mail_from, rcpt, data)
    while reply is None:
        ready, _, _ = select.select([transport], [], [], transport.timeout)
        reply = transport.readable() if ready else transport.timed_out()
    return reply


DRIVER = "send"


@pytest.fixture(autouse=True, params=["send", "loop"])
def driver(request, monkeypatch) -> str:
    """Every test that sends through send() runs twice: with the blocking send(), and driven as the
    sender's loop drives it (start, readable, timed_out): one exchange underneath, so the same results."""
    monkeypatch.setattr(sys.modules[__name__], "DRIVER", request.param)
    return request.param


# -- the DATA form ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    b"Subject: x\r\n\r\nbody\r\n",
    b"Subject: x\n\n.leading dot\nlone CR\rend",
    b".first line\r\n..two\r\n.\r\nlast",
    b"crlf then lf\r\n\n.\r\r\n",
    b"",
])
def test_data_form_is_what_smtplib_sends_crlf_lines_doubled_leading_dots_and_the_terminator(raw):
    expected = smtplib._quote_periods(re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", raw))  # as SMTP.data does
    if expected[-2:] != b"\r\n":
        expected += b"\r\n"
    assert data_form(raw) == expected + b".\r\n"


def test_smtp_ready_bytes_are_sent_as_they_are():
    ready = SMTPReady(b"Subject: x\r\n\r\nbody\r\n")
    assert data_form(ready) == ready + b".\r\n"


# -- aiosmtpd, with and without PIPELINING -----------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
def pipelining(request) -> bool:
    return request.param


@pytest.mark.parametrize(
    ("fault", "at", "code", "enhanced", "outcome"),
    [
        (TRY_AGAIN, "RCPT", 451, "4.3.0", "deferred"),
        (OUT_OF_STORAGE, "RCPT", 452, "4.2.2", "deferred"),
        (USER_UNKNOWN, "RCPT", 550, "5.1.1", "bounced"),
        (MAILBOX_FULL, "RCPT", 552, "5.2.2", "failed"),
        (REFUSED_BY_POLICY, "RCPT", 554, "5.7.1", "policy"),
        (TRY_AGAIN, "DATA", 451, "4.3.0", "deferred"),
        (OUT_OF_STORAGE, "DATA", 452, "4.2.2", "deferred"),
        (USER_UNKNOWN, "DATA", 550, "5.1.1", "bounced"),
        (MAILBOX_FULL, "DATA", 552, "5.2.2", "failed"),
        (REFUSED_BY_POLICY, "DATA", 554, "5.7.1", "policy"),
    ],
)
def test_a_refusal_is_that_recipients_and_the_same_connection_carries_the_next(pipelining, fault, at, code,
                                                                               enhanced, outcome):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        server.fail("ana", fault, at=at)
        refused, following = send(transport, "ana@example.org"), send(transport, "bo@example.org")
        assert (refused.code, refused.enhanced, refused.stage, refused.outcome) == (code, enhanced, at, outcome)
        assert following.outcome == "sent"
        assert server.connections == 1
        assert server.accepted_for("ana@example.org") == []
        assert len(server.accepted_for("bo@example.org")) == 1


def test_after_a_refusal_at_the_end_of_data_the_transaction_is_reset_before_the_next_message(pipelining):
    """aiosmtpd keeps the transaction open after its handler fails (500): without a RSET the next MAIL
    would get 503 nested MAIL command."""
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        server.crash_at_data("crash@example.org")
        refused = send(transport, "crash@example.org")
        following = [send(transport, f"reader{n}@example.org") for n in range(3)]
        assert (refused.code, refused.stage) == (500, "DATA")
        assert [reply.outcome for reply in following] == ["sent"] * 3
        assert server.connections == 1


def test_a_relay_that_goes_down_is_the_connections_fault_and_sending_resumes_when_it_is_back(pipelining):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url(), timeout=5)) as transport:
        assert send(transport, "ana@example.org").outcome == "sent"
        server.go_down()
        down = send(transport, "bo@example.org")
        server.come_back()
        back = send(transport, "bo@example.org")
        assert (down.code, down.stage, down.outcome) == (0, "connect", "connection")
        assert back.outcome == "sent"
        assert len(server.accepted_for("bo@example.org")) == 1


@pytest.mark.parametrize("at", ["RCPT", "DATA"])
def test_a_421_closes_the_connection_and_the_next_message_opens_a_new_one(pipelining, at):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        server.fail("ana@example.org", SERVICE_CLOSING, at=at)
        closing_reply, following = send(transport, "ana@example.org"), send(transport, "bo@example.org")
        assert (closing_reply.code, closing_reply.stage, closing_reply.retryable) == (421, at, True)
        assert following.outcome == "sent"
        assert server.connections == 2


def test_a_connection_dropped_in_the_middle_of_data_is_a_retryable_loss(pipelining):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        server.drop_during_data("ana@example.org")
        lost = send(transport, "ana@example.org", "x" * 100_000)
        following = send(transport, "bo@example.org")
        assert (lost.code, lost.stage, lost.outcome) == (0, "DATA", "deferred")
        assert lost.text.startswith("connection lost")
        assert following.outcome == "sent"
        assert server.connections == 2
        assert server.accepted_for("ana@example.org") == []


def test_a_connection_the_relay_closed_while_idle_is_replaced_without_losing_the_message(pipelining):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        assert send(transport, "ana@example.org").outcome == "sent"
        server.hang_up()
        assert send(transport, "bo@example.org").outcome == "sent"
        assert server.connections == 2
        assert len(server.accepted_for("bo@example.org")) == 1


def test_an_answer_slower_than_the_timeout_is_a_retryable_loss(pipelining):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url(), timeout=0.5)) as transport:
        server.fail("ana@example.org", TRY_AGAIN, at="DATA", delay=5.0, times=1)
        slow = send(transport, "ana@example.org")
        assert (slow.code, slow.stage, slow.retryable) == (0, "DATA", True)
        assert send(transport, "bo@example.org").outcome == "sent"


def test_a_rate_limit_is_policy_to_retry_and_sending_resumes_once_it_is_over(pipelining):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        server.rate_limit(times=2)
        replies = [send(transport, "ana@example.org") for _ in range(3)]
        assert [(r.code, r.enhanced, r.outcome, r.stage) for r in replies[:2]] == [(421, "4.7.0", "policy", "RCPT")] * 2
        assert replies[2].outcome == "sent"
        assert server.connections == 3


def test_a_relay_that_is_not_listening_is_a_connection_failure(pipelining):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with closing(wire(f"smtp://127.0.0.1:{port}", timeout=5)) as transport:
        reply = send(transport, "ana@example.org")
    assert (reply.code, reply.stage, reply.retryable) == (0, "connect", True)


def test_a_large_message_with_long_lines_and_leading_dots_arrives_intact(pipelining):
    body = "\r\n".join(["<td>" + "x" * 20_000 + "</td>"] * 60 + [".a line that starts with a dot", ".", ".."])
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        assert send(transport, "ana@example.org", body).outcome == "sent"
        assert server.accepted_for("ana@example.org") == [message("ana@example.org", body)]


def test_non_ascii_addresses_use_smtputf8_and_8bit_bodies_8bitmime(pipelining):
    greeting = "Señoras y señores, ¡bienvenidos!"
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        assert send(transport, "josé@ejemplo.org", greeting).outcome == "sent"
        assert server.accepted_for("josé@ejemplo.org") == [message("josé@ejemplo.org", greeting)]


@pytest.mark.parametrize("breaker", ["\r\n", "\n", "\r"])
def test_an_address_with_a_line_break_is_never_written_into_a_command(pipelining, breaker):
    with FaultServer(pipelining=pipelining) as server, closing(wire(server.url())) as transport:
        reply = transport.send(SENDER, f"ana@example.org>{breaker}RCPT TO:<eve@example.org", message("ana@example.org"))
        assert (reply.code, reply.enhanced, reply.stage) == (553, "5.1.3", "RCPT")
        assert send(transport, "bo@example.org").outcome == "sent"
        assert [received.rcpt_tos for received in server.accepted] == [("bo@example.org",)]


# -- TLS and AUTH, under the pipelined transaction ---------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    pytest.importorskip("cryptography", reason="the `cryptography` package makes the test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_starttls_and_auth_then_pipelined_messages_over_tls(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate), credentials=("news", "s3cret"),
                     pipelining=True) as server:
        url = f"smtp://news:s3cret@127.0.0.1:{server.port}"
        with closing(open_transport(url, ssl_context=client_tls_context(certificate[0]))) as transport:
            server.fail("ana", USER_UNKNOWN)
            replies = [send(transport, address) for address in ("ana@example.org", "bo@example.org")]
        assert [reply.outcome for reply in replies] == ["bounced", "sent"]
        assert [received.over_tls for received in server.accepted] == [True]
        assert server.connections == 1


def test_smtps_pipelines_from_the_first_byte(certificate):
    with FaultServer(implicit_tls_context=server_tls_context(*certificate), pipelining=True) as server:
        with closing(open_transport(server.url("smtps"), ssl_context=client_tls_context(certificate[0]))) as transport:
            assert [send(transport, f"r{n}@example.org").outcome for n in range(3)] == ["sent"] * 3
        assert all(received.over_tls for received in server.accepted)


def test_a_refused_starttls_is_the_connections_fault_and_nothing_is_sent(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate), pipelining=True) as server:
        server.refuse_starttls()
        with closing(open_transport(server.url(), ssl_context=client_tls_context(certificate[0]))) as transport:
            refused = send(transport, "ana@example.org")
        assert (refused.code, refused.stage, refused.outcome) == (454, "TLS", "connection")
        assert server.accepted == []


def test_a_wrong_password_is_refused_at_auth_as_the_connections_fault_and_nothing_is_sent(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate), credentials=("news", "s3cret"),
                     pipelining=True) as server:
        url = f"smtp://news:wrong@127.0.0.1:{server.port}"
        with closing(open_transport(url, ssl_context=client_tls_context(certificate[0]))) as transport:
            refused = send(transport, "ana@example.org")
        assert (refused.code, refused.stage, refused.outcome) == (535, "AUTH", "connection")
        assert server.accepted == []


# -- a strict pipelining server ----------------------------------------------------------------------


class StrictPipeliningServer(socketserver.ThreadingTCPServer):
    """Holds back its answers to MAIL and RCPT until DATA has arrived too (RFC 2920 lets a server answer a
    group at once): a client that waits for each reply before its next command never gets one.

    `replies` replaces the answer to "MAIL", "RCPT", "DATA" or "." (end of data); `split` writes every
    reply one byte at a time; `final` is the reply to the end of DATA, possibly several lines.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *, replies: dict[str, bytes] | None = None, split: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _StrictHandler)
        self.replies = {"MAIL": b"250 2.1.0 Ok\r\n", "RCPT": b"250 2.1.5 Ok\r\n", "DATA": b"354 go ahead\r\n",
                        ".": b"250-2.0.0 Ok: queued\r\n250 2.0.0 as 1\r\n", **(replies or {})}
        self.split = split
        self.received: list[bytes] = []
        self.connections = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> StrictPipeliningServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class _StrictHandler(socketserver.StreamRequestHandler):
    server: StrictPipeliningServer

    def write(self, reply: bytes) -> None:
        for index in range(len(reply)) if self.server.split else [None]:
            self.wfile.write(reply if index is None else reply[index:index + 1])
            self.wfile.flush()

    def handle(self) -> None:
        self.server.connections += 1
        self.write(b"220 strict ESMTP\r\n")
        group: list[str] = []
        while line := self.rfile.readline():
            verb = line[:4].decode().upper()
            if verb == "EHLO":
                self.write(b"250-strict\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in ("MAIL", "RCPT"):
                group.append(verb)
            elif verb == "DATA":
                self.write(b"".join(self.server.replies[command] for command in [*group, "DATA"]))
                group = []
                if self.server.replies["DATA"].startswith(b"354"):
                    self.receive_message()
            elif verb == "RSET":
                self.write(b"250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                self.write(b"221 2.0.0 Bye\r\n")
                return
            else:
                self.write(b"502 5.5.2 Error: command not recognized\r\n")

    def receive_message(self) -> None:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b""):
            lines.append(line[1:] if line.startswith(b".") else line)
        if line:
            self.server.received.append(b"".join(lines))
            self.write(self.server.replies["."])


def test_the_envelope_goes_in_one_write_where_pipelining_is_offered():
    with StrictPipeliningServer() as server, closing(wire(server.url(), timeout=5)) as transport:
        bodies = [".a dot", "plain", ".."]
        replies = [send(transport, f"r{n}@example.org", body) for n, body in enumerate(bodies)]
        assert [(reply.code, reply.enhanced, reply.outcome) for reply in replies] == [(250, "2.0.0", "sent")] * 3
        assert server.received == [message(f"r{n}@example.org", body) for n, body in enumerate(bodies)]
        assert server.connections == 1


def test_replies_that_arrive_a_byte_at_a_time_and_over_several_lines_are_read_whole():
    with StrictPipeliningServer(split=True) as server, closing(wire(server.url(), timeout=5)) as transport:
        reply = send(transport, "ana@example.org")
        assert (reply.code, reply.enhanced, reply.text) == (250, "2.0.0", "Ok: queued as 1")
        assert send(transport, "bo@example.org").outcome == "sent"


def test_a_relay_that_answers_354_after_refusing_the_recipient_gets_no_message_and_a_new_connection():
    replies = {"RCPT": b"550 5.1.1 User unknown\r\n"}
    with StrictPipeliningServer(replies=replies) as server, closing(wire(server.url(), timeout=5)) as transport:
        refused = send(transport, "ana@example.org")
        assert (refused.code, refused.stage, refused.outcome) == (550, "RCPT", "bounced")
        server.replies["RCPT"] = b"250 2.1.5 Ok\r\n"
        assert send(transport, "bo@example.org").outcome == "sent"
        assert server.received == [message("bo@example.org")]
        assert server.connections == 2


def test_a_refused_sender_is_reported_at_mail_and_the_transaction_reset():
    replies = {"MAIL": b"553 5.1.8 Bad sender domain\r\n", "RCPT": b"503 5.5.1 need MAIL\r\n",
               "DATA": b"503 5.5.1 need RCPT\r\n"}
    with StrictPipeliningServer(replies=replies) as server, closing(wire(server.url(), timeout=5)) as transport:
        refused = send(transport, "ana@example.org")
        assert (refused.code, refused.enhanced, refused.stage, refused.outcome) == (553, "5.1.8", "MAIL", "policy")
        server.replies.update(MAIL=b"250 2.1.0 Ok\r\n", RCPT=b"250 2.1.5 Ok\r\n", DATA=b"354 go ahead\r\n")
        assert send(transport, "bo@example.org").outcome == "sent"
        assert server.connections == 1


def test_a_reply_that_is_not_smtp_is_a_lost_connection_to_retry():
    with StrictPipeliningServer(replies={"MAIL": b"HTTP/1.1 400 Bad Request\r\n"}) as server:
        with closing(wire(server.url(), timeout=5)) as transport:
            reply = send(transport, "ana@example.org")
    assert (reply.code, reply.stage, reply.retryable) == (0, "MAIL", True)
    assert "not an SMTP reply" in reply.text


# -- Postfix's smtp-sink -----------------------------------------------------------------------------


def dumped_message(dump: bytes) -> bytes:
    """The message in one of smtp-sink's dump files, back in CRLF form: after its envelope attributes
    and its own Received header, without the empty line it adds at the end."""
    lines = dump.split(b"\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"Received:"))
    start += 1 + next(i for i, line in enumerate(lines[start + 1:]) if not line.startswith(b"\t"))
    return b"\r\n".join(lines[start:-2]) + b"\r\n"


@needs_smtp_sink
@pytest.mark.parametrize("options", [(), ("-p",)], ids=["pipelining", "no-pipelining"])
def test_smtp_sink_takes_every_message_intact(options):
    bodies = [f".line {n}\r\n..\r\n.\r\nend" for n in range(20)]
    with SmtpSink(*options, dump=True) as sink, closing(wire(sink.url())) as transport:
        replies = [send(transport, f"r{n}@example.org", body) for n, body in enumerate(bodies)]
        assert {(reply.code, reply.enhanced, reply.outcome) for reply in replies} == {(250, "2.0.0", "sent")}
        assert transport._wire.pipelining is not options
        transport.close()
        dumps = sink.dumps()
    assert sorted(dumped_message(dump) for dump in dumps) == sorted(
        message(f"r{n}@example.org", body) for n, body in enumerate(bodies))


@needs_smtp_sink
@pytest.mark.parametrize(("options", "code", "enhanced", "stage", "outcome", "kept"), [
    (("-f", "RCPT"), 500, "5.3.0", "RCPT", "failed", True),
    (("-r", "RCPT"), 450, "4.3.0", "RCPT", "deferred", True),
    (("-r", "."), 450, "4.3.0", "DATA", "deferred", True),
    (("-f", "MAIL"), 500, "5.3.0", "MAIL", "failed", True),
    (("-Q", "RCPT"), 421, "4.0.0", "RCPT", "deferred", False),
    (("-q", "DATA"), 0, "", "DATA", "deferred", False),
])
def test_smtp_sink_refusals_and_hang_ups_are_reported_and_the_connection_kept_or_dropped(options, code, enhanced,
                                                                                        stage, outcome, kept):
    """Refusals leave the connection usable after RSET; a 421 or a hang-up leaves none open."""
    with SmtpSink(*options) as sink, closing(wire(sink.url())) as transport:
        replies, connections = [], []
        for n in range(3):
            replies.append(send(transport, f"r{n}@example.org"))
            connections.append(transport._smtp)
        assert {(reply.code, reply.enhanced, reply.stage, reply.outcome) for reply in replies} == {
            (code, enhanced, stage, outcome)}
        if kept:
            assert connections[0] is not None and connections == [connections[0]] * 3
        else:
            assert connections == [None] * 3


# -- a real Postfix ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postfix():
    if POSTFIX is None:
        pytest.skip("postfix not installed (Debian package postfix)")
    try:
        server = PostfixServer(mailboxes=[f"r{n}" for n in range(20)])
    except RuntimeError as error:
        pytest.skip(str(error))
    with server:
        yield server


def test_postfix_delivers_every_message_intact_and_refuses_an_unknown_mailbox_on_the_same_connection(postfix):
    bodies = {f"r{n}@example.org": f".line {n}\r\n..\r\n.\r\n" + "x" * 5000 for n in range(20)}
    recipients = [*list(bodies)[:10], "nobody-here@example.org", *list(bodies)[10:]]
    with closing(wire(postfix.url())) as transport:
        replies = {to: send(transport, to, bodies.get(to, "?")) for to in recipients}
        assert transport._wire.pipelining
    unknown = replies.pop("nobody-here@example.org")
    assert (unknown.code, unknown.enhanced, unknown.stage, unknown.outcome) == (550, "5.1.1", "RCPT", "bounced")
    assert {reply.outcome for reply in replies.values()} == {"sent"}
    delivered = postfix.delivered(len(bodies))
    stored = {body.split(b"\nTo: ", 1)[1].split(b"\n", 1)[0].decode(): body for body in delivered}
    assert sorted(stored) == sorted(bodies)
    for to, body in bodies.items():  # Postfix adds headers of its own; the body is what must not change
        assert stored[to].split(b"\n\n", 1)[1] == body.replace("\r\n", "\n").encode() + b"\n"
    log = (postfix.folder / "maillog").read_text()
    assert "improper command pipelining" not in log
    # one connection; DATA 21 times, as it went with the refused RCPT in the same write; RSET after the refusal
    assert "ehlo=1 mail=21 rcpt=20/21 data=20/21 rset=1 quit=1 commands=64/66" in log


def test_a_session_out_of_step_is_not_reset_but_replaced():
    """503 at MAIL says the relay's idea of the session is not ours: only a new connection is clean."""
    with StrictPipeliningServer(replies={"MAIL": b"503 5.5.1 Error: nested MAIL command\r\n",
                                         "RCPT": b"503 5.5.1 Error: need MAIL\r\n",
                                         "DATA": b"503 5.5.1 Error: need RCPT\r\n"}) as server:
        with closing(wire(server.url(), timeout=5)) as transport:
            refused = send(transport, "ana@example.org")
            assert (refused.code, refused.stage, transport._smtp) == (503, "MAIL", None)
            server.replies.update(MAIL=b"250 2.1.0 Ok\r\n", RCPT=b"250 2.1.5 Ok\r\n", DATA=b"354 go ahead\r\n")
            assert send(transport, "bo@example.org").outcome == "sent"
            assert server.connections == 2
