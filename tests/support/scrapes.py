"""A platform's /metrics read as Prometheus reads it, to assert how samples move.

Metrics are process-global: every platform a test session starts adds to the
same counters, so tests compare a scrape before an action with one after it,
never an absolute value (gauges excepted: their value is the last one set).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from servers.app import Platform

#: A sample's identity: its name (with `_bucket`, `_count`... suffixes) and its labels.
SampleKey = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Scrape:
    """One scrape's samples.

    >>> scrape = Scrape.parse('edge_cache_requests_total{outcome="hit"} 3.0\\n')
    >>> scrape.value("edge_cache_requests_total", outcome="hit")
    3.0
    >>> scrape.value("edge_cache_requests_total", outcome="miss") is None
    True
    """

    samples: Mapping[SampleKey, float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        """The samples of a text exposition."""
        return cls(
            {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
        )

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels (None when it is not exported)."""
        return self.samples.get((name, frozenset(labels.items())))


async def scrape(platform: Platform) -> Scrape:
    """What `/metrics` on the platform's HTTP port exports now."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{platform.http_port}") as http:
        response = await http.get("/metrics")
    response.raise_for_status()
    return Scrape.parse(response.text)


@dataclass
class Moves:
    """Two scrapes, before and after; calling it gives how far a sample moved."""

    before: Scrape
    after: Scrape = field(default_factory=lambda: Scrape({}))

    def __call__(self, name: str, **labels: str) -> float:
        """after - before, a sample not exported counting as 0 (a counter never incremented)."""
        return (self.after.value(name, **labels) or 0.0) - (
            self.before.value(name, **labels) or 0.0
        )


@asynccontextmanager
async def metric_moves(platform: Platform) -> AsyncIterator[Moves]:
    """Scrape the platform on entering and again on leaving the block.

    Example:
        async with metric_moves(platform) as moved:
            await client.billing.create_credit_note(...)
        assert moved("billing_credit_notes_issued_total") == 1
    """
    moves = Moves(await scrape(platform))
    yield moves
    moves.after = await scrape(platform)
