"""Hypothesis strategies for any request message of the contracts, hostile by design.

`requests(descriptor)` draws messages of that type whose fields hold what a
careless or malicious client might send: empty, huge and NUL-laden strings,
strings that look right (known ids, meters, scopes, currencies, days), the
extremes of every integer type, NaN and infinities, enum numbers the contract
does not declare, timestamps far outside their range, repeated fields past
their bounds, and nested messages. Nothing here knows any particular RPC: a
contract change changes what is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from interceptors.validation import DEFAULT_MAX_ITEMS, field_bounds

#: Deepest nesting of messages drawn.
MAX_DEPTH = 3

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_EDGES = (0, 1, -1, 2, 7, 100, 10**12, 10**15, 10**15 + 1, 2**31 - 1, 2**53, 2**62, 2**63 - 1)

#: Strings that look right somewhere in the contracts, so draws get past the first check.
PLAUSIBLE = (
    "api.call",
    "analytics.pack_run",
    "graphql.operation",
    "catalog.read",
    "billing.write",
    "audit.read",
    "admin.write",
    "USD",
    "GBP",
    "JPY",
    "GB",
    "US-NY",
    "2026-11-29",
    "0001-01-01",
    "9999-12-31",
    "pagerank",
    "degree",
    "communities",
    "shortest_path",
    "e1",
    "e2",
    "intelgraph.access.v1.Grant",
)
_HOSTILE = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "x" * 257,
    "é" * 300,
    "x" * 70_000,
    "' OR 1=1 --",
    "../../etc/passwd",
    "\u202e\ufeff",
    "0000-00-00",
    "-1",
    "NaN",
)


def strings(known: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Any string a hostile client might send, and some that look right."""
    return st.one_of(
        st.sampled_from(_HOSTILE),
        st.sampled_from(PLAUSIBLE + tuple(known)),
        st.uuids().map(str),
        st.text(max_size=24),
    )


def _integers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[field.type]
    edges = sorted({value for edge in _EDGES for value in (edge, -edge) if low <= value <= high})
    return st.one_of(st.sampled_from([*edges, low, high]), st.integers(low, high))


def _floats(field: FieldDescriptor) -> st.SearchStrategy[float]:
    width: Literal[32, 64] = 32 if field.type == FieldDescriptor.TYPE_FLOAT else 64
    return st.one_of(
        st.sampled_from([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0, 0.5]),
        st.floats(width=width),
    )


def _enums(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    declared = [value.number for value in field.enum_type.values]
    return st.sampled_from([*declared, -1, max(declared) + 1, 999, 2**31 - 1])


def _timestamps(descriptor: Descriptor) -> st.SearchStrategy[Any]:
    timestamp = message_factory.GetMessageClass(descriptor)
    seconds = st.one_of(
        st.sampled_from([0, 1_795_000_000, -62_135_596_800, 253_402_300_799]),
        st.sampled_from([-62_135_596_801, 253_402_300_800, 2**62, -(2**62), 2**63 - 1]),
        st.integers(-(2**63), 2**63 - 1),
    )
    nanos = st.sampled_from([0, 999_999_999, -1, 10**9, 2**31 - 1])
    return st.builds(timestamp, seconds=seconds, nanos=nanos)


def _scalar(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return requests(field.message_type, known, depth + 1)
    if field.enum_type is not None:
        return _enums(field)
    if field.type == FieldDescriptor.TYPE_STRING:
        return strings(known)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=16), st.just(b"\x00" * (1 << 20) + b"!"))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    return _integers(field) if field.type in _INT_RANGES else _floats(field)


def _filler(field: FieldDescriptor) -> Any:
    """A cheap value of the field's type, to build lists just past their bound."""
    if field.message_type is not None:
        return message_factory.GetMessageClass(field.message_type)()
    if field.type == FieldDescriptor.TYPE_STRING:
        return "x"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"x"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return False
    if field.enum_type is not None or field.type in _INT_RANGES:
        return 0
    return 0.0


def _repeated(field: FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    few = st.lists(_scalar(field, known, depth), max_size=3)
    if depth >= 1:
        return few
    most = field_bounds(field).max_items or DEFAULT_MAX_ITEMS
    return st.one_of(few, few, few, st.just([_filler(field)] * (most + 1)))


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, known: Sequence[str], depth: int) -> Any:
    message = message_factory.GetMessageClass(descriptor)()
    if depth > MAX_DEPTH:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.is_repeated:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue  # no request of the contracts holds a map
            values = draw(_repeated(field, known, depth))
            container = getattr(message, field.name)
            if field.message_type is not None:
                for value in values:
                    container.add().CopyFrom(value)
            else:
                container.extend(values)
        elif field.message_type is not None:
            getattr(message, field.name).CopyFrom(draw(_scalar(field, known, depth)))
        else:
            setattr(message, field.name, draw(_scalar(field, known, depth)))
    return message


def requests(
    descriptor: Descriptor, known: Sequence[str] = (), depth: int = 0
) -> st.SearchStrategy[Any]:
    """Messages of type `descriptor`; `known` adds strings worth drawing (real ids, say)."""
    if descriptor.full_name == "google.protobuf.Timestamp":
        return _timestamps(descriptor)
    return _message(descriptor, tuple(known), depth)
