"""`python -m servers.facade` prints the GraphQL schema of every service (for `make gen`)."""

import sys

from servers.facade.schema import build_facade_schema
from servers.registry import all_services

sys.stdout.write(build_facade_schema(service.descriptor for service in all_services()).sdl)
