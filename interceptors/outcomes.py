"""How a failed call ended, reported by the error-mapping interceptor to the access log."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """A call's status code, its reason and (for server faults) the incident id."""

    code: str
    reason: str
    incident: str = ""


#: Set by the error-mapping interceptor just before it ends a call with a status.
outcome: ContextVar[Outcome | None] = ContextVar("intelgraph_outcome", default=None)
