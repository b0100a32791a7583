"""The web side: preference centre, unsubscribe, double opt-in, archive and staff preview (see app.py)."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
