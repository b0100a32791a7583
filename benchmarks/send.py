"""How fast does a campaign go out over SMTP, against a naive sender and against a raw blaster?

    python benchmarks/send.py                          # 20,000 messages
    python benchmarks/send.py --messages 5000 --naive-sample 300
    python benchmarks/send.py --rss                    # also our engine at 200,000, to compare peak RSS
    python benchmarks/send.py --profile                # also where our per-message time goes (cProfile)

A counting SMTP sink (`python -m newsletter.mailsink --port 0`) runs in its own process on loopback. The
subscribers come from subscribers/generate.py, imported with csvimport.import_csv and all made active, so N
subscribers means N messages. Then, in one run, three ways to send the same number of messages:

  naive  per message: Jinja2 + premailer + EmailMessage (benchmarks/render.py's naive path) and a NEW
         smtplib connection; run on a sample and extrapolated.
  raw    one prebuilt message, sent N times over as many persistent smtplib connections (threads) as our
         engine uses: what the sink and smtplib allow, with no work per message at all.
  ours   send_campaign on the database, in a child process: queueing, per-subscriber checks, rendering,
         personalised messages with signed links and VERP return paths, the delivery log committed per
         message. The child reports its CPU time (time.process_time) and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import resource
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter import deliveries
from newsletter.campaigns import load_campaign
from newsletter.config import Config, SendingSettings
from newsletter.csvimport import import_csv
from newsletter.db import connect
from newsletter.interests import Taxonomy
from newsletter.sender import CampaignSender, prepare_campaign, send_campaign
from newsletter.transport import open_transport

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "subscribers" / "generate.py"
SLUG = "2026-12-lac-digest"
DOMAIN = "lac.example.org"
SENDER = f"news@{DOMAIN}"
RSS_MESSAGES = 200_000


def load_render_benchmark():
    """benchmarks/ is not a package: load render.py (the naive path and the shared config) by its path."""
    spec = importlib.util.spec_from_file_location("benchmark_render", Path(__file__).with_name("render.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def engine_config(database: Path, port: int, connections: int) -> Config:
    return Config(database=database, campaigns_dir=ROOT / "campaigns", templates_dir=ROOT / "templates",
                  secret_key="benchmark-secret", base_url=f"https://{DOMAIN}", sender_address=SENDER,
                  unsubscribe_mailto=f"unsubscribe@{DOMAIN}", bounce_address=f"bounces@{DOMAIN}",
                  smtp_url=f"smtp://127.0.0.1:{port}", sending=SendingSettings(connections=connections))


# -- the sink -----------------------------------------------------------------------------------------


class SinkProcess:
    """`python -m newsletter.mailsink --port 0` in its own process: it prints its port first."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "newsletter.mailsink", "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise SystemExit(f"mail sink did not start: {line!r} {self.process.stderr.read()}")
        self.port = int(line)

    def cpu_seconds(self) -> float:
        """User + system CPU the sink has used so far (Linux /proc), to see whether it is the bottleneck."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int | None:
        """Stop it and return how many messages it accepted (from its last words), if it said."""
        self.process.send_signal(signal.SIGTERM)
        _, errors = self.process.communicate(timeout=30)
        words = errors.rsplit("accepted ", 1)
        return int(words[1].split()[0]) if len(words) == 2 else None


# -- the subscribers ----------------------------------------------------------------------------------


def build_database(rows: int, folder: Path, seed: int, name: str) -> tuple[Path, int]:
    """Generate `rows` subscribers with the project's generator, import them, make every one active."""
    csv_path, db_path = folder / f"{name}.csv", folder / f"{name}.db"
    subprocess.run([sys.executable, str(GENERATOR), "--rows", str(rows), "--seed", str(seed), "-o", str(csv_path)],
                   check=True, capture_output=True)
    db = connect(db_path)
    import_csv(db, csv_path)
    db.execute("UPDATE subscribers SET status = 'active', paused_until = NULL")
    active = db.execute("SELECT count(*) FROM subscribers").fetchone()[0]
    db.conn.close()
    csv_path.unlink()
    return db_path, active


def subscriber_rows(db_path: Path, limit: int) -> list[dict]:
    db = connect(db_path, migrate_schema=False)
    rows = list(db.query("SELECT id, email, name, language, interests, country FROM subscribers ORDER BY id "
                         "LIMIT ?", [limit]))
    db.conn.close()
    return rows


# -- naive and raw ------------------------------------------------------------------------------------


def run_naive(port: int, rows: list[dict], config: Config) -> dict:
    """Render, inline and build every message, and open a fresh connection for each."""
    render = load_render_benchmark()
    campaign = load_campaign(ROOT / "campaigns" / SLUG, ZoneInfo("UTC"))
    naive = render.NaivePath(campaign, config, Taxonomy.load(connect(config.database, migrate_schema=False)))
    started, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        data = naive.build(row, datetime.now(timezone.utc))
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.sendmail(SENDER, [row["email"]], data)
    return {"messages": len(rows), "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def prebuilt_message(row: dict, config: Config) -> bytes:
    render = load_render_benchmark()
    campaign = load_campaign(ROOT / "campaigns" / SLUG, ZoneInfo("UTC"))
    taxonomy = Taxonomy.load(connect(config.database, migrate_schema=False))
    return render.OurPath(campaign, config, taxonomy).build(row, datetime.now(timezone.utc))


def run_raw(port: int, message: bytes, count: int, connections: int) -> dict:
    """The same bytes `count` times over `connections` persistent connections, one thread each."""
    shares = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]
    errors: list[BaseException] = []

    def blast(share: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port) as smtp:
                for _ in range(share):
                    smtp.sendmail(SENDER, ["someone@example.org"], message)
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=blast, args=(share,)) for share in shares]
    started, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {"messages": count, "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


# -- ours, in a child process -------------------------------------------------------------------------


def run_engine(db_path: Path, port: int, connections: int) -> dict:
    """send_campaign in a fresh interpreter, so that its CPU time and peak RSS are its own."""
    output = subprocess.run([sys.executable, __file__, "--child-engine", str(db_path), str(port), str(connections)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_profile(db_path: Path, port: int) -> None:
    subprocess.run([sys.executable, __file__, "--child-profile", str(db_path), str(port)], check=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not ru_maxrss alone: Linux carries the parent's high-water mark
    over fork + exec into it, so a child of a big parent would report the parent's peak. VmHWM belongs to
    this address space only."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB elsewhere too, bar macOS
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


def child_engine(db_path: str, port: str, connections: str) -> None:
    config = engine_config(Path(db_path), int(port), int(connections))
    started, cpu = time.perf_counter(), time.process_time()
    summary = send_campaign(config, SLUG)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"messages": summary.sent_now, "counts": summary.counts, "seconds": seconds, "cpu": cpu,
                      "peak_rss_mib": peak_rss_mib()}))


def child_profile(db_path: str, port: str) -> None:
    """The per-message steps the sending threads run (CampaignSender.process), here on the main thread
    over one connection, so that cProfile sees them (it profiles only the thread that enables it)."""
    config = engine_config(Path(db_path), int(port), 1)
    db = connect(config.database)
    campaign = prepare_campaign(config, db, SLUG)
    sender = CampaignSender(config, campaign)
    transport = open_transport(config.smtp_url)
    profiler = cProfile.Profile(time.process_time)  # CPU, not time spent waiting for the sink
    sent = 0
    started = time.perf_counter()
    profiler.enable()
    while jobs := deliveries.claim(db, SLUG, datetime.now(timezone.utc), config.sending.batch_size):
        for job in jobs:
            sent += sender.process(db, transport, job) == "sent"
    profiler.disable()
    elapsed = time.perf_counter() - started
    transport.close()
    print(f"profile: {sent:,} messages over 1 connection in {elapsed:.1f} s "
          f"({sent / elapsed:,.0f} msg/s with cProfile's overhead); times below are CPU seconds")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(30)


# -- report -------------------------------------------------------------------------------------------


def rate(result: dict) -> float:
    return result["messages"] / result["seconds"]


def measured(sink: SinkProcess, run) -> dict:
    """Run one way of sending and add how busy the sink was meanwhile (its CPU seconds per wall second)."""
    before = sink.cpu_seconds()
    result = run()
    result["sink_busy"] = (sink.cpu_seconds() - before) / result["seconds"]
    return result


def fresh_copy(db_path: Path, round_number: int) -> Path:
    """Each round of our engine needs the campaign unsent: a copy of the freshly imported database."""
    copy = db_path.with_name(f"round-{round_number}-{db_path.name}")
    shutil.copyfile(db_path, copy)
    return copy


def describe(result: dict) -> str:
    return (f"{rate(result):8,.0f} msg/s  {result['cpu'] / result['messages'] * 1e6:6,.0f} µs CPU/message  "
            f"{result['seconds']:6.1f} s  sink busy {result['sink_busy']:4.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per way of sending (default 20,000)")
    parser.add_argument("--naive-sample", type=int, default=1_000, help="messages the naive way (default 1,000)")
    parser.add_argument("--connections", type=int, default=SendingSettings().connections,
                        help="SMTP connections for raw and ours (default: the config default, 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="raw and ours alternate this many times; the best of each counts (default 3)")
    parser.add_argument("--rss", action="store_true",
                        help=f"also run our engine at {RSS_MESSAGES:,} messages and compare its peak RSS")
    parser.add_argument("--profile", action="store_true", help="also profile our per-message steps with cProfile")
    parser.add_argument("--seed", type=int, default=2026, help="subscriber generator seed (default 2026)")
    parser.add_argument("--child-engine", nargs=3, metavar=("DB", "PORT", "CONNECTIONS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_profile:
        child_profile(*args.child_profile)
        return
    if args.child_engine:
        child_engine(*args.child_engine)
        return

    work = Path(tempfile.mkdtemp(prefix="newsletter-send-bench-"))
    sink = SinkProcess()
    expected = 0
    try:
        db_path, count = build_database(args.messages, work, args.seed, "main")
        config = engine_config(db_path, sink.port, args.connections)
        rows = subscriber_rows(db_path, max(args.naive_sample, 1))
        message = prebuilt_message(rows[0], config)
        print(f"{count:,} active subscribers; sink on 127.0.0.1:{sink.port} in process {sink.process.pid}; "
              f"{args.connections} connections for raw and ours; {args.rounds} round(s), best counts")

        naive = measured(sink, lambda: run_naive(sink.port, rows[: args.naive_sample], config))
        expected += naive["messages"]
        raws, ours_runs = [], []
        for round_number in range(args.rounds):
            raws.append(measured(sink, lambda: run_raw(sink.port, message, count, args.connections)))
            copy = fresh_copy(db_path, round_number)
            ours_runs.append(measured(sink, lambda: run_engine(copy, sink.port, args.connections)))
            expected += raws[-1]["messages"] + ours_runs[-1]["messages"]
            print(f"  round {round_number + 1}: raw {rate(raws[-1]):6,.0f} msg/s   "
                  f"ours {rate(ours_runs[-1]):6,.0f} msg/s")
        raw, ours = max(raws, key=rate), max(ours_runs, key=rate)

        print(f"naive  render + premailer + EmailMessage + new connection per message, {naive['messages']:,} "
              f"sampled:\n       {describe(naive)}   ({count:,} would take {count / rate(naive):,.0f} s)")
        print(f"raw    one prebuilt {len(message) / 1024:.1f} KiB message over {args.connections} persistent "
              f"connections:\n       {describe(raw)}")
        print(f"ours   send_campaign, personalised and logged, {args.connections} connections "
              f"(sent {ours['messages']:,} of {count:,}):\n       {describe(ours)}   "
              f"peak RSS {ours['peak_rss_mib']:.1f} MiB")
        print(f"ratio  ours / raw: {rate(ours) / rate(raw):.2f}   ours / naive: {rate(ours) / rate(naive):.1f}x")

        if args.rss:
            big_path, _ = build_database(RSS_MESSAGES, work, args.seed, "rss")
            big = measured(sink, lambda: run_engine(big_path, sink.port, args.connections))
            expected += big["messages"]
            print(f"rss    ours at {ours['messages']:>9,} messages: peak {ours['peak_rss_mib']:6.1f} MiB\n"
                  f"       ours at {big['messages']:>9,} messages: peak {big['peak_rss_mib']:6.1f} MiB   "
                  f"{describe(big)}")
        if args.profile:
            profile_path, _ = build_database(min(count, 5_000), work, args.seed, "profile")
            run_profile(profile_path, sink.port)
    finally:
        accepted = sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    if not args.profile and accepted is not None:
        print(f"sink   accepted {accepted:,} messages in all (expected {expected:,})")


if __name__ == "__main__":
    main()
