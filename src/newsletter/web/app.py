"""The Flask application: subscribe, confirm, preferences, unsubscribe, archive, the staff pages and preview.

Pages are rendered with newsletter.i18n's web environment (templates/web, the "web" catalogue) in the
subscriber's language, or the visitor's when we do not know who they are.
"""

from __future__ import annotations

import re
import signal
import sys
import threading

from flask import Flask, Response, redirect, url_for
from werkzeug.exceptions import HTTPException

from ..clock import Clock, SystemClock
from ..config import Config, ConfigError
from ..db import connect
from ..signing import Signer
from . import archive, hooks, preferences, preview, staff, staff_access, subscribe, unsubscribe
from .background import Background
from .pages import PageError, problem_page
from .staff_access import LoginThrottle, write_session_cookie
from .state import EXTENSION_KEY, ConnectionPool, WebState, close_database
from .throttle import Throttle

MAX_FORM_BYTES = 256 * 1024
# Pages never load anything from elsewhere, and never run script (the preview sets its own policy).
DEFAULT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
                  "frame-ancestors 'none'; base-uri 'none'")
_HTTP_PROBLEMS = {400: "bad_value", 404: "not_found", 405: "not_found", 413: "bad_value"}


def create_app(config: Config, *, clock: Clock = SystemClock()) -> Flask:
    """The web application; fails at once (ConfigError) without a secret key, and migrates the database now
    rather than on the first visit. Pages come from templates_dir/web where it has them, else the package."""
    signer = Signer(config.require_secret())
    connect(config.database).conn.close()
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    web_state = WebState(config, clock, signer, Throttle(clock), LoginThrottle(clock))
    web_state.background = Background(app)
    web_state.pool = ConnectionPool(config.database)
    app.extensions[EXTENSION_KEY] = web_state
    for module in (subscribe, preferences, unsubscribe, archive, preview, staff_access, staff, hooks):
        app.register_blueprint(module.blueprint)
    app.teardown_appcontext(close_database)
    app.register_error_handler(PageError, problem_page)
    app.register_error_handler(HTTPException, _http_problem)
    app.after_request(_security_headers)
    app.after_request(write_session_cookie)
    app.add_url_rule("/", "home", lambda: redirect(url_for("subscribe.form")))
    return app


def _http_problem(error: HTTPException) -> Response:
    status = error.code or 500
    return problem_page(PageError(status, _HTTP_PROBLEMS.get(status, "server_error")))


def _security_headers(response: Response) -> Response:
    """Token URLs must not leak through Referer, be cached, or be framed by another site."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", DEFAULT_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    return response


_TOKEN = re.compile(r"(/(?:u|p|confirm)/)[^/\s?\"]+")


def redact(path: str) -> str:
    """A path for the access log without the tokens of /u/, /p/ and /confirm/ links: each works like a password."""
    return _TOKEN.sub(r"\1[token]", path)


class AccessLog:
    """WSGI middleware writing one line per request to stderr, tokens redacted (waitress keeps no access log)."""

    def __init__(self, app, stream=None) -> None:
        self.app = app
        self.stream = stream or sys.stderr

    def __call__(self, environ, start_response):
        seen = {}

        def remember(status, headers, exc_info=None):
            seen["status"] = status.split(" ", 1)[0]
            return start_response(status, headers, exc_info)

        result = self.app(environ, remember)
        path = redact(environ.get("PATH_INFO", ""))
        print(f'{environ.get("REMOTE_ADDR", "-")} "{environ.get("REQUEST_METHOD")} {path} '
              f'{environ.get("SERVER_PROTOCOL")}" {seen.get("status", "-")}', file=self.stream, flush=True)
        return result


def serve(config: Config, host: str | None = None, port: int | None = None, *, threads: int | None = None,
          clock: Clock = SystemClock()) -> None:
    """Run the application on waitress (a production WSGI server) until Ctrl-C or SIGTERM; 127.0.0.1 unless
    told otherwise, with [web] threads worker threads."""
    import waitress

    app = create_app(config, clock=clock)
    host = host or config.web.host or "127.0.0.1"
    threads = threads or config.web.threads
    if threads < 1:
        raise ConfigError(f"[web] threads must be 1 or more, not {threads}")
    server = waitress.create_server(AccessLog(app), host=host, port=config.web.port if port is None else port,
                                    threads=threads, ident="newsletter", clear_untrusted_proxy_headers=False)
    shown_host = f"[{host}]" if ":" in host else host
    print(f"newsletter: serving on http://{shown_host}:{server.effective_port}/ with {threads} threads "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():  # systemd stops a service with SIGTERM
        signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.close()
        app.extensions[EXTENSION_KEY].background.drain()  # opt-in mails already promised go out first


def _stop(_signum, _frame) -> None:
    raise SystemExit(0)
