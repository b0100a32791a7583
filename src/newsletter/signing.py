"""Signed tokens for links that act on a subscriber, one namespace per purpose (after datasette's sign()).

A token for one purpose is useless for another: the namespace is the itsdangerous salt. Tokens carry the
subscriber id, never the address, and only the holder of the secret key can make one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"


_SIGNER_KWARGS = {"key_derivation": "none", "digest_method": hashlib.sha256}


class BadToken(Exception):
    """A token that is forged, altered, for another purpose, or too old. `expired` tells the last apart."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class Signer:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a secret key is required to sign links")
        self._secret = secret
        self._plain: dict[str, URLSafeSerializer] = {}
        self._timed: dict[str, URLSafeTimedSerializer] = {}
        self._int_keys: dict[str, bytes] = {}

    def _key(self, namespace: str) -> bytes:
        """Derive each namespace's key once: itsdangerous would re-derive it on every call, and the sender
        signs two links per message."""
        return hmac.new(self._secret.encode(), f"newsletter.{namespace}".encode(), hashlib.sha256).digest()

    def _serializer(self, namespace: str) -> URLSafeSerializer:
        if namespace not in self._plain:
            self._plain[namespace] = URLSafeSerializer(self._key(namespace), signer_kwargs=_SIGNER_KWARGS)
        return self._plain[namespace]

    def _timed_serializer(self, namespace: str) -> URLSafeTimedSerializer:
        if namespace not in self._timed:
            self._timed[namespace] = URLSafeTimedSerializer(self._key(namespace + ".timed"),
                                                            signer_kwargs=_SIGNER_KWARGS)
        return self._timed[namespace]

    def sign(self, value: Any, namespace: str, *, expires: bool = False) -> str:
        """A URL-safe token; with expires=True it records when it was made, for unsign(max_age=...)."""
        if expires:
            return self._timed_serializer(namespace).dumps(value)
        if type(value) is int:
            return self._sign_int(value, namespace)
        return self._serializer(namespace).dumps(value)

    def _sign_int(self, value: int, namespace: str) -> str:
        """The token itsdangerous makes for an id (a test holds them equal; only for ids so large that
        itsdangerous would zlib them do the two differ, and both unsign alike), without its generic
        machinery: the sender signs two links per message."""
        keys = self._int_keys
        key = keys.get(namespace)
        if key is None:
            key = keys[namespace] = self._key(namespace)
        payload = base64.urlsafe_b64encode(str(value).encode()).rstrip(b"=")
        signature = base64.urlsafe_b64encode(hmac.digest(key, payload, "sha256")).rstrip(b"=")
        return (payload + b"." + signature).decode("ascii")

    def unsign(self, token: str, namespace: str, *, max_age: float | None = None) -> Any:
        try:
            if max_age is not None:
                return self._timed_serializer(namespace).loads(token, max_age=max_age)
            return self._serializer(namespace).loads(token)
        except SignatureExpired:
            raise BadToken("this link has expired", expired=True) from None
        except BadSignature:
            raise BadToken("this link is not valid") from None
