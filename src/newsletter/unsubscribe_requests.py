"""Unsubscribe requests, from a signed link or from a mail sent to the List-Unsubscribe mailto address.

Every mail's List-Unsubscribe header offers `mailto:<unsubscribe_mailto>?subject=unsubscribe%20<token>`,
so a request by mail carries the same signed UNSUBSCRIBE token as the https link. Only that token is
trusted. The From address of a mail is never enough: anyone can write any From, so honouring it would let a
stranger unsubscribe somebody else (or probe who is subscribed by watching what happens). A message without
a valid token stays in the mailbox for a person to read, and is counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import sqlite_utils

from .clock import Clock, SystemClock
from .mailboxes import iter_mailbox
from .signing import UNSUBSCRIBE, BadToken, Signer
from .subscribers import get_by_id, unsubscribe

# Statuses an unsubscribe must not overwrite: they already stop all mail, and say more about why.
FINAL_STATUSES = ("unsubscribed", "bounced", "complained")
# "unsubscribe <token>"; some mail programs leave the mailto's %20 (or a +) undecoded in the subject.
_REQUEST = re.compile(r"unsubscribe(?:\s|%20|\+)+(\.?[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", re.IGNORECASE)
_BODY_CHARS = 64 * 1024  # a request is one line; no need to scan a long quoted thread in full


@dataclass
class Summary:
    """What one pass over the mailbox did."""

    messages: int = 0
    unsubscribed: int = 0
    already_unsubscribed: int = 0  # a valid request for someone who no longer receives mail
    left_alone: list[str] = field(default_factory=list)  # mailbox keys of messages without a valid token


def subscriber_for_token(db: sqlite_utils.Database, signer: Signer, token: str) -> dict | None:
    """The subscriber an UNSUBSCRIBE token names (None if they have been erased); BadToken if it is not ours."""
    subscriber_id = signer.unsign(token, UNSUBSCRIBE)
    if not isinstance(subscriber_id, int):
        raise BadToken("this link is not valid")
    return get_by_id(db, subscriber_id)


def unsubscribe_subscriber(db: sqlite_utils.Database, subscriber: dict, *, clock: Clock = SystemClock()) -> bool:
    """Stop all mail to this subscriber at once; False when nothing was being sent to them anyway."""
    if subscriber["status"] in FINAL_STATUSES:
        return False
    unsubscribe(db, subscriber["id"], clock=clock)
    return True


def process_unsubscribe_mailbox(db: sqlite_utils.Database, signer: Signer, mailbox_url: str, *,
                                clock: Clock = SystemClock()) -> Summary:
    """Honour every request in the mailbox that carries a valid token; handled messages are removed."""
    summary = Summary()
    for key, raw, remove in iter_mailbox(mailbox_url):
        summary.messages += 1
        message = BytesParser(policy=policy.default).parsebytes(raw)
        subscriber_id, subscriber = _requested(db, signer, message)
        if subscriber_id is None:
            summary.left_alone.append(key)
            continue
        if subscriber is not None and unsubscribe_subscriber(db, subscriber, clock=clock):
            summary.unsubscribed += 1
        else:
            summary.already_unsubscribed += 1
        remove()
    return summary


def _requested(db: sqlite_utils.Database, signer: Signer, message: EmailMessage) -> tuple[int | None, dict | None]:
    """The first valid token in the subject or the text: (subscriber id, subscriber row or None if erased)."""
    for candidate in _REQUEST.findall(_searchable_text(message)):
        try:
            subscriber_id = signer.unsign(candidate, UNSUBSCRIBE)
        except BadToken:
            continue
        if isinstance(subscriber_id, int):
            return subscriber_id, get_by_id(db, subscriber_id)
    return None, None


def _searchable_text(message: EmailMessage) -> str:
    texts = [str(message.get("Subject", ""))]
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_attachment():
            try:
                texts.append(part.get_content()[:_BODY_CHARS])
            except (LookupError, UnicodeDecodeError):  # an unknown or lying charset: skip that part
                continue
    return "\n".join(texts)
