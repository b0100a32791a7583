"""Who may use the staff pages (/staff/, /preview): the login, its session cookie, CSRF and the slow-down.

Without `[web] staff_password` only this machine is let in (a request relayed by a proxy counts as remote),
as /preview always was. With it, everyone logs in, from anywhere. The setting holds a hash
(`newsletter staff set-password` writes it); the password itself is never stored.

The session is a cookie signed with the secret key, carrying a random session id, when it was issued and
a fingerprint of the password hash (changing the password ends every session). A logged-in session also
has a row in staff_sessions, which a logout ends for good. The cookie is HttpOnly, SameSite=Lax, and
Secure whenever the page was served over https. Every staff form carries a CSRF token
bound to that session id, so another site cannot make a staff member's browser press a button; the
cookie exists (unauthenticated) even in localhost mode for that reason.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass

from flask import Blueprint, Response, g, redirect, request, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from ..clock import Clock, utc_iso
from ..signing import BadToken
from .client import client_address, is_local_request, request_is_https
from .pages import PageError, render_page
from .state import database, state
from .tokens import form_token, form_token_is_valid, read_dated, sign_dated

blueprint = Blueprint("staff_access", __name__, url_prefix="/staff")

COOKIE = "newsletter_staff"
SESSION_NAMESPACE = "staff-session"
SESSION_MAX_AGE = 12 * 3600
FREE_FAILURES = 3  # failed logins from one address before each further try must wait
MAX_DELAY = 15 * 60.0


def hash_password(password: str) -> str:
    """What `newsletter staff set-password` stores: a salted scrypt hash (werkzeug's format)."""
    if len(password) < 10:
        raise ValueError("a staff password needs at least 10 characters")
    return generate_password_hash(password, method="scrypt")


def password_is_set() -> bool:
    return bool(state().config.web.staff_password)


def _fingerprint() -> str:
    stored = state().config.web.staff_password
    return hashlib.sha256(stored.encode()).hexdigest()[:16] if stored else ""


@dataclass
class StaffSession:
    sid: str
    authenticated: bool
    new: bool = False  # to be sent as a cookie with this response


def current_session() -> StaffSession:
    """This request's session: from its cookie when genuine and fresh, else a new unauthenticated one."""
    if "staff_session" in g:
        return g.staff_session
    session = None
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            dated = read_dated(state().signer, cookie, SESSION_NAMESPACE, state().clock)
            value = dated.value
            if (isinstance(value, dict) and isinstance(value.get("s"), str)
                    and 0 <= dated.age_seconds <= SESSION_MAX_AGE and value.get("p") == _fingerprint()):
                session = StaffSession(value["s"], bool(value.get("a")) and _is_open(value["s"]))
        except BadToken:
            pass
    g.staff_session = session or StaffSession(secrets.token_urlsafe(18), False, new=True)
    return g.staff_session


def _is_open(sid: str) -> bool:
    return database().execute("SELECT 1 FROM staff_sessions WHERE sid = ? AND ended_at IS NULL",
                              [sid]).fetchone() is not None


def _issue(session: StaffSession) -> None:
    g.staff_session = StaffSession(session.sid, session.authenticated, new=True)


def write_session_cookie(response: Response) -> Response:
    """after_request: send the session cookie when this request made or changed the session."""
    session = g.get("staff_session")
    if session is not None and session.new:
        value = sign_dated(state().signer, {"s": session.sid, "a": session.authenticated, "p": _fingerprint()},
                           SESSION_NAMESPACE, state().clock)
        response.set_cookie(COOKIE, value, max_age=SESSION_MAX_AGE, path="/", httponly=True, samesite="Lax",
                            secure=request_is_https())
    return response


def is_staff() -> bool:
    """Logged in, or (no password set) on this machine."""
    if password_is_set():
        return current_session().authenticated
    return is_local_request()


def require_staff() -> Response | None:
    """before_request of every staff blueprint: the login form, or a 403 when nobody may log in from here."""
    if is_staff():
        return None
    if not password_is_set():
        raise PageError(403, "not_allowed")
    if request.method == "GET":
        return redirect(url_for("staff_access.login", next=request.full_path.rstrip("?")), code=303)
    raise PageError(403, "not_allowed")


def csrf_token() -> str:
    return form_token(state().signer, f"staff:{current_session().sid}", state().clock)


def check_csrf() -> None:
    """Every staff POST must carry the token of this session's forms (a 400 page otherwise, nothing done)."""
    if not form_token_is_valid(state().signer, request.form.get("csrf_token"), f"staff:{current_session().sid}",
                               state().clock):
        raise PageError(400, "bad_form", "en", retry_url=request.referrer or url_for("staff.dashboard"))


class LoginThrottle:
    """After FREE_FAILURES failed logins from one address, each further try must wait twice as long as the
    last (2, 4, 8 s ... up to 15 minutes); a success clears the address. In memory, per process."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (failures, monotonic time of the last)

    def wait_seconds(self, address: str) -> float:
        with self._lock:
            failures, last = self._failures.get(address, (0, 0.0))
        if failures < FREE_FAILURES:
            return 0.0
        delay = min(MAX_DELAY, 2.0 ** (failures - FREE_FAILURES + 1))
        return max(0.0, last + delay - self.clock.monotonic())

    def failed(self, address: str) -> None:
        with self._lock:
            failures, _ = self._failures.get(address, (0, 0.0))
            self._failures[address] = (failures + 1, self.clock.monotonic())
            if len(self._failures) > 10_000:  # a flood of addresses must not grow memory without end
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login must never send anyone elsewhere."""
    if target and target.startswith("/staff") and not target.startswith("//"):
        return target
    return url_for("staff.dashboard")


@blueprint.get("/login")
def login() -> Response:
    if not password_is_set():
        return redirect(url_for("staff.dashboard"), code=303)
    return render_page("staff/login.html", "en", csrf_token=csrf_token(), next=_safe_next(request.args.get("next")),
                       error="")


@blueprint.post("/login")
def login_submit() -> Response:
    if not password_is_set():
        return redirect(url_for("staff.dashboard"), code=303)
    check_csrf()
    throttle: LoginThrottle = state().login_throttle
    address = client_address()
    target = _safe_next(request.form.get("next"))
    wait = throttle.wait_seconds(address)
    if wait > 0:
        return render_page("staff/login.html", "en", status=429, csrf_token=csrf_token(), next=target,
                           error=f"Too many failed attempts: wait {wait:.0f} seconds, then try again.")
    given = request.form.get("password", "")
    if not given or not check_password_hash(state().config.web.staff_password, given):
        throttle.failed(address)
        return render_page("staff/login.html", "en", status=401, csrf_token=csrf_token(), next=target,
                           error="That password is not right.")
    throttle.succeeded(address)
    sid = secrets.token_urlsafe(18)  # a new id: a planted cookie gains nothing
    database().execute("INSERT INTO staff_sessions (sid, created_at) VALUES (?, ?)",
                       [sid, utc_iso(state().clock.now())])
    _issue(StaffSession(sid, True))
    return redirect(target, code=303)


@blueprint.post("/logout")
def logout() -> Response:
    check_csrf()
    database().execute("UPDATE staff_sessions SET ended_at = ? WHERE sid = ? AND ended_at IS NULL",
                       [utc_iso(state().clock.now()), current_session().sid])
    _issue(StaffSession(secrets.token_urlsafe(18), False))
    return redirect(url_for("staff_access.login") if password_is_set() else url_for("staff.dashboard"), code=303)
