"""What does one personalised message cost to make, our way and the naive way?

    python benchmarks/render.py                      # 10,000 recipients ours, 300 naive
    python benchmarks/render.py --recipients 50000 --naive 500

In one run, over the same recipients (fictional subscribers from subscribers/generate.py, spread over the four
languages, all interest mixes and many countries):

  ours   IssueRenderer renders each (language, variant_key) variant once with Jinja2 + premailer;
         MessageFactory.build fills in each recipient's greeting, address and signed links and joins the
         pre-encoded MIME skeleton. Timed cold: the variant renders are included in the total.
  naive  per recipient: Jinja2 render + premailer inlining (a fresh IssueRenderer, so nothing is cached),
         then an email.message.EmailMessage with the same headers and both parts, as_bytes(policy=SMTP).
         Run on a smaller sample; its cost per message does not depend on the count.

Both are timed with time.process_time (CPU of this process). Before timing, one recipient is built both ways
and their decoded text and HTML are compared, so the two paths are known to produce the same message.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import importlib.util
import tempfile
import time
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from zoneinfo import ZoneInfo

from newsletter.campaigns import Campaign, load_campaign
from newsletter.config import Config
from newsletter.db import connect
from newsletter.interests import Taxonomy
from newsletter.message import MessageFactory, new_message_id
from newsletter.render import IssueRenderer, greeting
from newsletter.signing import Signer

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "subscribers" / "generate.py"
CAMPAIGN = ROOT / "campaigns" / "2026-12-lac-digest"
DOMAIN = "lac.example.org"


def load_generator():
    """subscribers/ is a folder of samples, not a package: load generate.py by its path."""
    spec = importlib.util.spec_from_file_location("subscribers_generate", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def recipients(count: int, taxonomy: Taxonomy, seed: int = 2026) -> list[dict]:
    """Subscriber dicts as the sender reads them from the database: interests as a bit mask."""
    return [
        {"id": index + 1, "email": row["email"], "name": row["name"], "language": row["language"] or "en",
         "interests": taxonomy.parse(row["interests"]), "country": row["country"]}
        for index, row in enumerate(load_generator().generate_rows(count, seed=seed))
    ]


def benchmark_config() -> Config:
    return Config(templates_dir=ROOT / "templates", secret_key="benchmark-secret", base_url=f"https://{DOMAIN}",
                  unsubscribe_mailto=f"unsubscribe@{DOMAIN}", sender_address=f"news@{DOMAIN}")


class OurPath:
    """Variants rendered once per key, messages assembled on the fast path."""

    def __init__(self, campaign: Campaign, config: Config, taxonomy: Taxonomy) -> None:
        self.renderer = IssueRenderer(campaign, config, taxonomy)
        self.factory = MessageFactory(config, Signer(config.secret_key))
        self.slug = campaign.slug

    def build(self, subscriber: dict, now: datetime) -> bytes:
        variant = self.renderer.variant_for(subscriber)
        return self.factory.build(variant, subscriber, message_id=new_message_id(self.slug, subscriber["id"], DOMAIN),
                                  now=now)


class NaivePath:
    """What a straightforward sender does: render, inline and build a MIME object for every recipient."""

    def __init__(self, campaign: Campaign, config: Config, taxonomy: Taxonomy) -> None:
        self.campaign, self.config, self.taxonomy = campaign, config, taxonomy
        self.links = MessageFactory(config, Signer(config.secret_key)).links  # the same signed links

    def build(self, subscriber: dict, now: datetime) -> bytes:
        renderer = IssueRenderer(self.campaign, self.config, self.taxonomy)  # nothing cached between recipients
        variant = renderer.variant_for(subscriber)
        links = self.links(subscriber["id"])
        html, text = variant.fill({"greeting": greeting(variant.lang, subscriber["name"]),
                                   "email": subscriber["email"], "preferences_url": links["preferences_url"],
                                   "unsubscribe_url": links["unsubscribe_url"]})
        config = self.config
        message = EmailMessage()
        message["From"] = formataddr((config.sender_name, config.sender_address))
        message["To"] = formataddr((subscriber["name"], subscriber["email"]))
        message["Subject"] = variant.subject
        message["Date"] = format_datetime(now)
        message["Message-ID"] = new_message_id(self.campaign.slug, subscriber["id"], DOMAIN)
        message["List-Id"] = f"{config.list_name} <{config.list_id}>"
        message["List-Unsubscribe"] = (f"<{links['unsubscribe_url']}>, <mailto:{config.unsubscribe_mailto}"
                                       f"?subject=unsubscribe%20{links['unsubscribe_token']}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        return message.as_bytes(policy=email.policy.SMTP)


def decoded_bodies(data: bytes) -> tuple[str, str]:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    text, html = (part.get_content().replace("\r\n", "\n") for part in parsed.iter_parts())
    return text, html


def check_same_output(ours: OurPath, naive: NaivePath, subscriber: dict, now: datetime) -> None:
    if decoded_bodies(ours.build(subscriber, now)) != decoded_bodies(naive.build(subscriber, now)):
        raise SystemExit("the two paths disagree on the message bodies; the comparison would be meaningless")


def cpu_seconds(build, subscribers: list[dict], now: datetime) -> tuple[float, int]:
    """CPU time to build every message, and their total size (which also keeps the result alive)."""
    started = time.process_time()
    size = 0
    for subscriber in subscribers:
        size += len(build(subscriber, now))
    return time.process_time() - started, size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000, help="messages built our way (default 10,000)")
    parser.add_argument("--naive", type=int, default=300, help="messages built the naive way (default 300)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as work:
        taxonomy = Taxonomy.load(connect(Path(work) / "newsletter.db"))
    config = benchmark_config()
    campaign = load_campaign(CAMPAIGN, ZoneInfo("UTC"))
    subscribers = recipients(max(args.recipients, args.naive), taxonomy)
    now = datetime.now(timezone.utc)
    check_same_output(OurPath(campaign, config, taxonomy), NaivePath(campaign, config, taxonomy), subscribers[0], now)

    ours = OurPath(campaign, config, taxonomy)
    cold, size = cpu_seconds(ours.build, subscribers[: args.recipients], now)
    variants = ours.renderer.variant_count
    warm, _ = cpu_seconds(ours.build, subscribers[: args.recipients], now)
    naive_seconds, naive_size = cpu_seconds(NaivePath(campaign, config, taxonomy).build,
                                            subscribers[: args.naive], now)

    ours_us = cold / args.recipients * 1e6
    warm_us = warm / args.recipients * 1e6
    naive_us = naive_seconds / args.naive * 1e6
    print(f"campaign {campaign.slug}: {args.recipients:,} recipients, {variants} variants "
          f"(language x sections), average message {size / args.recipients / 1024:.1f} KiB ours, "
          f"{naive_size / args.naive / 1024:.1f} KiB naive")
    print(f"ours   cold (variants rendered in the run): {cold:6.3f} s CPU for {args.recipients:,} messages "
          f"= {ours_us:8.1f} µs/message")
    print(f"ours   warm (variants already rendered):    {warm:6.3f} s CPU for {args.recipients:,} messages "
          f"= {warm_us:8.1f} µs/message")
    print(f"naive  render + premailer + EmailMessage:   {naive_seconds:6.3f} s CPU for {args.naive:,} messages "
          f"= {naive_us:8.1f} µs/message  (10,000 would take {naive_us * 1e4 / 1e6:.1f} s)")
    print(f"ratio  naive / ours: {naive_us / ours_us:.0f}x cold, {naive_us / warm_us:.0f}x warm")


if __name__ == "__main__":
    main()
