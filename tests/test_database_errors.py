"""A database the CLI cannot use as it is gets one clear line, never a traceback: a file that is not SQLite,
a folder, a read-only folder or file (read-only commands still work there), a lock held too long, a full
disk. Every case runs the real `newsletter` command in its own process on a real SQLite file; the read-only
folder is a read-only bind mount and the full disk a tiny tmpfs, in a mount namespace of the test's own
(root ignores file permissions), or plain permissions when the tests do not run as root."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sending_support import SLUG, add_subscribers, error_lines, run_cli, write_config

from newsletter.db import DatabaseError, connect, explain

AS_ROOT = os.geteuid() == 0


def can_make_mount_namespaces() -> bool:
    if not AS_ROOT or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


MOUNTS = can_make_mount_namespaces()


def newsletter(config, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter.cli", "--config", str(config.path), *args]


def run_on_read_only_folder(folder: Path, config, *args: str) -> subprocess.CompletedProcess:
    """Run the command while `folder` (the database's) cannot be written to, not even by root."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    if MOUNTS:
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", script, str(folder), *newsletter(config, *args)]
        return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=120)
    if AS_ROOT:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only for root")
    folder.chmod(0o555)
    try:
        return subprocess.run(newsletter(config, *args), capture_output=True, text=True, env=environ, timeout=120)
    finally:
        folder.chmod(0o755)


@pytest.fixture
def project(tmp_path, smtp):
    """A database with five subscribers and a sent campaign, closed cleanly (no -wal or -shm left)."""
    folder = tmp_path / "project"
    folder.mkdir()
    config = write_config(folder, smtp.url())
    db = connect(config.database)
    add_subscribers(db, 5)
    db.conn.close()
    assert run_cli(config, "send", SLUG).returncode == 0
    return config


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    for word in words:
        assert word in line
    return line


def test_a_file_that_is_not_sqlite_is_named_and_left_alone(project):
    Path(project.database).unlink()
    Path(project.database).write_text("name,email\nAna,ana@example.org\n", encoding="utf-8")

    result = run_cli(project, "segments", "count", "status:active")

    assert_one_line(result, str(project.database), "is not a SQLite database")
    assert Path(project.database).read_text(encoding="utf-8") == "name,email\nAna,ana@example.org\n"


def test_a_database_path_that_is_a_folder_is_named_with_what_to_write_instead(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    Path(config.database).mkdir()

    result = run_cli(config, "campaign", "list")

    assert_one_line(result, "is a folder", str(Path(config.database) / "newsletter.db"))


@pytest.mark.parametrize("command, expected", [
    (("segments", "count", "status:active"), "5 subscribers match"),
    (("report", SLUG), "sent"),
    (("campaign", "list"), SLUG),
    (("subscribers", "export"), "reader0005@example.org"),
], ids=["segments-count", "report", "campaign-list", "export"])
def test_read_only_commands_work_in_a_read_only_folder(project, command, expected):
    result = run_on_read_only_folder(Path(project.database).parent, project, *command)

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_a_command_that_writes_to_a_database_in_a_read_only_folder_says_so_in_one_line(project):
    result = run_on_read_only_folder(Path(project.database).parent, project, "subscribers", "add",
                                     "new@example.org")

    assert_one_line(result, str(project.database), "read-only")


def test_a_read_only_database_file_is_read_and_a_write_refused_in_one_line(project):
    path = Path(project.database)
    if AS_ROOT:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root on a file system without chattr +i")
    else:
        path.chmod(0o444)
    try:
        counted = run_cli(project, "segments", "count", "status:active")
        added = run_cli(project, "subscribers", "add", "new@example.org")
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True) if AS_ROOT else path.chmod(0o644)

    assert counted.returncode == 0 and "5 subscribers match" in counted.stdout
    assert_one_line(added, str(path), "read-only")
    assert connect(path).execute("SELECT count(*) FROM subscribers").fetchone()[0] == 5


def test_a_lock_held_too_long_by_another_process_is_one_line_and_nothing_changes(project):
    holder = sqlite3.connect(project.database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        result = run_cli(project, "subscribers", "add", "new@example.org", env={"NEWSLETTER_DB_TIMEOUT": "0.2"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert_one_line(result, str(project.database), "stayed locked by another process", "0 s")
    assert connect(project.database).execute("SELECT count(*) FROM subscribers").fetchone()[0] == 5


@pytest.mark.skipif(not MOUNTS, reason="needs a mount namespace (root with unshare) for a tiny file system")
def test_a_full_disk_is_one_line_and_what_was_being_written_is_rolled_back(tmp_path, smtp):
    folder = tmp_path / "small"
    folder.mkdir()
    config = write_config(folder, smtp.url())
    connect(config.database).conn.close()
    rows = tmp_path / "people.csv"
    rows.write_text("email,name\n" + "".join(f"person{n}@example.org,Person {n}\n" for n in range(20_000)),
                    encoding="utf-8")
    saved = tmp_path / "saved"
    shutil.copytree(folder, saved)
    # In a namespace of its own: a 1 MB file system over the folder, filled up, then the import and a count.
    script = ('mount -t tmpfs -o size=1m tmpfs "$0" && cp -a "$1"/. "$0"/ && '
              '(dd if=/dev/zero of="$0/filler" bs=4k count=10000 2>/dev/null; rm -f "$0/filler"; '
              'dd if=/dev/zero of="$0/filler" bs=4k count=$(( $(stat -f -c %a "$0") - 40 )) 2>/dev/null); '
              '"$2" -m newsletter.cli --config "$0/newsletter.toml" subscribers import "$3"; echo "import=$?"; '
              '"$2" -m newsletter.cli --config "$0/newsletter.toml" segments count status:active')
    environ = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    result = subprocess.run(["unshare", "-m", "sh", "-c", script, str(folder), str(saved), sys.executable,
                             str(rows)], capture_output=True, text=True, env=environ, timeout=120)

    assert "import=1" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "disk is full" in line and "free some disk space" in line
    assert "0 subscribers match" in result.stdout  # the import's transaction was rolled back whole


def test_explain_is_silent_about_errors_that_are_not_about_the_file(tmp_path):
    db = connect(tmp_path / "newsletter.db")
    with pytest.raises(sqlite3.OperationalError) as error:
        db.execute("SELECT no_such_column FROM subscribers")
    assert explain(error.value, tmp_path / "newsletter.db") == ""


def test_connect_raises_a_database_error_naming_the_file(tmp_path):
    (tmp_path / "junk.db").write_bytes(b"\x00" * 4096 + b"not sqlite" * 100)
    with pytest.raises(DatabaseError, match="junk.db is not a SQLite database"):
        connect(tmp_path / "junk.db")
