"""Settings from newsletter.toml, with secrets and paths overridable by environment variables.

The file is found at --config, else $NEWSLETTER_CONFIG, else ./newsletter.toml. Relative paths in it
are relative to the file's own folder, so a config works from any working directory.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CONFIG_ENV = "NEWSLETTER_CONFIG"
SECRET_ENV = "NEWSLETTER_SECRET_KEY"
SMTP_ENV = "NEWSLETTER_SMTP_URL"
DEFAULT_CONFIG_NAME = "newsletter.toml"


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and how to fix it."""


@dataclass
class SendingSettings:
    connections: int = 4
    rate_per_second: float = 0.0  # 0 means no limit
    rate_per_hour: float = 0.0
    max_attempts: int = 6
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 6 * 3600.0
    batch_size: int = 500
    starttls: str = "auto"  # auto | always | never


@dataclass
class DkimSettings:
    domain: str = ""
    selector: str = ""
    private_key_file: Path | None = None


@dataclass
class BounceSettings:
    mailbox: str = ""  # maildir:///path, imap://user:pass@host/INBOX, pop3://...
    soft_threshold: int = 3
    soft_window_days: int = 30


@dataclass
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    preview_password: str = ""
    staff_addresses: list[str] = field(default_factory=list)


@dataclass
class DigestSettings:
    rules: list[str] = field(default_factory=list)
    articles_dir: Path | None = None
    segment: str = "status:active"
    template: str = "digest"


@dataclass
class Config:
    path: Path | None = None
    database: Path = Path("newsletter.db")
    campaigns_dir: Path = Path("campaigns")
    templates_dir: Path = Path("templates")
    list_name: str = "LAC Internet Digest"  # in newsletter.toml also a table per language; this is English
    list_names: dict[str, str] = field(default_factory=dict)  # list_name per language, from that table
    list_id: str = "digest.lac.example.org"
    sender_name: str = "LAC Bureau"
    sender_address: str = "news@lac.example.org"
    reply_to: str = ""
    bounce_address: str = ""  # bounces@domain; VERP inserts +token before the @
    unsubscribe_mailto: str = ""  # unsubscribe@domain for List-Unsubscribe mailto
    base_url: str = "http://127.0.0.1:8080"
    postal_address: str = ""  # the bureau's postal address, in every issue's footer (CAN-SPAM and providers ask)
    logo: Path | None = None  # a PNG, GIF or JPEG shown in every issue's header
    timezone: str = "UTC"
    smtp_url: str = "maildir://outbox"
    secret_key: str = ""
    log_file: Path | None = None
    sending: SendingSettings = field(default_factory=SendingSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    bounces: BounceSettings = field(default_factory=BounceSettings)
    web: WebSettings = field(default_factory=WebSettings)
    digest: DigestSettings = field(default_factory=DigestSettings)

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


_SECTIONS = {
    "sending": SendingSettings,
    "dkim": DkimSettings,
    "bounces": BounceSettings,
    "web": WebSettings,
    "digest": DigestSettings,
}
_NOT_SETTINGS = {"path", "list_names", *_SECTIONS}  # filled in by load_config, not written in a [newsletter] table
_PATH_FIELDS = {"database", "campaigns_dir", "templates_dir", "log_file", "private_key_file", "articles_dir", "logo"}


def _build(cls, values: dict, base: Path, where: str):
    known = {f.name: f for f in cls.__dataclass_fields__.values() if f.name not in _NOT_SETTINGS}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        if key in _PATH_FIELDS and value:
            value = (base / Path(value).expanduser()).resolve()
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
    """Read the config file (if there is one) and apply the environment over it."""
    environ = os.environ if environ is None else environ
    explicit = path or environ.get(CONFIG_ENV)
    config_path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_NAME)
    data: dict = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
    elif explicit:
        raise ConfigError(f"config file {config_path} does not exist; `newsletter init` writes one")
    base = config_path.resolve().parent
    top = dict(data.get("newsletter", {}))
    list_names = _list_names(top, f"{config_path} [newsletter]")
    sections = {name: data.get(name, {}) for name in _SECTIONS}
    unknown = set(data) - set(_SECTIONS) - {"newsletter"}
    if unknown:
        raise ConfigError(f"{config_path}: unknown section(s) {', '.join(sorted(unknown))}")
    config = _build(Config, top, base, f"{config_path} [newsletter]")
    config.list_names = list_names
    for name, cls in _SECTIONS.items():
        setattr(config, name, _build(cls, sections[name], base, f"{config_path} [{name}]"))
    config.path = config_path.resolve() if config_path.exists() else None
    if not top.get("database"):
        config.database = (base / "newsletter.db").resolve()
    for name in ("campaigns_dir", "templates_dir"):
        if not top.get(name):
            setattr(config, name, (base / getattr(config, name)).resolve())
    if config.smtp_url.startswith("maildir://") and not config.smtp_url.startswith("maildir:///"):
        config.smtp_url = "maildir://" + str((base / config.smtp_url[len("maildir://"):]).resolve())
    config.secret_key = environ.get(SECRET_ENV) or config.secret_key
    config.smtp_url = environ.get(SMTP_ENV) or config.smtp_url
    return config


EXAMPLE_CONFIG = """\
# newsletter configuration. Paths are relative to this file.
# Secrets: prefer the environment (NEWSLETTER_SECRET_KEY, NEWSLETTER_SMTP_URL) in production.

[newsletter]
database = "newsletter.db"
campaigns_dir = "campaigns"
templates_dir = "templates"
list_id = "digest.lac.example.org"          # List-Id header
# The bureau's postal address, shown in every issue's footer. CAN-SPAM and most mail providers require one:
# `newsletter send` warns while it is empty. Several lines: use \\n, e.g. "Av. Example 123\\nMontevideo, Uruguay".
postal_address = ""
# logo = "logo.png"                          # PNG, GIF or JPEG shown in every issue's header (served by `serve`)
sender_name = "LAC Regional Bureau"
sender_address = "news@lac.example.org"
bounce_address = "bounces@lac.example.org"   # VERP return path: bounces+<token>@...
unsubscribe_mailto = "unsubscribe@lac.example.org"
base_url = "http://127.0.0.1:8080"           # public address of `newsletter serve`
timezone = "America/Port_of_Spain"
smtp_url = "maildir://outbox"                # or smtp://user:pass@host:587, smtps://host:465
secret_key = "{secret}"

# The list's name per language (or list_name = "..." above, one name for all): header, footer, List-Id.
[newsletter.list_name]
en = "LAC Internet Digest"
es = "Boletín de Internet de ALC"
pt = "Boletim de Internet da ALC"
fr = "Lettre Internet ALC"

[sending]
connections = 4
rate_per_second = 0        # 0 = no limit
rate_per_hour = 0
max_attempts = 6
retry_base_seconds = 60

[dkim]                     # sign every message (covers List-Unsubscribe and List-Unsubscribe-Post)
domain = ""                # e.g. "lac.example.org"; leave empty to send unsigned
selector = ""              # the DNS TXT record is <selector>._domainkey.<domain>
# private_key_file = "dkim.pem"

[bounces]
mailbox = ""               # maildir:///var/mail/bounces or imap://user:pass@host/INBOX
soft_threshold = 3
soft_window_days = 30

[web]
host = "127.0.0.1"
port = 8080
preview_password = ""      # needed to open /preview from anywhere but localhost
staff_addresses = []

[digest]
rules = ["first tuesday of each month at 09:00 America/Port_of_Spain"]
articles_dir = "articles"
segment = "status:active"
"""


def write_example_config(path: Path) -> None:
    if path.exists():
        raise ConfigError(f"{path} already exists; remove it or pass another --config path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXAMPLE_CONFIG.format(secret=secrets.token_urlsafe(32)), encoding="utf-8")
    path.chmod(0o600)
