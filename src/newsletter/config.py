"""Settings from newsletter.toml, with secrets and paths overridable by environment variables.

The file is found at --config, else $NEWSLETTER_CONFIG, else ./newsletter.toml. Relative paths in it
are relative to the file's own folder, so a config works from any working directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONFIG_ENV = "NEWSLETTER_CONFIG"
SECRET_ENV = "NEWSLETTER_SECRET_KEY"
SMTP_ENV = "NEWSLETTER_SMTP_URL"
WEBHOOK_SECRET_ENV = {
    "postmark_password": "NEWSLETTER_POSTMARK_PASSWORD",
    "sendgrid_public_key": "NEWSLETTER_SENDGRID_PUBLIC_KEY",
    "mailgun_signing_key": "NEWSLETTER_MAILGUN_SIGNING_KEY",
}
DEFAULT_CONFIG_NAME = "newsletter.toml"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


def setting(default, doc: str, *, example: str = "", choices: tuple[str, ...] = (),
            minimum: float | None = None, maximum: float | None = None, secret: bool = False):
    """A dataclass field that carries its own documentation and limits: the one schema that loading
    checks against and docs/campaigns.md is written from (docs/update_config_docs.py)."""
    meta = {"doc": doc, "example": example, "choices": choices, "minimum": minimum, "maximum": maximum,
            "secret": secret}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class SendingSettings:
    connections: int = setting(4, "Parallel SMTP connections per campaign (a total, however many processes).",
                               minimum=1, maximum=64)
    rate_per_second: float = setting(0.0, "Messages per second at most; 0 means no limit.", minimum=0)
    rate_per_hour: float = setting(0.0, "Messages per hour at most (a relay's hourly quota); 0 means no limit.",
                                   minimum=0)
    max_attempts: int = setting(6, "Tries per delivery before a temporary failure becomes final.", minimum=1)
    retry_base_seconds: float = setting(60.0, "Wait before the first retry; each further retry waits twice "
                                        "as long (with jitter).", minimum=0)
    retry_max_seconds: float = setting(6 * 3600.0, "The longest wait between two retries.", minimum=0)
    batch_size: int = setting(500, "Deliveries claimed from the log at a time.", minimum=1)
    processes: int = setting(0, "Sender processes per campaign, each with its share of the connections and of the "
                             "rate; 0 means one per core. A send with fewer than 2,000 deliveries left per "
                             "process uses fewer.", minimum=0, maximum=64)
    starttls: str = setting("auto", "STARTTLS on smtp:// URLs: auto (when offered), always (refuse to send "
                            "without it) or never.", choices=("auto", "always", "never"))


@dataclass
class DkimSettings:
    domain: str = setting("", "The signing domain (d=), e.g. lac.example.org; empty: send unsigned.")
    selector: str = setting("", "The selector (s=): the public key is the TXT record "
                            "<selector>._domainkey.<domain>.")
    private_key_file: Path | None = setting(None, "PEM file with the RSA private key.", example='"dkim.pem"')


@dataclass
class BounceSettings:
    mailbox: str = setting("", "Where returned mail lands: maildir:///path, imaps://user:pass@host/INBOX or "
                           "pop3s://user:pass@host.", secret=True)
    soft_threshold: int = setting(3, "Soft bounces within soft_window_days that suppress an address.", minimum=1)
    soft_window_days: int = setting(30, "The window, in days, for counting soft bounces.", minimum=1)
    review_folder: str = setting("review", "Mailbox folder for reports that matched nobody or could not be "
                                 "classified (also listed by `newsletter bounces unmatched`); empty: they stay "
                                 "where they are.")
    match_plain_address: bool = setting(True, "Let a report without a VERP address name its subscriber by "
                                        "address (then only a hard, final bounce suppresses; docs/bounces.md).")


@dataclass
class WebhookSettings:
    """Event webhooks of email service providers (POST /hooks/<provider>); a provider without its
    secret refuses every request."""

    ses_topic_arns: list[str] = setting([], "Amazon SNS topics whose bounce and complaint messages are accepted.",
                                        example='["arn:aws:sns:us-east-1:123456789012:ses-events"]')
    postmark_user: str = setting("", "The basic-auth user Postmark's webhook sends.")
    postmark_password: str = setting("", "Its password. Also $NEWSLETTER_POSTMARK_PASSWORD.", secret=True)
    sendgrid_public_key: str = setting("", "SendGrid's signed event webhook verification key (base64 DER or "
                                       "PEM). Also $NEWSLETTER_SENDGRID_PUBLIC_KEY.", secret=True)
    mailgun_signing_key: str = setting("", "Mailgun's webhook signing key. Also $NEWSLETTER_MAILGUN_SIGNING_KEY.",
                                       secret=True)
    max_age_seconds: int = setting(900, "Signed timestamps older than this are refused as replays.", minimum=1)


@dataclass
class WebSettings:
    host: str = setting("127.0.0.1", "Address `newsletter serve` binds to (127.0.0.1: this machine only).")
    port: int = setting(8080, "Port `newsletter serve` listens on.", minimum=1, maximum=65535)
    threads: int = setting(8, "Worker threads of `newsletter serve` (waitress): requests served at once.",
                           minimum=1, maximum=256)
    preview_password: str = setting("", "Password for /preview from anywhere but localhost; empty: localhost "
                                    "only.", secret=True)
    staff_addresses: list[str] = setting([], "Addresses the preview and the staff pages offer for test sends.",
                                         example='["editor@lac.example.org"]')
    staff_password: str = setting("", "A hash of the staff password, written by `newsletter staff "
                                  "set-password` (never the password itself). Set: every staff page (/staff/, "
                                  "/preview) needs a login, from anywhere. Empty: this machine only.", secret=True)
    trusted_proxies: list[str] = setting([], "Peers (reverse proxies) whose X-Forwarded-For and "
                                         "X-Forwarded-Proto headers are believed; none by default. Behind nginx "
                                         "or Caddy on this machine: [\"127.0.0.1\"] (docs/deploy.md).",
                                         example='["127.0.0.1"]')


@dataclass
class DigestSettings:
    rules: list[str] = setting([], "When the scheduler builds and sends the monthly digest, one rule per "
                               "entry.", example='["first tuesday of each month at 09:00 America/Port_of_Spain"]')
    articles_dir: Path | None = setting(None, "Folder of article files the digest is built from.",
                                        example='"articles"')
    segment: str = setting("status:active", "Who gets the digest (a segment expression).")
    template: str = setting("digest", "Email template name (templates email/<name>.html and .txt).")


@dataclass
class Config:
    path: Path | None = None
    database: Path = setting(Path("newsletter.db"), "The SQLite database file.", example='"newsletter.db"')
    campaigns_dir: Path = setting(Path("campaigns"), "Folder with one folder per campaign.",
                                  example='"campaigns"')
    templates_dir: Path | None = setting(None, "Your own templates (email/ and web/ inside); each file there "
                                         "replaces the packaged one of the same name, the rest stay packaged. "
                                         "It need not exist; `newsletter templates copy` fills it.",
                                         example='"templates"')
    list_name: str = setting("LAC Internet Digest", "The newsletter's name, in headers and footers: one text, or a "
                             "table with a name per language ([newsletter.list_name] en = \"...\", es = \"...\"; "
                             "en is required and is the List-Id's name, others fall back to it).")
    list_names: dict[str, str] = field(default_factory=dict)  # list_name per language, filled by load_config
    list_id: str = setting("digest.lac.example.org", "The List-Id header (a domain you control).")
    sender_name: str = setting("LAC Bureau", "The From name.")
    sender_address: str = setting("news@lac.example.org", "The From address.")
    reply_to: str = setting("", "A Reply-To address; empty: replies go to the sender.")
    bounce_address: str = setting("", "Return path; with it, VERP inserts +<token> before the @ so that each "
                                  "bounce names its delivery.", example='"bounces@lac.example.org"')
    unsubscribe_mailto: str = setting("", "Address for the mailto: in List-Unsubscribe.",
                                      example='"unsubscribe@lac.example.org"')
    base_url: str = setting("http://127.0.0.1:8080", "Public address of `newsletter serve`; every link in a "
                            "message starts with it.")
    postal_address: str = setting("", "The bureau's postal address, shown in every language's footer (CAN-SPAM "
                                  "and most mail providers require one; `send` warns while it is empty). "
                                  "Several lines: separate them with \\n.",
                                  example='"Rambla Example 1234\\n11300 Montevideo, Uruguay"')
    logo: Path | None = setting(None, "A PNG, GIF or JPEG shown in every issue's header, served by `newsletter "
                                "serve` at /archive/logo.<ext>; shown at most 48 px high (give it twice that "
                                "for sharp screens). Light on transparent suits the dark header in both "
                                "colour schemes.", example='"logo.png"')
    timezone: str = setting("UTC", "The bureau's IANA time zone: send_at and schedules are read in it.",
                            example='"America/Port_of_Spain"')
    smtp_url: str = setting("maildir://outbox", "Where mail goes: smtp://user:pass@host:587, smtps://host:465 "
                            "or maildir://folder. Also $NEWSLETTER_SMTP_URL.", secret=True)
    secret_key: str = setting("", "Signs every link that changes a subscriber. Also $NEWSLETTER_SECRET_KEY "
                              "(preferred in production).", secret=True)
    log_file: Path | None = setting(None, "The scheduler's log file, besides standard output.",
                                    example='"scheduler.log"')
    sending: SendingSettings = field(default_factory=SendingSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    bounces: BounceSettings = field(default_factory=BounceSettings)
    web: WebSettings = field(default_factory=WebSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)

    @property
    def tz(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone {self.timezone!r} is not an IANA zone name, e.g. America/Port_of_Spain")

    def list_name_for(self, lang: str) -> str:
        """The list's name as readers of `lang` know it (list_name given per language), else the English one."""
        return self.list_names.get(lang) or self.list_name

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]

    def require_secret(self) -> str:
        if not self.secret_key:
            raise ConfigError(
                f"no secret key: set {SECRET_ENV} or secret_key in {self.path or DEFAULT_CONFIG_NAME} "
                "(`newsletter init` writes a fresh one)"
            )
        return self.secret_key


SECTIONS = {
    "sending": SendingSettings,
    "dkim": DkimSettings,
    "bounces": BounceSettings,
    "web": WebSettings,
    "digest": DigestSettings,
    "webhooks": WebhookSettings,
}
_NOT_SETTINGS = {"path", "list_names", *SECTIONS}  # filled in by load_config, not written in a [newsletter] table


def settings_of(cls) -> list:
    """The documented settings of one table, in the order the dataclass declares them."""
    return [f for f in fields(cls) if f.name not in _NOT_SETTINGS]


def type_name(annotation: str) -> str:
    """How docs and error messages name a setting's type."""
    return {"int": "integer", "float": "number", "str": "text", "bool": "true/false", "Path": "path",
            "Path | None": "path", "list[str]": "list of text"}[annotation]


def _check(spec, value, where: str):
    """The value converted to the setting's type, or a ConfigError naming the key and what it expects."""
    kind = spec.type
    meta = spec.metadata
    wanted = type_name(kind)
    written = value

    def wrong(expected: str = "") -> ConfigError:
        return ConfigError(f"{where} {spec.name} = {written!r}: expected {expected or wanted}"
                           + (f", e.g. {spec.name} = {meta['example']}" if meta.get("example") else ""))

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("a whole number")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise wrong("true or false, without quotes")
    elif kind in ("str", "Path", "Path | None"):
        if not isinstance(value, str):
            raise wrong("text in quotes")
    elif kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise wrong('a list of quoted texts in brackets, ["..."]')
    if meta.get("choices") and value not in meta["choices"]:
        raise wrong("one of " + ", ".join(meta["choices"]))
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise wrong(f"at least {meta['minimum']:g}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise wrong(f"at most {meta['maximum']:g}")
    return value


def _build(cls, values: dict, base: Path, where: str):
    known = {f.name: f for f in settings_of(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(known))} "
                              "(docs/campaigns.md describes each)")
        value = _check(known[key], value, where)
        if known[key].type in ("Path", "Path | None"):
            value = (base / Path(value).expanduser()).resolve() if value else known[key].default
        kwargs[key] = value
    return cls(**kwargs)


def _list_names(top: dict, where: str) -> dict[str, str]:
    """list_name as a table per language ({en = "...", es = "..."}): English goes to list_name (List-Id)."""
    from .db import LANGUAGES

    value = top.get("list_name")
    if not isinstance(value, dict):
        return {}
    unknown = [lang for lang in value if lang not in LANGUAGES]
    if unknown:
        raise ConfigError(f"{where}: list_name.{unknown[0]}: unknown language; use {', '.join(LANGUAGES)}")
    bad = [lang for lang, text in value.items() if not isinstance(text, str) or not text.strip()]
    if bad:
        raise ConfigError(f"{where}: list_name.{bad[0]}: must be non-empty text in quotes")
    if "en" not in value:
        raise ConfigError(f"{where}: list_name.en: missing; English is required (other languages fall back to it)")
    top["list_name"] = value["en"].strip()
    return {lang: text.strip() for lang, text in value.items()}


def load_config(path: str | Path | None = None, environ: dict | None = None) -> Config:
    """Read the config file (if there is one), check every value against the schema, and apply the
    environment over it."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(CONFIG_ENV)
    config_path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_NAME)
    data: dict = {}
    if config_path.is_dir():
        raise ConfigError(f"config file {config_path} is a folder; pass the path of a newsletter.toml")
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        except (UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"{config_path}: cannot be read ({exc})") from None
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist; `newsletter init` writes one")
    base = config_path.resolve().parent
    unknown = set(data) - set(SECTIONS) - {"newsletter"}
    if unknown:
        raise ConfigError(f"{config_path}: unknown section(s) {', '.join(sorted(unknown))}; known: "
                          f"newsletter, {', '.join(SECTIONS)}")
    for name in ("newsletter", *SECTIONS):
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"{config_path}: {name} must be a table, written [{name}] on a line of its own")
    top = dict(data.get("newsletter", {}))
    list_names = _list_names(top, f"{config_path} [newsletter]")
    config = _build(Config, top, base, f"{config_path} [newsletter]")
    config.list_names = list_names
    for name, cls in SECTIONS.items():
        setattr(config, name, _build(cls, data.get(name, {}), base, f"{config_path} [{name}]"))
    config.path = config_path.resolve() if config_path.exists() else None
    for name in ("database", "campaigns_dir"):
        if not top.get(name):
            setattr(config, name, (base / getattr(config, name)).resolve())
    if config.smtp_url.startswith("maildir://") and not config.smtp_url.startswith("maildir:///"):
        config.smtp_url = "maildir://" + str((base / config.smtp_url[len("maildir://"):]).resolve())
    config.secret_key = environ.get(SECRET_ENV) or config.secret_key
    config.smtp_url = environ.get(SMTP_ENV) or config.smtp_url
    for name, variable in WEBHOOK_SECRET_ENV.items():
        setattr(config.webhooks, name, environ.get(variable) or getattr(config.webhooks, name))
    return config


EXAMPLE_CONFIG = """\
# newsletter configuration. Paths are relative to this file. Every setting, with its type and default:
# docs/campaigns.md. A line starting with # shows a default or an example.
# Secrets: prefer the environment (NEWSLETTER_SECRET_KEY, NEWSLETTER_SMTP_URL) in production.

[newsletter]
database = "newsletter.db"
campaigns_dir = "campaigns"                  # `newsletter campaign new <slug>` makes a folder here
templates_dir = "templates"                  # your overrides; need not exist (`newsletter templates copy`)
# The list's name for every language; or one per language, as a table at the end of [newsletter]:
# [newsletter.list_name] with en = "LAC Internet Digest", es = "Boletín de Internet de ALC", pt = ..., fr = ...
list_name = "LAC Internet Digest"
list_id = "digest.lac.example.org"          # List-Id header
# The bureau's postal address, shown in every issue's footer. CAN-SPAM and most mail providers require one:
# `newsletter send` warns while it is empty. Several lines: use \\n, e.g. "Av. Example 123\\nMontevideo, Uruguay".
postal_address = ""
# logo = "logo.png"                          # PNG, GIF or JPEG shown in every issue's header (served by `serve`)
sender_name = "LAC Regional Bureau"
sender_address = "news@lac.example.org"
# reply_to = "editors@lac.example.org"
bounce_address = "bounces@lac.example.org"   # VERP return path: bounces+<token>@...
unsubscribe_mailto = "unsubscribe@lac.example.org"
base_url = "http://127.0.0.1:8080"           # public address of `newsletter serve`
timezone = "America/Port_of_Spain"
smtp_url = "maildir://outbox"                # or smtp://user:pass@host:587, smtps://host:465
secret_key = "{secret}"
# log_file = "scheduler.log"

[sending]
connections = 4
rate_per_second = 0        # 0 = no limit
rate_per_hour = 0
max_attempts = 6
retry_base_seconds = 60
# retry_max_seconds = 21600
# batch_size = 500
# processes = 0            # sender processes for big sends; 0 = one per core
# starttls = "auto"        # auto | always | never

[dkim]                     # sign every message (covers List-Unsubscribe and List-Unsubscribe-Post)
domain = ""                # e.g. "lac.example.org"; leave empty to send unsigned
selector = ""              # the DNS TXT record is <selector>._domainkey.<domain>
# private_key_file = "dkim.pem"

[bounces]
mailbox = ""               # maildir:///var/mail/bounces or imap://user:pass@host/INBOX
soft_threshold = 3
soft_window_days = 30
# review_folder = "review"   # reports that matched nobody; `newsletter bounces unmatched`
# match_plain_address = true

[web]
host = "127.0.0.1"
port = 8080
preview_password = ""      # needed to open /preview from anywhere but localhost
staff_addresses = []
# staff_password = "..."   # written by `newsletter staff set-password` (a hash); staff pages then need a login
trusted_proxies = []       # e.g. ["127.0.0.1"] behind nginx/Caddy on this machine: see docs/deploy.md
threads = 8                # worker threads of `newsletter serve`

[digest]
rules = ["first tuesday of each month at 09:00 America/Port_of_Spain"]
articles_dir = "articles"
segment = "status:active"
# template = "digest"

[webhooks]                 # bounce and complaint events from an email service (POST /hooks/<provider>)
# ses_topic_arns = ["arn:aws:sns:us-east-1:123456789012:ses-events"]
# postmark_user = ""
# postmark_password = ""   # better: $NEWSLETTER_POSTMARK_PASSWORD
# sendgrid_public_key = "" # better: $NEWSLETTER_SENDGRID_PUBLIC_KEY
# mailgun_signing_key = "" # better: $NEWSLETTER_MAILGUN_SIGNING_KEY
# max_age_seconds = 900
"""


def set_setting(path: Path, section: str, key: str, value: str) -> None:
    """Write `key = "value"` into [section] of the config file, replacing the key if it is there (comments and
    the rest of the file are kept). The file is replaced whole, so a crash leaves the old or the new one."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    line = f"{key} = {json.dumps(value)}\n"  # a JSON string is a valid TOML basic string
    header = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current, start, end, done = None, None, len(lines), False
    for number, text in enumerate(lines):
        found = header.match(text)
        if found:
            if current == section:
                end = number
                break
            current = found.group(1)
            if current == section:
                start = number
        elif current == section and assignment.match(text):
            lines[number] = line
            done = True
    if not done:
        if start is None:
            lines += ["\n" if lines and not lines[-1].endswith("\n\n") else "", f"[{section}]\n", line]
        else:
            while end > start + 1 and not lines[end - 1].strip():
                end -= 1
            lines.insert(end, line)
    text = "".join(lines)
    tomllib.loads(text)  # never write a file that no longer reads
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.chmod(path.stat().st_mode & 0o777)
    temporary.replace(path)


def write_example_config(path: Path) -> None:
    if path.exists():
        raise ConfigError(f"{path} already exists; remove it or pass another --config path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE_CONFIG.format(secret=secrets.token_urlsafe(32)), encoding="utf-8")
    path.chmod(0o600)
