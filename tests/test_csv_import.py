"""CSV import and export: every fault and quirk of tests/corpus/csv gets its exact message, the good rows
land in the real SQLite file, and an import is streamed, batched, repeatable and interruptible."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import tracemalloc
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import pytest
from click.testing import CliRunner

from newsletter import subscribers
from newsletter.cli import cli
from newsletter.clock import FakeClock
from newsletter.csvexport import export_csv
from newsletter.csvimport import ImportFileError, import_csv
from newsletter.db import SEED_INTERESTS, STATUSES, connect

CORPUS = Path(__file__).parent / "corpus" / "csv"
START = datetime(2026, 1, 1, tzinfo=timezone.utc)
NOW = "2026-01-01T00:00:00Z"
EVERY_STATUS = "status:" + ",".join(STATUSES)


def stored_rows(db_path: Path) -> list[tuple]:
    """(email, name, country, language, interests, status) as a separate connection reads them from disk."""
    bits = {bit: slug for slug, bit, *_ in SEED_INTERESTS}
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT email, name, country, language, interests, status FROM subscribers ORDER BY id").fetchall()
    return [(email, name, country, language, "|".join(bits[b] for b in sorted(bits) if mask & (1 << b)), status)
            for email, name, country, language, mask, status in rows]


def write_csv(path: Path, header: list[str], rows: Iterable[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def erase_gone_person(db, clock) -> None:
    subscribers.add(db, "gone@example.org", name="Gone Person", country="TT", clock=clock)
    subscribers.erase(db, "gone@example.org", clock=clock)


def unsubscribe_left_person(db, clock) -> None:
    row = subscribers.add(db, "left@example.org", name="Left", country="TT", clock=clock)
    subscribers.unsubscribe(db, row["id"], clock=clock)


@dataclass
class Case:
    file: str
    errors: list[str]  # RowProblem.describe(path) without the leading "<path>, "
    stored: list[tuple]
    notices: list[str] = field(default_factory=list)
    encoding: str = "utf-8"
    setup: Callable | None = None


CASES = [
    Case("bad_address.csv",
         ["line 3, email: 'not-an-address' is not a valid address: An email address must have an @-sign.",
          "line 4, email: 'carla@@example.org' is not a valid address: The part after the @-sign contains "
          "invalid characters: '@'."],
         [("ana@example.org", "Ana Pérez", "MX", "es", "security", "active"),
          ("dario@example.org", "Darío Ruiz", "AR", "es", "grants", "active")]),
    Case("unknown_country.csv",
         ["line 3, country: unknown country 'Trinidadd'; did you mean TT (Trinidad)?",
          "line 4, country: unknown country 'Atlantis'; use an ISO code such as TT or BR"],
         [("ana@example.org", "Ana Pérez", "MX", "es", "security", "active")]),
    Case("unknown_interest.csv",
         ["line 3, interests: unknown interest 'gardening'; known: infrastructure, security, policy, training, "
          "grants"],
         [("ana@example.org", "Ana Pérez", "MX", "es", "infrastructure|security", "active")]),
    Case("unknown_language.csv",
         ["line 3, language: unsupported language 'de'; use one of en, es, pt, fr"],
         [("ana@example.org", "Ana Pérez", "MX", "es", "security", "active"),
          ("carla@example.org", "Carla Silva", "BR", "pt", "training", "active")]),
    Case("empty_email.csv",
         ["line 2, email: email is empty", "line 3, email: email is empty"],
         [("ana@example.org", "Ana Pérez", "MX", "es", "security", "active")]),
    Case("duplicates_case_space.csv", [],
         [("ana@example.org", "Ana P. Pérez", "CO", "es", "security|policy", "active"),
          ("bob@example.org", "Bob Brown", "TT", "en", "training", "active")],
         notices=["line 3, email: same address as line 2; merged", "line 4, email: same address as line 2; merged"]),
    Case("crlf_in_quoted_name.csv",
         ["line 2, name: contains a line break or control character; put the name on one line",
          "line 7, country: unknown country 'Narnia'; use an ISO code such as TT or BR"],
         [("bob@example.org", "Bob Brown", "TT", "en", "", "active"),
          ("carla@example.org", "Carla Silva", "BR", "pt", "", "active")]),
    Case("utf8_bom.csv", [],
         [("ana@example.org", "Ana Pérez", "MX", "es", "", "active"),
          ("zoe@example.org", "Zoë Lefèvre", "HT", "fr", "", "active")]),
    Case("semicolon.csv", [],
         [("ana@example.org", "Pérez, Ana", "MX", "es", "security|policy", "active"),
          ("bob@example.org", "Brown, Bob", "TT", "en", "training", "active")]),
    Case("tab.csv", [],
         [("ana@example.org", "Ana Pérez, PhD", "MX", "es", "", "active"),
          ("bob@example.org", "Bob Brown", "BB", "en", "", "active")]),
    Case("cp1252.csv", [],
         [("ana@example.org", "Ana Perez", "MX", "es", "", "active"),
          ("jose@example.org", "José Núñez", "CR", "es", "", "active"),
          ("francois@example.org", "François Lefèvre", "HT", "fr", "", "active")],
         encoding="cp1252"),
    Case("spanish_headers.csv", [],
         [("ana@example.org", "Ana Pérez", "MX", "es", "security|training", "active")]),
    Case("portuguese_headers.csv", [],
         [("joao@example.org", "João Silva", "BR", "pt", "infrastructure|grants", "active")]),
    Case("french_headers.csv", [],
         [("marie@example.org", "Marie Joseph", "HT", "fr", "security", "active")]),
    Case("country_names.csv", [],
         [("joao@example.org", "João Silva", "BR", "pt", "", "active"),
          ("ravi@example.org", "Ravi Maharaj", "TT", "en", "", "active"),
          ("marie@example.org", "Marie Joseph", "HT", "fr", "", "active"),
          ("kim@example.org", "Kim Clarke", "BB", "en", "", "active")]),
    Case("first_last_name.csv", [],
         [("ana@example.org", "Ana Pérez García", "MX", "es", "", "active"),
          ("bob@example.org", "Bob", "TT", "en", "", "active"),
          ("carla@example.org", "Silva", "BR", "pt", "", "active")]),
    Case("extra_fields.csv",
         ["line 3, row: 4 fields but the header has 3; is a value with a comma or semicolon missing its quotes?"],
         [("ana@example.org", "Ana Pérez", "MX", "es", "", "active"),
          ("carla@example.org", "Carla Silva", "BR", "pt", "", "active")]),
    Case("unknown_status.csv",
         ["line 3, status: unknown status 'subscribed'; use one of pending, active, paused, unsubscribed, "
          "bounced, complained"],
         [("ana@example.org", "Ana Pérez", "", "en", "", "active"),
          ("carla@example.org", "Carla Silva", "", "en", "", "paused")]),
    Case("bad_consent_date.csv",
         ["line 3, consent_at: '05/03/2024' is not a date; use ISO form like 2026-11-23 or 2026-11-23T14:05:00Z"],
         [("ana@example.org", "Ana Pérez", "", "en", "", "active"),
          ("carla@example.org", "Carla Silva", "", "en", "", "active")]),
    Case("erased_address.csv", [],
         [("ana@example.org", "Ana Pérez", "MX", "es", "", "active")],
         notices=["line 3, email: on the suppression list; not imported"], setup=erase_gone_person),
    Case("reactivate_unsubscribed.csv", [],
         [("left@example.org", "Left Again", "TT", "en", "", "unsubscribed"),
          ("stay@example.org", "Stay Here", "BB", "en", "", "active")],
         setup=unsubscribe_left_person),
]


@pytest.mark.parametrize("case", CASES, ids=[case.file for case in CASES])
def test_each_corpus_file_gets_its_exact_row_problems_and_stores_exactly_its_good_rows(case, db, db_path, clock):
    if case.setup:
        case.setup(db, clock)
    path = CORPUS / case.file
    report = import_csv(db, path, encoding=case.encoding, clock=clock)
    assert [problem.describe(path) for problem in report.errors] == [f"{path}, {text}" for text in case.errors]
    assert [problem.describe(path) for problem in report.notices] == [f"{path}, {text}" for text in case.notices]
    assert report.rejected == len(case.errors)
    assert stored_rows(db_path) == case.stored


def test_every_corpus_file_has_a_case():
    assert sorted(p.name for p in CORPUS.glob("*.csv")) == sorted([c.file for c in CASES] + ["unclosed_quote.csv"])


def test_counts_add_up_to_the_rows_read(db, clock):
    report = import_csv(db, CORPUS / "duplicates_case_space.csv", clock=clock)
    assert (report.rows, report.inserted, report.updated, report.merged, report.rejected) == (4, 2, 0, 2, 0)
    report = import_csv(db, CORPUS / "bad_address.csv", clock=clock)
    assert (report.rows, report.inserted, report.updated, report.merged, report.rejected) == (4, 1, 1, 0, 2)


def test_consent_date_in_any_iso_form_is_stored_as_utc_and_a_missing_one_is_the_import_time(db, db_path, clock):
    import_csv(db, CORPUS / "bad_consent_date.csv", clock=clock)
    with sqlite3.connect(db_path) as conn:
        consent = conn.execute("SELECT email, consent_at, consent_source FROM subscribers ORDER BY id").fetchall()
    assert consent == [("ana@example.org", "2024-03-05T00:00:00Z", "import:bad_consent_date.csv"),
                       ("carla@example.org", "2024-03-05T17:30:00Z", "import:bad_consent_date.csv")]
    import_csv(db, CORPUS / "tab.csv", clock=clock, source="event:LACNIC")
    assert subscribers.get(db, "bob@example.org")["consent_at"] == NOW
    assert subscribers.get(db, "bob@example.org")["consent_source"] == "event:LACNIC"


def test_header_mapping_and_delimiter_are_reported(db, clock):
    report = import_csv(db, CORPUS / "french_headers.csv", clock=clock)
    assert report.delimiter == ","
    assert report.columns == {"Courriel": "email", "Prénom": "first_name", "Nom de famille": "last_name",
                              "Pays": "country", "Langue": "language", "Intérêts": "interests"}
    assert import_csv(db, CORPUS / "tab.csv", clock=clock).delimiter == "\t"
    assert import_csv(db, CORPUS / "semicolon.csv", clock=clock).delimiter == ";"


def test_a_file_without_an_email_column_is_refused_naming_the_header(db, db_path, tmp_path, clock):
    path = write_csv(tmp_path / "no_email.csv", ["name", "country"], [["Ana", "MX"]])
    with pytest.raises(ImportFileError) as error:
        import_csv(db, path, clock=clock)
    assert str(error.value) == (f"{path}, line 1: no email column in header ['name', 'country']; name one column "
                                "'email' (also understood: e-mail, correo, courriel...)")
    assert stored_rows(db_path) == []


def test_dry_run_writes_nothing_but_reports_the_same_counts(tmp_path, clock):
    path = write_csv(tmp_path / "mixed.csv", ["email", "name", "country"], [
        ["old@example.org", "Old Timer", "BB"], ["new1@example.org", "New One", "TT"], ["bad", "Bad", "TT"],
        ["NEW1@example.org", "New One Again", ""], ["new2@example.org", "New Two", "Narnia"],
        ["new3@example.org", "New Three", "HT"]])
    counts = []
    for dry_run, name in ((True, "dry.db"), (False, "real.db")):
        db = connect(tmp_path / name)
        subscribers.add(db, "old@example.org", name="Old", clock=clock)
        report = import_csv(db, path, dry_run=dry_run, batch_size=2, clock=clock)
        assert report.dry_run is dry_run
        counts.append((report.rows, report.inserted, report.updated, report.merged, report.rejected,
                       [p.describe(path) for p in report.errors], [p.describe(path) for p in report.notices]))
    assert counts[0] == counts[1]
    assert counts[0][:5] == (6, 2, 1, 1, 2)
    assert stored_rows(tmp_path / "dry.db") == [("old@example.org", "Old", "", "en", "", "active")]
    assert len(stored_rows(tmp_path / "real.db")) == 3


def test_importing_the_same_file_twice_adds_no_row(db, db_path, clock):
    first = import_csv(db, CORPUS / "country_names.csv", clock=clock)
    rows_after_first = stored_rows(db_path)
    second = import_csv(db, CORPUS / "country_names.csv", clock=clock)
    assert (first.inserted, first.updated) == (4, 0)
    assert (second.inserted, second.updated) == (0, 4)
    assert stored_rows(db_path) == rows_after_first


def test_duplicates_across_batches_are_merged_and_counted(db, db_path, tmp_path, clock):
    path = write_csv(tmp_path / "dupes.csv", ["email", "name", "country", "interests"], [
        ["ana@example.org", "Ana", "MX", "security"],      # line 2, batch 1
        ["bob@example.org", "Bob", "TT", "policy"],        # line 3, batch 1
        ["carla@example.org", "Carla", "BR", ""],          # line 4, batch 2
        [" Ana@Example.ORG", "Ana Pérez", "", "grants"],   # line 5, batch 2
        ["dario@example.org", "Darío", "AR", ""],          # line 6, batch 3
        ["BOB@example.org", "", "BB", "training"],         # line 7, batch 3
    ])
    report = import_csv(db, path, batch_size=2, clock=clock)
    assert (report.rows, report.inserted, report.updated, report.merged) == (6, 4, 0, 2)
    assert [p.describe(path) for p in report.notices] == [
        f"{path}, line 5, email: same address as an earlier row; merged",
        f"{path}, line 7, email: same address as an earlier row; merged"]
    assert stored_rows(db_path) == [
        ("ana@example.org", "Ana Pérez", "MX", "es", "security|grants", "active"),
        ("bob@example.org", "Bob", "BB", "en", "policy|training", "active"),
        ("carla@example.org", "Carla", "BR", "pt", "", "active"),
        ("dario@example.org", "Darío", "AR", "es", "", "active")]


def test_a_file_in_the_wrong_encoding_fails_naming_the_line_and_writes_nothing(db, db_path, tmp_path, clock):
    good = [[f"p{i}@example.org", f"Person {i}", "TT"] for i in range(6)]
    path = tmp_path / "latin.csv"
    write_csv(path, ["email", "name", "country"], good)
    with open(path, "ab") as handle:  # line 8, after three whole batches of 2
        handle.write("jose@example.org,José Núñez,CR\n".encode("cp1252"))
    with pytest.raises(ImportFileError) as error:
        import_csv(db, path, batch_size=2, clock=clock)
    assert str(error.value) == (
        f"{path}, line 8: not valid UTF-8 (byte 0xe9). Save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8'), "
        "or pass --encoding cp1252 (or latin-1) if that is what it is")
    assert stored_rows(db_path) == []


def test_an_unclosed_quote_stops_the_import_naming_the_line(db, clock):
    path = CORPUS / "unclosed_quote.csv"
    with pytest.raises(ImportFileError) as error:
        import_csv(db, path, clock=clock)
    assert str(error.value) == (
        f"{path}, line 3: unexpected end of data (an unclosed quote swallows the lines after it; close it or "
        "remove it). Lines before 3 were imported.")


def test_after_an_unclosed_quote_the_lines_before_it_are_imported_as_the_message_says(db, db_path, clock):
    with pytest.raises(ImportFileError, match="Lines before 3 were imported"):
        import_csv(db, CORPUS / "unclosed_quote.csv", clock=clock)
    assert stored_rows(db_path) == [("ana@example.org", "Ana Pérez", "MX", "es", "", "active")]


def test_an_unclosed_quote_after_several_batches_keeps_every_line_before_it(db, db_path, tmp_path, clock):
    path = tmp_path / "late_quote.csv"
    path.write_text("email,name\n" + "".join(f"p{i}@example.org,Person {i}\n" for i in range(1, 6))
                    + 'p6@example.org,"Unclosed\np7@example.org,Seven\n', encoding="utf-8")
    with pytest.raises(ImportFileError) as error:
        import_csv(db, path, batch_size=2, clock=clock)
    assert str(error.value).startswith(f"{path}, line 7: unexpected end of data")
    assert str(error.value).endswith("Lines before 7 were imported.")
    assert [row[0] for row in stored_rows(db_path)] == [f"p{i}@example.org" for i in range(1, 6)]


def numbered_file(tmp_path: Path, count: int) -> Path:
    return write_csv(tmp_path / "numbered.csv", ["email", "name"],
                     [[f"p{i}@example.org", f"Person {i}"] for i in range(1, count + 1)])


def test_an_exception_from_progress_leaves_exactly_the_committed_first_batch(db, db_path, tmp_path, clock):
    calls = []

    def stop_at_first_batch(done_bytes: int) -> None:
        calls.append(done_bytes)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_csv(db, numbered_file(tmp_path, 7), batch_size=2, clock=clock, progress=stop_at_first_batch)
    assert len(calls) == 1
    assert [row[0] for row in stored_rows(db_path)] == ["p1@example.org", "p2@example.org"]


def test_a_failure_in_the_middle_of_a_batch_leaves_whole_earlier_batches_and_no_partial_row(
        db, db_path, tmp_path, clock):
    db.execute("""CREATE TEMP TRIGGER fail_on_p4 BEFORE INSERT ON subscribers WHEN NEW.email = 'p4@example.org'
                  BEGIN SELECT RAISE(ABORT, 'disk on fire'); END""")
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        import_csv(db, numbered_file(tmp_path, 7), batch_size=2, clock=clock)
    assert [row[0] for row in stored_rows(db_path)] == ["p1@example.org", "p2@example.org"]  # p3 rolled back
    db.execute("DROP TRIGGER temp.fail_on_p4")
    report = import_csv(db, numbered_file(tmp_path, 7), batch_size=2, clock=clock)
    assert (report.inserted, report.updated) == (5, 2)
    assert len(stored_rows(db_path)) == 7


def python_peak(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_an_import_of_50000_rows_is_streamed_in_bounded_memory(db, db_path, tmp_path, clock):
    path = tmp_path / "big.csv"
    countries = ["BR", "TT", "BB", "MX", "HT", "AR"]
    write_csv(path, ["email", "name", "country", "interests", "status", "consent_source"], (
        [f"person.with.a.longer.address{i}@example.org", f"Person Número {i} de la Cruz y Hernández",
         countries[i % 6], "security|policy" if i % 3 else "training", "active",
         f"event:regional-meeting-2025-session-{i % 40}-registration-desk-and-online-form"]
        for i in range(50_000)))
    limit = 20 * 1024 * 1024

    def read_whole() -> None:
        with open(path, newline="", encoding="utf-8") as handle:
            list(csv.reader(handle))

    assert python_peak(read_whole) > limit  # the limit would catch an import that holds the file's rows
    peak = python_peak(lambda: import_csv(db, path, clock=clock))
    assert peak < limit, f"peak Python memory {peak:,} bytes"
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM subscribers").fetchone()[0] == 50_000


# --- the CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def run_cli(tmp_path: Path):
    config = tmp_path / "newsletter.toml"
    config.write_text('[newsletter]\ndatabase = "data/test.db"\n', encoding="utf-8")

    def run(*args: str, input: str | None = None):
        result = CliRunner().invoke(cli, ["--config", str(config), *args], input=input,
                                    env={"NEWSLETTER_SECRET_KEY": "test-secret", "NEWSLETTER_CONFIG": None})
        return result, " ".join(result.output.split())

    return run


def test_cli_import_prints_the_summary_and_each_refused_row_and_exits_2(run_cli, tmp_path):
    path = CORPUS / "bad_address.csv"
    result, text = run_cli("subscribers", "import", str(path))
    assert result.exit_code == 2, result.output
    assert "bad_address.csv: 4 rows" in text
    assert re.search(r"new subscribers\s*│\s*2 │", text)
    assert re.search(r"refused \(see below\)\s*│\s*2 │", text)
    assert (f"refused {path}, line 3, email: 'not-an-address' is not a valid address: An email address must "
            "have an @-sign.") in text
    assert f"refused {path}, line 4, email: 'carla@@example.org' is not a valid address" in text
    assert "the 2 good rows were imported" in text
    assert [row[0] for row in stored_rows(tmp_path / "data" / "test.db")] == ["ana@example.org", "dario@example.org"]


def test_cli_import_of_a_clean_file_exits_0(run_cli, tmp_path):
    result, text = run_cli("subscribers", "import", str(CORPUS / "country_names.csv"))
    assert result.exit_code == 0, result.output
    assert re.search(r"new subscribers\s*│\s*4 │", text)
    assert "refused" not in text.replace("refused (see below)", "")


def test_cli_dry_run_says_so_and_writes_nothing(run_cli, tmp_path):
    result, text = run_cli("subscribers", "import", "--dry-run", str(CORPUS / "country_names.csv"))
    assert result.exit_code == 0, result.output
    assert "(dry run: nothing written)" in text
    assert stored_rows(tmp_path / "data" / "test.db") == []


def test_cli_import_in_the_wrong_encoding_is_one_error_line_and_exit_2(run_cli):
    path = CORPUS / "cp1252.csv"
    result, text = run_cli("subscribers", "import", str(path))
    assert result.exit_code == 2
    assert f"Error: {path}, line 3: not valid UTF-8 (byte 0xe9)." in text
    result, _ = run_cli("subscribers", "import", "--encoding", "cp1252", str(path))
    assert result.exit_code == 0, result.output


# --- export ------------------------------------------------------------------------------------------


def test_export_then_import_round_trips_every_field(tmp_path, clock):
    source = connect(tmp_path / "source.db")
    for name in ("duplicates_case_space.csv", "unknown_status.csv", "country_names.csv", "french_headers.csv"):
        import_csv(source, CORPUS / name, clock=clock)
    subscribers.add(source, "tt@example.org", name="Ravi O'Neil", country="TT", interests=["grants", "policy"],
                    consent=subscribers.Consent(source="form:web", ip="2001:db8::1",
                                                at=datetime(2025, 5, 6, 7, 8, 9, tzinfo=timezone.utc)),
                    clock=clock)
    subscribers.unsubscribe(source, subscribers.get(source, "kim@example.org")["id"], clock=clock)
    out = io.StringIO()
    assert export_csv(source, out, EVERY_STATUS) == 8
    exported = tmp_path / "export.csv"
    exported.write_text(out.getvalue(), encoding="utf-8")

    target = connect(tmp_path / "target.db")
    report = import_csv(target, exported, clock=FakeClock(datetime(2027, 1, 1, tzinfo=timezone.utc)))
    assert (report.inserted, report.rejected, report.merged) == (8, 0, 0)
    columns = "email, name, country, language, interests, status, consent_at, consent_source, consent_ip"
    query = f"SELECT {columns} FROM subscribers ORDER BY email"
    assert list(target.execute(query)) == list(source.execute(query))


def test_export_defuses_cells_a_spreadsheet_would_run_as_formulas(db, clock):
    subscribers.add(db, "a@example.org", name="=cmd|' /C calc'!A0", clock=clock)
    subscribers.add(db, "b@example.org", name="+1 555 0100", clock=clock)
    subscribers.add(db, "c@example.org", name="-Dash", clock=clock)
    subscribers.add(db, "d@example.org", name="@SUM(A1)", clock=clock,
                    consent=subscribers.Consent(source="=HYPERLINK(\"http://x\")"))
    subscribers.add(db, "e@example.org", name="Plain Name", clock=clock)
    out = io.StringIO()
    export_csv(db, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["name"] for row in rows] == ["'=cmd|' /C calc'!A0", "'+1 555 0100", "'-Dash", "'@SUM(A1)",
                                             "Plain Name"]
    assert rows[3]["consent_source"] == "'=HYPERLINK(\"http://x\")"


def test_export_selects_the_segment_and_defaults_to_active(db, clock):
    import_csv(db, CORPUS / "unknown_status.csv", clock=clock)
    import_csv(db, CORPUS / "country_names.csv", clock=clock)
    out = io.StringIO()
    assert export_csv(db, out) == 5
    assert "carla@example.org" not in out.getvalue()  # paused
    out = io.StringIO()
    assert export_csv(db, out, "country:TT,HT") == 2
    assert [row["email"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == [
        "ravi@example.org", "marie@example.org"]
