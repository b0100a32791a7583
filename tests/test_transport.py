"""Transports against real SMTP servers on loopback: what each answer means, and how a connection survives."""

from __future__ import annotations

import mailbox
import smtplib
import socket
import subprocess
import sys
from contextlib import closing

import pytest
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

from newsletter.clock import FakeClock
from newsletter.mailsink import start_sink
from newsletter.transport import MaildirTransport, Reply, SMTPTransport, check_transport, open_transport, what_to_fix

SENDER = "news@lac.example.org"


def message(to: str, body: str = "Hello.") -> bytes:
    return f"From: {SENDER}\r\nTo: {to}\r\nSubject: Digest\r\n\r\n{body}\r\n".encode()


def send(transport, to: str, body: str = "Hello.") -> Reply:
    return transport.send(SENDER, to, message(to, body))


# -- what a reply means ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "stage", "outcome", "retryable"),
    [
        (250, "2.0.0 OK: queued", "DATA", "sent", False),
        (421, "4.3.2 Service shutting down", "RCPT", "deferred", True),
        (421, "4.7.0 Too many messages, rate limit exceeded", "RCPT", "policy", True),
        (451, "4.3.0 Temporary local problem", "RCPT", "deferred", True),
        (452, "4.2.2 Mailbox over quota", "RCPT", "deferred", True),
        (550, "5.1.1 User unknown", "RCPT", "bounced", False),
        (553, "5.1.3 Bad destination mailbox address syntax", "RCPT", "bounced", False),
        (550, "5.2.1 Mailbox disabled", "RCPT", "bounced", False),
        (552, "5.2.2 Mailbox full", "DATA", "failed", False),
        (554, "5.7.1 Message refused by policy", "DATA", "policy", False),
        (550, "5.7.1 Service unavailable; client host blocked", "RCPT", "policy", False),
        (553, "5.1.8 Bad sender's system address", "MAIL", "policy", False),
        (550, "5.1.1 Sender unknown", "MAIL", "policy", False),
        (550, "User unknown", "RCPT", "bounced", False),
        (551, "No such user here", "RCPT", "bounced", False),
        (553, "Requested action not taken: mailbox unavailable", "RCPT", "bounced", False),
        (550, "5.0.0 <ana@example.org>... User unknown", "RCPT", "bounced", False),
        (421, "Too many connections from your IP, rate limited", "connect", "connection", True),
        (535, "5.7.8 Authentication credentials invalid", "AUTH", "connection", True),
        (454, "4.7.0 TLS not available due to local problem", "TLS", "connection", True),
        (530, "5.7.0 Authentication required", "MAIL", "connection", True),
        (503, "5.5.1 Error: nested MAIL command", "MAIL", "connection", True),
        (503, "5.5.1 Bad sequence of commands", "RCPT", "connection", True),
        (0, "connection lost: Connection unexpectedly closed", "MAIL", "connection", True),
        (450, "Sender blocked", "RCPT", "policy", True),
        (451, "Try again later", "RCPT", "deferred", True),
        (554, "Message rejected as spam", "DATA", "policy", False),
        (554, "Transaction failed", "DATA", "failed", False),
        (552, "Message size exceeds fixed limit", "DATA", "failed", False),
        (0, "connection lost: Connection unexpectedly closed", "DATA", "deferred", True),
    ],
)
def test_reply_outcome_tells_the_engine_what_to_do(code, text, stage, outcome, retryable):
    reply = Reply.from_smtp(code, text.encode(), stage)
    assert (reply.outcome, reply.retryable) == (outcome, retryable)


def test_reply_splits_the_enhanced_code_from_every_line_of_the_text():
    reply = Reply.from_smtp(550, b"5.1.1 The account does not exist.\n5.1.1 See https://help.example/", "RCPT")
    assert reply == Reply(550, "5.1.1", "The account does not exist. See https://help.example/", "RCPT")


def test_reply_ignores_an_enhanced_code_of_the_wrong_class():
    reply = Reply.from_smtp(550, "4.1.1 User unknown")
    assert reply.enhanced == ""
    assert reply.outcome == "bounced"  # judged from the prose instead


# -- one persistent connection ------------------------------------------------------------------------


def test_many_messages_share_one_connection_and_arrive_byte_for_byte():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        replies = [send(transport, f"reader{n}@example.org", f"Issue {n}") for n in range(3)]
        assert [reply.outcome for reply in replies] == ["sent"] * 3
        assert server.connections == 1
        assert server.accepted_for("reader2@example.org") == [message("reader2@example.org", "Issue 2")]
        assert server.accepted[0].mail_from == SENDER


def test_nothing_is_sent_before_the_first_message():
    with FaultServer() as server:
        transport = open_transport(server.url())
        transport.close()
        assert server.connections == 0


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
def test_a_refusal_is_reported_for_that_recipient_and_the_connection_carries_on(fault, at, code, enhanced, outcome):
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.fail("ana", fault, at=at)  # by local part
        refused = send(transport, "ana@example.org")
        following = send(transport, "bo@example.org")
        assert (refused.code, refused.enhanced, refused.stage, refused.outcome) == (code, enhanced, at, outcome)
        assert following.outcome == "sent"
        assert server.connections == 1  # RSET, not a new connection, after a refused transaction
        assert server.accepted_for("ana@example.org") == []
        assert len(server.accepted_for("bo@example.org")) == 1


@pytest.mark.parametrize("at", ["RCPT", "DATA"])
def test_a_421_closes_the_connection_and_the_next_message_opens_a_new_one(at):
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.fail("ana@example.org", SERVICE_CLOSING, at=at)
        closing_reply = send(transport, "ana@example.org")
        following = send(transport, "bo@example.org")
        assert (closing_reply.code, closing_reply.outcome, closing_reply.retryable) == (421, "deferred", True)
        assert following.outcome == "sent"
        assert server.connections == 2


def test_a_connection_dropped_in_the_middle_of_data_is_a_retryable_loss_and_the_next_message_reconnects():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.drop_during_data("ana@example.org")
        lost = send(transport, "ana@example.org", "x" * 10_000)
        following = send(transport, "bo@example.org")
        assert (lost.code, lost.stage, lost.outcome, lost.retryable) == (0, "DATA", "deferred", True)
        assert lost.text.startswith("connection lost")
        assert following.outcome == "sent"
        assert server.connections == 2
        assert server.accepted_for("ana@example.org") == []


def test_a_connection_the_relay_closed_while_idle_is_replaced_without_losing_the_message():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        assert send(transport, "ana@example.org").outcome == "sent"
        server.hang_up()
        assert send(transport, "bo@example.org").outcome == "sent"
        assert server.connections == 2


def test_a_recipient_that_fails_twice_is_accepted_on_the_third_attempt():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.fail("ana@example.org", TRY_AGAIN, at="DATA", times=2)
        codes = [send(transport, "ana@example.org").code for _ in range(3)]
        assert codes == [451, 451, 250]
        assert len(server.accepted_for("ana@example.org")) == 1


def test_a_slow_answer_within_the_timeout_is_waited_for():
    with FaultServer() as server, closing(open_transport(server.url(), timeout=10)) as transport:
        server.delay("ana@example.org", 0.05)
        assert send(transport, "ana@example.org").outcome == "sent"


def test_an_answer_slower_than_the_timeout_is_a_retryable_loss():
    with FaultServer() as server, closing(open_transport(server.url(), timeout=0.5)) as transport:
        server.fail("ana@example.org", TRY_AGAIN, at="DATA", delay=5.0, times=1)
        slow = send(transport, "ana@example.org")
        assert (slow.code, slow.stage, slow.retryable) == (0, "DATA", True)
        assert send(transport, "bo@example.org").outcome == "sent"


def test_a_rate_limit_is_policy_to_retry_and_sending_resumes_once_it_is_over():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.rate_limit(times=2)
        replies = [send(transport, "ana@example.org") for _ in range(3)]
        assert [(reply.code, reply.enhanced, reply.outcome) for reply in replies[:2]] == [(421, "4.7.0", "policy")] * 2
        assert all(reply.retryable for reply in replies[:2])
        assert replies[2].outcome == "sent"
        assert server.connections == 3  # each 421 hung up


def test_a_rate_limit_for_a_period_ends_when_the_clock_passes_it():
    clock = FakeClock()
    with FaultServer(clock=clock) as server, closing(open_transport(server.url())) as transport:
        server.rate_limit(seconds=600)
        assert send(transport, "ana@example.org").outcome == "policy"
        clock.advance(599)
        assert send(transport, "ana@example.org").outcome == "policy"
        clock.advance(2)
        assert send(transport, "ana@example.org").outcome == "sent"


def test_a_relay_that_is_not_listening_is_a_retryable_connection_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with closing(open_transport(f"smtp://127.0.0.1:{port}", timeout=5)) as transport:
        reply = send(transport, "ana@example.org")
    assert (reply.code, reply.stage, reply.outcome, reply.retryable) == (0, "connect", "connection", True)
    assert f"127.0.0.1:{port}" in reply.text


def test_a_message_over_one_megabyte_with_long_crlf_lines_and_leading_dots_arrives_intact():
    long_line = "<td style=\"padding:0;font-family:Arial\">" + "x" * 20_000 + "</td>"
    body = "\r\n".join([long_line] * 60 + [".a line that starts with a dot", "."])
    data = message("ana@example.org", body)
    assert len(data) > 1_000_000
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        assert send(transport, "ana@example.org", body).outcome == "sent"
        assert server.accepted_for("ana@example.org") == [data]


def test_non_ascii_addresses_and_8bit_bodies_use_smtputf8_and_8bitmime():
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        greeting = "Señoras y señores, ¡bienvenidos!"
        assert send(transport, "josé@ejemplo.org", greeting).outcome == "sent"
        assert server.accepted_for("josé@ejemplo.org") == [message("josé@ejemplo.org", greeting)]


# -- TLS ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    pytest.importorskip("cryptography", reason="the `cryptography` package makes the test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def test_starttls_is_used_when_the_relay_offers_it(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate)) as server:
        with closing(open_transport(server.url(), ssl_context=client_tls_context(certificate[0]))) as transport:
            assert send(transport, "ana@example.org").outcome == "sent"
        assert server.accepted[0].over_tls


def test_starttls_never_sends_in_clear_even_when_offered(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate)) as server:
        with closing(open_transport(server.url(), starttls="never")) as transport:
            assert send(transport, "ana@example.org").outcome == "sent"
        assert not server.accepted[0].over_tls


def test_starttls_always_refuses_a_relay_without_it():
    with FaultServer() as server, closing(open_transport(server.url(), starttls="always")) as transport:
        reply = send(transport, "ana@example.org")
        assert (reply.code, reply.stage, reply.outcome) == (0, "TLS", "connection")
        assert "STARTTLS" in reply.text
        assert server.accepted == []


def test_an_untrusted_certificate_stops_the_connection(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate)) as server:
        with closing(open_transport(server.url())) as transport:  # system trust store only
            reply = send(transport, "ana@example.org")
        assert (reply.code, reply.stage, reply.outcome) == (0, "TLS", "connection")
        assert "CERTIFICATE_VERIFY_FAILED" in reply.text
        assert server.accepted == []


def test_smtps_speaks_tls_from_the_first_byte(certificate):
    with FaultServer(implicit_tls_context=server_tls_context(*certificate)) as server:
        with closing(open_transport(server.url("smtps"), ssl_context=client_tls_context(certificate[0]))) as transport:
            assert send(transport, "ana@example.org").outcome == "sent"
        assert server.accepted[0].over_tls


def test_url_encoded_credentials_log_in_and_a_wrong_password_is_the_connections_fault_not_a_bounce(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate), credentials=("news@lac", "p@ss:w/rd")) as server:
        trust = client_tls_context(certificate[0])
        good_url = f"smtp://news%40lac:p%40ss%3Aw%2Frd@127.0.0.1:{server.port}"
        with closing(open_transport(good_url, ssl_context=trust)) as transport:
            assert send(transport, "ana@example.org").outcome == "sent"
        wrong_url = f"smtp://news%40lac:wrong@127.0.0.1:{server.port}"
        with closing(open_transport(wrong_url, ssl_context=trust)) as transport:
            refused = send(transport, "ana@example.org")
        assert (refused.code, refused.stage, refused.outcome) == (535, "AUTH", "connection")


# -- Maildir ------------------------------------------------------------------------------------------


def test_maildir_transport_creates_the_maildir_and_stores_one_file_per_message_with_the_envelope(tmp_path):
    box = tmp_path / "demo" / "Maildir"
    transport = open_transport(f"maildir://{box}")
    replies = [send(transport, "ana@example.org", "First"), send(transport, "bo@example.org", "Second")]
    assert [(reply.code, reply.enhanced, reply.outcome) for reply in replies] == [(250, "2.0.0", "sent")] * 2
    stored = {message["Delivered-To"]: message for message in mailbox.Maildir(box, create=False)}
    assert sorted(stored) == ["ana@example.org", "bo@example.org"]
    assert stored["ana@example.org"]["Return-Path"] == f"<{SENDER}>"
    assert stored["ana@example.org"].get_payload() == "First\n"
    assert all(b"\r\n" not in path.read_bytes() for path in (box / "new").iterdir())


def test_maildir_transport_reports_a_store_it_cannot_write_to_as_retryable(tmp_path):
    transport = MaildirTransport(tmp_path / "box")
    (tmp_path / "box" / "tmp").rmdir()
    reply = send(transport, "ana@example.org")
    assert (reply.code, reply.retryable) == (0, True)
    assert str(tmp_path / "box") in reply.text


# -- URLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit_tls"),
    [
        ("smtp://relay.example.org", "relay.example.org", 25, False),
        ("smtp://relay.example.org:2525", "relay.example.org", 2525, False),
        ("smtps://relay.example.org", "relay.example.org", 465, True),
        ("SMTP://user:pw@[::1]:587/", "::1", 587, False),
    ],
)
def test_relay_urls_give_host_port_and_tls_mode(url, host, port, implicit_tls):
    transport = open_transport(url, local_hostname="client.example.org")
    assert isinstance(transport, SMTPTransport)
    assert (transport.host, transport.port, transport.implicit_tls) == (host, port, implicit_tls)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://user:s3cret@relay.example.org", "unknown scheme 'http'"),
        ("relay.example.org:25", "unknown scheme 'relay.example.org'"),
        ("", "no scheme"),
        ("smtp://", "no host name"),
        ("smtp://user:s3cret@relay.example.org:99999", "the port is not a number"),
        ("smtp://user:s3cret@relay.example.org:twenty", "the port is not a number"),
        ("smtp://relay.example.org/inbox", "no path"),
        ("maildir://var/mail/demo", "write three slashes"),
        ("maildir:var/mail/demo", "must be absolute"),
    ],
)
def test_a_bad_url_names_the_problem_and_the_accepted_forms_but_never_the_password(url, reason):
    with pytest.raises(ValueError) as raised:
        open_transport(url)
    text = str(raised.value)
    assert reason in text
    assert "smtp://[user:pass@]host[:port]" in text and "maildir:///absolute/path" in text
    assert "s3cret" not in text


def test_a_password_containing_at_signs_is_not_echoed_either():
    with pytest.raises(ValueError) as raised:
        open_transport("ftp://user:se@cr@et@relay.example.org")
    assert "se@cr" not in str(raised.value) and "cr@et" not in str(raised.value)


def test_an_unknown_starttls_mode_is_refused():
    with pytest.raises(ValueError, match="starttls='sometimes'"):
        open_transport("smtp://relay.example.org", starttls="sometimes")


# -- the mail sink ------------------------------------------------------------------------------------


def test_sink_without_a_maildir_only_counts():
    with start_sink(None) as sink, closing(open_transport(sink.url)) as transport:
        for n in range(3):
            assert send(transport, f"reader{n}@example.org").outcome == "sent"
        assert sink.count == 3


def test_sink_stores_one_file_per_recipient_and_accepts_very_long_lines(tmp_path):
    long_line = "x" * 50_000
    with start_sink(tmp_path / "box") as sink:
        with smtplib.SMTP(sink.host, sink.port, local_hostname="client.example.org") as client:
            client.sendmail(SENDER, ["ana@example.org", "bo@example.org"], message("list@example.org", long_line))
        assert sink.count == 1
    stored = list(mailbox.Maildir(tmp_path / "box", create=False))
    assert sorted(message["Delivered-To"] for message in stored) == ["ana@example.org", "bo@example.org"]
    assert all(message.get_payload() == long_line + "\n" for message in stored)


def test_sink_runs_as_its_own_process_until_terminated(tmp_path):
    box = tmp_path / "box"
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter.mailsink", "--port", "0", "--maildir", str(box)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(process.stdout.readline())
        with closing(open_transport(f"smtp://127.0.0.1:{port}")) as transport:
            assert send(transport, "ana@example.org", "From another process").outcome == "sent"
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    assert "accepted 1 messages" in errors
    [stored] = list(mailbox.Maildir(box, create=False))
    assert stored["Delivered-To"] == "ana@example.org"
    assert stored.get_payload() == "From another process\n"


# -- whose fault: the connection's, never the next recipient's ----------------------------------------


def test_after_a_5xx_at_end_of_data_on_an_open_transaction_the_next_recipient_is_sent_on_the_same_connection():
    """aiosmtpd keeps the transaction open when its handler fails; without RSET the next MAIL gets 503."""
    with FaultServer() as server, closing(open_transport(server.url())) as transport:
        server.crash_at_data("ana@example.org")
        refused = send(transport, "ana@example.org")
        following = send(transport, "bo@example.org")
        assert (refused.code, refused.stage, refused.outcome) == (500, "DATA", "failed")
        assert refused.text.startswith("Error")
        assert (following.code, following.outcome) == (250, "sent")
        assert server.connections == 1  # RSET cleaned the transaction up; no reconnect was needed
        assert len(server.accepted_for("bo@example.org")) == 1


def test_a_relay_that_refuses_starttls_is_a_tls_fault_of_the_connection(certificate):
    with FaultServer(tls_context=server_tls_context(*certificate)) as server:
        server.refuse_starttls()
        with closing(open_transport(server.url(), ssl_context=client_tls_context(certificate[0]))) as transport:
            reply = send(transport, "ana@example.org")
        assert (reply.code, reply.enhanced, reply.stage, reply.outcome) == (454, "4.7.0", "TLS", "connection")
        assert server.accepted == []


def test_a_relay_that_needs_a_login_we_do_not_give_refuses_mail_with_530_the_connections_fault():
    with FaultServer(credentials=("news", "secret"), auth_over_plain=True) as server:
        with closing(open_transport(server.url())) as transport:
            reply = send(transport, "ana@example.org")
        assert (reply.code, reply.stage, reply.outcome) == (530, "MAIL", "connection")
        assert server.accepted == []


def test_check_walks_every_step_and_sends_nothing():
    with FaultServer(credentials=("news", "secret"), auth_over_plain=True) as server:
        check = check_transport(f"smtp://news:secret@127.0.0.1:{server.port}", SENDER, starttls="never")
        assert check.ok and [step.name for step in check.steps] == ["connect", "EHLO", "AUTH", "MAIL FROM", "RSET"]
        assert all(step.ok for step in check.steps)
        refused = check_transport(f"smtp://news:wrong@127.0.0.1:{server.port}", SENDER, starttls="never")
        assert [(step.name, step.ok) for step in refused.steps] == [("connect", True), ("EHLO", True),
                                                                    ("AUTH", False)]
        assert (refused.failure.code, refused.failure.outcome) == (535, "connection")
        assert "wrong" not in refused.url and "***" in refused.url
        assert server.accepted == []


def test_check_of_an_unknown_scheme_fails_at_the_url_step_without_raising():
    check = check_transport("smtpp://relay.example.org", SENDER)
    assert [(step.name, step.ok) for step in check.steps] == [("URL", False)]
    assert "unknown scheme 'smtpp'" in check.failure.text


def test_check_of_a_maildir_writes_nothing_that_stays(tmp_path):
    check = check_transport(f"maildir://{tmp_path / 'box'}", SENDER)
    assert check.ok and [step.name for step in check.steps] == ["write"]
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


@pytest.mark.parametrize(("reply", "advice"), [
    (Reply(535, "5.7.8", "Authentication credentials invalid", "AUTH"), "check the user and password"),
    (Reply(530, "5.7.0", "Authentication required", "MAIL"), "put user:password in smtp_url"),
    (Reply(454, "4.7.0", "TLS not available", "TLS"), "check [sending] starttls"),
    (Reply(0, "", "cannot connect to 127.0.0.1:9: Connection refused", "connect"), "is it running"),
    (Reply(554, "5.7.1", "Message refused by policy", "DATA"), "refuses every message alike"),
])
def test_what_to_fix_says_where_to_look_and_hides_the_password(reply, advice):
    line = what_to_fix(reply, "smtp://news:hunter2@relay.example.org:587")
    assert advice in line and "hunter2" not in line and str(reply) in line
