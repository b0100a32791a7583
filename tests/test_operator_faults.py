"""Operator mistakes and relay incidents, tried as a bureau's operator would: the real `newsletter send` (and
scheduler) against real SMTP servers on loopback that refuse the password, need a login, refuse STARTTLS,
keep a transaction open after a 5xx, refuse everyone alike, or go down mid-send. Each test checks the exit
code, the one error line, and the exact final state of every delivery row; and that after the fix a second
`send` sends everyone exactly once."""

from __future__ import annotations

import shutil
import signal
import time
from collections import Counter

import pytest
from sending_support import (
    SLUG,
    TEMPLATES_DIR,
    add_subscribers,
    delivery_rows,
    error_lines,
    row_state,
    run_cli,
    start_cli,
    status_counts,
    write_config,
)
from smtp_servers import (
    REFUSED_BY_POLICY,
    TRY_AGAIN,
    FaultServer,
    self_signed_certificate,
    server_tls_context,
)

from newsletter import campaign_state
from newsletter.db import connect

SUBSCRIBERS = 24
UNTOUCHED = ("queued", 0, None, None, None)
SENT_ONCE = ("sent", 1, 250, "2.0.0", "OK: queued")


def table_rows(output: str) -> list[list[str]]:
    """The cells of every body row of the rich tables in `output`."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in output.splitlines() if line.strip().startswith("│")]


def messages_per_address(server: FaultServer) -> Counter:
    return Counter(rcpt for message in server.accepted for rcpt in message.rcpt_tos)


def assert_paused_by_fault(db, *words: str) -> dict:
    row = campaign_state.get(db, SLUG)
    assert (row["state"], row["paused_by"]) == ("paused", "fault")
    for word in words:
        assert word in row["pause_reason"]
    return row


def assert_everyone_sent_exactly_once(db, server: FaultServer, addresses: list[str]) -> None:
    rows = delivery_rows(db)
    assert {address: row_state(row) for address, row in rows.items()} == {a: SENT_ONCE for a in addresses}
    assert messages_per_address(server) == Counter({address: 1 for address in addresses})
    row = campaign_state.get(db, SLUG)
    assert (row["state"], row["paused_by"], row["pause_reason"]) == ("sent", None, None)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    pytest.importorskip("cryptography", reason="the `cryptography` package makes the test certificate")
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


# -- the relay refuses the login, or needs one -----------------------------------------------------------


@pytest.mark.parametrize("given, code, advice", [
    ("news:typo@", "535", "refused the login"),
    ("", "530", "needs a login"),
], ids=["wrong-password", "no-credentials"])
def test_a_login_the_relay_refuses_pauses_the_campaign_charges_no_one_and_the_fixed_send_sends_everyone(
        tmp_path, given, code, advice):
    with FaultServer(credentials=("news", "s3cret"), auth_over_plain=True) as server:
        config = write_config(tmp_path, f"smtp://{given}127.0.0.1:{server.port}")
        db = connect(config.database)
        addresses = add_subscribers(db, SUBSCRIBERS)

        refused = run_cli(config, "send", SLUG)

        assert refused.returncode == 1
        [line] = error_lines(refused.stderr)
        assert advice in line and code in line and "typo" not in line
        assert "Traceback" not in refused.stderr
        assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
            address: UNTOUCHED for address in addresses}
        assert_paused_by_fault(db, code, advice)
        assert server.accepted == []
        listed = run_cli(config, "campaign", "list")
        assert advice in listed.stdout and "paused" in listed.stdout

        write_config(tmp_path, f"smtp://news:s3cret@127.0.0.1:{server.port}")
        fixed = run_cli(config, "send", SLUG)

        assert fixed.returncode == 0, fixed.stderr
        assert_everyone_sent_exactly_once(db, server, addresses)
        assert run_cli(config, "send", SLUG).returncode == 0 and len(server.accepted) == SUBSCRIBERS


# -- TLS ---------------------------------------------------------------------------------------------


def test_a_relay_that_refuses_starttls_pauses_the_campaign_until_it_is_fixed(tmp_path, certificate):
    cert_path, key_path = certificate
    with FaultServer(tls_context=server_tls_context(cert_path, key_path)) as server:
        server.refuse_starttls()
        config = write_config(tmp_path, server.url(), starttls="always")
        db = connect(config.database)
        addresses = add_subscribers(db, SUBSCRIBERS)
        trust = {"SSL_CERT_FILE": str(cert_path)}  # the relay's own certificate, as an operator would install it

        refused = run_cli(config, "send", SLUG, env=trust)

        assert refused.returncode == 1
        [line] = error_lines(refused.stderr)
        assert "TLS" in line and "454 4.7.0" in line and "starttls" in line
        assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
            address: UNTOUCHED for address in addresses}
        assert_paused_by_fault(db, "454 4.7.0")

        server.clear_faults()
        fixed = run_cli(config, "send", SLUG, env=trust)

        assert fixed.returncode == 0, fixed.stderr
        assert_everyone_sent_exactly_once(db, server, addresses)
        assert all(message.over_tls for message in server.accepted)


# -- a 5xx at end of DATA with the transaction left open ---------------------------------------------------


def test_a_relay_that_keeps_the_transaction_open_after_a_5xx_costs_nobody_else_their_message(tmp_path):
    with FaultServer() as server:
        config = write_config(tmp_path, server.url(), connections=2)
        db = connect(config.database)
        addresses = add_subscribers(db, SUBSCRIBERS)
        crashed = addresses[3::6]  # four subscribers, each followed by an innocent one on the same connection
        for address in crashed:
            server.crash_at_data(address)

        result = run_cli(config, "send", SLUG)

        assert result.returncode == 3  # finished, with failed deliveries
        failed = ("failed", 1, 500, "", "Error: (RuntimeError) handler failed")
        assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
            address: failed if address in crashed else SENT_ONCE for address in addresses}
        assert messages_per_address(server) == Counter({a: 1 for a in addresses if a not in crashed})
        assert campaign_state.get(db, SLUG)["state"] == "sent"
        assert ["failed", "500 Error: (RuntimeError) handler failed", str(len(crashed))] in table_rows(result.stdout)


# -- every message refused alike ---------------------------------------------------------------------------


def test_ten_identical_refusals_in_a_row_are_the_relays_fault_the_campaign_pauses_and_no_one_is_charged(
        tmp_path):
    with FaultServer() as server:
        config = write_config(tmp_path, server.url(), connections=3)
        db = connect(config.database)
        addresses = add_subscribers(db, 40)
        server.fail("*", REFUSED_BY_POLICY, at="DATA")

        refused = run_cli(config, "send", SLUG)

        assert refused.returncode == 1
        [line] = error_lines(refused.stderr)
        assert "refuses every message alike" in line and "554 5.7.1" in line
        rows = delivery_rows(db)
        tried = {address for address, row in rows.items() if row["last_code"] == 554}
        assert len(tried) >= 10
        assert {address: row_state(row) for address, row in rows.items()} == {
            address: ("queued", 0, 554, "5.7.1", "Message refused by policy") if address in tried else UNTOUCHED
            for address in addresses}
        assert_paused_by_fault(db, "554 5.7.1")
        assert server.accepted == []

        server.clear_faults()
        fixed = run_cli(config, "send", SLUG)

        assert fixed.returncode == 0, fixed.stderr
        assert_everyone_sent_exactly_once(db, server, addresses)


# -- a typo in the scheme ------------------------------------------------------------------------------


def test_an_unknown_scheme_stops_send_and_the_scheduler_at_once_with_one_line(tmp_path):
    config = write_config(tmp_path, "smtpp://relay.example.org:25")
    db = connect(config.database)
    addresses = add_subscribers(db, 6)

    sent = run_cli(config, "send", SLUG)

    assert sent.returncode == 1
    [line] = error_lines(sent.stderr)
    assert "unknown scheme 'smtpp'" in line and "accepted forms" in line
    assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
        address: UNTOUCHED for address in addresses}
    assert_paused_by_fault(db, "unknown scheme 'smtpp'")

    campaign_state.pause_for_fault(db, SLUG, "still broken")  # the next try would be a minute away otherwise
    db.execute("UPDATE campaigns SET fault_retry_at = '2000-01-01T00:00:00Z'")
    scheduled = run_cli(config, "scheduler", "--once")

    assert scheduled.returncode == 1
    assert "unknown scheme 'smtpp'" in scheduled.stdout
    assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
        address: UNTOUCHED for address in addresses}


# -- the relay goes down in the middle of a send, and comes back ----------------------------------------


def test_a_relay_that_goes_down_mid_send_pauses_the_campaign_and_after_it_is_back_everyone_gets_one_copy(
        tmp_path):
    with FaultServer() as server:
        config = write_config(tmp_path, server.url(), connections=2, retry_base_seconds=0.05)
        db = connect(config.database)
        addresses = add_subscribers(db, 60)
        server.delay("*", 0.02)  # slow enough for the relay to go down while the send is under way
        sending = start_cli(config, "send", SLUG)
        while len(server.accepted) < 10 and sending.poll() is None:
            time.sleep(0.01)
        server.go_down()
        stdout, stderr = sending.communicate(timeout=120)

        assert sending.returncode == 1, stderr
        [line] = error_lines(stderr)
        assert "cannot reach the relay" in line and "Connection refused" in line
        rows = delivery_rows(db)
        arrived = set(messages_per_address(server))
        cut_off = {address for address, row in rows.items() if row["status"] == "deferred"}
        assert len(cut_off) <= 2  # at most the one message on each connection's wire
        for address, row in rows.items():
            if address in arrived:
                assert row_state(row) == SENT_ONCE
            elif address in cut_off:
                assert row_state(row)[:3] == ("deferred", 1, 0) and row["last_text"].startswith("connection lost")
            else:
                assert row_state(row) == UNTOUCHED
        assert_paused_by_fault(db, "Connection refused")

        server.come_back()
        server.clear_faults()
        back = run_cli(config, "send", SLUG, "--wait")

        assert back.returncode == 0, back.stderr
        rows = delivery_rows(db)
        assert messages_per_address(server) == Counter({address: 1 for address in addresses})
        for address, row in rows.items():
            assert row_state(row) == (("sent", 2, 250, "2.0.0", "OK: queued") if address in cut_off else SENT_ONCE)
        assert campaign_state.get(db, SLUG)["state"] == "sent"


# -- exit codes for scripts ----------------------------------------------------------------------------


def test_a_send_that_leaves_retries_for_later_exits_3_and_says_when(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    addresses = add_subscribers(db, 5)
    smtp.fail(addresses[1], TRY_AGAIN, at="DATA")

    result = run_cli(config, "send", SLUG)

    assert result.returncode == 3
    assert "next retry at" in result.stdout
    assert ["deferred", "451 4.3.0 Temporary local problem, try again later", "1"] in table_rows(result.stdout)
    assert status_counts(db) == {"sent": 4, "deferred": 1}


def test_a_send_while_another_process_holds_the_campaign_does_nothing_and_exits_4(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    addresses = add_subscribers(db, 5)
    assert run_cli(config, "campaign", "build", SLUG).returncode == 0
    from newsletter.sender import prepare_campaign

    prepare_campaign(config, db, SLUG)
    assert campaign_state.acquire_lease(db, SLUG, campaign_state.new_owner())  # this live process holds it

    result = run_cli(config, "send", SLUG)

    assert result.returncode == 4
    assert "another process is sending this campaign" in result.stdout
    assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
        address: UNTOUCHED for address in addresses}
    assert smtp.accepted == []


def test_ctrl_c_during_a_send_exits_130_and_a_second_send_finishes_with_no_second_copies(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url(), connections=2)
    db = connect(config.database)
    addresses = add_subscribers(db, 60)
    smtp.delay("*", 0.02)
    sending = start_cli(config, "send", SLUG)
    while len(smtp.accepted) < 5 and sending.poll() is None:
        time.sleep(0.01)
    sending.send_signal(signal.SIGINT)
    sending.communicate(timeout=120)

    assert sending.returncode == 130
    counts = status_counts(db)
    assert set(counts) <= {"sent", "queued"} and counts["sent"] == len(smtp.accepted) < 60

    smtp.clear_faults()
    assert run_cli(config, "send", SLUG).returncode == 0
    assert messages_per_address(smtp) == Counter({address: 1 for address in addresses})


# -- a sender that dies ---------------------------------------------------------------------------------


def test_a_sending_thread_that_dies_stops_the_run_with_one_line_and_leaves_every_row_resumable(tmp_path, smtp):
    """A template mistake that only the variant with the Caribbean country block reaches (so the check of
    each language's full issue before queuing cannot see it) kills the thread that renders it."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    good = (templates / "email" / "base.txt").read_text(encoding="utf-8")
    (templates / "email" / "base.txt").write_text(good + '{{ (1 / 0) if country_blocks else "" }}\n',
                                                  encoding="utf-8")
    config = write_config(tmp_path, smtp.url(), templates_dir=templates, connections=2)
    db = connect(config.database)
    addresses = add_subscribers(db, SUBSCRIBERS)
    caribbean = {row["email"] for row in db.query("SELECT email FROM subscribers WHERE country IN ('TT', 'BB')")}
    assert caribbean

    result = run_cli(config, "send", SLUG)

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert "sender smtp-" in line and "ZeroDivisionError" in line and "queued again" in line
    assert "Traceback" not in result.stderr
    arrived = set(messages_per_address(smtp))
    assert arrived.isdisjoint(caribbean)
    assert {address: row_state(row) for address, row in delivery_rows(db).items()} == {
        address: SENT_ONCE if address in arrived else UNTOUCHED for address in addresses}

    (templates / "email" / "base.txt").write_text(good, encoding="utf-8")
    fixed = run_cli(config, "send", SLUG)

    assert fixed.returncode == 0, fixed.stderr
    assert_everyone_sent_exactly_once(db, smtp, addresses)
