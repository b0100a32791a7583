"""Send one campaign in a process of its own, so that tests/test_crash_safety.py can kill it at any moment.

    python tests/crash_runner.py CONFIG_FILE SLUG

Prints each delivery's result as it is recorded, then `done <stopped_reason or finished> <sent in this run>`.
"""

from __future__ import annotations

import sys

from newsletter.config import load_config
from newsletter.sender import send_campaign


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    config_path, slug = argv
    config = load_config(config_path, environ={})
    summary = send_campaign(config, slug, progress=lambda status: print(status, flush=True))
    print(f"done {summary.stopped_reason or 'finished'} {summary.sent_now}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
