"""Import subscribers from the CSV files staff really have: any delimiter, a BOM, headers in several
languages, country names, mixed-case duplicates, stray line breaks.

The file is streamed and written one batch per transaction: a crash leaves whole batches or nothing, and
running the same import again converges (it is an upsert). Each refused row is reported with its line,
field and reason; the good rows are imported.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import io
import operator
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import islice, repeat
from pathlib import Path
from typing import Callable, Iterator, Sequence

import sqlite_utils

from .clock import Clock, SystemClock, utc_iso
from .db import LANGUAGES, STATUSES, ensure_indexes, resume_subscriber_upkeep, suspend_subscriber_upkeep
from .interests import Taxonomy
from .normalize import InvalidValue, all_clean_emails, all_clean_names, all_clean_timestamps, country_codes, \
    default_language, fold, is_clean_email, is_clean_name, is_clean_timestamp, normalize_country, normalize_email, \
    normalize_language, normalize_name, parse_timestamp
from .suppressions import email_hash, suppressed_hashes

# Header spellings staff use (folded: no case, accents or punctuation) -> our field.
_PHRASES = {
    "email": ["email", "e mail", "email address", "e mail address", "mail", "correo", "correo electronico",
              "adresse e mail", "courriel", "endereco de email"],
    "name": ["name", "full name", "nombre", "nombre completo", "nome", "nome completo", "nom", "nom complet",
             "display name"],
    "first_name": ["first name", "firstname", "given name", "primeiro nome", "prenom"],
    "last_name": ["last name", "lastname", "surname", "family name", "apellido", "apellidos", "sobrenome",
                  "nom de famille"],
    "country": ["country", "country code", "pais", "pays", "codigo de pais"],
    "language": ["language", "lang", "idioma", "lingua", "langue", "locale"],
    "interests": ["interests", "interest", "topics", "tags", "intereses", "interesses", "interets", "temas"],
    "status": ["status", "estado", "statut"],
    "consent_at": ["consent at", "consent date", "opt in date", "optin date", "optin time", "subscribed at",
                   "fecha de alta"],
    "consent_source": ["consent source", "source", "origen", "origem"],
    "consent_ip": ["consent ip", "ip", "ip address", "optin ip"],
}
_HEADER_INDEX = {fold(phrase): name for name, phrases in _PHRASES.items() for phrase in phrases}
_DELIMITERS = ",;\t|"
_KEEP_STATUS = ("unsubscribed", "bounced", "complained")
MAX_KEPT_PROBLEMS = 1000
_MAX_KEPT_SPELLINGS = 4096  # of an interests cell, each parsed once


class ImportFileError(Exception):
    """The file as a whole cannot be read (encoding, no email column); nothing was imported."""


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str
    reason: str

    def describe(self, path: Path | str) -> str:
        return f"{path}, line {self.line}, {self.field}: {self.reason}"


@dataclass
class ImportReport:
    path: Path
    delimiter: str = ","
    columns: dict[str, str] = field(default_factory=dict)  # header as written -> our field
    ignored_columns: list[str] = field(default_factory=list)
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    merged: int = 0
    suppressed: int = 0
    rejected: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    notices: list[RowProblem] = field(default_factory=list)
    dry_run: bool = False

    def _keep(self, bucket: list, problem: RowProblem) -> None:
        if len(bucket) < MAX_KEPT_PROBLEMS:
            bucket.append(problem)


# A parsed row is made a million times per million rows, so it is plain tuples, built once:
# (the parameters of _INSERT, then what the file said where _INSERT fills in a default: language, status,
# consent_at; then the line number). _merge and the update of a stored subscriber need the file's own values.
_Row = tuple


def _merge(first: _Row, later: _Row) -> _Row:
    """A later row for the same address: its non-empty fields win, interests add up."""
    (email, name, country, _, interests, status_or_default, created, updated, consent_or_now, source, ip,
     import_id), language, status, consent_at, line = first
    (_, name2, country2, _, interests2, _, _, _, _, source2, ip2, _), language2, status2, consent_at2, _ = later
    country = country2 or country
    language = language2 or language
    return ((email, name2 or name, country, language or default_language(country), interests | interests2,
             status2 or status_or_default, created, updated, consent_at2 or consent_or_now, source2 or source,
             ip2 or ip, import_id), language, status2 or status, consent_at2 or consent_at, line)


def check_encoding(path: Path, encoding: str = "utf-8") -> None:
    """Refuse a file that does not decode, before anything is written, naming the first bad line."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad_line = line + chunk[: exc.start].count(b"\n")
                raise ImportFileError(
                    f"{path}, line {bad_line}: not valid {encoding.upper()} (byte 0x{chunk[exc.start]:02x}). "
                    f"Save the file as UTF-8 (in a spreadsheet: 'CSV UTF-8'), or pass --encoding cp1252 "
                    f"(or latin-1) if that is what it is"
                ) from None
            line += chunk.count(b"\n")
        decoder.decode(b"", final=True)


def sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def map_header(header: list[str], path: Path) -> tuple[dict[str, int], list[str]]:
    positions: dict[str, int] = {}
    ignored = []
    for index, title in enumerate(header):
        name = _HEADER_INDEX.get(fold(title))
        if name is None or name in positions:
            if title.strip():
                ignored.append(title.strip())
            continue
        positions[name] = index
    if "email" not in positions:
        raise ImportFileError(
            f"{path}, line 1: no email column in header {header!r}; name one column 'email' "
            "(also understood: e-mail, correo, courriel...)"
        )
    return positions, ignored


_FIELDS = ("email", "name", "first_name", "last_name", "country", "language", "interests", "status", "consent_at",
           "consent_source", "consent_ip")


class _RowReader:
    """Turns one CSV record into a _Row, or a RowProblem naming the field at fault."""

    def __init__(self, positions: dict[str, int], width: int, taxonomy: Taxonomy, source: str, *,
                 default_status: str, now: str, import_id: int) -> None:
        self.width = width
        # Absent columns read an empty cell appended at index `width`: one itemgetter call per row.
        self.pick = operator.itemgetter(*(positions.get(name, width) for name in _FIELDS))
        self.split_name = "name" not in positions and ("first_name" in positions or "last_name" in positions)
        self.taxonomy = taxonomy
        self.source = source
        self.default_status = default_status
        self.now = now
        self.import_id = import_id
        self._interests: dict[str, int] = {}  # the same few spellings recur on every row
        self._countries = country_codes()
        self._languages = frozenset(LANGUAGES) | {""}
        self._statuses = frozenset(STATUSES) | {""}

    def _parse_interests(self, text: str) -> int:
        mask = self._interests.get(text)
        if mask is None:
            mask = self.taxonomy.parse(text)
            if len(self._interests) < _MAX_KEPT_SPELLINGS:
                self._interests[text] = mask
        return mask

    def _row(self, email: str, name: str, country: str, language: str, interests: int, status: str | None,
             consent_at: str, source: str, ip: str, line: int) -> _Row:
        now = self.now
        return ((email, name, country, language or default_language(country), interests,
                 status or self.default_status, now, now, consent_at or now, source.strip()[:200] or self.source,
                 ip.strip()[:64], self.import_id), language, status, consent_at, line)

    def read_clean(self, records: list[list[str]],
                   lines: Sequence[int]) -> tuple[list[str], list[_Row | None], Iterator[tuple] | None]:
        """The addresses and rows of a chunk of records, for each record that is already in the form we store
        (the common case), else None: read() must take that record, and gives the very same row for the
        others (a test checks). Each check runs over a whole column at once, so a clean chunk costs a few
        passes in C rather than a dozen Python calls per row. When every record is clean, also each row's
        (status, country, language, interests), lazily, for the segment counts."""
        width = self.width
        if set(map(len, records)) - {width}:  # a stray field or a blank line: only whole records here
            keep = [i for i, record in enumerate(records) if len(record) == width]
            emails, rows = [""] * len(records), [None] * len(records)
            found, clean, _ = self.read_clean([records[i] for i in keep], [lines[i] for i in keep])
            for i, email, row in zip(keep, found, clean):
                emails[i], rows[i] = email, row
            return emails, rows, None
        count = len(records)
        columns = [*zip(*records), ("",) * count] if count else [()] * (width + 1)  # absent fields: index width
        emails, names, firsts, lasts, countries, languages, interests, statuses, stamps, sources, ips = self.pick(
            columns)
        if self.split_name:
            names = [*map(" ".join, zip(firsts, lasts))]  # f"{first} {last}", as read() does
        for spelling in set(interests).difference(self._interests):  # each new spelling parsed once
            with contextlib.suppress(InvalidValue):
                self._parse_interests(spelling)
        masks = [*map(self._interests.get, interests)]
        bad = set()
        if not all_clean_emails(emails):
            bad.update(i for i, value in enumerate(emails) if not is_clean_email(value))
        if not all_clean_names(names):
            bad.update(i for i, value in enumerate(names) if not is_clean_name(value))
        for column, known in ((countries, self._countries), (languages, self._languages), (statuses, self._statuses)):
            if not known.issuperset(column):
                bad.update(i for i, value in enumerate(column) if value not in known)
        if None in masks:
            bad.update(i for i, mask in enumerate(masks) if mask is None)
        if not all_clean_timestamps(stamps):
            bad.update(i for i, value in enumerate(stamps) if value and is_clean_timestamp(value) is None)
        sources = _trimmed(sources, 200, self.source)
        ips = _trimmed(ips, 64, "")
        # What _INSERT stores where the file says nothing, column by column when the file says something.
        stored_languages = languages if "" not in languages else [
            language or default_language(country) for language, country in zip(languages, countries)]
        stored_statuses = statuses if "" not in statuses else [status or self.default_status for status in statuses]
        stored_stamps = stamps if "" not in stamps else [stamp or self.now for stamp in stamps]
        raw_statuses = statuses if "" not in statuses else [status or None for status in statuses]
        now, import_id = repeat(self.now), repeat(self.import_id)
        rows = [*zip(zip(emails, names, countries, stored_languages, masks, stored_statuses, now, now, stored_stamps,
                         sources, ips, import_id), languages, raw_statuses, stamps, lines)]
        for i in bad:
            rows[i] = None
        return list(emails), rows, None if bad else zip(stored_statuses, countries, stored_languages, masks)

    def read(self, record: list[str], line: int) -> _Row | RowProblem:
        missing = self.width + 1 - len(record)
        if missing == 1:  # the usual row: one empty cell appended for absent columns, in place
            record.append("")
        elif missing > 1:
            record = record + [""] * missing
        (email, name, first, last, country, language, interests, status, consent_at, source,
         ip) = self.pick(record)
        field_name = "email"
        try:
            email = normalize_email(email)
            field_name = "name"
            name = normalize_name(f"{first} {last}" if self.split_name else name)
            field_name = "country"
            country = normalize_country(country)
            field_name = "language"
            language = normalize_language(language)
            field_name = "interests"
            interests = self._parse_interests(interests)
            field_name = "status"
            status = status.strip().lower() or None
            if status is not None and status not in STATUSES:
                raise InvalidValue(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
            field_name = "consent_at"
            consent_at = parse_timestamp(consent_at) if consent_at.strip() else ""
        except InvalidValue as exc:
            return RowProblem(line, field_name, str(exc))
        return self._row(email, name, country, language, interests, status, consent_at, source, ip, line)


# A row whose address is already stored is left to _UPDATE: the insert tries every row of a batch at once.
_INSERT = """INSERT INTO subscribers (email, name, country, language, interests, status, created_at, updated_at,
                 consent_at, consent_source, consent_ip, import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (email) DO NOTHING"""
_UPDATE = f"""UPDATE subscribers SET name = coalesce(nullif(?, ''), name),
                 country = coalesce(nullif(?, ''), country), language = coalesce(nullif(?, ''), language),
                 interests = interests | ?,
                 status = CASE WHEN status IN {_KEEP_STATUS!r} OR ? IS NULL THEN status ELSE ? END,
                 updated_at = ?, import_id = ? WHERE email = ?"""
_GROUP_OF = operator.itemgetter(5, 2, 3, 4)  # an _INSERT row's (status, country, language, interests)
_FLUSH_ROWS = 10_000  # rows held in memory before they are written (a transaction holds several such batches)
_BLANK = RowProblem(0, "", "blank line")  # a marker in take(), never reported


def import_csv(db: sqlite_utils.Database, path: str | Path, *, dry_run: bool = False,
               default_status: str = "active", source: str | None = None, encoding: str = "utf-8",
               batch_size: int = 250_000, clock: Clock = SystemClock(),
               progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import one file, `batch_size` rows per transaction; `progress` is called with the number of bytes read
    so far after each one."""
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"{path}: no such file")
    check_encoding(path, encoding)
    report = ImportReport(path=path, dry_run=dry_run)
    taxonomy = Taxonomy.load(db)
    now = utc_iso(clock.now())
    check_suppressions = db.execute("SELECT 1 FROM suppressions LIMIT 1").fetchone() is not None
    conn = db.conn
    # Rows arrive in no useful order, so every insert into the email index lands on a random page: a page
    # cache of 64 MB per schema (a fixed amount, not growing with the file) keeps those pages in memory.
    conn.execute("PRAGMA cache_size = -65536")
    # Checkpoint the WAL in large steps (1 GB): an index page that several transactions touch is then copied
    # into the database once, not once per transaction. A bulk import truncates the WAL when it is done.
    conn.execute("PRAGMA wal_autocheckpoint = 262144")

    def flush(batch: dict[str, _Row], batch_groups: Iterator[tuple] | None) -> None:
        """Write a batch; batch_groups, when given, are its rows' groups for the counts."""
        if batch and check_suppressions:
            hashes = {email_hash(e): e for e in batch}
            for hashed in suppressed_hashes(db, list(hashes)):
                batch_groups = None
                row = batch.pop(hashes[hashed])
                report.suppressed += 1
                report._keep(report.notices, RowProblem(row[-1], "email", "on the suppression list; not imported"))
        if not batch:
            return
        nonlocal groups
        before = conn.execute("SELECT coalesce(max(id), 0) FROM subscribers").fetchone()[0]
        inserts = [row[0] for row in batch.values()]
        added = conn.executemany(_INSERT, inserts).rowcount
        report.inserted += added
        if added == len(batch):
            if groups is not None:
                groups.update(batch_groups if batch_groups is not None else map(_GROUP_OF, inserts))
            return
        groups = None  # an update changes groups in ways only a count of the table tells
        # Some addresses were stored already; import_id tells a row an earlier batch of this same file wrote
        # (a duplicate) from an older one, without keeping every address in memory.
        emails = list(batch)
        existing = dict(conn.execute(
            f"SELECT email, import_id FROM subscribers WHERE id <= ? AND email IN ({', '.join('?' * len(emails))})",
            [before, *emails]))
        updates = []
        for email, ((_, name, country, _, interests, *_), language, status, _, line) in batch.items():
            if email not in existing:
                continue
            if existing[email] == import_id:
                report.merged += 1
                report._keep(report.notices, RowProblem(line, "email", "same address as an earlier row; merged"))
            else:
                report.updated += 1
            updates.append((name, country, language, interests, status, status, now, import_id, email))
        conn.executemany(_UPDATE, updates)

    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding=_text_encoding(encoding), newline="")
        header_line = text.readline()
        report.delimiter = sniff_delimiter(header_line)
        header = next(csv.reader([header_line], delimiter=report.delimiter), [])
        positions, report.ignored_columns = map_header(header, path)
        report.columns = {header[i].strip(): name for name, i in positions.items()}
        records = csv.reader(text, delimiter=report.delimiter, strict=True)
        flush_rows = min(batch_size, _FLUSH_ROWS)
        conn.execute("BEGIN IMMEDIATE")
        # Filling an empty table: making the indexes once at the end (a sort each) is cheaper than keeping them
        # up to date row by row, and the segment counts are counted here as the rows go in, exact as long as
        # nobody else writes meanwhile (PRAGMA data_version tells). A crash before the end leaves neither;
        # connect() makes them again.
        bulk = not dry_run and conn.execute("SELECT NOT EXISTS (SELECT 1 FROM subscribers)").fetchone()[0]
        groups: Counter | None = None
        if bulk:
            suspend_subscriber_upkeep(db)
            groups = Counter()
            data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        import_id = conn.execute("INSERT INTO imports (file, started_at) VALUES (?, ?)", [str(path), now]).lastrowid
        reader = _RowReader(positions, len(header), taxonomy, source or f"import:{path.name}",
                            default_status=default_status, now=now, import_id=import_id)
        width = len(header)

        def take(chunk: list[list[str]], lines: Sequence[int]) -> tuple[dict[str, _Row], Iterator[tuple] | None]:
            """The chunk's rows by address, duplicates merged in file order, and their groups when read_clean
            had them for every row; refused rows reported."""
            emails, parsed, chunk_groups = reader.read_clean(chunk, lines)
            report.rows += len(chunk)
            if None in parsed:  # the few records that are not clean, through the full normalisation
                i = -1
                with contextlib.suppress(ValueError):
                    while True:
                        i = parsed.index(None, i + 1)
                        record, start = chunk[i], lines[i]
                        if not "".join(record).strip():
                            parsed[i] = _BLANK
                            report.rows -= 1
                            continue
                        row = (len(record) > width and _check_shape(record, header, start)) or reader.read(
                            record, start)
                        parsed[i] = row
                        if row.__class__ is RowProblem:
                            report.rejected += 1
                            report._keep(report.errors, row)
                        else:
                            emails[i] = row[0][0]
                kept = [(email, row) for email, row in zip(emails, parsed) if row.__class__ is tuple]
                emails, parsed = [email for email, _ in kept], [row for _, row in kept]
            batch = dict(zip(emails, parsed))
            if len(batch) == len(emails):  # the common case, no address twice: a dict made in C
                return batch, chunk_groups
            batch = {}
            for email, row in zip(emails, parsed):
                if email in batch:
                    report.merged += 1
                    earlier = batch[email]
                    report._keep(report.notices, RowProblem(row[-1], "email",
                                                            f"same address as line {earlier[-1]}; merged"))
                    batch[email] = _merge(earlier, row)
                else:
                    batch[email] = row
            return batch, None

        unreadable = None
        collecting = gc.isenabled()
        gc.disable()  # the rows make no reference cycles; the collector would walk them every few hundred rows
        try:
            failure: csv.Error | None = None
            taken = 0  # records read so far
            uncommitted = 0
            line = 2  # where the next record starts: +1 for the header, +1 to count from 1
            while True:
                try:
                    chunk = list(islice(records, flush_rows))
                except csv.Error as exc:  # islice dropped what it had read: read this chunk again, to the fault
                    failure, chunk = exc, _records_before_fault(path, encoding, report.delimiter, taken)
                if not chunk:
                    break
                taken += len(chunk)
                after = records.line_num + 2
                if after - line == len(chunk) and not failure:  # one line each, as is usual
                    lines: Sequence[int] = range(line, after)
                else:  # some record holds a line break in quotes, or the file is unreadable past this chunk
                    lines, after = _line_starts(chunk, line)
                line = after
                uncommitted += len(chunk)
                flush(*take(chunk, lines))
                if failure:
                    break
                if uncommitted >= batch_size:
                    uncommitted = 0
                    if not dry_run:
                        conn.execute("COMMIT")
                    if progress:  # between transactions: a slow terminal never holds the lock
                        progress(raw.tell())
                    if not dry_run:
                        conn.execute("BEGIN IMMEDIATE")
                        if bulk and conn.execute("PRAGMA data_version").fetchone()[0] != data_version:
                            groups = None  # another connection wrote meanwhile
            if failure:
                unreadable = ImportFileError(
                    f"{path}, line {line}: {failure} (an unclosed quote swallows the lines after it; close it "
                    f"or remove it). Lines before {line} were {'checked' if dry_run else 'imported'}."
                )
            conn.execute(
                "UPDATE imports SET finished_at = ?, rows = ?, inserted = ?, updated = ?, merged = ?, suppressed = ?, "
                "rejected = ? WHERE id = ?", [utc_iso(clock.now()), report.rows, report.inserted, report.updated,
                                              report.merged, report.suppressed, report.rejected, import_id])
            if bulk:
                resume_subscriber_upkeep(db, groups)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            ensure_indexes(db)
            raise
        finally:
            if collecting:
                gc.enable()
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
        if bulk:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if progress:
            progress(raw.tell())
    if unreadable is not None:
        raise unreadable
    return report


def _trimmed(values: Sequence[str], limit: int, default: str) -> Sequence[str]:
    """value.strip()[:limit] or default for each value, as read() stores them; the column itself, untouched,
    when none of its distinct values (a handful, in a column such as consent_source) would change."""
    if not any(values):  # a column the file does not have
        return (default,) * len(values)
    if all(value and len(value) <= limit and value == value.strip() for value in set(values)):
        return values
    return [value.strip()[:limit] or default for value in values]


def _text_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding  # a BOM is not a header


def _records_before_fault(path: Path, encoding: str, delimiter: str, skip: int) -> list[list[str]]:
    """The records after the first `skip` and before a csv.Error, read again from the start of the file."""
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding=_text_encoding(encoding), newline="")
        text.readline()
        records = csv.reader(text, delimiter=delimiter, strict=True)
        deque(islice(records, skip), maxlen=0)
        found = []
        with contextlib.suppress(csv.Error):
            for record in records:
                found.append(record)
        return found


def _line_starts(records: list[list[str]], line: int) -> tuple[list[int], int]:
    """The line each record starts on, and the line after the last, counting the line breaks inside quoted
    cells as the csv module does (a CR LF, a lone CR or a lone LF each end a line)."""
    starts = []
    for record in records:
        starts.append(line)
        line += 1 + sum(cell.count("\n") + cell.count("\r") - cell.count("\r\n") for cell in record)
    return starts, line


def _check_shape(record: list[str], header: list[str], line: int) -> RowProblem | None:
    extra = record[len(header):]
    if any(cell.strip() for cell in extra):
        return RowProblem(line, "row", f"{len(record)} fields but the header has {len(header)}; "
                                       "is a value with a comma or semicolon missing its quotes?")
    return None
