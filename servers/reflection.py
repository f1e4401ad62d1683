"""Server reflection that answers with the contracts' comments, so `grpcurl describe` shows them.

grpcio-reflection answers from the descriptors the generated modules register,
which carry no source information: `grpcurl describe` printed every RPC and
field without the comments that say what they mean. `make gen` also writes the
contracts as one descriptor set with source information
(`gen/intelgraph/descriptors.binpb`); this servicer answers with those files,
and with the library's answer for any other file (health, well-known types).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

#: The contracts with their comments, as `make gen` writes them.
DESCRIPTOR_SET = "descriptors.binpb"


def documented_files() -> dict[str, bytes]:
    """Each contract file's serialized `FileDescriptorProto`, comments included, by name.

    Without `json_name`s, as the generated descriptors have none: grpcurl then keeps
    printing the contracts' field names (`tenant_id`), as operators' scripts expect.
    """
    data = (resources.files("intelgraph") / DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    for file in files:
        for message in file.message_type:
            _drop_json_names(message)
        for extension in file.extension:
            extension.ClearField("json_name")
    return {file.name: file.SerializeToString() for file in files}


def _drop_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    for field in (*message.field, *message.extension):
        field.ClearField("json_name")
    for nested in message.nested_type:
        _drop_json_names(nested)


class DocumentedReflection(reflection.aio.ReflectionServicer):
    """The library's `grpc.aio` reflection servicer, answering file requests with documented files.

    Args:
        service_names: The services it lists.
        documented: Serialized files by name (`documented_files()`).
    """

    def __init__(self, service_names: list[str], documented: Mapping[str, bytes]) -> None:
        super().__init__(service_names)
        self._documented = documented
        self._descriptors = descriptor_pool.Default()

    def _answer(self, found: descriptor.FileDescriptor, request: Any) -> Any:
        """The file and every file it imports, each with its comments when we have them."""
        files: dict[str, descriptor.FileDescriptor] = {}
        pending = [found]
        while pending:
            file = pending.pop()
            if file.name not in files:
                files[file.name] = file
                pending.extend(file.dependencies)
        serialized = []
        for name, file in files.items():
            documented = self._documented.get(name)
            if documented is None:
                proto = descriptor_pb2.FileDescriptorProto()
                file.CopyToProto(proto)
                documented = proto.SerializeToString()
            serialized.append(documented)
        return reflection_pb2.ServerReflectionResponse(
            file_descriptor_response=reflection_pb2.FileDescriptorResponse(
                file_descriptor_proto=serialized
            ),
            original_request=request,
        )

    def _file_by_filename(self, request: Any, filename: str) -> Any:
        try:
            found = self._descriptors.FindFileByName(filename)
        except KeyError:  # the library's "not found"
            return super()._file_by_filename(request, filename)  # type: ignore[misc]
        return self._answer(found, request)

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        try:
            found = self._descriptors.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:  # the library's "not found"
            return super()._file_containing_symbol(request, fully_qualified_name)  # type: ignore[misc]
        return self._answer(found, request)


def enable_reflection(service_names: list[str], server: grpc.aio.Server) -> None:
    """Serve reflection of `service_names` (and reflection itself) on `server`, documented."""
    names = [*service_names, reflection.SERVICE_NAME]
    servicer = DocumentedReflection(names, documented_files())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
