"""Writes the SDK's typed service clients from the contracts (run by `make gen`).

    python clients/generate.py proto clients/intelgraph/sdk

For every service under `proto/intelgraph/*/v1/*_service.proto` it writes a sync
and an async client: one snake_case method per RPC, taking the request message
or its fields as keyword arguments, typed from the descriptors, documented
from the proto comments, with the permission the RPC's contract declares.
Then the classes with one attribute per service that `Client` and `AsyncClient`
build on, and one module per service (and for the shared messages) re-exporting
its messages and enums, so users never import `_pb2`. Nothing in the output is
written by hand; a contract change regenerates it.
"""

from __future__ import annotations

import importlib
import keyword
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from intelgraph.common.v1 import authorization_pb2, client_pb2, errors_pb2, field_behavior_pb2

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "float",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "str",
    FieldDescriptor.TYPE_BYTES: "bytes",
}
#: Names the generated methods use themselves: a request field may not take them.
_RESERVED = {"request", "requests", "timeout", "self"}
#: Deadlines in seconds of calls that name none, where the contract sets none (client.proto).
_READ_DEADLINE_S, _WRITE_DEADLINE_S, _STREAM_DEADLINE_S = 10, 30, 300
_SAFE_TO_RETRY = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)
_PAGE_REQUEST = "intelgraph.common.v1.PageRequest"
_PAGE_RESPONSE = "intelgraph.common.v1.PageResponse"
#: Bytes per chunk of a file upload, unless the contract allows fewer.
_CHUNK_BYTES = 1 << 20
_SERVICE_PATH = 6  # FileDescriptorProto.service
_METHOD_PATH = 2  # ServiceDescriptorProto.method
_ENUM_PATH = 5  # FileDescriptorProto.enum_type
_VALUE_PATH = 2  # EnumDescriptorProto.value


def _snake(name: str) -> str:
    """`GetCaller` -> `get_caller`, `ExportCsv` -> `export_csv`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _module_alias(file_name: str) -> str:
    """`intelgraph/common/v1/pagination.proto` -> `common_pagination_pb2`."""
    parts = file_name.removesuffix(".proto").split("/")
    return f"{parts[-3] if len(parts) >= 3 else parts[0]}_{parts[-1]}_pb2"


def _short(service: ServiceDescriptor) -> str:
    """`AccessService` -> `Access`: its clients are `AccessClient`, `client.access`."""
    return service.name.removesuffix("Service")


def _client_class(service: ServiceDescriptor, *, asynchronous: bool) -> str:
    return f"{'Async' if asynchronous else ''}{_short(service)}Client"


def _module(file_name: str) -> str:
    return file_name.removesuffix(".proto").replace("/", ".") + "_pb2"


def comments(proto_root: Path, files: list[str]) -> dict[str, str]:
    """The leading comment of every service, RPC, top-level enum and its values, by full name."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.binpb"
        subprocess.run(  # noqa: S603 - protoc on our own contracts
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                f"-I{proto_root}",
                "--include_source_info",
                f"--descriptor_set_out={out}",
                *files,
            ],
            check=True,
        )
        found = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    texts: dict[str, str] = {}
    for file in found.file:
        by_path = {tuple(location.path): location for location in file.source_code_info.location}
        for s, service in enumerate(file.service):
            name = f"{file.package}.{service.name}"
            texts[name] = by_path[(_SERVICE_PATH, s)].leading_comments.strip()
            for m, method in enumerate(service.method):
                location = by_path[(_SERVICE_PATH, s, _METHOD_PATH, m)]
                texts[f"{name}.{method.name}"] = location.leading_comments.strip()
        for e, enum in enumerate(file.enum_type):
            name = f"{file.package}.{enum.name}"
            texts[name] = by_path[(_ENUM_PATH, e)].leading_comments.strip()
            for v, value in enumerate(enum.value):
                location = by_path[(_ENUM_PATH, e, _VALUE_PATH, v)]
                texts[f"{name}.{value.name}"] = location.leading_comments.strip()
    return texts


@dataclass
class Imports:
    """The generated modules the output refers to, by alias."""

    modules: dict[str, str]

    def name_of(self, descriptor: Descriptor | EnumDescriptor) -> str:
        """`alias.Outer.Inner` for a message or enum."""
        file = descriptor.file
        alias = _module_alias(file.name)
        self.modules[alias] = _module(file.name)
        return f"{alias}.{descriptor.full_name.removeprefix(file.package + '.')}"


def _field_type(field: FieldDescriptor, imports: Imports) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entry = field.message_type
        key = _field_type(entry.fields_by_name["key"], imports)
        value = _field_type(entry.fields_by_name["value"], imports)
        return f"Mapping[{key}, {value}]"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        single = imports.name_of(field.message_type)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        single = f"{imports.name_of(field.enum_type)}.ValueType"
    else:
        single = _SCALARS.get(field.type, "int")
    return f"Iterable[{single}]" if field.is_repeated else single


def _permission(method: MethodDescriptor) -> str:
    options = method.GetOptions()
    if not options.HasExtension(authorization_pb2.authorization):
        return "undeclared (refused)"
    rule = options.Extensions[authorization_pb2.authorization]
    kind = rule.WhichOneof("rule")
    if kind == "permission":
        return f"`{rule.permission}` (ABAC)"
    return "none: public" if kind == "public" else "any authenticated caller"


def deadline(method: MethodDescriptor) -> int:
    """Seconds a call of `method` may take when it names no timeout."""
    options = method.GetOptions()
    if options.HasExtension(client_pb2.client):
        seconds: int = options.Extensions[client_pb2.client].deadline_seconds
        if seconds:
            return seconds
    if method.client_streaming or method.server_streaming:
        return _STREAM_DEADLINE_S
    read = options.idempotency_level == descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
    return _READ_DEADLINE_S if read else _WRITE_DEADLINE_S


def _keyed(method: MethodDescriptor) -> bool:
    return "idempotency_key" in method.input_type.fields_by_name


def retryable(method: MethodDescriptor) -> bool:
    """Whether a failed attempt may be sent again: no side effects, idempotent, or keyed."""
    return method.GetOptions().idempotency_level in _SAFE_TO_RETRY or _keyed(method)


def _max_items(field: FieldDescriptor) -> int:
    options = field.GetOptions()
    if not options.HasExtension(field_behavior_pb2.bounds):
        return 0
    return int(options.Extensions[field_behavior_pb2.bounds].max_items)


def _wrapped(text: str, indent: str) -> list[str]:
    """A proto comment as docstring lines, re-wrapped to the line length."""
    words = " ".join(line.strip() for line in text.splitlines()).strip()
    return textwrap.wrap(words, width=96 - len(indent))


def _prose(text: str, indent: str, fallback: str) -> list[str]:
    """A one-line summary (the comment's first sentence if it fits), a blank line, the rest."""
    words = " ".join(line.strip() for line in text.splitlines()).strip()
    summary, _, rest = words.partition(". ")
    summary = summary if summary.endswith(".") else f"{summary}."
    if len(summary) > 90 - len(indent):
        return [fallback, "", *_wrapped(words, indent)]
    return [summary, *(["", *_wrapped(rest, indent)] if rest else [])]


def _docstring(text: str, method: MethodDescriptor, indent: str) -> list[str]:
    lines = _prose(text or f"Calls {method.name}.", indent, f"Calls {method.name}.")
    body = [f'{indent}"""{lines[0]}', *(f"{indent}{line}".rstrip() for line in lines[1:])]
    retries = "retried on UNAVAILABLE" if retryable(method) else "never retried"
    body += [
        "",
        f"{indent}Permission: {_permission(method)}.",
        f"{indent}Deadline: {deadline(method)} s unless `timeout` says otherwise; {retries}.",
    ]
    if _keyed(method):
        body.append(
            f"{indent}Without an `idempotency_key` the SDK makes one, so a retry applies once."
        )
    return [*body, f'{indent}"""']


def _brief(summary: str, method: MethodDescriptor, indent: str) -> list[str]:
    """The docstring of a convenience method over `method`."""
    return [
        f'{indent}"""{summary}',
        "",
        f"{indent}Permission: {_permission(method)}.",
        f'{indent}"""',
    ]


def _method(
    method: MethodDescriptor, text: str, imports: Imports, *, asynchronous: bool
) -> list[str]:
    request = imports.name_of(method.input_type)
    response = imports.name_of(method.output_type)
    name = _snake(method.name)
    indent = " " * 8
    fields = list(method.input_type.fields)
    for field in fields:
        if field.name in _RESERVED or keyword.iskeyword(field.name):
            raise SystemExit(
                f"{method.full_name}: field {field.name!r} clashes with the SDK's names"
            )
    prefix = "async " if asynchronous else ""
    if method.client_streaming:
        source = (
            f"Iterable[{request}] | AsyncIterable[{request}]"
            if asynchronous
            else f"Iterable[{request}]"
        )
        return [
            f"    {prefix}def {name}(",
            f"        self, requests: {source}, /, *, timeout: float | None = None",
            f"    ) -> {response}:",
            *_docstring(text, method, indent),
            f"        return {'await ' if asynchronous else ''}self._{name}(requests, timeout={_timeout(method)})",
        ]
    returns = response
    if method.server_streaming:
        returns = f"AsyncIterator[{response}]" if asynchronous else f"Iterator[{response}]"
    signature = [
        f"    {prefix}def {name}(",
        "        self,",
        f"        request: {request} | None = None,",
        "        /,",
        "        *,",
        *(
            f"        {field.name}: {_field_type(field, imports)} | None = None,"
            for field in fields
        ),
        "        timeout: float | None = None,",
        f"    ) -> {returns}:",
    ]
    build = [f"        message = build({request}, request, {_given(fields)})"]
    if _keyed(method):
        build.append("        message = keyed(message)")
    timeout = _timeout(method)
    if method.server_streaming and asynchronous:
        call = [
            f"        async for response in self._{name}(message, timeout={timeout}):",
            "            yield response",
        ]
    elif method.server_streaming:
        call = [f"        yield from self._{name}(message, timeout={timeout})"]
    else:
        call = [
            f"        return {'await ' if asynchronous else ''}self._{name}(message, timeout={timeout})"
        ]
    return [*signature, *_docstring(text, method, indent), *build, *call]


def _given(fields: list[FieldDescriptor]) -> str:
    return "{" + ", ".join(f"{f.name!r}: {f.name}" for f in fields) + "}"


def _timeout(method: MethodDescriptor) -> str:
    return f"{float(deadline(method))!r} if timeout is None else timeout"


def _field_parameters(fields: list[FieldDescriptor], imports: Imports) -> list[str]:
    return [f"        {f.name}: {_field_type(f, imports)} | None = None," for f in fields]


def _repeated_messages(message: Descriptor) -> list[FieldDescriptor]:
    return [field for field in message.fields if field.is_repeated and field.message_type]


def _listed(response: Descriptor) -> tuple[str, FieldDescriptor | None]:
    """Where a paged response's items are, and their field.

    Its one repeated message field, or the one of its one singular message field
    that has exactly one (RunPack's `result.entities`).
    """
    listed = _repeated_messages(response)
    if listed:
        return (listed[0].name, listed[0]) if len(listed) == 1 else ("", None)
    nested = [
        field
        for field in response.fields
        if not field.is_repeated
        and field.message_type is not None
        and field.message_type.full_name != _PAGE_RESPONSE
    ]
    if len(nested) == 1 and len(inner := _repeated_messages(nested[0].message_type)) == 1:
        return f"{nested[0].name}.{inner[0].name}", inner[0]
    return "", None


def _pager(method: MethodDescriptor, imports: Imports, *, asynchronous: bool) -> list[str]:
    """`iter_<items>`: every item of a List RPC, following its page tokens."""
    request, response = method.input_type, method.output_type
    page = request.fields_by_name.get("page")
    if page is None or page.message_type is None or page.message_type.full_name != _PAGE_REQUEST:
        return []
    path, items = _listed(response)
    answered = response.fields_by_name.get("page")
    if items is None or answered is None or answered.message_type.full_name != _PAGE_RESPONSE:
        raise SystemExit(f"{method.full_name}: a List RPC answers one repeated message and a page")
    name = _snake(method.name)
    fields = [field for field in request.fields if field.name != "page"]
    item = imports.name_of(items.message_type)
    returns = f"AsyncIterator[{item}]" if asynchronous else f"Iterator[{item}]"
    if asynchronous:
        loop = [
            f"        async for page in async_pages(self.{name}, message, page_size, timeout):",
            f"            for item in page.{path}:",
            "                yield item",
        ]
    else:
        loop = [
            f"        for page in pages(self.{name}, message, page_size, timeout):",
            f"            yield from page.{path}",
        ]
    summary = f"Every item of {method.name}, page after page; each page is one call."
    return [
        f"    {'async ' if asynchronous else ''}def iter_{name.removeprefix('list_')}(",
        "        self,",
        f"        request: {imports.name_of(request)} | None = None,",
        "        /,",
        "        *,",
        *_field_parameters(fields, imports),
        "        page_size: int | None = None,",
        "        timeout: float | None = None,",
        f"    ) -> {returns}:",
        *_brief(summary, method, " " * 8),
        f"        message = build({imports.name_of(request)}, request, {_given(fields)})",
        *loop,
    ]


def _download(method: MethodDescriptor, imports: Imports, *, asynchronous: bool) -> list[str]:
    """`<rpc>_to_file`: a server stream of `bytes data` written to a file."""
    data = method.output_type.fields_by_name.get("data")
    if not method.server_streaming or data is None or data.type != FieldDescriptor.TYPE_BYTES:
        return []
    name = _snake(method.name)
    fields = list(method.input_type.fields)
    writer = "await async_write_data" if asynchronous else "write_data"
    summary = f"Writes {method.name}'s data to a path or binary file; the bytes written."
    return [
        f"    {'async ' if asynchronous else ''}def {name}_to_file(",
        "        self,",
        "        destination: Destination,",
        f"        request: {imports.name_of(method.input_type)} | None = None,",
        "        /,",
        "        *,",
        *_field_parameters(fields, imports),
        "        timeout: float | None = None,",
        "    ) -> int:",
        *_brief(summary, method, " " * 8),
        f"        responses = self.{name}(",
        "            request,",
        *(f"            {field.name}={field.name}," for field in fields),
        "            timeout=timeout,",
        "        )",
        f"        return {writer}(responses, destination)",
    ]


def _batched_upload(method: MethodDescriptor, imports: Imports, *, asynchronous: bool) -> list[str]:
    """`<rpc>_from`: a client stream of bounded repeated fields, batched from iterables."""
    fields = list(method.input_type.fields)
    bounded = [(field, _max_items(field)) for field in fields if field.is_repeated]
    if not method.client_streaming or not fields or len(bounded) != len(fields):
        return []
    if any(limit == 0 for _, limit in bounded):
        raise SystemExit(f"{method.full_name}: a batched stream bounds every field's max_items")
    name = _snake(method.name)
    request = imports.name_of(method.input_type)
    summary = f"{method.name} from iterables of any length, sent in batches it bounds."
    return [
        f"    {'async ' if asynchronous else ''}def {name}_from(",
        "        self,",
        "        *,",
        *(
            f"        {field.name}: Iterable[{imports.name_of(field.message_type)}] = (),"
            for field in fields
        ),
        "        timeout: float | None = None,",
        f"    ) -> {imports.name_of(method.output_type)}:",
        *_brief(summary, method, " " * 8),
        f"        batched = batches({request}, {{",
        *(f"            {field.name!r}: ({field.name}, {limit})," for field, limit in bounded),
        "        })",
        f"        return {'await ' if asynchronous else ''}self.{name}(batched, timeout=timeout)",
    ]


def _file_upload(method: MethodDescriptor, imports: Imports, *, asynchronous: bool) -> list[str]:
    """`<rpc>_from_file`: a client stream of a head message, then chunks of a file."""
    oneofs = method.input_type.oneofs
    if not method.client_streaming or len(oneofs) != 1 or len(oneofs[0].fields) != 2:
        return []
    head, chunk = oneofs[0].fields
    chunk_fields = chunk.message_type.fields_by_name if chunk.message_type else {}
    if head.message_type is None or not {"offset", "data"} <= set(chunk_fields) <= _CHUNK_FIELDS:
        return []
    bounds = chunk_fields["data"].GetOptions().Extensions[field_behavior_pb2.bounds]
    chunk_bytes = min(_CHUNK_BYTES, bounds.max_len or _CHUNK_BYTES)
    name = _snake(method.name)
    summary = f"{method.name} of a path, file or bytes: {head.name}, then chunks from `offset`."
    parts = (
        f"file_parts({imports.name_of(method.input_type)}, ({head.name!r}, {head.name}), "
        f"({chunk.name!r}, {imports.name_of(chunk.message_type)}), source, "
        "offset=offset, chunk_bytes=chunk_bytes)"
    )
    return [
        f"    {'async ' if asynchronous else ''}def {name}_from_file(",
        "        self,",
        "        source: Source,",
        "        /,",
        "        *,",
        f"        {head.name}: {imports.name_of(head.message_type)},",
        "        offset: int = 0,",
        f"        chunk_bytes: int = {chunk_bytes},",
        "        timeout: float | None = None,",
        f"    ) -> {imports.name_of(method.output_type)}:",
        *_brief(summary, method, " " * 8),
        f"        parts = {parts}",
        f"        return {'await ' if asynchronous else ''}self.{name}(parts, timeout=timeout)",
    ]


#: Fields a file upload's chunk message may have: where, what, and the digest of what.
_CHUNK_FIELDS = {"offset", "data", "sha256"}

_CONVENIENCES = (_pager, _download, _batched_upload, _file_upload)


def _stub(method: MethodDescriptor, imports: Imports) -> str:
    kind = {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }[method.client_streaming, method.server_streaming]
    request = imports.name_of(method.input_type)
    response = imports.name_of(method.output_type)
    path = f"/{method.containing_service.full_name}/{method.name}"
    return (
        f"        self._{_snake(method.name)} = channel.{kind}(\n"
        f"            {path!r},\n"
        f"            request_serializer={request}.SerializeToString,\n"
        f"            response_deserializer={response}.FromString,\n"
        "        )"
    )


def _client(
    service: ServiceDescriptor, texts: dict[str, str], imports: Imports, *, asynchronous: bool
) -> list[str]:
    name = _client_class(service, asynchronous=asynchronous)
    channel = "grpc.aio.Channel" if asynchronous else "grpc.Channel"
    summary = _wrapped(texts.get(service.full_name) or service.name, "    ")
    kind = "The async client of" if asynchronous else "The client of"
    lines = [
        f"class {name}:",
        f'    """{kind} {service.name}.',
        "",
        *(f"    {line}".rstrip() for line in summary),
        '    """',
        "",
        f"    def __init__(self, channel: {channel}) -> None:",
        *(_stub(method, imports) for method in service.methods),
    ]
    for method in service.methods:
        lines += [
            "",
            *_method(method, texts.get(method.full_name, ""), imports, asynchronous=asynchronous),
        ]
        for convenience in _CONVENIENCES:
            extra = convenience(method, imports, asynchronous=asynchronous)
            lines += ["", *extra] if extra else []
    return lines


def services(proto_root: Path) -> list[ServiceDescriptor]:
    """Every service of the contracts, in file order."""
    found = []
    for path in sorted(proto_root.glob("intelgraph/*/v1/*_service.proto")):
        module = importlib.import_module(_module(str(path.relative_to(proto_root))))
        found += list(module.DESCRIPTOR.services_by_name.values())
    return found


def generate(proto_root: Path) -> str:
    """The source of `intelgraph/sdk/services.py`."""
    described = services(proto_root)
    texts = comments(proto_root, sorted({service.file.name for service in described}))
    imports = Imports({})
    body: list[str] = []
    for asynchronous in (False, True):
        for service in described:
            body += ["", "", *_client(service, texts, imports, asynchronous=asynchronous)]
    for asynchronous in (False, True):
        prefix = "Async" if asynchronous else ""
        attributes = [
            (_short(service).lower(), _client_class(service, asynchronous=asynchronous))
            for service in described
        ]
        channel = "grpc.aio.Channel" if asynchronous else "grpc.Channel"
        body += [
            "",
            "",
            f"class {prefix}ServiceClients:",
            f'    """One {"async " if asynchronous else ""}client per service, over one channel."""',
            "",
            f"    def __init__(self, channel: {channel}) -> None:",
            *(f"        self.{attribute} = {cls}(channel)" for attribute, cls in attributes),
            "",
            "    def by_path(self, path: str) -> Callable[..., Any]:",
            '        """The method calling the RPC at `path` ("/intelgraph.access.v1.AccessService/GetCaller").',
            "",
            "        For generic callers (a gateway) that know RPCs by their descriptors.",
            "",
            "        Raises:",
            "            KeyError: No RPC of the contracts has this path.",
            '        """',
            "        attribute, method = ROUTES[path]",
            "        return getattr(getattr(self, attribute), method)  # type: ignore[no-any-return]",
        ]
    names = sorted(
        [
            _client_class(service, asynchronous=asynchronous)
            for asynchronous in (False, True)
            for service in described
        ]
        + ["ServiceClients", "AsyncServiceClients"]
    )
    routes = [
        f"    {'/' + service.full_name + '/' + method.name!r}: "
        f"({_short(service).lower()!r}, {_snake(method.name)!r}),"
        for service in described
        for method in service.methods
    ]
    body += [
        "",
        "#: The RPC path of every generated method: path -> (service attribute, method name).",
        "ROUTES: dict[str, tuple[str, str]] = {",
        *routes,
        "}",
    ]
    names += ["ROUTES"]
    retried = [
        f"    ({service.full_name!r}, {method.name!r}),"
        for service in described
        for method in service.methods
        if retryable(method)
    ]
    body += [
        "",
        "#: (service, method) of every RPC a failed attempt of which may be sent again.",
        "RETRYABLE_METHODS: tuple[tuple[str, str], ...] = (",
        *retried,
        ")",
    ]
    names += ["RETRYABLE_METHODS"]
    body += ["", "", "__all__ = [", *(f"    {name!r}," for name in sorted(names)), "]"]
    header = [
        '"""Typed clients of every service: generated by clients/generate.py from proto/ (`make gen`).',
        "",
        "Do not edit: change the contracts and regenerate.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import "
        + ", ".join(
            name
            for name in (
                "AsyncIterable",
                "AsyncIterator",
                "Callable",
                "Iterable",
                "Iterator",
                "Mapping",
            )
            if f"{name}[" in "\n".join(body)
        ),
        "",
        "from typing import Any",
        "",
        "import grpc",
        *(
            f"from {module.rsplit('.', 1)[0]} import {module.rsplit('.', 1)[1]} as {alias}"
            for alias, module in sorted(imports.modules.items())
        ),
        "",
        "",
        *_helper_imports("\n".join(body)),
    ]
    return "\n".join(header + body) + "\n"


#: The hand-written helpers generated code may call, by module.
_HELPERS = {
    "intelgraph.sdk.requests": ("async_pages", "build", "keyed", "pages"),
    "intelgraph.sdk.streams": (
        "Destination",
        "Source",
        "async_write_data",
        "batches",
        "file_parts",
        "write_data",
    ),
}


def _helper_imports(body: str) -> list[str]:
    lines = []
    for module, helpers in _HELPERS.items():
        used = [name for name in helpers if re.search(rf"\b{name}\b", body)]
        if used:
            lines.append(f"from {module} import {', '.join(used)}")
    return lines


def namespace(module_name: str, title: str) -> str:
    """The source of a module re-exporting one contract file's messages, enums and enum values."""
    module = importlib.import_module(module_name)
    file = module.DESCRIPTOR
    names = sorted(
        [*file.message_types_by_name, *file.enum_types_by_name]
        + [value.name for enum in file.enum_types_by_name.values() for value in enum.values],
        # As ruff (isort) orders them: CONSTANTS, then Classes, each alphabetically.
        key=lambda name: (not name.isupper(), name),
    )
    package, _, leaf = module_name.rpartition(".")
    lines = [
        f'"""{title}.',
        "",
        "Generated by clients/generate.py from proto/ (`make gen`). Users import messages and",
        "enums from here, never from the `_pb2` modules.",
        '"""',
        "",
        f"from {package}.{leaf} import (",
        *(f"    {name}," for name in names),
        ")",
        "",
        "__all__ = [",
        *(f"    {name!r}," for name in names),
        "]",
    ]
    return "\n".join(lines) + "\n"


def _enum_docstring(text: str) -> list[str]:
    lines = _prose(text, "    ", "Why a call failed.")
    return [f'    """{lines[0]}', *(f"    {line}".rstrip() for line in lines[1:]), '    """']


def reasons(proto_root: Path) -> str:
    """The source of `intelgraph/sdk/reasons.py`: `ErrorReason` as a Python enum."""
    enum = errors_pb2.DESCRIPTOR.enum_types_by_name["ErrorReason"]
    texts = comments(proto_root, [enum.file.name])
    lines = [
        '"""Why a call failed: the platform\'s `ErrorReason`, as a Python enum.',
        "",
        "Generated by clients/generate.py from proto/ (`make gen`). Do not edit.",
        '"""',
        "",
        "import enum",
        "",
        "",
        "class ErrorReason(enum.IntEnum):",
        *_enum_docstring(texts[enum.full_name]),
        "",
    ]
    for value in enum.values:
        text = texts.get(f"{enum.full_name}.{value.name}", "")
        lines += [
            *(f"    #: {line}" for line in _wrapped(text, "    #: ")),
            f"    {value.name} = {value.number}",
        ]
    lines += [
        "",
        "    def __str__(self) -> str:",
        '        """The reason\'s name, as it travels: printing an error\'s reason shows it."""',
        "        return self.name",
        "",
        "",
        '__all__ = ["ErrorReason"]',
    ]
    return "\n".join(lines) + "\n"


#: The SDK's re-export modules: name -> (generated module, what it holds).
NAMESPACES = {
    "money": ("intelgraph.common.v1.money_pb2", "Money, shared by every service"),
    "pagination": ("intelgraph.common.v1.pagination_pb2", "Page requests and responses"),
}


def write(proto_root: Path, out: Path) -> list[Path]:
    """Write `services.py`, `reasons.py` and the re-export modules into `out`; the files written."""
    written = [out / "services.py", out / "reasons.py"]
    written[0].write_text(generate(proto_root))
    written[1].write_text(reasons(proto_root))
    modules = dict(NAMESPACES)
    for service in services(proto_root):
        modules[_short(service).lower()] = (
            _module(service.file.name),
            f"The {service.name}'s messages and enums",
        )
    for name, (module, title) in sorted(modules.items()):
        path = out / f"{name}.py"
        path.write_text(namespace(module, title))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]), Path(sys.argv[2])):
        sys.stdout.write(f"{path}\n")
