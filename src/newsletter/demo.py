"""`newsletter demo`: the whole path on a throwaway database and a real local SMTP server."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from .packaged import SAMPLE_CAMPAIGNS, SAMPLE_LOGO

DEMO_CONFIG = """\
# Written by `newsletter demo`; a throwaway setup. Use `newsletter init` for a real one.
[newsletter]
database = "newsletter.db"
campaigns_dir = "campaigns"
templates_dir = "templates"
postal_address = "Rambla Example 1234\\n11300 Montevideo, Uruguay"
logo = "{logo}"
sender_name = "LAC Regional Bureau"
sender_address = "news@lac.example.org"
bounce_address = "bounces@lac.example.org"
unsubscribe_mailto = "unsubscribe@lac.example.org"
base_url = "http://127.0.0.1:8080"
timezone = "America/Port_of_Spain"
smtp_url = "smtp://127.0.0.1:{port}"
secret_key = "{secret}"

[newsletter.list_name]
en = "LAC Internet Digest (demo)"
es = "Boletín de Internet de ALC (demo)"
pt = "Boletim de Internet da ALC (demo)"
fr = "Lettre Internet ALC (démo)"

[sending]
connections = 4
"""



def clean(folder: Path) -> None:
    """No database, rendered files or mail from an earlier run: only what the demo itself made."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob("newsletter.db*"):
        leftover.unlink()
    shutil.rmtree(folder / "maildir", ignore_errors=True)
    shutil.rmtree(folder / "build", ignore_errors=True)


def copy_sample_campaigns(folder: Path) -> Path:
    """The packaged sample campaigns, copied fresh into folder/campaigns so that they can be edited and
    sent again; a folder of the user's own there with another name is left alone."""
    target = folder / "campaigns"
    for campaign in sorted(path for path in SAMPLE_CAMPAIGNS.iterdir() if path.is_dir()):
        shutil.rmtree(target / campaign.name, ignore_errors=True)
        shutil.copytree(campaign, target / campaign.name)
    return target


def write_config(folder: Path, port: int) -> Path:
    """A config pointing at the local server on `port`."""
    config_path = folder / "newsletter.toml"
    config_path.write_text(DEMO_CONFIG.format(port=port, secret=secrets.token_urlsafe(24),
                                                      logo=SAMPLE_LOGO.as_posix()), encoding="utf-8")
    return config_path
