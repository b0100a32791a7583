"""Reading returned mail: each corpus message maps to the right kind, delivery, recipient, status."""

from pathlib import Path

import pytest

from newsletter.bounceparse import BounceReport, analyse
from newsletter.verp import verp_address

CORPUS = Path(__file__).parent / "corpus" / "bounces"
BOUNCE = "bounces@lac.example.org"
SECRET = "test-secret"
RCPT = "reader.one@example.net"
KINDS = {"hard", "soft", "complaint", "autoreply", "notice", "unknown"}

# file, delivery id signed into {VERP}, expected kind, delivery id found, recipients, status
EXPECTED = [
    ("postfix_user_unknown.eml", 1001, "hard", 1001, [RCPT], "5.1.1"),
    ("postfix_mailbox_full_delayed.eml", 1002, "soft", 1002, [RCPT], "4.2.2"),
    ("postfix_mailbox_full_failed.eml", 1003, "soft", 1003, [RCPT], "4.2.2"),
    ("gmail_user_unknown.eml", 1004, "hard", 1004, [RCPT], "5.1.1"),
    ("exim_retry_timeout.eml", 1005, "hard", 1005, [RCPT], "5.4.7"),
    ("exim_unknown_user.eml", 1006, "hard", 1006, [RCPT], "5.1.1"),
    ("qmail_user_unknown.eml", 1007, "hard", 1007, [RCPT], "5.1.1"),
    ("exchange_ndr.eml", 1008, "hard", 1008, [RCPT], "5.1.1"),
    ("out_of_office_en.eml", 1009, "autoreply", 1009, [RCPT], ""),
    ("out_of_office_es.eml", 1010, "autoreply", 1010, [RCPT], ""),
    ("arf_yahoo_complaint.eml", 1011, "complaint", 1011, [RCPT], ""),
    ("arf_hotmail_complaint.eml", 1012, "complaint", 1012, [RCPT], ""),
    ("tampered_verp.eml", 1013, "hard", None, [RCPT], "5.1.1"),
    ("human_reply.eml", 1014, "unknown", None, [], ""),
]


def corpus_message(name: str, delivery_id: int) -> bytes:
    """The corpus file with real VERP tags; {VERP_TAMPERED} keeps the tag but changes the id."""
    verp = verp_address(BOUNCE, delivery_id, SECRET)
    honest_id = verp_address(BOUNCE, delivery_id, SECRET).split("+")[1].split("-")[0]
    tampered = verp.replace(f"+{honest_id}-", f"+{honest_id}z-")
    raw = (CORPUS / name).read_bytes()
    for placeholder, value in (("{VERP_TAMPERED}", tampered), ("{VERP}", verp), ("{RCPT}", RCPT)):
        raw = raw.replace(placeholder.encode(), value.encode())
    return raw


def read(raw: bytes) -> BounceReport:
    return analyse(raw, bounce_address=BOUNCE, secret=SECRET)


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(row[0] for row in EXPECTED)


@pytest.mark.parametrize("line_ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize(
    "name, signed_id, kind, delivery_id, recipients, status", EXPECTED, ids=[r[0] for r in EXPECTED]
)
def test_corpus_message_maps_to_expected_kind_delivery_recipient_and_status(
    name, signed_id, kind, delivery_id, recipients, status, line_ending
):
    raw = corpus_message(name, signed_id).replace(b"\r\n", b"\n").replace(b"\n", line_ending)
    report = read(raw)
    assert (report.kind, report.delivery_id, report.recipients, report.status) == (
        kind,
        delivery_id,
        recipients,
        status,
    )


def test_dsn_diagnostic_is_the_remote_servers_words_without_the_smtp_prefix():
    report = read(corpus_message("postfix_user_unknown.eml", 1))
    assert report.diagnostic == (
        f"550 5.1.1 <{RCPT}>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.source == "dsn"


def test_prose_bounce_diagnostic_is_the_paragraph_holding_the_reason():
    report = read(corpus_message("exim_retry_timeout.eml", 1))
    assert report.diagnostic == f"{RCPT} retry timeout exceeded"
    assert report.source == "flufl.bounce"


def test_complaint_diagnostic_names_the_feedback_type():
    report = read(corpus_message("arf_yahoo_complaint.eml", 1))
    assert report.diagnostic.startswith("Feedback-Type: abuse")


def test_dmarc_failure_report_in_arf_format_is_not_a_complaint():
    raw = corpus_message("arf_yahoo_complaint.eml", 1).replace(
        b"Feedback-Type: abuse", b"Feedback-Type: auth-failure"
    )
    assert read(raw).kind == "unknown"


def test_delivery_status_report_of_a_successful_delivery_is_a_notice_not_a_bounce():
    raw = corpus_message("postfix_user_unknown.eml", 1).replace(b"Action: failed", b"Action: delivered")
    report = read(raw)
    assert (report.kind, report.failures) == ("notice", [])


def test_dsn_with_two_failed_recipients_is_hard_when_either_failed_permanently():
    raw = corpus_message("postfix_mailbox_full_failed.eml", 1).replace(
        b"Diagnostic-Code: smtp; 452 4.2.2",
        b"Diagnostic-Code: smtp; 452 4.2.2 full\r\n\r\n"
        b"Final-Recipient: rfc822; second@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 no such user",
    )
    report = read(raw)
    assert (report.kind, report.status, report.recipients) == (
        "hard",
        "5.1.1",
        [RCPT, "second@example.org"],
    )


def test_mailer_daemon_notice_with_only_prose_gets_status_from_its_words():
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\n"
        b"To: " + verp_address(BOUNCE, 77, SECRET).encode() + b"\n"
        b"Subject: Returned mail: see transcript for details\n\n"
        b"Your message could not be delivered to reader@example.org:\n"
        b"the mailbox is full, we will retry later.\n"
    )
    report = read(raw)
    assert (report.kind, report.delivery_id, report.status) == ("soft", 77, "4.2.2")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n",
        b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n!!!!",
        b"From: =?bogus-charset?q?=FF?= <mailer-daemon@x>\nSubject: \xff\xfe\n\n5.1.1",
        b"Content-Type: multipart/mixed\n\nno boundary at all",
    ],
    ids=["empty", "binary", "truncated-report", "broken-dsn", "bad-charset", "no-boundary"],
)
def test_garbage_input_yields_a_report_instead_of_an_exception(raw):
    assert read(raw).kind in KINDS


def test_every_truncation_of_every_corpus_file_yields_a_report():
    for name, signed_id, *_ in EXPECTED:
        raw = corpus_message(name, signed_id)
        for cut in range(0, len(raw), max(1, len(raw) // 25)):
            assert read(raw[:cut]).kind in KINDS, f"{name} cut at {cut}"


def test_a_broken_bounce_address_setting_raises_instead_of_silently_matching_nothing():
    with pytest.raises(ValueError, match="local@domain"):
        analyse(b"", bounce_address="bounces", secret=SECRET)


def test_deeply_nested_mime_yields_an_unknown_report_naming_the_problem():
    nesting = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (level, level)
        for level in range(1200)
    )
    report = read(b"From: mailer-daemon@mx.example.org\nSubject: Undeliverable\n" + nesting)
    assert (report.kind, report.source) == ("unknown", "error")
    assert "nested deeper than 12 levels" in report.diagnostic
