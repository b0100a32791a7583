"""How fast and how lean is a subscriber import, and how fast is a segment count over the result?

    python benchmarks/import_subscribers.py                 # 1,000,000 rows
    python benchmarks/import_subscribers.py --rows 200000 --keep

In one run: a floor (sqlite-utils' own insert_all of the same rows read with csv.DictReader, no validation,
into a table with the same indexes), then our import_csv, which validates, normalises and merges every row.
Our import runs in a child process, so its peak RSS is its own; it runs at 100,000 rows and at the full
count, to show that the peak does not grow with the file. Last, the median of 11 timings of segments.count
for three expressions over the imported database.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlite_utils

from newsletter import segments
from newsletter.csvimport import import_csv
from newsletter.db import connect

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "subscribers" / "generate.py"
SMALL_ROWS = 100_000
EXPRESSIONS = ("country:BB,TT interest:security status:active", "language:es", "status:active")
COUNT_REPEATS = 11
BASELINE_CACHE_KIB = 65536  # the page cache import_csv sets for itself, so that both floors compare fairly


def load_generator():
    """subscribers/ is a folder of samples, not a package: load generate.py by its path."""
    spec = importlib.util.spec_from_file_location("subscribers_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(rows: int, path: Path, seed: int) -> float:
    started = time.perf_counter()
    load_generator().main(["--rows", str(rows), "--seed", str(seed), "-o", str(path)])
    return time.perf_counter() - started


def subscriber_indexes(work: Path) -> list[tuple[list[str], bool]]:
    """(columns, unique) of every index our schema puts on subscribers, read from a freshly migrated file."""
    db = connect(work / "schema.db")
    indexes = [([info[2] for info in db.execute(f"PRAGMA index_info('{name}')")], bool(unique))
               for _, name, unique, *_ in db.execute("PRAGMA index_list('subscribers')")]
    db.close()
    return indexes


def baseline(csv_path: Path, db_path: Path, indexes: list[tuple[list[str], bool]]) -> float:
    """The floor: the same rows into SQLite with sqlite-utils, nothing checked; into a bare table, or into one
    with the same indexes as our schema (most of the cost of a large import)."""
    db = sqlite_utils.Database(db_path)
    db.conn.execute("PRAGMA journal_mode = WAL")
    db.conn.execute("PRAGMA synchronous = NORMAL")
    db.conn.execute(f"PRAGMA cache_size = -{BASELINE_CACHE_KIB}")
    started = time.perf_counter()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        table = db["subscribers"]
        table.create({name: str for name in reader.fieldnames})
        for columns, unique in indexes:
            table.create_index(columns, unique=unique)
        with db.atomic():  # one transaction, as sqlite-utils advises for bulk loads (else one per chunk)
            table.insert_all(reader, batch_size=5000)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def child_import(csv_path: Path, db_path: Path) -> dict:
    """Run our import in a fresh interpreter and read back its time and peak RSS."""
    output = subprocess.run([sys.executable, __file__, "--child-import", str(csv_path), str(db_path)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_child_import(csv_path: str, db_path: str) -> None:
    db = connect(db_path)
    started = time.perf_counter()
    report = import_csv(db, csv_path)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": elapsed, "rows": report.rows, "inserted": report.inserted,
                      "rejected": report.rejected, "merged": report.merged, "peak_rss_mib": peak_kib / 1024}))


def count_timings(db_path: Path) -> dict[str, tuple[float, int]]:
    db = connect(db_path)
    results = {}
    for expression in EXPRESSIONS:
        segment = segments.parse_segment(expression, db)
        matched = segments.count(db, segment)  # warm the page cache once
        timings = []
        for _ in range(COUNT_REPEATS):
            started = time.perf_counter()
            segments.count(db, expression)
            timings.append(time.perf_counter() - started)
        results[expression] = (statistics.median(timings), matched)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to import (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed (default 2026)")
    parser.add_argument("--keep", action="store_true", help="keep the CSV and database files and print where")
    parser.add_argument("--child-import", nargs=2, metavar=("CSV", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_import:
        run_child_import(*args.child_import)
        return

    work = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    try:
        small_rows = min(SMALL_ROWS, args.rows)
        big_csv, small_csv = work / f"subscribers-{args.rows}.csv", work / f"subscribers-{small_rows}.csv"
        seconds = generate(args.rows, big_csv, args.seed)
        print(f"generated {args.rows:,} rows ({big_csv.stat().st_size / 2**20:,.1f} MiB) in {seconds:.1f} s")
        generate(small_rows, small_csv, args.seed)

        indexes = subscriber_indexes(work)
        bare = baseline(big_csv, work / "baseline-bare.db", [])
        floor = baseline(big_csv, work / "baseline-indexed.db", indexes)
        small = child_import(small_csv, work / "small.db")
        ours = child_import(big_csv, work / "ours.db")
        our_rate = ours["rows"] / ours["seconds"]
        print("baseline  sqlite-utils insert_all of csv.DictReader rows, no validation:")
        print(f"            bare table:                {bare:7.1f} s  {args.rows / bare:10,.0f} rows/s")
        print(f"            with our schema's indexes: {floor:7.1f} s  {args.rows / floor:10,.0f} rows/s  "
              f"({'; '.join(('unique ' if unique else '') + ','.join(cols) for cols, unique in indexes)})")
        print(f"ours      import_csv ({ours['inserted']:,} new, {ours['merged']:,} merged, "
              f"{ours['rejected']:,} refused): {ours['seconds']:7.1f} s  {our_rate:10,.0f} rows/s")
        print(f"ratio     ours / baseline time: {ours['seconds'] / bare:.2f}x the bare table, "
              f"{ours['seconds'] / floor:.2f}x the indexed table")
        print(f"peak RSS  import_csv child: {small['rows']:>9,} rows {small['peak_rss_mib']:6.1f} MiB   "
              f"{ours['rows']:>9,} rows {ours['peak_rss_mib']:6.1f} MiB   "
              f"(growth {ours['peak_rss_mib'] / small['peak_rss_mib']:.2f}x for "
              f"{ours['rows'] / small['rows']:.0f}x the rows)")
        for expression, (median, matched) in count_timings(work / "ours.db").items():
            print(f"segments.count {expression!r:52} {matched:>9,} match  median of {COUNT_REPEATS}: "
                  f"{median * 1000:8.2f} ms")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
