"""Requests per second and server CPU per request: the one-click unsubscribe POST and the preference page.

    python benchmarks/web.py                         # 2,000 requests per case, 1 and 8 clients
    python benchmarks/web.py --requests 500 --subscribers 5000
    python benchmarks/web.py --profile               # also cProfile of the server while it serves POSTs

Two servers run the application on the same database, one after the other, each in its own process on a
loopback port. The baseline serves it as `newsletter serve` did before: werkzeug's threaded development
server, with a database connection opened (and migration-checked) and closed for every request, which
checkpoints the WAL with an fsync whenever no other request holds a connection. Ours is `newsletter
serve`: waitress with [web] threads = 8 and a pool of open connections. (The page-level savings, a cached
interest list and a country list built once per language, are in both.) Clients are threads of this process,
each on one keep-alive connection, as a mailbox provider's one-click POSTs and readers' browsers arrive.
Every POST unsubscribes a different subscriber (the write path, not the "already unsubscribed" one).

CPU per request is the server process's user + system time over the run divided by the requests it
answered (read from /proc), so it does not depend on how busy the clients keep the machine.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from newsletter.db import connect
from newsletter.signing import PREFERENCES, UNSUBSCRIBE, Signer

SECRET = "benchmark-" + "s" * 40
BASELINE = """
import sys
from werkzeug.serving import make_server
from newsletter.config import load_config
from newsletter.db import connect
from newsletter.web import create_app
from newsletter.web.state import EXTENSION_KEY

class PerRequest:  # how requests got their database before the pool: connect (and migrate-check), then close
    def __init__(self, path):
        self.path = path
    def take(self):
        return connect(self.path)
    def give_back(self, db):
        db.conn.close()

config = load_config(sys.argv[1])
app = create_app(config)
app.extensions[EXTENSION_KEY].pool = PerRequest(config.database)
server = make_server("127.0.0.1", 0, app, threaded=True)
print(f"serving on http://127.0.0.1:{server.port}/", file=sys.stderr, flush=True)
server.serve_forever()
"""
SERVERS = {
    "baseline (werkzeug, connect per request)": BASELINE,
    "ours (newsletter serve, waitress)": (
        "import sys; from newsletter.config import load_config; from newsletter.web import serve; "
        "serve(load_config(sys.argv[1]), '127.0.0.1', 0, threads=8)"),
}
PROFILED = ("import cProfile, sys; from newsletter.config import load_config; from newsletter.web import serve; "
            "profiler = cProfile.Profile(); profiler.enable(); "
            "import signal; signal.signal(signal.SIGTERM, lambda *a: (profiler.disable(), "
            "profiler.dump_stats(sys.argv[2]), sys.exit(0))); serve(load_config(sys.argv[1]), '127.0.0.1', 0, threads=8)")


def make_database(folder: Path, count: int) -> list[int]:
    db = connect(folder / "newsletter.db")
    db.conn.execute("BEGIN")
    db.conn.executemany(
        "INSERT INTO subscribers (email, name, country, language, interests, status, created_at, updated_at) "
        "VALUES (?, ?, 'TT', ?, 3, 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
        [(f"reader{n}@example.org", f"Reader {n}", ("en", "es", "pt", "fr")[n % 4]) for n in range(count)])
    db.conn.execute("COMMIT")
    ids = [row[0] for row in db.execute("SELECT id FROM subscribers ORDER BY id")]
    db.conn.close()
    (folder / "newsletter.toml").write_text(
        f'[newsletter]\nsecret_key = "{SECRET}"\nsmtp_url = "maildir://{folder / "outbox"}"\n', encoding="utf-8")
    return ids


def reset(folder: Path) -> None:
    db = connect(folder / "newsletter.db")
    db.execute("UPDATE subscribers SET status = 'active'")
    db.conn.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, code: str, config: Path, *extra: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", code, str(config), *extra], stderr=subprocess.PIPE,
                                        text=True)
        banner = self.process.stderr.readline()
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)/", banner).group(1))
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # the access log: drain it

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run(port: int, clients: int, requests: list[tuple[str, str, bytes | None]]) -> tuple[float, int]:
    """Send the requests over `clients` keep-alive connections; (seconds, answers that were not 200)."""
    errors = 0
    lock = threading.Lock()
    chunks = [requests[i::clients] for i in range(clients)]

    def client(chunk):
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        bad = 0
        for method, path, body in chunk:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            bad += response.status != 200
        connection.close()
        with lock:
            errors += bad

    threads = [threading.Thread(target=client, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests per case")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    signer = Signer(SECRET)
    with tempfile.TemporaryDirectory(prefix="newsletter-web-") as name:
        folder = Path(name)
        ids = make_database(folder, max(args.subscribers, args.requests))
        config = folder / "newsletter.toml"
        cases = {
            "one-click POST /u/": lambda: [("POST", f"/u/{signer.sign(i, UNSUBSCRIBE)}",
                                            b"List-Unsubscribe=One-Click") for i in ids[:args.requests]],
            "GET /p/ (preference page)": lambda: [("GET", f"/p/{signer.sign(ids[n % len(ids)], PREFERENCES)}", None)
                                                  for n in range(args.requests)],
        }
        results: dict[tuple[str, str, int], tuple[float, float]] = {}
        for server_name, code in SERVERS.items():
            for case, build in cases.items():
                for clients in (1, 8):
                    reset(folder)
                    server = Server(code, config)
                    try:
                        run(server.port, 1, build()[:20])  # warm up: imports, templates, caches
                        reset(folder)
                        requests = build()
                        before = cpu_seconds(server.process.pid)
                        seconds, errors = run(server.port, clients, requests)
                        cpu = cpu_seconds(server.process.pid) - before
                    finally:
                        server.stop()
                    if errors:
                        raise SystemExit(f"{server_name}, {case}: {errors} answers were not 200")
                    results[(server_name, case, clients)] = (len(requests) / seconds, cpu / len(requests) * 1000)
        print(f"{'server':<42} {'case':<28} {'clients':>7} {'req/s':>8} {'CPU ms/req':>10}")
        for (server_name, case, clients), (rate, cpu_ms) in results.items():
            print(f"{server_name:<42} {case:<28} {clients:>7} {rate:8.0f} {cpu_ms:10.2f}")
        base, ours = SERVERS
        print("\nratio ours / baseline (req/s; CPU per request baseline / ours):")
        for case in cases:
            for clients in (1, 8):
                b_rate, b_cpu = results[(base, case, clients)]
                o_rate, o_cpu = results[(ours, case, clients)]
                print(f"  {case:<28} {clients} clients: {o_rate / b_rate:4.1f}x req/s, {b_cpu / o_cpu:4.1f}x less CPU")
        if args.profile:
            reset(folder)
            stats_file = folder / "serve.prof"
            server = Server(PROFILED, config, str(stats_file))
            run(server.port, 8, cases["one-click POST /u/"]())
            server.stop()
            import pstats

            pstats.Stats(str(stats_file)).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
