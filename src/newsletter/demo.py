"""`newsletter demo`: the whole path on a throwaway database and a real local SMTP server."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

DEMO_CONFIG = """\
# Written by `newsletter demo`; a throwaway setup. Use `newsletter init` for a real one.
[newsletter]
database = "newsletter.db"
campaigns_dir = "{campaigns}"
templates_dir = "{templates}"
list_name = "LAC Internet Digest (demo)"
sender_name = "LAC Regional Bureau"
sender_address = "news@lac.example.org"
bounce_address = "bounces@lac.example.org"
unsubscribe_mailto = "unsubscribe@lac.example.org"
base_url = "http://127.0.0.1:8080"
timezone = "America/Port_of_Spain"
smtp_url = "smtp://127.0.0.1:{port}"
secret_key = "{secret}"

[sending]
connections = 4
"""


def project_folder(name: str) -> Path:
    """campaigns/, templates/ and subscribers/ of the checkout, found from here or the working folder."""
    for base in (Path.cwd(), REPO):
        if (base / name).is_dir():
            return (base / name).resolve()
    raise FileNotFoundError(f"cannot find the {name}/ folder; run the demo from the project's checkout")


def clean(folder: Path) -> None:
    """No database, rendered files or mail from an earlier run: only what the demo itself made."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("newsletter.db*"):
        leftover.unlink()
    shutil.rmtree(folder / "maildir", ignore_errors=True)
    shutil.rmtree(folder / "build", ignore_errors=True)


def write_config(folder: Path, port: int) -> Path:
    """A config pointing at the local server on `port`."""
    config_path = folder / "newsletter.toml"
    config_path.write_text(DEMO_CONFIG.format(
        campaigns=project_folder("campaigns"), templates=project_folder("templates"), port=port,
        secret=secrets.token_urlsafe(24)), encoding="utf-8")
    return config_path
