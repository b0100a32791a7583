"""The opt-in confirmation mail: one message, built with the standard library and sent through the relay."""

from __future__ import annotations

from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from ..clock import Clock
from ..config import Config
from ..i18n import email_environment, gettext_for
from ..render import first_name, inline_css
from ..transport import Reply, open_transport


def confirmation_message(config: Config, *, lang: str, name: str, address: str, confirm_url: str,
                         clock: Clock) -> bytes:
    """templates/email/confirm.{html,txt} in `lang` as CRLF message bytes (policy SMTP: a relay takes them as is)."""
    environment = email_environment(config.templates_dir, lang)
    context = {"name": first_name(name), "list_name": config.list_name_for(lang), "confirm_url": confirm_url,
               "sender_name": config.sender_name}
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(config.sender_name, addr_spec=config.sender_address)
    message["To"] = Address(name, addr_spec=address)
    message["Subject"] = gettext_for(lang)("Confirm your subscription to %(list_name)s") % {
        "list_name": config.list_name_for(lang)}
    message["Date"] = format_datetime(clock.now())
    message["Message-ID"] = make_msgid(domain=config.sender_domain)
    message["Content-Language"] = lang
    message.set_content(environment.get_template("confirm.txt").render(context))
    message.add_alternative(inline_css(environment.get_template("confirm.html").render(context)), subtype="html")
    return message.as_bytes()


def send_confirmation(config: Config, address: str, data: bytes) -> Reply:
    """Hand the message to config.smtp_url; the Reply says whether the relay took it (this never raises for that)."""
    transport = open_transport(config.smtp_url)
    try:
        return transport.send(config.bounce_address or config.sender_address, address, data)
    finally:
        transport.close()
