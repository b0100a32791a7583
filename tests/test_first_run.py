"""A first session in an empty folder, with nothing from the repository: init, campaign new, build,
render, a test send, template overrides; and a send that cannot render leaves nothing half-done."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.db import connect
from newsletter.packaged import TEMPLATES, packaged_template_names


@pytest.fixture
def folder(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.delenv("NEWSLETTER_SMTP_URL", raising=False)
    return tmp_path


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), terminal_width=200)
    assert result.exit_code == code, result.output
    return result.output


def test_init_then_campaign_new_gives_a_campaign_that_builds_renders_and_sends(folder):
    run("init")
    assert not (folder / "templates").exists()  # named in the config, but only needed to override
    out = run("campaign", "new", "2027-01-lac-digest", "--title", "January 2027 digest")
    assert f"Made {folder / 'campaigns' / '2027-01-lac-digest'}:" in out
    assert sorted(p.name for p in (folder / "campaigns" / "2027-01-lac-digest").iterdir()) == [
        "campaign.toml", "first-article.md"]
    out = run("campaign", "build", "2027-01-lac-digest")
    html = (folder / "build" / "2027-01-lac-digest" / "2027-01-lac-digest.es.html").read_text(encoding="utf-8")
    assert "An example article to replace with your own" in html and "1 article;" in out
    run("subscribers", "add", "ana@example.org", "--name", "Ana", "--country", "TT", "--interest", "infrastructure")
    message = run("campaign", "render", "2027-01-lac-digest", "--to", "ana@example.org")
    assert "Subject: January 2027 digest" in message and "List-Unsubscribe:" in message
    run("send", "2027-01-lac-digest", "--test", "editor@lac.example.org")
    [sent] = (folder / "outbox" / "new").iterdir()
    parsed = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == "[TEST] January 2027 digest" and parsed["To"] == "editor@lac.example.org"


def test_campaign_new_never_overwrites_and_refuses_a_bad_name(folder):
    run("init")
    run("campaign", "new", "2027-01-lac-digest")
    toml = folder / "campaigns" / "2027-01-lac-digest" / "campaign.toml"
    toml.write_text(toml.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    assert "already exists" in run("campaign", "new", "2027-01-lac-digest", code=1)
    assert toml.read_text(encoding="utf-8").endswith("# edited\n")
    assert "campaign name '../escape'" in run("campaign", "new", "../escape", code=1)


def test_one_copied_template_overrides_only_itself(folder):
    run("init")
    run("campaign", "new", "2027-01-lac-digest")
    out = run("templates", "copy", "email/digest.html")
    assert out.count("wrote ") == 1 and (folder / "templates" / "email" / "digest.html").is_file()
    assert "To use them" not in out  # init's config already names ./templates
    own = folder / "templates" / "email" / "digest.html"
    own.write_text(own.read_text(encoding="utf-8").replace("{% block content %}",
                                                          "{% block content %}<p>Bureau override</p>"),
                   encoding="utf-8")
    run("campaign", "build", "2027-01-lac-digest")
    build = folder / "build" / "2027-01-lac-digest"
    assert "Bureau override" in (build / "2027-01-lac-digest.en.html").read_text(encoding="utf-8")
    packaged_text = (build / "2027-01-lac-digest.en.txt").read_text(encoding="utf-8")
    assert "Bureau override" not in packaged_text and "An example article" in packaged_text
    listing = run("templates", "list")
    assert "email/digest.html" in listing and "yours" in listing and "packaged" in listing
    assert "1 already there, kept" in run("templates", "copy", "email/digest.html")
    assert "Bureau override" in own.read_text(encoding="utf-8")


def test_templates_copy_without_names_writes_every_packaged_template(folder):
    run("templates", "copy", "--to", "mine")
    written = sorted(p.relative_to(folder / "mine").as_posix() for p in (folder / "mine").rglob("*") if p.is_file())
    assert written == packaged_template_names()
    assert (folder / "mine" / "web" / "base.html").read_bytes() == (TEMPLATES / "web" / "base.html").read_bytes()
    assert "unknown/x.html" in run("templates", "copy", "unknown/x.html", code=1)


def campaign_with_own_text_template(folder: Path, template: str) -> Path:
    """A new campaign for one subscriber whose folder's templates/email/digest.txt is `template`."""
    run("init")
    run("campaign", "new", "2027-01-lac-digest")
    run("subscribers", "add", "ana@example.org")
    own = folder / "templates" / "email" / "digest.txt"
    own.parent.mkdir(parents=True)
    own.write_text(template, encoding="utf-8")
    return own


def test_a_send_whose_template_is_broken_is_refused_before_anything_is_queued(folder):
    broken = campaign_with_own_text_template(folder, "{% if %}\n")
    out = run("send", "2027-01-lac-digest", code=2)
    assert "digest.txt, line 1" in out and "Traceback" not in out
    db = connect(folder / "newsletter.db")
    assert [row["state"] for row in db.query("SELECT state FROM campaigns")] in ([], ["draft"])
    assert db.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    broken.unlink()
    assert "1 sent in this run" in run("send", "2027-01-lac-digest")


def test_a_template_that_fails_while_rendering_is_a_content_fault_not_a_traceback(folder):
    campaign_with_own_text_template(folder, "Hello\n{{ 1 / 0 }}\n")
    out = run("send", "2027-01-lac-digest", code=2)
    assert "digest.txt, line 2: ZeroDivisionError" in out and "Traceback" not in out
    assert connect(folder / "newsletter.db").execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0


def test_version_is_the_installed_one():
    from importlib.metadata import version

    assert run("--version").strip().endswith(version("newsletter"))
