"""Returned mail as the real world sends it, end to end: the sample campaign is sent through a loopback SMTP
server (so deliveries, Message-IDs and signed tokens exist), then one message of each shape in
tests/corpus/bounces is written for those subscribers, most of them to the plain bounce address with no
VERP (mail sent before VERP was configured, relays that rewrite the return path, feedback loops that strip
it), dropped in a real Maildir and read by process_mailbox. Each shape has its expected outcome; the table
in docs/bounces.md says the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from bounce_support import HOUR, Newsroom, drop_in_maildir, maildir_of, status_of, suppression_reason
from bounce_support import CORPUS, delivery, events_of

from newsletter import subscribers
from newsletter.bounces import reprocess_reviews
from newsletter.signing import UNSUBSCRIBE, Signer

SUPPRESSED = "suppressed"  # status bounced, suppression hard-bounce
COMPLAINED = "complained"
SOFT_LOGGED = "soft logged"  # an event, but no change and no count towards the threshold
UNTOUCHED = "untouched"
STRANGER = "stranger"  # an address in the report that is nobody we know


@dataclass
class Shape:
    """One corpus file and what must happen to each address it names ({RCPT}, {RCPT2}, {RCPT3})."""

    file: str
    outcomes: tuple[str, ...]
    review: bool = False  # kept in bounce_reviews and filed in the review folder
    matched_by: str = "address"


SHAPES = [
    Shape("yahoo_multi_recipient.eml", (SUPPRESSED, SUPPRESSED, STRANGER)),
    Shape("postfix_multi_recipient_dsn.eml", (SUPPRESSED, SUPPRESSED, SOFT_LOGGED)),
    Shape("exim_multi_recipient.eml", (SUPPRESSED, SUPPRESSED)),
    Shape("dsn_no_recipient_fields_failed_permanently.eml", (SUPPRESSED,)),
    Shape("dsn_no_recipient_fields_french.eml", (SUPPRESSED,)),
    Shape("non_delivery_subject.eml", (SUPPRESSED,)),
    Shape("mdaemon_user_unknown.eml", (SUPPRESSED,)),
    Shape("german_unzustellbar.eml", (SUPPRESSED,)),
    Shape("mail_delivery_warning.eml", (SOFT_LOGGED,)),
    Shape("dsn_failed_4_4_7.eml", (SUPPRESSED,)),
    Shape("qmail_not_going_to_try_again.eml", (SUPPRESSED,)),
    Shape("aborted_no_gateway.eml", (SUPPRESSED,)),
    Shape("postfix_mailbox_full_without_verp.eml", (SOFT_LOGGED,)),
    Shape("arf_token_without_verp.eml", (COMPLAINED,), matched_by="token"),
    Shape("arf_message_id_without_verp.eml", (COMPLAINED,), matched_by="message-id"),
    Shape("arf_address_without_verp.eml", (COMPLAINED,)),
    Shape("bounce_of_test_send.eml", (), review=True),
    Shape("unclassifiable_notice.eml", (), review=True),
    Shape("tampered_verp.eml", (UNTOUCHED,), review=True),
    Shape("human_reply.eml", (), review=True),
]
STAFF = "editor@lac.example.org"  # receives `send --test` mail; not a subscriber


def address(shape: Shape, slot: int) -> str:
    stem = shape.file.removesuffix(".eml").replace("_", "-")
    return f"{'nobody' if shape.outcomes[slot] == STRANGER else 'r'}{slot + 1}.{stem}@example.org"


def subscribers_of(shape: Shape) -> list[str]:
    return [address(shape, slot) for slot, outcome in enumerate(shape.outcomes) if outcome != STRANGER]


def write_shape(room: Newsroom, shape: Shape) -> bytes:
    """The corpus file filled in for this shape's subscribers and their real deliveries."""
    raw = (CORPUS / shape.file).read_bytes()
    names = [address(shape, slot) for slot in range(len(shape.outcomes))]
    first = names[0] if names else "nobody@example.org"
    known = subscribers_of(shape)
    target = delivery(room.db, room.config, known[0]) if known else None
    message_id = room.db.execute("SELECT message_id FROM deliveries WHERE id = ?",
                                 [target.id]).fetchone()[0] if target else "<none@example.org>"
    subscriber_id = subscribers.get(room.db, known[0])["id"] if known else 0
    token = Signer(room.config.secret_key).sign(subscriber_id, UNSUBSCRIBE)
    tag = target.verp.partition("+")[2].partition("-")[0] if target else ""
    values = {
        "{VERP_TAMPERED}": target.verp.replace(f"+{tag}-", f"+{tag}z-") if target else "",
        "{VERP}": target.verp if target else "", "{RCPT}": first,
        "{RCPT2}": names[1] if len(names) > 1 else "", "{RCPT3}": names[2] if len(names) > 2 else "",
        "{TOKEN}": token, "{MESSAGE_ID}": message_id, "{STAFF}": STAFF,
    }
    for placeholder, value in values.items():
        raw = raw.replace(placeholder.encode(), value.encode())
    return raw


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    from smtp_servers import FaultServer

    with FaultServer() as server:
        room = Newsroom(tmp_path_factory.mktemp("shapes"), server)
        room.subscribe(*(email for shape in SHAPES for email in subscribers_of(shape)))
        room.send()
        room.later(HOUR)
        files = {shape.file: drop_in_maildir(room.config, write_shape(room, shape), shape.file) for shape in SHAPES}
        summary = room.process()
        yield {"room": room, "files": files, "summary": summary}
        room.db.conn.close()


def test_every_corpus_file_is_a_shape_here_or_runs_with_verp_in_test_bounce_policy():
    from test_bounce_policy import CORPUS_OUTCOMES

    on_disk = {path.name for path in CORPUS.glob("*.eml")}
    shapes = {shape.file for shape in SHAPES}
    assert shapes <= on_disk
    assert on_disk - shapes <= set(CORPUS_OUTCOMES)


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.file for shape in SHAPES])
def test_each_named_subscriber_ends_as_the_shape_says(shapes_run, shape):
    room = shapes_run["room"]
    for slot, outcome in enumerate(shape.outcomes):
        email = address(shape, slot)
        if outcome == STRANGER:
            assert subscribers.get(room.db, email) is None and events_of(room.db, email) == []
            continue
        expected = {SUPPRESSED: ("bounced", "hard-bounce"), COMPLAINED: ("complained", "complaint"),
                    SOFT_LOGGED: ("active", None), UNTOUCHED: ("active", None)}[outcome]
        assert (status_of(room.db, email), suppression_reason(room.db, email)) == expected, email
        events = events_of(room.db, email)
        if outcome == UNTOUCHED:
            assert events == []
        else:
            [event] = events
            assert event["kind"] == {SUPPRESSED: "hard", COMPLAINED: "complaint", SOFT_LOGGED: "soft"}[outcome]
            matched_by = room.db.execute("SELECT matched_by FROM bounce_events WHERE email = ?", [email]).fetchone()[0]
            assert matched_by == shape.matched_by


def test_the_output_names_exactly_the_subscribers_whose_state_changed(shapes_run):
    changed = sorted(
        f"{address(shape, slot)}: {'suppressed (hard bounce)' if outcome == SUPPRESSED else 'unsubscribed (complaint)'}"
        for shape in SHAPES for slot, outcome in enumerate(shape.outcomes) if outcome in (SUPPRESSED, COMPLAINED))
    assert sorted(shapes_run["summary"].actions) == changed
    soft = sum(outcome == SOFT_LOGGED for shape in SHAPES for outcome in shape.outcomes)
    assert shapes_run["summary"].logged == soft


def test_nothing_vanishes_reports_that_match_nobody_are_kept_and_filed_for_review(shapes_run):
    room, files = shapes_run["room"], shapes_run["files"]
    folder = maildir_of(room.config)
    kept = {row["mailbox_key"]: row for row in room.db.query("SELECT * FROM bounce_reviews")}
    expected = {files[shape.file].name for shape in SHAPES if shape.review}
    assert set(kept) == expected
    assert {p.name.partition(":")[0] for p in (folder / ".review" / "cur").iterdir()} == expected
    processed = {p.name.partition(":")[0] for p in (folder / ".processed" / "cur").iterdir()}
    assert processed == {path.name for name, path in files.items()} - expected
    assert list((folder / "new").iterdir()) == []
    test_send = kept[files["bounce_of_test_send.eml"].name]
    assert (test_send["sender"], test_send["recipients"]) == ("MAILER-DAEMON@mx1.lac.example.org", STAFF)
    assert test_send["reason"] == f"names no delivery or subscriber we know ({STAFF})"
    assert "VERP tag does not verify" in kept[files["tampered_verp.eml"].name]["reason"]
    assert kept[files["human_reply.eml"].name]["reason"].startswith("not a bounce or complaint")


def test_reprocess_handles_a_kept_report_once_its_subscriber_exists_and_files_it_as_processed(shapes_run):
    room, files = shapes_run["room"], shapes_run["files"]
    subscribers.add(room.db, STAFF, name="Editor", country="TT", clock=room.clock)
    summary = reprocess_reviews(room.db, room.config, clock=room.clock)
    assert summary.actions == [f"{STAFF}: suppressed (hard bounce)"]
    assert summary.unmatched == 3
    left = {row["mailbox_key"] for row in room.db.query("SELECT mailbox_key FROM bounce_reviews")}
    assert files["bounce_of_test_send.eml"].name not in left and len(left) == 3
    folder = maildir_of(room.config)
    processed = {p.name.partition(":")[0] for p in (folder / ".processed" / "cur").iterdir()}
    assert files["bounce_of_test_send.eml"].name in processed
    again = reprocess_reviews(room.db, room.config, clock=room.clock)
    assert (again.actions, again.unmatched) == ([], 3)


def test_soft_bounces_matched_by_a_plain_address_never_add_up_to_a_suppression(tmp_path, smtp):
    room = Newsroom(tmp_path, smtp)
    shape = Shape("postfix_mailbox_full_without_verp.eml", (SOFT_LOGGED,))
    room.subscribe(*subscribers_of(shape))
    room.send()
    for _ in range(5):
        room.later(HOUR)
        drop_in_maildir(room.config, write_shape(room, shape), shape.file)
        room.process()
    email = address(shape, 0)
    assert len(events_of(room.db, email)) == 5
    assert (status_of(room.db, email), suppression_reason(room.db, email)) == ("active", None)
    room.db.conn.close()


def test_without_plain_address_matching_a_report_without_verp_goes_to_review(tmp_path, smtp):
    room = Newsroom(tmp_path, smtp, match_plain_address=False)
    shape = Shape("yahoo_multi_recipient.eml", (SUPPRESSED, SUPPRESSED, STRANGER))
    room.subscribe(*subscribers_of(shape))
    room.send()
    drop_in_maildir(room.config, write_shape(room, shape), shape.file)
    summary = room.process()
    assert (summary.actions, summary.unmatched) == ([], 1)
    assert all(status_of(room.db, email) == "active" for email in subscribers_of(shape))
    [reason] = [row[0] for row in room.db.execute("SELECT reason FROM bounce_reviews")]
    assert "match_plain_address is off" in reason
    room.db.conn.close()
