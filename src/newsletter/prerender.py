"""Render a campaign's variants in a child process and hand them back as bytes (a pickle), so that the
process that sends never imports premailer, lxml or cssutils (36 MB of the sender's memory otherwise).

    python -m newsletter.prerender   # reads (config, campaign, profiles) from stdin, writes variants

The child renders each language's full issue first (the check that refuses a campaign that cannot be
rendered, before anything is queued), then one variant per (language, interests, country) profile asked for; a profile that fails is left out,
for the sender to render (and fail on) when it gets there.
A RenderError comes back as its message with exit code 2; anything else as a traceback with exit code 1.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

from .campaigns import Campaign
from .config import Config


def render_in_child(config: Config, campaign: Campaign, profiles: list[tuple[str, int, str]],
                    languages: tuple[str, ...]) -> tuple[dict, dict]:
    """(variants by profile, variants by key) for IssueRenderer's caches, rendered in a child process."""
    from .render import RenderError

    job = pickle.dumps((config, campaign, profiles, languages))
    child = subprocess.run([sys.executable, "-m", "newsletter.prerender"], input=job, capture_output=True)
    if child.returncode == 2:
        raise RenderError(child.stderr.decode("utf-8", "replace").strip())
    if child.returncode != 0:
        raise RuntimeError("rendering the campaign's variants failed:\n" + child.stderr.decode("utf-8", "replace"))
    return pickle.loads(child.stdout)


def main() -> int:
    from .db import connect
    from .interests import Taxonomy
    from .render import IssueRenderer, RenderError

    config, campaign, profiles, languages = pickle.loads(sys.stdin.buffer.read())
    db = connect(config.database, migrate_schema=False)
    try:
        renderer = IssueRenderer(campaign, config, Taxonomy.load(db))
    finally:
        db.conn.close()
    try:
        renderer.check(languages)
    except RenderError as exc:
        print(exc, file=sys.stderr)
        return 2
    for language, interests, country in profiles:
        try:
            renderer.variant_for({"language": language, "interests": interests, "country": country})
        except Exception:  # left to the sender, which renders it when it gets there and reports the fault
            continue
    sys.stdout.buffer.write(pickle.dumps((renderer._by_profile, renderer._variants)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
