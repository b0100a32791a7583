"""/subscribe and /confirm over real HTTP, with a real SMTP server on loopback receiving the confirmation mail."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
from smtp_servers import FaultServer
from web_support import LiveSite, START

from newsletter.clock import FakeClock, utc_iso
from newsletter.subscribers import get, set_status
from newsletter.suppressions import suppress
from newsletter.web.throttle import Throttle

BROWSER = "Mozilla/5.0 (Linux; Android 14) WebTest/1.0"


@pytest.fixture
def site_settings(smtp):
    return {"smtp_url": smtp.url()}


def subscribe(site: LiveSite, email: str, **changes):
    form = site.get("/subscribe", Accept_Language="es").form("subscribe")
    fields = {"email": email, "name": "Ana Prieto", "country": "TT", "language": "es",
              "interests": ["security", "training"], "consent": "yes", **changes}
    return site.post(form.action, form.values(**fields), User_Agent=BROWSER)


def confirmation_link(smtp: FaultServer, address: str) -> str:
    [raw] = smtp.accepted_for(address)
    message = message_from_bytes(raw, policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    return re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text).group(0)


def test_the_form_asks_for_consent_in_the_visitors_language(site):
    page = site.get("/subscribe", Accept_Language="pt-BR,pt;q=0.9")
    assert '<html lang="pt"' in page.text
    assert "Sim, enviem LAC Internet Digest para este endereço." in page.text
    form = page.form("subscribe")
    assert form.method == "post"
    assert {"email", "name", "country", "language", "interests", "consent", "website"} <= set(form.choices)


def test_subscribing_and_confirming_end_to_end(site, smtp):
    answer = subscribe(site, "ana@example.org")
    assert answer.status == 200 and "Revise su bandeja de entrada" in answer.text
    pending = get(site.db, "ana@example.org")
    assert (pending["status"], pending["language"], pending["country"]) == ("pending", "es", "TT")

    [raw] = smtp.accepted_for("ana@example.org")
    assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")  # ready for any relay: CRLF, 7-bit
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == "Confirme su suscripción a LAC Internet Digest"
    assert message.get_body(("html",)).get_content().count("/confirm/") >= 1

    link = confirmation_link(smtp, "ana@example.org")
    page = site.get(link)
    assert page.status == 200 and get(site.db, "ana@example.org")["status"] == "pending"  # GET asks only
    site.clock.advance(3600)
    form = page.form("confirm")
    done = site.post(form.action, form.fields, User_Agent=BROWSER)
    assert done.status == 200 and "Su suscripción está confirmada" in done.text

    active = get(site.db, "ana@example.org")
    assert active["status"] == "active"
    assert active["interests"] == (1 << 1) | (1 << 3)
    assert active["consent_at"] == utc_iso(START.replace(hour=13))
    assert active["consent_ip"] == "127.0.0.1"
    assert active["consent_user_agent"] == BROWSER
    assert "/subscribe" in active["consent_source"] and "confirmed" in active["consent_source"]
    assert active["consent_wording"].startswith("Sí, envíen LAC Internet Digest a esta dirección.")


def test_the_answer_is_the_same_for_new_existing_and_suppressed_addresses(site, smtp):
    site.add_subscriber("old@example.org", name="Old Name", country="BR", language="pt", interests=["grants"])
    suppress(site.db, "gone@example.org", "hard-bounce", clock=site.clock)
    answers = [subscribe(site, address, name="Somebody Else") for address in
               ("new@example.org", "old@example.org", "gone@example.org")]
    assert len({(answer.status, answer.text) for answer in answers}) == 1
    old = get(site.db, "old@example.org")
    assert (old["name"], old["country"], old["status"]) == ("Old Name", "BR", "active")  # untouched until confirmed
    assert get(site.db, "gone@example.org") is None
    assert smtp.accepted_for("gone@example.org") == []


def test_an_unsubscribed_address_comes_back_with_its_new_choices_only_once_confirmed(site, smtp):
    old = site.add_subscriber("old@example.org", name="Old Name", country="BR", language="pt", interests=["grants"])
    set_status(site.db, old["id"], "unsubscribed", clock=site.clock)
    subscribe(site, "old@example.org", name="New Name", interests=["policy"])
    assert get(site.db, "old@example.org")["status"] == "unsubscribed"
    form = site.get(confirmation_link(smtp, "old@example.org")).form("confirm")
    site.post(form.action, form.fields)
    back = get(site.db, "old@example.org")
    assert (back["status"], back["name"], back["language"], back["interests"]) == ("active", "New Name", "es", 1 << 2)


def test_a_filled_honeypot_pretends_success_and_stores_nothing(site, smtp):
    answer = subscribe(site, "bot@example.org", website="http://spam.example")
    assert answer.status == 200 and "Revise su bandeja de entrada" in answer.text
    assert get(site.db, "bot@example.org") is None
    assert smtp.accepted == []


@pytest.mark.parametrize(("changes", "message"), [
    ({"consent": None}, "Marque esta casilla para suscribirse"),
    ({"email": "not an address"}, "Escriba una dirección de correo válida"),
    ({"country": "Atlantis"}, "Elija un país de la lista"),
])
def test_a_form_with_a_problem_comes_back_marked_and_stores_nothing(site, smtp, changes, message):
    email = changes.pop("email", "ana@example.org")
    answer = subscribe(site, email, **changes)
    assert answer.status == 400 and message in answer.text
    assert site.db.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 0
    assert smtp.accepted == []


def test_one_address_of_the_internet_may_submit_three_times_an_hour(site, smtp):
    for number in range(3):
        assert subscribe(site, f"person{number}@example.org").status == 200
    refused = subscribe(site, "person3@example.org")
    assert refused.status == 429 and "Demasiados intentos" in refused.text
    assert get(site.db, "person3@example.org") is None
    site.clock.advance(3600)
    assert subscribe(site, "person3@example.org").status == 200
    assert len(smtp.accepted) == 4


def test_one_email_address_may_be_submitted_three_times_an_hour_from_any_number_of_ips(site):
    client = site.app.test_client()  # the only way to come from several IPs on one machine
    statuses = []
    for number in range(4):
        answer = client.post("/subscribe", data={"email": "ana@example.org", "consent": "yes", "language": "en"},
                             environ_base={"REMOTE_ADDR": f"203.0.113.{number}"})
        statuses.append(answer.status_code)
    assert statuses == [200, 200, 200, 429]


def test_behind_a_trusted_proxy_each_visitor_has_their_own_limit_and_consent_ip(site, smtp):
    site.config.web.trusted_proxies = ["127.0.0.1"]
    form = site.get("/subscribe").form("subscribe")
    for number in range(4):
        answer = site.post(form.action, form.values(email=f"p{number}@example.org", consent="yes"),
                           X_Forwarded_For=f"10.9.9.9, 198.51.100.{number}")
        assert answer.status == 200
    assert get(site.db, "p3@example.org")["consent_ip"] == "198.51.100.3"  # the address the proxy saw


def test_forwarded_headers_are_not_believed_unless_the_peer_is_a_trusted_proxy(site, smtp):
    form = site.get("/subscribe").form("subscribe")  # trusted_proxies is empty by default
    statuses = [site.post(form.action, form.values(email=f"p{number}@example.org", consent="yes"),
                          X_Forwarded_For=f"198.51.100.{number}").status for number in range(4)]
    assert statuses == [200, 200, 200, 429]  # one client, whatever the header claims
    assert get(site.db, "p0@example.org")["consent_ip"] == "127.0.0.1"


def test_the_throttle_forgets_after_the_window():
    clock = FakeClock()
    throttle = Throttle(clock, limit=2, window_seconds=60)
    assert throttle.allow("a", "ip") and throttle.allow("b", "ip")
    assert not throttle.allow("c", "ip")  # the IP is used up
    assert throttle.allow("c", "other-ip")  # a refused attempt counts against nothing
    clock.advance(60)
    assert throttle.allow("d", "ip")


def test_a_confirmation_link_works_once_and_never_undoes_a_later_unsubscribe(site, smtp):
    subscribe(site, "ana@example.org", interests=["security"])
    link = confirmation_link(smtp, "ana@example.org")
    form = site.get(link).form("confirm")
    assert site.post(form.action, form.fields).status == 200
    ana = get(site.db, "ana@example.org")
    set_status(site.db, ana["id"], "unsubscribed", clock=site.clock)
    again = site.get(link)
    assert again.status == 400 and "ya se ha usado" in again.text
    assert site.post(form.action, form.fields).status == 400
    assert get(site.db, "ana@example.org")["status"] == "unsubscribed"


def test_a_link_mailed_before_a_preference_change_cannot_revert_it(site, smtp):
    from newsletter.subscribers import update_preferences

    subscribe(site, "ana@example.org", interests=["security"])
    form = site.get(confirmation_link(smtp, "ana@example.org")).form("confirm")
    pending = get(site.db, "ana@example.org")
    update_preferences(site.db, pending["id"], interests=["grants"], clock=site.clock)
    assert site.post(form.action, form.fields).status == 400
    assert get(site.db, "ana@example.org")["interests"] == 1 << 4


def test_the_answer_does_not_wait_for_the_mail(site, tmp_path):
    """The relay accepts the connection and never speaks: the visitor's page comes back all the same."""
    import socket

    from web_support import request

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    site.config.smtp_url = f"smtp://127.0.0.1:{silent.getsockname()[1]}"
    form = site.get("/subscribe", Accept_Language="es").form("subscribe")
    body = "&".join(f"{k}={v}" for k, v in form.values(email="ana%40example.org", name="Ana", country="TT",
                                                      consent="yes"))
    try:
        answer = request(site.absolute(form.action), "POST", body.encode(),
                         {"Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status == 200 and "Revise su bandeja de entrada" in answer.text
    finally:
        silent.close()  # the waiting job's connection is reset: it logs the failure and ends
        site.drain()
