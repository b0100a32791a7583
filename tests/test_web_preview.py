"""The staff preview over real HTTP: campaign list, an issue as one subscriber or segment gets it, warnings,
reload on change, test sends, and who may open it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from email import message_from_bytes, policy

import pytest
from web_support import REPO, make_config

from newsletter import campaign_state
from newsletter.campaigns import load_campaign
from newsletter.clock import FakeClock
from newsletter.message import MessageFactory
from newsletter.web import create_app

SLUG = "2026-12-lac-digest"


@pytest.fixture
def folders(tmp_path):
    """Editable copies of the sample campaign and the templates."""
    shutil.copytree(REPO / "campaigns" / SLUG, tmp_path / "campaigns" / SLUG)
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    return tmp_path


@pytest.fixture
def site_settings(folders, smtp):
    return {"campaigns_dir": folders / "campaigns", "templates_dir": folders / "templates", "smtp_url": smtp.url()}


@pytest.fixture
def site(site):
    """The shared site, with two staff addresses that test sends may go to."""
    site.config.web.staff_addresses = ["editor@lac.example.org", "desk@lac.example.org"]
    return site


def test_the_list_shows_each_campaign_with_title_article_count_and_state(site, folders):
    campaign_state.register(site.db, load_campaign(folders / "campaigns" / SLUG, site.config.tz), site.clock)
    broken = folders / "campaigns" / "2027-01-broken"
    broken.mkdir()
    (broken / "campaign.toml").write_text('title = "no subject"\n')
    page = site.get("/preview/")
    assert page.status == 200
    row = re.search(rf'<tr>\s*<td><a href="/preview/{SLUG}">{SLUG}</a></td>(.*?)</tr>', page.text, re.S).group(1)
    assert "December 2026 digest" in row and "<td>3</td>" in row and "scheduled" in row
    assert "2027-01-broken" in page.text and "subject.en" in page.text  # the error names the field


def test_an_issue_is_shown_as_a_chosen_subscriber_receives_it(site, ana):
    page = site.get(f"/preview/{SLUG}?email=ana@example.org")
    assert page.status == 200
    assert "as ana@example.org receives it: language es, country TT, interests security" in page.text
    headers = re.search(r'<pre id="headers">(.*?)</pre>', page.text, re.S).group(1)
    assert "To: Ana Prieto &lt;ana@example.org&gt;" in headers
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in headers and "Message-ID:" in headers
    text = re.search(r'<pre id="text-part">(.*?)</pre>', page.text, re.S).group(1)
    assert "Hola, Ana:" in text and "Lectores de Trinidad y Tobago" in text
    frame_url = re.search(r'<iframe id="issue-frame"[^>]* src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    frame = site.get(frame_url)
    links = MessageFactory(site.config, site.signer).links(ana["id"])
    assert links["preferences_url"] in frame.text and links["unsubscribe_url"] in frame.text
    assert "sandbox" in frame.headers["Content-Security-Policy"]


def test_an_issue_is_shown_for_a_segment_in_a_language(site):
    page = site.get(f"/preview/{SLUG}?segment=country:BR+interest:training&lang=pt")
    assert "segment &#39;country:BR interest:training&#39; in pt" in page.text
    frame = site.get(f"/preview/{SLUG}/frame?segment=country:BR+interest:training&lang=pt")
    assert '<html lang="pt"' in frame.text and "Olá, Ana," in frame.text


def test_the_page_offers_desktop_and_phone_widths(site):
    page = site.get(f"/preview/{SLUG}")
    assert 'data-width="700"' in page.text and 'data-width="375"' in page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text


def test_problems_in_the_issue_are_listed_as_warnings(site, folders):
    template = folders / "templates" / "email" / "digest.html"
    template.write_text(template.read_text().replace('<h1 class="title">', '<img src="banner.png"><h1 class="title">'))
    toml = folders / "campaigns" / SLUG / "campaign.toml"
    toml.write_text(toml.read_text().replace('file = "canto-internet-society.md"',
                                             'file = "canto-internet-society.md"\nurl = "files/report.pdf"'))
    page = site.get(f"/preview/{SLUG}")
    warnings = re.search(r"<h2>Warnings</h2>(.*?)</div>", page.text, re.S).group(1)
    assert "image without alt text" in warnings
    assert "link to a local file that does not exist: banner.png" in warnings
    assert "link to a local file that does not exist: files/report.pdf" in warnings
    (folders / "campaigns" / SLUG / "files").mkdir()
    (folders / "campaigns" / SLUG / "files" / "report.pdf").write_bytes(b"%PDF-1.4")
    assert "files/report.pdf" not in re.search(r"<h2>Warnings</h2>(.*?)</div>", site.get(f"/preview/{SLUG}").text,
                                               re.S).group(1)


def test_a_template_broken_mid_edit_is_reported_with_its_line_and_still_watched(site, folders):
    template = folders / "templates" / "email" / "digest.html"
    template.write_text(template.read_text().replace("{% for section in sections %}", "{% for section in %}", 1))
    page = site.get(f"/preview/{SLUG}")
    assert page.status == 200
    assert re.search(r"digest\.html, line \d+: ", page.text)
    assert f'data-version-url="/preview/{SLUG}/version"' in page.text


@pytest.mark.parametrize("edited", ["campaigns/2026-12-lac-digest/growing-skills.txt", "templates/email/digest.html"])
def test_the_version_changes_when_an_article_or_template_changes(site, folders, edited):
    version = json.loads(site.get(f"/preview/{SLUG}/version").text)["version"]
    path = folders / edited
    later = int(version) + 5_000_000_000  # an edit saved after everything else
    os.utime(path, ns=(later, later))
    assert json.loads(site.get(f"/preview/{SLUG}/version").text)["version"] != version
    page = site.get(f"/preview/{SLUG}")
    assert f'data-version-url="/preview/{SLUG}/version"' in page.text  # what the page's script polls


def test_a_test_send_reaches_staff_with_a_test_subject_and_harmless_links(site, smtp, ana):
    form = site.get(f"/preview/{SLUG}?email=ana@example.org").form("send-test")
    assert ("to", "editor@lac.example.org") in form.fields
    answer = site.post(form.action, form.values(extra="boss@lac.example.org"))
    assert answer.status == 303  # POST, redirect, GET
    page = site.get(answer.headers["Location"])
    assert page.status == 200 and "editor@lac.example.org: sent" in page.text
    site.get(answer.headers["Location"])  # a reload sends nothing again
    assert sorted(address for message in smtp.accepted for address in message.rcpt_tos) == [
        "boss@lac.example.org", "desk@lac.example.org", "editor@lac.example.org"]
    [raw] = smtp.accepted_for("boss@lac.example.org")
    message = message_from_bytes(raw, policy=policy.default)
    assert message["Subject"] == "[TEST] Boletín de Internet de ALC: aliados, escuelas y un encuentro en Montevideo"
    assert message["To"] == "Ana Prieto <boss@lac.example.org>"
    unsubscribe = re.search(r"<(http://[^>]+/u/[^>]+)>", message["List-Unsubscribe"]).group(1)
    clicked = site.get(unsubscribe)  # signed for nobody: clicking it in a test mail harms no one, and says so
    assert clicked.status == 200 and "A link from a test mail" in clicked.text
    assert site.post(unsubscribe, {"List-Unsubscribe": "One-Click"}).status == 200
    preferences = re.search(r'href="(http://[^"]+/p/[^"]+)"', message.get_body(("html",)).get_content()).group(1)
    assert "A link from a test mail" in site.get(preferences).text
    assert site.subscriber(ana["id"])["status"] == "active"


def test_the_preview_shows_subjects_decoded(site, ana):
    page = site.get(f"/preview/{SLUG}?email=ana@example.org")
    headers = re.search(r'<pre id="headers">(.*?)</pre>', page.text, re.S).group(1)
    assert "Subject: Boletín de Internet de ALC: aliados, escuelas" in headers
    assert "=?utf-8?" not in headers


@pytest.mark.parametrize("token", [None, "forged.token"])
def test_a_test_send_without_the_form_token_sends_nothing(site, smtp, token):
    form = site.get(f"/preview/{SLUG}").form("send-test")
    assert site.post(form.action, form.values(form_token=token)).status == 400
    assert smtp.accepted == []


def test_unknown_or_sneaky_campaign_names_are_not_found(site):
    for path in ("/preview/2099-none", "/preview/..%2F..%2Fetc", "/preview/2099-none/version"):
        assert site.get(path).status == 404


def test_a_request_through_a_proxy_counts_as_remote(site):
    assert site.get("/preview/", X_Forwarded_For="198.51.100.7").status == 403


def remote(app, path: str, password: str | None = None):
    headers = {}
    if password is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"staff:{password}".encode()).decode()
    return app.test_client().get(path, headers=headers, environ_base={"REMOTE_ADDR": "203.0.113.9"})


def test_without_a_password_the_preview_is_refused_to_other_machines(tmp_path):
    app = create_app(make_config(tmp_path), clock=FakeClock())
    answer = remote(app, "/preview/")
    assert answer.status_code == 403 and "Not available from here" in answer.get_data(as_text=True)


def test_with_a_password_other_machines_must_give_it(tmp_path):
    config = make_config(tmp_path)
    config.web.preview_password = "correct horse"
    app = create_app(config, clock=FakeClock())
    assert remote(app, "/preview/").status_code == 401
    assert remote(app, "/preview/").headers["WWW-Authenticate"].startswith("Basic ")
    assert remote(app, "/preview/", "wrong").status_code == 401
    assert remote(app, "/preview/", "correct horse").status_code == 200
