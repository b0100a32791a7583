"""One subscriber at a time: add and update, status and preferences, erasure that leaves no readable trace,
subject access export, the suppression list, and the CLI commands over them."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import subscribers, suppressions
from newsletter.cli import cli
from newsletter.clock import FakeClock
from newsletter.csvimport import import_csv
from newsletter.db import connect
from newsletter.normalize import InvalidValue
from newsletter.subscribers import Consent, SubscriberError

START = datetime(2026, 2, 1, 12, 0, tzinfo=timezone.utc)
SECRET_ADDRESS = "secret.person@example.org"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def count_rows(db_path: Path, table: str) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def add_delivery_and_bounce(db, subscriber: dict) -> None:
    """What the sender and the bounce processor leave behind for a subscriber."""
    db.execute("INSERT INTO deliveries (campaign, subscriber_id, email, status, created_at, updated_at) "
               "VALUES ('2026-01-digest', ?, ?, 'sent', 'x', 'x')", [subscriber["id"], subscriber["email"]])
    db.execute("INSERT INTO bounce_events (subscriber_id, email, kind, code, diagnostic, source, created_at) "
               "VALUES (?, ?, 'soft', '4.2.2', 'mailbox full', 'maildir', 'x')",
               [subscriber["id"], subscriber["email"]])


# --- add and update ----------------------------------------------------------------------------------


def test_add_stores_a_normalised_address_and_the_consent_record(db, clock):
    row = subscribers.add(db, "  Ana.Perez@Example.ORG ", name=" Ana   Pérez ", country="México",
                          interests=["DNSSEC", "policy"], clock=clock,
                          consent=Consent(source="form:web", ip="192.0.2.7", user_agent="Firefox",
                                          wording="Yes, send me the digest",
                                          at=datetime(2025, 12, 24, 9, 30, tzinfo=timezone.utc)))
    assert {key: row[key] for key in ("email", "name", "country", "language", "interests", "status", "created_at",
                                      "consent_at", "consent_source", "consent_ip", "consent_user_agent",
                                      "consent_wording")} == {
        "email": "ana.perez@example.org", "name": "Ana Pérez", "country": "MX", "language": "es",
        "interests": 0b110, "status": "active", "created_at": "2026-02-01T12:00:00Z",
        "consent_at": "2025-12-24T09:30:00Z", "consent_source": "form:web", "consent_ip": "192.0.2.7",
        "consent_user_agent": "Firefox", "consent_wording": "Yes, send me the digest"}
    assert subscribers.get(db, "ANA.PEREZ@example.org")["id"] == row["id"]


def test_adding_an_existing_address_in_another_case_updates_it_and_never_adds_a_row(db, db_path, clock):
    first = subscribers.add(db, "ana@example.org", name="Ana", country="MX", interests=["security"], clock=clock)
    clock.advance(60)
    second = subscribers.add(db, " ANA@example.org", name="Ana Pérez", country="BR", language="es",
                             interests=["grants"], clock=clock)
    assert second["id"] == first["id"]
    assert (second["name"], second["country"], second["language"], second["interests"]) == ("Ana Pérez", "BR",
                                                                                            "es", 0b10000)
    assert (second["created_at"], second["updated_at"]) == ("2026-02-01T12:00:00Z", "2026-02-01T12:01:00Z")
    assert count_rows(db_path, "subscribers") == 1


def test_adding_an_existing_address_keeps_the_fields_not_given(db, clock):
    """`newsletter subscribers add ana@x --country TT` must not wipe her name, language and interests."""
    subscribers.add(db, "ana@example.org", name="Ana Pérez", country="MX", language="es", interests=["security"],
                    clock=clock)
    row = subscribers.add(db, "ana@example.org", country="TT", clock=clock)
    assert (row["name"], row["country"], row["language"], row["interests"]) == ("Ana Pérez", "TT", "es", 0b10)


def test_adding_an_existing_address_does_not_reactivate_an_unsubscribed_person(db, clock):
    row = subscribers.add(db, "ana@example.org", clock=clock)
    subscribers.unsubscribe(db, row["id"], clock=clock)
    assert subscribers.add(db, "ana@example.org", status="active", clock=clock)["status"] == "unsubscribed"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"status": "subscribed"}, SubscriberError,
     "unknown status 'subscribed'; use one of pending, active, paused, unsubscribed, bounced, complained"),
    ({"country": "Atlantis"}, InvalidValue, "unknown country 'Atlantis'; use an ISO code such as TT or BR"),
    ({"language": "de"}, InvalidValue, "unsupported language 'de'; use one of en, es, pt, fr"),
    ({"name": "Ana\nBcc: x@example.org"}, InvalidValue,
     "contains a line break or control character; put the name on one line"),
])
def test_add_refuses_a_bad_value_and_writes_nothing(db, db_path, clock, kwargs, error, message):
    with pytest.raises(error) as raised:
        subscribers.add(db, "ana@example.org", clock=clock, **kwargs)
    assert str(raised.value) == message
    assert count_rows(db_path, "subscribers") == 0


def test_add_refuses_an_invalid_address(db, clock):
    with pytest.raises(InvalidValue, match="is not a valid address"):
        subscribers.add(db, "ana.example.org", clock=clock)
    assert subscribers.get(db, "ana.example.org") is None


# --- status and preferences --------------------------------------------------------------------------


def test_set_status_changes_status_and_pause_date(db, clock):
    row = subscribers.add(db, "ana@example.org", clock=clock)
    clock.advance(3600)
    subscribers.set_status(db, row["id"], "paused", clock=clock,
                           paused_until=datetime(2026, 6, 1, tzinfo=timezone.utc))
    paused = subscribers.get(db, "ana@example.org")
    assert (paused["status"], paused["paused_until"], paused["updated_at"]) == (
        "paused", "2026-06-01T00:00:00Z", "2026-02-01T13:00:00Z")
    subscribers.set_status(db, row["id"], "active", clock=clock)
    assert subscribers.get(db, "ana@example.org")["paused_until"] is None
    with pytest.raises(SubscriberError, match="unknown status 'gone'"):
        subscribers.set_status(db, row["id"], "gone", clock=clock)


def test_update_preferences_applies_the_form(db, clock):
    row = subscribers.add(db, "ana@example.org", name="Ana", country="MX", interests=["security"], clock=clock)
    updated = subscribers.update_preferences(db, row["id"], country="Trinidad y Tobago", language="fr",
                                             interests=["training", "grants"], name="Ana  P.", clock=clock)
    assert (updated["country"], updated["language"], updated["interests"], updated["name"]) == (
        "TT", "fr", 0b11000, "Ana P.")
    unchanged = subscribers.update_preferences(db, row["id"], interests=["policy"], clock=clock)
    assert (unchanged["country"], unchanged["language"], unchanged["interests"]) == ("TT", "fr", 0b100)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"country": "Atlantis"}, InvalidValue, "unknown country 'Atlantis'; use an ISO code such as TT or BR"),
    ({"language": "de"}, InvalidValue, "unsupported language 'de'; use one of en, es, pt, fr"),
    ({"language": ""}, SubscriberError, "unsupported language ''"),
    ({"interests": ["gardening"]}, InvalidValue,
     "unknown interest 'gardening'; known: infrastructure, security, policy, training, grants"),
])
def test_update_preferences_refuses_unknown_values_and_changes_nothing(db, clock, kwargs, error, message):
    row = subscribers.add(db, "ana@example.org", country="MX", interests=["security"], clock=clock)
    with pytest.raises(error) as raised:
        subscribers.update_preferences(db, row["id"], **kwargs, clock=clock)
    assert str(raised.value) == message
    assert subscribers.get(db, "ana@example.org") == row


def test_update_preferences_of_nobody_is_refused(db, clock):
    with pytest.raises(SubscriberError, match="no such subscriber"):
        subscribers.update_preferences(db, 999, country="TT", clock=clock)


# --- erasure -----------------------------------------------------------------------------------------


def test_erase_deletes_the_person_their_deliveries_and_bounces_and_keeps_only_a_hash(db, db_path, clock):
    other = subscribers.add(db, "other@example.org", clock=clock)
    add_delivery_and_bounce(db, other)
    person = subscribers.add(db, SECRET_ADDRESS, name="Secreta Persona", country="TT", clock=clock)
    add_delivery_and_bounce(db, person)
    assert subscribers.erase(db, "Secret.Person@Example.org", clock=clock) is True
    assert subscribers.get(db, SECRET_ADDRESS) is None
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT subscriber_id FROM deliveries").fetchall() == [(other["id"],)]
        assert conn.execute("SELECT subscriber_id FROM bounce_events").fetchall() == [(other["id"],)]
        assert conn.execute("SELECT email_hash, email, reason FROM suppressions").fetchall() == [
            (suppressions.email_hash(SECRET_ADDRESS), None, "erased")]


def test_after_erasure_the_address_is_nowhere_in_the_database_files(db, db_path, clock):
    for number in range(200):
        subscribers.add(db, f"person{number}@example.org", name=f"Person {number}", clock=clock)
    person = subscribers.add(db, SECRET_ADDRESS, name="Secreta Persona", country="TT", clock=clock,
                             consent=Consent(source="form:web", ip="198.51.100.77"))
    add_delivery_and_bounce(db, person)
    suppressions.suppress(db, SECRET_ADDRESS, "hard-bounce", "maildir", clock=clock)  # kept readable, for now
    subscribers.erase(db, SECRET_ADDRESS, clock=clock)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [path for path in (db_path, Path(f"{db_path}-wal")) if path.exists()]
    assert db_path in files
    for path in files:
        content = path.read_bytes()
        for trace in (SECRET_ADDRESS.encode(), b"Secreta Persona", b"198.51.100.77"):
            assert trace not in content, f"{trace!r} still in {path.name}"


def test_an_erased_address_is_not_imported_or_added_again(db, db_path, tmp_path, clock):
    subscribers.add(db, SECRET_ADDRESS, clock=clock)
    subscribers.erase(db, SECRET_ADDRESS, clock=clock)
    path = tmp_path / "again.csv"
    path.write_text(f"email,name\n{SECRET_ADDRESS.upper()},Back Again\nnew@example.org,New\n", encoding="utf-8")
    report = import_csv(db, path, clock=clock)
    assert (report.inserted, report.suppressed) == (1, 1)
    assert [p.describe(path) for p in report.notices] == [
        f"{path}, line 2, email: on the suppression list; not imported"]
    with pytest.raises(SubscriberError) as raised:
        subscribers.add(db, SECRET_ADDRESS, clock=clock)
    assert str(raised.value) == (f"{SECRET_ADDRESS} is on the suppression list; "
                                 "`newsletter suppressions remove` first")
    assert count_rows(db_path, "subscribers") == 1


def test_erasing_an_unknown_address_still_suppresses_it(db, clock):
    assert subscribers.erase(db, "never@example.org", clock=clock) is False
    assert suppressions.is_suppressed(db, "Never@Example.org")


# --- subject access ----------------------------------------------------------------------------------


def test_export_person_returns_everything_held(db, clock):
    person = subscribers.add(db, "ana@example.org", name="Ana", country="BR", interests=["security", "grants"],
                             clock=clock, consent=Consent(source="form:web", ip="192.0.2.1"))
    add_delivery_and_bounce(db, person)
    data = subscribers.export_person(db, "ANA@example.org")
    assert data["email"] == "ana@example.org"
    assert data["subscriber"]["interests"] == ["security", "grants"]
    assert {key: data["subscriber"][key] for key in ("name", "country", "language", "status", "consent_source",
                                                      "consent_ip")} == {
        "name": "Ana", "country": "BR", "language": "pt", "status": "active", "consent_source": "form:web",
        "consent_ip": "192.0.2.1"}
    assert data["deliveries"] == [{"campaign": "2026-01-digest", "status": "sent", "attempts": 0,
                                   "last_code": None, "last_text": None, "message_id": None, "created_at": "x",
                                   "sent_at": None}]
    assert data["bounce_events"] == [{"kind": "soft", "code": "4.2.2", "diagnostic": "mailbox full",
                                      "source": "maildir", "created_at": "x"}]
    assert data["suppression"] is None
    json.dumps(data)  # ready to hand over as JSON


def test_export_person_of_someone_not_held(db, clock):
    assert subscribers.export_person(db, "nobody@example.org") == {
        "email": "nobody@example.org", "subscriber": None, "suppression": None}
    subscribers.erase(db, "gone@example.org", clock=clock)
    assert subscribers.export_person(db, "gone@example.org") == {
        "email": "gone@example.org", "subscriber": None,
        "suppression": {"reason": "erased", "source": "erasure request", "created_at": "2026-02-01T12:00:00Z"}}


# --- suppressions ------------------------------------------------------------------------------------


def test_suppressions_are_added_listed_by_reason_and_removed(db, clock):
    suppressions.suppress(db, " Bounce@Example.org ", "hard-bounce", "maildir", clock=clock)
    clock.advance(60)
    suppressions.suppress(db, "manual@example.org", "manual", "asked by phone", clock=clock)
    clock.advance(60)
    subscribers.erase(db, "gone@example.org", clock=clock)
    gone_hash = suppressions.email_hash("gone@example.org")[:12]
    assert suppressions.list_suppressions(db) == [
        {"email": f"(erased: {gone_hash})", "reason": "erased", "source": "erasure request",
         "created_at": "2026-02-01T12:02:00Z"},
        {"email": "manual@example.org", "reason": "manual", "source": "asked by phone",
         "created_at": "2026-02-01T12:01:00Z"},
        {"email": "bounce@example.org", "reason": "hard-bounce", "source": "maildir",
         "created_at": "2026-02-01T12:00:00Z"}]
    assert [row["email"] for row in suppressions.list_suppressions(db, "manual")] == ["manual@example.org"]
    assert suppressions.is_suppressed(db, "BOUNCE@example.org")
    assert suppressions.unsuppress(db, "bounce@example.org") is True
    assert suppressions.unsuppress(db, "bounce@example.org") is False
    assert not suppressions.is_suppressed(db, "bounce@example.org")


def test_a_second_suppression_of_an_address_replaces_the_first(db, clock):
    suppressions.suppress(db, "a@example.org", "soft-bounce", "maildir", clock=clock)
    suppressions.suppress(db, "a@example.org", "complaint", "fbl", clock=clock)
    assert [(row["reason"], row["source"]) for row in suppressions.list_suppressions(db)] == [("complaint", "fbl")]


def test_an_unknown_suppression_reason_is_refused(db, clock):
    with pytest.raises(ValueError) as raised:
        suppressions.suppress(db, "a@example.org", "annoyed", clock=clock)
    assert str(raised.value) == ("unknown suppression reason 'annoyed'; use one of erased, hard-bounce, "
                                 "soft-bounce, complaint, manual, unsubscribed")


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def run_cli(tmp_path: Path):
    config = tmp_path / "newsletter.toml"
    config.write_text('[newsletter]\ndatabase = "data/test.db"\n', encoding="utf-8")

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, ["--config", str(config), *args], input=input,
                                  env={"NEWSLETTER_SECRET_KEY": "test-secret", "NEWSLETTER_CONFIG": None})

    return run


@pytest.fixture
def cli_db(tmp_path: Path):
    return connect(tmp_path / "data" / "test.db")


def test_cli_add_then_show_prints_the_subscriber(run_cli):
    result = run_cli("subscribers", "add", "Ana@Example.org", "--name", "Ana Pérez", "--country", "Brasil",
                     "--interest", "security", "--interest", "IXPs")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ana@example.org is active."
    result = run_cli("subscribers", "show", "ana@example.org")
    assert result.exit_code == 0, result.output
    lines = {tuple(cell.strip() for cell in line.strip("│").split("│")) for line in result.output.splitlines()
             if line.startswith("│")}
    assert {("name", "Ana Pérez"), ("status", "active"), ("country", "BR"), ("language", "pt"),
            ("interests", "infrastructure, security"), ("consent_source", "cli"), ("deliveries", "0")} <= lines


def test_cli_show_of_an_unknown_or_erased_address_exits_1(run_cli):
    result = run_cli("subscribers", "show", "nobody@example.org")
    assert (result.exit_code, result.output.strip()) == (1, "nobody@example.org is not a subscriber.")
    run_cli("subscribers", "erase", "--yes", "gone@example.org")
    result = run_cli("subscribers", "show", "gone@example.org")
    assert (result.exit_code, result.output.strip()) == (1, "gone@example.org is suppressed (no other data held).")


def test_cli_erase_asks_first_and_erases_on_yes(run_cli, cli_db):
    run_cli("subscribers", "add", "ana@example.org")
    result = run_cli("subscribers", "erase", "ana@example.org", input="n\n")
    assert result.exit_code == 1
    assert subscribers.get(cli_db, "ana@example.org") is not None
    result = run_cli("subscribers", "erase", "ana@example.org", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Erased ana@example.org: only a hashed suppression record remains." in " ".join(result.output.split())
    assert subscribers.get(cli_db, "ana@example.org") is None
    assert suppressions.is_suppressed(cli_db, "ana@example.org")


def test_cli_export_person_prints_json(run_cli):
    run_cli("subscribers", "add", "ana@example.org", "--country", "MX", "--interest", "grants")
    result = run_cli("subscribers", "export-person", "ANA@example.org")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["email"], data["subscriber"]["country"], data["subscriber"]["interests"], data["deliveries"]) == (
        "ana@example.org", "MX", ["grants"], [])


def test_cli_add_of_a_suppressed_address_is_one_error_line(run_cli):
    run_cli("suppressions", "add", "ana@example.org")
    result = run_cli("subscribers", "add", "ana@example.org")
    assert result.exit_code == 1
    assert " ".join(result.output.split()) == (
        "Error: ana@example.org is on the suppression list; `newsletter suppressions remove` first")


def test_cli_suppressions_add_list_remove(run_cli, cli_db):
    run_cli("subscribers", "add", "ana@example.org")
    result = run_cli("suppressions", "add", "Ana@Example.org", "--reason", "hard-bounce", "--note", "550 5.1.1")
    assert (result.exit_code, result.output.strip()) == (0, "Suppressed ana@example.org (hard-bounce).")
    assert subscribers.get(cli_db, "ana@example.org")["status"] == "bounced"
    result = run_cli("suppressions", "list")
    assert "ana@example.org" in result.output and "hard-bounce" in result.output and "550 5.1.1" in result.output
    result = run_cli("suppressions", "remove", "ana@example.org")
    assert (result.exit_code, result.output.strip()) == (0, "Removed ana@example.org from the suppression list.")
    result = run_cli("suppressions", "remove", "ana@example.org")
    assert result.exit_code == 1
    assert "ana@example.org is not suppressed" in result.output
