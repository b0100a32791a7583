"""What ships inside the package: the default templates, the sample campaign and the sample subscribers.

An installed newsletter (pipx, a wheel) has no checkout beside it, so everything a first run needs is
package data. A bureau's own `templates_dir` overrides the packaged templates file by file: the search
path puts its folder first, so copying one template is enough to change it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
SAMPLE_CAMPAIGNS = PACKAGE_DIR / "samples" / "campaigns"
SAMPLE_CAMPAIGN = "2026-12-lac-digest"
SAMPLE_SUBSCRIBERS = PACKAGE_DIR / "samples" / "subscribers" / "sample.csv"
SAMPLE_LOGO = PACKAGE_DIR / "samples" / "logo.png"
TEMPLATE_KINDS = ("email", "web")


def template_search_path(templates_dir: Path | None, kind: str) -> list[Path]:
    """Where Jinja2 looks for one kind of template: the bureau's folder (if it exists), then the defaults."""
    own = Path(templates_dir).resolve() / kind if templates_dir else None
    return ([own] if own is not None and own.is_dir() else []) + [TEMPLATES / kind]


def packaged_template_names() -> list[str]:
    """Every packaged template as `kind/name`, the form `newsletter templates copy` takes."""
    return sorted(path.relative_to(TEMPLATES).as_posix() for kind in TEMPLATE_KINDS
                  for path in (TEMPLATES / kind).rglob("*") if path.is_file())


def overridden(templates_dir: Path | None, name: str) -> bool:
    """Whether the bureau's folder holds its own copy of a packaged template."""
    return bool(templates_dir) and (Path(templates_dir) / name).is_file()


def copy_templates(destination: Path, names: list[str] | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write packaged templates into destination (all of them, or the names given) for customisation.

    Existing files are kept unless overwrite is set, so a second copy never destroys a bureau's edits.
    """
    known = packaged_template_names()
    chosen = names or known
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ValueError(f"no packaged template named {', '.join(unknown)}; "
                         f"`newsletter templates list` shows them (e.g. email/digest.html)")
    written = []
    for name in chosen:
        target = Path(destination) / name
        if target.exists() and not overwrite:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TEMPLATES / name, target)
        written.append(target)
    return written
