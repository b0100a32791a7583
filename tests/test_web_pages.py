"""What every page of `newsletter serve` shares: safe headers, no cookies, problem pages in the visitor's language."""

from __future__ import annotations

import pytest
from web_support import make_config

from newsletter.config import ConfigError
from newsletter.packaged import TEMPLATES as PACKAGED_TEMPLATES
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


def test_a_missing_templates_dir_falls_back_to_the_packaged_pages(tmp_path):
    app = create_app(make_config(tmp_path, templates_dir=tmp_path / "nowhere"))
    page = app.test_client().get("/subscribe", headers={"Accept-Language": "es"})
    assert page.status_code == 200 and "<form" in page.get_data(as_text=True)


def test_a_page_of_the_bureaus_own_replaces_the_packaged_one_and_only_that_one(tmp_path):
    own = tmp_path / "templates" / "web"
    own.mkdir(parents=True)
    packaged = (PACKAGED_TEMPLATES / "web" / "subscribe.html").read_text(encoding="utf-8")
    (own / "subscribe.html").write_text(packaged.replace("</form>", "</form><p>Bureau's own footer</p>"),
                                        encoding="utf-8")
    client = create_app(make_config(tmp_path, templates_dir=tmp_path / "templates")).test_client()
    assert "Bureau's own footer" in client.get("/subscribe").get_data(as_text=True)
    assert client.get("/p/not-a-token").status_code == 404  # the problem page: still the packaged one
