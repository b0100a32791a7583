"""A real `newsletter serve` for tests: the Flask app on a loopback socket, plain HTTP helpers, and a form reader.

    with LiveSite.start(tmp_path) as site:
        ana = site.add_subscriber("ana@example.org", language="es")
        page = site.get(site.preferences_path(ana["id"]))
        form = page.form("preferences")
        site.post(form.action, form.values(interests=["security"]))
"""

from __future__ import annotations

import http.client
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import sqlite_utils
from werkzeug.serving import make_server

from newsletter.clock import FakeClock
from newsletter.config import Config
from newsletter.db import connect
from newsletter.signing import PREFERENCES, UNSUBSCRIBE, Signer
from newsletter.subscribers import add, get_by_id
from newsletter.web import create_app
from newsletter.web.state import EXTENSION_KEY

REPO = Path(__file__).resolve().parents[1]
SECRET = "web-tests-" + "k" * 32
START = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def make_config(tmp_path: Path, **settings) -> Config:
    defaults = {
        "database": tmp_path / "newsletter.db",
        "campaigns_dir": REPO / "campaigns",
        "templates_dir": REPO / "templates",
        "secret_key": SECRET,
        "smtp_url": f"maildir://{tmp_path / 'outbox'}",
        "unsubscribe_mailto": "unsubscribe@lac.example.org",
        "bounce_address": "bounces@lac.example.org",
    }
    return Config(**{**defaults, **settings})


@dataclass
class Page:
    status: int
    headers: Message
    text: str

    def form(self, form_id: str) -> "Form":
        forms = read_forms(self.text)
        if form_id not in forms:
            raise AssertionError(f"no form with id {form_id!r} on the page; forms: {sorted(forms)}")
        return forms[form_id]


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)  # what a browser would submit untouched
    choices: dict[str, list[str]] = field(default_factory=dict)  # every value offered per name

    def values(self, **changes) -> list[tuple[str, str]]:
        """The submission with some fields replaced (a list value for checkboxes, None to leave a field out)."""
        kept = [(name, value) for name, value in self.fields if name not in changes]
        for name, value in changes.items():
            if value is None:
                continue
            kept += [(name, item) for item in value] if isinstance(value, list) else [(name, str(value))]
        return kept


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: dict[str, Form] = {}
        self._form: Form | None = None
        self._select: str | None = None
        self._unnamed = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._unnamed += 1
            self._form = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.forms[attributes.get("id") or f"form{self._unnamed}"] = self._form
        elif self._form is None:
            return
        elif tag == "input" and attributes.get("name"):
            name, value, kind = attributes["name"], attributes.get("value", ""), attributes.get("type", "text")
            self._form.choices.setdefault(name, []).append(value)
            if kind not in ("checkbox", "radio") or "checked" in attributes:
                self._form.fields.append((name, value))
        elif tag == "select":
            self._select = attributes.get("name")
        elif tag == "option" and self._select:
            self._form.choices.setdefault(self._select, []).append(attributes.get("value", ""))
            if "selected" in attributes:
                self._form.fields.append((self._select, attributes.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def read_forms(html: str) -> dict[str, Form]:
    reader = _FormReader()
    reader.feed(html)
    return reader.forms


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None) -> Page:
    """One HTTP exchange on a fresh connection; redirects are returned, not followed."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                           headers=headers or {})
        response = connection.getresponse()
        return Page(response.status, response.headers, response.read().decode("utf-8"))
    finally:
        connection.close()


def multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body, as a mailbox provider's one-click POST may send it."""
    boundary = "----newsletter" + secrets.token_hex(8)
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class LiveSite:
    """The application on 127.0.0.1:<free port> in a thread, on a FakeClock, with its own database."""

    def __init__(self, config: Config, clock: FakeClock) -> None:
        self.config = config
        self.clock = clock
        self.app = create_app(config, clock=clock)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        config.base_url = self.url  # links in mails point at this server
        self.signer = Signer(config.secret_key)
        self.db: sqlite_utils.Database = connect(config.database)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="web-test-server", daemon=True)

    @classmethod
    def start(cls, tmp_path: Path, **settings) -> "LiveSite":
        return cls(make_config(tmp_path, **settings), FakeClock(START))

    def __enter__(self) -> "LiveSite":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
        self.db.conn.close()

    # -- data -------------------------------------------------------------------------------------

    def add_subscriber(self, email: str, **fields) -> dict:
        return add(self.db, email, clock=self.clock, **fields)

    def mark_sent(self, slug: str) -> None:
        """Record one sent delivery of the campaign: the archive shows only issues that went out."""
        person = self.add_subscriber(f"archive-reader-{len(slug)}-{abs(hash(slug)) % 10**8}@example.org")
        stamp = "2026-11-23T12:00:00Z"
        self.db.execute("INSERT OR IGNORE INTO deliveries (campaign, subscriber_id, email, status, created_at, "
                        "updated_at, sent_at) VALUES (?, ?, ?, 'sent', ?, ?, ?)",
                        [slug, person["id"], person["email"], stamp, stamp, stamp])

    def subscriber(self, subscriber_id: int) -> dict:
        return get_by_id(self.db, subscriber_id)

    def preferences_path(self, subscriber_id: int) -> str:
        return f"/p/{self.signer.sign(subscriber_id, PREFERENCES)}"

    def unsubscribe_path(self, subscriber_id: int) -> str:
        return f"/u/{self.signer.sign(subscriber_id, UNSUBSCRIBE)}"

    # -- HTTP -------------------------------------------------------------------------------------

    def absolute(self, path: str) -> str:
        return path if path.startswith("http") else self.url + path

    def get(self, path: str, **headers: str) -> Page:
        return request(self.absolute(path), headers={k.replace("_", "-"): v for k, v in headers.items()})

    def post(self, path: str, fields: list[tuple[str, str]] | dict, **headers: str) -> Page:
        """POST a form, then wait for the mail work the page left to the background (opt-in mails)."""
        body = urlencode(fields).encode()
        sent = {"Content-Type": "application/x-www-form-urlencoded",
                **{k.replace("_", "-"): v for k, v in headers.items()}}
        page = request(self.absolute(path), "POST", body, sent)
        self.drain()
        return page

    def drain(self) -> None:
        self.app.extensions[EXTENSION_KEY].background.drain()

    def post_multipart(self, path: str, fields: list[tuple[str, str]]) -> Page:
        body, content_type = multipart(fields)
        return request(self.absolute(path), "POST", body, {"Content-Type": content_type})
