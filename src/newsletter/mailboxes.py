"""Fetch returned mail from wherever the bounce address delivers it: a Maildir, IMAP or POP3.

iter_mailbox() yields each message with a function that takes it away once it has been handled,
so a crash half-way leaves the unhandled messages in place for the next run. Called with a folder
name, that function files the message there instead, for a person to look at (a review folder).

- maildir:///path: reads new/ and cur/; handled messages are moved (one atomic rename) into the
  Maildir++ sub-folder ``.processed`` of the same maildir, flagged Seen, so they can be inspected
  later and are never read twice. Empty that folder with any mail tool. A named folder is the
  Maildir++ sub-folder ``.<name>``.
- imap://user:pass@host[:port]/FOLDER and imaps://: handled messages are flagged \\Deleted and
  expunged at once; a named folder is created if needed and the message copied there first. The
  folder defaults to INBOX; messages are read with BODY.PEEK so the ones we fail on stay unread.
- pop3://user:pass@host[:port] and pop3s://: handled messages are marked for deletion, which POP3
  carries out when the session ends normally (after the last message was yielded, or when the
  caller closes the iterator). POP3 has no folders: a message meant for one stays in the mailbox.
User, password and folder are percent-decoded, so write "@" in a user name as %40.
"""

from __future__ import annotations

import imaplib
import os
import poplib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol
from urllib.parse import unquote, urlsplit


class Remover(Protocol):
    def __call__(self, folder: str = "") -> None:
        """Take the message away: filed as processed, or into `folder` when one is named."""


MailboxItem = tuple[str, bytes, Remover]

_DEFAULT_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
_PROCESSED_FOLDER = ".processed"
_EXAMPLES = (
    "maildir:///var/mail/bounces, imaps://user:pass@mail.example.org/INBOX "
    "or pop3s://user:pass@mail.example.org"
)


@dataclass(frozen=True)
class MailboxURL:
    """A parsed mailbox URL; for maildir only `path` is set."""

    scheme: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    folder: str = ""
    path: str = ""

    def __repr__(self) -> str:  # keeps the password out of logs and tracebacks
        where = self.path or f"{self.user}@{self.host}:{self.port}/{self.folder}"
        return f"MailboxURL({self.scheme}: {where})"


def parse_mailbox_url(url: str) -> MailboxURL:
    """Split a mailbox URL into its parts; errors say which part is wrong (never the password)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    shown = _without_password(url)
    if scheme == "maildir":
        if parts.netloc:
            raise ValueError(
                f"mailbox URL {shown!r}: a maildir URL has no host; write maildir:///absolute/path "
                "(three slashes) or maildir:relative/path"
            )
        if not parts.path:
            raise ValueError(
                f"mailbox URL {shown!r}: the maildir path is empty; e.g. maildir:///var/mail/bounces"
            )
        return MailboxURL(scheme, path=unquote(parts.path))
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"mailbox URL {shown!r}: scheme {scheme or '(none)'!r} is not one of maildir, "
            f"imap, imaps, pop3, pop3s; write e.g. {_EXAMPLES}"
        )
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(
            f"mailbox URL {shown!r}: the port is not a number between 0 and 65535"
        ) from None
    if not parts.hostname:
        raise ValueError(
            f"mailbox URL {shown!r}: the host is missing; e.g. {scheme}://user:pass@mail.example.org"
        )
    if not parts.username or parts.password is None:
        raise ValueError(
            f"mailbox URL {shown!r}: user and password are missing; "
            f"write {scheme}://user:pass@{parts.hostname}"
        )
    folder = unquote(parts.path.lstrip("/"))
    if scheme.startswith("pop3") and folder:
        raise ValueError(f"mailbox URL {shown!r}: POP3 has no folders; drop {parts.path!r}")
    return MailboxURL(
        scheme,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=unquote(parts.password),
        folder=folder or ("INBOX" if scheme.startswith("imap") else ""),
    )


def iter_mailbox(url: str) -> Iterator[MailboxItem]:
    """Yield (key, raw bytes, remove) for each waiting message; call remove() once it is handled."""
    location = parse_mailbox_url(url)
    if location.scheme == "maildir":
        return _iter_maildir(Path(location.path))
    if location.scheme.startswith("imap"):
        return _iter_imap(location)
    return _iter_pop3(location)


def _iter_maildir(root: Path) -> Iterator[MailboxItem]:
    for sub in ("new", "cur"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(
                f"maildir {root}: folder {sub}/ is missing; point the bounce mailbox at a maildir "
                "(a folder holding new/, cur/ and tmp/)"
            )
    names = sorted(
        (entry.name, entry)
        for sub in ("new", "cur")
        for entry in (root / sub).iterdir()
        if not entry.name.startswith(".") and entry.is_file()
    )
    for name, source in names:
        try:
            raw = source.read_bytes()
        except FileNotFoundError:  # another reader handled it since we listed the folder
            continue
        yield name.partition(":")[0], raw, _mover(root, source)


def maildir_folder(root: Path, folder: str) -> Path:
    """The Maildir++ sub-folder of that name (".processed" for "processed")."""
    if not folder or "/" in folder or folder in (".", ".."):
        raise ValueError(f"folder name {folder!r}: use a plain name such as review")
    return root / ("." + folder.lstrip("."))


def _mover(root: Path, source: Path) -> Remover:
    def move(folder: str = "") -> None:
        target = maildir_folder(root, folder) if folder else root / _PROCESSED_FOLDER
        for sub in ("new", "cur", "tmp"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        (target / "maildirfolder").touch()
        unique, _, info = source.name.partition(":")
        flags = info.partition(",")[2] if info.startswith("2,") else ""
        seen_flags = "".join(sorted(set(flags) | {"S"})) if not folder else flags
        os.replace(source, target / "cur" / f"{unique}:2,{seen_flags}")

    return move


def _iter_imap(location: MailboxURL) -> Iterator[MailboxItem]:
    client_class = imaplib.IMAP4_SSL if location.scheme == "imaps" else imaplib.IMAP4
    client = client_class(location.host, location.port)
    try:
        client.login(location.user, location.password)
        status, _ = client.select(_imap_quote(location.folder))
        if status != "OK":
            raise ValueError(
                f"IMAP folder {location.folder!r} on {location.host} cannot be opened; "
                "check the folder name at the end of the bounce mailbox URL"
            )
        _, found = client.uid("SEARCH", "ALL")
        for uid in (found[0] or b"").split():
            _, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if raw is None:  # expunged by someone else meanwhile
                continue
            yield uid.decode(), raw, _imap_deleter(client, uid)
    finally:
        _quietly(client.logout)


def file_reviewed(url: str, folder: str, key: str) -> bool:
    """File a message that waited in a Maildir review folder as processed, once it has been handled.
    Other mailboxes keep their review copy (a person deletes it); False when nothing was moved."""
    location = parse_mailbox_url(url)
    if location.scheme != "maildir":
        return False
    root = Path(location.path)
    review = maildir_folder(root, folder)
    for sub in ("cur", "new"):
        if not (review / sub).is_dir():
            continue
        for entry in (review / sub).iterdir():
            if entry.name.partition(":")[0] == key:
                _mover(root, entry)()
                return True
    return False


def _imap_deleter(client: imaplib.IMAP4, uid: bytes) -> Remover:
    def delete(folder: str = "") -> None:
        if folder:
            client.create(_imap_quote(folder))  # answers NO when it exists, which is fine
            status, _ = client.uid("COPY", uid, _imap_quote(folder))
            if status != "OK":
                raise ValueError(f"IMAP folder {folder!r} cannot take the message; check [bounces] review_folder")
        client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        client.expunge()

    return delete


def _imap_quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _iter_pop3(location: MailboxURL) -> Iterator[MailboxItem]:
    client_class = poplib.POP3_SSL if location.scheme == "pop3s" else poplib.POP3
    client = client_class(location.host, location.port)
    try:
        client.user(location.user)
        client.pass_(location.password)
        _, listing, _ = client.uidl()
        for line in listing:
            number, _, unique = line.decode().partition(" ")
            _, lines, _ = client.retr(int(number))
            raw = b"\r\n".join(lines) + b"\r\n"
            yield unique or number, raw, _pop3_deleter(client, int(number))
    except GeneratorExit:  # the caller stopped early: still commit what it removed
        _quietly(client.quit)
        raise
    except BaseException:
        # Without QUIT, POP3 rolls the deletions back and keeps every message for the next run.
        _quietly(client.close)
        raise
    _quietly(client.quit)  # QUIT is what carries out the deletions


def _pop3_deleter(client: poplib.POP3, number: int) -> Remover:
    def delete(folder: str = "") -> None:
        if not folder:  # no folders in POP3: a message meant for one stays where it is
            client.dele(number)

    return delete


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except (OSError, imaplib.IMAP4.error, poplib.error_proto):
        pass  # the connection is already gone; nothing left to tidy


def _without_password(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.password is None:
        return url.strip()
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()
