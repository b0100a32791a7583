"""The import's fast path for rows that are already clean gives exactly the row the full normalisation
gives, on every file of tests/corpus/csv, on generated subscribers and on near-clean variants of them; and
it is the path that clean rows actually take."""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path

import pytest

from newsletter.csvimport import _RowReader, map_header, sniff_delimiter
from newsletter.db import connect
from newsletter.interests import Taxonomy
from newsletter.normalize import InvalidValue, country_codes, is_clean_email, is_clean_name, is_clean_timestamp, \
    normalize_country, normalize_email, normalize_name, parse_timestamp

CORPUS = Path(__file__).parent / "corpus" / "csv"
GENERATOR = Path(__file__).parent.parent / "src" / "newsletter" / "samples" / "subscribers" / "generate.py"
NOW = "2026-01-01T00:00:00Z"
ENCODINGS = {"cp1252.csv": "cp1252"}


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory) -> Taxonomy:
    return Taxonomy.load(connect(tmp_path_factory.mktemp("taxonomy") / "newsletter.db"))


def reader_and_records(text: str, taxonomy: Taxonomy) -> tuple[_RowReader, list[list[str]]]:
    """The reader import_csv would make for this file's header, and the file's records."""
    handle = io.StringIO(text, newline="")
    header_line = handle.readline()
    delimiter = sniff_delimiter(header_line)
    header = next(csv.reader([header_line], delimiter=delimiter))
    positions, _ = map_header(header, Path("test.csv"))
    reader = _RowReader(positions, len(header), taxonomy, "import:test.csv", default_status="active", now=NOW,
                        import_id=7)
    records = []
    try:
        for record in csv.reader(handle, delimiter=delimiter, strict=True):
            records.append(record)
    except csv.Error:  # unclosed_quote.csv: the records before the fault are what an import sees
        pass
    return reader, records


def compare_paths(reader: _RowReader, records: list[list[str]]) -> int:
    """Every record through the full path, then through the fast path one by one and as one chunk (so that
    each column check runs both over a single value and over the whole column); returns how many records
    took the fast path."""
    lines = list(range(2, len(records) + 2))
    slow = [reader.read(list(record), line) for record, line in zip(records, lines)]  # first, so that its
    # interest spellings are known, as on import
    one_by_one = [reader.read_clean([list(record)], [line])[1][0] for record, line in zip(records, lines)]
    emails, chunk, groups = reader.read_clean([list(record) for record in records], lines)
    assert chunk == one_by_one
    if groups is not None:  # given only when every record is clean: each row's group for the counts
        assert list(groups) == [(row[0][5], row[0][2], row[0][3], row[0][4]) for row in chunk]
    for record, full, clean, email in zip(records, slow, chunk, emails):
        if clean is not None:
            assert clean == full, record
            assert email == clean[0][0]
    return sum(row is not None for row in chunk)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.csv")), ids=lambda p: p.name)
def test_on_every_corpus_file_the_fast_path_gives_the_full_paths_row(path, taxonomy):
    text = path.read_bytes().decode(ENCODINGS.get(path.name, "utf-8-sig"))
    reader, records = reader_and_records(text, taxonomy)
    compare_paths(reader, records)


def generated_csv(rows: int, seed: int) -> str:
    spec = importlib.util.spec_from_file_location("subscribers_generate", GENERATOR)
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(generator.COLUMNS)
    writer.writerows(generator.generate_records(rows, seed))
    return out.getvalue()


def test_generated_subscribers_take_the_fast_path_and_get_the_same_rows(taxonomy):
    reader, records = reader_and_records(generated_csv(5000, seed=11), taxonomy)
    fast = compare_paths(reader, records)
    assert fast >= 0.99 * len(records), f"only {fast} of {len(records)} clean rows took the fast path"


# (column, value) changes that make a clean generated row almost, or not quite, clean
VARIANTS = [
    ("email", "Ana.Perez@example.org"), ("email", " ana@example.org"), ("email", "<ana@example.org>"),
    ("email", "ana@example.test"), ("email", "ana@localhost"), ("email", "ana@mail.onion"), ("email", "ana@example"),
    ("email", "a" * 64 + "@example.org"), ("email", "a" * 65 + "@example.org"), ("email", "ana..p@example.org"),
    ("email", ".ana@example.org"), ("email", "ana.@example.org"), ("email", "ana@-example.org"),
    ("email", "ana@example-.org"), ("email", "ana@ex_ample.org"), ("email", "ana@example.o"),
    ("email", "ana@example.123"), ("email", "ana@@example.org"), ("email", "josé@example.org"),
    ("email", "ana+news@sub.example.co.uk"), ("email", "o'neil@example.org"), ("email", "ana@" + "a" * 64 + ".org"),
    ("email", "x" * 60 + "@" + ".".join(["a" * 60] * 3) + ".org"), ("email", "ana@example.org."), ("email", ""),
    ("name", "Ana  Pérez"), ("name", " Ana"), ("name", "Ana "), ("name", "Ana\tPérez"), ("name", "Ana\u00a0Pérez"),
    ("name", "Ana\nPérez"), ("name", "A" * 200), ("name", "A" * 201), ("name", ""), ("name", "Zoë L'Heureux"),
    ("country", "br"), ("country", "Brasil"), ("country", "BRA"), ("country", " BR"), ("country", "XX"),
    ("country", "UK"), ("country", ""),
    ("language", "ES"), ("language", "pt-BR"), ("language", "Español"), ("language", "de"), ("language", ""),
    ("status", "Active"), ("status", " paused"), ("status", "subscribed"), ("status", ""),
    ("interests", "Security | IXPs"), ("interests", "DNSSEC"), ("interests", "gardening"), ("interests", ""),
    ("consent_at", "2024-02-29T10:00:00Z"), ("consent_at", "2023-02-29T10:00:00Z"),
    ("consent_at", "2000-02-29T10:00:00Z"), ("consent_at", "1900-02-29T10:00:00Z"), ("consent_at", "2100-02-29T10:00:00Z"),
    ("consent_at", "2024-04-31T10:00:00Z"), ("consent_at", "2024-13-01T00:00:00Z"),
    ("consent_at", "2024-01-01T24:00:00Z"), ("consent_at", "2024-01-01T23:60:00Z"), ("consent_at", "2024-01-01"),
    ("consent_at", "2024-01-01T10:00:00+02:00"), ("consent_at", "0000-01-01T00:00:00Z"),
    ("consent_at", "\u0662\u0660\u0662\u0664-01-01T00:00:00Z"), ("consent_at", " 2024-01-01T00:00:00Z"),
    ("consent_at", ""), ("consent_source", "  event:LACNIC  "), ("consent_source", ""), ("consent_source", "x" * 300),
]


def test_near_clean_variants_give_the_same_row_on_both_paths(taxonomy):
    reader, records = reader_and_records(generated_csv(40, seed=3), taxonomy)
    columns = {name: index for index, name in enumerate(csv.reader([generated_csv(0, seed=3)]).__next__())}
    variants = []
    for number, (column, value) in enumerate(VARIANTS):
        record = list(records[number % len(records)])
        record[columns[column]] = value
        variants.append(record)
    fast = compare_paths(reader, variants)
    assert 0 < fast < len(variants)


EMAILS = [value for column, value in VARIANTS if column == "email"] + ["ana@example.org", "ANA@EXAMPLE.ORG"]
NAMES = [value for column, value in VARIANTS if column == "name"] + ["Ana Pérez"]
STAMPS = [value for column, value in VARIANTS if column == "consent_at"] + ["2026-11-23T14:05:00Z"]


def test_each_clean_check_implies_the_normaliser_returns_the_value_unchanged():
    def unchanged(normalise, value) -> bool:
        try:
            return normalise(value) == value
        except InvalidValue:
            return False

    for value in EMAILS:
        assert not is_clean_email(value) or unchanged(normalize_email, value), value
    for value in NAMES:
        assert not is_clean_name(value) or unchanged(normalize_name, value), value
    for value in STAMPS:
        assert not is_clean_timestamp(value) or unchanged(parse_timestamp, value), value
    assert all(unchanged(normalize_country, code) for code in country_codes())
    assert {"BR", "TT", "GB", "US", ""} <= country_codes() and "UK" not in country_codes()
    # and the checks do recognise clean values: a fast path that never fires would pass the above
    assert is_clean_email("ana+news@sub.example.co.uk") and is_clean_name("Zoë L'Heureux")
    assert is_clean_timestamp("2026-11-23T14:05:00Z") and is_clean_timestamp("2024-02-29T00:00:00Z")
    assert not is_clean_timestamp("2100-02-29T00:00:00Z")
