"""Configuration: the file, the environment over it, paths relative to the file, refused mistakes,
`newsletter init`, and migrations that can run on every start."""

from __future__ import annotations

import re
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import ConfigError, load_config
from newsletter.db import MIGRATIONS, connect, migrate, schema_version, transaction

LATEST = len(MIGRATIONS)

FULL = """\
[newsletter]
database = "data/news.db"
list_name = "Boletín LAC"
sender_address = "news@lac.example.org"
timezone = "America/Port_of_Spain"
smtp_url = "smtp://relay.example.org:587"
secret_key = "from-the-file"
log_file = "logs/newsletter.log"

[sending]
connections = 2
rate_per_second = 5.5

[dkim]
domain = "lac.example.org"
selector = "s2026"
private_key_file = "keys/dkim.pem"

[web]
port = 9090
staff_addresses = ["staff@lac.example.org"]

[digest]
articles_dir = "articles"
rules = ["first tuesday of each month at 09:00 America/Port_of_Spain"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_file_is_loaded_with_its_sections(tmp_path):
    config = load_config(write(tmp_path / "newsletter.toml", FULL), environ={})
    assert (config.list_name, config.sender_address, config.timezone, config.smtp_url, config.secret_key) == (
        "Boletín LAC", "news@lac.example.org", "America/Port_of_Spain", "smtp://relay.example.org:587",
        "from-the-file")
    assert (config.sending.connections, config.sending.rate_per_second, config.sending.max_attempts) == (2, 5.5, 6)
    assert (config.dkim.domain, config.dkim.selector) == ("lac.example.org", "s2026")
    assert (config.web.port, config.web.staff_addresses) == (9090, ["staff@lac.example.org"])
    assert config.digest.rules == ["first tuesday of each month at 09:00 America/Port_of_Spain"]
    assert config.path == (tmp_path / "newsletter.toml").resolve()
    assert config.sender_domain == "lac.example.org"
    assert str(config.tz) == "America/Port_of_Spain"
    assert config.require_secret() == "from-the-file"


def test_relative_paths_are_resolved_against_the_config_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "etc" / "newsletter"
    path = write(folder / "newsletter.toml", FULL)
    monkeypatch.chdir(tmp_path)
    config = load_config(path, environ={})
    assert config.database == folder / "data" / "news.db"
    assert config.log_file == folder / "logs" / "newsletter.log"
    assert config.dkim.private_key_file == folder / "keys" / "dkim.pem"
    assert config.digest.articles_dir == folder / "articles"
    assert config.campaigns_dir == folder / "campaigns"
    assert config.templates_dir is None  # not named: the packaged templates only


def test_defaults_sit_beside_the_config_file_and_a_relative_maildir_too(tmp_path):
    config = load_config(write(tmp_path / "conf" / "n.toml", '[newsletter]\nsmtp_url = "maildir://outbox"\n'),
                         environ={})
    assert config.database == tmp_path / "conf" / "newsletter.db"
    assert config.smtp_url == f"maildir://{tmp_path / 'conf' / 'outbox'}"


def test_absolute_paths_are_kept(tmp_path):
    database = tmp_path / "elsewhere" / "x.db"
    config = load_config(write(tmp_path / "n.toml", f'[newsletter]\ndatabase = "{database}"\n'), environ={})
    assert config.database == database


def test_the_environment_overrides_the_secret_and_the_smtp_url(tmp_path):
    path = write(tmp_path / "newsletter.toml", FULL)
    config = load_config(path, environ={"NEWSLETTER_SECRET_KEY": "from-env",
                                        "NEWSLETTER_SMTP_URL": "smtps://user:pw@mail.example.org:465"})
    assert (config.secret_key, config.smtp_url) == ("from-env", "smtps://user:pw@mail.example.org:465")


def test_newsletter_config_names_the_file_and_an_explicit_path_wins(tmp_path):
    from_env = write(tmp_path / "a" / "env.toml", '[newsletter]\nlist_name = "From env"\n')
    explicit = write(tmp_path / "b" / "explicit.toml", '[newsletter]\nlist_name = "Explicit"\n')
    assert load_config(None, environ={"NEWSLETTER_CONFIG": str(from_env)}).list_name == "From env"
    assert load_config(explicit, environ={"NEWSLETTER_CONFIG": str(from_env)}).list_name == "Explicit"


def test_without_any_file_the_defaults_are_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert (config.path, config.database) == (None, tmp_path / "newsletter.db")


@pytest.mark.parametrize("text, message", [
    ('[newsletter]\ndatabse = "x.db"\n',
     " [newsletter]: unknown setting 'databse'; known: "),
    ("[sending]\nconections = 3\n",
     " [sending]: unknown setting 'conections'; known: batch_size, connections, max_attempts, processes, rate_per_hour, "
     "rate_per_second, retry_base_seconds, retry_max_seconds, starttls"),
    ('[smtp]\nhost = "x"\n', ": unknown section(s) smtp"),
    ('[smtp]\nhost = "x"\n[webb]\nport = 1\n', ": unknown section(s) smtp, webb"),
])
def test_unknown_settings_and_sections_are_refused_naming_them(tmp_path, text, message):
    path = write(tmp_path / "newsletter.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value).startswith(f"{path}{message}")


def test_internal_fields_are_not_settings(tmp_path):
    """`path` and the section names are not things a [newsletter] table may set."""
    for text in ('[newsletter]\npath = "/etc/other.toml"\n', "[newsletter]\nsending = { connections = 9 }\n"):
        with pytest.raises(ConfigError, match="unknown setting"):
            load_config(write(tmp_path / "newsletter.toml", text), environ={})


def test_a_toml_syntax_error_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "newsletter.toml", "[newsletter\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value) == f"{path}: Expected ']' at the end of a table declaration (at line 1, column 12)"


def test_a_missing_explicit_config_file_is_an_error(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value) == f"config file {path} does not exist; `newsletter init` writes one"
    with pytest.raises(ConfigError):
        load_config(None, environ={"NEWSLETTER_CONFIG": str(path)})


def test_a_missing_secret_is_an_error_that_says_how_to_set_one(tmp_path):
    path = write(tmp_path / "newsletter.toml", '[newsletter]\nlist_name = "x"\n')
    config = load_config(path, environ={})
    with pytest.raises(ConfigError) as error:
        config.require_secret()
    assert str(error.value) == (f"no secret key: set NEWSLETTER_SECRET_KEY or secret_key in {path.resolve()} "
                                "(`newsletter init` writes a fresh one)")
    assert load_config(path, environ={"NEWSLETTER_SECRET_KEY": "k"}).require_secret() == "k"


def test_an_unknown_timezone_is_an_error(tmp_path):
    config = load_config(write(tmp_path / "n.toml", '[newsletter]\ntimezone = "Caribbean/Nowhere"\n'), environ={})
    with pytest.raises(ConfigError) as error:
        config.tz
    assert str(error.value) == ("timezone 'Caribbean/Nowhere' is not an IANA zone name, "
                                "e.g. America/Port_of_Spain")


# --- newsletter init and the schema ------------------------------------------------------------------


def run_init(path: Path):
    return CliRunner().invoke(cli, ["init", "--path", str(path)], env={"NEWSLETTER_CONFIG": None})


def test_init_writes_a_private_config_that_loads_and_creates_the_database(tmp_path):
    path = tmp_path / "newsletter.toml"
    result = run_init(path)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = load_config(path, environ={})
    assert len(config.require_secret()) >= 40
    assert config.database == tmp_path / "newsletter.db"
    with sqlite3.connect(config.database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"subscribers", "interests", "segments", "suppressions", "campaigns", "deliveries",
            "bounce_events"} <= tables
    assert config.tz.key == "America/Port_of_Spain"


def test_two_inits_write_different_secrets_and_init_never_overwrites(tmp_path):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    run_init(first)
    run_init(second)
    assert load_config(first, environ={}).secret_key != load_config(second, environ={}).secret_key
    before = first.read_text(encoding="utf-8")
    result = run_init(first)
    assert result.exit_code == 2  # bad input
    assert " ".join(result.output.split()) == (
        f"Error: {first} already exists; remove it or pass another --config path")
    assert first.read_text(encoding="utf-8") == before


def test_init_into_a_folder_that_does_not_exist_yet_creates_it(tmp_path):
    path = tmp_path / "new" / "folder" / "newsletter.toml"
    result = run_init(path)
    assert result.exit_code == 0, result.output
    assert load_config(path, environ={}).database.exists()


def test_migrations_run_on_every_connect_without_changing_a_migrated_database(tmp_path):
    path = tmp_path / "newsletter.db"
    db = connect(path)
    db.execute("INSERT INTO segments VALUES ('keep', 'country:TT', 'x')")
    schema = list(db.execute("SELECT sql FROM sqlite_master ORDER BY name"))
    db.close()
    again = connect(path)
    assert migrate(again) == LATEST
    assert schema_version(again) == LATEST
    assert list(again.execute("SELECT sql FROM sqlite_master ORDER BY name")) == schema
    assert again.execute("SELECT count(*) FROM interests").fetchone()[0] == 5
    assert list(again.execute("SELECT name FROM segments")) == [("keep",)]


def test_connect_makes_the_database_folder_and_uses_wal(tmp_path):
    db = connect(tmp_path / "deep" / "folder" / "newsletter.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(db) == LATEST


def test_a_version_1_database_is_brought_up_to_date_keeping_its_rows(tmp_path):
    path = tmp_path / "old.db"
    old = connect(path, migrate_schema=False)
    with transaction(old):
        MIGRATIONS[0](old)
        old.conn.execute("PRAGMA user_version = 1")
    old.execute("INSERT INTO subscribers (email, created_at, updated_at) VALUES ('ana@example.org', 'x', 'x')")
    old.close()
    db = connect(path)
    assert schema_version(db) == LATEST
    assert list(db.execute("SELECT email FROM subscribers")) == [("ana@example.org",)]


def test_a_command_run_where_there_is_no_config_says_so_and_creates_no_database(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from newsletter.cli import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    result = CliRunner().invoke(cli, ["segments", "count", "status:active"])
    assert result.exit_code == 2  # bad input
    assert "no newsletter.toml in" in result.output and "newsletter init" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ('[sending]\nconnections = "four"\n', " [sending] connections = 'four': expected a whole number"),
    ("[sending]\nconnections = 0\n", " [sending] connections = 0: expected at least 1"),
    ("[sending]\nrate_per_second = -1\n", " [sending] rate_per_second = -1: expected at least 0"),
    ('[sending]\nstarttls = "sometimes"\n', " [sending] starttls = 'sometimes': expected one of auto, always, never"),
    ('[web]\nport = "eighty"\n', " [web] port = 'eighty': expected a whole number"),
    ("[web]\nport = 70000\n", " [web] port = 70000: expected at most 65535"),
    ('[web]\nstaff_addresses = "staff@lac.example.org"\n', " [web] staff_addresses = 'staff@lac.example.org': "
     'expected a list of quoted texts in brackets, ["..."]'),
    ('[digest]\nrules = "first tuesday of each month at 09:00"\n', " [digest] rules = 'first tuesday of each month "
     "at 09:00': expected a list of quoted texts in brackets"),
    ("[newsletter]\nlist_name = 3\n", " [newsletter] list_name = 3: expected text in quotes"),
    ("[newsletter]\ndatabase = true\n", " [newsletter] database = True: expected text in quotes"),
    ("[sending]\nconnections = true\n", " [sending] connections = True: expected a whole number"),
    ('sending = "fast"\n', ": sending must be a table, written [sending] on a line of its own"),
])
def test_a_value_of_the_wrong_type_or_range_names_the_file_table_key_and_what_it_expects(tmp_path, text, message):
    path = write(tmp_path / "newsletter.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value).startswith(f"{path}{message}")


def test_whole_numbers_are_accepted_where_a_number_is_expected(tmp_path):
    config = load_config(write(tmp_path / "newsletter.toml", "[sending]\nrate_per_second = 100\n"), environ={})
    assert config.sending.rate_per_second == 100.0 and isinstance(config.sending.rate_per_second, float)


def test_a_config_of_the_wrong_type_is_one_line_and_exit_code_2(tmp_path):
    path = write(tmp_path / "newsletter.toml", '[sending]\nconnections = "four"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "campaign", "list"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {path} [sending] connections = 'four': expected a whole number"]


def test_the_example_config_names_every_setting_and_loads_as_written(tmp_path):
    from newsletter.config import EXAMPLE_CONFIG, SECTIONS, Config, settings_of

    for table, cls in {"newsletter": Config, **SECTIONS}.items():
        for spec in settings_of(cls):
            assert re.search(rf"^#? ?{spec.name} = ", EXAMPLE_CONFIG, re.M), f"init's config lacks [{table}] {spec.name}"
    uncommented = "\n".join(line.removeprefix("# ") if re.match(r"# [a-z_]+ = ", line) else line
                            for line in EXAMPLE_CONFIG.format(secret="s").splitlines())
    load_config(write(tmp_path / "newsletter.toml", uncommented), environ={})
