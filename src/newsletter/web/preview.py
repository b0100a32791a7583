"""/preview: staff see an issue as a given subscriber (or a segment in a language) would receive it.

Open to staff (staff_access.py: this machine without [web] staff_password, else a staff login), and to
HTTP Basic auth with config.web.preview_password. A request that came through a proxy (it carries a
Forwarded or X-Forwarded-For header) counts as remote even though the proxy connects from 127.0.0.1:
otherwise putting a reverse proxy in front of `newsletter serve` would open the preview to the world.

Test sends use links signed for subscriber id 0 (nobody), so a colleague who clicks "unsubscribe" in a test
mail does not unsubscribe the subscriber whose view was shown.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser

import jinja2
from flask import Blueprint, Response, jsonify, redirect, request, url_for

from .. import campaign_state
from ..campaigns import CAMPAIGN_FILE, Campaign, CampaignError, load_campaign
from ..db import LANGUAGES
from ..interests import Taxonomy
from ..message import MessageFactory, new_message_id
from ..normalize import InvalidValue, normalize_email
from ..render import IssueRenderer, RenderedVariant, greeting
from ..segments import Segment, SegmentError, parse_segment, saved_segments
from ..subscribers import get
from ..transport import open_transport
from .issues import campaign_folder, content_version, find_campaign, missing_local_files, size_warning
from .pages import PageError, render_page
from .staff_access import is_staff, require_staff
from .state import database, state
from .tokens import form_token, form_token_is_valid, signed_notice

blueprint = Blueprint("preview", __name__, url_prefix="/preview")

FORM_PURPOSE = "preview"
NOTICE = "preview-notice"
SAMPLE_RECIPIENT = {"id": 0, "email": "subscriber@example.org", "name": "Ana"}
FRAME_POLICY = ("default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; base-uri 'none'; "
                "form-action 'none'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox")


@blueprint.before_request
def staff_only() -> Response | None:
    """Staff (see staff_access: this machine, or logged in), or HTTP Basic with preview_password."""
    if is_staff():
        return None
    password = state().config.web.preview_password
    if not password:
        return require_staff()
    auth = request.authorization
    given = (auth.password or "") if auth is not None and auth.type == "basic" else ""
    if given and hmac.compare_digest(given.encode(), password.encode()):
        return None
    return Response("The preview needs the preview password (config [web] preview_password).\n", status=401,
                    mimetype="text/plain",
                    headers={"WWW-Authenticate": 'Basic realm="newsletter preview", charset="UTF-8"'})


@dataclass
class Shown:
    """One variant of an issue filled in for one recipient, with everything the preview page reports about it."""

    variant: RenderedVariant
    recipient: dict
    html: str
    text: str
    message: bytes
    description: str
    params: dict[str, str]
    problems: list[str] = field(default_factory=list)


def _show(campaign: Campaign, params) -> Shown:
    """The variant chosen by `email`, else by `segment` + `lang` (the campaign's segment, English, by default)."""
    db, config = database(), state().config
    taxonomy = Taxonomy.load(db)
    renderer = IssueRenderer(campaign, config, taxonomy)
    factory = MessageFactory(config, state().signer)
    email = params.get("email", "").strip()
    subscriber = get(db, email) if email else None
    problems = [f"no subscriber has the address {email!r}; showing the segment below instead"] if (
        email and subscriber is None) else []
    if subscriber is not None:
        variant, recipient = renderer.variant_for(subscriber), subscriber
        interests = ", ".join(taxonomy.slugs_in(subscriber["interests"])) or "none"
        description = (f"as {subscriber['email']} receives it: language {variant.lang}, country "
                       f"{subscriber['country'] or 'unknown'}, interests {interests}, status {subscriber['status']}")
        chosen = {"email": subscriber["email"]}
    else:
        expression = params.get("segment", "").strip() or campaign.segment
        try:
            segment = parse_segment(expression, db)
        except SegmentError as error:
            problems.append(str(error))
            segment = Segment()
        lang = params.get("lang", "")
        lang = lang if lang in LANGUAGES else min(segment.languages or {"en"})
        interests = frozenset(segment.interests) or frozenset(taxonomy.slugs)
        country = min(segment.countries) if segment.countries else ""
        variant, recipient = renderer.variant(lang, interests, country), SAMPLE_RECIPIENT
        description = (f"segment {expression!r} in {lang}: interests {', '.join(sorted(interests))}, "
                       f"country {country or 'none in particular'}, sample recipient {recipient['email']}")
        chosen = {"segment": expression, "lang": lang}
    links = factory.links(recipient["id"])
    html, text = variant.fill({"greeting": greeting(variant.lang, recipient["name"]), "email": recipient["email"],
                               "preferences_url": links["preferences_url"],
                               "unsubscribe_url": links["unsubscribe_url"]})
    message = factory.build(variant, recipient, message_id=new_message_id(campaign.slug, 0, config.sender_domain),
                            now=state().clock.now())
    return Shown(variant, recipient, html, text, message, description, chosen, problems)


def _warnings(campaign: Campaign, shown: Shown) -> list[str]:
    warnings = list(shown.variant.warnings)
    size = size_warning(shown.html)
    if size and not any(warning.startswith("HTML is") for warning in warnings):
        warnings.append(size)
    warnings += [f"link to a local file that does not exist: {target}"
                 for target in missing_local_files(shown.html, campaign.folder)]
    return warnings


def _page(slug: str, params, *, notice: str = "", status: int = 200) -> Response:
    config = state().config
    nonce = secrets.token_urlsafe(16)
    try:
        campaign = find_campaign(config, slug)
        shown = _show(campaign, params)
    except (CampaignError, jinja2.TemplateError) as error:  # mid-edit: say what is wrong, and keep watching
        page = render_page("preview_broken.html", "en", slug=slug, error=_describe(error), nonce=nonce,
                           version=content_version(config, campaign_folder(config, slug)))
        return _with_script_policy(page, nonce)
    page = render_page(
        "preview.html", "en", status=status, campaign=campaign, shown=shown, headers=decoded_headers(shown.message),
        warnings=_warnings(campaign, shown), html_kb=len(shown.html.encode("utf-8")) / 1024,
        frame_url=url_for(".frame", slug=slug, **shown.params),
        version=content_version(config, campaign.folder), nonce=nonce,
        languages=LANGUAGES, saved_segments=saved_segments(database()),
        staff_addresses=config.web.staff_addresses,
        form_token=form_token(state().signer, FORM_PURPOSE, state().clock), notice=notice,
    )
    return _with_script_policy(page, nonce)


def decoded_headers(message: bytes) -> str:
    """The message's header block as a person reads it: encoded words (=?utf-8?q?...) decoded, one per line."""
    head = BytesHeaderParser(policy=policy.default).parsebytes(message.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    return "\n".join(f"{name}: {value}" for name, value in head.items())


def _describe(error: Exception) -> str:
    if isinstance(error, jinja2.TemplateSyntaxError):
        return f"{error.filename or error.name}, line {error.lineno}: {error.message}"
    if isinstance(error, jinja2.TemplateError):
        return f"template error: {error}"
    return str(error)


def _with_script_policy(response: Response, nonce: str) -> Response:
    """Only the page's own scripts (version polling, width buttons) may run; nothing from an issue could."""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return response


@blueprint.get("/")
def campaigns() -> Response:
    config, db = state().config, database()
    rows = []
    for folder in sorted(path.parent for path in config.campaigns_dir.glob(f"*/{CAMPAIGN_FILE}")):
        row = {"slug": folder.name, "title": "", "articles": 0, "error": ""}
        try:
            campaign = load_campaign(folder, config.tz)
            row.update(title=campaign.title, articles=len(campaign.articles))
        except CampaignError as error:
            row["error"] = str(error)
        registered = campaign_state.get(db, folder.name)
        row["state"] = registered["state"] if registered else "draft (never built or scheduled)"
        rows.append(row)
    return render_page("preview_list.html", "en", campaigns=rows)


@blueprint.get("/<slug>")
def issue(slug: str) -> Response:
    return _page(slug, request.args, notice=signed_notice(state().signer, request.args.get("notice"), NOTICE))


def test_recipients(form) -> tuple[list[str], list[str]]:
    """The staff addresses ticked ("to") and typed ("extra", commas or spaces) on a test-send form:
    (normalised addresses, the ones that are not addresses)."""
    recipients, refused = [], []
    for address in [*form.getlist("to"), *form.get("extra", "").replace(",", " ").split()]:
        try:
            recipients.append(normalize_email(address))
        except InvalidValue:
            refused.append(address)
    return recipients, refused


@blueprint.get("/<slug>/frame")
def frame(slug: str) -> Response:
    shown = _show(find_campaign(state().config, slug), request.args)
    response = Response(shown.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = FRAME_POLICY
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@blueprint.get("/<slug>/version")
def version(slug: str) -> Response:
    return jsonify(version=str(content_version(state().config, campaign_folder(state().config, slug))))


@blueprint.post("/<slug>/test")
def send_test(slug: str) -> Response:
    config, clock = state().config, state().clock
    if not form_token_is_valid(state().signer, request.form.get("form_token"), FORM_PURPOSE, clock):
        raise PageError(400, "bad_form", "en", retry_url=url_for(".issue", slug=slug))
    recipients, refused = test_recipients(request.form)
    if refused or not recipients:
        notice = (f"Not sent: {', '.join(refused)} is not a valid address." if refused
                  else "Not sent: choose or type at least one staff address.")
        return _page(slug, request.form, notice=notice, status=400)  # nothing sent: the form stays as typed
    shown = _show(find_campaign(config, slug), request.form)
    test_variant = shown.variant.for_test()
    factory = MessageFactory(config, state().signer)
    transport = open_transport(config.smtp_url)
    outcomes = []
    try:
        for address in dict.fromkeys(recipients):
            data = factory.build(test_variant, {"id": 0, "email": address, "name": shown.recipient["name"]},
                                 message_id=new_message_id(slug, 0, config.sender_domain), now=clock.now())
            reply = transport.send(config.bounce_address or config.sender_address, address, data)
            outcomes.append(f"{address}: sent" if reply.outcome == "sent"
                            else f"{address}: NOT sent ({reply.code} {reply.enhanced} {reply.text})".strip())
    finally:
        transport.close()
    # POST, redirect, GET: reloading the page that says "sent" must not send again
    shown_params = {name: request.form[name] for name in ("email", "segment", "lang") if request.form.get(name)}
    notice = state().signer.sign("Test: " + "; ".join(outcomes), NOTICE)
    return redirect(url_for(".issue", slug=slug, notice=notice, **shown_params), code=303)
