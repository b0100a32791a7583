"""VERP return paths: every bounce maps back to one delivery, and forged ones map to none."""

import re

import pytest

from newsletter.verp import parse_verp, verp_address

BOUNCE = "bounces@lac.example.org"
SECRET = "test-secret"


@pytest.mark.parametrize("delivery_id", [0, 1, 35, 36, 2596, 123_456_789, 2**63 - 1])
def test_parse_verp_returns_the_delivery_id_the_address_was_made_for(delivery_id):
    address = verp_address(BOUNCE, delivery_id, SECRET)
    assert parse_verp(address, BOUNCE, SECRET) == delivery_id


def test_verp_address_is_lowercase_base36_with_a_short_local_part():
    address = verp_address(BOUNCE, 2596, SECRET)
    assert re.fullmatch(r"bounces\+d204-[0-9a-z]{8}@lac\.example\.org", address)
    assert len(verp_address(BOUNCE, 2**63 - 1, SECRET).partition("@")[0]) < 40


def test_parse_verp_ignores_case_because_servers_uppercase_or_lowercase_addresses():
    address = verp_address(BOUNCE, 2596, SECRET)
    assert parse_verp(address.upper(), BOUNCE, SECRET) == 2596
    assert parse_verp(address, BOUNCE.upper(), SECRET) == 2596


def test_parse_verp_accepts_the_address_in_angle_brackets_or_with_a_display_name():
    address = verp_address(BOUNCE, 7, SECRET)
    assert parse_verp(f"<{address}>", BOUNCE, SECRET) == 7
    assert parse_verp(f"Bounces <{address}>", BOUNCE, SECRET) == 7


def test_parse_verp_rejects_a_changed_delivery_id_with_the_old_tag():
    address = verp_address(BOUNCE, 2596, SECRET)
    forged = address.replace("+d204-", "+d205-")
    assert parse_verp(forged, BOUNCE, SECRET) is None


def test_parse_verp_rejects_a_changed_tag():
    address = verp_address(BOUNCE, 2596, SECRET)
    local, domain = address.split("@")
    last = local[-1]
    forged = f"{local[:-1]}{'a' if last != 'a' else 'b'}@{domain}"
    assert parse_verp(forged, BOUNCE, SECRET) is None


def test_parse_verp_rejects_a_zero_padded_alias_of_a_valid_id():
    address = verp_address(BOUNCE, 2596, SECRET)
    assert parse_verp(address.replace("+d204-", "+d0204-"), BOUNCE, SECRET) is None


def test_parse_verp_rejects_an_address_signed_with_another_secret():
    address = verp_address(BOUNCE, 2596, "another-secret")
    assert parse_verp(address, BOUNCE, SECRET) is None


def test_a_tag_made_for_one_bounce_address_is_worthless_on_another():
    address = verp_address("bounces@other.example.org", 2596, SECRET)
    moved = address.replace("other.example.org", "lac.example.org")
    assert parse_verp(moved, BOUNCE, SECRET) is None


@pytest.mark.parametrize(
    "address",
    [
        "",
        "bounces@lac.example.org",
        "reader@example.net",
        "bounces+d204@lac.example.org",
        "bounces+x204-abcdefgh@lac.example.org",
        "bounces+d204-abcdefgh@example.net",
        "not an address at all",
        "@@@",
    ],
)
def test_parse_verp_returns_none_for_foreign_or_malformed_addresses(address):
    assert parse_verp(address, BOUNCE, SECRET) is None


@pytest.mark.parametrize(
    "bounce_address, delivery_id, secret, complaint",
    [
        ("bounces", 1, SECRET, "local@domain"),
        ("@lac.example.org", 1, SECRET, "local@domain"),
        (BOUNCE, -1, SECRET, "negative"),
        (BOUNCE, 1, "", "secret is empty"),
    ],
)
def test_verp_address_refuses_bad_settings_and_says_what_to_fix(
    bounce_address, delivery_id, secret, complaint
):
    with pytest.raises(ValueError, match=complaint):
        verp_address(bounce_address, delivery_id, secret)
