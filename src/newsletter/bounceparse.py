"""Read one returned message and say what happened, recipient by recipient: hard or soft bounce,
complaint, auto-reply, delivery notice.

Evidence is tried from the most to the least trustworthy: an ARF feedback report (RFC 5965), an
RFC 3464 delivery-status report, auto-reply markers, then the prose of non-standard bounces, where
flufl.bounce's detectors find the recipients and our phrase table guesses a status. A delivery-status
report without usable per-recipient fields falls back to the prose. The report also carries every
clue that can tie it to one of our deliveries (the signed VERP address, unsubscribe tokens and
Message-IDs of the returned copy); bounces.py decides which clue it trusts.

Only the relevant parts are read (mimetrim.trim): attachments are skipped and each text part is cut
to its first 64 KB, so a 20 MB bounce costs no more than a small one.

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

from newsletter.mimetrim import trim
from newsletter.verp import parse_verp, verp_address

HARD = "hard"
SOFT = "soft"
COMPLAINT = "complaint"
AUTOREPLY = "autoreply"
NOTICE = "notice"  # a delivery-status report that only says a message was delivered or relayed
UNKNOWN = "unknown"


@dataclass
class Failure:
    """One recipient's failure. kind "hard" means final: the server gave up on this recipient."""

    recipient: str
    kind: str
    status: str
    diagnostic: str


@dataclass
class BounceReport:
    """What one returned message says.

    kind: hard | soft | complaint | autoreply | notice | unknown; for a report naming several
    recipients, hard when any of them failed for good. status: an RFC 3463 code such as "5.1.1" for
    bounces, "" otherwise. source: the evidence that decided the kind (arf, dsn, dsn+prose, auto-reply,
    flufl.bounce, prose, none, error). failures: one entry per failed recipient. The clues
    (delivery_id from a verified VERP address, unsubscribe_tokens, message_ids) are unverified except
    delivery_id; forged_verp says that an address of VERP shape was present but its tag did not verify.
    """

    kind: str
    delivery_id: int | None
    recipients: list[str] = field(default_factory=list)
    status: str = ""
    diagnostic: str = ""
    source: str = "none"
    failures: list[Failure] = field(default_factory=list)
    unsubscribe_tokens: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    forged_verp: bool = False
    sender: str = ""
    subject: str = ""
    relevant: bytes = b""  # the trimmed message, kept for a later look (bounces unmatched --reprocess)


def analyse(message: bytes, *, bounce_address: str, secret: str) -> BounceReport:
    """Classify a returned message; a bad bounce address or secret is a config error and raises."""
    verp_address(bounce_address, 0, secret)  # validates both before we trust them below
    relevant = message
    try:
        relevant = trim(message)
        parsed = email.message_from_bytes(relevant)
        report = _Analysis(parsed, bounce_address, secret).report()
    except Exception as error:  # garbage in, "unknown" out: one bad message must not stop a run
        report = BounceReport(UNKNOWN, None, [], "", f"unreadable message: {error!r}", "error")
        report.sender, report.subject = _envelope_of(relevant)
        relevant = relevant[:_UNREADABLE_KEPT]  # what a person needs to look at it, not a 20 MB copy
    report.relevant = relevant
    return report


# Enhanced status codes (RFC 3463) of failures; the lookarounds keep IP addresses and dates out.
_ENHANCED_CODE = re.compile(r"(?<![\w.])([45])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# A basic SMTP reply code where servers quote it: line start, "said:", "smtp;".
_REPLY_CODE = re.compile(r"(?:^|[:;])\s*([45])[0-5]\d[ -]", re.MULTILINE)
# Words that say the server gave up: the failure is final even when its code is a 4.x.x.
_FINAL_WORDS = re.compile(
    r"permanent(?:ly)? (?:error|failure|failed)|failed permanently|fatal error|i've given up|giving up"
    r"|gave up|not going to try again|will not (?:be )?retr(?:y|ied)|no further (?:attempts|retries)"
    r"|has been rejected|aborted after"
    r"|n'a pas pu être (?:remis|distribué)|no (?:se )?(?:ha )?(?:podido|pudo) (?:ser )?entregar"
    r"|não (?:pôde|foi possível) (?:ser )?entreg",
    re.I,
)
_TEMPORARY_WORDS = re.compile(
    r"temporar(?:y|ily)|will (?:be )?retr(?:y|ied)|still trying|not yet been delivered|delayed"
    r"|will (?:continue|keep) trying|warning",
    re.I,
)
# Phrases and the status they mean when the server gave no code; the class digit is a default.
_STATUS_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"user unknown|unknown (?:user|recipient|local.part)|no such (?:user|mailbox|recipient)"
            r"|does ?n[o']t exist|recipient not found|address rejected"
            r"|(?:mailbox|user|recipient|address|account) (?:is )?unknown"
            r"|invalid (?:recipient|mailbox)|account (?:has been )?(?:disabled|discontinued|deleted)"
            r"|mailbox unavailable|not a valid mailbox|account .{0,20}(?:disabled|deleted)"
            r"|n'existe pas|inconnu|no existe|desconocido|não existe|inexistente|unbekannt"
            r"|existiert nicht",
            re.I,
        ),
        "5.1.1",
    ),
    (
        re.compile(
            r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the |its )?storage"
            r"|insufficient (?:system )?storage|mailbox size limit|bo[iî]te (?:aux lettres )?pleine"
            r"|buz[oó]n (?:est[aá] )?lleno|casilla llena|caixa (?:de correio )?(?:est[aá] )?cheia"
            r"|postfach (?:ist )?voll",
            re.I,
        ),
        "4.2.2",
    ),
    (
        re.compile(r"unrouteable|host not found|domain not found|no such domain|mx lookup", re.I),
        "5.1.2",
    ),
    (re.compile(r"could not find a gateway|no route to|unable to route", re.I), "5.4.4"),
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
# Our unsubscribe token where a returned copy of our mail shows it: the /u/ link or the mailto subject.
_UNSUBSCRIBE_TOKEN = re.compile(r"(?:/u/|unsubscribe(?:%20|\+|\s)+)(\.?[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{20,})")
_MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_NOTICE_LIMIT = 64_000  # servers explain a failure in a few lines; more is a quoted message
_UNREADABLE_KEPT = 256 * 1024
_MTA_LOCAL_PARTS = {"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mdaemon"}
_MTA_NAME = re.compile(r"mail delivery|mailer.daemon|postmaster|mail administrator|mdaemon", re.I)
# Subjects of bounces and delay warnings, in English and the usual translations (es, pt, fr, de, it, nl).
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|failure|has failed|notification|warning|delayed|problem)"
    r"|returned mail|failure notice|mail delivery (?:failed|warning|failure)|could not be delivered"
    r"|non[- ]?deliver|user unknown|warning: could not send"
    r"|non remis|non distribuable|non délivré|[ée]chec de (?:la )?(?:remise|distribution)"
    r"|no se (?:pudo|ha podido) entregar|no entregado|imposible entregar|error (?:de|en la) entrega"
    r"|notificaci[oó]n de (?:estado de )?entrega|devuelto"
    r"|n[aã]o (?:foi )?entregue|falha (?:na|de) entrega|mensagem devolvida"
    r"|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|non recapitabile|onbestelbaar",
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
        self.forged_verp = False
        self.delivery_id = self._delivery_id()

    def report(self) -> BounceReport:
        report = None
        for attempt in (self._as_complaint, self._as_dsn, self._as_autoreply, self._as_prose_bounce):
            report = attempt()
            if report is not None:
                break
        report = report or BounceReport(UNKNOWN, self.delivery_id, [], "", "", "none")
        report.forged_verp = self.forged_verp and report.delivery_id is None
        report.unsubscribe_tokens = self._unsubscribe_tokens()
        report.message_ids = self._message_ids()
        report.sender = parseaddr(_header(self.message, "From"))[1]
        report.subject = _header(self.message, "Subject")
        if not report.recipients:
            report.recipients = [f.recipient for f in report.failures if f.recipient]
        return report

    def _delivery_id(self) -> int | None:
        candidates = [value for name in _ENVELOPE_HEADERS for value in _headers(self.message, name)]
        for original in self.originals:
            candidates += _headers(original, "Return-Path")
        for report in self._feedback_fields():
            candidates += _headers(report, "Original-Mail-From")
        local, _, domain = self.bounce_address.rpartition("@")
        for _, address in getaddresses(candidates):
            delivery_id = parse_verp(address, self.bounce_address, self.secret)
            if delivery_id is not None:
                return delivery_id
            lowered = address.lower()
            if lowered.startswith(local + "+") and lowered.endswith("@" + domain):
                self.forged_verp = True  # our VERP shape with a tag that does not verify
        return None

    def _feedback_fields(self) -> list[Message]:
        return [
            fields
            for part in self.parts
            if part.get_content_type() == "message/feedback-report"
            for fields in _field_blocks(part)
        ]

    def _unsubscribe_tokens(self) -> list[str]:
        """Candidate tokens from the returned copy's List-Unsubscribe and links; bounces.py verifies them."""
        texts = [value for original in self.originals for value in _headers(original, "List-Unsubscribe")]
        texts += [_decoded_text(part) for part in self._text_parts()]
        texts += [_decoded_text(part) for original in self.originals for part in original.walk()
                  if part.get_content_maintype() == "text"]
        return _unique(token for text in texts for token in _UNSUBSCRIBE_TOKEN.findall(text))

    def _message_ids(self) -> list[str]:
        values = [value for original in self.originals for value in _headers(original, "Message-ID")]
        values += _headers(self.message, "In-Reply-To") + _headers(self.message, "References")
        return _unique(found for value in values for found in _MESSAGE_ID.findall(value))

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
        failures: list[Failure] = []
        delivered = False
        for block in (b for part in status_parts for b in _field_blocks(part)):
            action = _header(block, "Action").lower().split(" ")[0]
            recipient = _dsn_recipient(block)
            if not (action or recipient):  # the per-message fields (Reporting-MTA, ...)
                continue
            if action in _NOT_DELIVERY_FAILURE:
                delivered = True
                continue
            diagnostic = _unfold(_header(block, "Diagnostic-Code"))
            diagnostic = re.sub(r"^\s*(?:smtp|x-[\w-]+)\s*;\s*", "", diagnostic, flags=re.I)
            final = action.startswith("fail")
            status = (
                _enhanced_code(_header(block, "Status"))
                or _status_from_prose(diagnostic, permanent=final)
                or ("4.0.0" if action == "delayed" else "5.0.0")
            )
            kind = _failure_kind(status, final=final, delayed=action == "delayed")
            if recipient or final or action == "delayed":
                failures.append(Failure(self._own_address(recipient), kind, status, diagnostic))
        if failures:
            return self._summarised(failures, "dsn")
        if delivered:
            return BounceReport(NOTICE, self.delivery_id, [], "", "report lists no failure", "dsn")
        # No usable per-recipient fields: what the report's prose and flufl.bounce say instead.
        fallback = self._as_prose_bounce(gate=False)
        if fallback is not None and fallback.kind != UNKNOWN:
            fallback.source = "dsn+" + fallback.source
            return fallback
        return BounceReport(UNKNOWN, self.delivery_id, [], "", "report lists no failure", "dsn")

    def _summarised(self, failures: list[Failure], source: str) -> BounceReport:
        kind = HARD if any(f.kind == HARD for f in failures) else SOFT
        first = next(f for f in failures if f.kind == kind)
        recipients = self._theirs([f.recipient for f in failures if f.recipient])
        return BounceReport(kind, self.delivery_id, recipients, first.status, first.diagnostic, source,
                            failures=failures)

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

    def _as_prose_bounce(self, *, gate: bool = True) -> BounceReport | None:
        if gate and not self._looks_like_bounce():
            return None
        notice = self._notice_text()
        try:
            temporary, permanent = all_failures(self.message)
        except Exception:  # one detector choking on odd MIME must not hide the prose evidence
            temporary, permanent = frozenset(), frozenset()
        permanent_recipients = self._theirs(_decoded(permanent))
        temporary_recipients = [a for a in self._theirs(_decoded(temporary)) if a not in permanent_recipients]
        source = "flufl.bounce"
        if not (permanent_recipients or temporary_recipients):
            sender = parseaddr(_header(self.message, "From"))[1]
            found = self._theirs([a for a in _ADDRESS.findall(notice) if a != sender])
            temporary_recipients = found
            source = "prose"
        gave_up = bool(_FINAL_WORDS.search(notice))
        overall = _status_from_prose(notice, permanent=bool(permanent_recipients) or gave_up)
        diagnostic = _evidence(notice)
        passages = _passages(notice, permanent_recipients + temporary_recipients)
        failures = []
        for recipient in sorted(passages, key=lambda address: passages[address][0]):
            own = passages[recipient][1]
            final = recipient in permanent_recipients or gave_up or bool(own and _FINAL_WORDS.search(own))
            status = own and _status_from_prose(own, permanent=final)
            if not status or (status.endswith(".0.0") and overall and not overall.endswith(".0.0")):
                status = overall or status  # the notice as a whole says more than this paragraph
            if not status and recipient in permanent_recipients:
                status = "5.0.0"
            elif not status and source == "flufl.bounce":
                status = "4.0.0"
            if status:
                kind = _failure_kind(status, final=final, delayed=False)
                failures.append(Failure(recipient, kind, status, _unfold(own)[:500] if own else diagnostic))
        if failures:
            report = self._summarised(failures, source)
            report.diagnostic = diagnostic if len(failures) > 1 else failures[0].diagnostic
            return report
        if overall:  # a reason but no recipient: it can still be tied to a delivery by VERP
            kind = _failure_kind(overall, final=gave_up, delayed=False)
            return BounceReport(kind, self.delivery_id, [], overall, diagnostic, source,
                                failures=[Failure("", kind, overall, diagnostic)])
        return BounceReport(UNKNOWN, self.delivery_id, permanent_recipients + temporary_recipients,
                            "", diagnostic, source)

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

    def _text_parts(self) -> Iterator[Message]:
        for part in self.parts:
            if part.get_content_maintype() == "text" and part.get_content_type() != "text/rfc822-headers":
                yield part

    def _notice_text(self) -> str:
        """The text the reporting server wrote, without the copy of our message it quotes."""
        texts = []
        for part in self._text_parts():
            text = _decoded_text(part)
            if part.get_content_subtype() == "html":
                text = re.sub(r"<[^>]*>", " ", text)
            texts.append(text)
        notice = "\n".join(texts)[:_NOTICE_LIMIT]
        quoted = _QUOTE_START.search(notice)
        return notice[: quoted.start()] if quoted else notice

    def _own_address(self, address: str) -> str:
        kept = self._theirs([address])
        return kept[0] if kept else ""

    def _theirs(self, addresses: list[str]) -> list[str]:
        """Addresses with our own bounce and VERP addresses left out, deduplicated, in order."""
        local, _, domain = self.bounce_address.rpartition("@")
        kept: list[str] = []
        for address in addresses:
            address = address.strip().strip("<>").strip()
            own_local, _, own_domain = address.lower().rpartition("@")
            ours_local = own_local == local or own_local.startswith(local + "+")
            ours = own_domain == domain and ours_local
            if "@" in address and not ours and address.lower() not in (k.lower() for k in kept):
                kept.append(address)
        return kept


def _failure_kind(status: str, *, final: bool, delayed: bool) -> str:
    """Hard means final. A full mailbox (x.2.2) is soft even when reported as final: it is usually
    temporary. A delay is soft; a failure the server gave up on is hard whatever its status class."""
    if delayed or status.endswith(".2.2"):
        return SOFT
    if final:
        return HARD
    return HARD if status.startswith("5") else SOFT


def _envelope_of(raw: bytes) -> tuple[str, str]:
    """Sender and subject of a message that could not be analysed, for the review table."""
    try:
        headers = HeaderParser().parsestr(raw[:16_384].decode("utf-8", errors="replace"), headersonly=True)
        return parseaddr(_header(headers, "From"))[1], _header(headers, "Subject")
    except Exception:  # nothing readable at all
        return "", ""


def _parts(message: Message) -> Iterator[Message]:
    """Every part of the report itself, without descending into quoted messages."""
    yield message
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        for part in message.get_payload():
            if isinstance(part, Message):
                yield from _parts(part)


def _embedded_originals(parts: list[Message]) -> Iterator[Message]:
    for part in parts:
        if part.get_content_type() in ("message/rfc822", "message/global") and part.is_multipart():
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
    if not status_class and _FINAL_WORDS.search(text):
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


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))


def _unfold(value: str) -> str:
    return re.sub(r"\s+", " ", value).strip()


def _passages(notice: str, addresses: list[str], limit: int = 1000) -> dict[str, tuple[int, str]]:
    """For each recipient, where the notice first names it and the text from there to the next recipient
    (or the end of the paragraph): where a report explains each failure apart, this is its own reason."""
    lowered = notice.lower()
    starts = {address: lowered.find(address.lower()) for address in addresses}
    found = sorted(start for start in starts.values() if start >= 0)
    passages = {}
    for address, start in starts.items():
        if start < 0:
            passages[address] = (len(notice), "")
            continue
        end = min([s for s in found if s > start] + [start + limit, len(notice)])
        paragraph_end = re.search(r"\n\s*\n", notice[start:end])
        if paragraph_end and paragraph_end.start() > len(address):
            end = start + paragraph_end.start()
        passages[address] = (start, notice[start:end])
    return passages


def _evidence(notice: str, limit: int = 500) -> str:
    """The paragraph of the notice that holds the reason, else the notice's start."""
    paragraphs = [p for p in re.split(r"\n\s*\n", notice.replace("\r\n", "\n")) if p.strip()]
    signs = [_ENHANCED_CODE, _REPLY_CODE] + [pattern for pattern, _ in _STATUS_PHRASES]
    for sign in signs:
        for paragraph in paragraphs:
            if sign.search(paragraph):
                return _unfold(paragraph)[:limit]
    return _unfold(notice)[:limit]
