"""The process that sends never imports premailer, lxml or cssutils (variants are rendered in a child
process and handed over as bytes), and imports dkim only when DKIM is configured: a real send, in a
process of its own, to a real SMTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sending_support import SLUG, add_subscribers, write_config

from newsletter.db import connect

HEAVY = ("premailer", "lxml", "cssutils", "dkim")
SCRIPT = """
import json, sys
from newsletter.config import load_config
from newsletter.sender import send_campaign
summary = send_campaign(load_config(sys.argv[1], environ={}), sys.argv[2])
print(json.dumps({"sent": summary.sent_now, "finished": summary.finished,
                  "loaded": sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[3:]))}))
"""


def test_a_send_renders_its_variants_in_a_child_and_never_loads_premailer_lxml_cssutils_or_dkim(tmp_path, smtp):
    config = write_config(tmp_path, smtp.url())
    db = connect(config.database)
    addresses = add_subscribers(db, 10)  # five countries, four languages: several variants

    result = subprocess.run([sys.executable, "-c", SCRIPT, str(config.path), SLUG, *HEAVY], capture_output=True,
                            text=True, env=dict(os.environ), timeout=120)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"sent": len(addresses), "finished": True, "loaded": []}
    assert sorted(rcpt for message in smtp.accepted for rcpt in message.rcpt_tos) == addresses
