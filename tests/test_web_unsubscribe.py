"""/u/<token> over real HTTP: GET only asks, POST (RFC 8058 one-click, either encoding) unsubscribes at once."""

from __future__ import annotations

import pytest
from web_support import request

from newsletter.message import MessageFactory
from newsletter.subscribers import set_status


@pytest.fixture
def bea(site):
    return site.add_subscriber("bea@example.org", name="Béa", country="HT", language="fr", interests=["policy"])


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_opening_the_link_only_asks_and_changes_nothing(site, bea, method):
    answer = request(site.absolute(site.unsubscribe_path(bea["id"])), method)
    assert answer.status == 200
    assert site.subscriber(bea["id"])["status"] == "active"
    if method == "GET":
        assert "Vous désabonner de LAC Internet Digest ?" in answer.text
        form = answer.form("unsubscribe")
        assert (form.method, form.action) == ("post", site.unsubscribe_path(bea["id"]))


def test_one_click_post_urlencoded_unsubscribes_at_once(site, bea):
    answer = site.post(site.unsubscribe_path(bea["id"]), [("List-Unsubscribe", "One-Click")])
    assert answer.status == 200
    assert site.subscriber(bea["id"])["status"] == "unsubscribed"
    assert "Set-Cookie" not in answer.headers
    assert "Vous êtes désabonné" in answer.text


def test_one_click_post_multipart_unsubscribes_at_once(site, bea):
    answer = site.post_multipart(site.unsubscribe_path(bea["id"]), [("List-Unsubscribe", "One-Click")])
    assert answer.status == 200
    assert site.subscriber(bea["id"])["status"] == "unsubscribed"


def test_the_link_in_a_built_message_is_the_one_that_works(site, bea):
    links = MessageFactory(site.config, site.signer).links(bea["id"])
    assert links["unsubscribe_url"].startswith(site.url + "/u/")
    assert request(links["unsubscribe_url"], "POST", b"List-Unsubscribe=One-Click",
                   {"Content-Type": "application/x-www-form-urlencoded"}).status == 200
    assert site.subscriber(bea["id"])["status"] == "unsubscribed"


def test_the_pages_own_button_unsubscribes(site, bea):
    form = site.get(site.unsubscribe_path(bea["id"])).form("unsubscribe")
    assert site.post(form.action, form.fields).status == 200
    assert site.subscriber(bea["id"])["status"] == "unsubscribed"


def test_posting_twice_is_harmless(site, bea):
    for _ in range(2):
        assert site.post(site.unsubscribe_path(bea["id"]), [("List-Unsubscribe", "One-Click")]).status == 200
    assert site.subscriber(bea["id"])["status"] == "unsubscribed"


def test_a_bounced_address_keeps_its_stronger_status(site, bea):
    set_status(site.db, bea["id"], "bounced", clock=site.clock)
    assert site.post(site.unsubscribe_path(bea["id"]), [("List-Unsubscribe", "One-Click")]).status == 200
    assert site.subscriber(bea["id"])["status"] == "bounced"


def test_a_preferences_token_cannot_unsubscribe(site, bea):
    wrong_purpose = site.preferences_path(bea["id"]).replace("/p/", "/u/")
    answer = site.post(wrong_purpose, [("List-Unsubscribe", "One-Click")])
    assert answer.status == 404
    assert site.subscriber(bea["id"])["status"] == "active"
