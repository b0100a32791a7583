"""DKIM signatures made by MessageFactory verify with dkimpy and protect the unsubscribe headers."""

from __future__ import annotations

import base64
import email
import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dkim
import pytest

from newsletter.campaigns import load_campaign
from newsletter.config import Config
from newsletter.db import connect
from newsletter.interests import Taxonomy
from newsletter.message import DkimKey, MessageFactory, new_message_id
from newsletter.render import IssueRenderer
from newsletter.signing import Signer

serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization",
                                    reason="generating a test RSA key needs the cryptography package")
rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")

ROOT = Path(__file__).resolve().parents[1]
DOMAIN, SELECTOR = "lac.example.org", "nl2026"
NOW = datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc)


class Keys:
    """An RSA key pair and the DNS TXT record that publishes its public half."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self.record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def dns(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's dnsfunc: the TXT record for selector._domainkey.domain, nothing else."""
        return self.record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def signed(keys, tmp_path_factory) -> bytes:
    """One complete signed message, for a subscriber with a non-ASCII name."""
    config = Config(templates_dir=ROOT / "templates", secret_key="dkim-tests", base_url="https://news.example.org",
                    unsubscribe_mailto="unsubscribe@lac.example.org", sender_address=f"news@{DOMAIN}")
    taxonomy = Taxonomy.load(connect(tmp_path_factory.mktemp("dkim") / "newsletter.db"))
    campaign = load_campaign(ROOT / "campaigns" / "2026-12-lac-digest", ZoneInfo("UTC"))
    variant = IssueRenderer(campaign, config, taxonomy).variant("es", frozenset({"security"}), "TT")
    factory = MessageFactory(config, Signer(config.secret_key), DkimKey(DOMAIN, SELECTOR, keys.private_pem))
    subscriber = {"id": 42, "email": "jose@example.org", "name": "José Núñez", "language": "es",
                  "interests": 0, "country": "TT"}
    return factory.build(variant, subscriber, message_id=new_message_id(campaign.slug, 1, DOMAIN), now=NOW)


def signed_headers(message: bytes) -> list[str]:
    """The h= tag of the DKIM-Signature, as a list of lower-case names."""
    value = " ".join(email.message_from_bytes(message)["DKIM-Signature"].split())
    tags = dict(tag.strip().partition("=")[::2] for tag in value.split(";") if tag.strip())
    return [name.strip().lower() for name in tags["h"].split(":")]


def test_key_from_file_reads_the_pem(keys, tmp_path):
    path = tmp_path / "dkim.pem"
    path.write_bytes(keys.private_pem)
    assert DkimKey.from_file(DOMAIN, SELECTOR, path) == DkimKey(DOMAIN, SELECTOR, keys.private_pem)


def test_signed_message_verifies_with_dkimpy(signed, keys):
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=keys.dns)


def test_signature_covers_the_unsubscribe_headers_and_the_identity_headers(signed):
    covered = signed_headers(signed)
    for name in ("from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
                 "list-unsubscribe-post", "mime-version", "content-type"):
        assert name in covered, f"{name} not in h="


def test_a_changed_list_unsubscribe_fails_verification(signed, keys):
    tampered = re.sub(rb"List-Unsubscribe: <https://news\.example\.org/u/",
                      b"List-Unsubscribe: <https://evil.example.net/u/", signed)
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=keys.dns)


def test_a_changed_one_click_header_fails_verification(signed, keys):
    tampered = signed.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                              b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks")
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=keys.dns)


def test_a_changed_body_fails_verification(signed, keys):
    tampered = signed.replace(b"https://lac.example.org/", b"https://evil.example.net/", 1)
    assert tampered != signed
    assert not dkim.verify(tampered, dnsfunc=keys.dns)


@pytest.mark.parametrize("header", [b"List-Unsubscribe: <https://evil.example.net/u/x>",
                                    b"From: Bureau <news@evil.example.net>",
                                    b"Subject: Urgent: confirm your account"])
def test_an_added_copy_of_a_signed_header_fails_verification(signed, keys, header):
    """A relay or attacker who adds a second List-Unsubscribe (or From, Subject) above the signed one must
    break the signature: readers show the first copy. RFC 6376 section 8.15 and M3AAWG call this
    over-signing: each protected header named once more in h= than it occurs."""
    assert not dkim.verify(header + b"\r\n" + signed, dnsfunc=keys.dns)


def test_a_signature_from_another_key_fails_verification(signed):
    stranger = Keys()
    assert not dkim.verify(signed, dnsfunc=stranger.dns)
