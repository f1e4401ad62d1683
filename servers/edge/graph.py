"""The mutation graph: which cached reads each mutating RPC invalidates, built from the contracts.

Every RPC touches resource types: the messages of its own package that its
request and response name (transitively; the request and response wrappers
themselves excluded), plus those its `(intelgraph.common.v1.cache).resources`
option declares. A read's cached results are tagged with the types it
touches; a successful mutation invalidates, for the caller's tenant, the tags
of the types it touches. A mutation's invalidation set is the reads sharing
a type with it; coverage is the share of mutating RPCs whose set is not empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor

from core.descriptors import cache_policy, is_read, method_path


def _reached(message: Descriptor, package: str, wrappers: set[str], found: set[str]) -> None:
    for member in message.fields:
        target = member.message_type
        if target is None or target.full_name in found or target.full_name in wrappers:
            continue
        if target.GetOptions().map_entry:
            _reached(target, package, wrappers, found)
            continue
        if target.file.package != package:
            continue
        found.add(target.full_name)
        _reached(target, package, wrappers, found)


def resource_types(method: MethodDescriptor) -> frozenset[str]:
    """The resource types an RPC touches: named by its messages, or declared."""
    service = method.containing_service
    wrappers = {
        message.full_name
        for rpc in service.methods
        for message in (rpc.input_type, rpc.output_type)
    }
    found: set[str] = set(cache_policy(method).resources)
    _reached(method.input_type, service.file.package, wrappers, found)
    _reached(method.output_type, service.file.package, wrappers, found)
    return frozenset(found)


@dataclass(frozen=True)
class Mutation:
    """One mutating RPC and what it invalidates."""

    method: str
    resource_types: frozenset[str]
    invalidated_reads: tuple[str, ...]
    implemented: bool


@dataclass
class MutationGraph:
    """Reads and mutations of the platform's contracts, and the edges between them.

    Attributes:
        reads: Tags (resource types) of each read RPC, by wire name.
        mutations: Each mutating RPC, by wire name.
    """

    reads: dict[str, frozenset[str]] = field(default_factory=dict)
    mutations: dict[str, Mutation] = field(default_factory=dict)

    def tags_of(self, method: str) -> frozenset[str]:
        """What a successful call of `method` invalidates (empty for reads and unknown RPCs)."""
        mutation = self.mutations.get(method)
        return mutation.resource_types if mutation is not None else frozenset()

    def coverage(self, *, implemented_only: bool = False) -> tuple[int, int]:
        """(mutating RPCs with a non-empty invalidation set, mutating RPCs)."""
        counted = [
            mutation
            for mutation in self.mutations.values()
            if mutation.implemented or not implemented_only
        ]
        return sum(1 for mutation in counted if mutation.invalidated_reads), len(counted)

    @property
    def known_tags(self) -> frozenset[str]:
        """Every resource type a read is tagged with."""
        return frozenset().union(*self.reads.values())


def build_mutation_graph(
    services: Iterable[ServiceDescriptor], implemented: Iterable[str] = ()
) -> MutationGraph:
    """The mutation graph of `services`; `implemented` names the built RPCs (wire names)."""
    built = set(implemented)
    graph = MutationGraph()
    writes: dict[str, frozenset[str]] = {}
    for service in services:
        for method in service.methods:
            if is_read(method):
                graph.reads[method_path(method)] = resource_types(method)
            else:
                writes[method_path(method)] = resource_types(method)
    for path, types in writes.items():
        invalidated = tuple(sorted(read for read, tags in graph.reads.items() if tags & types))
        graph.mutations[path] = Mutation(path, types, invalidated, path in built)
    return graph
