"""The BillingService servicer: translates messages and calls the domain, nothing else."""

from intelgraph.billing.v1 import billing_service_pb2, billing_service_pb2_grpc

from servers.registry import ServiceDefinition
from servers.runtime import PlatformServicer


class BillingService(PlatformServicer, billing_service_pb2_grpc.BillingServiceServicer):
    """Metered usage, signed invoices, credit notes, refunds, tax, reconciliation, guards.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="billing",
    descriptor=billing_service_pb2.DESCRIPTOR.services_by_name["BillingService"],
    servicer_class=BillingService,
    add_to_server=billing_service_pb2_grpc.add_BillingServiceServicer_to_server,
    capability="billing GA: invoices, credit notes, refunds, tax, reconciliation (issue #7)",
)
