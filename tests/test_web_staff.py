"""The staff pages over HTTP: who gets in (this machine, a login, nobody else), CSRF on every form, the
slow-down after failed logins, and every action doing what its button says through the library."""

from __future__ import annotations

import re
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from web_support import LiveSite, Page, read_forms

from newsletter import campaign_state, deliveries
from newsletter.campaigns import load_campaign
from newsletter.clock import utc_iso
from newsletter.subscribers import set_status
from newsletter.web.staff_access import hash_password

SLUG = "2026-12-lac-digest"
PASSWORD = "correct horse battery"
REMOTE = "198.51.100.7"  # a documentation address: not this machine
GET_ROUTES = ["/staff/", "/staff/audience", "/staff/audience?segment=country:TT", "/staff/audience/count?segment=x",
              f"/staff/campaigns/{SLUG}", f"/staff/campaigns/{SLUG}/confirm/pause", "/staff/live.json",
              "/staff/staff.js", f"/staff/campaigns/{SLUG}/report.csv", "/preview/", f"/preview/{SLUG}"]
ACTIONS = ["schedule", "unschedule", "pause", "resume", "cancel", "retry", "test"]


class Staff:
    """A browser's part: keeps the session cookie, reads the CSRF token from the page's forms."""

    def __init__(self, site: LiveSite, **headers: str) -> None:
        self.site = site
        self.headers = headers
        self.cookie = ""
        self.last_set_cookie = ""

    def _remember(self, page: Page) -> Page:
        for header in page.headers.get_all("Set-Cookie") or []:
            self.last_set_cookie = header
            morsel = SimpleCookie(header)["newsletter_staff"]
            self.cookie = f"newsletter_staff={morsel.value}"
        return page

    def _headers(self) -> dict:
        return {**self.headers, **({"Cookie": self.cookie} if self.cookie else {})}

    def get(self, path: str) -> Page:
        return self._remember(self.site.get(path, **self._headers()))

    def post(self, path: str, fields) -> Page:
        return self._remember(self.site.post(path, fields, **self._headers()))

    def token(self, path: str = f"/staff/campaigns/{SLUG}/confirm/test") -> str:
        page = self.get(path)
        return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def login(self, password: str = PASSWORD) -> Page:
        form = read_forms(self.get("/staff/login").text)["login"]
        return self.post(form.action, form.values(password=password))


@pytest.fixture
def sent(site):
    """The sample campaign sent to three subscribers through the Maildir transport, one of them failed."""
    from newsletter.sender import CampaignSender, prepare_campaign

    for number, country in enumerate(("TT", "BB", "BR")):
        site.add_subscriber(f"person{number}@example.org", country=country, language="es" if number else "en")
    campaign = prepare_campaign(site.config, site.db, SLUG, clock=site.clock)
    CampaignSender(site.config, campaign, clock=site.clock).run()
    site.db.execute("UPDATE deliveries SET status = 'failed', last_code = 550, last_text = 'no thanks' "
                    "WHERE email = 'person2@example.org'")
    return campaign


def with_password(site: LiveSite) -> None:
    site.config.web.staff_password = hash_password(PASSWORD)


# --- who gets in -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GET_ROUTES)
def test_every_staff_page_opens_from_this_machine_without_a_password(site, sent, path):
    assert Staff(site).get(path).status == 200


@pytest.mark.parametrize("path", GET_ROUTES)
def test_no_staff_page_opens_through_a_proxy_without_a_password(site, sent, path):
    assert Staff(site, X_Forwarded_For="203.0.113.5").get(path).status == 403


@pytest.mark.parametrize("path", GET_ROUTES)
def test_no_staff_page_opens_from_another_host_without_a_password(site, sent, path):
    client = site.app.test_client()
    assert client.get(path, environ_base={"REMOTE_ADDR": REMOTE}).status_code == 403


@pytest.mark.parametrize("action", ACTIONS)
def test_no_action_runs_from_another_host_even_with_a_valid_form(site, sent, action):
    token = Staff(site).token()
    client = site.app.test_client()
    answer = client.post(f"/staff/campaigns/{SLUG}/{action}", data={"csrf_token": token},
                         environ_base={"REMOTE_ADDR": REMOTE})
    assert answer.status_code == 403
    assert campaign_state.get(site.db, SLUG)["state"] == "sent"


@pytest.mark.parametrize("path", GET_ROUTES)
def test_with_a_password_every_page_asks_for_the_login_even_locally(site, sent, path):
    with_password(site)
    page = Staff(site).get(path)
    assert page.status == 303
    assert page.headers["Location"].startswith("/staff/login?next=")


@pytest.mark.parametrize("path", GET_ROUTES)
def test_after_the_login_every_page_opens_from_another_host(site, sent, path):
    with_password(site)
    staff = Staff(site)
    assert staff.login().status == 303
    client = site.app.test_client()
    client.set_cookie("newsletter_staff", staff.cookie.split("=", 1)[1])
    assert client.get(path, environ_base={"REMOTE_ADDR": REMOTE}).status_code == 200


def test_the_login_cookie_is_httponly_lax_and_secure_only_over_https(site):
    with_password(site)
    staff = Staff(site)
    assert staff.login().status == 303
    flags = staff.last_set_cookie.lower()
    assert "httponly" in flags and "samesite=lax" in flags and "secure" not in flags
    site.config.web.trusted_proxies = ["127.0.0.1"]
    proxied = Staff(site, X_Forwarded_For="203.0.113.5", X_Forwarded_Proto="https")
    assert proxied.login().status == 303
    assert "; secure" in proxied.last_set_cookie.lower()


def test_a_wrong_password_is_refused_and_the_stored_setting_is_only_a_hash(site):
    with_password(site)
    assert PASSWORD not in site.config.web.staff_password
    staff = Staff(site)
    page = staff.login("not the password")
    assert page.status == 401 and "That password is not right" in page.text
    assert staff.get("/staff/").status == 303


def test_failed_logins_slow_down_the_next_tries_from_that_address(site):
    with_password(site)
    staff = Staff(site)
    for _ in range(3):
        assert staff.login("wrong password!").status == 401
    refused = staff.login()  # from the fourth try on, each must wait
    assert refused.status == 429 and "wait 2 seconds" in refused.text  # even the right password
    site.clock.advance(2)
    assert staff.login("wrong password!").status == 401
    site.clock.advance(2)
    assert staff.login().status == 429  # twice as long after each further failure
    site.clock.advance(2)
    assert staff.login().status == 303
    assert staff.get("/staff/").status == 200


def test_logout_ends_the_session_for_good(site):
    with_password(site)
    staff = Staff(site)
    staff.login()
    kept = staff.cookie
    assert staff.post("/staff/logout", {"csrf_token": staff.token()}).status == 303
    assert staff.get("/staff/").status == 303
    staff.cookie = kept  # a copy of the old cookie is no good either
    assert staff.get("/staff/").status == 303


def test_a_new_password_ends_every_session(site):
    with_password(site)
    staff = Staff(site)
    staff.login()
    site.config.web.staff_password = hash_password("another good password")
    assert staff.get("/staff/").status == 303


def test_the_login_never_sends_anyone_to_another_site(site):
    with_password(site)
    staff = Staff(site)
    form = read_forms(staff.get("/staff/login?next=//evil.example/").text)["login"]
    assert staff.post(form.action, form.values(password=PASSWORD)).headers["Location"] == "/staff/"


# --- CSRF ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_needs_the_sessions_csrf_token(site, sent, action):
    staff = Staff(site)
    staff.token()
    assert staff.post(f"/staff/campaigns/{SLUG}/{action}", {}).status == 400
    other = Staff(site)
    stolen = other.token()  # a token of another session
    assert staff.post(f"/staff/campaigns/{SLUG}/{action}", {"csrf_token": stolen}).status == 400
    assert campaign_state.get(site.db, SLUG)["state"] == "sent"
    assert deliveries.counts(site.db, SLUG)["failed"] == 1


def test_login_and_logout_forms_need_the_csrf_token_too(site):
    with_password(site)
    staff = Staff(site)
    staff.get("/staff/login")
    assert staff.post("/staff/login", {"password": PASSWORD, "next": "/staff/"}).status == 400
    staff.login()
    assert staff.post("/staff/logout", {}).status == 400
    assert staff.get("/staff/").status == 200


# --- actions ---------------------------------------------------------------------------------------------


def act(staff: Staff, action: str, **fields) -> Page:
    confirm = staff.get(f"/staff/campaigns/{SLUG}/confirm/{action}")
    assert confirm.status == 200
    form = read_forms(confirm.text)["confirm"]
    answer = staff.post(form.action, form.values(**fields))
    assert answer.status == 303, answer.text
    return staff.get(answer.headers["Location"])


def test_schedule_and_unschedule_from_the_page(site):
    staff = Staff(site)
    later = (site.clock.now() + timedelta(days=3)).strftime("%Y-%m-%d %H:%M")
    page = act(staff, "schedule", at=later)
    assert "Scheduled for" in page.text
    row = campaign_state.get(site.db, SLUG)
    assert row["state"] == "scheduled" and row["send_at"].startswith(later[:10])
    assert later[:10] in staff.get("/staff/").text  # among the next sends
    page = act(staff, "unschedule")
    assert campaign_state.get(site.db, SLUG)["state"] == "draft"
    assert [entry["state"] for entry in campaign_state.history(site.db, SLUG)][-2:] == ["scheduled", "draft"]
    assert "Unscheduled" in page.text


def test_pause_resume_and_cancel_a_send_from_the_page(site):
    from newsletter.sender import prepare_campaign

    site.add_subscriber("ana@example.org")
    prepare_campaign(site.config, site.db, SLUG, clock=site.clock)  # queued and 'sending', nobody sent yet
    staff = Staff(site)
    act(staff, "pause")
    assert campaign_state.get(site.db, SLUG)["state"] == "paused"
    act(staff, "resume")
    assert campaign_state.get(site.db, SLUG)["state"] == "sending"
    page = act(staff, "cancel")
    assert campaign_state.get(site.db, SLUG)["state"] == "cancelled"
    assert "1 deliveries not sent yet were marked skipped" in page.text
    history = [entry["state"] for entry in campaign_state.history(site.db, SLUG)]
    assert history[-3:] == ["paused", "sending", "cancelled"]
    assert re.search(r"<strong>paused</strong>[^<]*: paused", page.text) or "paused" in page.text


def test_retry_failed_queues_them_again_and_the_campaign_sends_once_more(site, sent):
    staff = Staff(site)
    page = act(staff, "retry")
    assert "1 failed deliveries queued again" in page.text
    assert deliveries.counts(site.db, SLUG)["queued"] == 1
    assert campaign_state.get(site.db, SLUG)["state"] == "sending"


def test_retry_leaves_people_who_unsubscribed_since_alone(site, sent):
    person = site.db.execute("SELECT id FROM subscribers WHERE email = 'person2@example.org'").fetchone()[0]
    set_status(site.db, person, "unsubscribed", clock=site.clock)
    page = act(Staff(site), "retry")
    assert "No failed delivery could be retried" in page.text
    assert campaign_state.get(site.db, SLUG)["state"] == "sent"


def test_a_test_send_reaches_the_relay_and_a_reload_sends_nothing_more(tmp_path, smtp):
    with LiveSite.start(tmp_path, smtp_url=smtp.url()) as site:
        site.config.web.staff_addresses = ["editor@lac.example.org"]
        staff = Staff(site)
        page = act(staff, "test", extra="chief@lac.example.org")
        assert "editor@lac.example.org: sent; chief@lac.example.org: sent" in page.text
        assert len(smtp.accepted_for("editor@lac.example.org")) == 1
        assert len(smtp.accepted_for("chief@lac.example.org")) == 1
        staff.get(f"/staff/campaigns/{SLUG}?{page.text and ''}")  # the reload is a GET: nothing is sent
        assert len(smtp.accepted_for("editor@lac.example.org")) == 1
        assert deliveries.counts(site.db, SLUG)["sent"] == 0  # outside the delivery log


def test_an_action_the_state_does_not_allow_says_why_and_changes_nothing(site, sent):
    staff = Staff(site)
    answer = staff.post(f"/staff/campaigns/{SLUG}/resume", {"csrf_token": staff.token()})
    page = staff.get(answer.headers["Location"])
    assert "Not done: campaign 2026-12-lac-digest is sent; this needs it to be paused" in page.text
    assert campaign_state.get(site.db, SLUG)["state"] == "sent"


def test_a_forged_notice_is_not_shown(site, sent):
    page = Staff(site).get(f"/staff/campaigns/{SLUG}?notice=Your+account+is+locked")
    assert "Your account is locked" not in page.text


def test_unknown_campaigns_and_actions_are_404(site):
    staff = Staff(site)
    assert staff.get("/staff/campaigns/no-such-thing").status == 404
    assert staff.get(f"/staff/campaigns/{SLUG}/confirm/explode").status == 404
    assert staff.post(f"/staff/campaigns/{SLUG}/explode", {"csrf_token": staff.token()}).status == 404
    assert staff.get("/staff/campaigns/" + "a" * 300).status == 404


# --- what the pages show ---------------------------------------------------------------------------------


def test_the_campaign_report_shows_outcomes_replies_history_charts_and_the_csv(site, sent):
    person = site.db.execute("SELECT id FROM subscribers WHERE email = 'person1@example.org'").fetchone()[0]
    site.clock.advance(3600)
    set_status(site.db, person, "unsubscribed", clock=site.clock)
    staff = Staff(site)
    page = staff.get(f"/staff/campaigns/{SLUG}")
    assert re.search(r'id="unsubscribes">1<', page.text)
    assert "550" in page.text and "no thanks" in page.text
    assert page.text.count("<svg") >= 4 and "The figures as a table" in page.text
    assert "<strong>sending</strong>" in page.text and "<strong>sent</strong>" in page.text
    csv = staff.get(f"/staff/campaigns/{SLUG}/report.csv")
    assert csv.headers["Content-Type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("email,status,attempts") and len(lines) == 4
    assert "person2@example.org,failed" in csv.text


def test_the_dashboard_lists_next_digests_in_the_bureaus_zone_and_the_last_campaigns(site, sent):
    site.config.timezone = "America/Port_of_Spain"
    site.config.digest.rules = ["first tuesday of each month at 09:00 America/Port_of_Spain"]
    page = Staff(site).get("/staff/")
    # START is 2026-11-23: the next first Tuesdays are 1 December, 5 January and 2 February
    for day in ("2026-12-01 09:00 AST", "2027-01-05 09:00 AST", "2027-02-02 09:00 AST"):
        assert day in page.text
    recent = read_table(page.text, "recent")
    assert recent[0][2:] == ["2", "1", "0", "0"]  # sent, bounced/failed, complaints, unsubscribes


def test_the_live_progress_counts_what_the_delivery_log_says(site):
    from newsletter.sender import prepare_campaign

    for number in range(4):
        site.add_subscriber(f"p{number}@example.org")
    prepare_campaign(site.config, site.db, SLUG, clock=site.clock)
    now = utc_iso(site.clock.now())
    site.db.execute("UPDATE deliveries SET status = 'sent', sent_at = ?, updated_at = ? WHERE id IN "
                    "(SELECT id FROM deliveries ORDER BY id LIMIT 2)", [now, now])
    staff = Staff(site)
    assert 'data-live-slug="2026-12-lac-digest"' in staff.get("/staff/").text
    import json

    [live] = json.loads(staff.get(f"/staff/live.json?slug={SLUG}").text)["campaigns"]
    assert (live["sent"], live["queued"], live["percent"], live["state"]) == (2, 2, 50.0, "sending")
    assert live["rate"] == "2/min" and live["eta"] == "1 min 0 s"  # 2 left at 2 a minute


def test_the_segment_box_counts_and_explains_errors(site):
    site.add_subscriber("ana@example.org", country="TT", interests=["security"])
    site.add_subscriber("bo@example.org", country="BR")
    import json

    staff = Staff(site)
    assert json.loads(staff.get("/staff/audience/count?segment=country:TT").text)["count"] == 1
    answer = json.loads(staff.get("/staff/audience/count?segment=planet:mars").text)
    assert answer["count"] is None and "planet" in answer["error"]
    page = staff.get("/staff/audience?segment=country:TT,BR")
    assert "<strong>2</strong> subscribers" in page.text
    assert page.text.count("<svg") >= 8  # four charts, each drawn wide and narrow


def test_audience_history_counts_month_ends_from_the_rows_timestamps(db):
    from datetime import datetime, timezone

    from newsletter import stats
    from newsletter.clock import FakeClock
    from newsletter.subscribers import add

    clock = FakeClock(datetime(2026, 9, 10, tzinfo=timezone.utc))
    first = add(db, "a@example.org", clock=clock)
    add(db, "b@example.org", clock=clock)
    clock.set(datetime(2026, 10, 5, tzinfo=timezone.utc))
    add(db, "c@example.org", status="pending", clock=clock)
    set_status(db, first["id"], "unsubscribed", clock=clock)
    history = stats.audience_history(db, datetime(2026, 11, 2, tzinfo=timezone.utc))
    assert history.months == ["2026-09", "2026-10", "2026-11"]
    assert history.joined == [2, 0, 0]
    assert history.lost["unsubscribed"] == [0, 1, 0]
    assert history.at_month_end["subscribed"] == [2, 1, 1]
    assert history.at_month_end["pending"] == [0, 1, 1]
    assert history.at_month_end["unsubscribed"] == [0, 1, 1]


def read_table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.DOTALL).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.DOTALL)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row,
                                                                            re.DOTALL)] for row in rows]


def test_campaign_history_records_why_a_campaign_paused(db, tmp_path):
    from web_support import REPO

    campaign = load_campaign(REPO / "campaigns" / SLUG, None)
    campaign_state.register(db, campaign)
    campaign_state.set_state(db, SLUG, "sending")
    campaign_state.set_state(db, SLUG, "paused", reason="relay refused the login (535)")
    assert [(entry["state"], entry["reason"]) for entry in campaign_state.history(db, SLUG)] == [
        ("scheduled", "built"), ("sending", ""), ("paused", "relay refused the login (535)")]


def test_a_report_shown_again_follows_changes_made_since(site, sent):
    staff = Staff(site)
    assert re.search(r'id="unsubscribes">0<', staff.get(f"/staff/campaigns/{SLUG}").text)
    person = site.db.execute("SELECT id FROM subscribers WHERE email = 'person1@example.org'").fetchone()[0]
    site.clock.advance(60)
    set_status(site.db, person, "unsubscribed", clock=site.clock)
    assert re.search(r'id="unsubscribes">1<', staff.get(f"/staff/campaigns/{SLUG}").text)
    site.db.execute("UPDATE deliveries SET status = 'bounced', updated_at = '2026-11-23T13:00:00Z' "
                    "WHERE email = 'person0@example.org'")
    outcome = staff.get(f"/staff/campaigns/{SLUG}").text
    assert re.search(r"bounced <strong>1</strong>", outcome)


def test_set_password_stores_only_a_hash_and_keeps_the_rest_of_the_config(tmp_path):
    from click.testing import CliRunner

    from newsletter.cli import cli
    from newsletter.config import load_config
    from werkzeug.security import check_password_hash

    config = tmp_path / "newsletter.toml"
    config.write_text('# our settings\n[newsletter]\nlist_name = "Digest"\n\n[web]\nport = 9000  # the port\n'
                      '\n[digest]\nrules = []\n', encoding="utf-8")
    runner = CliRunner()
    for password in (PASSWORD, "a second good password"):
        result = runner.invoke(cli, ["--config", str(config), "staff", "set-password", "--password", password])
        assert result.exit_code == 0, result.output
    text = config.read_text(encoding="utf-8")
    assert PASSWORD not in text and "a second good password" not in text
    assert text.count("staff_password") == 1 and "# our settings" in text and "port = 9000  # the port" in text
    loaded = load_config(config)
    assert check_password_hash(loaded.web.staff_password, "a second good password")
    assert (loaded.web.port, loaded.list_name, loaded.digest.rules) == (9000, "Digest", [])
    short = runner.invoke(cli, ["--config", str(config), "staff", "set-password", "--password", "short"])
    assert short.exit_code != 0 and "at least 10 characters" in short.output
