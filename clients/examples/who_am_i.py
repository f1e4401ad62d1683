"""Who am I? Asks the platform whom the token belongs to (GetCaller).

Scopes: none (any valid token of the tenant).

    CONDUCTOR_TARGET=127.0.0.1:50051 CONDUCTOR_PLAINTEXT=1 CONDUCTOR_TOKEN=... python who_am_i.py
"""

from intelgraph.sdk import Client


def main() -> None:
    """Run the example; exits 0 when it worked."""
    with Client.from_env() as client:
        caller = client.access.get_caller()
    print(f"subject {caller.subject} of tenant {caller.tenant_id}")
    print(f"scopes: {', '.join(caller.scopes) or '(none)'}")


if __name__ == "__main__":
    main()
