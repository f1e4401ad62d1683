"""The `conductor` command: serve the platform and operate it.

Usage::

  conductor serve [--grpc-port 50051] [--http-port 8080] [--database-url URL] [...every setting]
  conductor migrate [--to REVISION] [--check]
  conductor keys rotate|retire|list
  conductor token mint --tenant UUID --scopes a,b [--ttl 15m] [--sub NAME]
  conductor scopes [--json]
  conductor audit export --tenant UUID [--out FILE]
  conductor demo seed [--tenant UUID] [--nodes 250000] [--edges 1200000] [--seed 7]
  conductor billing verify FILE [--jwks FILE] | billing jwks
  conductor billing tax-sandbox [--host 127.0.0.1] [--port 8089]
  conductor rag verify MANIFEST [--document FILE] [--text FILE] [--jwks FILE] | rag jwks
  conductor backup --out FILE | conductor restore FILE [--force]
  conductor switch list | set NAME VALUE --reason WHY | history [NAME]
  conductor acceptance [--lane L] [--target ADDR] [--quick] [--out DIR]
  conductor evidence build [--target ADDR] --out DIR | verify DIR [--jwks FILE] | jwks
  conductor completion bash|zsh|fish

`conductor COMMAND --help` shows each flag with its default and its CONDUCTOR_* variable.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main", "parse_ttl"]


# The commands load when one runs, not when this package is imported: worker processes the
# server spawns import the `conductor` script again, and need none of them.
def main(argv: Sequence[str] | None = None) -> int:
    """Run the `conductor` command line (see `servers.cli.main.main`)."""
    from servers.cli.main import main as run  # noqa: PLC0415 - see above

    return run(argv)


def parse_ttl(text: str) -> float:
    """Seconds in a lifetime such as "15m" (see `servers.cli.credentials.parse_ttl`)."""
    from servers.cli.credentials import parse_ttl as parse  # noqa: PLC0415 - see above

    return parse(text)
