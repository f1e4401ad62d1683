"""The GraphQL schema, derived from the service descriptors: SDL text plus how each field resolves.

Mapping (each choice keeps the proto's JSON form, so requests and responses
convert with `google.protobuf.json_format` and nothing else):

* messages → object types (and `<Name>Input` input types where requests use
  them); field names are the proto JSON names (lowerCamelCase);
* enums → enums, values without the enum's prefix (`ACCESS_REQUEST_STATUS_PENDING`
  → `PENDING`); `google.protobuf.Timestamp` → `DateTime` (RFC 3339);
  64-bit and unsigned 32-bit integers → `Int64` (a decimal string, exact in
  JavaScript); bytes → `Base64`; strings named `id` or `*_id` → `ID`;
* maps → lists of `{key, value}` entries; a oneof whose fields are all of an
  input message → a `@oneOf` input; other oneofs → nullable fields, at most one set;
* proto3 scalars are non-null in output (they always have a value), repeated
  fields `[T!]!`, messages and fields with presence nullable; arguments and
  input fields are nullable unless the contract marks them
  `(intelgraph.common.v1.required)`;
* RPCs with `idempotency_level = NO_SIDE_EFFECTS` (or named Get*, List*,
  Compute*, Estimate*) → `Query` fields, the rest → `Mutation` fields, named in
  lowerCamelCase without a Get/List prefix (`ListAccessRequests` →
  `accessRequests`); the request's fields are the arguments; server-streaming
  reads return the list of messages; client-streaming RPCs are left out and
  the schema's description names them. `(intelgraph.common.v1.graphql)` can
  rename a field, return one field of the response, or return `true`;
* every field carries its RPC's authorization: `@auth(abac: "<permission>")`,
  `@public`, or nothing for any authenticated caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from intelgraph.common.v1 import authorization_pb2, field_behavior_pb2, graphql_pb2

from core.descriptors import is_read

Operation = Literal["query", "mutation"]

TIMESTAMP = "google.protobuf.Timestamp"
_STRIPPED_PREFIXES = ("Get", "List")
_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "Float",
    FieldDescriptor.TYPE_FLOAT: "Float",
    FieldDescriptor.TYPE_INT32: "Int",
    FieldDescriptor.TYPE_SINT32: "Int",
    FieldDescriptor.TYPE_SFIXED32: "Int",
    FieldDescriptor.TYPE_UINT32: "Int64",
    FieldDescriptor.TYPE_FIXED32: "Int64",
    FieldDescriptor.TYPE_INT64: "Int64",
    FieldDescriptor.TYPE_SINT64: "Int64",
    FieldDescriptor.TYPE_SFIXED64: "Int64",
    FieldDescriptor.TYPE_UINT64: "Int64",
    FieldDescriptor.TYPE_FIXED64: "Int64",
    FieldDescriptor.TYPE_BOOL: "Boolean",
    FieldDescriptor.TYPE_STRING: "String",
    FieldDescriptor.TYPE_BYTES: "Base64",
}

_PREAMBLE = '''"""
A date and time with a time zone, as RFC 3339 text, e.g. "2026-05-27T09:00:00Z".
"""
scalar DateTime

"""
A 64-bit (or unsigned 32-bit) integer, as a decimal string so it stays exact.
"""
scalar Int64

"""
Bytes, as standard base64 text.
"""
scalar Base64

"""
The ABAC permission the field's RPC requires, checked by the policy engine before the call.
"""
directive @auth(abac: String!) on FIELD_DEFINITION

"""
The field needs no token.
"""
directive @public on FIELD_DEFINITION
'''


class SchemaError(ValueError):
    """The contracts cannot be mapped to GraphQL (e.g. two fields would share a name)."""


@dataclass(frozen=True)
class RootField:
    """How one Query or Mutation field resolves: by calling one RPC.

    Attributes:
        name: The GraphQL field name.
        operation: "query" or "mutation".
        method: The RPC's descriptor.
        permission: The ABAC permission; "" for any authenticated caller.
        public: The RPC needs no token.
        result_path: JSON names of the response fields to return; empty for the whole response.
        returns_success: Return True instead of the response.
    """

    name: str
    operation: Operation
    method: MethodDescriptor
    permission: str
    public: bool
    result_path: tuple[str, ...] = ()
    returns_success: bool = False

    @property
    def path(self) -> str:
        """The RPC's wire name, "/package.Service/Method"."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"


@dataclass
class FacadeSchema:
    """The generated SDL and what is needed to make it executable.

    Attributes:
        sdl: The schema, printed (what `graphql/schema.graphql` holds).
        roots: The Query and Mutation fields by (operation, name).
        enums: For each GraphQL enum, its value names → proto value names.
        output_maps: (object type, field) pairs whose proto map becomes an entry list.
        skipped: Client-streaming RPCs left out.
    """

    sdl: str
    roots: dict[tuple[Operation, str], RootField]
    enums: dict[str, dict[str, str]]
    output_maps: set[tuple[str, str]]
    skipped: list[str] = field(default_factory=list)


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def _entry_fields(member: FieldDescriptor) -> tuple[FieldDescriptor, FieldDescriptor]:
    """The key and value fields of a map field's entry message."""
    entry = member.message_type
    if entry is None:
        raise SchemaError(f"{member.full_name} is not a map")
    return entry.fields_by_name["key"], entry.fields_by_name["value"]


def _is_map(field_descriptor: FieldDescriptor) -> bool:
    message = field_descriptor.message_type
    return bool(
        field_descriptor.is_repeated and message is not None and message.GetOptions().map_entry
    )


def _field_name(method: MethodDescriptor) -> str:
    option = method.GetOptions().Extensions[graphql_pb2.graphql]
    if option.name:
        return option.name
    for prefix in _STRIPPED_PREFIXES:
        rest = method.name.removeprefix(prefix)
        if rest != method.name and rest[:1].isupper():
            return _lower_camel(rest)
    return _lower_camel(method.name)


def _input_name(name: str) -> str:
    return name if name.endswith("Input") else f"{name}Input"


def _result_fields(method: MethodDescriptor) -> list[FieldDescriptor]:
    """The response fields along the RPC's `(graphql).result` path."""
    path = method.GetOptions().Extensions[graphql_pb2.graphql].result
    fields: list[FieldDescriptor] = []
    message: Descriptor | None = method.output_type
    for part in filter(None, path.split(".")):
        if message is None or part not in message.fields_by_name:
            raise SchemaError(f"{method.full_name}: no field {path!r} in its response")
        fields.append(message.fields_by_name[part])
        message = fields[-1].message_type
    return fields


def _returned(method: MethodDescriptor) -> Descriptor | FieldDescriptor | None:
    """What a root field returns: the response, one of its fields, or nothing (a Boolean)."""
    if method.GetOptions().Extensions[graphql_pb2.graphql].returns_success:
        return None
    path = _result_fields(method)
    return path[-1] if path else method.output_type


def _string(text: str) -> str:
    return json.dumps(text)


def _description(text: str, indent: str = "") -> str:
    body = "\n".join(f"{indent}{line}" if line else "" for line in text.splitlines())
    return f'{indent}"""\n{body}\n{indent}"""\n'


class _Builder:
    """Walks the descriptors once, naming types and printing them."""

    def __init__(self, services: Sequence[ServiceDescriptor]) -> None:
        self.services = services
        self.messages: dict[str, Descriptor] = {}
        self.inputs: dict[str, Descriptor] = {}
        self.enum_types: dict[str, EnumDescriptor] = {}
        self.names: dict[str, str] = {}
        self.roots: dict[tuple[Operation, str], RootField] = {}
        self.output_maps: set[tuple[str, str]] = set()
        self.skipped: list[str] = []
        self.argument_entries: list[tuple[str, list[str]]] = []

    # -- naming ---------------------------------------------------------------

    def _collect(self) -> None:
        for service in self.services:
            for method in service.methods:
                if method.client_streaming:
                    self.skipped.append(f"{service.full_name}/{method.name}")
                    continue
                returned = _returned(method)
                if isinstance(returned, FieldDescriptor):
                    self._reach_output_field(returned)
                elif returned is not None:
                    self._reach_output(returned)
                for argument in method.input_type.fields:
                    self._reach_input_field(argument)
        candidates: dict[str, list[str]] = {}
        for full_name, item in [*self.messages.items(), *self.enum_types.items()]:
            candidates.setdefault(item.name, []).append(full_name)
        for full_name in self.inputs:
            candidates.setdefault(self.inputs[full_name].name, []).append(full_name)
        for short, full_names in candidates.items():
            unique = sorted(set(full_names))
            for full_name in unique:
                if len(unique) == 1:
                    self.names[full_name] = short
                else:
                    # intelgraph.catalog.v1.Service -> CatalogService
                    segment = full_name.split(".")[-3]
                    self.names[full_name] = segment.capitalize() + short

    def _reach_output(self, message: Descriptor) -> None:
        if message.full_name == TIMESTAMP or message.full_name in self.messages:
            return
        self.messages[message.full_name] = message
        for member in message.fields:
            self._reach_output_field(member)

    def _reach_output_field(self, member: FieldDescriptor) -> None:
        if member.enum_type is not None:
            self.enum_types[member.enum_type.full_name] = member.enum_type
        if member.message_type is None:
            return
        if _is_map(member):
            self._reach_output_field(_entry_fields(member)[1])
        else:
            self._reach_output(member.message_type)

    def _reach_input(self, message: Descriptor) -> None:
        if message.full_name == TIMESTAMP or message.full_name in self.inputs:
            return
        self.inputs[message.full_name] = message
        for member in message.fields:
            self._reach_input_field(member)

    def _reach_input_field(self, member: FieldDescriptor) -> None:
        if member.enum_type is not None:
            self.enum_types[member.enum_type.full_name] = member.enum_type
        if member.message_type is None:
            return
        if _is_map(member):
            self._reach_input_field(_entry_fields(member)[1])
        else:
            self._reach_input(member.message_type)

    # -- types ----------------------------------------------------------------

    def _named(self, member: FieldDescriptor, *, is_input: bool) -> str:
        if member.message_type is not None:
            if member.message_type.full_name == TIMESTAMP:
                return "DateTime"
            name = self.names[member.message_type.full_name]
            return _input_name(name) if is_input else name
        if member.enum_type is not None:
            return self.names[member.enum_type.full_name]
        if member.type == FieldDescriptor.TYPE_STRING and (
            member.name == "id" or member.name.endswith("_id")
        ):
            return "ID"
        return _SCALARS[member.type]

    def _entry_type(self, owner: str, member: FieldDescriptor, *, is_input: bool) -> str:
        return f"{owner}{member.json_name[:1].upper()}{member.json_name[1:]}Entry" + (
            "Input" if is_input else ""
        )

    def output_type(self, owner: str, member: FieldDescriptor) -> str:
        """The GraphQL type of an output field."""
        if _is_map(member):
            return f"[{self._entry_type(owner, member, is_input=False)}!]!"
        named = self._named(member, is_input=False)
        if member.is_repeated:
            return f"[{named}!]!"
        if member.message_type is not None or member.has_presence:
            return named
        return f"{named}!"

    def input_type(self, owner: str, member: FieldDescriptor) -> str:
        """The GraphQL type of an argument or input field."""
        required = member.GetOptions().Extensions[field_behavior_pb2.required]
        if _is_map(member):
            inner = f"[{self._entry_type(owner, member, is_input=True)}!]"
        elif member.is_repeated:
            inner = f"[{self._named(member, is_input=True)}!]"
        else:
            inner = self._named(member, is_input=True)
        return f"{inner}!" if required else inner

    # -- printing -------------------------------------------------------------

    def _print_object(self, message: Descriptor) -> list[str]:
        name = self.names[message.full_name]
        lines, extra = [f"type {name} {{"], []
        for member in message.fields:
            lines.append(f"  {member.json_name}: {self.output_type(name, member)}")
            if _is_map(member):
                self.output_maps.add((name, member.json_name))
                key, value = _entry_fields(member)
                extra += [
                    f"type {self._entry_type(name, member, is_input=False)} {{",
                    f"  key: {self._named(key, is_input=False)}!",
                    f"  value: {self.output_type(name, value)}",
                    "}",
                    "",
                ]
        if not message.fields:
            lines.append('  "Always null: the message has no fields."')
            lines.append("  _empty: Boolean")
        return [*lines, "}", "", *extra]

    def _print_input(self, message: Descriptor) -> list[str]:
        name = _input_name(self.names[message.full_name])
        whole_oneof = len(message.oneofs) == 1 and len(message.oneofs[0].fields) == len(
            message.fields
        )
        head = f"input {name} @oneOf {{" if whole_oneof else f"input {name} {{"
        lines, extra = [head], []
        for member in message.fields:
            kind = self.input_type(name, member)
            if whole_oneof:
                kind = kind.removesuffix("!")
            lines.append(f"  {member.json_name}: {kind}")
            if _is_map(member):
                extra += self._entry_lines(name, member)
        if not message.fields:
            lines.append("  _empty: Boolean")
        return [*lines, "}", "", *extra]

    def _entry_lines(self, owner: str, member: FieldDescriptor) -> list[str]:
        key, value = _entry_fields(member)
        return [
            f"input {self._entry_type(owner, member, is_input=True)} {{",
            f"  key: {self._named(key, is_input=True)}!",
            f"  value: {self._named(value, is_input=True)}!",
            "}",
            "",
        ]

    def _print_enum(self, enum: EnumDescriptor) -> list[str]:
        name = self.names[enum.full_name]
        lines = [f"enum {name} {{"]
        for value_name in self.enum_values(enum):
            lines.append(f"  {value_name}")
        return [*lines, "}", ""]

    def enum_values(self, enum: EnumDescriptor) -> dict[str, str]:
        """GraphQL value names of a proto enum → its proto value names."""
        prefix = _upper_snake(enum.name) + "_"
        values = {}
        for value in enum.values:
            short = value.name.removeprefix(prefix)
            if not short or short[0].isdigit() or short in {"true", "false", "null"}:
                short = value.name
            values[short] = value.name
        return values

    def _root(self, service: ServiceDescriptor, method: MethodDescriptor) -> tuple[RootField, str]:
        options = method.GetOptions()
        rule = options.Extensions[authorization_pb2.authorization]
        exposure = options.Extensions[graphql_pb2.graphql]
        operation: Operation = "query" if is_read(method) else "mutation"
        name = _field_name(method)
        if (operation, name) in self.roots:
            other = self.roots[operation, name].method.full_name
            raise SchemaError(f"{method.full_name} and {other} would both be {operation}.{name}")
        path = _result_fields(method)
        leaf = path[-1] if path else None
        if exposure.returns_success:
            returns = "Boolean"
        elif leaf is not None:
            if _is_map(leaf):
                raise SchemaError(f"{method.full_name}: a map cannot be a GraphQL result")
            returns = self.output_type(method.output_type.name, leaf)
        elif method.server_streaming:
            returns = f"[{self.names[method.output_type.full_name]}!]"
        else:
            # Nullable, so one failing field leaves the others' data standing.
            returns = self.names[method.output_type.full_name]
        kind = rule.WhichOneof("rule")
        root = RootField(
            name=name,
            operation=operation,
            method=method,
            permission=rule.permission if kind == "permission" else "",
            public=kind == "public",
            result_path=tuple(member.json_name for member in path),
            returns_success=exposure.returns_success,
        )
        owner = method.input_type.name
        arguments = ", ".join(
            f"{member.json_name}: {self.input_type(owner, member)}"
            for member in method.input_type.fields
        )
        for member in method.input_type.fields:
            if _is_map(member):
                self.argument_entries.append(
                    (
                        self._entry_type(owner, member, is_input=True),
                        self._entry_lines(owner, member),
                    )
                )
        signature = f"{name}({arguments})" if arguments else name
        directive = (
            f" @auth(abac: {_string(root.permission)})"
            if root.permission
            else (" @public" if root.public else "")
        )
        return root, f"  {signature}: {returns}{directive}"

    def build(self) -> FacadeSchema:
        self._collect()
        fields: dict[Operation, list[str]] = {"query": [], "mutation": []}
        for service in self.services:
            for method in service.methods:
                if method.client_streaming:
                    continue
                root, line = self._root(service, method)
                self.roots[root.operation, root.name] = root
                fields[root.operation].append(line)
        out = [_PREAMBLE]
        note = (
            "IntelGraph Maestro Conductor, generated from the gRPC contracts.\n"
            "Client-streaming RPCs are not exposed; call them over gRPC: "
            + (", ".join(sorted(self.skipped)) or "none")
            + "."
        )
        roots = "  query: Query" + ("\n  mutation: Mutation" if fields["mutation"] else "")
        out.append(f"{_description(note)}schema {{\n{roots}\n}}\n")
        root_types: tuple[tuple[Operation, str], ...] = (
            ("query", "Query"),
            ("mutation", "Mutation"),
        )
        for operation, type_name in root_types:
            if fields[operation]:
                out.append(
                    f"type {type_name} {{\n" + "\n".join(sorted(fields[operation])) + "\n}\n"
                )
        blocks: list[tuple[str, list[str]]] = []
        for full_name, message in self.messages.items():
            blocks.append((self.names[full_name], self._print_object(message)))
        for full_name, message in self.inputs.items():
            blocks.append((_input_name(self.names[full_name]), self._print_input(message)))
        for full_name, enum in self.enum_types.items():
            blocks.append((self.names[full_name], self._print_enum(enum)))
        blocks += self.argument_entries
        for _, lines in sorted(blocks):
            out.append("\n".join(lines))
        enums = {self.names[name]: self.enum_values(enum) for name, enum in self.enum_types.items()}
        return FacadeSchema(
            sdl="\n".join(out).rstrip() + "\n",
            roots=self.roots,
            enums=enums,
            output_maps=self.output_maps,
            skipped=sorted(self.skipped),
        )


def build_facade_schema(services: Iterable[ServiceDescriptor]) -> FacadeSchema:
    """The GraphQL schema of `services`.

    Raises:
        SchemaError: Two RPCs map to the same field, or a result path is wrong.
    """
    return _Builder(list(services)).build()
