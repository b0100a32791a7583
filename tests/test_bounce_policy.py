"""The bounce, complaint and suppression policy, end to end: the sample campaign is sent through a real SMTP
server on loopback, so every delivery row and its signed VERP return path exist; the returned messages of
the corpus are then addressed to those return paths, dropped in a real Maildir and read by process_mailbox.
"""

from __future__ import annotations

import pytest
from bounce_support import (
    CORPUS,
    DAY,
    HOUR,
    LATER_SLUGS,
    MAILBOX_FULL_522,
    Newsroom,
    delivery,
    events_of,
    maildir_of,
    status_of,
    suppression_reason,
    suppression_rows,
)
from sending_support import SLUG
from smtp_servers import USER_UNKNOWN, FaultServer

from newsletter import subscribers
from newsletter.suppressions import suppress

MAILBOX_FULL_DSN = "postfix_mailbox_full_delayed.eml"
USER_UNKNOWN_DSN = "postfix_user_unknown.eml"
COMPLAINT = "arf_yahoo_complaint.eml"


@pytest.fixture
def newsroom(tmp_path, smtp):
    room = Newsroom(tmp_path, smtp)
    yield room
    room.db.conn.close()


# --- every kind of returned message, one subscriber each ---------------------------------------------------

HARD = "hard"
SOFT = "soft"
COMPLAINED = "complaint"
IGNORED = "ignored"  # read, taken out of the mailbox, changes nothing
LEFT_FOR_A_PERSON = "left"  # changes nothing, is kept for review and filed in the review folder

CORPUS_OUTCOMES = {
    "postfix_user_unknown.eml": HARD,
    "gmail_user_unknown.eml": HARD,
    "exim_unknown_user.eml": HARD,
    "exim_retry_timeout.eml": HARD,
    "qmail_user_unknown.eml": HARD,
    "exchange_ndr.eml": HARD,
    "postfix_mailbox_full_delayed.eml": SOFT,
    "postfix_mailbox_full_failed.eml": SOFT,
    MAILBOX_FULL_522: SOFT,
    "arf_yahoo_complaint.eml": COMPLAINED,
    "arf_hotmail_complaint.eml": COMPLAINED,
    "out_of_office_en.eml": IGNORED,
    "out_of_office_es.eml": IGNORED,
    "human_reply.eml": LEFT_FOR_A_PERSON,
}
EVENT_SOURCE = {HARD: "dsn", SOFT: "dsn", COMPLAINED: "arf"}
BYSTANDER = "bystander@example.org"


def subscriber_for(name: str) -> str:
    return name.removesuffix(".eml").replace(" ", "-").replace(".", "-").replace("_", "-") + "@example.org"


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """Send the campaign to one subscriber per corpus message (and a bystander), return each message to its
    delivery's VERP address, and read the mailbox once."""
    with FaultServer() as server:
        room = Newsroom(tmp_path_factory.mktemp("corpus"), server)
        room.subscribe(*(subscriber_for(name) for name in CORPUS_OUTCOMES), BYSTANDER)
        room.send()
        room.later(HOUR)
        files = {name: room.bounce(name, subscriber_for(name)) for name in CORPUS_OUTCOMES}
        before = dict(room.db.execute("SELECT email, status FROM deliveries").fetchall())
        summary = room.process()
        yield {"room": room, "files": files, "summary": summary, "before": before}
        room.db.conn.close()


def test_every_corpus_message_takes_part_in_an_end_to_end_run():
    from test_bounce_shapes import SHAPES  # the shapes sent to the plain bounce address, without VERP

    on_disk = {path.name for path in CORPUS.glob("*.eml")} - {"tampered_verp.eml"}  # see its own test below
    assert on_disk <= set(CORPUS_OUTCOMES) | {shape.file for shape in SHAPES}


def test_each_delivery_was_sent_with_its_own_signed_verp_return_path(corpus_run):
    room = corpus_run["room"]
    for name in CORPUS_OUTCOMES:
        target = delivery(room.db, room.config, subscriber_for(name))
        received = [m for m in room.server.accepted if target.email in m.rcpt_tos]
        assert [m.mail_from for m in received] == [target.verp]
        assert corpus_run["before"][target.email] == "sent"


@pytest.mark.parametrize("name", [n for n, outcome in CORPUS_OUTCOMES.items() if outcome == HARD])
def test_a_hard_bounce_bounces_the_subscriber_suppresses_the_address_and_marks_the_delivery(corpus_run, name):
    room = corpus_run["room"]
    email = subscriber_for(name)
    target = delivery(room.db, room.config, email)
    assert status_of(room.db, email) == "bounced"
    assert suppression_reason(room.db, email) == "hard-bounce"
    assert target.status == "bounced"
    [event] = events_of(room.db, email)
    assert (event["delivery_id"], event["subscriber_id"], event["kind"]) == (
        target.id, subscribers.get(room.db, email)["id"], "hard")
    assert event["code"].startswith("5.")


@pytest.mark.parametrize("name", [n for n, outcome in CORPUS_OUTCOMES.items() if outcome == SOFT])
def test_a_single_soft_bounce_is_only_logged_the_subscriber_stays_active(corpus_run, name):
    room = corpus_run["room"]
    email = subscriber_for(name)
    target = delivery(room.db, room.config, email)
    assert status_of(room.db, email) == "active"
    assert suppression_rows(room.db, email) == []
    assert target.status == "sent"
    assert [(e["delivery_id"], e["kind"], e["source"]) for e in events_of(room.db, email)] == [
        (target.id, "soft", "dsn")]


def test_a_mailbox_full_report_with_the_permanent_code_5_2_2_counts_as_soft(corpus_run):
    room = corpus_run["room"]
    [event] = events_of(room.db, subscriber_for(MAILBOX_FULL_522))
    assert (event["kind"], event["code"]) == ("soft", "5.2.2")


@pytest.mark.parametrize("name", [n for n, outcome in CORPUS_OUTCOMES.items() if outcome == COMPLAINED])
def test_a_complaint_marks_the_subscriber_complained_and_suppresses_the_address(corpus_run, name):
    room = corpus_run["room"]
    email = subscriber_for(name)
    target = delivery(room.db, room.config, email)
    assert status_of(room.db, email) == "complained"
    assert suppression_reason(room.db, email) == "complaint"
    assert [(e["delivery_id"], e["kind"], e["source"]) for e in events_of(room.db, email)] == [
        (target.id, "complaint", "arf")]
    assert target.status == "sent"  # the message was delivered; the reader did not want it


@pytest.mark.parametrize("name", [n for n, outcome in CORPUS_OUTCOMES.items()
                                  if outcome in (IGNORED, LEFT_FOR_A_PERSON)])
def test_auto_replies_and_human_replies_change_nothing(corpus_run, name):
    room = corpus_run["room"]
    email = subscriber_for(name)
    assert status_of(room.db, email) == "active"
    assert suppression_rows(room.db, email) == []
    assert events_of(room.db, email) == []
    target = delivery(room.db, room.config, email)
    assert (target.status, corpus_run["before"][email]) == ("sent", "sent")


def test_only_the_human_reply_goes_to_review_everything_else_is_filed_as_processed(corpus_run):
    room, files = corpus_run["room"], corpus_run["files"]
    folder = maildir_of(room.config)
    waiting = {path.name for path in (folder / "new").iterdir()} | {p.name for p in (folder / "cur").iterdir()}
    assert waiting == set()
    reviewed = {path.name.partition(":")[0] for path in (folder / ".review" / "cur").iterdir()}
    assert reviewed == {files["human_reply.eml"].name}
    processed = {path.name.partition(":")[0] for path in (folder / ".processed" / "cur").iterdir()}
    assert processed == {path.name for name, path in files.items() if name != "human_reply.eml"}
    [review] = room.db.query("SELECT mailbox_key, kind, reason FROM bounce_reviews")
    assert (review["mailbox_key"], review["kind"]) == (files["human_reply.eml"].name, "unknown")


def test_the_bystander_who_got_no_returned_mail_is_untouched(corpus_run):
    room = corpus_run["room"]
    assert status_of(room.db, BYSTANDER) == "active"
    assert suppression_rows(room.db, BYSTANDER) == [] and events_of(room.db, BYSTANDER) == []


def test_the_summary_counts_messages_by_the_kind_the_policy_acted_on(corpus_run):
    summary = corpus_run["summary"]
    outcomes = list(CORPUS_OUTCOMES.values())
    assert summary.read == len(CORPUS_OUTCOMES)
    assert summary.by_kind == {"hard": outcomes.count(HARD), "soft": outcomes.count(SOFT),
                               "complaint": outcomes.count(COMPLAINED), "autoreply": outcomes.count(IGNORED),
                               "unknown": outcomes.count(LEFT_FOR_A_PERSON)}


def test_a_soft_bounce_below_the_threshold_is_not_reported_as_unmatched(corpus_run):
    assert corpus_run["summary"].unmatched == 1  # only the human reply; every report named one of our deliveries


def test_the_summary_lists_one_action_for_each_suppression_and_none_for_replies(corpus_run):
    actions = corpus_run["summary"].actions
    for name, outcome in CORPUS_OUTCOMES.items():
        lines = [line for line in actions if line.startswith(subscriber_for(name) + ":")]
        if outcome == HARD:
            assert lines == [f"{subscriber_for(name)}: suppressed (hard bounce)"]
        elif outcome == COMPLAINED:
            assert lines == [f"{subscriber_for(name)}: unsubscribed (complaint)"]
        elif outcome in (IGNORED, LEFT_FOR_A_PERSON):
            assert lines == []


def test_reading_the_mailbox_again_finds_nothing_and_changes_nothing(corpus_run):
    room = corpus_run["room"]
    events = room.db.execute("SELECT count(*) FROM bounce_events").fetchone()[0]
    again = room.process()
    assert (again.read, again.by_kind, again.actions) == (0, {}, [])
    assert room.db.execute("SELECT count(*) FROM bounce_events").fetchone()[0] == events


def test_a_bounce_with_a_forged_verp_tag_does_not_suppress_the_subscriber_it_names(newsroom):
    """The VERP tag exists so that nobody can unsubscribe others with forged bounces (see verp.py)."""
    victim = "victim@example.org"
    newsroom.subscribe(victim)
    newsroom.send()
    newsroom.bounce("tampered_verp.eml", victim)
    summary = newsroom.process()
    assert summary.unmatched == 1
    assert status_of(newsroom.db, victim) == "active"
    assert suppression_rows(newsroom.db, victim) == []


# --- soft bounces: threshold, reset, window ----------------------------------------------------------------

READER = "reader@example.org"


def soft_bounce(room: Newsroom, slug: str = SLUG, *, after: float = HOUR) -> None:
    room.later(after)
    room.bounce(MAILBOX_FULL_DSN, READER, slug)
    room.process()


def test_three_soft_bounces_on_one_delivery_within_the_window_suppress_the_address(newsroom):
    newsroom.subscribe(READER)
    newsroom.send()
    soft_bounce(newsroom, after=4 * HOUR)
    soft_bounce(newsroom, after=DAY)
    assert (status_of(newsroom.db, READER), suppression_rows(newsroom.db, READER)) == ("active", [])
    soft_bounce(newsroom, after=DAY)
    assert status_of(newsroom.db, READER) == "bounced"
    [row] = suppression_rows(newsroom.db, READER)
    assert row["reason"] == "soft-bounce"
    assert row["source"] == "3 soft bounces within 30 days"


def test_soft_bounces_on_three_successive_campaigns_suppress_the_address(newsroom):
    """A relay's 250 puts a row at 'sent' before the remote server returns it, so a delivery that soft
    bounced must not count as the successful delivery that resets the count."""
    newsroom.subscribe(READER)
    for slug in (SLUG, *LATER_SLUGS):
        newsroom.send(slug)
        soft_bounce(newsroom, slug)
        newsroom.later(7 * DAY)
    assert len(events_of(newsroom.db, READER)) == 3
    assert status_of(newsroom.db, READER) == "bounced"
    assert suppression_reason(newsroom.db, READER) == "soft-bounce"


@pytest.mark.parametrize("delivered_in_between, suppressed", [(True, False), (False, True)],
                         ids=["a delivery in between resets the count", "without it the third suppresses"])
def test_a_successful_delivery_between_soft_bounces_resets_the_count(newsroom, delivered_in_between, suppressed):
    newsroom.subscribe(READER)
    newsroom.send()
    soft_bounce(newsroom)
    soft_bounce(newsroom)
    newsroom.later(DAY)
    if delivered_in_between:
        newsroom.send(LATER_SLUGS[0])
        assert delivery(newsroom.db, newsroom.config, READER, LATER_SLUGS[0]).status == "sent"
    soft_bounce(newsroom)  # a late report about the first issue
    assert len(events_of(newsroom.db, READER)) == 3
    assert (suppression_reason(newsroom.db, READER) == "soft-bounce") is suppressed
    assert status_of(newsroom.db, READER) == ("bounced" if suppressed else "active")


def test_soft_bounces_older_than_the_window_do_not_count(newsroom):
    newsroom.subscribe(READER)
    newsroom.send()
    soft_bounce(newsroom)
    soft_bounce(newsroom)
    newsroom.later(31 * DAY)
    soft_bounce(newsroom)
    assert len(events_of(newsroom.db, READER)) == 3
    assert (status_of(newsroom.db, READER), suppression_rows(newsroom.db, READER)) == ("active", [])
    soft_bounce(newsroom)
    soft_bounce(newsroom)  # three inside the last 30 days now
    assert suppression_reason(newsroom.db, READER) == "soft-bounce"


# --- one record of why an address is suppressed ------------------------------------------------------------

GONE = "gone@example.org"


def test_an_smtp_time_unknown_user_and_a_later_report_leave_one_suppression_record(newsroom):
    newsroom.server.fail(GONE, USER_UNKNOWN)
    newsroom.subscribe(GONE)
    newsroom.send()
    target = delivery(newsroom.db, newsroom.config, GONE)
    assert target.status == "bounced"
    assert newsroom.server.accepted_for(GONE) == []
    newsroom.later(HOUR)
    newsroom.bounce(USER_UNKNOWN_DSN, GONE)
    newsroom.process()
    [row] = suppression_rows(newsroom.db, GONE)
    assert row["reason"] == "hard-bounce"
    assert newsroom.db.execute("SELECT count(*) FROM suppressions").fetchone()[0] == 1
    assert [(e["delivery_id"], e["kind"], e["code"], e["source"]) for e in events_of(newsroom.db, GONE)] == [
        (target.id, "hard", "5.1.1", "smtp"), (target.id, "hard", "5.1.1", "dsn")]
    assert status_of(newsroom.db, GONE) == "bounced"


def test_a_later_bounce_does_not_overwrite_the_complaint_that_suppressed_the_address(newsroom):
    """The complaint is the record that matters (the reader told their provider we send spam): a bounce
    of an issue sent before it must not replace it, nor the date it was made."""
    newsroom.subscribe(READER)
    newsroom.send()
    newsroom.later(DAY)
    newsroom.send(LATER_SLUGS[0])
    newsroom.later(HOUR)
    newsroom.bounce(COMPLAINT, READER)
    newsroom.process()
    [complaint] = suppression_rows(newsroom.db, READER)
    newsroom.later(DAY)
    newsroom.bounce(USER_UNKNOWN_DSN, READER, LATER_SLUGS[0])
    newsroom.process()
    assert [e["kind"] for e in events_of(newsroom.db, READER)] == ["complaint", "hard"]
    assert suppression_rows(newsroom.db, READER) == [complaint]
    assert status_of(newsroom.db, READER) == "complained"


# --- a suppressed address is never mailed again ------------------------------------------------------------


def test_suppressed_addresses_are_left_out_of_the_next_campaign_and_never_mailed(newsroom):
    hard, manual, fine = "hard@example.org", "manual@example.org", "fine@example.org"
    newsroom.subscribe(hard, manual, fine)
    newsroom.send()
    newsroom.later(HOUR)
    newsroom.bounce(USER_UNKNOWN_DSN, hard)
    newsroom.process()
    suppress(newsroom.db, manual, "manual", "asked by phone", clock=newsroom.clock)  # still 'active' as a subscriber
    newsroom.later(DAY)
    newsroom.send(LATER_SLUGS[0])
    rows = {row["email"]: row["status"] for row in
            newsroom.db.query("SELECT email, status FROM deliveries WHERE campaign = ?", [LATER_SLUGS[0]])}
    assert hard not in rows  # a bounced subscriber is not in the status:active segment at all
    assert rows[manual] == "skipped"
    assert rows[fine] == "sent"
    assert len(newsroom.server.accepted_for(hard)) == 1  # the first issue only
    assert len(newsroom.server.accepted_for(manual)) == 1
    assert len(newsroom.server.accepted_for(fine)) == 2
