"""The preference centre (/p/<token>) over real HTTP: shows and changes a subscriber's choices, safely."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from web_support import read_forms

from newsletter.web.preferences import months_later


def test_page_shows_the_subscribers_choices_in_their_language(site, ana):
    page = site.get(site.preferences_path(ana["id"]))
    assert page.status == 200
    assert '<html lang="es"' in page.text
    assert "Su suscripción" in page.text and "Seguridad y DNSSEC" in page.text
    form = page.form("preferences")
    assert ("interests", "security") in form.fields and ("country", "TT") in form.fields
    assert ("language", "es") in form.fields and ("name", "Ana Prieto") in form.fields
    assert set(form.choices["interests"]) == {"infrastructure", "security", "policy", "training", "grants"}
    assert {"TT", "BR", "DE"} <= set(form.choices["country"])


def test_saving_changes_country_interests_language_and_name(site, ana):
    path = site.preferences_path(ana["id"])
    form = site.get(path).form("preferences")
    answer = site.post(form.action, form.values(interests=["policy", "grants"], country="BR", language="pt",
                                                name="Ana P."))
    assert answer.status == 303
    stored = site.subscriber(ana["id"])
    assert (stored["country"], stored["language"], stored["name"]) == ("BR", "pt", "Ana P.")
    assert stored["interests"] == (1 << 2) | (1 << 4)
    after = site.get(answer.headers["Location"])
    assert '<html lang="pt"' in after.text and "Suas preferências foram salvas." in after.text


def test_clearing_every_interest_is_saved_as_none(site, ana):
    form = site.get(site.preferences_path(ana["id"])).form("preferences")
    assert site.post(form.action, form.values(interests=[])).status == 303
    assert site.subscriber(ana["id"])["interests"] == 0


@pytest.mark.parametrize("token_case", ["missing", "forged", "other subscriber", "expired"])
def test_a_post_without_a_valid_form_token_is_refused_and_changes_nothing(site, ana, token_case):
    bea = site.add_subscriber("bea@example.org", language="en")
    form = site.get(site.preferences_path(ana["id"])).form("preferences")
    token = {
        "missing": None,
        "forged": dict(form.fields)["form_token"][:-3] + "xyz",
        "other subscriber": dict(site.get(site.preferences_path(bea["id"])).form("preferences").fields)["form_token"],
        "expired": dict(form.fields)["form_token"],
    }[token_case]
    if token_case == "expired":
        site.clock.advance(2 * 3600 + 1)
    before = site.subscriber(ana["id"])
    answer = site.post(form.action, form.values(form_token=token, country="BR", interests=["grants"]))
    assert answer.status == 400
    assert "Sus cambios no se guardaron" in answer.text  # in the subscriber's language
    assert site.subscriber(ana["id"]) == before


def test_a_country_that_is_not_on_the_list_is_refused_and_changes_nothing(site, ana):
    form = site.get(site.preferences_path(ana["id"])).form("preferences")
    before = site.subscriber(ana["id"])
    answer = site.post(form.action, form.values(country="Atlantis", interests=["grants"]))
    assert answer.status == 400
    assert site.subscriber(ana["id"]) == before


@pytest.mark.parametrize(("months", "until"), [(1, "2026-12-23T12:00:00Z"), (3, "2027-02-23T12:00:00Z")])
def test_pausing_skips_the_chosen_number_of_months(site, ana, months, until):
    form = site.get(site.preferences_path(ana["id"])).form("pause")
    assert set(form.choices["months"]) == {"1", "2", "3"}
    assert site.post(form.action, form.values(months=months)).status == 303
    stored = site.subscriber(ana["id"])
    assert (stored["status"], stored["paused_until"]) == ("paused", until)


def test_a_paused_subscriber_can_resume(site, ana):
    path = site.preferences_path(ana["id"])
    pause = site.get(path).form("pause")
    site.post(pause.action, pause.values(months=2))
    page = site.get(path)
    assert "23 de enero de 2027" in page.text  # when the pause ends, in the subscriber's language
    resume = next(form for form in read_forms(page.text).values() if ("action", "resume") in form.fields)
    assert site.post(resume.action, resume.fields).status == 303
    stored = site.subscriber(ana["id"])
    assert (stored["status"], stored["paused_until"]) == ("active", None)


def test_the_unsubscribe_button_unsubscribes_at_once(site, ana):
    form = site.get(site.preferences_path(ana["id"])).form("unsubscribe")
    answer = site.post(form.action, form.fields)
    assert answer.status == 303
    assert site.subscriber(ana["id"])["status"] == "unsubscribed"
    assert "Se ha dado de baja" in site.get(answer.headers["Location"]).text


def test_markup_in_a_name_comes_out_escaped(site):
    mallory = site.add_subscriber("mallory@example.org", name='<script>alert("x")</script>', language="en")
    page = site.get(site.preferences_path(mallory["id"]))
    assert "<script>" not in page.text
    assert "Hello &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;," in page.text


def test_the_page_is_made_for_phones(site, ana):
    page = site.get(site.preferences_path(ana["id"]))
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    assert "min-height: 48px" in page.text  # tap targets of at least 48 CSS pixels


def test_months_later_stays_within_a_shorter_month():
    assert months_later(datetime(2027, 1, 31, 9, tzinfo=timezone.utc), 1) == datetime(2027, 2, 28, 9,
                                                                                       tzinfo=timezone.utc)
    assert months_later(datetime(2026, 11, 30, tzinfo=timezone.utc), 3) == datetime(2027, 2, 28, tzinfo=timezone.utc)


def test_subscribe_again_sends_a_fresh_confirmation_and_records_a_new_consent(tmp_path, smtp):
    import re
    from email import message_from_bytes, policy

    from web_support import LiveSite

    from newsletter.subscribers import set_status

    with LiveSite.start(tmp_path, smtp_url=smtp.url()) as site:
        ana = site.add_subscriber("ana@example.org", name="Ana", language="es", interests=["security"])
        set_status(site.db, ana["id"], "unsubscribed", clock=site.clock)
        page = site.get(site.preferences_path(ana["id"]))
        resume = next(form for form in read_forms(page.text).values() if ("action", "resume") in form.fields)
        answer = site.post(resume.action, resume.fields)
        assert answer.status == 303
        shown = site.get(answer.headers["Location"])
        assert "Hemos enviado un enlace de confirmación a ana@example.org" in shown.text
        assert site.subscriber(ana["id"])["status"] == "unsubscribed"  # not before the link is used
        [raw] = smtp.accepted_for("ana@example.org")
        text = message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()
        link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text).group(0)
        site.clock.advance(60)
        form = site.get(link).form("confirm")
        assert site.post(form.action, form.fields).status == 200
        back = site.subscriber(ana["id"])
        assert back["status"] == "active"
        assert back["consent_source"] == "preference centre: subscribe again, confirmed by the emailed link"
        assert back["consent_at"] == "2026-11-23T12:01:00Z" and back["consent_wording"].startswith("Sí, envíen")


def test_the_greeting_is_its_own_line_and_unsubscribing_shows_one_notice(site):
    leroy = site.add_subscriber("leroy@example.org", name="Leroy Knowles")
    page = site.get(site.preferences_path(leroy["id"]))
    assert '<p class="greeting">Hello Leroy Knowles,</p>' in page.text
    assert "Here you choose what" in page.text  # a sentence of its own, so its capital is right
    unsubscribe = page.form("unsubscribe")
    answer = site.post(unsubscribe.action, unsubscribe.fields)
    done = site.get(answer.headers["Location"])
    assert done.text.count('class="notice"') == 1 and "You are unsubscribed" in done.text
