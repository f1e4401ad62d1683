"""Just-in-time access: request catalog.read for ten minutes, wait for approval, use it.

Scopes: none (any valid token may request; the policy says which scopes are requestable).

An approver (a different person holding admin.write) must approve the request while this
waits: give their token as CONDUCTOR_APPROVER_TOKEN and the example approves it itself, as
they would. The JIT token then carries catalog.read, and only that, until the grant ends.
"""

import os
import sys
from datetime import timedelta

from intelgraph.sdk import Client, bearer_token, request_jit
from intelgraph.sdk.access import AccessRequest
from intelgraph.sdk.transport import Connection


def approve_as_approver(request: AccessRequest) -> None:
    """What the approver does on their side (here with their token, if given)."""
    approver_token = os.environ.get("CONDUCTOR_APPROVER_TOKEN", "")
    if not approver_token:
        print(f"waiting for an approver to approve access request {request.id}", file=sys.stderr)
        return
    connection = Connection.from_env(os.environ)
    with Client(connection.target, connection.security, token=bearer_token(approver_token)) as c:
        c.access.approve_access(id=request.id, comment="approved by the jit_access example")


def main() -> None:
    """Run the example; exits 0 when it worked."""
    with Client.from_env() as client:
        grant = request_jit(
            client,
            ["catalog.read"],
            lasting=timedelta(minutes=10),
            reason="jit_access example",
            on_pending=approve_as_approver,
        )
    print(f"grant {grant.grant.id} of {', '.join(grant.grant.scope)} until {grant.ends_at}")
    connection = Connection.from_env(os.environ)
    with Client(connection.target, connection.security, token=grant.token_source()) as jit:
        caller = jit.access.get_caller()
    print(f"with the JIT token, {caller.subject} holds: {', '.join(caller.scopes)}")
    if list(caller.scopes) != ["catalog.read"]:
        sys.exit("the JIT token should carry exactly the granted scope")


if __name__ == "__main__":
    main()
