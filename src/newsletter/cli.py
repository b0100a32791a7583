"""The `newsletter` command: a thin layer that turns options into library calls and results into tables."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, \
    TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from . import csvexport, csvimport, segments, subscribers, suppressions
from .config import CONFIG_ENV, Config, ConfigError, load_config, write_example_config
from .db import connect

console = Console()
err_console = Console(stderr=True)


class App:
    """What every command needs, loaded on first use so that --help works without a config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    @functools.cached_property
    def config(self) -> Config:
        return load_config(self.config_path)

    @functools.cached_property
    def db(self):
        return connect(self.config.database)


pass_app = click.make_pass_decorator(App)


def segment_option(default: str = "status:active"):
    return click.option("--segment", "-s", default=default, show_default=True,
                        help="Segment expression, e.g. 'country:BB,TT interest:security language:es', "
                             "or @saved-name.")


def dry_run_option(f):
    return click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")(f)


def progress_bar(transient: bool = False) -> Progress:
    """A bar with rate and time remaining, on stderr so that stdout stays clean for data."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err_console,
                    transient=transient)


def byte_progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err_console)


class FriendlyGroup(click.Group):
    """Shows known errors as one clear line with a hint instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, csvimport.ImportFileError, segments.SegmentError, subscribers.SubscriberError,
                ValueError) as exc:
            if isinstance(exc, click.ClickException):
                raise
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
            ctx.exit(1)


@click.group(cls=FriendlyGroup)
@click.option("--config", "config_path", envvar=CONFIG_ENV, type=click.Path(dir_okay=False),
              help=f"Config file (default ./newsletter.toml; also ${CONFIG_ENV}).")
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(ctx, config_path):
    """Campaign manager for the regional Internet bureau's newsletter.

    Start with `newsletter init`, import people with `newsletter subscribers import`, build an issue with
    `newsletter campaign build`, and send it with `newsletter send`. `newsletter demo` shows the whole
    path on a throwaway database and a local mail server.
    """
    ctx.obj = App(config_path)


@cli.command()
@click.option("--path", type=click.Path(dir_okay=False, path_type=Path), default=Path("newsletter.toml"),
              show_default=True, help="Where to write the config.")
def init(path):
    """Write a commented example config (with a fresh secret key) and create the database."""
    write_example_config(path)
    config = load_config(path)
    connect(config.database)
    console.print(f"Wrote [bold]{path}[/] and created [bold]{config.database}[/]. "
                  f"Edit the sender, base_url and smtp_url before sending.")


# --- subscribers -------------------------------------------------------------------------------------


@cli.group("subscribers")
def subscribers_group():
    """Import, export, inspect and erase subscribers."""


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@dry_run_option
@click.option("--status", "default_status", default="active", show_default=True,
              type=click.Choice(["active", "pending"]), help="Status for new rows whose file gives none.")
@click.option("--source", help="Consent source recorded for rows that give none (default: import:<file name>).")
@click.option("--encoding", default="utf-8", show_default=True, help="The file's encoding, e.g. cp1252.")
@click.option("--show-errors", default=50, show_default=True, help="How many refused rows to list.")
@pass_app
def subscribers_import(app, file, dry_run, default_status, source, encoding, show_errors):
    """Import subscribers from a CSV FILE (any of , ; tab | as delimiter; UTF-8 with or without BOM).

    Headers are matched in en/es/pt/fr (email, nombre, país, idioma, interests...). Addresses are
    lower-cased and merged: a second row for the same person updates the first, never adds a row.
    Unsubscribed, bounced and erased people stay that way. Each refused row is listed with its line,
    field and reason; the good rows are imported.
    """
    with byte_progress_bar() as bar:
        task = bar.add_task(f"Importing {file.name}", total=file.stat().st_size)
        report = csvimport.import_csv(app.db, file, dry_run=dry_run, default_status=default_status,
                                      source=source, encoding=encoding,
                                      progress=lambda done: bar.update(task, completed=done))
    print_import_report(report, show_errors)
    if report.rejected:
        sys.exit(2)


def print_import_report(report: csvimport.ImportReport, show_errors: int) -> None:
    verb = "would be" if report.dry_run else "were"
    table = Table(title=f"{report.path.name}: {report.rows} rows" + (" (dry run: nothing written)"
                                                                         if report.dry_run else ""))
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    for label, value in (("new subscribers", report.inserted), ("existing subscribers updated", report.updated),
                         ("duplicates merged", report.merged), ("suppressed, skipped", report.suppressed),
                         ("refused (see below)", report.rejected)):
        table.add_row(label, f"{value:,}")
    console.print(table)
    delimiter = {"\t": "tab"}.get(report.delimiter, report.delimiter)
    console.print(f"Delimiter {delimiter!r}; columns: " +
                  ", ".join(f"{k} -> {v}" for k, v in report.columns.items()), highlight=False)
    if report.ignored_columns:
        console.print(f"Ignored columns: {', '.join(report.ignored_columns)}", highlight=False)
    for problem in report.errors[:show_errors]:
        console.print(f"[red]refused[/] {problem.describe(report.path)}", highlight=False)
    if report.rejected > show_errors:
        console.print(f"... and {report.rejected - show_errors} more refused rows (--show-errors N lists more)")
    if report.rejected:
        console.print(f"Fix the refused rows and import the file again: the {report.inserted + report.updated:,} "
                      f"good rows {verb} imported, and a second import merges, it does not duplicate.")


@subscribers_group.command("export")
@segment_option(default="status:active")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default: standard output).")
@pass_app
def subscribers_export(app, segment, output):
    """Export a segment's subscribers as CSV (the importer reads it back)."""
    rows = csvexport.export_csv(app.db, output, segment)
    err_console.print(f"{rows:,} subscribers exported.")


@subscribers_group.command("show")
@click.argument("email")
@pass_app
def subscribers_show(app, email):
    """Show one subscriber: status, country, language, interests and consent record."""
    data = subscribers.export_person(app.db, email)
    person = data.get("subscriber")
    if person is None:
        message = "is suppressed (no other data held)" if data.get("suppression") else "is not a subscriber"
        console.print(f"{data['email']} {message}.")
        sys.exit(1)
    table = Table(show_header=False, title=person["email"])
    for key in ("name", "status", "country", "language", "interests", "paused_until", "created_at",
                "updated_at", "consent_at", "consent_source", "consent_ip", "consent_user_agent"):
        value = person.get(key)
        table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value or ""))
    table.add_row("deliveries", str(len(data["deliveries"])))
    console.print(table)


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default="")
@click.option("--country", default="")
@click.option("--language", default="")
@click.option("--interest", "interests", multiple=True, help="Repeat for several.")
@click.option("--status", default="active", show_default=True)
@pass_app
def subscribers_add(app, email, name, country, language, interests, status):
    """Add one subscriber (or update them if the address exists)."""
    row = subscribers.add(app.db, email, name=name, country=country, language=language, interests=list(interests),
                          status=status, consent=subscribers.Consent(source="cli"))
    console.print(f"{row['email']} is {row['status']}.")


@subscribers_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def subscribers_erase(app, email, yes):
    """Erase everything about a person (GDPR), keeping only a hashed suppression so they are never mailed."""
    if not yes:
        click.confirm(f"Erase all data about {email}? This cannot be undone", abort=True)
    found = subscribers.erase(app.db, email)
    console.print(f"{'Erased' if found else 'No subscriber held; suppressed'} {email}: "
                  "only a hashed suppression record remains.")


@subscribers_group.command("export-person")
@click.argument("email")
@pass_app
def subscribers_export_person(app, email):
    """Print, as JSON, all data held about one person (a subject access request)."""
    click.echo(json.dumps(subscribers.export_person(app.db, email), indent=2, ensure_ascii=False))


# --- segments ----------------------------------------------------------------------------------------


@cli.group("segments")
def segments_group():
    """Count, save and list segments (country, interest, language, status)."""


@segments_group.command("count")
@click.argument("expression", nargs=-1, required=True)
@pass_app
def segments_count(app, expression):
    """Count the subscribers an EXPRESSION selects, e.g. `country:BB,TT interest:security`."""
    text = " ".join(expression)
    segment = segments.parse_segment(text, app.db)
    console.print(f"{segments.count(app.db, segment):,} subscribers match {segment}", highlight=False)


@segments_group.command("save")
@click.argument("name")
@click.argument("expression", nargs=-1, required=True)
@pass_app
def segments_save(app, name, expression):
    """Save EXPRESSION under NAME, to use as @NAME in campaigns and other segments."""
    segment = segments.save(app.db, name, " ".join(expression))
    console.print(f"Saved @{name} = {segment} ({segments.count(app.db, segment):,} subscribers now)",
                  highlight=False)


@segments_group.command("list")
@pass_app
def segments_list(app):
    """List saved segments with their current size."""
    table = Table("name", "expression", "subscribers", "saved")
    for row in segments.saved_segments(app.db):
        table.add_row("@" + row["name"], row["expression"], f"{segments.count(app.db, row['expression']):,}",
                      row["created_at"])
    console.print(table)


@segments_group.command("delete")
@click.argument("name")
@pass_app
def segments_delete(app, name):
    """Delete a saved segment."""
    if not segments.delete(app.db, name.lstrip("@")):
        raise click.ClickException(f"no saved segment named {name!r}")
    console.print(f"Deleted @{name.lstrip('@')}.")


# --- suppressions ------------------------------------------------------------------------------------


@cli.group("suppressions")
def suppressions_group():
    """The do-not-mail list: bounces, complaints, erasures and manual entries."""


@suppressions_group.command("list")
@click.option("--reason", type=click.Choice(suppressions.REASONS), help="Only this reason.")
@pass_app
def suppressions_list(app, reason):
    """List suppressed addresses with their reason and date."""
    table = Table("email", "reason", "source", "since")
    for row in suppressions.list_suppressions(app.db, reason):
        table.add_row(row["email"], row["reason"], row["source"], row["created_at"])
    console.print(table)


@suppressions_group.command("add")
@click.argument("email")
@click.option("--reason", default="manual", show_default=True, type=click.Choice(suppressions.REASONS))
@click.option("--note", default="", help="Why, for the record.")
@pass_app
def suppressions_add(app, email, reason, note):
    """Never mail EMAIL again (its subscriber, if any, is marked accordingly)."""
    from .normalize import normalize_email

    address = normalize_email(email)
    if reason in ("hard-bounce", "soft-bounce", "complaint"):
        subscribers.mark_bounced(app.db, address, reason, note or "cli")
    else:
        suppressions.suppress(app.db, address, reason, note or "cli")
    console.print(f"Suppressed {address} ({reason}).")


@suppressions_group.command("remove")
@click.argument("email")
@pass_app
def suppressions_remove(app, email):
    """Allow EMAIL to be mailed again (its subscriber must still opt in again to become active)."""
    from .normalize import normalize_email

    if not suppressions.unsuppress(app.db, normalize_email(email)):
        raise click.ClickException(f"{email} is not suppressed")
    console.print(f"Removed {email} from the suppression list.")
