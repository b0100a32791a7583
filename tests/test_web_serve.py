"""`serve()` runs the application on waitress with the configured threads, its access log never shows a
link's token, and SIGTERM (how systemd stops it) ends it cleanly."""

from __future__ import annotations

import re
import subprocess
import sys

from web_support import REPO, SECRET, request

from newsletter.db import connect
from newsletter.signing import PREFERENCES, Signer
from newsletter.subscribers import add

SERVE = "from newsletter.config import load_config; from newsletter.web import serve; " \
        "serve(load_config(r'{config}'), '127.0.0.1', 0)"
CLI = [sys.executable, "-m", "newsletter.cli", "--config", "{config}", "serve", "--port", "0", "--threads", "3"]


def test_serve_answers_on_loopback_and_keeps_tokens_out_of_its_log(tmp_path):
    config = tmp_path / "newsletter.toml"
    config.write_text(f'[newsletter]\nsecret_key = "{SECRET}"\ntemplates_dir = "{REPO / "templates"}"\n')
    db = connect(tmp_path / "newsletter.db")
    token = Signer(SECRET).sign(add(db, "ana@example.org")["id"], PREFERENCES)
    db.conn.close()
    server = subprocess.Popen([sys.executable, "-c", SERVE.format(config=config)], stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stderr.readline()
        port = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", banner).group(1)
        assert request(f"http://127.0.0.1:{port}/p/{token}").status == 200
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[1]
    assert '"GET /p/[token] HTTP/1.1" 200' in log
    assert token not in log


def test_the_serve_command_uses_the_threads_asked_for_and_stops_cleanly_on_sigterm(tmp_path):
    config = tmp_path / "newsletter.toml"
    config.write_text(f'[newsletter]\nsecret_key = "{SECRET}"\n[web]\nthreads = 5\n')
    command = [part.format(config=config) for part in CLI]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        banner = server.stderr.readline()
        assert "with 3 threads" in banner  # --threads over [web] threads
        port = re.search(r"serving on http://127\.0\.0\.1:(\d+)/", banner).group(1)
        assert request(f"http://127.0.0.1:{port}/subscribe").status == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode == 0
