"""What a campaign costs to send over SMTP, against bare blasters of one prebuilt message, in one run.

    python benchmarks/send.py                          # 20,000 messages per way, 4 connections, best of 3
    python benchmarks/send.py --messages 5000 --rounds 2
    python benchmarks/send.py --before                 # also our engine on smtplib, as before smtpwire
    python benchmarks/send.py --stuffing               # also our client on plain bytes, stuffed per message
    python benchmarks/send.py --rss                    # also our engine at 200,000 messages: peak RSS
    python benchmarks/send.py --rss --rss-messages 1000000   # ... at a million

The sink is Postfix's smtp-sink (a C server that takes tens of thousands of messages a second) when it is
installed, else `python -m newsletter.mailsink` (aiosmtpd, which saturates near 1,600 msg/s and then sets
the pace itself). Each way of sending runs in a fresh child process, over the same number of connections:

  smtplib  one prebuilt message, smtplib.SMTP.sendmail, one thread per connection
  raw      the same message already dot-stuffed, on a bare socket: MAIL, RCPT and DATA in one write, the
           body in a second; nothing else. The floor.
  wire     the same message through smtpwire.WireTransport (the engine's client), one thread per connection
  ours     send_campaign on a database of N subscribers: the real engine with the default settings (one
           process per core, [sending] processes = 0); personalised, signed, VERP'd messages and the
           delivery log; its CPU includes the render child and every helper process
  ours-1   the same with [sending] processes = 1: one process carries every connection
  before   (--before) ours again, with open_transport giving smtplib's SMTPTransport as before smtpwire
  wire-bytes (--stuffing) wire on the message as plain bytes: normalised and dot-stuffed on every send

CPU per message is user + system time of the child and of every process it started and waited for,
over the sending phase only (getrusage SELF + CHILDREN, taken in the child around the send). Peak RSS is
each process's VmHWM: the child reports its own, and the parent polls /proc for its descendants.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "subscribers" / "generate.py"
SLUG = "2026-12-lac-digest"
DOMAIN = "lac.example.org"
SENDER = f"news@{DOMAIN}"
BLAST_RECIPIENT = "someone@example.org"
RSS_MESSAGES = 200_000
WAYS = ("smtplib", "raw", "wire", "ours", "ours-1")


def load_by_path(name: str, path: Path):
    """benchmarks/ and tests/ are not packages: load render.py and postfix_servers.py by their paths."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


POSTFIX_SERVERS = load_by_path("postfix_servers", ROOT / "tests" / "postfix_servers.py")


def engine_config(database: Path, port: int, connections: int, processes: int = 0):
    from newsletter.config import Config, SendingSettings

    return Config(database=database, campaigns_dir=ROOT / "campaigns", templates_dir=ROOT / "templates",
                  secret_key="benchmark-secret", base_url=f"https://{DOMAIN}", sender_address=SENDER,
                  unsubscribe_mailto=f"unsubscribe@{DOMAIN}", bounce_address=f"bounces@{DOMAIN}",
                  smtp_url=f"smtp://127.0.0.1:{port}",
                  sending=SendingSettings(connections=connections, processes=processes))


# -- the sinks ----------------------------------------------------------------------------------------


class MailsinkProcess:
    """`python -m newsletter.mailsink --port 0` in its own process: it prints its port first."""

    name = "aiosmtpd (newsletter.mailsink; smtp-sink is not installed)"

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "newsletter.mailsink", "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise SystemExit(f"mail sink did not start: {line!r} {self.process.stderr.read()}")
        self.port = int(line)
        self._accepted: int | None = None

    def cpu_seconds(self) -> float:
        return POSTFIX_SERVERS.process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        _, errors = self.process.communicate(timeout=30)
        words = errors.rsplit("accepted ", 1)
        self._accepted = int(words[1].split()[0]) if len(words) == 2 else None

    def accepted(self) -> int | None:
        return self._accepted


class SmtpSinkProcess:
    """Postfix's smtp-sink on an ephemeral port (tests/postfix_servers.py starts it)."""

    name = "Postfix smtp-sink"

    def __init__(self) -> None:
        self._sink = POSTFIX_SERVERS.SmtpSink(backlog=1000).__enter__()
        self.port = self._sink.port
        self.process = self._sink.process
        self._accepted: int | None = None

    def cpu_seconds(self) -> float:
        return self._sink.cpu_seconds()

    def stop(self) -> None:
        self._accepted = self._sink.accepted()
        self._sink.__exit__(None, None, None)

    def accepted(self) -> int | None:
        return self._accepted


def start_sink():
    return SmtpSinkProcess() if POSTFIX_SERVERS.SMTP_SINK else MailsinkProcess()


# -- the data -----------------------------------------------------------------------------------------


def build_database(rows: int, folder: Path, seed: int, name: str) -> tuple[Path, int]:
    """Generate `rows` subscribers with the project's generator, import them, make every one active."""
    from newsletter.csvimport import import_csv
    from newsletter.db import connect

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


def prebuilt_message(db_path: Path, port: int) -> bytes:
    """One personalised message, built by the engine's own MessageFactory (SMTPReady bytes)."""
    from zoneinfo import ZoneInfo

    from newsletter.campaigns import load_campaign
    from newsletter.db import connect
    from newsletter.interests import Taxonomy

    render = load_by_path("benchmark_render", Path(__file__).with_name("render.py"))
    config = engine_config(db_path, port, 1)
    db = connect(db_path, migrate_schema=False)
    taxonomy = Taxonomy.load(db)
    row = next(iter(db.query("SELECT id, email, name, language, interests, country FROM subscribers LIMIT 1")))
    db.conn.close()
    campaign = load_campaign(ROOT / "campaigns" / SLUG, ZoneInfo("UTC"))
    return render.OurPath(campaign, config, taxonomy).build(row, datetime.now(timezone.utc))


# -- the children: one way of sending each --------------------------------------------------------------


def shares(count: int, connections: int) -> list[int]:
    return [count // connections + (1 if i < count % connections else 0) for i in range(connections)]


def in_threads(work, count: int, connections: int) -> None:
    """`work(share)` on one thread per connection; the first error is raised after all have ended."""
    errors: list[BaseException] = []

    def run(share: int) -> None:
        try:
            work(share)
        except BaseException as error:  # reported after the run
            errors.append(error)

    threads = [threading.Thread(target=run, args=(share,)) for share in shares(count, connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def blast_smtplib(port: int, message: bytes, count: int, connections: int) -> int:
    def work(share: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for _ in range(share):
                smtp.sendmail(SENDER, [BLAST_RECIPIENT], message)

    in_threads(work, count, connections)
    return count


def _read_reply(reader) -> bytes:
    while True:
        line = reader.readline()
        if line[3:4] != b"-":
            return line


def blast_raw(port: int, message: bytes, count: int, connections: int) -> int:
    """MAIL, RCPT, DATA in one write, three replies, then the stuffed body and its reply: nothing more."""
    from newsletter.smtpwire import data_form

    body = data_form(bytes(message))
    envelope = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{BLAST_RECIPIENT}>\r\nDATA\r\n".encode()

    def work(share: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as reader:
            _read_reply(reader)
            sock.sendall(b"EHLO raw.localhost\r\n")
            _read_reply(reader)
            for _ in range(share):
                sock.sendall(envelope)
                replies = [_read_reply(reader)[:3] for _ in range(3)]
                if replies != [b"250", b"250", b"354"]:
                    raise RuntimeError(f"raw blaster: envelope refused: {replies}")
                sock.sendall(body)
                if _read_reply(reader)[:1] != b"2":
                    raise RuntimeError("raw blaster: message refused")
            sock.sendall(b"QUIT\r\n")
            _read_reply(reader)

    in_threads(work, count, connections)
    return count


def blast_wire(port: int, message: bytes, count: int, connections: int, ready: bool = True) -> int:
    """`ready`: the message as message.py builds it (SMTPReady); otherwise plain bytes, which the client
    normalises and dot-stuffs on every send (one bytes.replace pass)."""
    from newsletter.smtpwire import SMTPReady
    from newsletter.transport import open_transport

    data = SMTPReady(message) if ready else bytes(message)

    def work(share: int) -> None:
        transport = open_transport(f"smtp://127.0.0.1:{port}")
        try:
            for _ in range(share):
                reply = transport.send(SENDER, BLAST_RECIPIENT, data)
                if reply.code != 250:
                    raise RuntimeError(f"wire: {reply}")
        finally:
            transport.close()

    in_threads(work, count, connections)
    return count


def send_ours(db_path: Path, port: int, connections: int, before: bool, processes: int = 0) -> int:
    from newsletter.sender import send_campaign

    if before:  # open_transport builds the class it finds in smtpwire: make that smtplib's SMTPTransport
        import newsletter.smtpwire
        from newsletter.transport import SMTPTransport

        newsletter.smtpwire.WireTransport = SMTPTransport
    summary = send_campaign(engine_config(db_path, port, connections, processes), SLUG)
    return summary.sent_now


def cpu_seconds_so_far() -> float:
    """This process's CPU and that of every process it started and waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def vm_hwm_mib(pid: int | str = "self") -> float | None:
    """A process's peak resident memory (VmHWM). Not ru_maxrss: Linux carries a parent's high-water mark
    over fork + exec into its child."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return int(kib) / 1024 if kib else None


def child(way: str, options: dict) -> None:
    message = Path(options["message"]).read_bytes() if options.get("message") else b""
    port, count, connections = options["port"], options["count"], options["connections"]
    if way == "ours":
        from newsletter import sender  # imported before the clock starts, as a running scheduler has it  # noqa: F401
    started, cpu = time.perf_counter(), cpu_seconds_so_far()
    if way == "smtplib":
        sent = blast_smtplib(port, message, count, connections)
    elif way == "raw":
        sent = blast_raw(port, message, count, connections)
    elif way in ("wire", "wire-bytes"):
        sent = blast_wire(port, message, count, connections, ready=way == "wire")
    else:
        sent = send_ours(Path(options["db"]), port, connections, options.get("before", False),
                         options.get("processes", 0))
    seconds, cpu = time.perf_counter() - started, cpu_seconds_so_far() - cpu
    print(json.dumps({"messages": sent, "seconds": seconds, "cpu": cpu, "peak_rss_mib": vm_hwm_mib()}))


# -- the parent: run, watch, report ------------------------------------------------------------------


class Descendants(threading.Thread):
    """Polls /proc while a child runs, keeping the peak RSS of every process below it."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peaks: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            parents = {}
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    except (OSError, IndexError, ValueError):
                        continue
            for pid in parents:
                ancestor = parents.get(pid)
                while ancestor is not None and ancestor != self.root:
                    ancestor = parents.get(ancestor)
                if ancestor == self.root and (peak := vm_hwm_mib(pid)) is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))


def run_child(way: str, options: dict, sink) -> dict:
    command = [sys.executable, __file__, "--child", way, json.dumps(options)]
    sink_before = sink.cpu_seconds()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = Descendants(process.pid)
    watcher.start()
    output, errors = process.communicate()
    watcher.done.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{way} failed:\n{errors}")
    result = json.loads(output.strip().splitlines()[-1])
    result["sink_cpu"] = sink.cpu_seconds() - sink_before
    result["children_rss_mib"] = sorted(watcher.peaks.values(), reverse=True)
    return result


def rate(result: dict) -> float:
    return result["messages"] / result["seconds"]


def cpu_per_message_us(result: dict) -> float:
    return result["cpu"] / result["messages"] * 1e6


def describe(label: str, result: dict) -> str:
    sink_busy = result["sink_cpu"] / result["seconds"]
    sink_share = result["sink_cpu"] / (result["sink_cpu"] + result["cpu"])
    children = result["children_rss_mib"]
    rss = f"{result['peak_rss_mib']:.1f}" + (f" + {len(children)} more: " + ", ".join(f"{mib:.1f}" for mib in children)
                                            if children else "")
    return (f"{label:<10} {rate(result):8,.0f} {cpu_per_message_us(result):10,.0f} {result['seconds']:7.1f} "
            f"{sink_busy:6.0%} {sink_share:6.0%}   {rss}")


def fresh_copy(db_path: Path, label: str) -> Path:
    """Each run of our engine needs the campaign unsent: a copy of the freshly imported database."""
    copy = db_path.with_name(f"{label}-{db_path.name}")
    shutil.copyfile(db_path, copy)
    return copy


def main(argv: list[str] | None = None) -> None:
    from newsletter.config import SendingSettings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per way of sending (default 20,000)")
    parser.add_argument("--connections", type=int, default=SendingSettings().connections,
                        help="SMTP connections for every way (default: the config default, 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="the ways alternate this many times; the best round of each counts (default 3)")
    parser.add_argument("--before", action="store_true",
                        help="also run our engine on smtplib's SMTPTransport, as it sent before smtpwire")
    parser.add_argument("--stuffing", action="store_true",
                        help="also run our client on plain bytes, dot-stuffed per message instead of SMTPReady")
    parser.add_argument("--rss", action="store_true",
                        help="also run our engine at --rss-messages messages and compare its peak RSS")
    parser.add_argument("--rss-messages", type=int, default=RSS_MESSAGES,
                        help=f"messages for --rss (default {RSS_MESSAGES:,}; 1000000 for the issue's target)")
    parser.add_argument("--seed", type=int, default=2026, help="subscriber generator seed (default 2026)")
    parser.add_argument("--child", nargs=2, metavar=("WAY", "OPTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], json.loads(args.child[1]))
        return

    work = Path(tempfile.mkdtemp(prefix="newsletter-send-bench-"))
    sink = start_sink()
    expected = 0
    try:
        db_path, count = build_database(args.messages, work, args.seed, "main")
        message_path = work / "message.eml"
        message_path.write_bytes(prebuilt_message(db_path, sink.port))
        ways = [*WAYS, *(["before"] if args.before else []), *(["wire-bytes"] if args.stuffing else [])]
        print(f"sink: {sink.name} on 127.0.0.1:{sink.port} (process {sink.process.pid}); {count:,} messages per "
              f"way; {args.connections} connections each; {message_path.stat().st_size / 1024:.1f} KiB message; "
              f"best of {args.rounds} round(s); {os.cpu_count()} cores")
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        for round_number in range(args.rounds):
            for way in ways:
                options = {"port": sink.port, "count": count, "connections": args.connections,
                           "message": str(message_path)}
                if way in ("ours", "ours-1", "before"):
                    options.update(db=str(fresh_copy(db_path, f"{way}-{round_number}")), before=way == "before",
                                   processes=1 if way in ("ours-1", "before") else 0)
                result = run_child("ours" if way in ("before", "ours-1") else way, options, sink)
                runs[way].append(result)
                expected += result["messages"]
            print(f"  round {round_number + 1}: " + "   ".join(f"{way} {rate(runs[way][-1]):,.0f} msg/s" for way in ways))
        best = {way: max(results, key=rate) for way, results in runs.items()}

        print(f"\n{'way':<10} {'msg/s':>8} {'CPU µs/msg':>10} {'seconds':>7} {'sink':>6} {'sink':>6}   peak RSS MiB")
        print(f"{'':<10} {'':>8} {'(senders)':>10} {'':>7} {'busy':>6} {'share':>6}   (sender, then its children)")
        for way in ways:
            print(describe(way, best[way]))
        ours, smtplib_run, raw, wire = best["ours"], best["smtplib"], best["raw"], best["wire"]
        print()
        for way in ("ours", "ours-1"):
            print(f"{way}/smtplib CPU per message: "
                  f"{cpu_per_message_us(best[way]) / cpu_per_message_us(smtplib_run):.2f} (aim <= 1.0)   "
                  f"{way}/raw msg/s: {rate(best[way]) / rate(raw):.2f} (aim >= 0.9)")
        print(f"wire/smtplib CPU per message: {cpu_per_message_us(wire) / cpu_per_message_us(smtplib_run):.2f}   "
              f"wire/raw msg/s: {rate(wire) / rate(raw):.2f}"
              + (f"   ours/before CPU per message: {cpu_per_message_us(ours) / cpu_per_message_us(best['before']):.2f}"
                 if args.before else "")
              + (f"   wire/wire-bytes CPU per message: "
                 f"{cpu_per_message_us(wire) / cpu_per_message_us(best['wire-bytes']):.2f}" if args.stuffing else ""))

        if args.rss:
            big_path, big_count = build_database(args.rss_messages, work, args.seed, "rss")
            big = run_child("ours", {"port": sink.port, "count": big_count, "connections": args.connections,
                                     "db": str(big_path)}, sink)
            expected += big["messages"]
            print(f"\nrss: ours at {ours['messages']:,} messages peaks at {ours['peak_rss_mib']:.1f} MiB, "
                  f"at {big['messages']:,} at {big['peak_rss_mib']:.1f} MiB\n" + describe("ours-big", big))
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    if sink.accepted() is not None:
        print(f"sink accepted {sink.accepted():,} messages in all (expected {expected:,})")


if __name__ == "__main__":
    main()
