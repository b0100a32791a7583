"""Tokens whose age is measured on the application's clock, and the hidden form tokens made from them.

itsdangerous' own timed tokens read the wall clock; these carry their issue time inside the signed value
instead, so a test can age them with a FakeClock, and an expired token can still tell its language.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..signing import BadToken, Signer

FORM = "form"  # the namespace of hidden form (CSRF) tokens
FORM_MAX_AGE = 2 * 3600
CONFIRM_MAX_AGE = 7 * 24 * 3600


@dataclass(frozen=True)
class Dated:
    value: Any
    age_seconds: float


def sign_dated(signer: Signer, value: Any, namespace: str, clock: Clock) -> str:
    return signer.sign({"v": value, "t": int(clock.now().timestamp())}, namespace)


def read_dated(signer: Signer, token: str, namespace: str, clock: Clock) -> Dated:
    """The value and age of a genuine token; BadToken when it is forged, altered or for another purpose."""
    payload = signer.unsign(token, namespace)
    if not isinstance(payload, dict) or not isinstance(payload.get("t"), int) or "v" not in payload:
        raise BadToken("this link is not valid")
    return Dated(payload["v"], clock.now().timestamp() - payload["t"])


def form_token(signer: Signer, purpose: str, clock: Clock) -> str:
    """A hidden field that proves the form came from our page, for this subscriber, recently."""
    return sign_dated(signer, purpose, FORM, clock)


def form_token_is_valid(signer: Signer, token: str | None, purpose: str, clock: Clock) -> bool:
    if not token:
        return False
    try:
        dated = read_dated(signer, token, FORM, clock)
    except BadToken:
        return False
    return (isinstance(dated.value, str) and hmac.compare_digest(dated.value, purpose)
            and 0 <= dated.age_seconds <= FORM_MAX_AGE)


def signed_notice(signer: Signer, token: str | None, purpose: str) -> str:
    """A message carried across a redirect (after a test send, an action); signed for its page's purpose,
    so that no link can put words on a staff page. Empty when absent or not ours."""
    if not token:
        return ""
    try:
        value = signer.unsign(token, purpose)
    except BadToken:
        return ""
    return value if isinstance(value, str) else ""
