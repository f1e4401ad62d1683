"""What the generated client methods do with streams: batch uploads, write downloads to files.

>>> from google.protobuf.struct_pb2 import ListValue, Value
>>> values = (Value(number_value=n) for n in range(5))
>>> [len(batch.values) for batch in batches(ListValue, {"values": (values, 2)})]
[2, 2, 1]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypeAlias, TypeVar, cast

from google.protobuf.message import Message

MessageT = TypeVar("MessageT", bound=Message)
#: Where a download goes: a path, or a binary file open for writing.
Destination: TypeAlias = str | os.PathLike[str] | BinaryIO
#: What an upload reads: a path, a binary file open for reading, or the bytes themselves.
Source: TypeAlias = str | os.PathLike[str] | BinaryIO | bytes


def batches(
    message_class: type[MessageT], fields: Mapping[str, tuple[Iterable[Any], int]]
) -> Iterator[MessageT]:
    """Requests of `message_class` carrying each field's items, at most its limit per request.

    Fields are sent one after another, in the order given, and read lazily: an
    iterable of any length streams in bounded memory.
    """
    for name, (items, limit) in fields.items():
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, limit)):
            yield message_class(**{name: batch})


def file_parts(
    message_class: type[MessageT],
    head: tuple[str, Message],
    chunk: tuple[str, type[Message]],
    source: Source,
    *,
    offset: int,
    chunk_bytes: int,
) -> Iterator[MessageT]:
    """An upload: the head message first, then `source`'s bytes from `offset` in chunks.

    Each chunk message carries its `offset` and `data` (and the hex SHA-256 of
    `data` when the message has a `sha256` field, so the server refuses a chunk
    damaged on the way), so a cut upload resumes by sending the same head and
    the bytes from the committed offset on.
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
    head_field, head_message = head
    chunk_field, chunk_class = chunk
    digest = "sha256" in chunk_class.DESCRIPTOR.fields_by_name
    yield message_class(**{head_field: head_message})
    with _opened(source, "rb") as stream:
        stream.seek(offset)
        position = offset
        while data := stream.read(chunk_bytes):
            fields: dict[str, object] = {"offset": position, "data": data}
            if digest:
                fields["sha256"] = hashlib.sha256(data).hexdigest()
            yield message_class(**{chunk_field: chunk_class(**fields)})
            position += len(data)


@contextlib.contextmanager
def _opened(target: Source, mode: str) -> Iterator[BinaryIO]:
    """`target` as a binary file: opened (and closed) when a path, the caller's own otherwise."""
    if isinstance(target, bytes):
        yield io.BytesIO(target)
    elif isinstance(target, str | os.PathLike):
        with Path(target).open(mode) as stream:
            yield cast(BinaryIO, stream)
    else:
        yield target


def write_data(responses: Iterable[Any], destination: Destination) -> int:
    """Write each response's `data` to `destination`; the number of bytes written."""
    written = 0
    with _opened(destination, "wb") as stream:
        for response in responses:
            written += stream.write(response.data)
    return written


async def async_write_data(responses: AsyncIterable[Any], destination: Destination) -> int:
    """`write_data` for the async clients."""
    written = 0
    with _opened(destination, "wb") as stream:
        async for response in responses:
            written += stream.write(response.data)
    return written
