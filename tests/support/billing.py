"""A tenant's caller of a platform's BillingService, and its enrolment (for the billing tests)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from intelgraph.billing.v1 import billing_service_pb2 as pb
from intelgraph.billing.v1 import billing_service_pb2_grpc
from intelgraph.sdk import ConductorError, from_grpc_error

from servers.app import Platform
from tests.support.serving import Minter


class Biller:
    """One tenant's caller (every permission unless told otherwise)."""

    def __init__(self, stub: Any, minter: Minter, tenant: uuid.UUID) -> None:
        self.stub, self.minter, self.tenant = stub, minter, tenant

    async def __call__(
        self, method: str, request: Any, scopes: list[str] | None = None, **options: Any
    ) -> Any:
        try:
            return await getattr(self.stub, method)(
                request, metadata=self.minter.metadata(scopes, tenant=self.tenant), **options
            )
        except grpc.aio.AioRpcError as error:
            raise from_grpc_error(error) from None

    async def refused(self, method: str, request: Any, **options: Any) -> ConductorError:
        with pytest.raises(ConductorError) as raised:
            await self(method, request, **options)
        return raised.value


@contextlib.asynccontextmanager
async def new_biller(platform: Platform) -> AsyncIterator[Biller]:
    """A caller of `platform`'s billing for a new tenant, over a channel of its own."""
    async with grpc.aio.insecure_channel(platform.grpc_target) as channel:
        yield Biller(
            billing_service_pb2_grpc.BillingServiceStub(channel),
            Minter(platform.settings),
            uuid.uuid4(),
        )


async def enrolled(
    biller: Biller, stage: pb.RolloutStage.ValueType = pb.ROLLOUT_STAGE_PILOT, **profile: Any
) -> None:
    """Enroll the tenant and bill it in GBP under UK VAT (20 %), exclusive."""
    await biller("SetRollout", pb.SetRolloutRequest(tenant_id=str(biller.tenant), stage=stage))
    await biller(
        "SetBillingProfile",
        pb.SetBillingProfileRequest(
            profile=pb.BillingProfile(
                currency_code="GBP",
                jurisdiction=profile.get("jurisdiction", "GB"),
                tax_id=profile.get("tax_id", ""),
                tax_mode=profile.get("tax_mode", pb.TAX_MODE_EXCLUSIVE),
            )
        ),
    )
