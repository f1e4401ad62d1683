"""The web console: server-rendered pages over the platform's own API, with the signed-in token.

Signing in checks a bearer token by asking the platform who it speaks for
(`GetCaller`) and keeps it in an HttpOnly, SameSite=Strict session cookie;
every page then calls the platform through the SDK with that token, so a page
can only show what the token may read (a refusal is shown as such, never
worked around). State-changing requests carry a CSRF token (double submit:
a form field or an `X-CSRF-Token` header equal to the `conductor_csrf`
cookie). Everything is served from the platform itself — templates, one
stylesheet, one script — under a Content-Security-Policy that allows nothing
else, so the console works offline and needs no Node toolchain.

Pages: sign-in; documents (list, resumable upload over tus); a document (its
summary under a chosen purpose, its chunks with their lineage, each one an
anchor that highlights it in the text, downloads of the exports and the
manifest).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from intelgraph.sdk import ConductorError, PermissionDeniedError
from intelgraph.sdk import rag as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAccessClient, AsyncRagClient
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from servers.console.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    calling_as,
    csrf_ok,
    request_token,
)

HERE = Path(__file__).parent
#: Chunks a document page shows at once (a link leads to the next ones).
CHUNKS_PER_PAGE = 100
#: The purpose a document page shows first.
DEFAULT_PURPOSE = "support"
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
_FORMATS = {
    "summary": pb.EXPORT_FORMAT_SUMMARY_MARKDOWN,
    "chunks": pb.EXPORT_FORMAT_CHUNKS_JSONL,
    "manifest": pb.EXPORT_FORMAT_MANIFEST_JSON,
}
_FORMAT_NAMES = {number: name for name, number in _FORMATS.items()}
_ACTIONS = {pb.PII_ACTION_KEEP: "keep", pb.PII_ACTION_MASK: "mask", pb.PII_ACTION_DROP: "drop"}


class Console:
    """The console's pages.

    Args:
        rag: The Rag client the pages read through (its token source is the
            request's caller, see `session`).
        access: The Access client, to check a token at sign-in.
        prefix: Where the console is mounted.
        upload_url: Where the tus endpoint is mounted.
    """

    def __init__(
        self,
        rag: AsyncRagClient,
        access: AsyncAccessClient,
        *,
        prefix: str = "/console",
        upload_url: str = "/files",
    ) -> None:
        self._rag = rag
        self._access = access
        self._prefix = prefix.rstrip("/")
        self._upload_url = upload_url
        self._templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True),
            enable_async=False,
        )

    def routes(self) -> list[BaseRoute]:
        """The console's routes, and its static files."""
        p = self._prefix
        return [
            Route(p, self._home, methods=["GET"]),
            Route(p + "/", self._home, methods=["GET"]),
            Route(p + "/sign-in", self._sign_in, methods=["GET", "POST"]),
            Route(p + "/sign-out", self._sign_out, methods=["POST"]),
            Route(p + "/documents", self._documents, methods=["GET"]),
            Route(p + "/documents/{document_id}", self._document, methods=["GET"]),
            Route(p + "/documents/{document_id}/export", self._export, methods=["GET"]),
            Route(p + "/documents/{document_id}/delete", self._delete, methods=["POST"]),
            Mount(p + "/static", StaticFiles(directory=HERE / "static"), name="console-static"),
        ]

    # -- plumbing ------------------------------------------------------------------

    def _page(
        self, request: Request, template: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = self._templates.get_template(template).render(
            prefix=self._prefix,
            upload_url=self._upload_url,
            csrf=csrf,
            signed_in=bool(request.cookies.get(SESSION_COOKIE)),
            **values,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(
                CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=_secure(request)
            )
        return response

    def _redirect(self, path: str) -> RedirectResponse:
        return RedirectResponse(self._prefix + path, status_code=303, headers=SECURITY_HEADERS)

    async def _as_caller(
        self, request: Request, call: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, str]:
        """(result, problem): the call's result as the signed-in caller, or why there is none."""
        try:
            with calling_as(request.cookies.get(SESSION_COOKIE, "")):
                return await call(), ""
        except PermissionDeniedError:
            return None, "Your token may not read this (it lacks the scope the page needs)."
        except ConductorError as error:
            return None, error.details or error.code.name

    def _signed_out(self, request: Request) -> Response | None:
        if not request.cookies.get(SESSION_COOKIE):
            return self._redirect("/sign-in")
        return None

    # -- pages ---------------------------------------------------------------------

    async def _home(self, request: Request) -> Response:
        return self._signed_out(request) or self._redirect("/documents")

    async def _sign_in(self, request: Request) -> Response:
        if request.method == "GET":
            return self._page(request, "sign_in.html")
        form = await request.form()
        if not csrf_ok(request, str(form.get("csrf", ""))):
            return self._page(request, "sign_in.html", 403, problem="The form expired: try again.")
        token = str(form.get("token", "")).strip().removeprefix("Bearer ").strip()
        try:
            with calling_as(token):
                caller = await self._access.get_caller()
        except ConductorError as error:
            problem = error.details or "That token is not valid here."
            return self._page(request, "sign_in.html", 401, problem=problem)
        lifetime = int(caller.expires_at.seconds - _now_s())
        if lifetime <= 0:
            return self._page(request, "sign_in.html", 401, problem="That token has expired.")
        response = self._redirect("/documents")
        secure = _secure(request)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=lifetime,
            httponly=True,
            samesite="strict",
            secure=secure,
        )
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="strict", secure=secure
        )
        return response

    async def _sign_out(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request, str(form.get("csrf", ""))):
            return self._page(request, "sign_in.html", 403, problem="The form expired: try again.")
        response = self._redirect("/sign-in")
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def _documents(self, request: Request) -> Response:
        if (away := self._signed_out(request)) is not None:
            return away
        listed, problem = await self._as_caller(request, self._rag.list_documents)
        documents = list(listed.documents) if listed is not None else []
        return self._page(request, "documents.html", documents=documents, problem=problem)

    async def _document(self, request: Request) -> Response:
        if (away := self._signed_out(request)) is not None:
            return away
        document_id = request.path_params["document_id"]
        listed, problem = await self._as_caller(request, self._rag.list_purpose_templates)
        if listed is None:
            return self._page(request, "document.html", 403, problem=problem, document=None)
        templates = list(listed.templates)
        current = [template for template in templates if template.current]
        # The default shows the least: support masks every kind (legal-review keeps names).
        fallback = current[0].id if current else ""
        default = next((t.id for t in current if t.id == DEFAULT_PURPOSE), fallback)
        purpose = request.query_params.get("purpose") or default
        template = next((t for t in current if t.id == purpose), None)
        if template is None:
            return self._page(
                request, "document.html", 400, problem=f"No purpose {purpose!r}.", document=None
            )
        found, problem = await self._as_caller(
            request, lambda: self._rag.get_document(document_id=document_id)
        )
        if found is None:
            return self._page(request, "document.html", 404, problem=problem, document=None)
        summary, summary_problem = await self._as_caller(
            request, lambda: self._rag.summarize(document_id=document_id, purpose=purpose)
        )
        chunks, chunks_problem = await self._as_caller(
            request,
            lambda: self._rag.list_chunks(
                document_id=document_id,
                purpose=purpose,
                page=PageRequest(
                    page_size=CHUNKS_PER_PAGE, page_token=request.query_params.get("chunks", "")
                ),
            ),
        )
        manifest, manifest_problem = await self._as_caller(
            request, lambda: self._rag.get_manifest(document_id=document_id, purpose=purpose)
        )
        return self._page(
            request,
            "document.html",
            document=found.document,
            purposes=current,
            purpose=template,
            rules={rule.kind: _ACTIONS.get(rule.action, "mask") for rule in template.rules},
            exports=[_FORMAT_NAMES[number] for number in template.exports],
            summary=summary.summary if summary is not None else None,
            summary_problem=summary_problem,
            chunks=list(chunks.chunks) if chunks is not None else [],
            next_chunks=chunks.page.next_page_token if chunks is not None else "",
            chunks_problem=chunks_problem,
            manifest=manifest.manifest if manifest is not None else None,
            manifest_problem=manifest_problem,
        )

    async def _export(self, request: Request) -> Response:
        if (away := self._signed_out(request)) is not None:
            return away
        document_id = request.path_params["document_id"]
        purpose = request.query_params.get("purpose", "")
        export_format = _FORMATS.get(request.query_params.get("format", ""))
        if export_format is None:
            return _plain("unknown export format\n", 400)
        token = request_token(request)
        try:
            with calling_as(token):
                stream = aiter(
                    self._rag.export_document(
                        document_id=document_id, purpose=purpose, format=export_format
                    )
                )
                first = await anext(stream)
        except ConductorError as error:
            return _refused(error)

        async def body() -> AsyncIterator[bytes]:
            with calling_as(token):
                async for piece in stream:
                    yield piece.data

        info = first.info
        return StreamingResponse(
            body(),
            media_type=info.media_type,
            headers={
                **SECURITY_HEADERS,
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(info.filename)}",
                "Content-Length": str(info.size_bytes),
                "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(info.sha256)).decode()}:",
            },
        )

    async def _delete(self, request: Request) -> Response:
        if (away := self._signed_out(request)) is not None:
            return away
        form = await request.form()
        if not csrf_ok(request, str(form.get("csrf", ""))):
            return _plain("the form expired: reload the page\n", 403)
        document_id = request.path_params["document_id"]
        try:
            with calling_as(request_token(request)):
                await self._rag.delete_document(document_id=document_id)
        except ConductorError as error:
            return _refused(error)
        return self._redirect("/documents")


_STATUS_OF_CODE = {
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "FAILED_PRECONDITION": 409,
    "UNAVAILABLE": 503,
}


def _plain(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain", headers=SECURITY_HEADERS)


def _refused(error: ConductorError) -> Response:
    """A refusal from the platform as a plain-text HTTP answer with its status."""
    return _plain(
        (error.details or error.code.name) + "\n", _STATUS_OF_CODE.get(error.code.name, 400)
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _now_s() -> float:
    return time.time()
