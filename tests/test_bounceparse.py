"""Reading returned mail: each corpus message maps to the right kind, delivery, recipient, status."""

from pathlib import Path

import pytest

from newsletter.bounceparse import BounceReport, analyse
from newsletter.verp import verp_address

CORPUS = Path(__file__).parent / "corpus" / "bounces"
BOUNCE = "bounces@lac.example.org"
SECRET = "test-secret"
RCPT = "reader.one@example.net"
RCPT2, RCPT3, STAFF = "reader.two@example.net", "reader.three@example.org", "editor@lac.example.org"
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
    # the shapes of issue 13, sent to the plain bounce address (no VERP); tests/test_bounce_shapes.py runs them
    ("yahoo_multi_recipient.eml", 0, "hard", None, [RCPT, RCPT2, RCPT3], "5.1.1"),
    ("postfix_multi_recipient_dsn.eml", 0, "hard", None, [RCPT, RCPT2, RCPT3], "5.1.1"),
    ("exim_multi_recipient.eml", 0, "hard", None, [RCPT, RCPT2], "5.1.2"),
    ("dsn_no_recipient_fields_failed_permanently.eml", 0, "hard", None, [RCPT], "5.1.1"),
    ("dsn_no_recipient_fields_french.eml", 0, "hard", None, [RCPT], "5.1.1"),
    ("non_delivery_subject.eml", 0, "hard", None, [RCPT], "5.1.1"),
    ("mdaemon_user_unknown.eml", 0, "hard", None, [RCPT], "5.1.1"),
    ("german_unzustellbar.eml", 0, "hard", None, [RCPT], "5.1.1"),
    ("mail_delivery_warning.eml", 0, "soft", None, [RCPT], "4.0.0"),
    ("dsn_failed_4_4_7.eml", 0, "hard", None, [RCPT], "4.4.7"),
    ("qmail_not_going_to_try_again.eml", 0, "hard", None, [RCPT], "4.4.1"),
    ("aborted_no_gateway.eml", 0, "hard", None, [RCPT], "5.4.4"),
    ("postfix_mailbox_full_without_verp.eml", 0, "soft", None, [RCPT], "4.2.2"),
    ("arf_token_without_verp.eml", 0, "complaint", None, ["redacted@mail.example.com"], ""),
    ("arf_message_id_without_verp.eml", 0, "complaint", None, [], ""),
    ("arf_address_without_verp.eml", 0, "complaint", None, [RCPT], ""),
    ("bounce_of_test_send.eml", 0, "hard", None, [STAFF], "5.1.1"),
    ("unclassifiable_notice.eml", 0, "unknown", None, [], ""),
]


def corpus_message(name: str, delivery_id: int) -> bytes:
    """The corpus file with real VERP tags; {VERP_TAMPERED} keeps the tag but changes the id."""
    verp = verp_address(BOUNCE, delivery_id, SECRET)
    honest_id = verp_address(BOUNCE, delivery_id, SECRET).split("+")[1].split("-")[0]
    tampered = verp.replace(f"+{honest_id}-", f"+{honest_id}z-")
    raw = (CORPUS / name).read_bytes()
    for placeholder, value in (("{VERP_TAMPERED}", tampered), ("{VERP}", verp), ("{RCPT}", RCPT), ("{RCPT2}", RCPT2),
                               ("{RCPT3}", RCPT3), ("{STAFF}", STAFF), ("{TOKEN}", "MQ.not-a-real-signature-at-all00"),
                               ("{MESSAGE_ID}", "<2026-12-lac-digest.9.0123456789ab@lac.example.org>")):
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


# --- only the relevant parts are read -------------------------------------------------------------------

NOTICE_HEAD = (b"From: MAILER-DAEMON@mx.example.org\nTo: bounces@lac.example.org\nSubject: Undeliverable\n"
               b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n"
               b"<ana@example.net>: 550 5.1.1 User unknown\n\n")
FILLER = b"quoted text of the original message, going on for megabytes; no addresses in it\n"


def test_a_20_mb_prose_bounce_is_read_from_its_first_64_kb_only():
    late = b"<late@example.net>: 550 5.1.1 User unknown\n"
    raw = NOTICE_HEAD + FILLER * (20_000_000 // len(FILLER)) + late + b"--zz--\n"
    report = read(raw)
    assert (report.kind, report.status, report.recipients) == ("hard", "5.1.1", ["ana@example.net"])
    assert len(report.relevant) < 70_000  # the address 20 MB in was never looked at


def test_an_attachment_is_skipped_but_the_report_parts_beside_it_are_read():
    attachment = (b"--zz\nContent-Type: application/pdf\nContent-Disposition: attachment\n"
                  b"Content-Transfer-Encoding: base64\n\n" + b"QUJDRA==\n" * 500_000)
    status = (b"--zz\nContent-Type: message/delivery-status\nContent-Disposition: attachment\n\n"
              b"Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; bo@example.net\nAction: failed\n"
              b"Status: 5.1.1\n\n")
    report = read(NOTICE_HEAD + attachment + status + b"--zz--\n")
    assert (report.kind, report.source, report.recipients) == ("hard", "dsn", ["bo@example.net"])
    assert b"QUJDRA" not in report.relevant


def test_boundaries_that_share_a_prefix_are_told_apart():
    raw = (b"From: MAILER-DAEMON@mx.example.org\nSubject: Undeliverable\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: multipart/alternative; boundary=b10\n\n"
           b"--b10\nContent-Type: text/plain\n\n<ana@example.net>: 550 5.1.1 User unknown\n--b10--\n--b1--\n")
    report = read(raw.replace(b"\n", b"\r\n"))
    assert (report.kind, report.recipients) == ("hard", ["ana@example.net"])


def test_a_multi_recipient_dsn_lists_each_recipient_with_its_own_kind_and_status():
    raw = corpus_message("postfix_mailbox_full_failed.eml", 1).replace(
        b"Diagnostic-Code: smtp; 452 4.2.2",
        b"Diagnostic-Code: smtp; 452 4.2.2 full\r\n\r\n"
        b"Final-Recipient: rfc822; second@example.org\r\nAction: failed\r\nStatus: 4.4.7\r\n\r\n"
        b"Final-Recipient: rfc822; third@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        b"Diagnostic-Code: smtp; 452 4.2.2",
    )
    assert [(f.recipient, f.kind, f.status) for f in read(raw).failures] == [
        (RCPT, "soft", "4.2.2"), ("second@example.org", "hard", "4.4.7"), ("third@example.org", "soft", "4.4.1")]


def test_a_returned_copy_yields_its_unsubscribe_token_and_message_id_as_clues():
    raw = corpus_message("postfix_mailbox_full_failed.eml", 1).replace(
        b"Message-ID: <issue-42.1003@lac.example.org>",
        b"Message-ID: <issue-42.1003@lac.example.org>\nList-Unsubscribe: <https://news.example.org/u/"
        b"MTIz.abcdefghijklmnopqrstuvwxyzABCDEFGHIJK>")
    report = read(raw)
    assert report.unsubscribe_tokens == ["MTIz.abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"]
    assert report.message_ids == ["<issue-42.1003@lac.example.org>"]


def test_a_verp_address_whose_tag_does_not_verify_is_flagged_as_forged():
    report = read(corpus_message("tampered_verp.eml", 5))
    assert (report.delivery_id, report.forged_verp) == (None, True)
    assert read(corpus_message("postfix_user_unknown.eml", 5)).forged_verp is False


def test_an_unreadable_message_keeps_only_its_start_for_review():
    nesting = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (n, n) for n in range(20))
    report = read(b"From: mailer-daemon@mx.example.org\nSubject: Undeliverable\n" + nesting + b"x" * 1_000_000)
    assert (report.kind, report.sender, report.subject) == ("unknown", "mailer-daemon@mx.example.org", "Undeliverable")
    assert len(report.relevant) == 256 * 1024
