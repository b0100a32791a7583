"""Tampered, forged, wrong-purpose and expired tokens: a clear page in the visitor's language, 400/404, no change."""

from __future__ import annotations

import pytest
from web_support import LiveSite

from newsletter.signing import CONFIRM, PREFERENCES, UNSUBSCRIBE, Signer
from newsletter.subscribers import erase
from newsletter.suppressions import email_hash
from newsletter.web.tokens import sign_dated

ROUTES = {"preferences": ("/p/", PREFERENCES), "unsubscribe": ("/u/", UNSUBSCRIBE), "confirm": ("/confirm/", CONFIRM)}


def genuine(site: LiveSite, namespace: str, subscriber_id: int, signer: Signer | None = None) -> str:
    signer = signer or site.signer
    if namespace == CONFIRM:
        return sign_dated(signer, confirmation(site, subscriber_id, "en"), CONFIRM, site.clock)
    return signer.sign(subscriber_id, namespace)


def confirmation(site: LiveSite, subscriber_id: int, lang: str) -> dict:
    """What /subscribe puts in a confirmation token."""
    email = site.subscriber(subscriber_id)["email"] if site.subscriber(subscriber_id) else "x@example.org"
    return {"i": subscriber_id, "h": email_hash(email)[:16], "l": lang, "w": "yes"}


def bad_token(site: LiveSite, route: str, case: str, subscriber_id: int) -> str:
    namespace = ROUTES[route][1]
    if case == "tampered":
        token = genuine(site, namespace, subscriber_id)
        return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    if case == "other id spliced in":
        other = genuine(site, namespace, subscriber_id + 1)
        return other.split(".")[0] + "." + genuine(site, namespace, subscriber_id).split(".", 1)[1]
    if case == "forged with another key":
        return genuine(site, namespace, subscriber_id, Signer("somebody-elses-secret"))
    if case == "wrong purpose":
        return genuine(site, UNSUBSCRIBE if namespace != UNSUBSCRIBE else PREFERENCES, subscriber_id)
    return "not-a-token"


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("case", ["tampered", "other id spliced in", "forged with another key", "wrong purpose",
                                  "garbage"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_token_gets_a_clear_page_and_changes_nothing(site, route, case, method):
    carla = site.add_subscriber("carla@example.org", language="es", status="pending")
    site.add_subscriber("dora@example.org", language="es")
    before = [site.subscriber(carla["id"]), site.subscriber(carla["id"] + 1)]
    path = ROUTES[route][0] + bad_token(site, route, case, carla["id"])
    headers = {"Accept_Language": "pt-BR,pt;q=0.9,en;q=0.5"}
    answer = site.get(path, **headers) if method == "GET" else site.post(path, [("List-Unsubscribe", "One-Click")],
                                                                          **headers)
    assert answer.status in (400, 404)
    assert '<html lang="pt"' in answer.text and "Este link não funciona" in answer.text
    assert [site.subscriber(carla["id"]), site.subscriber(carla["id"] + 1)] == before


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_expired_confirmation_link_offers_to_subscribe_again(site, method):
    carla = site.add_subscriber("carla@example.org", language="fr", status="pending")
    token = sign_dated(site.signer, confirmation(site, carla["id"], "fr"), CONFIRM, site.clock)
    site.clock.advance(7 * 24 * 3600 + 1)
    answer = site.get(f"/confirm/{token}") if method == "GET" else site.post(f"/confirm/{token}", {})
    assert answer.status == 400
    assert "Ce lien de confirmation a expiré" in answer.text
    assert 'href="/subscribe?lang=fr"' in answer.text
    assert site.subscriber(carla["id"])["status"] == "pending"


def test_a_token_for_an_erased_subscriber_is_not_found(site):
    answer = site.get(f"/p/{site.signer.sign(999, PREFERENCES)}", Accept_Language="es")
    assert answer.status == 404 and "Este enlace no funciona" in answer.text


def test_an_erased_subscribers_id_is_never_given_to_a_newcomer(site):
    carla = site.add_subscriber("carla@example.org", language="es", status="pending")
    erase(site.db, "carla@example.org", clock=site.clock)
    newcomer = site.add_subscriber("newcomer@example.org", status="pending")
    assert newcomer["id"] > carla["id"]  # AUTOINCREMENT: old links can never name the newcomer


def test_a_confirmation_link_is_bound_to_the_address_not_only_the_row_id(site):
    carla = site.add_subscriber("carla@example.org", language="es", status="pending")
    newcomer = site.add_subscriber("newcomer@example.org", status="pending")
    # a genuinely signed token whose address hash is Carla's but whose row id is the newcomer's
    token = sign_dated(site.signer, {**confirmation(site, carla["id"], "es"), "i": newcomer["id"]}, CONFIRM,
                       site.clock)
    assert site.post(f"/confirm/{token}", {}).status == 400
    assert site.subscriber(newcomer["id"])["status"] == "pending"
