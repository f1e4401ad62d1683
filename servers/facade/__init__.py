"""The GraphQL facade generated from the contracts: schema, resolvers, persisted operations."""

from pathlib import Path

from servers.facade.endpoint import FacadeLimits, GraphqlEndpoint
from servers.facade.gateway import Gateway, caller_token, executable_schema
from servers.facade.graphiql import routes as graphiql_routes
from servers.facade.operations import OperationRegistry, operation_id
from servers.facade.schema import FacadeSchema, RootField, SchemaError, build_facade_schema

#: The committed persisted operations, beside the committed schema.
DEFAULT_OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "graphql" / "operations"
#: The committed, printed schema (checked like gen/).
SCHEMA_FILE = DEFAULT_OPERATIONS_DIR.parent / "schema.graphql"

__all__ = [
    "DEFAULT_OPERATIONS_DIR",
    "SCHEMA_FILE",
    "FacadeLimits",
    "FacadeSchema",
    "Gateway",
    "GraphqlEndpoint",
    "OperationRegistry",
    "RootField",
    "SchemaError",
    "build_facade_schema",
    "caller_token",
    "executable_schema",
    "graphiql_routes",
    "operation_id",
]
