"""Conversions between `google.protobuf.Timestamp` and aware UTC datetimes.

One place for them, so every service reads and writes instants alike: an
unset message field is None, never the epoch.

>>> from datetime import UTC, datetime
>>> moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
>>> from_timestamp(to_timestamp(moment)) == moment
True
>>> to_timestamp(None) is None
True
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp


@overload
def to_timestamp(moment: datetime) -> Timestamp: ...
@overload
def to_timestamp(moment: None) -> None: ...
@overload
def to_timestamp(moment: datetime | None) -> Timestamp | None: ...
def to_timestamp(moment: datetime | None) -> Timestamp | None:
    """`moment` as a Timestamp message, or None for None."""
    if moment is None:
        return None
    value = Timestamp()
    value.FromDatetime(moment)
    return value


def from_timestamp(value: Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime."""
    return value.ToDatetime(tzinfo=UTC)


def optional_instant(message: Message, field: str) -> datetime | None:
    """The instant in `message.<field>`, or None when the field is unset.

    >>> from google.protobuf.struct_pb2 import Value
    >>> optional_instant(Value(), "struct_value") is None
    True
    """
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return from_timestamp(value)


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds (as signed documents carry it), or None.

    >>> rfc3339(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    '2026-01-02T03:04:05.000000Z'
    """
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
