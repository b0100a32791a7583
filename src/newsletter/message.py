"""Assemble the MIME bytes of one personalised message, on a fast path.

email.message.EmailMessage costs about a millisecond per message. Here the skeleton (fixed headers, MIME
boundaries, the quoted-printable encoding of every fixed stretch of both parts) is built once per variant;
per recipient only the slot values are encoded and the pieces joined. Output: CRLF line endings, no line
over 76 octets in the bodies, every header free of CR/LF, so nothing a subscriber typed can add a header,
and no line that starts with a dot, so the bytes go into SMTP's DATA as they are (smtpwire.SMTPReady).
"""

from __future__ import annotations

import binascii
import random
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from html import escape
from pathlib import Path


from .config import Config
from .render import PLACEHOLDER, RenderedVariant, greeting
from .signing import PREFERENCES, UNSUBSCRIBE, Signer
from .smtpwire import SMTPReady

CRLF = b"\r\n"
DKIM_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"list-id", b"list-unsubscribe",
                b"list-unsubscribe-post", b"mime-version", b"content-type"]


_UNSAFE = re.compile("[\x00-\x1f\x7f\u0085\u2028\u2029]")
# Short printable ASCII without "=", not starting with a dot nor ending in a space: its own QP encoding.
_QP_AS_IS = re.compile(r"(?![.])[!-<>-~ ]{0,75}(?<! )")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/=?^_`{|}~.-]*")


def header_safe(value: str) -> str:
    """One line, whatever came in: CR, LF and other controls become spaces."""
    return _UNSAFE.sub(" ", value).strip()


def encode_header(name: str, value: str) -> bytes:
    """`Name: value` CRLF, RFC 2047-encoded and folded when it is not plain short ASCII."""
    value = header_safe(value)
    if value.isascii() and len(name) + len(value) < 76:
        return f"{name}: {value}\r\n".encode("ascii")
    encoded = Header(value, "utf-8" if not value.isascii() else "us-ascii", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def address_header(name: str, display: str, address: str) -> bytes:
    display, address = header_safe(display), header_safe(address)
    if address.isascii() and _PLAIN_NAME.fullmatch(display):  # the common case, without email.utils' parser
        return (f'{name}: "{display}" <{address}>\r\n' if display else f"{name}: {address}\r\n").encode("ascii")
    return f"{name}: {formataddr((display, address), charset='utf-8')}\r\n".encode("utf-8")


def qp(data: str) -> bytes:
    """Quoted-printable with CRLF line breaks (input may use LF or CRLF), no line starting with a dot."""
    if _QP_AS_IS.fullmatch(data):  # a link, an address, an ASCII greeting: nothing to encode (per message)
        return data.encode("ascii")
    raw = data.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(raw, istext=True)
    if encoded[:1] == b"." or b"\n." in encoded:
        encoded = _encode_leading_dots(encoded)
    return encoded.replace(b"\n", CRLF)


def _encode_leading_dots(encoded: bytes) -> bytes:
    """Write a dot that starts a line as =2E (any octet may be, RFC 2045 6.7), so that SMTP never has to
    dot-stuff the message; a line that would grow past 76 octets gets a soft break after the =2E."""
    lines = []
    for line in encoded.split(b"\n"):
        while line[:1] == b".":
            if len(line) <= 74:
                line = b"=2E" + line[1:]
            else:
                lines.append(b"=2E=")
                line = line[1:]
        lines.append(line)
    return b"\n".join(lines)


def _compile_body(template: str) -> list[bytes | str]:
    """Encoded fixed stretches (bytes) alternating with slot names (str), each stretch ending a line."""
    pieces: list[bytes | str] = []
    for index, part in enumerate(PLACEHOLDER.split(template)):
        if index % 2:
            pieces.append(part)
        elif part:
            encoded = qp(part)
            pieces.append(encoded if encoded.endswith(CRLF) else encoded + b"=\r\n")
    return pieces


@dataclass
class MessageTemplate:
    """The per-variant skeleton."""

    head: bytes  # headers common to every recipient, ending before the blank line
    text_open: bytes
    html_open: bytes
    close: bytes
    text_pieces: list[bytes | str]
    html_pieces: list[bytes | str]


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_key: bytes

    @classmethod
    def from_file(cls, domain: str, selector: str, path: Path) -> "DkimKey":
        return cls(domain, selector, Path(path).read_bytes())


class MessageFactory:
    """Builds complete messages for the recipients of one campaign."""

    def __init__(self, config: Config, signer: Signer, dkim_key: DkimKey | None = None) -> None:
        self.config = config
        self.signer = signer
        self.dkim_key = dkim_key
        # keyed by id(); the variant is kept in the value so that its id cannot be reused meanwhile
        self._templates: dict[int, tuple[RenderedVariant, MessageTemplate]] = {}
        # Both come from the config and go into headers: made single-line once, here.
        self._base = header_safe(config.base_url).rstrip("/")
        self._mailto = header_safe(config.unsubscribe_mailto)
        self._date_cache: tuple[int, bytes] = (-1, b"")  # one tuple, replaced whole: safe across threads

    def links(self, subscriber_id: int) -> dict[str, str]:
        """Signed links for one subscriber: the unsubscribe token also goes into the mailto subject."""
        unsubscribe = self.signer.sign(subscriber_id, UNSUBSCRIBE)
        return {
            "unsubscribe_token": unsubscribe,
            "unsubscribe_url": f"{self._base}/u/{unsubscribe}",
            "preferences_url": f"{self._base}/p/{self.signer.sign(subscriber_id, PREFERENCES)}",
        }

    def template(self, variant: RenderedVariant) -> MessageTemplate:
        cached = self._templates.get(id(variant))
        if cached is None:
            cached = self._templates[id(variant)] = (variant, self._compile(variant))
        return cached[1]

    def _compile(self, variant: RenderedVariant) -> MessageTemplate:
        campaign, config = variant.campaign, self.config
        boundary = "=_nl_" + secrets.token_hex(12)
        head = b"".join([
            address_header("From", campaign.sender_name or config.sender_name,
                           campaign.sender_address or config.sender_address),
            encode_header("Reply-To", config.reply_to) if config.reply_to else b"",
            encode_header("Subject", variant.subject),
            b"MIME-Version: 1.0\r\n",
            encode_header("List-Id", f"{config.list_name} <{config.list_id}>"),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
            encode_header("Feedback-ID", f"{campaign.slug}:{variant.lang}:{config.list_id}"),
            f'Content-Language: {variant.lang}\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n'
            .encode("ascii"),
        ])
        part = 'Content-Type: text/{kind}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        return MessageTemplate(
            head=head,
            text_open=f"\r\n--{boundary}\r\n{part.format(kind='plain')}".encode("ascii"),
            html_open=f"\r\n--{boundary}\r\n{part.format(kind='html')}".encode("ascii"),
            close=f"\r\n--{boundary}--\r\n".encode("ascii"),
            text_pieces=_compile_body(variant.text),
            html_pieces=_compile_body(variant.html),
        )

    def _date(self, now: datetime) -> bytes:
        second = int(now.timestamp())
        cached_second, header = self._date_cache
        if second != cached_second:
            header = f"Date: {format_datetime(now)}\r\n".encode("ascii")
            self._date_cache = (second, header)
        return header

    def build(self, variant: RenderedVariant, subscriber: dict, *, message_id: str, now: datetime) -> SMTPReady:
        """The complete message for one subscriber (a dict with id, email, name)."""
        template = self.template(variant)
        links = self.links(subscriber["id"])
        text_values = {
            "greeting": greeting(variant.lang, subscriber["name"]),
            "email": subscriber["email"],
            "preferences_url": links["preferences_url"],
            "unsubscribe_url": links["unsubscribe_url"],
        }
        encoded_text, encoded_html = {}, {}
        for slot, value in text_values.items():
            encoded_text[slot] = text = qp(value) + b"=\r\n"
            escaped = escape(value)  # links and most addresses have nothing to escape: the same bytes
            encoded_html[slot] = text if escaped == value else qp(escaped) + b"=\r\n"
        unsubscribe = f"List-Unsubscribe: <{links['unsubscribe_url']}>"
        if self._mailto:
            # the token is URL-safe base64 and dots: only the space needs quoting
            unsubscribe += f",\r\n <mailto:{self._mailto}?subject=unsubscribe%20{links['unsubscribe_token']}>"
        message = b"".join([
            address_header("To", subscriber["name"], subscriber["email"]),
            self._date(now),
            f"Message-ID: {header_safe(message_id)}\r\n".encode("ascii"),
            f"{unsubscribe}\r\n".encode("ascii"),
            template.head,
            template.text_open,
            *[piece if isinstance(piece, bytes) else encoded_text[piece] for piece in template.text_pieces],
            template.html_open,
            *[piece if isinstance(piece, bytes) else encoded_html[piece] for piece in template.html_pieces],
            template.close,
        ])
        if self.dkim_key is not None:
            message = self._dkim_sign(message)
        return SMTPReady(message)

    def _dkim_sign(self, message: bytes) -> bytes:
        import dkim  # 24 MB with its dependencies: imported only when DKIM is configured

        key = self.dkim_key
        signature = dkim.sign(message, key.selector.encode(), key.domain.encode(), key.private_key,
                              include_headers=DKIM_HEADERS * 2, linesep=CRLF)  # twice: no copy can be added
        return signature + message


_unique = random.Random(secrets.randbits(128))  # the id's random part needs to be unique, not secret


def new_message_id(campaign_slug: str, delivery_id: int, domain: str) -> str:
    """Unique per delivery, and readable: which campaign and delivery row it came from."""
    return f"<{header_safe(campaign_slug)}.{delivery_id}.{_unique.getrandbits(48):012x}@{header_safe(domain)}>"
