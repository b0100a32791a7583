"""What the sending tests share: a real config for the sample campaign, subscribers, and the delivery log.

The config points at the repository's own campaign and templates, so every test sends the real issue.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlite_utils

from newsletter import subscribers
from newsletter.clock import Clock, FakeClock
from newsletter.config import Config, load_config

REPOSITORY = Path(__file__).resolve().parents[1]
CAMPAIGNS_DIR = REPOSITORY / "campaigns"
TEMPLATES_DIR = REPOSITORY / "templates"
SLUG = "2026-12-lac-digest"
SECRET = "sending-tests-secret"
BOUNCE_ADDRESS = "bounces@lac.example.org"
COUNTRIES = ("TT", "BB", "BR", "MX", "HT")  # English, English, Portuguese, Spanish, French variants

ROW_FIELDS = ("status", "attempts", "last_code", "last_enhanced", "last_text")


def write_config(folder: Path, smtp_url: str, *, campaigns_dir: Path = CAMPAIGNS_DIR,
                 templates_dir: Path = TEMPLATES_DIR, bounces: dict[str, object] | None = None,
                 **sending: object) -> Config:
    """Write newsletter.toml in `folder` (database beside it) and load it as the CLI would.

    `sending` adds [sending] settings; `bounces`, when given, is written as the [bounces] table.
    """
    lines = [
        "[newsletter]",
        'database = "newsletter.db"',
        f'campaigns_dir = "{campaigns_dir}"',
        f'templates_dir = "{templates_dir}"',
        f'smtp_url = "{smtp_url}"',
        f'secret_key = "{SECRET}"',
        f'bounce_address = "{BOUNCE_ADDRESS}"',
        'unsubscribe_mailto = "unsubscribe@lac.example.org"',
        'base_url = "https://news.lac.example.org"',
        "",
        "[sending]",
    ]
    lines += [f"{name} = {_toml(value)}" for name, value in {"starttls": "never", **sending}.items()]
    if bounces is not None:
        lines += ["", "[bounces]", *(f"{name} = {_toml(value)}" for name, value in bounces.items())]
    path = folder / "newsletter.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path, environ={})


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def reader(number: int) -> str:
    return f"reader{number:04d}@example.org"


def add_subscribers(db: sqlite_utils.Database, count: int, *, clock: Clock | None = None) -> list[str]:
    """`count` active subscribers spread over the campaign's languages; returns their addresses in id order."""
    clock = clock or FakeClock()
    addresses = [reader(number) for number in range(1, count + 1)]
    for number, address in enumerate(addresses):
        subscribers.add(db, address, name=f"Reader {number + 1}", country=COUNTRIES[number % len(COUNTRIES)],
                        clock=clock)
    return addresses


def delivery_rows(db: sqlite_utils.Database, slug: str = SLUG) -> dict[str, dict]:
    """Every delivery of the campaign by address, with all its columns."""
    return {row["email"]: row for row in db.query("SELECT * FROM deliveries WHERE campaign = ? ORDER BY id", [slug])}


def row_state(row: dict) -> tuple:
    """The outcome columns of one delivery row, in ROW_FIELDS order."""
    return tuple(row[name] for name in ROW_FIELDS)


def status_counts(db: sqlite_utils.Database, slug: str = SLUG) -> dict[str, int]:
    return dict(db.execute("SELECT status, count(*) FROM deliveries WHERE campaign = ? GROUP BY status", [slug]))


GUARD_SECONDS = 120  # only so that a hanging command fails its test instead of hanging the suite


def run_cli(config: Config, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`newsletter --config <config> <args>` in a process of its own, as an operator or cron runs it."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    environ.update(env or {}, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "newsletter.cli", "--config", str(config.path), *args],
                          capture_output=True, text=True, env=environ, timeout=GUARD_SECONDS)


def like_a_terminal() -> None:
    """preexec_fn for senders a test interrupts: Ctrl-C works as in a terminal even when pytest itself runs
    as a background job, whose shell starts it (and so its children) with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(config: Config, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The same, started in the background (to interrupt it, or to break the relay under it)."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    environ.update(env or {}, COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "newsletter.cli", "--config", str(config.path), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
                            preexec_fn=like_a_terminal)


def error_lines(stderr: str) -> list[str]:
    """The `Error: ...` lines a command printed (a traceback would show up as other lines)."""
    return [line for line in stderr.splitlines() if line.startswith("Error:")]
