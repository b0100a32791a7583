"""POST /hooks/<provider> on a real `newsletter serve` (LiveSite): payloads written from each provider's
published format, signed with keys made here. Amazon SNS's signing certificate is one we make, served by a
real HTTP server on loopback; the SigningCertURL check (https on sns.<region>.amazonaws.com) runs before
that fetch, so the test also proves that no other URL is ever fetched. Bad signatures, wrong credentials,
stale timestamps and replays are refused with nothing changed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
from datetime import timedelta
from urllib.parse import urlsplit
from urllib.request import urlopen

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from web_support import START, LiveSite, request

from newsletter.clock import utc_iso
from newsletter.config import WebhookSettings
from newsletter.web import hooks
from newsletter.webhooks import SnsCertificates

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37f"
POSTMARK = ("postmark-hook", "pm-" + "p" * 20)
MAILGUN_KEY = "mailgun-signing-key-" + "m" * 12
ANA, BO, CY = "ana@example.org", "bo@example.org", "cy@example.org"


# --- keys and a certificate server ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


def certificate_pem(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(START - timedelta(days=30))
                   .not_valid_after(START + timedelta(days=365)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM)


class CertificateServer:
    """A real HTTP server on loopback playing sns.us-east-1.amazonaws.com: serves the certificate and
    answers the subscription URL; `requested` lists every path asked for."""

    def __init__(self, pem: bytes) -> None:
        self.requested: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requested.append(self.path)
                body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fetch(self, url: str) -> bytes:
        """What SnsCertificates calls once a URL passed its checks: the same path, from this server."""
        parts = urlsplit(url)
        query = f"?{parts.query}" if parts.query else ""
        with urlopen(f"http://127.0.0.1:{self.server.server_port}{parts.path}{query}", timeout=10) as reply:
            return reply.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(tmp_path, rsa_key, ec_key):
    public = ec_key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    settings = WebhookSettings(ses_topic_arns=[TOPIC], postmark_user=POSTMARK[0], postmark_password=POSTMARK[1],
                               sendgrid_public_key=base64.b64encode(public).decode(), mailgun_signing_key=MAILGUN_KEY,
                               max_age_seconds=600)
    certificates = CertificateServer(certificate_pem(rsa_key))
    with LiveSite.start(tmp_path, webhooks=settings) as live:
        hooks.use_sns_certificates(live.app, SnsCertificates(fetch=certificates.fetch))
        live.certificates = certificates
        for address in (ANA, BO, CY):
            live.add_subscriber(address, name=address.partition("@")[0], country="TT")
        yield live
    certificates.close()


def post_json(site: LiveSite, provider: str, body: bytes, **headers: str):
    page = request(f"{site.url}/hooks/{provider}", "POST", body, {"Content-Type": "application/json", **headers})
    return page.status, json.loads(page.text)["message"] if page.text.startswith("{") else page.text


def state(site: LiveSite) -> dict:
    """Every subscriber's status and every event: what must not move when a request is refused."""
    return {"subscribers": dict(site.db.execute("SELECT email, status FROM subscribers").fetchall()),
            "events": site.db.execute("SELECT email, kind, code, source, matched_by FROM bounce_events ORDER BY id")
            .fetchall(),
            "suppressions": site.db.execute("SELECT count(*) FROM suppressions").fetchone()[0]}


def status(site: LiveSite, email: str) -> str:
    return site.db.execute("SELECT status FROM subscribers WHERE email = ?", [email]).fetchone()[0]


# --- Amazon SES through SNS ------------------------------------------------------------------------------

SIGNED = {"Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
          "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn",
                                       "Type")}


def sns_message(site: LiveSite, key, kind: str, message: str, *, version: str = "1", message_id: str = "",
                **changes) -> bytes:
    """An SNS HTTP POST body as the SNS documentation shows it, signed over the documented string to sign."""
    body = {"Type": kind, "MessageId": message_id or "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": TOPIC,
            "Message": message, "Timestamp": site.clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "SignatureVersion": version, "SigningCertURL": CERT_URL}
    if kind == "SubscriptionConfirmation":
        body |= {"Token": "2336412f37f", "SubscribeURL": SUBSCRIBE_URL}
    else:
        body["UnsubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x"
    text = "".join(f"{name}\n{body[name]}\n" for name in SIGNED[kind] if name in body)
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    body["Signature"] = base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), digest)).decode()
    body |= changes
    return json.dumps(body).encode()


def ses_bounce(bounce_type: str, *recipients: str, status_code: str = "5.1.1", message_id: str = "") -> str:
    headers = [{"name": "Message-ID", "value": message_id}] if message_id else []
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {"bounceType": bounce_type, "bounceSubType": "General", "reportingMTA": "dns; email.example.com",
                   "bouncedRecipients": [{"emailAddress": address, "status": status_code, "action": "failed",
                                          "diagnosticCode": f"smtp; 550 {status_code} <{address}>... User"}
                                         for address in recipients],
                   "timestamp": "2026-11-23T11:59:38.237Z", "feedbackId": "00000138111222aa-33322211"},
        "mail": {"timestamp": "2026-11-23T11:59:00.000Z", "source": "news@lac.example.org",
                 "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
                 "destination": list(recipients), "headersTruncated": False, "headers": headers},
    })


def ses_complaint(*recipients: str, feedback: str = "abuse") -> str:
    return json.dumps({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": address} for address in recipients],
                      "timestamp": "2026-11-23T11:59:00.000Z", "feedbackId": "0000013786031775-163e3910",
                      "userAgent": "AnyCompany Feedback Loop (V0.01)", "complaintFeedbackType": feedback},
        "mail": {"timestamp": "2026-11-23T11:58:00.000Z", "source": "news@lac.example.org",
                 "messageId": "0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000",
                 "destination": list(recipients)},
    })


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce_suppresses_every_bounced_recipient(site, rsa_key, version):
    answer = post_json(site, "ses", sns_message(site, rsa_key, "Notification", ses_bounce("Permanent", ANA, BO),
                                                version=version))
    assert answer == (200, "2 events handled, 2 subscribers changed, 0 replays ignored")
    assert (status(site, ANA), status(site, BO), status(site, CY)) == ("bounced", "bounced", "active")
    assert state(site)["events"] == [(ANA, "hard", "5.1.1", "ses", "webhook"), (BO, "hard", "5.1.1", "ses", "webhook")]
    assert site.certificates.requested == [urlsplit(CERT_URL).path]


def test_ses_transient_bounce_is_a_soft_bounce_and_a_complaint_unsubscribes(site, rsa_key):
    post_json(site, "ses", sns_message(site, rsa_key, "Notification", ses_bounce("Transient", ANA, status_code="4.2.2")))
    post_json(site, "ses", sns_message(site, rsa_key, "Notification", ses_complaint(BO), message_id="c-1"))
    post_json(site, "ses", sns_message(site, rsa_key, "Notification", ses_complaint(CY, feedback="not-spam"),
                                       message_id="c-2"))
    assert (status(site, ANA), status(site, BO), status(site, CY)) == ("active", "complained", "active")
    assert [row[:2] for row in state(site)["events"]] == [(ANA, "soft"), (BO, "complaint")]


def test_ses_bounce_is_tied_to_its_delivery_by_the_message_id_we_sent(site, rsa_key):
    ana_id = site.db.execute("SELECT id FROM subscribers WHERE email = ?", [ANA]).fetchone()[0]
    stamp = utc_iso(site.clock.now())
    site.db.execute("INSERT INTO deliveries (campaign, subscriber_id, email, status, message_id, created_at, "
                    "updated_at, sent_at) VALUES ('c', ?, ?, 'sent', '<c.1.aa@lac.example.org>', ?, ?, ?)",
                    [ana_id, ANA, stamp, stamp, stamp])
    post_json(site, "ses", sns_message(site, rsa_key, "Notification",
                                       ses_bounce("Permanent", ANA, message_id="<c.1.aa@lac.example.org>")))
    assert site.db.execute("SELECT d.status, e.delivery_id = d.id FROM deliveries d, bounce_events e").fetchone() == (
        "bounced", 1)


def test_ses_subscription_confirmation_visits_the_subscribe_url(site, rsa_key):
    answer = post_json(site, "ses", sns_message(site, rsa_key, "SubscriptionConfirmation",
                                                f"You have chosen to subscribe to the topic {TOPIC}."))
    assert answer == (200, "SNS subscription confirmed")
    assert urlsplit(SUBSCRIBE_URL).path + "?" + urlsplit(SUBSCRIBE_URL).query in site.certificates.requested


@pytest.mark.parametrize("change, reason", [
    ({"Message": ses_bounce("Permanent", CY)}, "signature does not verify"),
    ({"TopicArn": "arn:aws:sns:us-east-1:999999999999:other"}, "is not one of [webhooks] ses_topic_arns"),
    ({"SigningCertURL": "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"}, "is not an https URL on sns"),
    ({"SigningCertURL": CERT_URL.replace("https", "http")}, "is not an https URL on sns"),
    ({"SigningCertURL": "https://sns.us-east-1.amazonaws.com/cert.txt"}, "does not name a .pem"),
    ({"SignatureVersion": "3"}, "SignatureVersion '3'"),
], ids=["tampered message", "other topic", "certificate elsewhere", "certificate over http", "not a pem", "version"])
def test_ses_requests_that_fail_a_check_are_refused_with_nothing_changed(site, rsa_key, change, reason):
    before = state(site)
    status_code, message = post_json(site, "ses", sns_message(site, rsa_key, "Notification",
                                                              ses_bounce("Permanent", ANA), **change))
    assert status_code == 403 and reason in message
    assert state(site) == before
    if "SigningCertURL" in change:
        assert site.certificates.requested == []  # a URL that fails the check is never fetched


def test_ses_a_certificate_signed_by_another_key_does_not_verify(site):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    before = state(site)
    assert post_json(site, "ses", sns_message(site, other, "Notification", ses_bounce("Permanent", ANA)))[0] == 403
    assert state(site) == before


def test_ses_replays_are_refused_the_same_message_again_or_an_old_one(site, rsa_key):
    body = sns_message(site, rsa_key, "Notification", ses_bounce("Permanent", ANA))
    assert post_json(site, "ses", body)[0] == 200
    after_first = state(site)
    assert post_json(site, "ses", body) == (409, "1 events already handled: a replay, nothing changed")
    site.clock.advance(601)
    stale = post_json(site, "ses", body)
    assert stale[0] == 403 and "refused as a replay" in stale[1]
    assert state(site) == after_first


# --- Postmark ------------------------------------------------------------------------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def postmark_bounce(record_id: int, email: str, kind: str = "HardBounce") -> bytes:
    return json.dumps({
        "RecordType": "Bounce", "ID": record_id, "Type": kind, "TypeCode": 1, "Name": "Hard bounce", "Tag": "digest",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23, "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist",
        "Email": email, "From": "news@lac.example.org", "BouncedAt": "2026-11-23T11:28:10.2735393-04:00",
        "DumpAvailable": True, "Inactive": True, "CanActivate": True, "Subject": "LAC Internet Digest",
    }).encode()


def test_postmark_hard_bounce_with_the_right_credentials_suppresses(site):
    answer = post_json(site, "postmark", postmark_bounce(42, ANA), Authorization=basic(*POSTMARK))
    assert answer[0] == 200
    assert status(site, ANA) == "bounced"
    assert post_json(site, "postmark", postmark_bounce(43, BO, "SoftBounce"), Authorization=basic(*POSTMARK))[0] == 200
    assert status(site, BO) == "active"
    assert [row[:2] for row in state(site)["events"]] == [(ANA, "hard"), (BO, "soft")]


def test_postmark_spam_complaint_and_subscription_change(site):
    complaint = json.dumps({"RecordType": "SpamComplaint", "ID": 7, "Type": "SpamComplaint", "Email": ANA,
                            "MessageID": "00000000-0000-0000-0000-000000000000", "MessageStream": "outbound"})
    change = json.dumps({"RecordType": "SubscriptionChange", "MessageID": "a5c5b2a4-cbbf-4a3a-9b1f-6a4b0f5d0c3e",
                         "ServerID": 23, "MessageStream": "outbound", "ChangedAt": "2026-11-23T16:44:17Z",
                         "Recipient": BO, "Origin": "Recipient", "SuppressSending": True,
                         "SuppressionReason": "ManualSuppression", "Tag": "digest", "Metadata": {}})
    post_json(site, "postmark", complaint.encode(), Authorization=basic(*POSTMARK))
    post_json(site, "postmark", change.encode(), Authorization=basic(*POSTMARK))
    assert (status(site, ANA), status(site, BO)) == ("complained", "unsubscribed")


@pytest.mark.parametrize("authorization", [basic(POSTMARK[0], "wrong"), basic("someone", POSTMARK[1]), "",
                                           "Bearer " + POSTMARK[1]], ids=["password", "user", "none", "scheme"])
def test_postmark_wrong_credentials_are_refused_with_nothing_changed(site, authorization):
    before = state(site)
    status_code, message = post_json(site, "postmark", postmark_bounce(42, ANA), Authorization=authorization)
    assert (status_code, message) == (403, "Postmark's basic-auth user or password is wrong")
    assert state(site) == before


def test_postmark_the_same_record_twice_is_a_replay(site):
    post_json(site, "postmark", postmark_bounce(42, ANA), Authorization=basic(*POSTMARK))
    after_first = state(site)
    assert post_json(site, "postmark", postmark_bounce(42, ANA), Authorization=basic(*POSTMARK))[0] == 409
    assert state(site) == after_first


# --- SendGrid ------------------------------------------------------------------------------------------


def sendgrid_events() -> bytes:
    """A batch as SendGrid's Event Webhook reference shows it."""
    common = {"timestamp": 1763899200, "category": "digest", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001"}
    return json.dumps([
        {**common, "email": ANA, "event": "bounce", "type": "bounce", "status": "5.0.0", "sg_event_id": "ev-1",
         "reason": "500 unknown recipient", "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>"},
        {**common, "email": BO, "event": "bounce", "type": "blocked", "status": "4.0.0", "sg_event_id": "ev-2",
         "reason": "421 try later", "smtp-id": "<14c5d75ce93.dfd.64b470@ismtpd-555>"},
        {**common, "email": CY, "event": "spamreport", "sg_event_id": "ev-3"},
        {**common, "email": "stranger@example.net", "event": "unsubscribe", "sg_event_id": "ev-4"},
        {**common, "email": ANA, "event": "delivered", "response": "250 OK", "sg_event_id": "ev-5"},
    ], separators=(",", ":")).encode()


def sendgrid_headers(key, body: bytes, timestamp: int) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp)}


def test_sendgrid_signed_batch_applies_each_event(site, ec_key):
    body = sendgrid_events()
    answer = post_json(site, "sendgrid", body, **sendgrid_headers(ec_key, body, int(site.clock.now().timestamp())))
    assert answer == (200, "4 events handled, 2 subscribers changed, 0 replays ignored")  # the stranger is nobody
    assert (status(site, ANA), status(site, BO), status(site, CY)) == ("bounced", "active", "complained")


def test_sendgrid_bad_signature_stale_timestamp_and_replay_change_nothing(site, ec_key):
    body = sendgrid_events()
    now = int(site.clock.now().timestamp())
    before = state(site)
    forged = sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body, now)
    assert post_json(site, "sendgrid", body, **forged) == (403, "the SendGrid signature does not verify")
    altered = sendgrid_headers(ec_key, body, now)
    assert post_json(site, "sendgrid", body.replace(b"spamreport", b"unsubscribe"), **altered)[0] == 403
    stale = post_json(site, "sendgrid", body, **sendgrid_headers(ec_key, body, now - 601))
    assert stale[0] == 403 and "refused as a replay" in stale[1]
    assert post_json(site, "sendgrid", body)[0] == 403  # no signature at all
    assert state(site) == before
    assert post_json(site, "sendgrid", body, **sendgrid_headers(ec_key, body, now))[0] == 200
    after_first = state(site)
    site.clock.advance(5)  # the same events, signed again: SendGrid's own retry, or someone replaying them
    again = post_json(site, "sendgrid", body, **sendgrid_headers(ec_key, body, now + 5))
    assert again == (409, "4 events already handled: a replay, nothing changed")
    assert state(site) == after_first


# --- Mailgun -------------------------------------------------------------------------------------------


def mailgun_body(timestamp: int, token: str, event: dict, key: str = MAILGUN_KEY) -> bytes:
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": str(timestamp), "token": token, "signature": signature},
                       "event-data": event}).encode()


def mailgun_failed(email: str, severity: str = "permanent") -> dict:
    return {"event": "failed", "id": "G9Bn5sl1TC6nu79C8C0bwg", "timestamp": 1521233195.375624, "severity": severity,
            "reason": "bounce", "recipient": email, "recipient-domain": "example.org",
            "delivery-status": {"code": 550, "message": "5.1.1 The email account does not exist.",
                                "description": "", "attempt-no": 1},
            "message": {"headers": {"to": email, "message-id": "20261123120000.1.abc@lac.example.org",
                                    "from": "news@lac.example.org", "subject": "LAC Internet Digest"}}}


def test_mailgun_signed_events_apply(site):
    now = int(site.clock.now().timestamp())
    assert post_json(site, "mailgun", mailgun_body(now, "t" * 50, mailgun_failed(ANA)))[0] == 200
    assert post_json(site, "mailgun", mailgun_body(now, "u" * 50, mailgun_failed(BO, "temporary")))[0] == 200
    assert post_json(site, "mailgun", mailgun_body(now, "v" * 50, {"event": "complained", "recipient": CY,
                                                                   "id": "c1"}))[0] == 200
    assert (status(site, ANA), status(site, BO), status(site, CY)) == ("bounced", "active", "complained")
    assert [row[:2] for row in state(site)["events"]] == [(ANA, "hard"), (BO, "soft"), (CY, "complaint")]


def test_mailgun_bad_signature_stale_timestamp_and_token_reuse_change_nothing(site):
    now = int(site.clock.now().timestamp())
    before = state(site)
    assert post_json(site, "mailgun", mailgun_body(now, "t" * 50, mailgun_failed(ANA), key="wrong"))[0] == 403
    stale = post_json(site, "mailgun", mailgun_body(now - 601, "t" * 50, mailgun_failed(ANA)))
    assert stale[0] == 403 and "refused as a replay" in stale[1]
    assert state(site) == before
    body = mailgun_body(now, "t" * 50, mailgun_failed(ANA))
    assert post_json(site, "mailgun", body)[0] == 200
    after_first = state(site)
    assert post_json(site, "mailgun", body)[0] == 409
    assert state(site) == after_first


# --- every provider ------------------------------------------------------------------------------------


def test_an_unknown_provider_is_not_found_and_an_unconfigured_one_refuses(tmp_path):
    with LiveSite.start(tmp_path) as bare:
        assert post_json(bare, "sparkpost", b"{}")[0] == 404
        for provider in ("ses", "postmark", "sendgrid", "mailgun"):
            status_code, message = post_json(bare, provider, b"{}")
            assert status_code == 403 and "is not configured" in message, provider


def test_webhook_secrets_can_come_from_the_environment(tmp_path):
    from newsletter.config import load_config

    (tmp_path / "newsletter.toml").write_text('[webhooks]\nmailgun_signing_key = "from-file"\n', encoding="utf-8")
    config = load_config(tmp_path / "newsletter.toml", environ={"NEWSLETTER_MAILGUN_SIGNING_KEY": "from-env",
                                                                 "NEWSLETTER_POSTMARK_PASSWORD": "pm"})
    assert (config.webhooks.mailgun_signing_key, config.webhooks.postmark_password) == ("from-env", "pm")
