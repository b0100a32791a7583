"""The README's main command: `newsletter demo` works on a fresh folder and delivers to a real local server."""

import csv
import email
import email.policy
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def active_sample_subscribers() -> int:
    with open(REPO / "subscribers" / "sample.csv", encoding="utf-8") as handle:
        return sum(1 for row in csv.DictReader(handle) if row["status"] == "active")


def test_the_demo_sends_the_sample_issue_to_every_active_sample_subscriber(tmp_path):
    folder = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "newsletter.cli", "demo", "--dir", str(folder)],
                            cwd=REPO, capture_output=True, text=True, timeout=300, env=None)
    assert result.returncode == 0, result.stderr
    received = sorted((folder / "maildir" / "new").iterdir())
    assert len(received) == active_sample_subscribers()
    message = email.message_from_bytes(received[0].read_bytes(), policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_body("plain") and message.get_body("html")
    assert f"The server received {len(received)} messages" in result.stdout
    assert (folder / "newsletter.toml").exists()


def test_running_the_demo_again_starts_from_a_clean_folder(tmp_path):
    folder = tmp_path / "demo"
    for _ in range(2):
        result = subprocess.run([sys.executable, "-m", "newsletter.cli", "demo", "--dir", str(folder)],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert len(list((folder / "maildir" / "new").iterdir())) == active_sample_subscribers()
