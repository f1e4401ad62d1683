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
manifest); the catalog, what-if scenarios and access approvals (`catalog`,
`approvals`). A section shows, and its pages exist, only where its service is
served; any other path under the console is a readable 404.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

from intelgraph.sdk import ConductorError
from intelgraph.sdk import rag as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAccessClient, AsyncCatalogClient, AsyncRagClient
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from servers.console.approvals import ApprovalPages
from servers.console.catalog import CatalogPages
from servers.console.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    calling_as,
    csrf_ok,
    request_token,
)
from servers.console.shell import HERE, SECURITY_HEADERS, Refusal, Shell, refusal_of, secure

#: Chunks a document page shows at once (a link leads to the next ones).
CHUNKS_PER_PAGE = 100
#: The purpose a document page shows first.
DEFAULT_PURPOSE = "support"
_FORMATS = {
    "summary": pb.EXPORT_FORMAT_SUMMARY_MARKDOWN,
    "chunks": pb.EXPORT_FORMAT_CHUNKS_JSONL,
    "manifest": pb.EXPORT_FORMAT_MANIFEST_JSON,
}
_FORMAT_NAMES = {number: name for name, number in _FORMATS.items()}
_ACTIONS = {pb.PII_ACTION_KEEP: "keep", pb.PII_ACTION_MASK: "mask", pb.PII_ACTION_DROP: "drop"}


class Console:
    """The console's pages, for the sections whose services this process serves.

    Every client's token source is the request's caller (see `session`).

    Args:
        access: The Access client: checks a token at sign-in, and serves the
            approvals pages when `approvals` is on.
        rag: The Rag client of the documents pages; None where Rag is not served.
        catalog: The Catalog client of the catalog, what-if and scenario pages;
            None where the Catalog is not served.
        approvals: Whether the Access service is served (the approvals pages).
        prefix: Where the console is mounted.
        upload_url: Where the tus endpoint is mounted (used with `rag`).
    """

    def __init__(
        self,
        access: AsyncAccessClient,
        *,
        rag: AsyncRagClient | None = None,
        catalog: AsyncCatalogClient | None = None,
        approvals: bool = False,
        prefix: str = "/console",
        upload_url: str = "/files",
    ) -> None:
        self._rag = rag
        self._access = access
        sections: tuple[str, ...] = ("documents",) if rag is not None else ()
        if catalog is not None:
            sections += ("catalog", "what-if", "scenarios")
        if approvals:
            sections += ("approvals",)
        self._shell = Shell(sections, prefix=prefix, upload_url=upload_url if rag else "")
        self._prefix = self._shell.prefix
        self._catalog = CatalogPages(self._shell, catalog) if catalog is not None else None
        self._approvals = ApprovalPages(self._shell, access) if approvals else None

    def routes(self) -> list[BaseRoute]:
        """The console's routes, its static files, and a readable 404 for any other path."""
        p = self._prefix
        routes: list[BaseRoute] = [
            Route(p, self._home, methods=["GET"]),
            Route(p + "/", self._home, methods=["GET"]),
            Route(p + "/sign-in", self._sign_in, methods=["GET", "POST"]),
            Route(p + "/sign-out", self._sign_out, methods=["POST"]),
        ]
        if self._rag is not None:
            routes += [
                Route(p + "/documents", self._documents, methods=["GET"]),
                Route(p + "/documents/{document_id}", self._document, methods=["GET"]),
                Route(p + "/documents/{document_id}/export", self._export, methods=["GET"]),
                Route(p + "/documents/{document_id}/delete", self._delete, methods=["POST"]),
            ]
        if self._catalog is not None:
            routes += self._catalog.routes()
        if self._approvals is not None:
            routes += self._approvals.routes()
        return [
            *routes,
            Mount(p + "/static", StaticFiles(directory=HERE / "static"), name="console-static"),
            Route(p + "/{path:path}", self._not_found, methods=["GET", "POST"]),
        ]

    # -- plumbing ------------------------------------------------------------------

    def _page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        return self._shell.page(request, template, status, **values)

    def _redirect(self, path: str) -> Response:
        return self._shell.redirect(path)

    async def _as_caller(
        self, request: Request, call: Callable[[], Awaitable[Any]]
    ) -> tuple[Any, str]:
        """(result, problem): the call's result as the signed-in caller, or why there is none."""
        result = await self._shell.call(request, call)
        if isinstance(result, Refusal):
            return None, result.message
        return result, ""

    def _signed_out(self, request: Request) -> Response | None:
        return self._shell.signed_out(request)

    @property
    def _rag_client(self) -> AsyncRagClient:
        if self._rag is None:  # the documents routes exist only with a Rag client
            raise LookupError("Rag is not served here")
        return self._rag

    # -- pages ---------------------------------------------------------------------

    async def _not_found(self, request: Request) -> Response:
        return self._shell.not_found(request)

    async def _home(self, request: Request) -> Response:
        return self._signed_out(request) or self._redirect(self._shell.home)

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
        response = self._redirect(self._shell.home_for(list(caller.scopes)))
        https = secure(request)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=lifetime,
            httponly=True,
            samesite="strict",
            secure=https,
        )
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), httponly=True, samesite="strict", secure=https
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
        listed, problem = await self._as_caller(request, self._rag_client.list_documents)
        documents = list(listed.documents) if listed is not None else []
        return self._page(request, "documents.html", documents=documents, problem=problem)

    async def _document(self, request: Request) -> Response:
        if (away := self._signed_out(request)) is not None:
            return away
        document_id = request.path_params["document_id"]
        listed, problem = await self._as_caller(request, self._rag_client.list_purpose_templates)
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
            request, lambda: self._rag_client.get_document(document_id=document_id)
        )
        if found is None:
            return self._page(request, "document.html", 404, problem=problem, document=None)
        summary, summary_problem = await self._as_caller(
            request, lambda: self._rag_client.summarize(document_id=document_id, purpose=purpose)
        )
        chunks, chunks_problem = await self._as_caller(
            request,
            lambda: self._rag_client.list_chunks(
                document_id=document_id,
                purpose=purpose,
                page=PageRequest(
                    page_size=CHUNKS_PER_PAGE, page_token=request.query_params.get("chunks", "")
                ),
            ),
        )
        manifest, manifest_problem = await self._as_caller(
            request, lambda: self._rag_client.get_manifest(document_id=document_id, purpose=purpose)
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
            return self._shell.refused(request, Refusal("There is no such export format.", 400))
        token = request_token(request)
        try:
            with calling_as(token):
                stream = aiter(
                    self._rag_client.export_document(
                        document_id=document_id, purpose=purpose, format=export_format
                    )
                )
                first = await anext(stream)
        except ConductorError as error:
            return self._shell.refused(request, refusal_of(error))

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
        if await self._shell.posted(request) is None:
            return self._shell.form_expired(request)
        document_id = request.path_params["document_id"]
        try:
            with calling_as(request_token(request)):
                await self._rag_client.delete_document(document_id=document_id)
        except ConductorError as error:
            return self._shell.refused(request, refusal_of(error, "delete documents"))
        return self._redirect("/documents")


def _now_s() -> float:
    return time.time()
