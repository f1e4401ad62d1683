"""What every console page shares: the layout and navigation, the session, CSRF, refusals.

Pages render through one `Shell`: autoescaped templates with the console's
filters, the security headers, the CSRF cookie, navigation to the sections
this process serves, and one way to turn a refusal of the platform (a typed
SDK error) into a readable page with the matching HTTP status.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from intelgraph.sdk import ConductorError, ErrorReason, PermissionDeniedError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from servers.console import formats, graphs
from servers.console.session import CSRF_COOKIE, SESSION_COOKIE, calling_as, csrf_ok

HERE = Path(__file__).parent
#: What the console's pages may load: their own origin's script, style and images only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: The HTTP status a page answers with when the platform refused with a gRPC code.
STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
#: Said when a form's CSRF token is missing or wrong.
FORM_EXPIRED = "The form expired or did not come from this console: reload the page and try again."

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Section:
    """A part of the console, shown in the navigation when its service is served."""

    name: str
    title: str
    path: str
    #: The scope a token needs to read it.
    scope: str = ""


#: Every section, in navigation order.
SECTIONS = (
    Section("documents", "Documents", "/documents", "rag.read"),
    Section("catalog", "Catalog", "/catalog", "catalog.read"),
    Section("what-if", "What-if", "/catalog/what-if", "catalog.read"),
    Section("scenarios", "Scenarios", "/catalog/scenarios", "catalog.read"),
    Section("approvals", "Approvals", "/approvals", "admin.write"),
)


@dataclass(frozen=True)
class Refusal:
    """A refusal of the platform as a page shows it: a sentence and an HTTP status."""

    message: str
    status: int


def refusal_of(error: ConductorError, doing: str = "read this") -> Refusal:
    """How a page words a typed SDK error, and the HTTP status it answers with.

    Args:
        error: The platform's refusal.
        doing: What the page tried, for a missing scope ("read this", "approve requests").
    """
    status = STATUS_OF_CODE.get(error.code.name, 500 if error.code.name == "INTERNAL" else 400)
    generic = error.reason in (
        ErrorReason.ERROR_REASON_UNSPECIFIED,
        ErrorReason.ERROR_REASON_PERMISSION_DENIED,
    )
    if isinstance(error, PermissionDeniedError) and generic:
        needed = error.metadata.get("permission", "")
        lacking = f"the {needed} scope" if needed else "the scope the page needs"
        return Refusal(f"Your token may not {doing} (it lacks {lacking}).", status)
    if error.code.name == "UNAUTHENTICATED":
        return Refusal("Your session is no longer valid: sign in again.", status)
    if error.code.name == "UNIMPLEMENTED":
        return Refusal("The platform does not offer this yet.", status)
    details = (error.details or error.code.name.replace("_", " ").lower()).strip()
    sentence = details[:1].upper() + details[1:]
    return Refusal(sentence if sentence.endswith(".") else sentence + ".", status)


class Shell:
    """Renders the console's pages and speaks to the platform as the signed-in caller.

    Args:
        sections: Names of the sections served here (see `SECTIONS`).
        prefix: Where the console is mounted.
        upload_url: Where tus uploads go ("" without Rag).
    """

    def __init__(self, sections: tuple[str, ...], *, prefix: str, upload_url: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.upload_url = upload_url
        self.sections = tuple(section for section in SECTIONS if section.name in sections)
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            enable_async=False,
        )
        self.templates.filters.update(
            percent=graphs.percent,
            duration=formats.duration,
            minutes=formats.minutes,
            window=formats.window,
            money=formats.money,
            instant=formats.instant,
            iso=formats.iso,
            number=formats.number,
        )
        # Compiled now, at start-up, rather than in the first request's callback.
        for name in self.templates.list_templates(extensions=["html"]):
            self.templates.get_template(name)

    def serves(self, name: str) -> bool:
        """Whether the section `name` is served here."""
        return any(section.name == name for section in self.sections)

    @property
    def home(self) -> str:
        """The path of the first section served."""
        return self.sections[0].path if self.sections else "/sign-in"

    def home_for(self, scopes: Sequence[str]) -> str:
        """Where signing in leads: the first section served that a token of `scopes` may read."""
        readable = next((s for s in self.sections if s.scope in scopes), None)
        return readable.path if readable is not None else self.home

    def page(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page rendered from `template` with the shell's values and `values`."""
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        defaults: dict[str, Any] = {"problem": "", "notice": "", "section": ""}
        html = self.templates.get_template(template).render(
            prefix=self.prefix,
            upload_url=self.upload_url,
            csrf=csrf,
            signed_in=bool(request.cookies.get(SESSION_COOKIE)),
            sections=self.sections,
            **(defaults | values),
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=secure(request)
            )
        return response

    def refused(self, request: Request, refusal: Refusal, *, back: str = "") -> HTMLResponse:
        """A page saying why the platform (or the console) refused, with its status."""
        return self.page(
            request,
            "refused.html",
            refusal.status,
            problem=refusal.message,
            http_status=refusal.status,
            back=back,
        )

    def not_found(self, request: Request) -> HTMLResponse:
        """The console's page for a path it does not serve (a section not served here)."""
        return self.refused(request, Refusal("There is no such page here.", 404))

    def redirect(self, path: str) -> RedirectResponse:
        """A 303 to `path` within the console (after a form, never re-posted on reload)."""
        return RedirectResponse(self.prefix + path, status_code=303, headers=SECURITY_HEADERS)

    def signed_out(self, request: Request) -> Response | None:
        """The way to sign in, when the request carries no session; None otherwise."""
        if not request.cookies.get(SESSION_COOKIE):
            return self.redirect("/sign-in")
        return None

    async def posted(self, request: Request) -> FormData | None:
        """The form of a POST whose CSRF token matches its cookie; None when it does not."""
        form = await request.form()
        if not csrf_ok(request, str(form.get("csrf", ""))):
            return None
        return form

    def form_expired(self, request: Request) -> HTMLResponse:
        """The refusal of a POST without the right CSRF token."""
        return self.refused(request, Refusal(FORM_EXPIRED, 403))

    async def call(
        self, request: Request, call: Callable[[], Awaitable[ResultT]], doing: str = "read this"
    ) -> ResultT | Refusal:
        """The call's result as the signed-in caller, or how the platform refused it."""
        try:
            with calling_as(request.cookies.get(SESSION_COOKIE, "")):
                return await call()
        except ConductorError as error:
            return refusal_of(error, doing)


def secure(request: Request) -> bool:
    """Whether cookies must be Secure (the request came over HTTPS)."""
    return request.url.scheme == "https"


def form_text(form: Mapping[str, Any], name: str, limit: int = 1000) -> str:
    """A form field as stripped text, at most `limit` characters."""
    return str(form.get(name, "") or "").strip()[:limit]
