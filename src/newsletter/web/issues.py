"""Finding a campaign by the slug in a URL, and what the staff preview checks in a rendered issue."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..campaigns import CAMPAIGN_FILE, Campaign, load_campaign
from ..config import Config
from ..packaged import template_search_path
from ..render import GMAIL_CLIP_BYTES, WARN_BYTES
from .pages import PageError

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_REMOTE_SCHEMES = ("http", "https", "mailto", "tel", "cid", "data")


MAX_SLUG = 200  # file systems refuse names over 255 bytes; a URL this long names no campaign of ours


def campaign_folder(config: Config, slug: str) -> Path:
    """The folder of an existing campaign; a 404 page for anything else (../ tricks, names too long)."""
    if len(slug) > MAX_SLUG or not _SLUG.fullmatch(slug) or ".." in slug:
        raise PageError(404, "not_found")
    folder = Path(config.campaigns_dir) / slug
    try:
        found = (folder / CAMPAIGN_FILE).is_file()
    except OSError:  # e.g. File name too long, on a file system with a shorter limit
        found = False
    if not found:
        raise PageError(404, "not_found")
    return folder


def find_campaign(config: Config, slug: str) -> Campaign:
    """Load the campaign; CampaignError (naming the file, line and field) when it cannot be read."""
    return load_campaign(campaign_folder(config, slug), config.tz)


def content_version(config: Config, folder: Path) -> int:
    """The newest modification time (ns) under the campaign folder and the email templates: changes on any edit."""
    newest = 0
    for root in (folder, *template_search_path(config.templates_dir, "email")):
        for path in [root, *root.rglob("*")]:
            try:
                newest = max(newest, path.stat().st_mtime_ns)
            except FileNotFoundError:  # removed while we looked: the folder's own mtime records that
                continue
    return newest


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value.strip())


def missing_local_files(html: str, folder: Path) -> list[str]:
    """Links and images that point at files (relative paths, file: URLs) which do not exist beside the campaign."""
    parser = _Links()
    parser.feed(html)
    missing = []
    for target in dict.fromkeys(parser.targets):
        parts = urlsplit(target)
        if target.startswith("#") or parts.scheme in _REMOTE_SCHEMES or (not parts.scheme and parts.netloc):
            continue
        if parts.scheme not in ("", "file"):
            continue
        path = Path(unquote(parts.path))
        if not (path if path.is_absolute() else folder / path).exists():
            missing.append(target)
    return missing


def size_warning(html: str) -> str | None:
    size = len(html.encode("utf-8"))
    if size > WARN_BYTES:
        return (f"HTML is {size / 1024:.0f} KB with this subscriber's details; Gmail clips messages over about "
                f"{GMAIL_CLIP_BYTES // 1024} KB")
    return None
