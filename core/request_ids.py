"""Request ids: one per call, accepted from the caller or minted, carried wherever the call goes.

An id arrives as `x-request-id` (gRPC metadata or HTTP header); one that is not
1 to 128 characters of letters, digits, `.`, `_`, `:` or `-` is replaced by a
new one rather than trusted into the logs. The id of the call being served is
in a context variable, so tasks the call starts inherit it.

>>> accepted("req-42"), len(accepted("<script>"))
('req-42', 32)
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from opentelemetry import trace

#: The span attribute that names it, when the call is traced.
SPAN_ATTRIBUTE = "conductor.request_id"
#: The metadata key and HTTP header that carry it.
REQUEST_ID_KEY = "x-request-id"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id: ContextVar[str] = ContextVar("intelgraph_request_id", default="")


def new_request_id() -> str:
    """A fresh id: 32 hex digits."""
    return uuid.uuid4().hex


def accepted(value: object) -> str:
    """`value` if it is an acceptable request id, else a new one."""
    return value if isinstance(value, str) and _VALID.fullmatch(value) else new_request_id()


def current_request_id() -> str:
    """The id of the call being served ("" outside any call)."""
    return request_id.get()


def mark_current_span(call_id: str) -> None:
    """Name the call's request id on the current span, when one is being recorded."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(SPAN_ATTRIBUTE, call_id)
