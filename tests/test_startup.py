"""Start-up stays cheap: every command, and every cron or scheduler start, pays for what the CLI imports."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("premailer", "dkim", "lxml", "cssutils", "flask", "markdown_it", "jinja2", "sqlite_utils",
         "email_validator", "pycountry", "yaml", "rich.table", "aiosmtpd")

LOADED = """
import json, sys
{setup}
print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m in {heavy!r})))
"""


def loaded_after(setup: str) -> list[str]:
    roots = sorted({name.split(".")[0] for name in HEAVY} | set(HEAVY))
    result = subprocess.run([sys.executable, "-c", LOADED.format(setup=setup, heavy=roots)],
                            capture_output=True, text=True, check=True)
    return [name for name in json.loads(result.stdout.splitlines()[-1]) if name in HEAVY]


def test_importing_the_cli_loads_none_of_the_heavy_libraries():
    assert loaded_after("import newsletter.cli") == []


def test_help_loads_none_of_the_heavy_libraries():
    setup = ("from click.testing import CliRunner\nfrom newsletter.cli import cli\n"
             "assert CliRunner().invoke(cli, ['--help']).exit_code == 0")
    assert loaded_after(setup) == []


def test_counting_a_segment_loads_no_rendering_mail_or_web_library(tmp_path):
    config = tmp_path / "newsletter.toml"
    config.write_text('[newsletter]\nsecret_key = "x"\n', encoding="utf-8")
    setup = ("from click.testing import CliRunner\nfrom newsletter.cli import cli\n"
             f"r = CliRunner().invoke(cli, ['--config', {str(config)!r}, 'segments', 'count', 'country:TT'])\n"
             "assert r.exit_code == 0, r.output")
    assert set(loaded_after(setup)) <= {"sqlite_utils", "pycountry"}
