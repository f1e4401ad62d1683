"""`python -m servers.graphql_schema` prints the GraphQL schema of every service (for `make gen`).

It lives beside the composition root, not in the facade: the facade knows
contracts, and only the registry knows which services there are.
"""

import sys

from servers.facade import build_facade_schema
from servers.registry import all_services

if __name__ == "__main__":
    sys.stdout.write(build_facade_schema(service.descriptor for service in all_services()).sdl)
