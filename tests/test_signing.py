"""Signed tokens: one namespace per purpose; the fast path for ids is itsdangerous' own format."""

import pytest

from newsletter.signing import CONFIRM, PREFERENCES, UNSUBSCRIBE, BadToken, Signer


@pytest.mark.parametrize("value", [0, 1, 7, 123456, 987654321])
def test_the_fast_token_for_an_id_is_exactly_what_itsdangerous_makes(value):
    signer = Signer("a secret")
    assert signer.sign(value, UNSUBSCRIBE) == signer._serializer(UNSUBSCRIBE).dumps(value)


def test_a_huge_id_that_itsdangerous_would_compress_still_round_trips():
    signer = Signer("a secret")
    assert signer.unsign(signer.sign(10**12, UNSUBSCRIBE), UNSUBSCRIBE) == 10**12


def test_a_token_round_trips_in_its_own_namespace_only():
    signer = Signer("a secret")
    token = signer.sign(42, PREFERENCES)
    assert signer.unsign(token, PREFERENCES) == 42
    with pytest.raises(BadToken):
        signer.unsign(token, UNSUBSCRIBE)


def test_another_secret_or_an_altered_token_is_refused():
    token = Signer("a secret").sign(42, UNSUBSCRIBE)
    with pytest.raises(BadToken):
        Signer("another secret").unsign(token, UNSUBSCRIBE)
    with pytest.raises(BadToken):
        Signer("a secret").unsign(token[:-2] + ("AA" if not token.endswith("AA") else "BB"), UNSUBSCRIBE)


def test_a_timed_token_expires():
    signer = Signer("a secret")
    token = signer.sign({"i": 1}, CONFIRM, expires=True)
    assert signer.unsign(token, CONFIRM, max_age=60) == {"i": 1}
    with pytest.raises(BadToken) as error:
        signer.unsign(token, CONFIRM, max_age=-1)
    assert error.value.expired


def test_a_signer_needs_a_secret():
    with pytest.raises(ValueError):
        Signer("")
