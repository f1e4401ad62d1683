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
from intelgraph.common.v1 import authorization_pb2

_SCALARS = {
    FieldDescriptor.TYPE_DOUBLE: "float",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "str",
    FieldDescriptor.TYPE_BYTES: "bytes",
}
#: Names the generated methods use themselves: a request field may not take them.
_RESERVED = {"request", "requests", "timeout", "self"}
_SERVICE_PATH = 6  # FileDescriptorProto.service
_METHOD_PATH = 2  # ServiceDescriptorProto.method


def _snake(name: str) -> str:
    """`GetCaller` -> `get_caller`, `ExportCsv` -> `export_csv`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _module_alias(file_name: str) -> str:
    """`intelgraph/common/v1/pagination.proto` -> `common_pagination_pb2`."""
    parts = file_name.removesuffix(".proto").split("/")
    return f"{parts[-3] if len(parts) >= 3 else parts[0]}_{parts[-1]}_pb2"


def _module(file_name: str) -> str:
    return file_name.removesuffix(".proto").replace("/", ".") + "_pb2"


def comments(proto_root: Path, files: list[str]) -> dict[str, str]:
    """The leading comment of every service and RPC, by full name (protoc's source info)."""
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
    body += ["", f"{indent}Permission: {_permission(method)}.", f'{indent}"""']
    return body


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
            f"        return {'await ' if asynchronous else ''}self._{name}(requests, timeout=timeout)",
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
    build = f"        message = build({request}, request, {{{', '.join(f'{f.name!r}: {f.name}' for f in fields)}}})"
    if method.server_streaming and asynchronous:
        call = [
            f"        async for response in self._{name}(message, timeout=timeout):",
            "            yield response",
        ]
    elif method.server_streaming:
        call = [f"        yield from self._{name}(message, timeout=timeout)"]
    else:
        call = [
            f"        return {'await ' if asynchronous else ''}self._{name}(message, timeout=timeout)"
        ]
    return [*signature, *_docstring(text, method, indent), build, *call]


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
    short = service.name.removesuffix("Service")
    name = f"{'Async' if asynchronous else ''}{short}Client"
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
            for name in ("AsyncIterable", "AsyncIterator", "Iterable", "Iterator", "Mapping")
            if f"{name}[" in "\n".join(body)
        ),
        "",
        "import grpc",
        *(
            f"from {module.rsplit('.', 1)[0]} import {module.rsplit('.', 1)[1]} as {alias}"
            for alias, module in sorted(imports.modules.items())
        ),
        "",
        "from intelgraph.sdk.requests import build",
    ]
    for asynchronous in (False, True):
        prefix = "Async" if asynchronous else ""
        attributes = [
            (
                service.name.removesuffix("Service").lower(),
                f"{prefix}{service.name.removesuffix('Service')}Client",
            )
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
        ]
    names = sorted(
        [
            f"{prefix}{service.name.removesuffix('Service')}Client"
            for prefix in ("", "Async")
            for service in described
        ]
        + ["ServiceClients", "AsyncServiceClients"]
    )
    body += ["", "", "__all__ = [", *(f"    {name!r}," for name in names), "]"]
    return "\n".join(header + body) + "\n"


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


#: The SDK's re-export modules: name -> (generated module, what it holds).
NAMESPACES = {
    "money": ("intelgraph.common.v1.money_pb2", "Money, shared by every service"),
    "pagination": ("intelgraph.common.v1.pagination_pb2", "Page requests and responses"),
}


def write(proto_root: Path, out: Path) -> list[Path]:
    """Write `services.py` and one re-export module per service into `out`; the files written."""
    written = [out / "services.py"]
    written[0].write_text(generate(proto_root))
    modules = dict(NAMESPACES)
    for service in services(proto_root):
        name = service.name.removesuffix("Service").lower()
        modules[name] = (_module(service.file.name), f"The {service.name}'s messages and enums")
    for name, (module, title) in sorted(modules.items()):
        path = out / f"{name}.py"
        path.write_text(namespace(module, title))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]), Path(sys.argv[2])):
        sys.stdout.write(f"{path}\n")
