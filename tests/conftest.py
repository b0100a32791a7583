"""Fixtures that several test files share, so each setup is written once.

`site` starts the web application with `site_settings`; a test module that needs the site configured
differently (mail through the `smtp` relay, its own campaign folders) overrides `site_settings` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils
from smtp_servers import FaultServer
from web_support import LiveSite

from newsletter.db import connect


@pytest.fixture
def smtp() -> Iterator[FaultServer]:
    """A real SMTP relay on loopback that accepts everything until a test programs a fault."""
    with FaultServer() as server:
        yield server


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "newsletter.db"


@pytest.fixture
def db(db_path: Path) -> sqlite_utils.Database:
    return connect(db_path)


@pytest.fixture
def site_settings() -> dict:
    """Config fields for `site` beyond web_support.make_config's defaults."""
    return {}


@pytest.fixture
def site(tmp_path: Path, site_settings: dict) -> Iterator[LiveSite]:
    with LiveSite.start(tmp_path, **site_settings) as site:
        yield site


@pytest.fixture
def ana(site: LiveSite) -> dict:
    """A Spanish-speaking subscriber in Trinidad and Tobago who reads about security."""
    return site.add_subscriber("ana@example.org", name="Ana Prieto", country="TT", language="es",
                               interests=["security"])
