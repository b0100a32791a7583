"""Event webhooks of email service providers: prove that a request comes from the provider, then turn its
payload into ProviderEvents (hard, soft, complaint, unsubscribe) for the one bounce policy.

Each provider per its documented format:

- Amazon SES through SNS: the SNS message signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over
  the documented string to sign, with the certificate fetched from SigningCertURL, which must be an https URL
  on sns.<region>.amazonaws.com; the TopicArn must be one we configured; Timestamp must be recent.
- Postmark: HTTP basic auth with the user and password set on the webhook (Postmark signs nothing).
- SendGrid: the Signed Event Webhook: an ECDSA (P-256, SHA-256) signature in
  X-Twilio-Email-Event-Webhook-Signature over the X-Twilio-Email-Event-Webhook-Timestamp value followed by the
  raw body, verified with the account's public verification key; the timestamp must be recent.
- Mailgun: signature.signature is the hex HMAC-SHA256, keyed with the webhook signing key, of
  signature.timestamp followed by signature.token; the timestamp must be recent.

Anything that fails a check raises Refused before anything is read from the payload. Replays of a
genuine request inside the time window are caught by the event ids that the caller records.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

from .config import WebhookSettings

PROVIDERS = ("ses", "postmark", "sendgrid", "mailgun")
HARD, SOFT, COMPLAINT, UNSUBSCRIBE = "hard", "soft", "complaint", "unsubscribe"
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?")
_SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_CERTIFICATE_LIMIT = 64 * 1024


class Refused(Exception):
    """The request is not accepted: status is the HTTP status to answer, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ProviderEvent:
    """One thing a provider tells about one recipient. message_id is the Message-ID header we sent, when
    the provider reports it; event_id is the provider's own id, so that a replay is recognised."""

    event_id: str
    kind: str
    email: str
    message_id: str = ""
    status: str = ""
    diagnostic: str = ""


@dataclass
class Received:
    """What a verified request holds: its events, and for SNS a subscription URL to confirm."""

    events: list[ProviderEvent]
    confirm_url: str = ""


def _https_get(url: str) -> bytes:
    """GET over https with certificate checks (urllib's default context), at most 64 KB, 10 s."""
    from urllib.request import urlopen

    with urlopen(url, timeout=10) as response:  # noqa: S310 - the URL was checked by sns_url()
        return response.read(_CERTIFICATE_LIMIT)


def sns_url(url: str, what: str) -> str:
    """The URL, if it is an https URL on an SNS host (sns.<region>.amazonaws.com); else Refused."""
    parts = urlsplit(url or "")
    if parts.scheme != "https" or not _SNS_HOST.fullmatch(parts.hostname or "") or parts.port not in (None, 443):
        raise Refused(403, f"{what} {url!r} is not an https URL on sns.<region>.amazonaws.com")
    return url


class SnsCertificates:
    """SNS signing certificates by URL, fetched once. `fetch` does the GET; tests pass one that serves a
    certificate they made from a local server (the URL check runs before it, whatever it is)."""

    def __init__(self, fetch: Callable[[str], bytes] = _https_get) -> None:
        self.fetch = fetch
        self._cache: dict[str, object] = {}

    def certificate(self, url: str):
        from cryptography import x509

        sns_url(url, "SigningCertURL")
        if not urlsplit(url).path.endswith(".pem"):
            raise Refused(403, f"SigningCertURL {url!r} does not name a .pem certificate")
        if url not in self._cache:
            try:
                self._cache[url] = x509.load_pem_x509_certificate(self.fetch(url))
            except (OSError, ValueError) as error:
                raise Refused(403, f"the SNS signing certificate at {url} cannot be had: {error}") from None
        return self._cache[url]

    def confirm(self, url: str) -> None:
        """Visit a SubscribeURL, which confirms the subscription to SNS."""
        try:
            self.fetch(sns_url(url, "SubscribeURL"))
        except OSError as error:
            raise Refused(502, f"confirming the SNS subscription failed: {error}") from None


def receive(provider: str, body: bytes, headers: dict[str, str], settings: WebhookSettings, now: datetime,
            certificates: SnsCertificates) -> Received:
    """Verify one request and read its events; Refused when it is not genuine, fresh or readable."""
    if provider not in PROVIDERS:
        raise Refused(404, f"no webhook for provider {provider!r}; use one of {', '.join(PROVIDERS)}")
    headers = {name.lower(): value for name, value in headers.items()}
    if provider == "ses":
        return _ses(body, headers, settings, now, certificates)
    if provider == "postmark":
        return _postmark(body, headers, settings)
    if provider == "sendgrid":
        return _sendgrid(body, headers, settings, now)
    return _mailgun(body, settings, now)


def _json(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "the body is not JSON") from None


def _check_age(seconds: float, settings: WebhookSettings, what: str) -> None:
    if abs(seconds) > settings.max_age_seconds:
        raise Refused(403, f"{what} is {seconds:.0f} s away from now (more than max_age_seconds = "
                           f"{settings.max_age_seconds}): refused as a replay")


# --- Amazon SES through SNS -----------------------------------------------------------------------------


def _ses(body: bytes, headers: dict[str, str], settings: WebhookSettings, now: datetime,
         certificates: SnsCertificates) -> Received:
    if not settings.ses_topic_arns:
        raise Refused(403, "Amazon SES is not configured: set [webhooks] ses_topic_arns")
    message = _json(body)
    if not isinstance(message, dict) or message.get("Type") not in _SNS_SIGNED_FIELDS:
        raise Refused(400, "not an SNS message (Type must be Notification or SubscriptionConfirmation)")
    if message.get("TopicArn") not in settings.ses_topic_arns:
        raise Refused(403, f"SNS topic {message.get('TopicArn')!r} is not one of [webhooks] ses_topic_arns")
    _verify_sns(message, certificates, now)
    try:
        sent = datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        raise Refused(400, "the SNS message has no readable Timestamp") from None
    _check_age((now - sent).total_seconds(), settings, "the SNS Timestamp")
    if message["Type"] != "Notification":
        return Received([], confirm_url=message.get("SubscribeURL", "") if message["Type"] ==
                        "SubscriptionConfirmation" else "")
    notification = _json(str(message.get("Message", "")).encode())
    return Received(_ses_events(str(message["MessageId"]), notification))


def _verify_sns(message: dict, certificates: SnsCertificates, now: datetime) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    version = str(message.get("SignatureVersion", ""))
    digest = {"1": hashes.SHA1, "2": hashes.SHA256}.get(version)
    if digest is None:
        raise Refused(403, f"SNS SignatureVersion {version!r} is not 1 or 2")
    certificate = certificates.certificate(str(message.get("SigningCertURL", "")))
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Refused(403, "the SNS signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Refused(403, "the SNS signing certificate does not hold an RSA key")
    signed = "".join(f"{name}\n{message[name]}\n" for name in _SNS_SIGNED_FIELDS[message["Type"]] if name in message)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key.verify(signature, signed.encode("utf-8"), padding.PKCS1v15(), digest())
    except (InvalidSignature, ValueError):
        raise Refused(403, "the SNS message signature does not verify") from None


def _ses_events(message_id: str, notification) -> list[ProviderEvent]:
    """SES bounce and complaint notifications (and the same as event publishing, with eventType)."""
    if not isinstance(notification, dict):
        raise Refused(400, "the SNS Message is not an SES notification")
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    ours = _ses_message_id(mail)
    events = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        policy = HARD if bounce.get("bounceType") == "Permanent" else SOFT  # Transient, Undetermined
        for number, recipient in enumerate(bounce.get("bouncedRecipients") or []):
            events.append(ProviderEvent(f"{message_id}#{number}", policy, str(recipient.get("emailAddress", "")),
                                        ours, str(recipient.get("status") or ""),
                                        str(recipient.get("diagnosticCode") or bounce.get("bounceSubType") or "")))
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        if complaint.get("complaintFeedbackType") != "not-spam":
            feedback = f"Feedback-Type: {complaint.get('complaintFeedbackType') or 'abuse'}"
            for number, recipient in enumerate(complaint.get("complainedRecipients") or []):
                events.append(ProviderEvent(f"{message_id}#{number}", COMPLAINT,
                                            str(recipient.get("emailAddress", "")), ours, "", feedback))
    return [event for event in events if event.email]


def _ses_message_id(mail: dict) -> str:
    """The Message-ID header we sent (SES keeps its own id in mail.messageId)."""
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == "message-id":
            return str(header.get("value", ""))
    return str((mail.get("commonHeaders") or {}).get("messageId") or "")


# --- Postmark --------------------------------------------------------------------------------------------

_POSTMARK_BOUNCES = {"HardBounce": HARD, "BadEmailAddress": HARD, "SoftBounce": SOFT, "Transient": SOFT,
                     "DnsError": SOFT, "SpamComplaint": COMPLAINT, "SpamNotification": COMPLAINT,
                     "Unsubscribe": UNSUBSCRIBE}
_POSTMARK_SUPPRESSIONS = {"HardBounce": HARD, "SpamComplaint": COMPLAINT, "ManualSuppression": UNSUBSCRIBE}


def _postmark(body: bytes, headers: dict[str, str], settings: WebhookSettings) -> Received:
    if not (settings.postmark_user and settings.postmark_password):
        raise Refused(403, "Postmark is not configured: set [webhooks] postmark_user and postmark_password")
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    try:
        user, _, password = base64.b64decode(credentials, validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        user, password = "", ""
    expected = f"{settings.postmark_user}:{settings.postmark_password}".encode()
    if scheme.lower() != "basic" or not hmac.compare_digest(f"{user}:{password}".encode(), expected):
        raise Refused(403, "Postmark's basic-auth user or password is wrong")
    record = _json(body)
    if not isinstance(record, dict):
        raise Refused(400, "a Postmark webhook body is one JSON object")
    record_type = record.get("RecordType")
    if record_type == "Bounce":
        kind = _POSTMARK_BOUNCES.get(str(record.get("Type")))
        event = ProviderEvent(f"bounce:{record.get('ID')}", kind or "", str(record.get("Email", "")), "",
                              "", str(record.get("Details") or record.get("Description") or record.get("Type")))
    elif record_type == "SpamComplaint":
        event = ProviderEvent(f"complaint:{record.get('ID')}", COMPLAINT, str(record.get("Email", "")), "", "",
                              "Feedback-Type: abuse")
    elif record_type == "SubscriptionChange":
        kind = _POSTMARK_SUPPRESSIONS.get(str(record.get("SuppressionReason"))) if record.get("SuppressSending") else None
        event = ProviderEvent(f"change:{record.get('MessageID')}:{record.get('Recipient')}:{record.get('ChangedAt')}",
                              kind or "", str(record.get("Recipient", "")), "", "",
                              f"Postmark suppression: {record.get('SuppressionReason')}")
    else:
        return Received([])  # deliveries, opens, clicks: nothing for the policy
    return Received([event] if event.kind and event.email else [])


# --- SendGrid --------------------------------------------------------------------------------------------


def _sendgrid(body: bytes, headers: dict[str, str], settings: WebhookSettings, now: datetime) -> Received:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not settings.sendgrid_public_key:
        raise Refused(403, "SendGrid is not configured: set [webhooks] sendgrid_public_key")
    signature = headers.get("x-twilio-email-event-webhook-signature", "")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp", "")
    if not (signature and timestamp.isdigit()):
        raise Refused(403, "the SendGrid signature or timestamp header is missing")
    key_text = settings.sendgrid_public_key.strip()
    try:
        key = (serialization.load_pem_public_key(key_text.encode()) if key_text.startswith("-----")
               else serialization.load_der_public_key(base64.b64decode(key_text)))
    except ValueError:
        raise Refused(500, "[webhooks] sendgrid_public_key is not a public key (base64 DER or PEM)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Refused(500, "[webhooks] sendgrid_public_key is not an elliptic-curve key")
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Refused(403, "the SendGrid signature does not verify") from None
    _check_age(now.timestamp() - int(timestamp), settings, "the SendGrid timestamp")
    events = _json(body)
    if not isinstance(events, list):
        raise Refused(400, "a SendGrid webhook body is a JSON array of events")
    return Received([event for item in events if isinstance(item, dict) and (event := _sendgrid_event(item))])


def _sendgrid_event(item: dict) -> ProviderEvent | None:
    name, reason = str(item.get("event", "")), str(item.get("reason") or item.get("response") or "")
    if name == "bounce":
        kind = SOFT if item.get("type") == "blocked" else HARD
    elif name == "dropped":  # SendGrid's own suppression list: the reason says which
        kind = HARD if "bounce" in reason.lower() else COMPLAINT if "spam" in reason.lower() else \
            UNSUBSCRIBE if "unsubscribe" in reason.lower() else ""
    else:
        kind = {"spamreport": COMPLAINT, "unsubscribe": UNSUBSCRIBE, "group_unsubscribe": UNSUBSCRIBE}.get(name, "")
    email = str(item.get("email", ""))
    if not (kind and email):
        return None
    event_id = str(item.get("sg_event_id") or f"{item.get('sg_message_id')}:{name}:{email}")
    return ProviderEvent(event_id, kind, email, str(item.get("smtp-id") or ""), str(item.get("status") or ""),
                         reason or name)


# --- Mailgun ---------------------------------------------------------------------------------------------


def _mailgun(body: bytes, settings: WebhookSettings, now: datetime) -> Received:
    if not settings.mailgun_signing_key:
        raise Refused(403, "Mailgun is not configured: set [webhooks] mailgun_signing_key")
    payload = _json(body)
    signature = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(signature, dict):
        raise Refused(403, "the Mailgun signature is missing")
    timestamp, token = str(signature.get("timestamp", "")), str(signature.get("token", ""))
    expected = hmac.new(settings.mailgun_signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    given = str(signature.get("signature", "")).encode("utf-8", errors="replace")
    if not (timestamp.isdigit() and token and hmac.compare_digest(expected.encode(), given)):
        raise Refused(403, "the Mailgun signature does not verify")
    _check_age(now.timestamp() - int(timestamp), settings, "the Mailgun timestamp")
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise Refused(400, "the Mailgun body has no event-data")
    name = data.get("event")
    kind = {"complained": COMPLAINT, "unsubscribed": UNSUBSCRIBE}.get(str(name), "")
    if name == "failed":
        kind = HARD if data.get("severity") == "permanent" else SOFT
    status = data.get("delivery-status") or {}
    headers = (data.get("message") or {}).get("headers") or {}
    message_id = str(headers.get("message-id") or "")
    if message_id and not message_id.startswith("<"):
        message_id = f"<{message_id}>"  # Mailgun reports it without the angle brackets
    event = ProviderEvent(f"token:{token}", kind, str(data.get("recipient", "")), message_id,
                          str(status.get("enhanced-code") or status.get("code") or ""),
                          str(status.get("description") or status.get("message") or data.get("reason") or name))
    return Received([event] if event.kind and event.email else [])


def utc_now(clock_now: datetime) -> datetime:
    """The clock's time as an aware UTC datetime (certificate validity and timestamps compare in UTC)."""
    return clock_now.astimezone(timezone.utc) if clock_now.tzinfo else clock_now.replace(tzinfo=timezone.utc)
