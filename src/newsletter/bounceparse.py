"""Read one returned message and say what happened: hard or soft bounce, complaint, auto-reply.

Evidence is tried from the most to the least trustworthy: an ARF feedback report (RFC 5965), an
RFC 3464 delivery-status report, auto-reply markers, then the prose of non-standard bounces, where
flufl.bounce's detectors find the recipients and our phrase table guesses a status. The delivery id
always comes from the signed VERP address the bounce was sent to, so it survives whatever the
remote server did to the returned headers.

Returned mail is hostile input: analyse() never raises on it, it answers kind "unknown" instead.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Iterator

from flufl.bounce import all_failures

from newsletter.verp import parse_verp, verp_address

HARD = "hard"
SOFT = "soft"
COMPLAINT = "complaint"
AUTOREPLY = "autoreply"
UNKNOWN = "unknown"


@dataclass
class BounceReport:
    """What one returned message says.

    kind: hard | soft | complaint | autoreply | unknown. status: an RFC 3463 code such as "5.1.1"
    for bounces, "" otherwise. source: the evidence that decided the kind (arf, dsn, auto-reply,
    flufl.bounce, prose, none, error).
    """

    kind: str
    delivery_id: int | None
    recipients: list[str] = field(default_factory=list)
    status: str = ""
    diagnostic: str = ""
    source: str = "none"


def analyse(message: bytes, *, bounce_address: str, secret: str) -> BounceReport:
    """Classify a returned message; a bad bounce address or secret is a config error and raises."""
    verp_address(bounce_address, 0, secret)  # validates both before we trust them below
    try:
        parsed = email.message_from_bytes(message)
        return _Analysis(parsed, bounce_address, secret).report()
    except Exception as error:  # garbage in, "unknown" out: one bad message must not stop a run
        return BounceReport(UNKNOWN, None, [], "", f"unreadable message: {error!r}", "error")


# Enhanced status codes (RFC 3463) of failures; the lookarounds keep IP addresses and dates out.
_ENHANCED_CODE = re.compile(r"(?<![\w.])([45])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# A basic SMTP reply code where servers quote it: line start, "said:", "smtp;".
_REPLY_CODE = re.compile(r"(?:^|[:;])\s*([45])[0-5]\d[ -]", re.MULTILINE)
_PERMANENT_WORDS = re.compile(
    r"permanent (?:error|failure)|fatal error|i've given up|giving up|has been rejected", re.I
)
_TEMPORARY_WORDS = re.compile(
    r"temporar(?:y|ily)|will (?:be )?retr(?:y|ied)|still trying|not yet been delivered|delayed",
    re.I,
)
# Phrases and the status they mean when the server gave no code; the class digit is a default.
_STATUS_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"user unknown|unknown (?:user|recipient|local.part)|no such (?:user|mailbox|recipient)"
            r"|does ?n[o']t exist|recipient not found|address rejected"
            r"|invalid (?:recipient|mailbox)"
            r"|mailbox unavailable|not a valid mailbox|account .{0,20}(?:disabled|deleted)",
            re.I,
        ),
        "5.1.1",
    ),
    (
        re.compile(
            r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the |its )?storage"
            r"|insufficient (?:system )?storage|mailbox size limit",
            re.I,
        ),
        "4.2.2",
    ),
    (
        re.compile(r"unrouteable|host not found|domain not found|no such domain|mx lookup", re.I),
        "5.1.2",
    ),
    (
        re.compile(
            r"retry timeout exceeded|delivery time expired|message expired"
            r"|too long in (?:the )?queue",
            re.I,
        ),
        "4.4.7",
    ),
    (re.compile(r"message (?:is )?too (?:large|big)|size exceeds", re.I), "5.3.4"),
    (re.compile(r"blocked|blacklist|blocklist|spam|rejected for policy", re.I), "5.7.1"),
]
# The line where a prose bounce starts quoting our message: words past it are ours, not theirs.
_QUOTE_START = re.compile(
    r"^\s*-{2,}.*(?:copy of|original message|returned message|below this line)"
    r"|^\s*original message follows",
    re.I | re.MULTILINE,
)
# The lookbehind anchors each try at the start of a word, which keeps long runs linear.
_ADDRESS = re.compile(r"(?<![\w.+=-])[\w.+=-]+@[\w-]+(?:\.[\w-]+)+")
_NOTICE_LIMIT = 64_000  # servers explain a failure in a few lines; more is a quoted message
_MTA_LOCAL_PARTS = {"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster"}
_MTA_NAME = re.compile(r"mail delivery|mailer.daemon|postmaster|mail administrator", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|failure|has failed|notification)|returned mail|failure notice"
    r"|mail delivery failed|could not be delivered|non remis|no se (?:pudo|ha podido) entregar"
    r"|n[aã]o (?:foi )?entregue",
    re.I,
)
# Out-of-office subjects in the languages our readers write in: en, es, pt, fr.
_AUTOREPLY_SUBJECT = re.compile(
    r"out of (?:the )?office|automatic reply|auto[- ]?repl(?:y|ied)|auto[- ]?response|vacation"
    r"|fuera de (?:la )?oficina|respuesta autom[aá]tica|ausente|resposta autom[aá]tica"
    r"|fora do escrit[oó]rio|r[ée]ponse automatique|absent du bureau|absence",
    re.I,
)
_AUTOREPLY_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder")
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}
_NOT_DELIVERY_FAILURE = {"delivered", "relayed", "expanded"}
_RECIPIENT_HEADERS = ("X-Original-Rcpt-To", "Original-Rcpt-To", "X-HmXmrOriginalRecipient")
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


class _Analysis:
    """One message under examination; each _as_* method answers with a report or None."""

    def __init__(self, message: Message, bounce_address: str, secret: str) -> None:
        self.message = message
        self.bounce_address = bounce_address.strip().lower()
        self.secret = secret
        self.parts = list(_parts(message))
        self.originals = list(_embedded_originals(self.parts))
        self.delivery_id = self._delivery_id()

    def report(self) -> BounceReport:
        attempts = (self._as_complaint, self._as_dsn, self._as_autoreply, self._as_prose_bounce)
        for attempt in attempts:
            found = attempt()
            if found is not None:
                return found
        return BounceReport(UNKNOWN, self.delivery_id, [], "", "", "none")

    def _delivery_id(self) -> int | None:
        candidates = [value for name in _ENVELOPE_HEADERS for value in _headers(self.message, name)]
        for original in self.originals:
            candidates += _headers(original, "Return-Path")
        for report in self._feedback_fields():
            candidates += _headers(report, "Original-Mail-From")
        for _, address in getaddresses(candidates):
            delivery_id = parse_verp(address, self.bounce_address, self.secret)
            if delivery_id is not None:
                return delivery_id
        return None

    def _feedback_fields(self) -> list[Message]:
        return [
            fields
            for part in self.parts
            if part.get_content_type() == "message/feedback-report"
            for fields in _field_blocks(part)
        ]

    def _as_complaint(self) -> BounceReport | None:
        feedback = self._feedback_fields()
        declared = self.message.get_param("report-type", "", header="content-type")
        if not feedback and str(declared).lower() != "feedback-report":
            return None
        fields = feedback[0] if feedback else Message()
        feedback_type = _header(fields, "Feedback-Type").lower() or "abuse"
        diagnostic = f"Feedback-Type: {feedback_type}"
        if agent := _header(fields, "User-Agent"):
            diagnostic += f"; User-Agent: {agent}"
        if feedback_type not in _COMPLAINT_TYPES:  # auth-failure and not-spam are no complaint
            return BounceReport(UNKNOWN, self.delivery_id, [], "", diagnostic, "arf")
        return BounceReport(
            COMPLAINT, self.delivery_id, self._complainants(fields), "", diagnostic, "arf"
        )

    def _complainants(self, fields: Message) -> list[str]:
        sources = [fields, self.message, *self.originals]
        for name in _RECIPIENT_HEADERS:
            found = [address for source in sources for address in _addresses(source, name)]
            if found:
                return self._theirs(found)
        return self._theirs([a for original in self.originals for a in _addresses(original, "To")])

    def _as_dsn(self) -> BounceReport | None:
        status_parts = [p for p in self.parts if p.get_content_type() == "message/delivery-status"]
        if not status_parts:
            return None
        failures = []
        for block in (b for part in status_parts for b in _field_blocks(part)):
            action = _header(block, "Action").lower().split(" ")[0]
            recipient = _dsn_recipient(block)
            if not (action or recipient) or action in _NOT_DELIVERY_FAILURE:
                continue
            diagnostic = _unfold(_header(block, "Diagnostic-Code"))
            diagnostic = re.sub(r"^\s*(?:smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
            status = (
                _enhanced_code(_header(block, "Status"))
                or _status_from_prose(diagnostic, permanent=action.startswith("fail"))
                or ("4.0.0" if action == "delayed" else "5.0.0")
            )
            kind = SOFT if action == "delayed" or status.startswith("4") else HARD
            failures.append((kind, recipient, status, diagnostic))
        if not failures:
            return BounceReport(UNKNOWN, self.delivery_id, [], "", "report lists no failure", "dsn")
        kind = HARD if any(f[0] == HARD for f in failures) else SOFT
        _, _, status, diagnostic = next(f for f in failures if f[0] == kind)
        recipients = self._theirs([f[1] for f in failures if f[1]])
        return BounceReport(kind, self.delivery_id, recipients, status, diagnostic, "dsn")

    def _as_autoreply(self) -> BounceReport | None:
        if self._from_mta():
            return None
        auto_submitted = _header(self.message, "Auto-Submitted").lower()
        precedence = _header(self.message, "Precedence").lower()
        if not (
            any(_header(self.message, name) for name in _AUTOREPLY_HEADERS)
            or auto_submitted.startswith("auto-replied")
            or precedence == "auto_reply"
            or _AUTOREPLY_SUBJECT.search(_header(self.message, "Subject"))
        ):
            return None
        responder = parseaddr(_header(self.message, "From"))[1]
        subject = _header(self.message, "Subject")
        return BounceReport(
            AUTOREPLY, self.delivery_id, self._theirs([responder]), "", subject, "auto-reply"
        )

    def _as_prose_bounce(self) -> BounceReport | None:
        if not self._looks_like_bounce():
            return None
        notice = self._notice_text()
        try:
            temporary, permanent = all_failures(self.message)
        except Exception:  # one detector choking on odd MIME must not hide the prose evidence
            temporary, permanent = frozenset(), frozenset()
        permanent_recipients = self._theirs(_decoded(permanent))
        temporary_recipients = self._theirs(_decoded(temporary))
        recipients = permanent_recipients or temporary_recipients
        source = "flufl.bounce"
        if not recipients:
            sender = parseaddr(_header(self.message, "From"))[1]
            recipients = self._theirs([a for a in _ADDRESS.findall(notice) if a != sender])
            source = "prose"
        status = _status_from_prose(notice, permanent=bool(permanent_recipients)) or (
            "4.0.0" if temporary_recipients else ""
        )
        diagnostic = _evidence(notice)
        if not status:
            return BounceReport(UNKNOWN, self.delivery_id, recipients, "", diagnostic, source)
        kind = HARD if status.startswith("5") else SOFT
        return BounceReport(kind, self.delivery_id, recipients, status, diagnostic, source)

    def _from_mta(self) -> bool:
        name, address = parseaddr(_header(self.message, "From"))
        local_part = address.lower().partition("@")[0]
        return local_part in _MTA_LOCAL_PARTS or bool(_MTA_NAME.search(name))

    def _looks_like_bounce(self) -> bool:
        return (
            self._from_mta()
            or bool(_BOUNCE_SUBJECT.search(_header(self.message, "Subject")))
            or bool(_header(self.message, "X-Failed-Recipients"))
        )

    def _notice_text(self) -> str:
        """The text the reporting server wrote, without the copy of our message it quotes."""
        texts = []
        for part in self.parts:
            if part.get_content_maintype() != "text":
                continue
            if part.get_content_type() == "text/rfc822-headers":
                continue
            text = _decoded_text(part)
            if part.get_content_subtype() == "html":
                text = re.sub(r"<[^>]*>", " ", text)
            texts.append(text)
        notice = "\n".join(texts)[:_NOTICE_LIMIT]
        quoted = _QUOTE_START.search(notice)
        return notice[: quoted.start()] if quoted else notice

    def _theirs(self, addresses: list[str]) -> list[str]:
        """Addresses with our own bounce and VERP addresses left out, deduplicated, in order."""
        local, _, domain = self.bounce_address.rpartition("@")
        kept: list[str] = []
        for address in addresses:
            address = address.strip().strip("<>").strip()
            own_local, _, own_domain = address.lower().rpartition("@")
            ours_local = own_local == local or own_local.startswith(local + "+")
            ours = own_domain == domain and ours_local
            if "@" in address and not ours and address not in kept:
                kept.append(address)
        return kept


def _parts(message: Message) -> Iterator[Message]:
    """Every part of the report itself, without descending into quoted messages."""
    yield message
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _embedded_originals(parts: list[Message]) -> Iterator[Message]:
    for part in parts:
        if part.get_content_type() == "message/rfc822" and part.is_multipart():
            yield from part.get_payload()
        elif part.get_content_type() == "text/rfc822-headers":
            yield HeaderParser().parsestr(_decoded_text(part))


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    if part.is_multipart():
        return [block for block in part.get_payload() if isinstance(block, Message)]
    text = _decoded_text(part).replace("\r\n", "\n")
    return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]


def _dsn_recipient(block: Message) -> str:
    for name in ("Original-Recipient", "Final-Recipient", "X-Actual-Recipient"):
        value = _header(block, name)
        address = value.partition(";")[2] if ";" in value else value
        address = address.strip().strip("<>").strip()
        if "@" in address:
            return address
    return ""


def _status_from_prose(text: str, *, permanent: bool) -> str:
    """The status a server meant: its own code if it quoted one, else a guess from its words."""
    if code := _enhanced_code(text):
        return code
    reply = _REPLY_CODE.search(text)
    status_class = reply[1] if reply else ""
    if not status_class and _PERMANENT_WORDS.search(text):
        status_class = "5"
    if not status_class and _TEMPORARY_WORDS.search(text):
        status_class = "4"
    if not status_class and permanent:
        status_class = "5"
    for pattern, status in _STATUS_PHRASES:
        if pattern.search(text):
            return (status_class or status[0]) + status[1:]
    return f"{status_class}.0.0" if status_class else ""


def _enhanced_code(text: str) -> str:
    match = _ENHANCED_CODE.search(text)
    return ".".join(match.groups()) if match else ""


def _header(message: Message, name: str) -> str:
    values = _headers(message, name)
    return values[0] if values else ""


def _headers(message: Message, name: str) -> list[str]:
    """Header values as plain text, RFC 2047 words decoded, undecodable bytes replaced."""
    decoded = []
    for value in message.get_all(name, []):
        try:
            decoded.append(_unfold(str(make_header(decode_header(str(value))))))
        except (ValueError, LookupError, UnicodeError):
            decoded.append(_unfold(str(value)))
    return decoded


def _addresses(message: Message, name: str) -> list[str]:
    return [address for _, address in getaddresses(_headers(message, name)) if address]


def _decoded_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # a charset name Python does not know
        return payload.decode("utf-8", errors="replace")


def _decoded(addresses: frozenset[bytes]) -> list[str]:
    return sorted(address.decode("ascii", errors="replace") for address in addresses)


def _unfold(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def _evidence(notice: str, limit: int = 500) -> str:
    """The paragraph of the notice that holds the reason, else the notice's start."""
    paragraphs = [p for p in re.split(r"\n\s*\n", notice.replace("\r\n", "\n")) if p.strip()]
    signs = [_ENHANCED_CODE, _REPLY_CODE] + [pattern for pattern, _ in _STATUS_PHRASES]
    for sign in signs:
        for paragraph in paragraphs:
            if sign.search(paragraph):
                return _unfold(paragraph)[:limit]
    return _unfold(notice)[:limit]
