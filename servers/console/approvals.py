"""The console's approvals page: pending access requests to decide, active grants to watch.

Approvers (holders of `admin.write`) see the tenant's pending requests with
who asks for which scopes, why and for how long, and approve or deny each with
a comment; everyone sees the active grants the platform shows them (approvers
all of them, grantees their own) with the time each has left, counting down
in the browser (console.js) from the end instant the server rendered, and may
revoke them where the platform allows. Every refusal (not an approver, one's
own request, a request no longer pending) comes back as the platform's
sentence with its HTTP status, on the same page.

Routes under the console's prefix: `GET /approvals`,
`POST /approvals/{request_id}` (decision=approve|deny, comment) and
`POST /approvals/grants/{grant_id}/revoke` (reason).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from intelgraph.sdk import access as pb
from intelgraph.sdk.pagination import PageRequest
from intelgraph.sdk.services import AsyncAccessClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from servers.console import formats
from servers.console.shell import Refusal, Shell, form_text

#: Requests and grants a page shows at once.
PER_PAGE = 100
#: Fixed notices a redirect may ask the page to show.
NOTICES = {
    "approved": "Approved.",
    "approved-waiting": "Your approval is recorded; the request needs more approvals.",
    "denied": "Denied.",
    "revoked": "Revoked: the grant's token no longer works.",
}


class ApprovalPages:
    """The approvals page and its forms.

    Args:
        shell: Renders the pages and calls as the signed-in caller.
        access: The Access client, calling with the request's caller's token.
    """

    def __init__(self, shell: Shell, access: AsyncAccessClient) -> None:
        self._shell = shell
        self._access = access

    def routes(self) -> list[BaseRoute]:
        """The approvals routes."""
        p = self._shell.prefix + "/approvals"
        return [
            Route(p, self._approvals, methods=["GET"]),
            Route(p + "/grants/{grant_id}/revoke", self._revoke, methods=["POST"]),
            Route(p + "/{request_id}", self._decide, methods=["POST"]),
        ]

    async def _approvals(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        return await self._render(request, notice=notice)

    async def _render(
        self, request: Request, *, notice: str = "", problem: str = "", status: int = 200
    ) -> Response:
        pending, grants = await asyncio.gather(
            self._shell.call(
                request,
                lambda: self._access.list_access_requests(
                    status=pb.ACCESS_REQUEST_STATUS_PENDING,
                    page=PageRequest(page_size=PER_PAGE),
                ),
                "review access requests",
            ),
            self._shell.call(
                request,
                lambda: self._access.list_grants(
                    status=pb.GRANT_STATUS_ACTIVE, page=PageRequest(page_size=PER_PAGE)
                ),
                "list grants",
            ),
        )
        values: dict[str, Any] = {"section": "approvals", "notice": notice, "now": time.time()}
        if isinstance(pending, Refusal):
            values |= {"requests": [], "requests_problem": pending.message}
            status = status if status != 200 else pending.status
        else:
            values |= {"requests": list(pending.access_requests), "requests_problem": ""}
        if isinstance(grants, Refusal):
            values |= {"grants": [], "grants_problem": grants.message}
        else:
            values |= {"grants": list(grants.grants), "grants_problem": ""}
        return self._shell.page(
            request,
            "approvals.html",
            status,
            problem=problem,
            requested_for=requested_for,
            approvals_of=approvals_of,
            remaining=remaining,
            **values,
        )

    async def _decide(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        form = await self._shell.posted(request)
        if form is None:
            return self._shell.form_expired(request)
        request_id = request.path_params["request_id"][:64]
        comment = form_text(form, "comment", 1000)
        decision = form.get("decision")
        if decision == "approve":
            approved = await self._shell.call(
                request,
                lambda: self._access.approve_access(id=request_id, comment=comment),
                "approve access requests",
            )
            if isinstance(approved, Refusal):
                return await self._render(request, problem=approved.message, status=approved.status)
            done = "approved" if approved.HasField("grant") else "approved-waiting"
        elif decision == "deny":
            denied = await self._shell.call(
                request,
                lambda: self._access.deny_access(id=request_id, comment=comment),
                "deny access requests",
            )
            if isinstance(denied, Refusal):
                return await self._render(request, problem=denied.message, status=denied.status)
            done = "denied"
        else:
            return await self._render(request, problem="Choose Approve or Deny.", status=400)
        return self._shell.redirect(f"/approvals?notice={done}")

    async def _revoke(self, request: Request) -> Response:
        if (away := self._shell.signed_out(request)) is not None:
            return away
        form = await self._shell.posted(request)
        if form is None:
            return self._shell.form_expired(request)
        grant_id = request.path_params["grant_id"][:64]
        reason = form_text(form, "reason", 1000)
        revoked = await self._shell.call(
            request,
            lambda: self._access.revoke_grant(grant_id=grant_id, reason=reason),
            "revoke grants",
        )
        if isinstance(revoked, Refusal):
            return await self._render(request, problem=revoked.message, status=revoked.status)
        return self._shell.redirect("/approvals?notice=revoked")


def requested_for(access_request: pb.AccessRequest) -> str:
    """How long the requester asked for: from the request's creation to its requested end."""
    return formats.duration(access_request.expires_at.seconds - access_request.created_at.seconds)


def approvals_of(access_request: pb.AccessRequest) -> int:
    """Approvals recorded so far on a request."""
    return sum(review.decision == pb.REVIEW_DECISION_APPROVE for review in access_request.reviews)


def remaining(grant: pb.Grant, now: float) -> str:
    """The time a grant has left at `now`, as the page first shows it (console.js counts down)."""
    left = grant.ends_at.seconds - now
    return formats.duration(left, parts=3) if left > 0 else "expired"
