"""Fetching returned mail: a real Maildir on disk, and the URLs for IMAP and POP3."""

import mailbox

import pytest

from newsletter.mailboxes import MailboxURL, iter_mailbox, parse_mailbox_url


def bounce(number: int) -> bytes:
    return b"From: MAILER-DAEMON@mx.example.org\nSubject: bounce %d\n\nbody %d\n" % (number, number)


@pytest.fixture
def maildir(tmp_path):
    root = tmp_path / "bounces"
    box = mailbox.Maildir(root, create=True)
    fresh = box.add(mailbox.MaildirMessage(bounce(1)))
    seen = mailbox.MaildirMessage(bounce(2))
    seen.set_subdir("cur")
    seen.set_flags("S")
    read_before = box.add(seen)
    (root / "tmp" / "123.half-written").write_bytes(b"still being delivered")
    return root, {fresh: bounce(1), read_before: bounce(2)}


def test_maildir_yields_messages_from_new_and_cur_but_not_tmp(maildir):
    root, expected = maildir
    found = {key: raw for key, raw, _ in iter_mailbox(f"maildir://{root}")}
    assert found == expected


def test_maildir_moves_a_handled_message_into_the_processed_folder_flagged_seen(maildir):
    root, expected = maildir
    first_key, _, remove = next(iter(iter_mailbox(f"maildir://{root}")))
    remove()
    processed = mailbox.Maildir(root).get_folder("processed")
    [(moved_key, moved)] = processed.items()
    assert moved_key == first_key
    assert moved.as_bytes().replace(b"\r\n", b"\n") == expected[first_key]
    assert "S" in moved.get_flags()


def test_maildir_does_not_yield_handled_messages_again(maildir):
    root, expected = maildir
    for key, _, remove in iter_mailbox(f"maildir://{root}"):
        remove()
        break
    remaining = [key for key, _, _ in iter_mailbox(f"maildir://{root}")]
    assert len(remaining) == 1 and remaining[0] in expected and remaining[0] != key


def test_maildir_keeps_unhandled_messages_when_the_caller_stops_early(maildir):
    root, expected = maildir
    next(iter(iter_mailbox(f"maildir://{root}")))
    assert {key for key, _, _ in iter_mailbox(f"maildir://{root}")} == set(expected)


def test_maildir_that_does_not_exist_is_reported_with_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*new/ is missing"):
        list(iter_mailbox(f"maildir://{tmp_path}/nowhere"))


@pytest.mark.parametrize(
    "url, expected",
    [
        ("maildir:///var/mail/bounces", MailboxURL("maildir", path="/var/mail/bounces")),
        ("maildir:relative/box", MailboxURL("maildir", path="relative/box")),
        (
            "imap://bounces:s3cret@mail.example.org/INBOX",
            MailboxURL("imap", "mail.example.org", 143, "bounces", "s3cret", "INBOX"),
        ),
        (
            "imaps://bounces:s3cret@mail.example.org",
            MailboxURL("imaps", "mail.example.org", 993, "bounces", "s3cret", "INBOX"),
        ),
        (
            "IMAPS://bounces%40lac.example.org:p%40ss%2Fword@mail.example.org:1993/Bounces%20LAC",
            MailboxURL("imaps", "mail.example.org", 1993, "bounces@lac.example.org", "p@ss/word", "Bounces LAC"),
        ),
        (
            "pop3://bounces:s3cret@pop.example.org",
            MailboxURL("pop3", "pop.example.org", 110, "bounces", "s3cret"),
        ),
        (
            "pop3s://bounces:s3cret@pop.example.org:1995/",
            MailboxURL("pop3s", "pop.example.org", 1995, "bounces", "s3cret"),
        ),
    ],
)
def test_mailbox_url_is_split_into_its_parts_with_defaults_and_percent_decoding(url, expected):
    assert parse_mailbox_url(url) == expected


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("ftp://u:p@host/x", "scheme 'ftp' is not one of"),
        ("/var/mail/bounces", r"scheme '\(none\)'"),
        ("maildir://host/var/mail", "three slashes"),
        ("maildir:", "path is empty"),
        ("imaps://u:p@/INBOX", "host is missing"),
        ("imaps://mail.example.org/INBOX", "user and password are missing"),
        ("imaps://u@mail.example.org/INBOX", "user and password are missing"),
        ("imaps://u:p@mail.example.org:99999/INBOX", "port"),
        ("pop3s://u:p@pop.example.org/INBOX", "POP3 has no folders"),
    ],
)
def test_bad_mailbox_url_is_refused_with_the_part_to_fix(url, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_mailbox_url(url)


def test_errors_and_repr_never_show_the_password():
    with pytest.raises(ValueError) as refused:
        parse_mailbox_url("pop3s://bounces:hunter2@pop.example.org/INBOX")
    assert "hunter2" not in str(refused.value)
    assert "hunter2" not in repr(parse_mailbox_url("imaps://bounces:hunter2@mail.example.org"))
