"""One scheduler pass in its own process, at a fixed time: `python scheduler_runner.py CONFIG 2026-12-01T13:05:00Z`.

Prints one JSON object per result, so a test can run several schedulers against one database.
"""

from __future__ import annotations

import json
import sys

from newsletter.clock import FakeClock, parse_utc
from newsletter.config import load_config
from newsletter.scheduler import run_pass


def main(config_path: str, when: str) -> int:
    results = run_pass(load_config(config_path, environ={}), clock=FakeClock(parse_utc(when)))
    for result in results:
        print(json.dumps({"subject": result.subject, "outcome": result.outcome, "failed": result.failed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
