"""What every view needs from the application: settings, clock, signer, throttles and this request's database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlite_utils
from flask import current_app, g

from ..clock import Clock
from ..config import Config
from ..db import connect
from ..signing import Signer
from .throttle import Throttle

if TYPE_CHECKING:
    from .staff_access import LoginThrottle

EXTENSION_KEY = "newsletter"


@dataclass
class WebState:
    config: Config
    clock: Clock
    signer: Signer
    subscribe_throttle: Throttle
    login_throttle: "LoginThrottle"


def state() -> WebState:
    return current_app.extensions[EXTENSION_KEY]


def database() -> sqlite_utils.Database:
    """One connection per request, opened on first use and closed when the request ends (see app.py)."""
    if "db" not in g:
        g.db = connect(state().config.database)
    return g.db


def close_database(_error: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()
