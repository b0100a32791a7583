"""How fast is a subscriber import next to a bare bulk insert, and how fast is a segment count over the result?

    python benchmarks/import_subscribers.py                 # 1,000,000 rows
    python benchmarks/import_subscribers.py --rows 200000 --rounds 2 --keep

In one run, over the same generated rows (subscribers/generate.py):

- baseline: sqlite-utils' own insert_all of the rows read with csv.DictReader, nothing checked, into a bare
  table (no index), in one transaction, with the same page cache and journal settings as ours;
- ours: import_csv, which checks and normalises every row, merges duplicates, keeps the unique email index,
  and builds the segment index and the segment counts.

Each runs in a child process that reports its own CPU time (the machine may be shared; CPU time is the
steadier figure) and wall time; with --rounds N they alternate N times and the best round of each counts.
Ours also runs at 100,000 rows, to show that its peak RSS does not grow with the file.

Then, over the imported database (a tenth of the paused subscribers given a pause that has ended, which a
count must treat as active, as the sender does), each segment count's median time of 11, from the counts
table (ours) and by the full COUNT(*) over the segment index that counts used before, and a check that our
count equals a full count of the rows the sender would queue.
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
from newsletter.clock import SystemClock, utc_iso
from newsletter.csvimport import import_csv
from newsletter.db import connect
from newsletter.interests import Taxonomy

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "subscribers" / "generate.py"
SMALL_ROWS = 100_000
SAVED = ("caribbean", "country:BB,TT,JM,BS interest:security,infrastructure")
EXPRESSIONS = (
    "status:active",
    "language:es",
    "country:BB,TT interest:security status:active",
    "interest:policy,training",
    "country:BR,MX,AR language:pt,es interest:grants status:active,pending",
    "status:paused",
    "status:unsubscribed,bounced,complained",
    f"@{SAVED[0]} language:en",
)
COUNT_REPEATS = 11
CACHE_KIB = 65536  # the page cache import_csv sets for itself, so that both sides compare fairly


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


def run_baseline(csv_path: str, db_path: str) -> dict:
    """sqlite-utils insert_all into a bare table: the floor for getting these rows into SQLite at all."""
    db = sqlite_utils.Database(db_path)
    db.conn.execute("PRAGMA journal_mode = WAL")
    db.conn.execute("PRAGMA synchronous = NORMAL")
    db.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    cpu, wall = time.process_time(), time.perf_counter()
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        table = db["subscribers"]
        table.create({name: str for name in reader.fieldnames})
        with db.atomic():  # one transaction, as sqlite-utils advises for bulk loads (else one per chunk)
            table.insert_all(reader, batch_size=5000)
    result = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
              "rows": db.execute("SELECT count(*) FROM subscribers").fetchone()[0]}
    db.close()
    return result


def run_ours(csv_path: str, db_path: str) -> dict:
    db = connect(db_path)
    cpu, wall = time.process_time(), time.perf_counter()
    report = import_csv(db, csv_path)
    result = {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall, "rows": report.rows,
              "inserted": report.inserted, "rejected": report.rejected, "merged": report.merged,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # KiB on Linux
    db.close()
    return result


def child(kind: str, csv_path: Path, db_path: Path) -> dict:
    """Run one side in a fresh interpreter, on a fresh database file, and read back its figures."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    output = subprocess.run([sys.executable, __file__, "--child", kind, str(csv_path), str(db_path)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def end_some_pauses(db_path: Path) -> int:
    """A tenth of the paused subscribers get a pause that ended yesterday: the sender would mail them."""
    db = connect(db_path)
    ended = db.execute("UPDATE subscribers SET paused_until = '2000-01-01T00:00:00Z' "
                       "WHERE status = 'paused' AND id % 10 = 0").rowcount
    db.close()
    return ended


def timed(action) -> tuple[float, object]:
    """Median wall time of COUNT_REPEATS runs (after one warm-up run) and the result."""
    result = action()
    timings = []
    for _ in range(COUNT_REPEATS):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings), result


def count_figures(db_path: Path) -> list[tuple[str, float, int, float, int]]:
    """(expression, our median, our count, full-count median, what the sender would queue) per expression."""
    db = connect(db_path)
    segments.save(db, *SAVED)
    taxonomy = Taxonomy.load(db)
    now = utc_iso(SystemClock().now())
    figures = []
    for expression in EXPRESSIONS:
        ours, matched = timed(lambda: segments.count(db, expression))
        where, params = segments.parse_segment(expression, db).where(taxonomy)
        before, _ = timed(lambda: db.execute(f"SELECT count(*) FROM subscribers WHERE {where}", params).fetchone())
        # The sender's rule, spelled out as a full scan: a pause that has ended is active.
        queued = db.execute(
            "SELECT count(*) FROM (SELECT CASE WHEN status = 'paused' AND paused_until <= ? THEN 'active' "
            f"ELSE status END AS status, country, language, interests FROM subscribers) WHERE {where}",
            [now, *params]).fetchone()[0]
        figures.append((expression, ours, matched, before, queued))
    db.close()
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to import (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=2026, help="generator seed (default 2026)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate baseline and ours this many times")
    parser.add_argument("--keep", action="store_true", help="keep the CSV and database files and print where")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CSV", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, csv_path, db_path = args.child
        print(json.dumps((run_baseline if kind == "baseline" else run_ours)(csv_path, db_path)))
        return

    work = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    try:
        small_rows = min(SMALL_ROWS, args.rows)
        big_csv, small_csv = work / f"subscribers-{args.rows}.csv", work / f"subscribers-{small_rows}.csv"
        seconds = generate(args.rows, big_csv, args.seed)
        print(f"generated {args.rows:,} rows ({big_csv.stat().st_size / 2**20:,.1f} MiB) in {seconds:.1f} s")
        generate(small_rows, small_csv, args.seed)

        bare_rounds, our_rounds = [], []
        for _ in range(args.rounds):
            bare_rounds.append(child("baseline", big_csv, work / "baseline.db"))
            our_rounds.append(child("ours", big_csv, work / "ours.db"))
        bare = min(bare_rounds, key=lambda r: r["cpu"])
        ours = min(our_rounds, key=lambda r: r["cpu"])
        small = child("ours", small_csv, work / "small.db")
        assert bare["rows"] == ours["inserted"] + ours["merged"] + ours["rejected"] == args.rows, (bare, ours)
        best = f"best of {args.rounds}" if args.rounds > 1 else "1 round"
        print(f"import of {args.rows:,} rows ({best}):      CPU s    wall s     rows/s (CPU)")
        print(f"  baseline  sqlite-utils insert_all, bare table:  {bare['cpu']:7.2f}  {bare['wall']:8.2f}  "
              f"{args.rows / bare['cpu']:10,.0f}")
        print(f"  ours      import_csv ({ours['inserted']:,} new, {ours['merged']:,} merged, {ours['rejected']:,} "
              f"refused):  {ours['cpu']:7.2f}  {ours['wall']:8.2f}  {args.rows / ours['cpu']:10,.0f}")
        print(f"  ratio     ours / baseline: {ours['cpu'] / bare['cpu']:.2f}x CPU, {ours['wall'] / bare['wall']:.2f}x "
              "wall (aim: at most 1.5x)")
        print(f"  peak RSS  import_csv: {small['rows']:,} rows {small['peak_rss_mib']:.1f} MiB, "
              f"{ours['rows']:,} rows {ours['peak_rss_mib']:.1f} MiB")

        ended = end_some_pauses(work / "ours.db")
        print(f"segment counts over {args.rows:,} subscribers ({ended:,} paused with a pause that has ended), "
              f"median of {COUNT_REPEATS}:")
        print(f"  {'expression':68} {'count':>9}  {'ours ms':>8}  {'COUNT(*) ms':>11}  equals the sender's queue")
        for expression, our_time, matched, before, queued in count_figures(work / "ours.db"):
            print(f"  {expression:68} {matched:>9,}  {our_time * 1000:8.2f}  {before * 1000:11.2f}  "
                  f"{'yes' if matched == queued else f'NO: {queued:,}'}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
