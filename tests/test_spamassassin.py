"""SpamAssassin (Debian's, local rules only, no network) scores every language's sample issue at 0.5 or less.

The messages are the real ones a subscriber gets (MessageFactory, every section, a country note), and the
issue is scored once more with its partnership article filed under security, whose French label
"Sécurité" once set off FUZZY_SECURITY in the upper-cased text part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from newsletter.campaigns import load_campaign, placements
from newsletter.config import Config
from newsletter.db import LANGUAGES, connect
from newsletter.interests import Taxonomy
from newsletter.message import MessageFactory, new_message_id
from newsletter.render import IssueRenderer
from newsletter.signing import Signer

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = pytest.mark.skipif(SPAMASSASSIN is None, reason="spamassassin is not installed (.ci/run installs "
                                                             "Debian's package)")
ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "campaigns" / "2026-12-lac-digest"
MAX_SCORE = 0.5
NAMES = {"en": "Leroy Knowles", "es": "José Núñez", "pt": "João Conceição", "fr": "Gaëlle Jean-Baptiste"}


def messages(folder: Path, tmp_path: Path) -> dict[str, bytes]:
    config = Config(secret_key="spam-tests-" + "k" * 32, base_url="https://news.lac.example.org",
                    unsubscribe_mailto="unsubscribe@lac.example.org",
                    postal_address="Rambla Example 1234\n11300 Montevideo, Uruguay")
    taxonomy = Taxonomy.load(connect(tmp_path / "newsletter.db"))
    renderer = IssueRenderer(load_campaign(folder, ZoneInfo("UTC")), config, taxonomy)
    factory = MessageFactory(config, Signer(config.secret_key))
    built = {}
    for index, lang in enumerate(LANGUAGES, start=1):
        subscriber = {"id": index, "email": f"reader-{lang}@example.net", "name": NAMES[lang], "language": lang,
                      "interests": taxonomy.mask(taxonomy.slugs), "country": "TT"}
        built[lang] = factory.build(renderer.variant_for(subscriber), subscriber,
                                    message_id=new_message_id(folder.name, index, config.sender_domain),
                                    now=datetime(2026, 12, 1, 13, 0, tzinfo=timezone.utc))
    return built


def scores(built: dict[str, bytes]) -> dict[str, tuple[float, str]]:
    """One spamassassin run over an mbox of the messages (starting it costs seconds; scoring, little)."""
    mbox = b""
    for data in built.values():
        body = re.sub(rb"^(>*From )", rb">\1", data.replace(b"\r\n", b"\n"), flags=re.M)
        mbox += b"From reader@example.net Tue Dec  1 13:00:00 2026\n" + body + b"\n"
    result = subprocess.run([SPAMASSASSIN, "-L", "-t", "--mbox"], input=mbox, capture_output=True, timeout=600)
    statuses = re.findall(rb"^X-Spam-Status: \w+, score=(-?[\d.]+) required=[\d.]+ tests=(.*?)\s+autolearn",
                          result.stdout, re.M | re.S)
    assert len(statuses) == len(built), result.stderr.decode("utf-8", "replace")[-2000:]
    return {lang: (float(score), b" ".join(tests.split()).decode()) for lang, (score, tests) in zip(built, statuses)}


def test_every_languages_sample_issue_scores_at_most_half_a_point(tmp_path):
    for lang, (score, tests) in scores(messages(SAMPLE, tmp_path)).items():
        assert score <= MAX_SCORE, f"{lang}: {score} ({tests})"


def test_a_security_section_scores_low_in_every_language_too(tmp_path):
    folder = tmp_path / SAMPLE.name
    shutil.copytree(SAMPLE, folder)
    toml = folder / "campaign.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'file = "canto-internet-society.md"\n', 'file = "canto-internet-society.md"\ninterests = ["security"]\n'),
        encoding="utf-8")
    assert placements(load_campaign(folder, ZoneInfo("UTC")))[0].section == "security"
    built = messages(folder, tmp_path)
    for lang, (score, tests) in scores(built).items():
        assert score <= MAX_SCORE, f"{lang}: {score} ({tests})"
        assert "FUZZY_SECURITY" not in tests
