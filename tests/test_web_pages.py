"""What every page of `newsletter serve` shares: safe headers, no cookies, problem pages in the visitor's language."""

from __future__ import annotations

import pytest
from web_support import make_config

from newsletter.config import ConfigError
from newsletter.web import create_app


def test_pages_keep_token_urls_out_of_referers_caches_and_frames(site):
    ana = site.add_subscriber("ana@example.org")
    for path in ("/subscribe", site.preferences_path(ana["id"]), site.unsubscribe_path(ana["id"])):
        headers = site.get(path).headers
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert headers["X-Frame-Options"] == "DENY"
        assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script at all
        assert "Set-Cookie" not in headers


def test_the_home_page_leads_to_the_subscribe_form(site):
    answer = site.get("/")
    assert answer.status == 302 and answer.headers["Location"].endswith("/subscribe")


@pytest.mark.parametrize(("accept", "title"), [("es-MX,es;q=0.9", "Página no encontrada"),
                                               ("fr", "Page introuvable"), ("de", "Page not found")])
def test_an_unknown_address_gets_a_page_in_the_visitors_language(site, accept, title):
    answer = site.get("/no/such/page", Accept_Language=accept)
    assert answer.status == 404 and f"<h1>{title}</h1>" in answer.text


def test_a_wrong_method_gets_a_page_not_a_traceback(site):
    answer = site.post("/archive/2026-12-lac-digest/en", {})
    assert answer.status == 405 and "<h1>Page not found</h1>" in answer.text


def test_the_app_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="secret"):
        create_app(make_config(tmp_path, secret_key=""))


def test_the_app_refuses_to_start_without_its_page_templates(tmp_path):
    with pytest.raises(ConfigError, match="templates_dir"):
        create_app(make_config(tmp_path, templates_dir=tmp_path / "nowhere"))
