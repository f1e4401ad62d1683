"""What Access runs beside its servicer on every replica: the revocation feed and the outbox.

Both serve the whole platform, whichever services a replica serves: the feed
keeps this process refusing revoked tokens, and the outbox takes notifications
from any service (`core.interfaces.Notifications`) and is delivered from here,
by one replica at a time, whenever webhooks are configured.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from servers.access.notifications import Outbox, WebhookDispatcher
from servers.access.revocation import RevocationFeed
from servers.runtime import Component, Foundation, Job

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class AccessComponent(Component):
    """The revocation feed, the outbox and its delivery, in one server process.

    The platform's `core.interfaces.Notifications`.

    Args:
        feed: Feeds revocations into this process's set.
        outbox: Where notifications are put.
        dispatcher: Delivers the outbox (None: no webhook is configured).
    """

    @classmethod
    def of(cls, foundation: Foundation) -> AccessComponent:
        """The component of the platform's revocation set and configured webhooks."""
        urls = foundation.settings.webhook_urls
        return cls(
            RevocationFeed.of(foundation),
            Outbox(urls),
            WebhookDispatcher(foundation.database, foundation.clock) if urls else None,
        )

    def __init__(
        self, feed: RevocationFeed, outbox: Outbox, dispatcher: WebhookDispatcher | None = None
    ) -> None:
        self.feed = feed
        self.outbox = outbox
        self._dispatcher = dispatcher

    def notify(
        self,
        session: AsyncSession,
        event: str,
        tenant: uuid.UUID,
        payload: Mapping[str, Any],
        *,
        recipient: str,
        at: datetime,
    ) -> None:
        """Put a notification in the caller's transaction (see `Outbox.notify`).

        Raises:
            ValueError: `event` is too long, or `payload` names a key of the envelope.
        """
        self.outbox.notify(session, event, tenant, payload, recipient=recipient, at=at)

    async def start(self) -> None:
        """Refuse every live revocation before the first call."""
        await self.feed.start()

    def background_jobs(self) -> list[Job]:
        """The feed's, and the outbox's delivery under a lease (with webhooks configured)."""
        jobs = self.feed.background_jobs()
        if self._dispatcher is not None:
            jobs.append(self._dispatcher.run)
        return jobs

    async def close(self) -> None:
        """Close the feed's Redis connection, if any."""
        await self.feed.close()
