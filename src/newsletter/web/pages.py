"""Render the web templates in one language, and turn a refused request into a page the visitor can read."""

from __future__ import annotations

from flask import Response, request, url_for

from ..i18n import negotiate, web_environment
from .state import state

# What each problem page says is chosen in templates/web/problem.html by its kind.
PROBLEM_KINDS = ("invalid_link", "expired_confirmation", "used_confirmation", "bad_form", "bad_value", "not_found",
                 "not_allowed", "too_many", "server_error")


class PageError(Exception):
    """Stop handling a request and show the visitor a problem page; nothing has been changed."""

    def __init__(self, status: int, kind: str, lang: str | None = None, **context) -> None:
        super().__init__(f"{status} {kind}")
        if kind not in PROBLEM_KINDS:
            raise ValueError(f"unknown problem kind {kind!r}; add it to PROBLEM_KINDS and problem.html")
        self.status = status
        self.kind = kind
        self.lang = lang
        self.context = context


def visitor_language() -> str:
    """The visitor's language from ?lang= or Accept-Language (for people we do not know yet)."""
    return negotiate(request.args.get("lang") or request.headers.get("Accept-Language"))


def render_page(template: str, lang: str, *, status: int = 200, **context) -> Response:
    environment = web_environment(state().config.templates_dir, lang)
    html = environment.get_template(template).render(
        list_name=state().config.list_name_for(lang), url_for=url_for, **context
    )
    return Response(html, status=status, mimetype="text/html")


def problem_page(error: PageError) -> Response:
    lang = error.lang or visitor_language()
    context = {"subscribe_url": url_for("subscribe.form", lang=lang), **error.context}
    return render_page("problem.html", lang, status=error.status, kind=error.kind, **context)
