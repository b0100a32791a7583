"""`newsletter campaign new`: a campaign folder to start from, with a commented campaign.toml and one
example article, written from the packaged skeleton in samples/new-campaign/."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from string import Template

from .packaged import PACKAGE_DIR

SKELETON = PACKAGE_DIR / "samples" / "new-campaign"
_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


def new_campaign(campaigns_dir: Path, slug: str, now: datetime, title: str = "") -> Path:
    """Write campaigns_dir/slug from the skeleton; refuses a bad slug or an existing folder (never
    overwrites an editor's work). `now` is in the bureau's time zone: it dates the example article."""
    if not _SLUG.fullmatch(slug) or ".." in slug:
        raise ValueError(f"campaign name {slug!r}: use lower-case letters, digits, '-', '_' or '.', starting "
                         "with a letter or digit, e.g. 2027-01-lac-digest")
    folder = Path(campaigns_dir) / slug
    if folder.exists():
        raise ValueError(f"{folder} already exists; pick another name or edit that campaign")
    values = {"slug": slug, "title": (title or f"{now:%B %Y} digest").replace('"', "'"),
              "date": f"{now:%Y-%m-%d}", "send_at": f"{now:%Y-%m-%d} 09:00"}
    folder.mkdir(parents=True)
    for source in sorted(SKELETON.iterdir()):
        (folder / source.name).write_text(Template(source.read_text(encoding="utf-8")).substitute(values),
                                          encoding="utf-8")
    return folder
