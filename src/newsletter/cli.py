"""The `newsletter` command: a thin layer that turns options into library calls and results into tables."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .config import CONFIG_ENV, Config, ConfigError, load_config
from .suppressions import REASONS as SUPPRESSION_REASONS

if TYPE_CHECKING:
    from .csvimport import ImportReport

# Every command imports what it needs inside its own function: `newsletter --help`, and each scheduler or
# cron start, must not pay for premailer, dkim, flask or sqlite-utils (tests/test_startup.py checks it).


class LazyConsole:
    """rich's Console, made on first use (importing rich is a third of a bare start-up)."""

    def __init__(self, **options) -> None:
        self._options = options
        self._console = None

    def get(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.get(), name)


console = LazyConsole()
err_console = LazyConsole(stderr=True)


class App:
    """What every command needs, loaded on first use so that --help works without a config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path

    @functools.cached_property
    def config(self) -> Config:
        config = load_config(self.config_path)
        if config.path is None:  # never make a stray database in whatever folder the command ran from
            raise ConfigError(f"no newsletter.toml in {Path.cwd()}: run `newsletter init` here, or pass --config "
                              f"(or set {CONFIG_ENV})")
        return config

    @functools.cached_property
    def db(self):
        from .db import connect

        return connect(self.config.database)


pass_app = click.make_pass_decorator(App)


def segment_option(default: str = "status:active"):
    return click.option("--segment", "-s", default=default, show_default=True,
                        help="Segment expression, e.g. 'country:BB,TT interest:security language:es', "
                             "or @saved-name.")


def dry_run_option(f):
    return click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")(f)


def progress_bar(transient: bool = False):
    """A bar with rate and time remaining, on stderr so that stdout stays clean for data."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err_console.get(),
                    transient=transient)


def byte_progress_bar():
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, \
        TransferSpeedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err_console.get())


def _expected_errors() -> tuple[type[Exception], ...]:
    """Errors whose message already says what is wrong and how to fix it: shown as one line."""
    from . import csvimport
    from .articles import ArticleError
    from .campaigns import CampaignError
    from .db import DatabaseError
    from .digest import DigestError
    from .signing import BadToken

    return (ConfigError, csvimport.ImportFileError, CampaignError, ArticleError, DigestError, BadToken,
            DatabaseError, ValueError, OSError)


def _bad_input_errors() -> tuple[type[Exception], ...]:
    """Errors in what the user wrote (config, campaign folder, articles, CSV file): exit code 2."""
    from . import csvimport
    from .articles import ArticleError
    from .campaigns import CampaignError

    return (ConfigError, csvimport.ImportFileError, CampaignError, ArticleError)

# Exit codes, for scripts and cron (docs/cli.md lists them).
EXIT_OK = 0  # all done
EXIT_ERROR = 1  # an error, told in one line
EXIT_BAD_INPUT = 2  # bad input: a file, a row, a setting
EXIT_UNFINISHED = 3  # finished with deliveries deferred or failed, or left waiting by an operator's pause
EXIT_LOCKED = 4  # nothing done: another process holds the campaign
EXIT_INTERRUPTED = 130  # Ctrl-C


def fail(message: str, code: int = EXIT_ERROR) -> None:
    """Print one error line on stderr and exit with `code`."""
    from rich.markup import escape

    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


class FriendlyGroup(click.Group):
    """Shows known errors as one clear line with a hint instead of a traceback (exit 2 for bad input)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except KeyboardInterrupt:
            err_console.print("Interrupted.", highlight=False)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:
            line = _one_line_for(ctx, exc)
            if line is None:
                raise
            self._one_line(ctx, line, EXIT_BAD_INPUT if isinstance(exc, _bad_input_errors()) else EXIT_ERROR)

    @staticmethod
    def _one_line(ctx, message: str, code: int = EXIT_ERROR) -> None:
        from rich.markup import escape

        err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        ctx.exit(code)


def _one_line_for(ctx, exc: Exception) -> str | None:
    """The line to show for an error whose message says what to fix; None for anything else (a bug)."""
    import sqlite3

    if isinstance(exc, _expected_errors()):
        return str(exc)
    sender = sys.modules.get("newsletter.sender")
    if sender is not None and isinstance(exc, sender.SendError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):  # raised after opening: locked too long, disk full, read-only
        from .db import explain

        app = ctx.obj
        config = app.__dict__.get("config") if isinstance(app, App) else None
        path = config.database if config is not None else "(database)"
        cause: BaseException | None = exc  # the cause may sit under a second error (a failed ROLLBACK)
        while cause is not None:
            if isinstance(cause, sqlite3.Error) and (line := explain(cause, path)):
                return line
            cause = cause.__context__
    return None


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
    """Start a newsletter in this folder: a commented newsletter.toml (with a fresh secret key), the
    database, and the campaigns/ and articles/ folders. Then `newsletter campaign new <name>`."""
    from .config import write_example_config
    from .db import connect

    write_example_config(path)
    config = load_config(path)
    connect(config.database).conn.close()
    for folder in (config.campaigns_dir, config.digest.articles_dir):
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
    console.print(f"Wrote [bold]{path}[/] and created [bold]{config.database}[/]. "
                  f"Edit the sender, base_url and smtp_url before sending; the monthly digest is built from "
                  f"the articles you put in {config.digest.articles_dir}. Next: `newsletter campaign new "
                  f"<name>` makes a campaign to start from.", highlight=False)


# --- templates ---------------------------------------------------------------------------------------


@cli.group("templates")
def templates_group():
    """The email and page templates: packaged defaults, and your own copies that replace them."""


@templates_group.command("list")
@pass_app
def templates_list(app):
    """List the packaged templates and which of them your templates_dir replaces."""
    from rich.table import Table

    from .packaged import overridden, packaged_template_names

    own = app.config.templates_dir
    table = Table("template", "used", title=f"your folder: {own}" if own else "no templates_dir set")
    for name in packaged_template_names():
        table.add_row(name, f"yours ({own / name})" if overridden(own, name) else "packaged")
    console.print(table)


@templates_group.command("copy")
@click.argument("names", nargs=-1)
@click.option("--to", "destination", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (default: templates_dir from the config, else ./templates).")
@click.option("--force", is_flag=True, help="Overwrite files that are already there.")
@pass_app
def templates_copy(app, names, destination, force):
    """Write the packaged templates (all, or the NAMES given, e.g. email/digest.html) out for editing.

    A copied file replaces the packaged one of the same name; the others stay packaged, so copy only
    what you change. Files already in the folder are kept unless --force.
    """
    from .config import DEFAULT_CONFIG_NAME
    from .packaged import copy_templates, packaged_template_names

    try:
        in_use = app.config.templates_dir
    except ConfigError:  # no newsletter.toml here yet
        in_use = None
    target = destination or in_use or Path("templates")
    wanted = list(names) or packaged_template_names()
    written = copy_templates(target, wanted, overwrite=force)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    if len(wanted) > len(written):
        console.print(f"{len(wanted) - len(written)} already there, kept (--force overwrites)", highlight=False)
    if in_use is None or Path(target).resolve() != Path(in_use).resolve():
        console.print(f"To use them, set templates_dir = \"{target}\" in [newsletter] of "
                      f"{DEFAULT_CONFIG_NAME}.", highlight=False)


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
    from . import csvimport

    with byte_progress_bar() as bar:
        task = bar.add_task(f"Importing {file.name}", total=file.stat().st_size)
        report = csvimport.import_csv(app.db, file, dry_run=dry_run, default_status=default_status,
                                      source=source, encoding=encoding,
                                      progress=lambda done: bar.update(task, completed=done))
    print_import_report(report, show_errors)
    if report.rejected:
        sys.exit(2)


def print_import_report(report: ImportReport, show_errors: int) -> None:
    from rich.table import Table

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
        console.print(f"[red]refused[/] {problem.describe(report.path)}", highlight=False, soft_wrap=True)
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
    from . import csvexport

    rows = csvexport.export_csv(app.db, output, segment)
    err_console.print(f"{rows:,} subscribers exported.")


@subscribers_group.command("show")
@click.argument("email")
@pass_app
def subscribers_show(app, email):
    """Show one subscriber: status, country, language, interests and consent record."""
    from rich.table import Table

    from . import subscribers

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
@click.option("--name", default="", help="Display name.")
@click.option("--country", default="", help="ISO code or name in en/es/pt/fr, e.g. TT or 'Brasil'.")
@click.option("--language", default="", help="en, es, pt or fr (default: from the country).")
@click.option("--interest", "interests", multiple=True, help="An interest slug or label; repeat for several.")
@click.option("--status", default="active", show_default=True, type=click.Choice(["active", "pending", "paused"]),
              help="Status for a new subscriber.")
@pass_app
def subscribers_add(app, email, name, country, language, interests, status):
    """Add one subscriber (or update them if the address exists)."""
    from . import subscribers

    row = subscribers.add(app.db, email, name=name, country=country, language=language,
                          interests=list(interests) or None,
                          status=status, consent=subscribers.Consent(source="cli"))
    console.print(f"{row['email']} is {row['status']}.")


@subscribers_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def subscribers_erase(app, email, yes):
    """Erase everything about a person (GDPR), keeping only a hashed suppression so they are never mailed."""
    from . import subscribers

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
    from . import subscribers

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
    from . import segments

    text = " ".join(expression)
    segment = segments.parse_segment(text, app.db)
    console.print(f"{segments.count(app.db, segment):,} subscribers match {segment}", highlight=False)


@segments_group.command("save")
@click.argument("name")
@click.argument("expression", nargs=-1, required=True)
@pass_app
def segments_save(app, name, expression):
    """Save EXPRESSION under NAME, to use as @NAME in campaigns and other segments."""
    from . import segments

    segment = segments.save(app.db, name, " ".join(expression))
    console.print(f"Saved @{name} = {segment} ({segments.count(app.db, segment):,} subscribers now)",
                  highlight=False)


@segments_group.command("list")
@pass_app
def segments_list(app):
    """List saved segments with their current size."""
    from rich.table import Table

    from . import segments

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
    from . import segments

    if not segments.delete(app.db, name.lstrip("@")):
        raise click.ClickException(f"no saved segment named {name!r}")
    console.print(f"Deleted @{name.lstrip('@')}.")


# --- suppressions ------------------------------------------------------------------------------------


@cli.group("suppressions")
def suppressions_group():
    """The do-not-mail list: bounces, complaints, erasures and manual entries."""


@suppressions_group.command("list")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), help="Only this reason.")
@pass_app
def suppressions_list(app, reason):
    """List suppressed addresses with their reason and date."""
    from rich.table import Column, Table

    from . import suppressions

    table = Table(Column("email", no_wrap=True), Column("reason", no_wrap=True), "source",
                  Column("since", no_wrap=True))
    for row in suppressions.list_suppressions(app.db, reason):
        table.add_row(row["email"], row["reason"], row["source"], row["created_at"])
    console.print(table)


@suppressions_group.command("add")
@click.argument("email")
@click.option("--reason", default="manual", show_default=True, type=click.Choice(SUPPRESSION_REASONS),
              help="Why: manual, hard-bounce, complaint... (bounce and complaint reasons also mark the subscriber).")
@click.option("--note", default="", help="Why, for the record.")
@pass_app
def suppressions_add(app, email, reason, note):
    """Never mail EMAIL again (its subscriber, if any, is marked accordingly)."""
    from . import subscribers, suppressions
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
    from . import suppressions
    from .normalize import normalize_email

    if not suppressions.unsuppress(app.db, normalize_email(email)):
        raise click.ClickException(f"{email} is not suppressed")
    console.print(f"Removed {email} from the suppression list.")


# --- articles and campaigns --------------------------------------------------------------------------


@cli.group("articles")
def articles_group():
    """Check how article files are understood."""


@articles_group.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def articles_show(file):
    """Print what was understood from an article FILE (.md with front matter, or the site's plain text)."""
    from rich.table import Table

    from .articles import parse_article, summarize

    article = parse_article(file)
    table = Table(show_header=False, title=str(file))
    table.add_row("title", article.title or "[red](none: give one in campaign.toml)[/]")
    table.add_row("date", str(article.date or ""))
    table.add_row("category", article.category)
    table.add_row("authors", "; ".join(f"{a.name} ({a.role})" if a.role else a.name for a in article.authors))
    table.add_row("language", article.language)
    table.add_row("interests", ", ".join(article.interests))
    table.add_row("filed by", article.filing)
    table.add_row("countries", ", ".join(article.countries))
    table.add_row("url", article.url)
    table.add_row("summary", summarize(article))
    table.add_row("blocks", f"{len(article.paragraphs)} paragraphs, "
                            f"{sum(1 for b in article.blocks if b.kind == 'heading')} headings")
    console.print(table)
    for block in article.blocks:
        if block.kind == "heading":
            console.print(f"\n[bold]## {block.text}[/]", highlight=False)
        else:
            console.print(block.text[:160] + ("…" if len(block.text) > 160 else ""), highlight=False)


@cli.group("campaign")
def campaign_group():
    """Build, preview, schedule, pause, resume and cancel campaigns (folders in campaigns/)."""


def _load_campaign(app: App, slug: str):
    from .campaigns import load_campaign

    folder = Path(app.config.campaigns_dir) / slug
    if not (folder / "campaign.toml").exists():
        raise click.ClickException(f"no campaign {slug!r}: expected {folder}/campaign.toml")
    return load_campaign(folder, app.config.tz)


@campaign_group.command("new")
@click.argument("slug")
@click.option("--title", default="", help='The issue\'s title and English subject (default: "<Month Year> digest").')
@pass_app
def campaign_new(app, slug, title):
    """Make campaigns/SLUG: a commented campaign.toml and one example Markdown article to replace.

    SLUG names the campaign in every command and URL; start it with the date, e.g. 2027-01-lac-digest.
    """
    from datetime import datetime

    from .scaffold import new_campaign

    folder = new_campaign(app.config.campaigns_dir, slug, datetime.now(app.config.tz), title)
    console.print(f"Made {folder}: edit campaign.toml and replace first-article.md with your articles, "
                  f"then `newsletter campaign build {slug}`.", highlight=False, soft_wrap=True)


@campaign_group.command("build")
@click.argument("slug")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder for the rendered files "
              "(default: build/<slug> beside the config).")
@pass_app
def campaign_build(app, slug, out):
    """Validate a campaign and write its rendered HTML and text, per language, for review.

    Also prints where each article went and why, which languages are complete, links that a mail client
    could not follow, and warnings (old articles, empty sections, no postal address)."""
    from rich.markup import escape
    from rich.table import Table

    from . import segments
    from .clock import SystemClock
    from .db import LANGUAGES
    from .interests import Taxonomy
    from .render import IssueRenderer, build_campaign

    campaign = _load_campaign(app, slug)
    renderer = IssueRenderer(campaign, app.config, Taxonomy.load(app.db))
    out = out or Path(app.config.database).parent / "build" / slug
    report = build_campaign(renderer, out, LANGUAGES, SystemClock().now().astimezone(app.config.tz).date())
    table = Table("file", "size")
    for path in report.files:
        table.add_row(path.name, f"{path.stat().st_size / 1024:.1f} KB")
    console.print(table)
    count = len(campaign.articles)
    console.print(f"Written to {out}. {count} article{'' if count == 1 else 's'}; segment {campaign.segment} "
                  f"({segments.count(app.db, campaign.segment):,} subscribers now)", highlight=False)
    for placement in report.placements:
        section = renderer.section_label(placement.section, "en")
        console.print(f"  {escape(placement.article.slug)} -> {escape(section)}: {escape(placement.reason)}",
                      highlight=False, soft_wrap=True)
    for lang, missing in report.missing.items():
        state = "complete" if not missing else "falls back to English for " + ", ".join(missing)
        console.print(f"  {lang}: {escape(state)}", highlight=False, soft_wrap=True)
    for lang, links in report.unresolved.items():
        console.print(f"[yellow]warning:[/] {lang}: links a mail client cannot follow: {escape(', '.join(links))}",
                      highlight=False, soft_wrap=True)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@campaign_group.command("render")
@click.argument("slug")
@click.option("--to", "email", required=True, help="A subscriber's address: prints the message they would get.")
@pass_app
def campaign_render(app, slug, email):
    """Print the complete message (headers and both parts) one subscriber would receive."""
    from . import subscribers
    from .clock import SystemClock
    from .interests import Taxonomy
    from .sender import Composer

    subscriber = subscribers.get(app.db, email)
    if subscriber is None:
        raise click.ClickException(f"{email} is not a subscriber; `newsletter subscribers add` first")
    composer = Composer(app.config, _load_campaign(app, slug), Taxonomy.load(app.db))
    _, data = composer.compose(subscriber, 0, SystemClock().now())
    click.echo(data.decode("ascii", "replace").replace("\r\n", "\n"))


@campaign_group.command("list")
@pass_app
def campaign_list(app):
    """List campaigns with their state, next send time and delivery counts."""
    from rich.table import Column, Table

    from .scheduler import campaign_overview

    table = Table(Column("campaign", no_wrap=True), "title", "state", Column("next send", no_wrap=True), "sent",
                  "pending", "failed/bounced", "note")
    paused = []
    for entry in campaign_overview(app.config, app.db):
        counts = entry["counts"]
        state = entry["state"] + (" (fault)" if entry["paused_by"] == "fault" else "")
        if entry["pause_reason"]:
            paused.append(entry)
        table.add_row(entry["slug"], entry["title"], state,
                      f"{entry['next_send']:%Y-%m-%d %H:%M %Z}" if entry["next_send"] else "",
                      f"{counts['sent']:,}", f"{counts['queued'] + counts['sending'] + counts['deferred']:,}",
                      f"{counts['failed'] + counts['bounced']:,}", entry["last_error"] or "")
    console.print(table)
    for entry in paused:  # whole, below the table, so that a long reason is never cut
        console.print(f"{entry['slug']} is paused: {entry['pause_reason']}", highlight=False, soft_wrap=True)


@campaign_group.command("schedule")
@click.argument("slug")
@click.option("--at", "when", help='Local time in the configured zone, e.g. "2026-12-01 09:00" '
              "(default: send_at from campaign.toml).")
@pass_app
def campaign_schedule(app, slug, when):
    """Schedule a campaign; `newsletter scheduler` sends it when the time comes."""
    from datetime import timezone

    from .scheduler import parse_local_time, schedule_campaign

    row = schedule_campaign(app.config, app.db, slug, parse_local_time(when, app.config.tz) if when else None)
    from .clock import parse_utc

    moment = parse_utc(row["send_at"])
    console.print(f"{slug} will be sent at {moment.astimezone(app.config.tz):%Y-%m-%d %H:%M %Z} "
                  f"({moment.astimezone(timezone.utc):%H:%M} UTC) by `newsletter scheduler`.")


def _state_command(name: str, action: str, help_text: str):
    @campaign_group.command(name, help=help_text)
    @click.argument("slug")
    @pass_app
    def command(app, slug):
        from . import campaign_state

        result = getattr(campaign_state, action)(app.db, slug)
        extra = f" ({result:,} unsent deliveries skipped)" if isinstance(result, int) else ""
        console.print(f"{slug}: {name} done{extra}.")

    return command


_state_command("unschedule", "unschedule", "Take a scheduled campaign back to draft.")
_state_command("pause", "pause", "Pause a sending campaign (from any terminal); `campaign resume` continues it.")
_state_command("resume", "resume", "Resume a paused campaign; run `newsletter send` or let the scheduler finish it.")
_state_command("cancel", "cancel", "Cancel a campaign for good; unsent deliveries are marked skipped.")


# --- sending -----------------------------------------------------------------------------------------


@cli.command("send")
@click.argument("slug")
@click.option("--test", "test_addresses", help="Comma-separated staff addresses: send them the real message, "
              "outside the delivery log.")
@click.option("--wait", is_flag=True, help="Stay until every deferred retry is done (default: stop when only "
              "retries for later are left; the scheduler or a second `send` takes them).")
@click.option("--connections", type=int, help="Parallel SMTP connections (default from config).")
@click.option("--transport", "transport_url", help="Override the SMTP/Maildir URL for this run.")
@pass_app
def send(app, slug, test_addresses, wait, connections, transport_url):
    """Send a campaign to its segment: throttled, retried, logged; safe to run again after a crash or Ctrl-C.

    The relay is checked first (as `newsletter smtp check` does). If the relay or its settings fail
    (login, TLS, connection, every message refused alike), the campaign pauses with the reason and no
    subscriber is charged for it; after the fix, `send` again carries on. Exit codes: 0 all done, 1 an
    error, 2 bad input, 3 finished with deferred or failed deliveries (or paused by an operator), 4 another
    process holds the campaign, 130 interrupted.
    """
    from .sender import prepare_campaign, send_test

    if test_addresses:
        replies = send_test(app.config, slug, [a for a in test_addresses.split(",") if a.strip()],
                            transport_url=transport_url)
        for address, reply in replies:
            console.print(f"{address}: {reply.code} {reply.enhanced} {reply.text}", highlight=False)
        if any(reply.outcome != "sent" for _, reply in replies):
            sys.exit(EXIT_UNFINISHED)
        return
    from rich.markup import escape

    from .render import postal_address_warning

    postal = postal_address_warning(app.config)
    if postal:
        err_console.print(f"[yellow]warning:[/] {escape(postal)}", highlight=False, soft_wrap=True)
    campaign = prepare_campaign(app.config, app.db, slug)
    summary = send_with_progress(app, campaign, wait_for_retries=wait, connections=connections,
                                 transport_url=transport_url)
    print_send_summary(summary, app.db)
    code = send_exit_code(summary)
    if summary.stopped_reason == "fault":
        fail(f"{slug} is paused: {summary.fault}. No subscriber was charged for it; after the fix, "
             f"`newsletter send {slug}` (or the scheduler) carries on.")
    if code:
        sys.exit(code)


def send_exit_code(summary) -> int:
    """The exit code of a send (EXIT_*), from how the run ended and what is left in the log."""
    reason = summary.stopped_reason
    if reason == "fault":
        return EXIT_ERROR
    if reason == "locked":
        return EXIT_LOCKED
    if reason == "interrupted":
        return EXIT_INTERRUPTED
    if reason == "cancelled":
        return EXIT_OK
    if reason in ("paused", "retries pending") or summary.counts["failed"] or summary.counts["deferred"]:
        return EXIT_UNFINISHED
    return EXIT_OK


def send_with_progress(app: App, campaign, **options):
    """Run the sender with a bar that counts finished deliveries and shows the rate of this run."""
    import time

    from . import deliveries
    from .sender import CampaignSender

    slug = campaign.slug
    total = sum(deliveries.counts(app.db, slug).values())
    with progress_bar() as bar:
        task = bar.add_task(f"Sending {slug}", total=total, completed=total - deliveries.unfinished(app.db, slug),
                            rate="")
        started, finished = time.monotonic(), 0

        def advance(status: str) -> None:
            nonlocal finished
            if status in FINAL_STATUSES:  # a deferred delivery is tried again later: not done yet
                finished += 1
                bar.update(task, advance=1,
                           rate=f"{finished / max(time.monotonic() - started, 1e-6):,.0f} msg/s")

        wait = options.pop("wait_for_retries", False)
        return CampaignSender(app.config, campaign, progress=advance, **options).run(wait_for_retries=wait)


FINAL_STATUSES = ("sent", "failed", "bounced", "skipped")


def print_send_summary(summary, db) -> None:
    from rich.table import Table

    from . import deliveries

    by = f" by {summary.processes} processes" if summary.processes > 1 else ""
    console.print(f"{summary.slug}: {summary.sent_now:,} sent in this run{by}, {summary.elapsed:.1f} s", highlight=False)
    table = Table()
    table.add_column("status")
    table.add_column("deliveries", justify="right")
    for status, count in summary.counts.items():
        if count:
            table.add_row(status, f"{count:,}")
    console.print(table)
    print_reasons(deliveries.reasons(db, summary.slug))
    reason = {
        "locked": "another process is sending this campaign right now; nothing was done",
        "paused": "the campaign is paused: `newsletter campaign resume` then `newsletter send`",
        "cancelled": "the campaign was cancelled",
        "interrupted": "stopped; the log is consistent: run `newsletter send` again to continue",
        "retries pending": f"the rest are deferred; next retry at {summary.next_retry_at:%Y-%m-%d %H:%M} UTC. "
                           "`newsletter send --wait` or the scheduler will finish them"
                           if summary.next_retry_at else "",
    }.get(summary.stopped_reason or "", "")
    if reason:
        console.print(reason, highlight=False)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)


def print_reasons(reasons: list[dict]) -> None:
    """Deliveries that did not go out, grouped by the relay's reply (code + text), most frequent first."""
    if not reasons:
        return
    from rich.table import Column, Table

    table = Table("status", "reply", Column("deliveries", justify="right"), title="why, by reply")
    for row in reasons:
        reply = " ".join(str(part) for part in (row["last_code"] or "", row["last_enhanced"] or "",
                                                row["last_text"] or "") if part)
        table.add_row(row["status"], reply or "(no reply)", f"{row['n']:,}")
    console.print(table)


@cli.command("report")
@click.argument("slug")
@click.option("--csv", "csv_file", type=click.File("w", encoding="utf-8"), help="Write the whole delivery log.")
@click.option("--limit", default=20, show_default=True, help="How many problem deliveries to list.")
@pass_app
def report(app, slug, csv_file, limit):
    """State, counts per status, the failures grouped by the server's reply, the latest problem deliveries
    and bounce events for a campaign."""
    from rich.table import Table

    from . import campaign_state, deliveries

    counts = deliveries.counts(app.db, slug)
    if not sum(counts.values()):
        raise click.ClickException(f"no deliveries for {slug!r}; has it been sent? (`newsletter campaign list`)")
    row = campaign_state.get(app.db, slug)
    if row is not None:
        state = row["state"]
        if state == "paused" and row["pause_reason"]:
            state += f" ({row['paused_by']}): {row['pause_reason']}"
        console.print(f"{slug}: {state}", highlight=False, soft_wrap=True)
    table = Table("status", "deliveries", title=slug)
    for status, count in counts.items():
        table.add_row(status, f"{count:,}")
    console.print(table)
    print_reasons(deliveries.reasons(app.db, slug))
    problems = deliveries.problems(app.db, slug, limit)
    if problems:
        failures = Table("email", "status", "tries", "reply", "when")
        for row in problems:
            failures.add_row(row["email"], row["status"], str(row["attempts"]),
                             f"{row['last_code'] or ''} {row['last_enhanced'] or ''} {row['last_text'] or ''}".strip(),
                             row["updated_at"])
        console.print(failures)
    events = list(app.db.query(
        "SELECT e.kind, e.source, count(*) AS n FROM bounce_events e JOIN deliveries d ON d.id = e.delivery_id "
        "WHERE d.campaign = ? GROUP BY e.kind, e.source", [slug]))
    if events:
        bounce_table = Table("bounce event", "source", "count")
        for row in events:
            bounce_table.add_row(row["kind"], row["source"], str(row["n"]))
        console.print(bounce_table)
    if csv_file:
        rows = deliveries.export_csv(app.db, slug, csv_file)
        err_console.print(f"{rows:,} deliveries written to {csv_file.name}.")


@cli.group("deliveries")
def deliveries_group():
    """The delivery log of a campaign."""


@deliveries_group.command("retry")
@click.argument("slug")
@click.option("--status", "statuses", multiple=True, default=("failed",), show_default=True,
              type=click.Choice(["failed", "deferred", "bounced"]), help="Which deliveries; repeat for several.")
@click.option("--since", help='Only those last tried at or after this local time, e.g. "2026-12-01 09:00".')
@click.option("--note", default="", help="Why, for the record (the incident).")
@pass_app
def deliveries_retry(app, slug, statuses, since, note):
    """Queue deliveries again after an incident (the relay refused everyone for an hour, say), with their
    attempts starting afresh; recorded in the log. Anyone unsubscribed, bounced or suppressed since is never
    requeued. `newsletter send` or the scheduler then sends them."""
    from . import deliveries
    from .scheduler import parse_local_time

    when = parse_local_time(since, app.config.tz) if since else None
    result = deliveries.requeue(app.db, slug, tuple(statuses), when, note=note)
    console.print(f"{slug}: {result.requeued:,} deliveries queued again; {result.refused:,} left alone (no longer "
                  f"active or suppressed); the campaign is {result.state}.", highlight=False)
    if result.requeued and result.state == "sending":
        console.print(f"Run `newsletter send {slug}`, or let the scheduler send them.", highlight=False)


@cli.group("smtp")
def smtp_group():
    """The relay that sends the mail."""


@smtp_group.command("check")
@click.option("--transport", "transport_url", help="Check this SMTP/Maildir URL instead of the configured one.")
@click.option("--campaign", "slug", help="Check the relay this campaign uses (its `transport`, if it sets one).")
@pass_app
def smtp_check(app, transport_url, slug):
    """Connect as a send would (EHLO, STARTTLS or TLS, AUTH, then MAIL FROM and RSET) and report each step;
    nothing is sent. `newsletter send` runs the same check before it claims any delivery. Exit code 1 if a
    step fails."""
    from rich.markup import escape

    from .transport import check_transport, what_to_fix

    config = app.config
    url = transport_url or (_load_campaign(app, slug).transport if slug else None) or config.smtp_url
    check = check_transport(url, config.bounce_address or config.sender_address, starttls=config.sending.starttls)
    console.print(f"Checking {check.url}", highlight=False)
    for step in check.steps:
        mark = "[green]ok[/]" if step.ok else "[bold red]failed[/]"
        console.print(f"  {step.name:<10} {mark}  {escape(step.detail)}", highlight=False, soft_wrap=True)
    if check.failure is not None:
        fail(what_to_fix(check.failure, url))
    console.print("The relay is ready; nothing was sent.")


@cli.command("scheduler")
@click.option("--once", is_flag=True, help="Run one pass and exit (for cron); exit code 1 if anything failed.")
@click.option("--next", "show_next", is_flag=True, help="List the upcoming runs (campaigns, retries after a "
              "fault, digests) and exit; nothing is sent.")
@click.option("--interval", default=30, show_default=True, help="Seconds between passes.")
@pass_app
def scheduler_command(app, once, show_next, interval):
    """Send due campaigns and the recurring digests ([digest] rules), in the foreground (systemd, containers).

    Safe to restart: a missed digest runs once, an interrupted campaign is resumed, and two schedulers on
    one database never send the same campaign twice. A campaign paused by a fault of the relay is tried
    again with a growing wait (1 minute, doubling up to an hour), and each try is logged. See
    docs/scheduler.md for a systemd unit.
    """
    import threading

    from .scheduler import configure_logging, run_forever, run_pass, stop_on_signals, upcoming

    if show_next:
        from rich.table import Column, Table

        tz = app.config.tz
        table = Table(Column(f"when ({tz.key})", no_wrap=True), Column("in the rule's zone", no_wrap=True),
                      Column("what", no_wrap=True), "detail")
        for run in upcoming(app.config, app.db):
            table.add_row(f"{run.when:%Y-%m-%d %H:%M %Z}", f"{run.local:%Y-%m-%d %H:%M %Z}", run.what, run.detail)
        console.print(table)
        return
    configure_logging(app.config)
    if once:
        results = run_pass(app.config)
        if any(result.failed for result in results):
            sys.exit(1)
        return
    stop = threading.Event()
    stop_on_signals(stop)
    run_forever(app.config, stop_event=stop, interval_seconds=interval)


# --- web --------------------------------------------------------------------------------------------


@cli.command("serve")
@click.option("--host", help="Address to bind (default from config: 127.0.0.1, this machine only).")
@click.option("--port", type=int, help="Port (default from config: 8080).")
@click.option("--threads", type=int, help="Worker threads (default from config [web] threads: 8).")
@pass_app
def serve_command(app, host, port, threads):
    """Run the web pages on waitress: preference centre, unsubscribe, subscribe and opt-in, archive, and the
    staff pages at /staff/ and /preview (this machine only, or everyone after a login once [web]
    staff_password is set). Behind nginx or Caddy: see docs/deploy.md."""
    from .web.app import serve

    serve(app.config, host, port, threads=threads)


@cli.group("staff")
def staff_group():
    """Access to the staff pages (/staff/, /preview)."""


@staff_group.command("set-password")
@click.password_option("--password", prompt="New staff password", help="The password (asked for when not given).")
@pass_app
def staff_set_password(app, password):
    """Store a hash of the staff password in the config file ([web] staff_password); the staff pages then
    need a login from everywhere, and every open session ends."""
    from .config import set_setting
    from .web.staff_access import hash_password

    set_setting(app.config.path, "web", "staff_password", hash_password(password))
    console.print(f"Staff password set in {app.config.path} (only its hash is stored). Restart `newsletter serve`.",
                  highlight=False)


@cli.group("unsubscribes")
def unsubscribes_group():
    """Unsubscribe requests that arrive by mail (the mailto in List-Unsubscribe)."""


@unsubscribes_group.command("process")
@click.option("--mailbox", required=True, help="Where the unsubscribe address's mail lands: maildir:///path, "
              "imaps://user:pass@host/INBOX or pop3s://...")
@pass_app
def unsubscribes_process(app, mailbox):
    """Unsubscribe everyone whose mail carries a valid signed token; others are left for a person to read."""
    from .signing import Signer
    from .unsubscribe_requests import process_unsubscribe_mailbox

    summary = process_unsubscribe_mailbox(app.db, Signer(app.config.require_secret()), mailbox)
    console.print(f"{summary.messages} messages: {summary.unsubscribed} unsubscribed, "
                  f"{summary.already_unsubscribed} already were, {len(summary.left_alone)} without a valid token "
                  "(left in the mailbox).")


# --- returned mail -----------------------------------------------------------------------------------


@cli.group("bounces")
def bounces_group():
    """Returned mail and complaints."""


@bounces_group.command("process")
@click.option("--mailbox", help="maildir:///path, imaps://user:pass@host/INBOX or pop3s://... (default: config).")
@pass_app
def bounces_process(app, mailbox):
    """Read bounces (RFC 3464 and the rest) and complaints (ARF), and apply the suppression policy.
    Prints one line per subscriber whose state changed; reports that match nobody are kept for review."""
    from .bounces import process_mailbox

    _print_bounce_summary(process_mailbox(app.db, app.config, mailbox))


@bounces_group.command("unmatched")
@click.option("--reprocess", is_flag=True, help="Run every kept report through the policy again (after an import, "
              "a config change or a fix); the ones that now match are handled and removed from the list.")
@pass_app
def bounces_unmatched(app, reprocess):
    """Reports that named no delivery or subscriber we know, or could not be read: kept, not lost."""
    from rich.markup import escape
    from rich.table import Column, Table

    from .bounces import reprocess_reviews, unmatched_reports

    if reprocess:
        _print_bounce_summary(reprocess_reviews(app.db, app.config))
    table = Table("id", "first seen", *(Column(name, overflow="fold") for name in ("sender", "subject",
                  "recipients found", "reason")), title="Kept for review")
    count = 0
    for row in unmatched_reports(app.db):
        count += 1
        table.add_row(str(row["id"]), row["first_seen"][:16], escape(row["sender"] or "?"), escape(row["subject"]),
                      escape(row["recipients"] or "-"), escape(row["reason"]))
    if count:
        console.print(table)
    else:
        console.print("No report is waiting for review.")


def _print_bounce_summary(summary) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("kind", "messages", title=f"{summary.read} messages read")
    for kind, count in sorted(summary.by_kind.items()):
        table.add_row(kind, str(count))
    console.print(table)
    for action in summary.actions:
        console.print(escape(action), highlight=False)
    if summary.logged:
        console.print(f"{summary.logged} events logged without changing anyone's state.")
    if summary.unmatched:
        console.print(f"{summary.unmatched} reports matched no delivery or subscriber: kept for review "
                      "(newsletter bounces unmatched).")


# --- demo --------------------------------------------------------------------------------------------


@cli.command("demo")
@click.option("--dir", "folder", default="demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the demo's database, config, rendered files and received mail.")
@click.option("--campaign", "slug", default="2026-12-lac-digest", show_default=True,
              help="Which sample campaign to send.")
def demo(folder, slug):
    """Import the sample subscribers, build the sample issue and send it to a local SMTP server that writes
    every message it receives into a Maildir. Nothing leaves this machine."""
    from . import csvimport, demo as demo_setup
    from .db import LANGUAGES
    from .interests import Taxonomy
    from .mailsink import start_sink
    from .packaged import SAMPLE_SUBSCRIBERS
    from .render import IssueRenderer, render_campaign_files
    from .sender import prepare_campaign

    demo_setup.clean(folder)
    demo_setup.copy_sample_campaigns(folder)
    with start_sink(folder / "maildir") as sink:
        config_path = demo_setup.write_config(folder, sink.port)
        app = App(str(config_path))
        console.print(f"[bold]1.[/] Local SMTP server listening on 127.0.0.1:{sink.port}, storing mail in "
                      f"{folder / 'maildir'}")
        report = csvimport.import_csv(app.db, SAMPLE_SUBSCRIBERS)
        console.print(f"[bold]2.[/] Imported {report.inserted} sample subscribers (the packaged sample.csv)")
        campaign = prepare_campaign(app.config, app.db, slug)
        renderer = IssueRenderer(campaign, app.config, Taxonomy.load(app.db))
        files = render_campaign_files(renderer, folder / "build", LANGUAGES)
        console.print(f"[bold]3.[/] Built {slug}: {len(campaign.articles)} articles, review copies in "
                      f"{folder / 'build'} ({len(files)} files); the campaign folder is "
                      f"{folder / 'campaigns' / slug}")
        console.print("[bold]4.[/] Sending")
        print_send_summary(send_with_progress(app, campaign, wait_for_retries=True), app.db)
    mails = sorted((folder / "maildir" / "new").iterdir())
    console.print(f"\nThe server received {len(mails)} messages: {folder / 'maildir' / 'new'}")
    if mails:
        console.print(f"Open one: less {mails[0]}")
    console.print(f"Preview and preference pages: newsletter --config {config_path} serve")
    console.print(f"Delivery report: newsletter --config {config_path} report {slug}")


if __name__ == "__main__":
    cli()
