"""Unsubscribe requests sent to the List-Unsubscribe mailto address, delivered by a real SMTP server into a Maildir."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import unquote

import pytest
from web_support import make_config

from newsletter.campaigns import load_campaign
from newsletter.clock import FakeClock
from newsletter.db import connect
from newsletter.interests import Taxonomy
from newsletter.mailsink import start_sink
from newsletter.message import MessageFactory
from newsletter.render import IssueRenderer
from newsletter.signing import UNSUBSCRIBE, Signer
from newsletter.subscribers import add, get_by_id, set_status
from newsletter.transport import open_transport
from newsletter.unsubscribe_requests import process_unsubscribe_mailbox

MAILBOX = "unsubscribe@lac.example.org"


@pytest.fixture
def world(tmp_path):
    """A database with two subscribers, a signer, and a mail server delivering into tmp_path/inbox."""
    config = make_config(tmp_path)
    db = connect(config.database)
    clock = FakeClock()
    ana = add(db, "ana@example.org", name="Ana", language="es", clock=clock)
    bo = add(db, "bo@example.org", name="Bo", language="en", clock=clock)
    with start_sink(tmp_path / "inbox") as sink:
        yield {"config": config, "db": db, "clock": clock, "signer": Signer(config.secret_key), "ana": ana, "bo": bo,
               "sink": sink, "url": f"maildir://{tmp_path / 'inbox'}", "inbox": tmp_path / "inbox"}
    db.conn.close()


def mail_in(world, sender: str, subject: str, body: str = "") -> None:
    message = EmailMessage(policy=policy.SMTP)
    message["From"], message["To"], message["Subject"] = sender, MAILBOX, subject
    message.set_content(body or "Sent from my phone")
    transport = open_transport(world["sink"].url)
    try:
        reply = transport.send(sender, MAILBOX, message.as_bytes())
    finally:
        transport.close()
    assert reply.code == 250, reply


def status(world, who: str) -> str:
    return get_by_id(world["db"], world[who]["id"])["status"]


def process(world):
    return process_unsubscribe_mailbox(world["db"], world["signer"], world["url"], clock=world["clock"])


def test_the_mailto_of_a_real_message_unsubscribes_its_recipient(world):
    config = world["config"]
    campaign = load_campaign(config.campaigns_dir / "2026-12-lac-digest", config.tz)
    renderer = IssueRenderer(campaign, config, Taxonomy.load(world["db"]))
    ana = get_by_id(world["db"], world["ana"]["id"])
    raw = MessageFactory(config, world["signer"]).build(renderer.variant_for(ana), ana, message_id="<t@x>",
                                                        now=world["clock"].now())
    header = message_from_bytes(raw, policy=policy.default)["List-Unsubscribe"]
    mailto = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", header)
    assert mailto.group(1) == MAILBOX
    subject = unquote(mailto.group(2))
    mail_in(world, "ana@example.org", subject)
    summary = process(world)
    assert (summary.messages, summary.unsubscribed, summary.left_alone) == (1, 1, [])
    assert status(world, "ana") == "unsubscribed" and status(world, "bo") == "active"
    assert list((world["inbox"] / "new").iterdir()) == []  # handled: moved out of the way
    assert len(list((world["inbox"] / ".processed" / "cur").iterdir())) == 1


@pytest.mark.parametrize(("subject", "body"), [
    ("unsubscribe {token}", ""),
    ("UNSUBSCRIBE%20{token}", ""),  # a mail program that did not decode the mailto
    ("Re: your newsletter", "Hello,\n\nplease unsubscribe {token}\n\nthanks"),
])
def test_a_token_in_the_subject_or_the_text_is_honoured(world, subject, body):
    token = world["signer"].sign(world["bo"]["id"], UNSUBSCRIBE)
    mail_in(world, "someone@elsewhere.example", subject.format(token=token), body.format(token=token))
    assert process(world).unsubscribed == 1
    assert status(world, "bo") == "unsubscribed"


@pytest.mark.parametrize("subject", [
    "unsubscribe",  # the subscriber's own From address, but no token: From can be forged by anyone
    "unsubscribe {forged}",
    "unsubscribe {tampered}",
    "unsubscribe {wrong_purpose}",
])
def test_a_message_without_a_valid_token_is_left_alone_and_counted(world, subject):
    token = world["signer"].sign(world["ana"]["id"], UNSUBSCRIBE)
    mail_in(world, "ana@example.org", subject.format(
        forged=Signer("another-key").sign(world["ana"]["id"], UNSUBSCRIBE),
        tampered=token[:-2] + ("xx" if not token.endswith("xx") else "yy"),
        wrong_purpose=world["signer"].sign(world["ana"]["id"], "preferences"),
    ))
    summary = process(world)
    assert (summary.messages, summary.unsubscribed, len(summary.left_alone)) == (1, 0, 1)
    assert status(world, "ana") == "active"
    assert len(list((world["inbox"] / "new").iterdir())) == 1  # still there for a person to read


def test_requests_for_people_already_gone_are_cleared_away(world):
    set_status(world["db"], world["bo"]["id"], "bounced", clock=world["clock"])
    for subscriber_id in (world["bo"]["id"], 999):
        mail_in(world, "x@example.org", f"unsubscribe {world['signer'].sign(subscriber_id, UNSUBSCRIBE)}")
    summary = process(world)
    assert (summary.unsubscribed, summary.already_unsubscribed, summary.left_alone) == (0, 2, [])
    assert status(world, "bo") == "bounced"
    assert process(world).messages == 0  # nothing is read twice
