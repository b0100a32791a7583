"""The commands people use for returned mail: `newsletter bounces process`, `newsletter suppressions` and
`newsletter report`, run through click's CliRunner against a real project (config file, SQLite database,
a campaign sent through a loopback SMTP server, and a Maildir of returned messages)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from bounce_support import HOUR, Newsroom, delivery, make_maildir, returned_message, suppression_rows
from sending_support import SLUG

from newsletter import subscribers
from newsletter.cli import cli
from newsletter.config import CONFIG_ENV, SECRET_ENV, SMTP_ENV

HARD, SOFT, COMPLAINED, AWAY, WRITER = (
    "hard@example.org", "soft@example.org", "complained@example.org", "away@example.org", "writer@example.org")
RETURNED = {
    HARD: "postfix_user_unknown.eml",
    SOFT: "postfix_mailbox_full_delayed.eml",
    COMPLAINED: "arf_hotmail_complaint.eml",
    AWAY: "out_of_office_es.eml",
    WRITER: "human_reply.eml",
}


def run(config_path: Path, *args: str) -> Result:
    """One `newsletter --config ... <args>` run, with no setting leaking in from the environment."""
    runner = CliRunner(env={CONFIG_ENV: None, SECRET_ENV: None, SMTP_ENV: None})
    return runner.invoke(cli, ["--config", str(config_path), *args], catch_exceptions=False)


def table_rows(output: str) -> list[list[str]]:
    """The cells of every body row of the rich tables in `output`."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")]
            for line in output.splitlines() if line.strip().startswith("│")]


@pytest.fixture
def project(tmp_path, smtp):
    """The campaign sent to five subscribers; one returned message each waits in a Maildir that is NOT the
    one in the config, so the commands must use --mailbox."""
    room = Newsroom(tmp_path, smtp)
    room.subscribe(*RETURNED)
    room.send()
    room.later(HOUR)
    elsewhere = make_maildir(tmp_path / "elsewhere")
    for number, (email, name) in enumerate(RETURNED.items()):
        verp = delivery(room.db, room.config, email).verp
        (elsewhere / "new" / f"{number}.{name}").write_bytes(returned_message(name, verp=verp, recipient=email))
    yield room, elsewhere
    room.db.conn.close()


def test_bounces_process_reads_the_mailbox_given_and_prints_messages_per_kind_and_the_actions(project):
    room, elsewhere = project
    result = run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    assert result.exit_code == 0, result.output
    assert "5 messages read" in result.output
    assert sorted(row for row in table_rows(result.output)) == sorted(
        [["autoreply", "1"], ["complaint", "1"], ["hard", "1"], ["soft", "1"], ["unknown", "1"]])
    assert f"{HARD}: suppressed (hard bounce)" in result.output
    assert f"{COMPLAINED}: unsubscribed (complaint)" in result.output
    assert "1 reports matched no delivery or subscriber: kept for review" in result.output  # the human reply
    assert subscribers.get(room.db, HARD)["status"] == "bounced"
    assert list((elsewhere / "new").iterdir()) == []
    assert [path.name.partition(":")[0] for path in (elsewhere / ".review" / "cur").iterdir()] == ["4.human_reply.eml"]
    changed = [line for line in result.output.splitlines() if ": suppressed" in line or ": unsubscribed" in line]
    assert changed == [f"{HARD}: suppressed (hard bounce)", f"{COMPLAINED}: unsubscribed (complaint)"]
    assert "1 events logged without changing anyone's state." in result.output  # the soft bounce


def test_bounces_process_uses_the_configured_mailbox_when_none_is_given(project):
    room, _ = project
    result = run(room.config.path, "bounces", "process")
    assert result.exit_code == 0, result.output
    assert "0 messages read" in result.output


def test_bounces_process_with_no_mailbox_anywhere_says_how_to_set_one(project):
    room, _ = project
    text = room.config.path.read_text(encoding="utf-8")
    room.config.path.write_text(re.sub(r'(?m)^mailbox = ".*"$', 'mailbox = ""', text), encoding="utf-8")
    result = run(room.config.path, "bounces", "process")
    assert result.exit_code == 1
    assert "no bounce mailbox: set [bounces] mailbox in the config or pass --mailbox" in result.output


def test_suppressions_add_with_reason_hard_bounce_marks_the_subscriber_bounced(project):
    room, _ = project
    result = run(room.config.path, "suppressions", "add", "Writer@Example.org", "--reason", "hard-bounce",
                 "--note", "mailbox closed, said the IT desk")
    assert result.exit_code == 0, result.output
    assert f"Suppressed {WRITER} (hard-bounce)." in result.output
    assert subscribers.get(room.db, WRITER)["status"] == "bounced"
    assert [(row["reason"], row["source"]) for row in suppression_rows(room.db, WRITER)] == [
        ("hard-bounce", "mailbox closed, said the IT desk")]


def test_suppressions_add_manual_keeps_the_subscriber_but_the_address_is_listed(project):
    room, _ = project
    result = run(room.config.path, "suppressions", "add", AWAY)
    assert result.exit_code == 0, result.output
    assert subscribers.get(room.db, AWAY)["status"] == "active"
    assert [row["reason"] for row in suppression_rows(room.db, AWAY)] == ["manual"]


def test_suppressions_list_shows_each_address_with_its_reason_and_date(project):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    run(room.config.path, "suppressions", "add", AWAY, "--note", "phone")
    result = run(room.config.path, "suppressions", "list")
    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in table_rows(result.output) if row[0]}
    assert set(rows) == {HARD, COMPLAINED, AWAY}
    for email, reason in ((HARD, "hard-bounce"), (COMPLAINED, "complaint"), (AWAY, "manual")):
        [stored] = suppression_rows(room.db, email)
        assert rows[email][1] == reason
        assert stored["created_at"] in result.output
    only_complaints = run(room.config.path, "suppressions", "list", "--reason", "complaint")
    assert {row[0] for row in table_rows(only_complaints.output) if row[0]} == {COMPLAINED}


def test_suppressions_remove_takes_the_address_off_the_list_once(project):
    room, _ = project
    run(room.config.path, "suppressions", "add", SOFT, "--reason", "soft-bounce")
    removed = run(room.config.path, "suppressions", "remove", SOFT)
    assert removed.exit_code == 0, removed.output
    assert f"Removed {SOFT} from the suppression list." in removed.output
    assert suppression_rows(room.db, SOFT) == []
    assert subscribers.get(room.db, SOFT)["status"] == "bounced"  # they must opt in again to be mailed
    again = run(room.config.path, "suppressions", "remove", SOFT)
    assert again.exit_code == 1
    assert f"{SOFT} is not suppressed" in again.output


def test_report_shows_the_bounce_events_of_the_campaign_per_kind_and_source(project):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    result = run(room.config.path, "report", SLUG)
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert ["bounced", "1"] in rows and ["sent", "4"] in rows
    assert sorted(row for row in rows if row[0] in ("hard", "soft", "complaint")) == [
        ["complaint", "arf", "1"], ["hard", "dsn", "1"], ["soft", "dsn", "1"]]
    assert any(row[0] == HARD and row[1] == "bounced" for row in rows)  # the problem deliveries


def test_report_csv_writes_the_whole_delivery_log(project, tmp_path):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    log = tmp_path / "log.csv"
    result = run(room.config.path, "report", SLUG, "--csv", str(log))
    assert result.exit_code == 0, result.output
    assert "5 deliveries written to" in result.output
    rows = list(csv.DictReader(io.StringIO(log.read_text(encoding="utf-8"))))
    assert {row["email"]: row["status"] for row in rows} == {
        HARD: "bounced", SOFT: "sent", COMPLAINED: "sent", AWAY: "sent", WRITER: "sent"}
    assert all(row["message_id"] and row["sent_at"] for row in rows)


def test_a_delivery_bounced_by_a_returned_report_shows_the_remote_servers_reason_in_the_log(project, tmp_path):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    log = tmp_path / "log.csv"
    run(room.config.path, "report", SLUG, "--csv", str(log))
    [row] = [row for row in csv.DictReader(io.StringIO(log.read_text(encoding="utf-8"))) if row["email"] == HARD]
    assert row["status"] == "bounced"
    assert row["last_enhanced"] == "5.1.1"
    assert "User unknown" in row["last_text"]


def test_report_of_a_campaign_never_sent_says_so(project):
    room, _ = project
    result = run(room.config.path, "report", "1999-01-nothing")
    assert result.exit_code == 1
    assert "no deliveries for '1999-01-nothing'" in result.output


def test_bounces_unmatched_lists_each_kept_report_with_sender_subject_and_reason(project):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    result = run(room.config.path, "bounces", "unmatched")
    assert result.exit_code == 0, result.output
    assert "Kept for review" in result.output
    [row] = [row for row in table_rows(result.output) if row[0].isdigit()]
    assert row[2].startswith("writer@") and row[3].startswith("Re:")  # long cells fold onto the next lines
    reason = " ".join(row[5] for row in table_rows(result.output) if len(row) == 6)
    assert " ".join(reason.split()).startswith("not a bounce or complaint")


def test_bounces_unmatched_reprocess_runs_them_again_and_says_what_changed(project):
    room, elsewhere = project
    run(room.config.path, "bounces", "process", "--mailbox", f"maildir://{elsewhere}")
    result = run(room.config.path, "bounces", "unmatched", "--reprocess")
    assert result.exit_code == 0, result.output
    assert "1 messages read" in result.output
    assert "1 reports matched no delivery or subscriber: kept for review" in result.output
    room.db.execute("DELETE FROM bounce_reviews")
    assert "No report is waiting for review." in run(room.config.path, "bounces", "unmatched").output
