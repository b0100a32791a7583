"""Per-delivery return paths (VERP), so every returned message names the delivery it is about.

Remote servers rewrite, trim or drop the headers of the mail they return, but they always send the
bounce to the envelope sender. Putting the delivery id there, signed with a short HMAC tag, lets us
trust the id: without the tag anyone could forge bounces and unsubscribe other people.

Shape: ``bounces+d<id in base36>-<8-char tag>@domain``, all lowercase because some servers
lowercase the addresses they return to. The tag covers the bounce address too, so a tag minted for
one list is worthless on another.
"""

from __future__ import annotations

import hmac
import re
from email.utils import parseaddr

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_TAG_LENGTH = 8  # 36**8 ~ 2**41 guesses, each costing the forger one sent message
_VERP_SUFFIX = re.compile(r"d([0-9a-z]{1,13})-([0-9a-z]{%d})" % _TAG_LENGTH)


def verp_address(bounce_address: str, delivery_id: int, secret: str) -> str:
    """The envelope sender for one delivery, e.g. ``bounces+d1z4-k3j9x2qa@lac.example.org``."""
    local, domain = _split_bounce_address(bounce_address)
    if delivery_id < 0:
        raise ValueError(f"delivery id {delivery_id} is negative; VERP encodes ids from 0 upwards")
    _check_secret(secret)
    return f"{local}+d{_base36(delivery_id)}-{_tag(local, domain, delivery_id, secret)}@{domain}"


def parse_verp(address: str, bounce_address: str, secret: str) -> int | None:
    """The delivery id in a VERP address, or None when it is not ours or its tag does not match."""
    local, domain = _split_bounce_address(bounce_address)
    _check_secret(secret)
    candidate = (parseaddr(address)[1] or address).strip().strip("<>").lower()
    candidate_local, _, candidate_domain = candidate.rpartition("@")
    if candidate_domain != domain or not candidate_local.startswith(local + "+"):
        return None
    match = _VERP_SUFFIX.fullmatch(candidate_local[len(local) + 1 :])
    if match is None:
        return None
    delivery_id = int(match[1], 36)
    if match[1] != _base36(delivery_id):  # "d01" would alias "d1"; only the form we mint is valid
        return None
    if not hmac.compare_digest(match[2], _tag(local, domain, delivery_id, secret)):
        return None
    return delivery_id


def _tag(local: str, domain: str, delivery_id: int, secret: str) -> str:
    signed = f"{local}@{domain}:{delivery_id}".encode()
    digest = hmac.digest(secret.encode(), signed, "sha256")
    return _base36(int.from_bytes(digest[:8], "big") % 36**_TAG_LENGTH).rjust(_TAG_LENGTH, "0")


def _base36(number: int) -> str:
    digits = ""
    while True:
        number, remainder = divmod(number, 36)
        digits = _DIGITS[remainder] + digits
        if number == 0:
            return digits


def _split_bounce_address(bounce_address: str) -> tuple[str, str]:
    local, at, domain = bounce_address.strip().lower().rpartition("@")
    if not at or not local or not domain or "@" in local:
        raise ValueError(
            f"bounce address {bounce_address!r} is not of the form local@domain; "
            "set it to the mailbox that receives returned mail, e.g. bounces@lac.example.org"
        )
    return local, domain


def _check_secret(secret: str) -> None:
    if not secret:
        raise ValueError("the VERP secret is empty; set the secret key so bounce tags are signed")
